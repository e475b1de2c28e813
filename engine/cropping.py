"""Region cropping subnet (section 3.2): square parameters from an attention map (Eq. 7), the
continuous boxcar mask (Eq. 8), and the differentiable crop-and-zoom of the masked image.

Coordinates: the cropping net outputs (t_x, t_y, t_s) as fractions of the attention-input image
side, each in (0, 1) through a sigmoid (t_s is mapped into [side_min, side_max]). The boxcar mask
of Eq. 8 is evaluated in *pixels* of the attention-input image, where the paper's k = 10 gives an
edge about one pixel wide, as in RA-CNN [36]. The masked image x * V_i is then zoomed: the square
is resampled bilinearly to the part size with ``grid_sample``. Gradients reach t_x, t_y, t_s
through both the mask and the sampling grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CroppingNet(nn.Module):
    """Eq. 7: [t_x, t_y, t_s] = f_CNet(M_i), two FC layers over the attention map. One network
    serves every part, as the equation has no part index.

    Choice (docs/choices.md): the map enters as a spatial distribution, softmax(M_i / 0.005) over
    positions, and the first layer's first four units start as the distribution's mean x and y
    (split into positive and negative halves around 0.5, so the ReLU keeps them); the second layer
    starts by passing them on, so at initialisation (t_x, t_y) is the soft-argmax of the map, near
    its peak. The centre is the output clamped to [0, 1], its gradient leaking 0.01 outside (a sigmoid
    would compress it near the borders); the side goes through a sigmoid into [side_min, side_max]. An FC net
    fitted from scratch to the peaks of a few hundred 12 x 12 maps generalised poorly: 0.49 head
    precision against 0.93 for the peaks themselves, 0.62 with this start (synthetic birds).
    Sigmoid maps saturate near their peak; a second, weaker blob then pulls the soft-argmax away
    from the peak unless T is small (on synthetic validation birds, tail precision of the
    soft-argmax: 0.60 at T = 0.005, 0.69 at T = 0.001, where the hard peak gets 0.69)."""

    def __init__(self, map_size: tuple[int, int], hidden: int = 256,
                 side_min: float = 0.1, side_max: float = 0.6, side_init: float = 0.25,
                 temperature: float = 0.005):
        super().__init__()
        self.temperature = temperature
        h, w = map_size
        self.fc1 = nn.Linear(h * w, hidden)
        self.fc2 = nn.Linear(hidden, 3)
        self.side_min, self.side_max = side_min, side_max
        with torch.no_grad():
            ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
            xs, ys = xs.flatten(), ys.flatten()
            self.fc1.weight[:4] = torch.stack([xs, -xs, ys, -ys])
            self.fc1.bias[:4] = torch.tensor([-0.5, 0.5, -0.5, 0.5])
            self.fc2.weight.mul_(0.01)
            self.fc2.weight[:2, :4] = torch.tensor([[1.0, -1.0, 0, 0], [0, 0, 1.0, -1.0]])
            self.fc2.bias.zero_()
            self.fc2.bias[:2] = 0.5
            self.fc2.bias[2] = torch.logit(torch.tensor((side_init - side_min) / (side_max - side_min)))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, n, H, W) -> (B, n, 3) squares (t_x, t_y, t_s) as fractions of the image side."""
        p = torch.softmax(maps.flatten(2) / self.temperature, dim=2)
        raw = self.fc2(F.relu(self.fc1(p)))
        centre = raw[..., :2].clamp(0, 1)
        centre = centre + 0.01 * (raw[..., :2] - raw[..., :2].detach())   # value clamped, gradient leaks
        side = self.side_min + (self.side_max - self.side_min) * torch.sigmoid(raw[..., 2])
        return torch.cat([centre, side[..., None]], dim=-1)


def peak_centroid(maps: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """The centre of mass of each map's (2r+1) x (2r+1) cells around its peak, the cells' values
    taken above the window's minimum (cells outside the map left out), as fractions of the map
    side: a sub-cell estimate of where the map peaks. (B, n, H, W) -> (B, n, 2) (x, y). No gradient.

    Choice (docs/choices.md, ``model.crop_centre = "peak_centroid"``): on real birds the cropping
    net's soft-argmax, fitted to the hard peak, moves the square in whole cells of a 20 x 20 map;
    r = 1 is the smallest window, the usual sub-cell refinement of a peak, fixed before any
    result was seen (a 5 x 5 window scored higher on validation part boxes and was not chosen:
    part boxes never choose)."""
    maps = maps.detach()
    b, n, h, w = maps.shape
    flat = maps.reshape(b, n, h * w)
    k = flat.argmax(dim=2)
    py, px = torch.div(k, w, rounding_mode="floor"), k % w
    offs = torch.arange(-radius, radius + 1, device=maps.device)
    ys = py[..., None, None] + offs.view(-1, 1)                    # (B, n, r, 1)
    xs = px[..., None, None] + offs.view(1, -1)                    # (B, n, 1, r)
    ys, xs = torch.broadcast_tensors(ys, xs)
    valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).reshape(b, n, -1)
    vals = flat.gather(2, idx).view_as(ys)
    low = torch.where(valid, vals, torch.full_like(vals, float("inf"))).amin(dim=(2, 3), keepdim=True)
    wts = torch.where(valid, vals - low, torch.zeros_like(vals))
    total = wts.sum(dim=(2, 3))
    safe = total.clamp_min(1e-12)
    cx = torch.where(total > 0, (wts * xs).sum(dim=(2, 3)) / safe, px.to(vals.dtype))
    cy = torch.where(total > 0, (wts * ys).sum(dim=(2, 3)) / safe, py.to(vals.dtype))
    return torch.stack([(cx + 0.5) / w, (cy + 0.5) / h], dim=-1)


