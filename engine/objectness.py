"""The object's far end: an annotation-free square for the part the attention maps miss
(``model.far_end_square``; docs/results.md, run 30).

Not in the paper. On real CUB no map of the fixed features finds the tail (runs 2-29), but the tail
is where the bird's geometry says: at the far end of the bird from the head. So with two parts,
one map's square (the *anchor*, the head's on CUB) stays the paper's (Eq. 7), and the other part's
square is placed at the far end of the object from it:

1. **The object** (Deep Descriptor Transforming, Wei et al., Pattern Recognition 2019). The
   descriptors of every cell of the training images (the fixed image-branch CNN at
   ``model.object_size``) are centred on their mean and projected on their first principal
   direction. Every training image shows the object (a bird), so that direction separates it from
   the rest. Chosen here: the sign makes the training images' border cells project below zero on
   average (``fit_object_direction``). The mask is the projection upsampled bilinearly ``UPSAMPLE``
   times, above zero, largest connected region (DDT's own read-out).
2. **The far end** (``far_end_square``): the mask cell farthest from the anchor square's centre,
   moved back towards that centre by half the square's side, so that the square holds the
   object's end instead of sitting on its tip. Side: a quarter of the object's side (the paper's
   quarter of the image, section 4.1, taken of the object), clamped to the model's part sides.
3. **The anchor** (``anchor_map``): the map whose peaks fall inside the object mask more often on
   a sample of training images (no label).

The rule (upsampled mask, moved inside, quarter of the object) was picked among four read-outs
after seeing validation-class part boxes (run 30); that is said in docs/results.md.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .attention import peak_positions

UPSAMPLE = 8   # DDT reads its projection out upsampled; 8 x 14 = 112 cells across at 448 px


class ObjectStats:
    """Running first and second moments of cell descriptors, over all cells and over the border
    cells, so that the DDT direction is fitted without holding the features."""

    def __init__(self) -> None:
        self.n = self.n_border = 0
        self.sum = self.gram = self.border_sum = None

    def add(self, features: torch.Tensor) -> None:
        """features (B, C, h, w)."""
        b, c, h, w = features.shape
        cells = features.detach().double().cpu().permute(0, 2, 3, 1)      # (B, h, w, C)
        x = cells.reshape(-1, c)
        edge = torch.zeros(h, w, dtype=torch.bool)
        edge[0], edge[-1], edge[:, 0], edge[:, -1] = True, True, True, True
        if self.sum is None:
            self.sum, self.gram, self.border_sum = torch.zeros(c, dtype=torch.float64), \
                torch.zeros(c, c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.gram += x.t() @ x
        border = cells[:, edge].reshape(-1, c)
        self.n_border += border.shape[0]
        self.border_sum += border.sum(0)


def fit_object_direction(stats: ObjectStats) -> tuple[torch.Tensor, torch.Tensor]:
    """DDT: (mean, unit direction) of the descriptors in ``stats``; the direction is the covariance's
    leading eigenvector, signed so that the border cells' mean projects below zero."""
    if stats.n < 2:
        raise ValueError("the object direction needs descriptors of at least two cells")
    mean = stats.sum / stats.n
    cov = stats.gram / stats.n - torch.outer(mean, mean)
    _, vecs = torch.linalg.eigh(cov)
    d = vecs[:, -1]
    if float((stats.border_sum / stats.n_border - mean) @ d) > 0:
        d = -d
    return mean.float(), d.float()


def object_projection(features: torch.Tensor, mean: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h, w): each cell's centred descriptor on the object direction."""
    return torch.einsum("bchw,c->bhw", features.float() - mean.view(1, -1, 1, 1), direction)


def object_masks(projection: torch.Tensor, upsample: int = UPSAMPLE) -> np.ndarray:
    """(B, h, w) projections -> (B, upsample h, upsample w) bool: upsampled bilinearly, above zero,
    the largest connected region (all False when no cell is above zero)."""
    from scipy import ndimage
    p = F.interpolate(projection.float()[:, None], scale_factor=upsample, mode="bilinear",
                      align_corners=False)[:, 0].cpu().numpy()
    out = np.zeros(p.shape, dtype=bool)
    for k, x in enumerate(p):
        labels, n = ndimage.label(x > 0)
        if n:
            out[k] = labels == int(np.argmax(ndimage.sum(x > 0, labels, range(1, n + 1)))) + 1
    return out


