"""engine/cropping.py: the cropping net (Eq. 7), the boxcar mask (Eq. 8) and the differentiable
crop-and-zoom, against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgma.engine import cropping as K


def close(t: torch.Tensor, hand, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(t.detach().double().numpy(), np.asarray(hand, dtype=np.float64),
                               rtol=0, atol=atol)


def f(x: float, k: float = 10.0) -> float:
    """The paper's f(x) = 1 / (1 + exp(-k x))."""
    return 1.0 / (1.0 + math.exp(-k * x))


# ---------------------------------------------------------------- Eq. 7: cropping network

def test_eq7_output_shape_and_ranges():
    torch.manual_seed(0)
    net = K.CroppingNet((4, 4), hidden=8, side_min=0.1, side_max=0.6)
    assert net.fc1.in_features == 16 and net.fc2.out_features == 3       # two FC layers
    out = net(torch.rand(5, 2, 4, 4))
    assert out.shape == (5, 2, 3)
    assert ((out[..., :2] > 0) & (out[..., :2] < 1)).all()
    assert ((out[..., 2] >= 0.1) & (out[..., 2] <= 0.6)).all()


def test_eq7_side_saturates_to_its_bounds_and_centre_is_clamped():
    net = K.CroppingNet((2, 2), hidden=4, side_min=0.1, side_max=0.6)
    with torch.no_grad():
        net.fc2.weight.zero_()
        net.fc2.bias.copy_(torch.tensor([0.5, 0.5, 50.0]))
    close(net(torch.rand(1, 1, 2, 2))[0, 0], [0.5, 0.5, 0.6])      # centre passes through; side at side_max
    with torch.no_grad():
        net.fc2.bias.copy_(torch.tensor([3.0, -2.0, -50.0]))
    # centres clamp to [0, 1]; side at side_min
    raw = net(torch.rand(1, 1, 2, 2))
    close(raw[0, 0], [1.0, 0.0, 0.1])
    with torch.no_grad():
        net.fc2.bias.copy_(torch.tensor([3.0, -2.0, -50.0]))
    bias = net.fc2.bias.detach().clone().requires_grad_(True)
    net.fc2.bias = torch.nn.Parameter(bias)
    net(torch.rand(1, 1, 2, 2))[0, 0, :2].sum().backward()
    close(net.fc2.bias.grad[:2], [0.01, 0.01])            # outside [0, 1] the gradient leaks 0.01
    with torch.no_grad():
        net.fc2.bias.copy_(torch.tensor([0.0, 0.0, math.log(3.0)]))   # sigmoid = 0.75
    assert net(torch.rand(1, 1, 2, 2))[0, 0, 2].item() == pytest.approx(0.1 + 0.5 * 0.75)


def test_eq7_starts_at_the_map_peak_with_the_initial_side():
    net = K.CroppingNet((4, 4), hidden=8, side_min=0.1, side_max=0.6, side_init=0.25)
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 2, 3] = 1.0                                   # peak at row 2, column 3
    # cell centres: x = (3 + 0.5) / 4, y = (2 + 0.5) / 4; softmax(M / 0.005) is one-hot to 1e-80;
    # the other hidden units start with 0.01-scaled output weights, hence the 2e-3 tolerance
    close(net(m)[0, 0], [0.875, 0.625, 0.25], atol=2e-3)


@pytest.mark.parametrize("temperature", [0.005, 0.001])
def test_eq7_starts_at_the_soft_argmax_with_its_temperature(temperature):
    """A saturated peak (0.999) and a weaker blob (0.99): the start is the softmax(M / T) mean,
    computed by hand; at T = 0.001 it sits on the peak, at 0.005 the blob pulls it away."""
    torch.manual_seed(0)
    net = K.CroppingNet((3, 3), hidden=8, temperature=temperature)
    with torch.no_grad():
        net.fc2.weight[:, 4:] = 0                         # only the soft-argmax units
    m = torch.zeros(1, 1, 3, 3)
    m[0, 0, 0, 0], m[0, 0, 2, 2] = 0.999, 0.99
    w = np.exp((np.array([0.999, 0.99, 0.0]) - 0.999) / temperature)
    w_peak, w_blob, w_zero = w[0], w[1], w[2]
    z = w_peak + w_blob + 7 * w_zero
    cells = (np.arange(3) + 0.5) / 3
    x = (w_peak * cells[0] + w_blob * cells[2] + w_zero * (3 * cells.sum() - cells[0] - cells[2])) / z
    close(net(m)[0, 0, :2], [x, x], atol=1e-5)
    assert abs(x - cells[0]) < (1e-3 if temperature == 0.001 else 0.2)
    if temperature == 0.005:
        assert abs(x - cells[0]) > 0.05


