"""Head and tail ground-truth boxes for CUB-200-2011 from its 15 part keypoints (section 4.3).

CUB gives one (x, y, visible) keypoint per part, no part boxes. SGMA's Table 1 compares its two
attended regions with "head or tail ground truth annotations" as SPDA-CNN does, so we build the
boxes with this rule (original-image pixels, ``(x0, y0, x1, y1)``, x1/y1 exclusive):

- **head** = the visible keypoints among beak, crown, forehead, left eye, right eye, nape, throat.
  Box = a square centred on the centre of their bounding box, side
  ``max(HEAD_EXPAND * max(extent_w, extent_h), MIN_SIDE_FRAC * max(bird_w, bird_h))`` where
  ``bird_w/h`` is the CUB object bounding box. The keypoints are part *centres* (the beak point is
  mid-beak, the crown point mid-crown), so the tight box of the points undercuts the head; the 1.2
  factor and the floor of a quarter of the bird's size (the attended square of section 4.1 is a
  quarter of the image) give a box that covers the head in the real images we inspected.
  A single visible head point gives the minimum square around it.
- **tail** = the tail keypoint. Box = a square of side ``MIN_SIDE_FRAC * max(bird_w, bird_h)``
  centred on it. We do NOT shift it away from the body: on the real CUB images we checked
  (shared/data/cub_images) the tail point is placed mid-tail, not at the tail's base, so a centred
  box covers the tail; long tails (cuckoos, grackles) stick out of it.
- Boxes are clipped to the image when its size is known (clipped boxes may be non-square).
- A part with no visible keypoint gets no box; such images are excluded from that part's precision.

How close to SPDA-CNN: SPDA-CNN (Zhang et al., CVPR 2016) also derives its head box from the head
keypoints and boxes the single-keypoint parts (tail) around the keypoint, but we could not check its
exact expansion factors; the numbers here are our own and may differ, so precision values compare
to the paper's Table 1 only approximately.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from .base import Box

HEAD_KEYPOINTS = ("beak", "crown", "forehead", "left eye", "right eye", "nape", "throat")
TAIL_KEYPOINTS = ("tail",)
HEAD_EXPAND = 1.2
MIN_SIDE_FRAC = 0.25
PART_NAMES = ["head", "tail"]

Keypoint = tuple[float, float, bool]   # x, y, visible


def square_box(cx: float, cy: float, side: float, image_size: Optional[tuple[int, int]] = None) -> Box:
    h = side / 2.0
    x0, y0, x1, y1 = cx - h, cy - h, cx + h, cy + h
    if image_size is not None:
        w, ht = image_size
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(ht), y1)
    return (float(x0), float(y0), float(x1), float(y1))


def head_box(points: Sequence[tuple[float, float]], bird_box: Box,
             image_size: Optional[tuple[int, int]] = None) -> Optional[Box]:
    """The head square from the visible head keypoints (see module docstring); None if none."""
    if len(points) == 0:
        return None
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lo, hi = p.min(axis=0), p.max(axis=0)
    extent = float((hi - lo).max())
    bird = max(bird_box[2] - bird_box[0], bird_box[3] - bird_box[1])
    side = max(HEAD_EXPAND * extent, MIN_SIDE_FRAC * bird)
    c = (lo + hi) / 2.0
    return square_box(c[0], c[1], side, image_size)


def tail_box(point: Optional[tuple[float, float]], bird_box: Box,
             image_size: Optional[tuple[int, int]] = None) -> Optional[Box]:
    if point is None:
        return None
    bird = max(bird_box[2] - bird_box[0], bird_box[3] - bird_box[1])
    return square_box(point[0], point[1], MIN_SIDE_FRAC * bird, image_size)


def cub_part_boxes(keypoints: Mapping[str, Keypoint], bird_box: Box,
                   image_size: Optional[tuple[int, int]] = None) -> dict[str, Box]:
    """``keypoints``: CUB part name -> (x, y, visible); ``bird_box`` as (x0, y0, x1, y1).
    Returns {"head": box, "tail": box} with the parts that are visible."""
    out: dict[str, Box] = {}
    head = [(x, y) for n, (x, y, v) in keypoints.items() if v and n in HEAD_KEYPOINTS]
    hb = head_box(head, bird_box, image_size)
    if hb is not None:
        out["head"] = hb
    tail = [(x, y) for n, (x, y, v) in keypoints.items() if v and n in TAIL_KEYPOINTS]
    tb = tail_box(tail[0] if tail else None, bird_box, image_size)
    if tb is not None:
        out["tail"] = tb
    return out
