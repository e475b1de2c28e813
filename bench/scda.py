"""The annotation-free object mask and box of the square probes (SCDA, Wei et al. 2017): the sum of a
fixed CNN's channels above its mean over the map, largest connected component. Shared by
bench/square_analysis.py and bench/square_rules.py; probes only, the engine does not use it."""
from __future__ import annotations

import numpy as np


def object_mask(activation_sum: np.ndarray) -> np.ndarray:
    """(h, w) channel sum -> (h, w) bool: the largest connected region above the map's mean."""
    from scipy import ndimage
    mask = activation_sum > activation_sum.mean()
    labels, n = ndimage.label(mask)
    if n:
        mask = labels == int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1)))) + 1
    return mask


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a mask's cells as fractions of its side (x1, y1 exclusive)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h