def test_eq7_one_network_for_every_part():
    net = K.CroppingNet((3, 3), hidden=4)
    m = torch.rand(1, 1, 3, 3)
    out = net(torch.cat([m, m], dim=1))                  # the same map as part 1 and part 2
    close(out[0, 0], out[0, 1].detach().numpy())


# ---------------------------------------------------------------- Eq. 8: boxcar mask

def test_eq8_mask_one_inside_zero_outside():
    # square centre (10, 10) px, side 10 px on a 20 px image: edges at 5 and 15
    sq = torch.tensor([0.5, 0.5, 0.5])
    v = K.boxcar_mask(sq, 20, k=10.0)
    assert v.shape == (20, 20)
    assert (v[6:14, 6:14] > 0.999).all()
    outside = torch.ones(20, 20, dtype=torch.bool)
    outside[4:16, 4:16] = False
    assert (v[outside] < 1e-3).all()
    assert (v >= 0).all() and (v <= 1).all()


def test_eq8_hand_values_at_edge_and_centre():
    sq = torch.tensor([0.5, 0.5, 0.5])
    v = K.boxcar_mask(sq, 20, k=10.0)
    tx = ty = 10.0
    ts = 10.0

    def v1(x):                                            # V_x at pixel centre x + 0.5
        return f(x + 0.5 - tx + 0.5 * ts) - f(x + 0.5 - tx - 0.5 * ts)

    # V_x(5.5) = f(0.5) - f(-9.5) = sigmoid(5) - sigmoid(-95), about 0.99331
    assert v1(5) == pytest.approx(0.9933071, abs=1e-6)
    assert v[10, 5].item() == pytest.approx(v1(10) * v1(5), abs=1e-6)
    assert v[10, 4].item() == pytest.approx(v1(10) * v1(4), abs=1e-6)      # just outside: ~0.0067
    assert v[4, 4].item() == pytest.approx(v1(4) * v1(4), abs=1e-7)
    assert v[10, 10].item() == pytest.approx(v1(10) ** 2, abs=1e-6)
    assert v[5, 14].item() == pytest.approx(v1(5) * v1(14), abs=1e-6)      # rows are y, columns x


def test_eq8_mask_x_and_y_are_not_swapped():
    sq = torch.tensor([0.25, 0.75, 0.25])               # x centre left, y centre low
    v = K.boxcar_mask(sq, 16, k=10.0)
    rows, cols = torch.nonzero(v > 0.5, as_tuple=True)
    assert rows.float().mean().item() == pytest.approx(0.75 * 16 - 0.5)
    assert cols.float().mean().item() == pytest.approx(0.25 * 16 - 0.5)


def test_eq8_mask_gradients_have_the_expected_sign():
    sq = torch.tensor([0.5, 0.5, 0.3], requires_grad=True)
    v = K.boxcar_mask(sq, 32, k=10.0)
    col = torch.arange(32.0).view(1, 32)
    row = torch.arange(32.0).view(32, 1)
    (v.sum() + (v * col).sum() * 1e-3 + (v * row).sum() * 1e-4).backward()
    g = sq.grad
    assert g[2] > 0                                       # a larger square holds more mass
    assert g[0] > 0 and g[1] > 0                         # moving right/down raises the weighted mass
    assert g[0] > g[1]


# ---------------------------------------------------------------- crop and zoom

def quadrant_image(size: int) -> torch.Tensor:
    img = torch.zeros(1, 3, size, size)
    h = size // 2
    img[0, 0, :h, :h] = 1.0                               # top-left red
    img[0, 1, :h, h:] = 1.0                               # top-right green
    img[0, 2, h:, :h] = 1.0                               # bottom-left blue
    img[0, :, h:, h:] = 1.0                               # bottom-right white
    return img