def boxcar(x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, k: float = 10.0) -> torch.Tensor:
    """Eq. 8 at given positions: V(x, y) = V_x V_y, V_x = f(x - t_x + t_s/2) - f(x - t_x - t_s/2),
    f(x) = 1/(1+exp(-kx)). ``x``, ``y`` and the square ``t`` (..., 3) share one unit (pixels here).
    ``x`` and ``y`` broadcast against ``t[..., 0, None, None]``."""
    tx, ty, ts = (t[..., i, None, None] for i in range(3))
    vx = torch.sigmoid(k * (x - tx + 0.5 * ts)) - torch.sigmoid(k * (x - tx - 0.5 * ts))
    vy = torch.sigmoid(k * (y - ty + 0.5 * ts)) - torch.sigmoid(k * (y - ty - 0.5 * ts))
    return vx * vy


def boxcar_mask(squares: torch.Tensor, size: int, k: float = 10.0) -> torch.Tensor:
    """Eq. 8 over a whole ``size`` x ``size`` image, at pixel centres in pixel units.
    ``squares`` (..., 3) in fractions of the side -> (..., size, size)."""
    pos = torch.arange(size, device=squares.device, dtype=squares.dtype) + 0.5
    return boxcar(pos.view(1, size), pos.view(size, 1), squares * size, k)


def zoom_grid(squares: torch.Tensor, out_size: int) -> torch.Tensor:
    """Sampling grid (normalised [-1, 1] coordinates, align_corners=False) covering each square.
    squares (N, 3) -> (N, out_size, out_size, 2)."""
    n = squares.shape[0]
    tx, ty, ts = squares[:, 0], squares[:, 1], squares[:, 2]
    theta = torch.zeros(n, 2, 3, device=squares.device, dtype=squares.dtype)
    theta[:, 0, 0] = ts
    theta[:, 1, 1] = ts
    theta[:, 0, 2] = 2 * tx - 1
    theta[:, 1, 2] = 2 * ty - 1
    return F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)


def crop_parts(images: torch.Tensor, squares: torch.Tensor, out_size: int, k: float = 10.0) -> torch.Tensor:
    """x_i^part = x * V_i, zoomed bilinearly to ``out_size``, for all parts at once.

    The image is resampled on the square's grid first and then multiplied by V evaluated at the
    sample points (in pixels). In the continuum this equals masking then zooming; sampling a
    mask whose edge (k = 10 per pixel) is sharper than the pixel spacing would instead make the
    part ripple with a one-pixel period as t_x, t_y move, and its gradients follow the ripple.

    images (B, 3, S, S), squares (B, n, 3) -> (B, n, 3, out_size, out_size)."""
    b, n = squares.shape[:2]
    s = images.shape[-1]
    grid = zoom_grid(squares.reshape(b * n, 3), out_size)               # (B n, P, P, 2) in [-1, 1]
    src = images[:, None].expand(b, n, *images.shape[1:]).reshape(b * n, *images.shape[1:])
    parts = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    px, py = (grid[..., 0] + 1) * (s / 2), (grid[..., 1] + 1) * (s / 2)
    mask = boxcar(px, py, squares.reshape(b * n, 3) * s, k)             # (B n, P, P)
    return (parts * mask[:, None]).reshape(b, n, 3, out_size, out_size)


def squares_to_boxes(squares: torch.Tensor, width, height) -> torch.Tensor:
    """(t_x, t_y, t_s) fractions -> (x0, y0, x1, y1) pixels of an image of the given size
    (``width``/``height`` numbers, or tensors that broadcast against ``squares[..., 0]``).
    The model sees the image resized to a square, so a square maps to a rectangle here; IoU is
    invariant to that axis scaling."""
    tx, ty, ts = squares[..., 0], squares[..., 1], squares[..., 2]
    return torch.stack([(tx - ts / 2) * width, (ty - ts / 2) * height,
                        (tx + ts / 2) * width, (ty + ts / 2) * height], dim=-1)
