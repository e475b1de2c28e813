"""Can the demo's fixed ImageNet channels localise head and tail, and does stage 1 find them?

    python bench/channel_probe.py [--images 480] [--val 160]

On the synthetic birds (demo preset: EfficientNet-Lite0 cut at stride 16, 192 px, 12 x 12 maps)
it prints, on validation-class images, the part precision (IoU > 0.5 of a quarter-side square
centred at the map's peak) of:
- the best single channel (chosen on the validation images themselves: an upper bound);
- a supervised linear probe over the channels, fitted on the training-class images with the part
  boxes (an upper bound for any a_i-weighted map of Eq. 3), with all and with non-negative weights;
- the two groups of stage 1 (``kmeans_channel_groups``, ``colocation_channel_groups``) fitted on
  the training-class images without part boxes, each scored as head and as tail.
Results: docs/results.md. CPU only, about a minute.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from sgma.engine.backbones import build_backbone
from sgma.engine.colocation import colocation_channel_groups
from sgma.engine.config import preset
from sgma.engine.cropping import squares_to_boxes
from sgma.engine.loader import ImageSet
from sgma.engine.metrics import iou_pairs
from sgma.engine.stages import kmeans_channel_groups, pseudo_squares
from sgma.engine.data.registry import load_data

PARTS = ("head", "tail")


def features(net, ds, ids, size):
    ims = ImageSet(ds, ids, size)
    with torch.no_grad():
        return torch.cat([net(torch.stack([ims[k][0] for k in range(s, min(s + 64, len(ids)))]))
                          for s in range(0, len(ids), 64)])


def precision(maps: np.ndarray, boxes: np.ndarray, size: int, side: float = 0.25) -> float:
    """Share of images whose stage-2 pseudo square (``pseudo_squares``) has IoU > 0.5 with ``boxes``."""
    squares = pseudo_squares(torch.from_numpy(np.ascontiguousarray(maps))[:, None], side)[:, 0]
    return float((iou_pairs(squares_to_boxes(squares, size, size).numpy(), boxes) > 0.5).mean())


def probe_targets(boxes: np.ndarray, size: int, h: int, w: int) -> np.ndarray:
    """1 at the map cells within one cell of the box centre."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / size * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / size * h
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    return ((abs(xx[None] - cx[:, None, None]) < 1) & (abs(yy[None] - cy[:, None, None]) < 1)).astype(int)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=480, help="training-class images for stage 1 and the probe")
    ap.add_argument("--val", type=int, default=160, help="validation-class images scored")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    torch.set_num_threads(2)
    cfg = preset("demo")
    ds = load_data(cfg.data)
    sp, size = ds.split, cfg.model.attention_size
    train_ids = [i for i in sp.trainval if ds.labels[i] in set(sp.train_classes)][:args.images]
    val_ids = [i for i in sp.trainval if ds.labels[i] in set(sp.val_classes)][:args.val]
    net = build_backbone(cfg.model.backbone, cfg.model.pretrained).eval()
    ft, fv = features(net, ds, train_ids, size), features(net, ds, val_ids, size)
    n, c, h, w = fv.shape
    gt_t = {p: np.array([ds.items[i].part_boxes[p] for i in train_ids], float) for p in PARTS}
    gt_v = {p: np.array([ds.items[i].part_boxes[p] for i in val_ids], float) for p in PARTS}
    print(f"{len(train_ids)} training-class and {len(val_ids)} validation-class images, {c} channels, {h} x {w} maps")
    fvn = fv.numpy()
    for p in PARTS:
        single = max(precision(fvn[:, k], gt_v[p], size) for k in range(c))
        x_t = ft.numpy().transpose(0, 2, 3, 1).reshape(-1, c)
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(x_t, probe_targets(gt_t[p], size, h, w).reshape(-1))
        probe = np.einsum("nchw,c->nhw", fvn, lr.coef_[0])
        nonneg = np.einsum("nchw,c->nhw", fvn, np.clip(lr.coef_[0], 0, None))
        print(f"{p}: best single channel {single:.3f}; linear probe {precision(probe, gt_v[p], size):.3f}, "
              f"non-negative {precision(nonneg, gt_v[p], size):.3f}")
    for name, groups in (("k-means", kmeans_channel_groups(ft, 2, 0)),
                         ("co-location", colocation_channel_groups(ft, 2, 0))):
        if len(groups) == 0:
            print(f"{name}: no groups")
            continue
        for g in range(2):
            m = fvn[:, groups == g].sum(1)
            scores = ", ".join(f"as {p} {precision(m, gt_v[p], size):.3f}" for p in PARTS)
            print(f"{name} group {g + 1} ({int((groups == g).sum())} channels): {scores}")


if __name__ == "__main__":
    main()
