"""The MA-CNN route on real birds: does fine-tuning the stride-16 blocks of EfficientNet-Lite0 on
the seen classes make stage 1's channel grouping find the head and the tail?

    python bench/finetune_grouping.py --root CUB50_PLUS [--epochs 3] [--lr 1e-4] [--optim sgd --lr 1e-3 --head-lr 0.01]

The stem and blocks 0-4 (stride 8) stay at their ImageNet weights and are computed once; blocks
5-10 (the stride-16 cut the `cpu` preset's attention reads) are fine-tuned on the fold-1 training
classes with the warm-up's objective (Eq. 9: the pooled stride-32 feature, blocks 11-15 and the
head conv fixed, a linear map to the attributes, softmax over the training classes; batch-norm
statistics kept). Before and after, on the stride-16 features:
- selection signals, no part box: validation-class ZSL of that classifier, and the k-means and
  co-location groupings of 200 training images as the trainer forms them (Eq. 2 fitted to them);
- reported only: pointing of each group's Eq. 3 map, and of the best single channel, against the
  head and tail boxes of the validation-class images.
Results: docs/results.md (run 13). CPU only.
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from sgma.engine.attention import MultiAttention
from sgma.engine.backbones import _efficientnet_lite0_net
from sgma.engine.colocation import colocation_channel_groups
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import image_sizes, peak_inside
from sgma.engine.loader import ImageSet
from sgma.engine.stages import kmeans_channel_groups, pretrain_channel_weights, pseudo_label_targets

CUT_LOW, CUT_S16 = 4, 10       # blocks 0..4 end at stride 8; 5..10 end at stride 16 (112 channels)


def stem(net, x):
    x = net._swish(net._bn0(net._conv_stem((x - 0.5) / 0.5)))
    for block in net._blocks[:CUT_LOW + 1]:
        x = block(x)
    return x


def s16(net, x8):
    for block in net._blocks[CUT_LOW + 1:CUT_S16 + 1]:
        x8 = block(x8)
    return x8


def top(net, x16):
    for block in net._blocks[CUT_S16 + 1:]:
        x16 = block(x16)
    return net._swish(net._bn1(net._conv_head(x16))).mean(dim=(2, 3))


def low_features(net, ds, ids, size):
    ims = ImageSet(ds, ids, size)
    out = []
    with torch.no_grad():
        for s in range(0, len(ids), 32):
            out.append(stem(net, torch.stack([ims[k][0] for k in range(s, min(s + 32, len(ids)))])).half())
    return torch.cat(out)


def s16_features(net, x8):
    with torch.no_grad():
        return torch.cat([s16(net, x8[s:s + 64].float()) for s in range(0, len(x8), 64)])


def mca(pred, y, n):
    return float(np.mean([np.mean(pred[y == c] == c) for c in range(n)]))


def grouping_report(tag, f_tr, f_va, gt, sizes, n_parts=2):
    idx = torch.randperm(len(f_tr), generator=torch.Generator().manual_seed(0))[:200]
    feats = f_tr[idx]
    for how in ("kmeans", "colocation"):
        groups = kmeans_channel_groups(feats, n_parts) if how == "kmeans" else colocation_channel_groups(feats, n_parts)
        if len(groups) == 0:
            print(f"  {tag} {how}: no groups")
            continue
        att = MultiAttention(feats.shape[1], n_parts)
        torch.manual_seed(0)
        pretrain_channel_weights(att, feats, pseudo_label_targets(groups, n_parts), 2)
        with torch.no_grad():
            maps = att(f_va)[0].numpy()
        sizes_g = [int((groups == i).sum()) for i in range(n_parts)]
        line = f"  {tag} {how} groups {sizes_g}:"
        for i in range(n_parts):
            for p in ("head", "tail"):
                line += f" map{i + 1} {p} {pointing(maps[:, i], gt[p], sizes):.3f}"
        print(line)
    pts = {p: [pointing(f_va[:, c].numpy(), gt[p], sizes) for c in range(f_va.shape[1])] for p in ("head", "tail")}
    print(f"  {tag} best single channel: head {max(pts['head']):.3f} tail {max(pts['tail']):.3f}")


def pointing(maps, boxes, sizes):
    have = [k for k, b in enumerate(boxes) if b is not None]
    return float(peak_inside(maps[have], [boxes[k] for k in have], sizes[have]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--optim", default="adam", choices=("adam", "sgd"))
    ap.add_argument("--head-lr", type=float, default=0.01, help="SGD: the projection's rate")
    args = ap.parse_args()
    torch.manual_seed(0)
    ds = load_dataset("cub", args.root, split="ps", fold=1)
    sp, labels = ds.split, ds.labels
    tr_ids, va_ids = sp.fold_train_images(labels), sp.fold_val_images(labels)
    net = _efficientnet_lite0_net("imagenet").eval().requires_grad_(False)
    t0 = time.time()
    x8_tr, x8_va = low_features(net, ds, tr_ids, args.size), low_features(net, ds, va_ids, args.size)
    print(f"stride-8 features in {time.time() - t0:.0f} s")
    sem = F.normalize(torch.tensor(ds.semantics, dtype=torch.float32), dim=1)
    tr_c, va_c = sorted(set(sp.train_classes)), sorted(set(sp.val_classes))
    y = torch.tensor([tr_c.index(int(labels[i])) for i in tr_ids])
    y_va = np.array([va_c.index(int(labels[i])) for i in va_ids])
    sizes = image_sizes(ds, va_ids)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in va_ids] for p in ("head", "tail")}

    proj = torch.nn.Linear(1280, sem.shape[1], bias=False)

    def val_zsl(model):
        with torch.no_grad():
            th = torch.cat([top(model, s16(model, x8_va[s:s + 64].float())) for s in range(0, len(x8_va), 64)])
            return mca((F.normalize(proj(th), dim=1) @ sem[va_c].T).argmax(1).numpy(), y_va, len(va_c))

    def fit(model, params, epochs, lr, head_lr=None):
        if args.optim == "adam":
            opt = torch.optim.Adam(params + list(proj.parameters()), lr=lr)
        else:      # the trainer's SGD: the projection at the stage's rate, the blocks at lr
            groups = [{"params": params, "lr": lr}, {"params": list(proj.parameters()), "lr": head_lr}]
            opt = torch.optim.SGD([g for g in groups if g["params"]], lr=head_lr, momentum=0.9, weight_decay=5e-4)
        for ep in range(epochs):
            perm, tot = torch.randperm(len(tr_ids)), 0.0
            for s in range(0, len(perm), 32):
                b = perm[s:s + 32]
                x = x8_tr[b].float()
                if torch.rand(()) < 0.5:
                    x = x.flip(3)
                th = top(model, s16(model, x))
                loss = F.cross_entropy(args.scale * F.normalize(proj(th), dim=1) @ sem[tr_c].T, y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(b)
            print(f"  epoch {ep}: loss {tot / len(perm):.3f} val ZSL {val_zsl(model):.3f} ({time.time() - t0:.0f} s)", flush=True)

    print("classifier on the fixed network (the warm-up):")
    fit(net, [], 3, 1e-3, args.head_lr)
    grouping_report("fixed", s16_features(net, x8_tr), s16_features(net, x8_va), gt, sizes)
    tuned = copy.deepcopy(net)
    params = [p for b in tuned._blocks[CUT_LOW + 1:CUT_S16 + 1] for p in b.parameters()]
    for p in params:
        p.requires_grad_(True)
    print(f"fine-tuning blocks {CUT_LOW + 1}-{CUT_S16} at lr {args.lr}:")
    fit(tuned, params, args.epochs, args.lr, args.head_lr)
    grouping_report("tuned", s16_features(tuned, x8_tr), s16_features(tuned, x8_va), gt, sizes)


if __name__ == "__main__":
    main()
