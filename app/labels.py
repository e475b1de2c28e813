"""Where the box labels of the part audit go, so that none covers another and none leaves the
image; and predicted squares clipped to the image.

Pure geometry on ``(x, y, w, h)`` tuples in one coordinate system (scene units of the view, or
pixels of an exported figure): the caller converts the labels' on-screen size to that system.
Choices the issue leaves open: ground-truth labels are placed first (the truth is never the one
pushed away), each label tries the corners of its own box in a fixed order (positions inside the image
as they are first, then the others moved into it), and a label that
fits at none of them is slid down (then up) in steps of its height from its first choice until
it is free; if the image is full it keeps its first choice.
"""
from __future__ import annotations

from typing import Sequence

Rect = tuple[float, float, float, float]          # x, y, w, h
GAP = 1.0


def square_label(m: int, far_end_map, part=None) -> str:
    """The plate of map ``m``'s predicted square: "map2 · far end · tail" (the far end when the
    model places that square at the object's far end, model.far_end_square; the part it was matched to)."""
    return f"map{m + 1}" + (" · far end" if m == far_end_map else "") + (f" · {part}" if part else "")


def clip_box(box: Sequence[float], width: float, height: float) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` clipped to the image ``[0, width] x [0, height]``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    return x0, y0, max(x1, x0), max(y1, y0)


def candidates(box: Sequence[float], w: float, h: float, truth: bool) -> list[Rect]:
    """Label positions around one box, best first: ground truth hangs below its box (then above,
    then inside at the bottom); a predicted square's label sits inside its top-left corner (then
    above it, inside bottom-right, below it)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if truth:
        pts = [(x0, y1 + GAP), (x0, y0 - h - GAP), (x0, y1 - h), (x1 - w, y1 + GAP), (x1 - w, y0 - h - GAP)]
    else:
        pts = [(x0 + GAP, y0 + GAP), (x0, y0 - h - GAP), (x1 - w - GAP, y1 - h - GAP), (x1 - w, y1 + GAP),
               (x1 - w - GAP, y0 + GAP), (x0 + GAP, y1 - h - GAP)]
    return [(x, y, w, h) for x, y in pts]


def clamp(r: Rect, bounds: Rect) -> Rect:
    """``r`` moved (not resized) to lie inside ``bounds`` as far as its size allows."""
    x, y, w, h = r
    bx, by, bw, bh = bounds
    x = min(max(x, bx), max(bx + bw - w, bx))
    y = min(max(y, by), max(by + bh - h, by))
    return x, y, w, h


def overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def place_labels(boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[float, float]],
                 truth: Sequence[bool], bounds: Rect) -> list[Rect]:
    """One rectangle per label (same order as ``boxes``), inside ``bounds``, overlapping no
    other label whenever the image has room."""
    order = sorted(range(len(boxes)), key=lambda k: (not truth[k], k))
    placed: dict[int, Rect] = {}
    for k in order:
        w, h = sizes[k]
        raw = candidates(boxes[k], w, h, truth[k])
        inside = [c for c in raw if clamp(c, bounds) == c]      # positions that fit as they are first
        cands = inside + [clamp(c, bounds) for c in raw if c not in inside]
        free = [c for c in cands if not any(overlaps(c, p) for p in placed.values())]
        if free:
            placed[k] = free[0]
            continue
        first = cands[0]
        chosen = first
        step = max(h, 1e-6)
        n = int(bounds[3] / step) + 1
        for d in [s * step for j in range(1, n + 1) for s in (j, -j)]:
            c = clamp((first[0], first[1] + d, w, h), bounds)
            if not any(overlaps(c, p) for p in placed.values()):
                chosen = c
                break
        placed[k] = chosen
    return [placed[k] for k in range(len(boxes))]
