"""Inference from an SGMA model (section 3.4): the fused compatibility score, the class-centre
branch with unseen prototypes from ridge regression (Eq. 12), and their combination (Eq. 13).

Eq. 13 is printed as an arg*min* of scores; larger compatibility and similarity mean a better
match, so this module takes the arg*max*. Class-centre similarities are inner products of
L2-normalised features and prototypes (cosine), so beta weighs two bounded-scale terms;
``similarity="inner"`` keeps the raw inner product of Eq. 13.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("compatibility", "center", "combined")


def ridge_combination(phi_unseen: torch.Tensor, phi_seen: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Eq. 12: W = argmin ||Phi_u - W Phi_s||^2 + lambda ||W||^2 = Phi_u Phi_s^T (Phi_s Phi_s^T + lambda I)^-1.
    phi_unseen (U, A), phi_seen (S, A) -> W (U, S)."""
    phi_seen = phi_seen.double()
    gram = phi_seen @ phi_seen.t() + lam * torch.eye(phi_seen.shape[0], dtype=torch.float64, device=phi_seen.device)
    rhs = phi_unseen.double() @ phi_seen.t()                            # (U, S)
    return torch.linalg.solve(gram, rhs.t()).t().to(phi_unseen.dtype)   # gram is symmetric


def seen_prototypes(features: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Phi^s_cct: the mean class-centre feature of each seen class's images. -> (len(classes), D)."""
    rows = []
    for c in classes:
        sel = features[labels == c]
        if len(sel) == 0:
            raise ValueError(f"no images of seen class {c} to build its prototype")
        rows.append(sel.mean(dim=0))
    return torch.stack(rows)


def unseen_prototypes(proto_seen: torch.Tensor, phi_seen: torch.Tensor, phi_unseen: torch.Tensor,
                      lam: float = 1.0) -> torch.Tensor:
    """Phi^u_cct = W Phi^s_cct with W from Eq. 12."""
    return ridge_combination(phi_unseen, phi_seen, lam) @ proto_seen


def center_similarity(features: torch.Tensor, prototypes: torch.Tensor, similarity: str = "cosine") -> torch.Tensor:
    """<phi_cct(x), [Phi_cct]_y> for every class y. (B, D), (K, D) -> (B, K)."""
    if similarity == "cosine":
        return F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).t()
    if similarity == "inner":
        return features @ prototypes.t()
    raise ValueError(f"similarity must be 'cosine' or 'inner', got {similarity!r}")


def combined_scores(compat: torch.Tensor, center_sim: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Eq. 13 (as an argmax): s_y + beta <phi_cct(x), [Phi_cct]_y>."""
    return compat + beta * center_sim


def mode_scores(mode: str, compat: torch.Tensor, center_sim: torch.Tensor, beta: float) -> torch.Tensor:
    if mode == "compatibility":
        return compat
    if mode == "center":
        return center_sim
    if mode == "combined":
        return combined_scores(compat, center_sim, beta)
    raise ValueError(f"inference mode must be one of {MODES}, got {mode!r}")


def predict(scores: torch.Tensor, candidates: list[int]) -> torch.Tensor:
    """Argmax restricted to ``candidates`` (unseen classes for ZSL, all for GZSL); returns class ids."""
    idx = torch.as_tensor(candidates, device=scores.device)
    return idx[scores[:, idx].argmax(dim=1)]
