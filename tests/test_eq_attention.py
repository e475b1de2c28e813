"""engine/attention.py (Eq. 1-6) and engine/stages.py against small hand-computed cases.

Every expected number is derived by hand (plain arithmetic with ``math``) in the test, never by
calling the code path under test."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgma.engine import attention as A
from sgma.engine import stages


def close(t: torch.Tensor, hand, atol: float = 1e-6) -> None:
    """Tensor ``t`` equals the (nested list) hand value ``hand`` within ``atol``."""
    np.testing.assert_allclose(t.detach().double().numpy(), np.asarray(hand, dtype=np.float64),
                               rtol=0, atol=atol)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Two channels of a 2x2 feature map.
C0 = [[1.0, 2.0], [3.0, 4.0]]          # mean 2.5
C1 = [[0.0, -2.0], [6.0, 8.0]]         # mean 3.0


def hand_features() -> torch.Tensor:
    return torch.tensor([[C0, C1]])     # (1, 2, 2, 2)


# ---------------------------------------------------------------- Eq. 1: channel descriptor

def test_eq1_gap_equals_hand_mean():
    p = A.channel_descriptor(hand_features())
    assert p.shape == (1, 2)
    assert p[0, 0].item() == pytest.approx((1 + 2 + 3 + 4) / 4)        # 2.5
    assert p[0, 1].item() == pytest.approx((0 - 2 + 6 + 8) / 4)        # 3.0


def test_eq1_batch_rows_are_independent():
    f = torch.stack([hand_features()[0], 2 * hand_features()[0] + 1])  # (2, 2, 2, 2)
    p = A.channel_descriptor(f)
    close(p, [[2.5, 3.0], [6.0, 7.0]])


# ---------------------------------------------------------------- Eq. 2: channel weights

def set_hand_fc(att: A.MultiAttention) -> None:
    """Part 0: W1 (4x2), W2 (2x4) with biases; part 1: zero W1/W2 and a bias-only gate."""
    with torch.no_grad():
        att.fc1[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]))
        att.fc1[0].bias.zero_()
        att.fc2[0].weight.copy_(torch.tensor([[0.1, 0.0, 0.0, 0.0], [0.0, 0.0, 0.1, -1.0]]))
        att.fc2[0].bias.copy_(torch.tensor([0.0, -0.5]))
        att.fc1[1].weight.zero_()
        att.fc1[1].bias.zero_()
        att.fc2[1].weight.zero_()
        att.fc2[1].bias.copy_(torch.tensor([1.0, -1.0]))


# By hand, p = (2.5, 3): W1 p = (2.5, 3, 5.5, -2.5), ReLU -> (2.5, 3, 5.5, 0),
# W2 h + b = (0.25, 0.55 - 0.5) = (0.25, 0.05).
A0_HAND = [sig(0.25), sig(0.05)]
A1_HAND = [sig(1.0), sig(-1.0)]


def test_eq2_channel_weights_by_hand():
    att = A.MultiAttention(channels=2, n_parts=2, reduction=16)      # hidden = max(2 // 16, 4) = 4
    assert att.fc1[0].out_features == 4
    set_hand_fc(att)
    a = att.channel_weights(torch.tensor([[2.5, 3.0]]))
    assert a.shape == (1, 2, 2)
    assert a[0, 0].tolist() == pytest.approx(A0_HAND, abs=1e-6)
    assert a[0, 1].tolist() == pytest.approx(A1_HAND, abs=1e-6)
    logits = att.channel_logits(torch.tensor([[2.5, 3.0]]))
    close(logits[0], [[0.25, 0.05], [1.0, -1.0]])


def test_eq2_each_part_has_its_own_fc_stack():
    att = A.MultiAttention(channels=8, n_parts=3, reduction=2)
    assert len(att.fc1) == 3 and len(att.fc2) == 3
    ids = {id(m.weight) for m in list(att.fc1) + list(att.fc2)}
    assert len(ids) == 6                                            # no shared parameter
    p = torch.rand(2, 8)
    before = att.channel_weights(p).detach()
    with torch.no_grad():
        att.fc2[1].bias.add_(5.0)                                   # change part 1 only
    after = att.channel_weights(p).detach()
    assert torch.equal(before[:, 0], after[:, 0])
    assert torch.equal(before[:, 2], after[:, 2])
    assert not torch.allclose(before[:, 1], after[:, 1])
    assert ((after > 0) & (after < 1)).all()                        # sigmoid gate


# ---------------------------------------------------------------- Eq. 3: attention maps

def test_eq3_attention_maps_pure_function():
    # M = sigmoid(0.5 * C0 - 1 * C1) = sigmoid([[0.5, 3], [-4.5, -6]])
    w = torch.tensor([[[0.5, -1.0]]])                               # (B=1, n=1, C=2)
    m = A.attention_maps(hand_features(), w)
    assert m.shape == (1, 1, 2, 2)
    hand = [[sig(0.5), sig(3.0)], [sig(-4.5), sig(-6.0)]]
    close(m[0, 0], hand)


def test_eq3_attention_maps_two_parts():
    w = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])                    # part 0 = C0, part 1 = C1
    m = A.attention_maps(hand_features(), w)
    close(m[0, 0], [[sig(v) for v in r] for r in C0])
    close(m[0, 1], [[sig(v) for v in r] for r in C1])


def test_eq3_multiattention_forward_with_scale_and_bias():
    att = A.MultiAttention(channels=2, n_parts=2)
    set_hand_fc(att)
    scale, bias = [2.0, 3.0], [0.1, -0.2]
    with torch.no_grad():
        att.scale.copy_(torch.tensor(scale))
        att.bias.copy_(torch.tensor(bias))
    maps, a = att(hand_features())
    assert maps.shape == (1, 2, 2, 2) and a.shape == (1, 2, 2)
    assert a[0, 0].tolist() == pytest.approx(A0_HAND, abs=1e-6)
    for i, ai in enumerate([A0_HAND, A1_HAND]):
        for r in range(2):
            for c in range(2):
                # weighted channel sum, divided by C = 2, then scale and bias, then sigmoid
                s = (ai[0] * C0[r][c] + ai[1] * C1[r][c]) / 2
                hand = sig(s * scale[i] + bias[i])
                assert maps[0, i, r, c].item() == pytest.approx(hand, abs=1e-6)


# ---------------------------------------------------------------- Eq. 5: compactness

G = math.exp(-0.5)        # Gaussian with sigma = 1 at distance 1


def test_eq5_ideal_gaussian_centred_at_peak():
    m = torch.zeros(1, 1, 5, 5)
    m[0, 0, 1, 3] = 0.7
    g = A.ideal_gaussian(m, sigma=1.0)
    assert g.shape == (1, 1, 5, 5)
    assert g[0, 0, 1, 3].item() == pytest.approx(1.0)
    assert int(g.flatten().argmax()) == 1 * 5 + 3
    assert g[0, 0, 1, 2].item() == pytest.approx(G)                  # distance 1
    assert g[0, 0, 2, 4].item() == pytest.approx(math.exp(-1.0))     # distance sqrt 2
    assert g[0, 0, 4, 0].item() == pytest.approx(math.exp(-(9 + 9) / 2))
    assert A.peak_positions(m)[0, 0].tolist() == [1, 3]


def test_eq5_compactness_zero_for_its_own_gaussian():
    sigma = 1.5
    hand = [[math.exp(-((r - 3) ** 2 + (c - 1) ** 2) / (2 * sigma ** 2)) for c in range(6)] for r in range(6)]
    m = torch.tensor([[hand]])
    assert A.compactness_loss(m, sigma).item() == pytest.approx(0.0, abs=1e-12)
    flat = torch.full((1, 1, 6, 6), 0.5)
    assert A.compactness_loss(flat, sigma).item() > 0.01


def test_eq5_compactness_hand_value():
    # peak at (0, 0); sigma 1 -> ideal [[1, G], [G, G^2]]; mean of squared differences over 4 cells
    m = torch.tensor([[[[0.9, 0.5], [0.1, 0.0]]]])
    hand = ((0.9 - 1) ** 2 + (0.5 - G) ** 2 + (0.1 - G) ** 2 + (0.0 - G * G) ** 2) / 4
    out = A.compactness_loss(m, 1.0)
    assert out.shape == (1, 1)
    assert out.item() == pytest.approx(hand, rel=1e-6)


# ---------------------------------------------------------------- Eq. 6: diversity

M0 = [[0.9, 0.5], [0.1, 0.0]]
M1 = [[0.6, 0.3], [0.0, 0.8]]


def test_eq6_zero_for_disjoint_maps():
    m = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]])
    assert A.diversity_loss(m, margin=0.2).tolist() == [[0.0, 0.0]]


def test_eq6_zero_for_overlap_below_margin():
    m = torch.tensor([[[[0.15, 0.9], [0.2, 0.0]], [[0.1, 0.2], [0.15, 0.05]]]])
    # map 1 never exceeds the margin 0.2, so L(M0) = 0 although the maps overlap everywhere;
    # map 0 exceeds it only at (0, 1): L(M1) = 0.2 * (0.9 - 0.2)
    out = A.diversity_loss(m, margin=0.2)
    assert out[0, 0].item() == pytest.approx(0.0)
    assert out[0, 1].item() == pytest.approx(0.2 * 0.7)             # only cell (0, 1) is above the margin
    both_low = torch.tensor([[[[0.15, 0.1], [0.2, 0.05]], [[0.1, 0.2], [0.15, 0.05]]]])
    close(A.diversity_loss(both_low, margin=0.2), [[0.0, 0.0]])


def test_eq6_hand_value_two_maps():
    m = torch.tensor([[M0, M1]])
    out = A.diversity_loss(m, margin=0.2)
    # L(M0) = sum M0 * max(0, M1 - 0.2) = 0.9 * 0.4 + 0.5 * 0.1 + 0.1 * 0 + 0 * 0.6 = 0.41
    # L(M1) = sum M1 * max(0, M0 - 0.2) = 0.6 * 0.7 + 0.3 * 0.3 + 0 * 0 + 0.8 * 0 = 0.51
    close(out, [[0.41, 0.51]])
    assert (out > 0).all()


def test_eq6_max_over_the_other_maps():
    m2 = [[0.2, 0.9], [0.0, 0.0]]
    out = A.diversity_loss(torch.tensor([[M0, M1, m2]]), margin=0.2)
    # m^ for M0 = max(M1, M2) = [[0.6, 0.9], [0, 0.8]] -> 0.9 * 0.4 + 0.5 * 0.7 = 0.71
    assert out[0, 0].item() == pytest.approx(0.71, abs=1e-6)
    # m^ for M2 = max(M0, M1) = [[0.9, 0.5], [0.1, 0.8]] -> 0.2 * 0.7 + 0.9 * 0.3 = 0.41
    assert out[0, 2].item() == pytest.approx(0.41, abs=1e-6)


def test_eq6_single_map_is_zero():
    assert A.diversity_loss(torch.rand(3, 1, 4, 4)).tolist() == [[0.0]] * 3


# ---------------------------------------------------------------- Eq. 4: total multi-attention loss

def test_eq4_combines_compactness_and_lambda_diversity():
    lam, margin, sigma = 0.5, 0.2, 1.0
    sample_a = torch.tensor([M0, M1])
    sample_b = torch.zeros(2, 2, 2)                  # all-zero maps: peak at (0, 0), no diversity
    maps = torch.stack([sample_a, sample_b])
    cpt0 = ((0.9 - 1) ** 2 + (0.5 - G) ** 2 + (0.1 - G) ** 2 + (G * G) ** 2) / 4
    cpt1 = ((0.6 - G * G) ** 2 + (0.3 - G) ** 2 + (0.0 - G) ** 2 + (0.8 - 1) ** 2) / 4  # peak (1, 1)
    loss_a = cpt0 + cpt1 + lam * (0.41 + 0.51)
    cpt_zero = (1 + 2 * G ** 2 + G ** 4) / 4
    loss_b = 2 * cpt_zero
    out = A.multi_attention_loss(maps, sigma, lam, margin)
    assert out.dim() == 0
    assert out.item() == pytest.approx((loss_a + loss_b) / 2, rel=1e-6)
    no_div = A.multi_attention_loss(maps, sigma, 0.0, margin)
    assert no_div.item() == pytest.approx((cpt0 + cpt1 + loss_b) / 2, rel=1e-6)


def test_eq4_gradient_reaches_maps():
    maps = torch.rand(2, 2, 5, 5, requires_grad=True)
    A.multi_attention_loss(maps, 1.0, 1.0, 0.2).backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0


# ---------------------------------------------------------------- stages.py (section 4.1)

def test_pseudo_squares_centred_at_peak_and_clamped():
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, 0, 2, 5] = 1.0          # centre (x, y) = (5.5 / 8, 2.5 / 8)
    maps[0, 1, 0, 0] = 1.0          # 0.5 / 8 = 0.0625 < 0.125 -> clamped to 0.125
    maps[0, 2, 7, 7] = 1.0          # 7.5 / 8 = 0.9375 > 0.875 -> clamped to 0.875
    sq = stages.pseudo_squares(maps, 0.25)
    assert sq.shape == (1, 3, 3)
    assert sq[0, 0].tolist() == pytest.approx([0.6875, 0.3125, 0.25])
    assert sq[0, 1].tolist() == pytest.approx([0.125, 0.125, 0.25])
    assert sq[0, 2].tolist() == pytest.approx([0.875, 0.875, 0.25])


def test_kmeans_groups_channels_peaking_at_the_same_place():
    n_img, h = 3, 8
    f = torch.zeros(n_img, 7, h, h)
    for n in range(n_img):
        for c in (0, 2, 4):                      # peak near the top-left
            f[n, c, 1, 1 + (c + n) % 2] = 1.0 + c
        for c in (1, 3, 5):                      # peak near the bottom-right
            f[n, c, 6, 6 - (c + n) % 2] = 1.0 + c
    # channel 6 never activates -> -1
    groups = stages.kmeans_channel_groups(f, n_parts=2, seed=0)
    assert groups.shape == (7,)
    assert groups[0] == groups[2] == groups[4]
    assert groups[1] == groups[3] == groups[5]
    assert groups[0] != groups[1]
    assert groups[6] == -1
    t = stages.pseudo_label_targets(groups, 2)
    assert t.shape == (2, 7)
    assert t.sum(dim=0).tolist() == [1, 1, 1, 1, 1, 1, 0]
    assert t[groups[0]].tolist() == [1, 0, 1, 0, 1, 0, 0]


def test_channel_peak_vectors_by_hand():
    f = torch.zeros(2, 1, 3, 5)
    f[0, 0, 2, 4] = 1.0             # (row, col) normalised (2/2, 4/4) = (1, 1)
    f[1, 0, 1, 1] = 1.0             # (1/2, 1/4)
    v = stages.channel_peak_vectors(f)
    assert v.shape == (1, 4)
    assert v[0].tolist() == pytest.approx([1.0, 1.0, 0.5, 0.25])
