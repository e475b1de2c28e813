"""engine/embedding.py: compatibility and the embedding softmax (Eq. 9), late fusion, the
class-centre triplet loss (Eq. 10) and the objective (Eq. 11), against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgma.engine import embedding as E


def close(t: torch.Tensor, hand, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(t.detach().double().numpy(), np.asarray(hand, dtype=np.float64),
                               rtol=0, atol=atol)


# theta (D = 2), W (D x A = 2 x 3), class semantics phi(y) (K = 3 rows of A = 3)
THETA = [1.0, 2.0]
W = [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]
PHI = [[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [2.0, 0.0, 5.0]]
# theta^T W = (1, 2, 2 - 2) = (1, 2, 0); s_j = (1 + 2 + 0, 2, 2 + 0) = (3, 2, 2)


def projection() -> E.SemanticProjection:
    proj = E.SemanticProjection(2, 3)
    with torch.no_grad():
        proj.W.weight.copy_(torch.tensor(W).t())         # nn.Linear stores W^T
    return proj


# ---------------------------------------------------------------- Eq. 9

def test_eq9_projection_is_theta_transpose_w():
    mapped = projection()(torch.tensor([THETA]))
    close(mapped, [[1.0, 2.0, 0.0]])
    assert projection().W.bias is None


def test_eq9_compatibility_by_hand():
    s = E.compatibility(projection()(torch.tensor([THETA])), torch.tensor(PHI))
    assert s.shape == (1, 3)
    close(s, [[3.0, 2.0, 2.0]])


def test_eq9_late_fusion_sums_branch_scores():
    m_image = torch.tensor([[1.0, 2.0, 0.0]])             # branch scores (3, 2, 2)
    m_part = torch.tensor([[0.0, 0.0, 1.0]])              # branch scores (1, 0, 5)
    s = E.fused_compatibility([m_image, m_part], torch.tensor(PHI))
    close(s, [[4.0, 2.0, 7.0]])
    close(E.fused_compatibility([m_image], torch.tensor(PHI)), [[3.0, 2.0, 2.0]])


def test_eq9_softmax_loss_is_hand_cross_entropy():
    scores = torch.tensor([[4.0, 2.0, 7.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2])
    ce0 = -math.log(math.exp(4) / (math.exp(4) + math.exp(2) + math.exp(7)))
    ce1 = math.log(3.0)                                    # uniform over 3 classes
    assert E.embedding_softmax_loss(scores, labels).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)


# ---------------------------------------------------------------- Eq. 10

# centres, L2-normalised by the loss: C0 -> (0, 1), C1 -> (1, 0), C2 -> (-1, 0)
CENTRES = [[0.0, 2.0], [5.0, 0.0], [-1.0, 0.0]]


def test_eq10_zero_on_own_centre_with_far_centres():
    f = torch.tensor([[3.0, 0.0]])                         # normalised (1, 0) = centre 1
    # positive distance 0; negatives: |(1,0)-(0,1)|^2 = 2 and |(1,0)-(-1,0)|^2 = 4, both > 0.8
    loss = E.class_center_triplet_loss(f, torch.tensor(CENTRES), torch.tensor([1]), margin=0.8)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    two = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    feats = torch.tensor([[2.0, 0.0], [-0.5, 0.0], [7.0, 0.0]])
    assert E.class_center_triplet_loss(feats, two, torch.tensor([0, 1, 0])).item() == pytest.approx(0.0, abs=1e-6)


def test_eq10_hand_value_mean_over_negatives_then_batch():
    feats = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0, 2])
    # sample 0: phi^ = (1, 0), label 0: pos = |(1,0)-(0,1)|^2 = 2
    #   k = 1: max(0, 0.8 + 2 - 0) = 2.8; k = 2: max(0, 0.8 + 2 - 4) = 0 -> mean 1.4
    # sample 1: phi^ = (r, r), r = 1/sqrt 2, label 2: pos = (r + 1)^2 + r^2 = 2 + sqrt 2
    #   k = 0: (r)^2 + (r - 1)^2 = 2 - sqrt 2; k = 1: the same -> each hinge 0.8 + 2 sqrt 2
    hand = (1.4 + (0.8 + 2 * math.sqrt(2))) / 2
    loss = E.class_center_triplet_loss(feats, torch.tensor(CENTRES), labels, margin=0.8)
    assert loss.item() == pytest.approx(hand, abs=1e-5)
    one = E.class_center_triplet_loss(feats[:1], torch.tensor(CENTRES), labels[:1], margin=0.8)
    assert one.item() == pytest.approx(1.4, abs=1e-5)


def test_eq10_scale_invariant_and_differentiable():
    feats = torch.tensor([[3.0, 0.0], [1.0, 1.0]], requires_grad=True)
    centres = torch.tensor(CENTRES, requires_grad=True)
    labels = torch.tensor([0, 2])
    loss = E.class_center_triplet_loss(feats, centres, labels)
    scaled = E.class_center_triplet_loss(feats.detach() * 10, centres.detach() * 0.1, labels)
    assert scaled.item() == pytest.approx(loss.item(), abs=1e-5)  # ^ means L2 normalisation
    loss.backward()
    assert feats.grad.abs().sum() > 0 and centres.grad.abs().sum() > 0


# ---------------------------------------------------------------- Eq. 11

def test_eq11_total_objective():
    l_ma, l_cls, l_cct = torch.tensor(0.5), torch.tensor(2.0), torch.tensor(3.0)
    assert E.sgma_objective(l_ma, l_cls, l_cct).item() == pytest.approx(0.5 + 2.0 + 3.0)
    assert E.sgma_objective(l_ma, l_cls, l_cct, alpha1=0.1, alpha2=10.0).item() == pytest.approx(
        0.5 + 0.1 * 2.0 + 10.0 * 3.0)
