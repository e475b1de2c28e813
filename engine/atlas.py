"""Part atlas: for each attention map, the images of a dataset where that map fires most.

What a map "means" shows over many images: the k images with the highest peak of map i (the
maximum of M_i over its cells, Eq. 3's map as the model computes it), with where the peak is and
the side of the square the cropping net gave that map on that image (Eq. 7). The app shows a crop
of each image around the peak (``peak_crop_box``).

Choices (not from the paper, which has no such view): the score of an image is the peak value, not
the map's mean or mass, so a map that fires strongly on a small part ranks first; the crop is
centred on the peak cell (not on the predicted square, which the cropping net may place beside
it) with the side of that map's predicted square, kept inside the image; ties go to the image
seen first (the lower position in ``indices``).

A model whose second square is the object's far end (``model.far_end_square``, engine/objectness.py)
does not place that square at its map's peak. Its row shows the far-end squares: each crop is
centred on the square the model uses, and images are ranked by the anchor map's peak, the square
the far end is measured from (the far end has no map value of its own). Choice: the map's own
peak would show where map 2 fires, which is no longer where the model looks for that part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .extract import extract

CHUNK = 128              # images per extraction pass (progress / cancel granularity)


@dataclass
class AtlasMap:
    """The top images of one attention map, best first."""
    indices: np.ndarray       # (k,) dataset image indices
    peaks: np.ndarray         # (k, 2) peak cell centre (x, y) as fractions of the image's width and height
    values: np.ndarray        # (k,) the map's peak value on that image
    sides: np.ndarray         # (k,) t_s of that map's predicted square on that image (fraction of the side)
    far_end: bool = False     # the row shows the far-end squares, ranked by the anchor map's peak


def peak_cells(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """maps (N, h, w) -> the peak value (N,) and the peak cell centre (N, 2) as (x, y) fractions
    of the map's width and height (the first maximal cell in row-major order)."""
    n, h, w = maps.shape
    flat = maps.reshape(n, -1)
    cell = flat.argmax(axis=1)
    values = flat[np.arange(n), cell].astype(np.float64)
    peaks = np.stack([(cell % w + 0.5) / w, (cell // w + 0.5) / h], axis=1)
    return values, peaks


def top_peaks(maps: np.ndarray, indices: Sequence[int], k: int, sides: Optional[np.ndarray] = None,
              previous: Optional[list[AtlasMap]] = None,
              far_end: Optional[tuple[int, int, np.ndarray]] = None) -> list[AtlasMap]:
    """The k images with the highest peak, per map. maps (N, n_maps, h, w) of the images
    ``indices``; ``sides`` (N, n_maps) the predicted squares' t_s (NaN when not given);
    ``previous``: the result for earlier images, merged in (its entries win ties).
    ``far_end`` (map, anchor map, centres (N, 2)): that map's row holds the far-end squares'
    centres, ranked by the anchor map's peak."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    maps = np.asarray(maps, dtype=np.float32)
    indices = np.asarray(indices, dtype=np.int64)
    n_img, n_maps = maps.shape[:2]
    if len(indices) != n_img:
        raise ValueError(f"{n_img} maps for {len(indices)} image indices")
    sides = np.full((n_img, n_maps), np.nan) if sides is None else np.asarray(sides, dtype=np.float64)
    found = [peak_cells(maps[:, m]) for m in range(n_maps)]
    out = []
    for m in range(n_maps):
        values, peaks = found[m]
        is_far_end = far_end is not None and m == far_end[0]
        if is_far_end:
            values, peaks = found[far_end[1]][0], np.asarray(far_end[2], dtype=np.float64).reshape(n_img, 2)
        idx, side = indices, sides[:, m]
        if previous is not None:
            p = previous[m]
            idx, values = np.concatenate([p.indices, idx]), np.concatenate([p.values, values])
            peaks, side = np.concatenate([p.peaks, peaks]), np.concatenate([p.sides, side])
        order = np.argsort(-values, kind="stable")[:k]
        out.append(AtlasMap(idx[order], peaks[order], values[order], side[order], is_far_end))
    return out


def part_atlas(model, dataset, indices: Optional[Sequence[int]] = None, k: int = 8, batch_size: int = 32,
               device=None, progress: Optional[Callable[[int, int], None]] = None,
               chunk: int = CHUNK) -> list[AtlasMap]:
    """One autograd-free pass of ``model`` over ``indices`` (every image by default), in chunks
    that keep only the running top k per map; ``progress(done, total)`` between chunks (it may
    raise to cancel)."""
    if device is None:
        device = next(model.parameters()).device
    indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    fe = getattr(model, "far_end_map", None)
    anchor = getattr(model, "anchor_map", None)
    result = None
    for s in range(0, len(indices), chunk):
        if progress is not None:
            progress(s, len(indices))
        ex = extract(model, dataset, indices[s:s + chunk], batch_size, device, keep_maps=True)
        far_end = None if fe is None else (fe, anchor, ex["squares"][:, fe, :2])
        result = top_peaks(ex["maps"], ex["indices"], k, ex["squares"][..., 2], previous=result, far_end=far_end)
    if progress is not None:
        progress(len(indices), len(indices))
    if result is None:
        n = model.cfg.n_parts
        result = [AtlasMap(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0), np.zeros(0), m == fe)
                  for m in range(n)]
    return result


def peak_crop_box(peak, side: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixel box (x0, y0, x1, y1) of a crop centred on ``peak`` ((x, y) fractions), ``side``
    a fraction of each image side (as the model's squares: width and height scale with their
    axes), shifted to lie inside the image; a side that is NaN or not positive means a quarter."""
    side = 0.25 if not np.isfinite(side) or side <= 0 else min(float(side), 1.0)
    bw, bh = max(1, round(side * width)), max(1, round(side * height))
    x0 = int(round(peak[0] * width - bw / 2))
    y0 = int(round(peak[1] * height - bh / 2))
    x0, y0 = min(max(x0, 0), width - bw), min(max(y0, 0), height - bh)
    return x0, y0, x0 + bw, y0 + bh
