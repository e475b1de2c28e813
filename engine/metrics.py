"""Evaluation metrics (numpy only).

- Zero-shot accuracy is the top-1 Mean Class Accuracy (MCA, section 4.2): the mean over classes of
  the per-class accuracy, so every class weighs the same whatever its number of images. Classes
  with no test image are left out of the mean (``classes`` chooses which classes count).
- GZSL (section 4.4): A_U and A_S are MCAs over unseen/seen test images classified among all
  classes; H = 2 A_S A_U / (A_S + A_U) (0 when both are 0).
- Part detection (section 4.3): a predicted box is correct when IoU > 0.5 with the ground-truth
  box; precision is the share of correct boxes over the images that HAVE that ground-truth part.
  The random baseline draws squares of the same side uniformly inside the image.
- Boxes are (x0, y0, x1, y1) with x1/y1 exclusive, so a box's area is (x1-x0)(y1-y0).
- ``calibrated_stacking`` (Chao et al., 2016) subtracts gamma from seen-class scores for GZSL.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def per_class_accuracy(y_true, y_pred, classes: Optional[Sequence[int]] = None) -> dict[int, float]:
    """Class -> accuracy over its images, for the classes that have at least one image."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    cls = np.unique(y_true) if classes is None else np.asarray(list(classes))
    out = {}
    for c in cls:
        m = y_true == c
        if m.any():
            out[int(c)] = float(np.mean(y_pred[m] == c))
    return out


def mean_class_accuracy(y_true, y_pred, classes: Optional[Sequence[int]] = None) -> float:
    """Top-1 MCA. 0.0 when no listed class has an image."""
    acc = per_class_accuracy(y_true, y_pred, classes)
    return float(np.mean(list(acc.values()))) if acc else 0.0


def gzsl_harmonic(acc_u: float, acc_s: float) -> float:
    s = acc_u + acc_s
    return 0.0 if s <= 0 else float(2.0 * acc_u * acc_s / s)


def confusion_matrix(y_true, y_pred, n: int) -> np.ndarray:
    """(n, n) int64 counts; rows are true classes, columns predicted classes."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64).ravel(), np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n):
        raise ValueError(f"labels must be in 0..{n - 1}")
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def calibrated_stacking(scores, seen_mask, gamma: float) -> np.ndarray:
    """Scores (N, C) minus gamma on the seen-class columns (``seen_mask``: (C,) bool)."""
    s = np.array(scores, dtype=np.float64, copy=True)
    mask = np.asarray(seen_mask, dtype=bool)
    if mask.shape != (s.shape[-1],):
        raise ValueError(f"seen_mask must have shape ({s.shape[-1]},), got {mask.shape}")
    s[..., mask] -= gamma
    return s


# ----------------------------------------------------------------------------- boxes
def iou_matrix(a, b) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_pairs(a, b) -> np.ndarray:
    """Row-wise IoU of two (N, 4) box arrays: (N,)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if a.shape != b.shape:
        raise ValueError(f"box arrays differ in shape: {a.shape} vs {b.shape}")
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou(box_a, box_b) -> float:
    return float(iou_pairs(box_a, box_b)[0])


def part_precision(pred_boxes, gt_boxes, thr: float = 0.5) -> float:
    """Share of images with IoU(pred, gt) > thr, over the images whose ``gt_boxes`` entry is not
    None (and not NaN). ``pred_boxes``/``gt_boxes`` are aligned sequences. NaN when no image has
    the part."""
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(f"{len(pred_boxes)} predicted boxes for {len(gt_boxes)} images")
    keep = [i for i, g in enumerate(gt_boxes) if g is not None and not np.any(np.isnan(np.asarray(g, float)))]
    if not keep:
        return float("nan")
    for i in keep:
        if pred_boxes[i] is None:
            raise ValueError(f"image {i} has a ground-truth part but no predicted box")
    p = np.array([pred_boxes[i] for i in keep], dtype=np.float64)
    g = np.array([gt_boxes[i] for i in keep], dtype=np.float64)
    return float(np.mean(iou_pairs(p, g) > thr))


def random_squares(image_sizes, side_frac: float, rng: np.random.Generator,
                   frame: str = "input") -> np.ndarray:
    """One random box per image, placed uniformly inside it. ``frame="input"``: a square of side
    side_frac * S in the model's S x S (resized) input, i.e. (side_frac * w) x (side_frac * h) in
    original pixels, the shape of the model's own crops mapped back; ``frame="image"``: a true
    square of side side_frac * min(w, h) in original pixels."""
    sz = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    if frame == "input":
        bw, bh = side_frac * sz[:, 0], side_frac * sz[:, 1]
    elif frame == "image":
        bw = bh = side_frac * sz.min(axis=1)
    else:
        raise ValueError(f"frame must be 'input' or 'image', got {frame!r}")
    x0 = rng.uniform(0, 1, len(sz)) * (sz[:, 0] - bw)
    y0 = rng.uniform(0, 1, len(sz)) * (sz[:, 1] - bh)
    return np.stack([x0, y0, x0 + bw, y0 + bh], axis=1)


def random_square_precision(gt_boxes, image_sizes, side_frac: float = 0.25,
                            rng: Optional[np.random.Generator] = None, n_draws: int = 10,
                            thr: float = 0.5, frame: str = "input") -> float:
    """Random baseline of Table 1: mean over ``n_draws`` of the precision of random squares of the
    attended squares' side (``side_frac``, a quarter in section 4.1; see ``random_squares``)
    against ``gt_boxes`` (None = the image lacks the part). NaN when no image has the part."""
    rng = np.random.default_rng(0) if rng is None else rng
    if len(gt_boxes) != len(image_sizes):
        raise ValueError(f"{len(gt_boxes)} boxes for {len(image_sizes)} image sizes")
    vals = [part_precision(list(random_squares(image_sizes, side_frac, rng, frame)), gt_boxes, thr)
            for _ in range(n_draws)]
    return float(np.mean(vals))