def object_side(mask: np.ndarray, side_min: float = 0.0, side_max: float = 1.0) -> Optional[float]:
    """(h, w) object mask -> a quarter of its bounding box's longer side as a fraction of the image
    side, clamped to [side_min, side_max]; None for an empty mask."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    obj = max((xs.max() + 1 - xs.min()) / w, (ys.max() + 1 - ys.min()) / h)
    return float(np.clip(0.25 * obj, side_min, side_max))


def far_end_square(mask: np.ndarray, anchor: np.ndarray, side_min: float = 0.0,
                   side_max: float = 1.0) -> Optional[np.ndarray]:
    """(h, w) object mask and anchor centre (x, y) as fractions of the image side -> the square
    (t_x, t_y, t_s) at the object's far end from the anchor, or None for an empty mask. The farthest
    cell's centre is moved towards the anchor by half the side (not past it); the side is
    ``object_side``: a quarter of the mask's bounding-box side, clamped to [side_min, side_max]."""
    side = object_side(mask, side_min, side_max)
    if side is None:
        return None
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    cells = np.stack([(xs + 0.5) / w, (ys + 0.5) / h], 1)
    far = cells[np.argmax(((cells - anchor) ** 2).sum(1))]
    v = np.asarray(anchor, dtype=np.float64) - far
    dist = float(np.hypot(*v))
    centre = far + (v / dist * min(side / 2, dist) if dist > 0 else 0.0)
    return np.array([centre[0], centre[1], side])


def peaks_inside(maps: torch.Tensor, masks: np.ndarray) -> np.ndarray:
    """(B, n, h, w) maps and (B, H, W) masks -> (B, n) bool: each map's peak cell centre in the mask."""
    b, n, h, w = maps.shape
    rc = peak_positions(maps).cpu().numpy()
    py, px = (rc[..., 0] + 0.5) / h, (rc[..., 1] + 0.5) / w
    H, W = masks.shape[1:]
    rows = np.minimum((py * H).astype(int), H - 1)
    cols = np.minimum((px * W).astype(int), W - 1)
    return masks[np.arange(b)[:, None], rows, cols]


def choose_anchor_map(inside: np.ndarray) -> int:
    """The anchor: the map whose peaks fall inside the object most often ((N, n) from ``peaks_inside``)."""
    return int(np.argmax(inside.mean(0)))


class FarEndSquare(nn.Module):
    """The fitted object direction and anchor map (buffers, saved with the model), and the square
    replacement of ``SGMA.forward``: every map other than the anchor gets the far-end square."""

    def __init__(self, channels: int, side_min: float, side_max: float, anchor_object_side: bool = False):
        super().__init__()
        self.side_min, self.side_max = side_min, side_max
        self.anchor_object_side = anchor_object_side
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("direction", torch.zeros(channels))
        self.register_buffer("anchor", torch.tensor(-1))

    @property
    def fitted(self) -> bool:
        return int(self.anchor) >= 0

    @property
    def anchor_map(self) -> Optional[int]:
        """The map whose peak anchors the far end (the head's, on birds), None until fitted."""
        return int(self.anchor) if self.fitted else None

    @property
    def replaced_map(self) -> Optional[int]:
        """The map whose square is the object's far end (two parts), None until fitted."""
        return 1 - int(self.anchor) if self.fitted else None

    def set_direction(self, mean: torch.Tensor, direction: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.direction.copy_(direction)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return object_projection(features, self.mean, self.direction)

    def forward(self, projection: torch.Tensor, squares: torch.Tensor) -> torch.Tensor:
        """projection (B, h, w), squares (B, n, 3) -> squares with the non-anchor maps' replaced
        (an image whose mask is empty keeps its squares). With ``anchor_object_side`` the anchor's
        side is the far end's too (a quarter of the object's side); its centre stays its own."""
        a = int(self.anchor)
        masks = object_masks(projection)
        out = squares.detach().clone()
        anchors = squares[:, a, :2].detach().cpu().double().numpy()
        for k, m in enumerate(masks):
            sq = far_end_square(m, anchors[k], self.side_min, self.side_max)
            if sq is not None:
                for i in range(squares.shape[1]):
                    if i != a:
                        out[k, i] = torch.as_tensor(sq, dtype=squares.dtype)
                if self.anchor_object_side:
                    out[k, a, 2] = float(sq[2])
        # the anchor keeps its own (differentiable) centre, and its side unless anchor_object_side
        n = squares.shape[1]
        keep = torch.arange(n, device=squares.device).view(1, -1, 1) == a
        if self.anchor_object_side:
            keep = keep & (torch.arange(3, device=squares.device).view(1, 1, 3) < 2)
        return torch.where(keep, squares, out)
