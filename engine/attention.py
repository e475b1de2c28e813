"""Multi-attention subnet (section 3.1): channel descriptor, channel weights, attention maps, and
the multi-attention loss with its compactness and diversity terms."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_descriptor(features: torch.Tensor) -> torch.Tensor:
    """Eq. 1: p_c = 1/(H W) sum_ij b_c(i, j), global average pooling. (B, C, H, W) -> (B, C)."""
    return features.mean(dim=(2, 3))


def attention_maps(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 3: M_i = sigmoid(sum_c a_i^c f_conv^c). features (B, C, H, W), weights (B, n, C) -> (B, n, H, W)."""
    return torch.sigmoid(torch.einsum("bchw,bnc->bnhw", features, weights))


class MultiAttention(nn.Module):
    """Per part i, a stack of two FC layers with ReLU then a sigmoid gate (Eq. 2) on the channel
    descriptor of Eq. 1 gives channel weights a_i; Eq. 3 turns them into an attention map M_i.

    Choice: the hidden layer has C / reduction units (squeeze-excitation style; the paper gives
    no size). Raw weighted sums of unbounded ReLU features saturate the sigmoid of Eq. 3, so the
    channel sum is divided by C (a fixed scale, documented in docs/choices.md) and a learnable
    bias per part is added; both keep Eq. 3's form, a sigmoid of an a_i-weighted channel sum.
    """

    def __init__(self, channels: int, n_parts: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.n_parts = n_parts
        self.fc1 = nn.ModuleList(nn.Linear(channels, hidden) for _ in range(n_parts))
        self.fc2 = nn.ModuleList(nn.Linear(hidden, channels) for _ in range(n_parts))
        self.scale = nn.Parameter(torch.full((n_parts,), 1.0))
        self.bias = nn.Parameter(torch.zeros(n_parts))

    def channel_weights(self, p: torch.Tensor) -> torch.Tensor:
        """Eq. 2: a_i = sigmoid(W2 ReLU(W1 p)) for each part i. (B, C) -> (B, n, C)."""
        return torch.stack([torch.sigmoid(f2(F.relu(f1(p)))) for f1, f2 in zip(self.fc1, self.fc2)], dim=1)

    def channel_logits(self, p: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid of Eq. 2, for the k-means pseudo-label pretraining (stage 1)."""
        return torch.stack([f2(F.relu(f1(p))) for f1, f2 in zip(self.fc1, self.fc2)], dim=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.channel_weights(channel_descriptor(features))
        c = features.shape[1]
        logits = torch.einsum("bchw,bnc->bnhw", features, a) / c
        logits = logits * self.scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return torch.sigmoid(logits), a


def peak_positions(maps: torch.Tensor) -> torch.Tensor:
    """(row, col) of each map's maximum. (B, n, H, W) -> (B, n, 2) integer positions."""
    b, n, h, w = maps.shape
    idx = maps.flatten(2).argmax(dim=2)
    return torch.stack([idx // w, idx % w], dim=-1)


def ideal_gaussian(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """The ideal concentrated map of Eq. 5: a Gaussian blob of peak 1 and std ``sigma`` (in map
    cells) centred at each map's peak activation. Not differentiated (a target)."""
    b, n, h, w = maps.shape
    peaks = peak_positions(maps.detach()).to(maps.dtype)
    rows = torch.arange(h, device=maps.device, dtype=maps.dtype).view(1, 1, h, 1)
    cols = torch.arange(w, device=maps.device, dtype=maps.dtype).view(1, 1, 1, w)
    d2 = (rows - peaks[..., 0, None, None]) ** 2 + (cols - peaks[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma ** 2))


def compactness_loss(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Eq. 5: L_CPT(M_i) = 1/|Z| sum_z ||m_i^z - m~_i^z||^2, per map. (B, n, H, W) -> (B, n)."""
    target = ideal_gaussian(maps, sigma)
    return ((maps - target) ** 2).flatten(2).mean(dim=2)


def diversity_loss(maps: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Eq. 6: L_DIV(M_i) = sum_z m_i^z max(0, m^_z - mrg), with m^_z = max_{k != i} m_k^z.
    (B, n, H, W) -> (B, n). Zero when there is only one map."""
    b, n, h, w = maps.shape
    if n < 2:
        return maps.new_zeros(b, n)
    others = []
    for i in range(n):
        rest = torch.cat([maps[:, :i], maps[:, i + 1:]], dim=1)
        others.append(rest.max(dim=1).values)
    m_hat = torch.stack(others, dim=1)
    return (maps * F.relu(m_hat - margin)).flatten(2).sum(dim=2)


def multi_attention_loss(maps: torch.Tensor, sigma: float, lam: float, margin: float) -> torch.Tensor:
    """Eq. 4: L_MA = sum_i [L_CPT(M_i) + lambda L_DIV(M_i)], averaged over the batch."""
    per_map = compactness_loss(maps, sigma) + lam * diversity_loss(maps, margin)
    return per_map.sum(dim=1).mean()
