"""Semantic-guided attention on fixed features: does an attention map trained to *classify*
(Eq. 9 on features pooled under the map) with Eq. 4's L_MA land on the head and the tail of real
birds, without any part box?

    python bench/semantic_attention.py --root CUB50_PLUS [--size 320] [--epochs 30] [--pool softmax]

Features of the fixed ImageNet EfficientNet-Lite0 are computed once: the stride-16 cut the cpu
preset's attention reads (112 channels) and the stride-32 head (1280, post-activation), which is
what is pooled. The model's own ``MultiAttention`` (Eq. 1-3) gives n maps on the stride-16
features; each map pools the stride-32 features (``--pool sigmoid``: weights M_i / sum M_i;
``softmax``: a spatial softmax of M_i's logits), a linear W_i maps the pooled feature to the
attributes, and Eq. 9's softmax over the training classes is its loss, plus L_MA (Eq. 4-6).
Selection signal (no part box): each map-branch's ZSL accuracy on the validation classes.
Reported only: pointing and the quarter-side square at the peak, against head and tail boxes.
CPU only; fold 1 of cub50_plus.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from sgma.engine.attention import MultiAttention, multi_attention_loss
from sgma.engine.backbones import build_backbone, continued_backbone
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import image_sizes, peak_inside
from sgma.engine.loader import ImageSet


class Taps(torch.nn.Module):
    """EfficientNet-Lite0: the stride-16 cut's output (signed, what the s16 backbone gives) and the
    stride-32 head after its activation computed on it (``backbones.continued_backbone``)."""

    def __init__(self):
        super().__init__()
        self.cut = build_backbone("efficientnet_lite0_s16", "imagenet").eval()
        self.top = continued_backbone(self.cut, "efficientnet_lite0_s16", "efficientnet_lite0").trunk.top.eval()

    def forward(self, x):
        s16 = self.cut(x)
        return s16, self.top(s16)


def extract(taps, ds, ids, size, flip=False):
    ims = ImageSet(ds, ids, size)
    a, b = [], []
    with torch.no_grad():
        for s in range(0, len(ids), 32):
            x = torch.stack([ims[k][0] for k in range(s, min(s + 32, len(ids)))])
            if flip:
                x = x.flip(3)
            f16, f32 = taps(x)
            a.append(f16.half())
            b.append(f32.half())
    return torch.cat(a), torch.cat(b)


def square_iou(maps: np.ndarray, boxes, sizes, side=0.25) -> np.ndarray:
    """IoU of a square of ``side`` of each image's side, centred at the map's peak cell."""
    n, h, w = maps.shape
    pk = maps.reshape(n, -1).argmax(axis=1)
    cx, cy = (pk % w + 0.5) / w, (pk // w + 0.5) / h
    out = np.zeros(n)
    for k in range(n):
        W, H = sizes[k]
        x0, x1 = np.clip([cx[k] - side / 2, cx[k] + side / 2], 0, 1) * W
        y0, y1 = np.clip([cy[k] - side / 2, cy[k] + side / 2], 0, 1) * H
        b = boxes[k]
        iw = max(0, min(x1, b[2]) - max(x0, b[0]))
        ih = max(0, min(y1, b[3]) - max(y0, b[1]))
        inter = iw * ih
        out[k] = inter / ((x1 - x0) * (y1 - y0) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
    return out


class Probe(torch.nn.Module):
    def __init__(self, n_parts, sem_dim, pool, pooled):
        super().__init__()
        self.attention = MultiAttention(112, n_parts)
        dim = 1280 if pooled == "s32" else 112
        self.proj = torch.nn.ModuleList(torch.nn.Linear(dim, sem_dim, bias=False) for _ in range(n_parts))
        self.pool, self.pooled = pool, pooled
        self.tau = 1.0

    def forward(self, f16, f32):
        maps, _ = self.attention(f16)
        down = (lambda m: F.avg_pool2d(m, 2)) if self.pooled == "s32" else (lambda m: m)
        if self.pooled == "s16":
            f32 = f16.clamp(min=0)
        if self.pool == "sigmoid":
            w = down(maps)
            w = w / w.sum(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        else:
            logit = torch.logit(maps.clamp(1e-6, 1 - 1e-6))
            w = down(logit).flatten(2).div(self.tau).softmax(dim=2).view_as(down(maps))
        pooled = torch.einsum("bnhw,bchw->bnc", w, f32)
        phis = [F.normalize(p(pooled[:, i]), dim=1) for i, p in enumerate(self.proj)]
        return maps, phis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--pool", default="softmax", choices=("softmax", "sigmoid"))
    ap.add_argument("--ma", type=float, default=1.0, help="weight of L_MA")
    ap.add_argument("--lambda-div", type=float, default=0.05)
    ap.add_argument("--scale", type=float, default=10.0, help="softmax scale of Eq. 9")
    ap.add_argument("--parts", type=int, default=2)
    ap.add_argument("--pooled", default="s32", choices=("s32", "s16"), help="what a map pools")
    ap.add_argument("--cache", default="/tmp/semattn_feats.pt")
    args = ap.parse_args()
    torch.manual_seed(0)
    ds = load_dataset("cub", args.root, split="ps", fold=1)
    sp = ds.split
    labels = ds.labels
    tr_ids = sp.fold_train_images(labels)
    va_ids = sp.fold_val_images(labels)
    t0 = time.time()
    try:
        cache = torch.load(args.cache)
        assert cache["size"] == args.size and cache["n"] == (len(tr_ids), len(va_ids))
    except Exception:
        taps = Taps()
        cache = {"size": args.size, "n": (len(tr_ids), len(va_ids)),
                 "tr": extract(taps, ds, tr_ids, args.size), "va": extract(taps, ds, va_ids, args.size)}
        torch.save(cache, args.cache)
    print(f"features in {time.time() - t0:.0f} s")
    sem = torch.tensor(ds.semantics, dtype=torch.float32)
    sem = F.normalize(sem, dim=1)
    tr_classes = sorted(set(sp.train_classes))
    cmap = {c: k for k, c in enumerate(tr_classes)}
    y = torch.tensor([cmap[int(labels[i])] for i in tr_ids])
    s_tr = sem[tr_classes]
    va_classes = sorted(set(sp.val_classes))
    y_va = np.array([va_classes.index(int(labels[i])) for i in va_ids])
    s_va = sem[va_classes]
    f16, f32 = cache["tr"]
    v16, v32 = cache["va"]
    model = Probe(args.parts, sem.shape[1], args.pool, args.pooled)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    sizes = image_sizes(ds, va_ids)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in va_ids] for p in ("head", "tail")}
    n = len(tr_ids)
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(n)
        tot = [0.0, 0.0]
        for s in range(0, n, 32):
            b = perm[s:s + 32]
            flip = torch.rand(()) < 0.5
            a16, a32 = f16[b].float(), f32[b].float()
            if flip:
                a16, a32 = a16.flip(3), a32.flip(3)
            maps, phis = model(a16, a32)
            cls = sum(F.cross_entropy(args.scale * phi @ s_tr.T, y[b]) for phi in phis)
            ma = multi_attention_loss(maps, 0.1 * maps.shape[-1], args.lambda_div, 0.2)
            loss = cls + args.ma * ma
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot[0] += float(cls.detach()) * len(b)
            tot[1] += float(ma.detach()) * len(b)
        if ep % 5 == 4 or ep == args.epochs - 1:
            model.eval()
            with torch.no_grad():
                maps, phis = [], []
                for s in range(0, len(va_ids), 64):
                    m, p = model(v16[s:s + 64].float(), v32[s:s + 64].float())
                    maps.append(m)
                    phis.append(torch.stack(p, 1))
                maps = torch.cat(maps).numpy()
                phis = torch.cat(phis)
            zsl = []
            for i in range(args.parts):
                pred = (phis[:, i] @ s_va.T).argmax(1).numpy()
                zsl.append(np.mean([np.mean(pred[y_va == c] == c) for c in range(len(va_classes))]))
            fused = (phis.sum(1) @ s_va.T).argmax(1).numpy()
            zf = np.mean([np.mean(fused[y_va == c] == c) for c in range(len(va_classes))])
            line = f"ep {ep}: cls {tot[0] / n:.3f} ma {tot[1] / n:.3f} | val ZSL per map " + \
                " ".join(f"{z:.3f}" for z in zsl) + f" fused {zf:.3f} |"
            for i in range(args.parts):
                for p in ("head", "tail"):
                    have = [k for k, bx in enumerate(gt[p]) if bx is not None]
                    pt = peak_inside(maps[have, i], [gt[p][k] for k in have], sizes[have]).mean()
                    iou = square_iou(maps[have, i], [gt[p][k] for k in have], sizes[have])
                    line += f" m{i + 1} {p} pt {pt:.2f} sq {np.mean(iou > 0.5):.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
