"""Inference from an SGMA model (section 3.4): the fused compatibility score, the class-centre
branch with unseen prototypes from ridge regression (Eq. 12), and their combination (Eq. 13).

Eq. 13 is printed as an arg*min* of scores; larger compatibility and similarity mean a better
match, so this module takes the arg*max*. Class-centre similarities are inner products of
L2-normalised features and prototypes (cosine), so beta weighs two bounded-scale terms;
``similarity="inner"`` keeps the raw inner product of Eq. 13.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .config import INFERENCE_MODES as MODES


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


class ClassPrototypes:
    """Section 3.4 in one place, for the evaluator, the predictor, the trainer's beta search and the
    app's feature cache: the seen (training) classes' prototypes Phi^s_cct, Eq. 12's ridge solve
    with the seen side factored out once (W Phi^s = V S^T (S S^T + lambda I)^-1 Phi^s = V R, so the
    prototype of any class vector v is v R), and scoring by inference mode (Eq. 13).

    A class keeps its own seen prototype when it is one of the seen classes: by position
    (``seen_rows``: where the seen classes sit among the vectors, in the order of the
    prototypes) or, for any other vector, when it equals a seen class's vector (squared
    distance <= 1e-10), so a user class typed as a copy of a seen class is that class."""

    def __init__(self, seen_semantics, seen_prototypes, ridge_lambda: float = 1.0):
        self.seen_semantics = torch.as_tensor(seen_semantics).double()
        self.seen_prototypes = torch.as_tensor(seen_prototypes).double()
        if self.seen_semantics.shape[0] != self.seen_prototypes.shape[0]:
            raise ValueError(f"{self.seen_semantics.shape[0]} seen class vectors but "
                             f"{self.seen_prototypes.shape[0]} prototypes")
        self.ridge_lambda = float(ridge_lambda)
        eye = torch.eye(self.seen_semantics.shape[1], dtype=torch.float64)
        self._ridge = ridge_combination(eye, self.seen_semantics, self.ridge_lambda) @ self.seen_prototypes  # (A, D)
        self._seen_sq = (self.seen_semantics ** 2).sum(dim=1)

    @classmethod
    def from_features(cls, features, labels, classes: list[int], semantics, ridge_lambda: float = 1.0):
        """Prototypes as the means of the seen classes' images (``seen_prototypes``)."""
        protos = seen_prototypes(torch.as_tensor(features).double(), torch.as_tensor(labels), classes)
        return cls(torch.as_tensor(semantics)[list(classes)], protos, ridge_lambda)

    def of(self, vectors, seen_rows: Optional[list[int]] = None) -> torch.Tensor:
        """Phi_cct of every class vector (K, A) -> (K, D), float64."""
        v = torch.as_tensor(vectors).double().reshape(-1, self.seen_semantics.shape[1])
        protos = v @ self._ridge
        if len(v) and len(self._seen_sq):
            d2 = (v ** 2).sum(dim=1)[:, None] + self._seen_sq[None] - 2 * v @ self.seen_semantics.t()
            best = d2.min(dim=1)
            hit = best.values <= 1e-10
            protos[hit] = self.seen_prototypes[best.indices[hit]]
        if seen_rows is not None:
            if len(seen_rows) != len(self.seen_prototypes):
                raise ValueError(f"seen_rows names {len(seen_rows)} positions for {len(self.seen_prototypes)} "
                                 "seen classes")
            protos[list(seen_rows)] = self.seen_prototypes
        return protos

    def center_similarity(self, features: torch.Tensor, vectors, seen_rows: Optional[list[int]] = None,
                          similarity: str = "cosine") -> torch.Tensor:
        """<phi_cct(x), [Phi_cct]_y> of each image with each class vector: (B, D) -> (B, K)."""
        return center_similarity(features, self.of(vectors, seen_rows).to(features.dtype), similarity)

    def scores(self, mode: str, compat: torch.Tensor, features: torch.Tensor, vectors, beta: float,
               seen_rows: Optional[list[int]] = None) -> torch.Tensor:
        """The scores of inference ``mode`` (``MODES``); ``compat`` are the images' compatibility
        scores with the same classes."""
        if mode == "compatibility":
            return compat
        return mode_scores(mode, compat, self.center_similarity(features, vectors, seen_rows), beta)


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