def test_crop_parts_returns_the_right_sub_square():
    img = quadrant_image(16)
    # part 0 covers the top-left quarter, part 1 the bottom-right quarter
    sq = torch.tensor([[[0.25, 0.25, 0.5], [0.75, 0.75, 0.5]]])
    parts = K.crop_parts(img, sq, out_size=8, k=10.0)
    assert parts.shape == (1, 2, 3, 8, 8)
    # Output pixel j samples input pixel centre j (part 0) exactly: square side 8 px -> 8 px out.
    # The value there is the colour times the mask V = V_y V_x, by hand with tx = ty = 4, ts = 8.
    vx = [f(j + 0.5 - 4 + 4) - f(j + 0.5 - 4 - 4) for j in range(8)]
    hand_mask = np.outer(vx, vx)
    close(parts[0, 0, 0], hand_mask, atol=1e-5)
    close(parts[0, 0, 1], np.zeros((8, 8)), atol=1e-6)
    close(parts[0, 0, 2], np.zeros((8, 8)), atol=1e-6)
    assert (parts[0, 0, 0, 1:7, 1:7] > 0.99).all()
    for c in range(3):                                    # white, by symmetry the same mask
        close(parts[0, 1, c], hand_mask, atol=1e-5)


def test_crop_parts_zooms_a_smaller_square():
    img = quadrant_image(32)
    sq = torch.tensor([[[0.75, 0.25, 0.25]]])             # inside the green quarter
    part = K.crop_parts(img, sq, out_size=24, k=10.0)[0, 0]
    assert part.shape == (3, 24, 24)
    inner = part[:, 3:21, 3:21]
    assert (inner[1] > 0.99).all()
    assert (inner[0].abs() < 1e-6).all() and (inner[2].abs() < 1e-6).all()


def test_crop_parts_gradients_reach_tx_ty_ts():
    torch.manual_seed(0)
    s = 32
    yy, xx = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")
    img = torch.stack([xx, yy, xx * yy])[None]            # smooth non-uniform image
    sq = torch.tensor([[[0.4, 0.6, 0.3], [0.6, 0.35, 0.4]]], requires_grad=True)
    parts = K.crop_parts(img, sq, out_size=16, k=10.0)
    w = torch.rand_like(parts)
    (parts * w).sum().backward()
    g = sq.grad
    assert g is not None and torch.isfinite(g).all()
    assert (g.abs() > 1e-6).all(), g                      # every one of t_x, t_y, t_s of both parts


def ramp_image(s: int = 32) -> torch.Tensor:
    """Brightness rising linearly from left (0) to right (1), the same on every row and channel."""
    return torch.linspace(0, 1, s).view(1, 1, 1, s).expand(1, 3, s, s).contiguous()


def test_crop_parts_interior_gets_brighter_moving_right():
    sq = torch.tensor([[[0.5, 0.5, 0.25]]], requires_grad=True)
    part = K.crop_parts(ramp_image(), sq, out_size=8)
    part[..., 1:7, 1:7].sum().backward()                  # the interior, away from the mask edge
    assert sq.grad[0, 0, 0] > 0                           # brighter to the right
    assert abs(sq.grad[0, 0, 1]) < 0.05 * abs(sq.grad[0, 0, 0])   # nothing changes vertically


# Regression: masking at pixel centres *before* resampling made the part ripple with a one-pixel
# period in t_x/t_y (d sum/d t_x = -280 on a rightward ramp); the mask is now evaluated at the
# sample points after resampling.
def test_crop_parts_whole_part_gradient_follows_the_image():
    sq = torch.tensor([[[0.5, 0.5, 0.25]]], requires_grad=True)
    K.crop_parts(ramp_image(), sq, out_size=8).sum().backward()
    with torch.no_grad():                                 # moving right 1 px really brightens it
        one_px = torch.tensor([[[0.5 + 1 / 32, 0.5, 0.25]]])
        base = K.crop_parts(ramp_image(), sq.detach(), out_size=8).sum()
        assert K.crop_parts(ramp_image(), one_px, out_size=8).sum() > base
    assert sq.grad[0, 0, 0] > 0


def test_squares_to_boxes_by_hand():
    b = K.squares_to_boxes(torch.tensor([0.5, 0.5, 0.5]), width=200, height=100)
    close(b, [50.0, 25.0, 150.0, 75.0])
