"""Semantic guidance by attribute groups: can channel weights learned to *predict one body part's
attributes* point at that part? (docs/results.md, run 17.)

    SGMA_SHARED_DATA=../shared/data python bench/attribute_parts.py CUB_ROOT [--checkpoint RUN/best.pt]

CUB names each attribute after a body part (``has_bill_shape``, ``has_upper_tail_color``, ...). For
every attribute a we learn a prototype v_a over the C channels of the attention CNN's stride-16
features f(z); the attribute is predicted from its best-matching position, max_z v_a . f(z), and
regressed to the class's attribute value (the class semantics, no part box). A part's map is then
sum over the part's attributes of v_a . f(z): one channel weighting, Eq. 3's form. With
``--checkpoint`` the features are those of that model's attention CNN (its fine-tuned blocks, if
any); without, the fixed ImageNet EfficientNet-Lite0 cut at stride 16. Pointing of the head and
tail maps on the validation-class images is reported (part boxes only report). CPU only.
"""
from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
import torch

from sgma.engine.backbones import build_backbone
from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import image_sizes, peak_inside
from sgma.engine.loader import ImageSet

HEAD = ("bill", "throat", "nape", "forehead", "crown", "eye", "head")
TAIL = ("tail",)


def part_of(name: str) -> str:
    word = name.split("::")[0].removeprefix("has_")
    if any(word.startswith(w) for w in HEAD):
        return "head"
    if any(w in word for w in TAIL):
        return "tail"
    return "other"


@torch.no_grad()
def features(net, ds, ids, size, flip=False):
    ims = ImageSet(ds, ids, size)
    out = []
    for s in range(0, len(ids), 32):
        x = torch.stack([ims[k][0] for k in range(s, min(s + 32, len(ids)))])
        out.append(net(x.flip(-1) if flip else x).to(torch.float16))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--border", type=int, default=1)
    ap.add_argument("--pool", default="max", choices=["max", "softmax"])
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    t0 = time.time()
    if args.checkpoint:
        model = model_from_checkpoint(load_checkpoint(args.checkpoint)).eval()
        net, size = model.image_net, model.cfg.attention_size
    else:
        net, size = build_backbone("efficientnet_lite0_s16", "imagenet").eval(), 320
    ds = load_dataset("cub", args.root, split="ps", fold=1)
    sp = ds.split
    rng = np.random.default_rng(0)
    tr_all = [i for i in sp.trainval if ds.labels[i] in set(sp.train_classes)]
    tr = sorted(rng.choice(tr_all, min(args.train, len(tr_all)), replace=False).tolist())
    va = [i for i in sp.trainval if ds.labels[i] in set(sp.val_classes)]
    cache = f"/tmp/attribute_parts_{hashlib.md5(repr((args.checkpoint, tr)).encode()).hexdigest()[:10]}.pt"
    try:
        ftr, fva = torch.load(cache)
    except FileNotFoundError:
        ftr, fva = features(net, ds, tr, size), features(net, ds, va, size)
        torch.save((ftr, fva), cache)
    print(f"features {tuple(ftr.shape)} of {len(tr)} training / {len(va)} validation images: {time.time() - t0:.0f} s", flush=True)
    groups = np.array([part_of(n) for n in ds.attribute_names])
    sem = torch.as_tensor(np.asarray(ds.semantics), dtype=torch.float32)
    sem = sem / sem.abs().amax(0).clamp_min(1e-6)          # each attribute on [0, 1] over classes
    ytr = torch.as_tensor([ds.labels[i] for i in tr])
    mu = ftr.float().mean(dim=(0, 2, 3), keepdim=True)
    sd = ftr.float().std(dim=(0, 2, 3), keepdim=True) + 1e-6
    c = ftr.shape[1]
    n_att = sem.shape[1]
    proto = torch.nn.Parameter(torch.randn(n_att, c) * 0.01)
    bias = torch.nn.Parameter(torch.zeros(n_att))
    opt = torch.optim.Adam([proto, bias], lr=1e-2)

    h, w = ftr.shape[2:]
    inner = torch.zeros(h, w, dtype=torch.bool)
    inner[args.border:h - args.border, args.border:w - args.border] = True

    def att_maps(f):      # positions within --border cells of the edge left out (padding artefacts)
        m = torch.einsum("bchw,ac->bahw", (f.float() - mu) / sd, proto)
        return m.masked_fill(~inner, -1e4) if args.border else m

    def predict(f):
        m = att_maps(f).flatten(2)
        pooled = m.amax(2) if args.pool == "max" else (torch.softmax(m, 2) * m).sum(2)
        return pooled + bias

    for ep in range(args.epochs):
        perm = torch.randperm(len(tr))
        tot = 0.0
        for s in range(0, len(tr), 32):
            b = perm[s:s + 32]
            loss = ((predict(ftr[b]) - sem[ytr[b]]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
        if ep % 5 == 4 or ep == args.epochs - 1:
            with torch.no_grad():
                yva = torch.as_tensor([ds.labels[i] for i in va])
                pv = predict(fva)
                cls = sorted(set(sp.val_classes))
                s = sem[cls]
                pred = torch.as_tensor(cls)[(-(pv[:, None] - s[None]).pow(2).sum(2)).argmax(1)]
                mca = np.mean([float((pred[yva == k] == k).float().mean()) for k in cls])
            print(f"epoch {ep + 1}: loss {tot / len(tr):.4f}; val ZSL of the attribute predictions {mca:.3f}", flush=True)
    sizes = image_sizes(ds, va)
    with torch.no_grad():
        maps = att_maps(fva)
        for part in ("head", "tail", "other"):
            sel = torch.as_tensor(groups == part)
            m = maps[:, sel].mean(1).numpy()
            line = []
            for gt_part in ("head", "tail"):
                have = [k for k, i in enumerate(va) if ds.items[i].part_boxes.get(gt_part) is not None]
                p = peak_inside(m[have], [ds.items[va[k]].part_boxes[gt_part] for k in have], sizes[have]).mean()
                line.append(f"{gt_part} pointing {p:.3f}")
            pk = m.reshape(len(m), -1).argmax(1)
            print(f"map of the {int(sel.sum())} {part} attributes: " + ", ".join(line)
                  + f"; peaks at {len(np.unique(pk))} distinct cells, most common {np.bincount(pk).max()} times")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
