"""engine/inference.py (section 3.4): ridge regression (Eq. 12), prototypes, similarities, combined
scores (Eq. 13, taken as an argmax) and ZSL / GZSL prediction, against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgma.engine import inference as I


def close(t: torch.Tensor, hand, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(t.detach().double().numpy(), np.asarray(hand, dtype=np.float64),
                               rtol=0, atol=atol)


# ---------------------------------------------------------------- Eq. 12

def test_eq12_closed_form_by_hand_2x2():
    phi_s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])        # S = 2 seen rows
    phi_u = torch.tensor([[2.0, 1.0]])                    # U = 1 unseen row
    # Phi_s Phi_s^T + I = [[2, 1], [1, 3]], inverse = 1/5 [[3, -1], [-1, 2]]
    # Phi_u Phi_s^T = (2, 3) -> W = (2, 3) / 5 [[3, -1], [-1, 2]] = (0.6, 0.8)
    w = I.ridge_combination(phi_u, phi_s, lam=1.0)
    assert w.shape == (1, 2) and w.dtype == torch.float32
    close(w, [[0.6, 0.8]])
    # identity seen semantics: W = Phi_u / (1 + lambda)
    close(I.ridge_combination(torch.tensor([[1.0, 2.0]]), torch.eye(2), lam=1.0), [[0.5, 1.0]])
    close(I.ridge_combination(torch.tensor([[1.0, 2.0]]), torch.eye(2), lam=3.0), [[0.25, 0.5]])


def test_eq12_recovers_a_known_combination():
    g = torch.Generator().manual_seed(0)
    phi_s = torch.rand(4, 10, generator=g)                # full row rank
    w_true = torch.tensor([[0.5, -1.0, 0.0, 2.0], [1.0, 0.0, 0.3, 0.0], [0.0, 0.0, 0.0, 1.0]])
    phi_u = w_true @ phi_s
    close(I.ridge_combination(phi_u, phi_s, lam=1e-9), w_true.numpy(), atol=1e-4)


def test_eq12_unseen_prototypes_apply_the_same_w():
    phi_s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    phi_u = torch.tensor([[2.0, 1.0]])
    proto_s = torch.tensor([[1.0, 0.0, 2.0], [0.0, 5.0, 1.0]])
    # W = (0.6, 0.8): 0.6 (1, 0, 2) + 0.8 (0, 5, 1) = (0.6, 4.0, 2.0)
    cp = I.ClassPrototypes(phi_s, proto_s, ridge_lambda=1.0)
    close(cp.of(phi_u), [[0.6, 4.0, 2.0]], atol=1e-5)
    # a class typed as a copy of a seen class is that class; a seen class keeps its own by position too
    close(cp.of(torch.tensor([[2.0, 1.0], [1.0, 1.0], [1.0, 0.0]])), [[0.6, 4.0, 2.0], [0.0, 5.0, 1.0], [1.0, 0.0, 2.0]],
          atol=1e-6)
    ridge_seen = cp.of(phi_s)                      # without the copy rule, Eq. 12 would shrink them
    close(ridge_seen, proto_s, atol=1e-6)
    # by position: the seen classes sit at rows 1 and 0, whatever their vectors
    close(cp.of(torch.tensor([[2.0, 1.0], [5.0, 5.0]]), seen_rows=[1, 0]), [[0.0, 5.0, 1.0], [1.0, 0.0, 2.0]])
    with pytest.raises(ValueError, match="1 positions for 2 seen classes"):
        cp.of(phi_u, seen_rows=[0])


def test_class_prototypes_score_by_mode():
    """Eq. 13 over the prototypes: compatibility as given, centre as cosine, combined s + beta cos."""
    cp = I.ClassPrototypes(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]), 1.0)
    feats = torch.tensor([[3.0, 4.0]])
    compat = torch.tensor([[0.5, -0.5]])
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    close(cp.scores("compatibility", compat, feats, vectors, beta=2.0), [[0.5, -0.5]])
    close(cp.scores("center", compat, feats, vectors, beta=2.0), [[0.6, 0.8]], atol=1e-6)
    close(cp.scores("combined", compat, feats, vectors, beta=2.0), [[0.5 + 1.2, -0.5 + 1.6]], atol=1e-6)
    with pytest.raises(ValueError, match="2 seen class vectors but 1 prototypes"):
        I.ClassPrototypes(torch.eye(2), torch.ones(1, 3))


def test_seen_prototypes_average_each_class():
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [9.0, 9.0]])
    labels = torch.tensor([5, 5, 7, 8])
    close(I.seen_prototypes(feats, labels, [7, 5]), [[0.0, 4.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="class 3"):
        I.seen_prototypes(feats, labels, [5, 3])


# ---------------------------------------------------------------- similarities and Eq. 13

def test_center_similarity_cosine_and_inner():
    f = torch.tensor([[3.0, 4.0]])
    protos = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    close(I.center_similarity(f, protos), [[0.6, 0.8]])
    close(I.center_similarity(f, protos, "inner"), [[3.0, 8.0]])
    with pytest.raises(ValueError):
        I.center_similarity(f, protos, "euclid")


COMPAT = torch.tensor([[1.0, 5.0, 3.0]])
SIM = torch.tensor([[0.9, -0.5, 0.2]])


def test_eq13_combined_is_s_plus_beta_sim():
    close(I.combined_scores(COMPAT, SIM, beta=2.0), [[2.8, 4.0, 3.4]])
    close(I.combined_scores(COMPAT, SIM, beta=0.0), [[1.0, 5.0, 3.0]])
    close(I.combined_scores(COMPAT, SIM, beta=10.0), [[10.0, 0.0, 5.0]])


def test_eq13_argmax_not_argmin():
    # combined (2.8, 4.0, 3.4): the best class is 1; the printed arg min would give 0
    assert I.predict(I.combined_scores(COMPAT, SIM, beta=2.0), [0, 1, 2]).tolist() == [1]
    assert I.predict(I.combined_scores(COMPAT, SIM, beta=10.0), [0, 1, 2]).tolist() == [0]


def test_predict_restricted_to_candidates_returns_class_ids():
    scores = I.combined_scores(COMPAT, SIM, beta=2.0)     # (2.8, 4.0, 3.4)
    assert I.predict(scores, [0, 2]).tolist() == [2]      # class 1 excluded
    assert I.predict(scores, [0]).tolist() == [0]
    batch = torch.tensor([[0.0, 1.0, 2.0, 3.0], [9.0, 1.0, 2.0, 0.0]])
    assert I.predict(batch, [1, 3]).tolist() == [3, 1]


def test_mode_scores():
    assert torch.equal(I.mode_scores("compatibility", COMPAT, SIM, 2.0), COMPAT)
    assert torch.equal(I.mode_scores("center", COMPAT, SIM, 2.0), SIM)
    close(I.mode_scores("combined", COMPAT, SIM, 2.0), [[2.8, 4.0, 3.4]])
    assert set(I.MODES) == {"compatibility", "center", "combined"}
    with pytest.raises(ValueError):
        I.mode_scores("best", COMPAT, SIM, 1.0)


# ---------------------------------------------------------------- GZSL

def test_gzsl_predicts_over_seen_and_unseen():
    seen, unseen = [0, 1], [2, 3]
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3],          # best seen (1) beats best unseen (2)
                           [0.1, 0.2, 0.3, 0.8],          # unseen 3 is best overall
                           [0.7, 0.0, 0.1, 0.2]])
    assert I.predict(scores, unseen).tolist() == [2, 3, 3]                 # ZSL: unseen only
    assert I.predict(scores, seen + unseen).tolist() == [1, 3, 0]          # GZSL: all classes
    assert I.predict(scores, unseen + seen).tolist() == [1, 3, 0]          # candidate order irrelevant
