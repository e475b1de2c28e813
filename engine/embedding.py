"""Joint feature learning losses (section 3.3): the embedding softmax over compatibility scores
(Eq. 9) with late fusion, the class-centre triplet loss (Eq. 10) and the total objective (Eq. 11)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SemanticProjection(nn.Module):
    """W_i of a branch: phi_i(x) = theta_i(x)^T W_i maps a visual feature to the semantic space."""

    def __init__(self, feature_dim: int, semantic_dim: int):
        super().__init__()
        self.W = nn.Linear(feature_dim, semantic_dim, bias=False)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.W(theta)


def compatibility(mapped: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
    """s_j = theta(x)^T W phi(y_j) for every class j. mapped (B, A), semantics (K, A) -> (B, K)."""
    return mapped @ semantics.t()


def fused_compatibility(mapped_per_branch: list[torch.Tensor], semantics: torch.Tensor) -> torch.Tensor:
    """Late fusion (section 3.3): s_j = sum_i s_j^i over the image branch and each part branch."""
    return torch.stack([compatibility(m, semantics) for m in mapped_per_branch]).sum(dim=0)


def embedding_softmax_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 9: L_CLS = -1/N sum log softmax(s)_y over the seen classes (cross-entropy on scores)."""
    return F.cross_entropy(scores, labels)


def class_center_triplet_loss(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor,
                              margin: float = 0.8) -> torch.Tensor:
    """Eq. 10: max(0, mrg + ||phi^_i - C^_i||^2 - ||phi^_i - C^_k||^2) for k != i, with ^ the L2
    normalisation. Reduction (the paper gives none): mean over every other class centre k, then
    mean over the batch. features (B, D), centers (K, D), labels (B,)."""
    f = F.normalize(features, dim=1)
    c = F.normalize(centers, dim=1)
    d2 = torch.cdist(f, c) ** 2                                         # (B, K)
    pos = d2.gather(1, labels[:, None])                                 # (B, 1)
    hinge = F.relu(margin + pos - d2)                                   # (B, K)
    neg_mask = torch.ones_like(hinge).scatter_(1, labels[:, None], 0.0)
    return ((hinge * neg_mask).sum(dim=1) / neg_mask.sum(dim=1).clamp(min=1)).mean()


def sgma_objective(l_ma: torch.Tensor, l_cls: torch.Tensor, l_cct: torch.Tensor,
                   alpha1: float = 1.0, alpha2: float = 1.0) -> torch.Tensor:
    """Eq. 11: L_SGMA = L_MA + alpha1 L_CLS + alpha2 L_CCT."""
    return l_ma + alpha1 * l_cls + alpha2 * l_cct
