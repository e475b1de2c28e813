"""Squares from maps that compete: does subtracting the other map take the head square off the neck?
(docs/results.md, run 28.)

    SGMA_SHARED_DATA=../shared/data python bench/contrast_squares.py RUN/best.pt CUB_ROOT [--val 343]

Run 23 found the head square's centre a median 0.145 of the head box's side on the body side: the
head map's mass leans into the neck, where the other map (wing and back) also fires. Each rule here
reads both maps of a trained model and no part box, and has no free magnitude:

- *contrast peak*: the peak of ``m_i - m_j`` (each map over its own maximum).
- *region*: the cells where ``m_i > m_j`` and ``m_i`` is at least half its maximum, the connected
  piece holding that peak. Its centre of mass (or bounding square's centre) with a quarter side, or
  its bounding square (the side follows the region, clamped to [0.1, 0.6] of the image).

The unsupervised signal beside each rule is its flip disagreement (run 16): the median distance
between the centre on the image and the mirrored centre on the mirrored image. Part boxes of the
validation images are reported, never used to choose.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy import ndimage

from centre_or_side import validation_cli
from sgma.engine.evaluate import point_inside, squares_to_pixel_boxes
from sgma.engine.metrics import iou_pairs
from square_rules import images_u8

RULES = ("peak", "contrast peak", "region centroid", "region box centre", "region box")


def region(own: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(h, w) maps -> the bool region of ``own`` against ``other`` and the contrast peak (row, col)."""
    a, b = own / (own.max() + 1e-9), other / (other.max() + 1e-9)
    d = a - b
    pk = np.unravel_index(int(np.argmax(d)), d.shape)
    lab, _ = ndimage.label((d > 0) & (a >= 0.5))
    r = lab == lab[pk] if lab[pk] else np.zeros_like(d, bool)
    r[pk] = True
    return r, pk


def square(own: np.ndarray, other: np.ndarray, rule: str) -> tuple[float, float, float]:
    """One map pair -> (cx, cy, side) as fractions of the image side."""
    h, w = own.shape
    if rule == "peak":
        y, x = np.unravel_index(int(np.argmax(own)), own.shape)
        return (x + 0.5) / w, (y + 0.5) / h, 0.25
    r, (py, px) = region(own, other)
    if rule == "contrast peak":
        return (px + 0.5) / w, (py + 0.5) / h, 0.25
    ys, xs = np.nonzero(r)
    if rule == "region centroid":
        m = own[ys, xs]
        return float((m * (xs + 0.5)).sum() / m.sum() / w), float((m * (ys + 0.5)).sum() / m.sum() / h), 0.25
    cx, cy = (xs.min() + xs.max() + 1) / 2 / w, (ys.min() + ys.max() + 1) / 2 / h
    if rule == "region box centre":
        return cx, cy, 0.25
    if rule == "region box":
        side = max((xs.max() + 1 - xs.min()) / w, (ys.max() + 1 - ys.min()) / h)
        return cx, cy, float(np.clip(side, 0.1, 0.6))
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


@torch.no_grad()
def maps_of(model, ims_u8, flip=False, batch=32):
    out = []
    for s in range(0, len(ims_u8), batch):
        x = ims_u8[s:s + batch].float() / 255
        m = model.attend(x.flip(-1) if flip else x)[1]
        out.append((m.flip(-1) if flip else m).numpy())
    return np.concatenate(out)


def main():
    t0 = time.time()
    model, ds, va, ex, sizes, gt, assign = validation_cli(keep_maps=False)
    n = len(va)
    u8 = images_u8(ds, va, model.cfg.attention_size)
    maps, fmaps = maps_of(model, u8), maps_of(model, u8, flip=True)   # fmaps: mirrored back
    print(f"{n} validation images, maps assigned {assign}: {time.time() - t0:.0f} s", flush=True)

    def report(part, sq, flip_sq=None):
        have = [k for k, g in enumerate(gt[part]) if g is not None]
        g = np.array([gt[part][k] for k in have])
        b = squares_to_pixel_boxes(sq[:, None], sizes)[have, 0]
        iou = iou_pairs(b, g)
        s = (f"IoU > 0.5 {np.mean(iou > 0.5):.3f}, mean IoU {iou.mean():.3f}, "
             f"centre in box {point_inside(sq[have, :2], g, sizes[have]).mean():.3f}, "
             f"mean side {sq[:, 2].mean():.3f}")
        if flip_sq is not None:
            s += f"; flip disagreement {np.median(np.hypot(*(sq[:, :2] - flip_sq[:, :2]).T)):.3f}"
        return s

    print(f"{'model':24s} head: {report('head', ex['squares'][:, assign['head']])}")
    print(f"{'model':24s} tail: {report('tail', ex['squares'][:, assign['tail']])}")
    for part in ("head", "tail"):
        i, j = assign[part], assign["tail" if part == "head" else "head"]
        for rule in RULES:
            sq = np.array([square(maps[k, i], maps[k, j], rule) for k in range(n)])
            fsq = np.array([square(fmaps[k, i], fmaps[k, j], rule) for k in range(n)])
            print(f"{rule:24s} {part}: {report(part, sq, fsq)}", flush=True)
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
