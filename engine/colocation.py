"""Stage 1 channel grouping by co-location: which channels peak at the same place, and which of
those groups are parts.

The paper (section 4.1, after MA-CNN [36]) groups channels with k-means over each channel's peak
coordinates on every training image (``stages.kmeans_channel_groups``, ``channel_grouping =
"kmeans"``). With n = 2 clusters that finds one part and lumps everything else together: on the
synthetic birds the second cluster is body and background, and no tail map can come out of it,
although a weighted sum of the same fixed channels localises tails (a supervised linear probe
reaches 0.86 tail precision with non-negative weights: bench/channel_probe.py, docs/results.md).
``channel_grouping = "colocation"`` keeps the paper's signal, the position of each channel's
peak, and changes how groups are formed and which become parts (docs/choices.md):

1. **Affinity.** A channel's peak counts on an image when it is *strong*: at least the channel's
   median peak over the images. The affinity of channels a and b is the share of images, among
   those where both are strong, on which their peaks lie within ``radius`` of each other (in
   fractions of the map side). Weak peaks, which wander over the background, are left out; that
   is what lets a small group of tail channels, strong only on some tails, stand out.
2. **Groups.** Spectral clustering of that affinity (k-means on its spectral embedding,
   scikit-learn) for several cluster counts ``ks``; every cluster of ``min_channels`` or more
   channels is a candidate.
3. **Which groups are parts.** A candidate's map is the sum of its channels; its peak is the
   group's position on each image. A candidate is kept when it is *consistent* (at least
   ``min_consistency`` of its members' strong peaks lie within ``radius`` of the group's peak)
   and *salient* (the summed response of all channels at the group's peak, min-max normalised
   per image, averages at least ``min_saliency``: it sits on the object, not the clutter).
   Part 1 is the most salient candidate (the more consistent on a tie); each next part is the candidate farthest, on average
   over the images, from the parts already chosen (the diversity the paper's Eq. 6 asks for).
   A channel in two chosen groups goes to the later one. Channels in no part get -1.

Everything here reads only images of the training classes and no part annotations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .stages import channel_peaks


@dataclass
class ChannelGroup:
    channels: np.ndarray        # (C,) bool
    positions: np.ndarray       # (N, 2) normalised (row, col) of the group map's peak per image
    consistency: float
    saliency: float


def strong_peaks(values: np.ndarray) -> np.ndarray:
    """A channel's peak is strong on an image when it is at least the channel's median peak
    over the images and positive. (N, C) -> (N, C) bool."""
    return (values >= np.median(values, axis=0, keepdims=True)) & (values > 0)


def colocation_affinity(positions: np.ndarray, strong: np.ndarray, radius: float) -> np.ndarray:
    """Share of images, among those where both channels peak strongly, on which their peaks lie
    within ``radius`` of each other. Symmetric (C, C) in [0, 1]; 0 for pairs never both strong."""
    n, c, _ = positions.shape
    near = np.zeros((c, c))
    both = np.zeros((c, c))
    for k in range(n):
        d = np.linalg.norm(positions[k][:, None] - positions[k][None], axis=2)
        s = strong[k][:, None] & strong[k][None]
        near += (d < radius) & s
        both += s
    a = near / np.maximum(both, 1)
    return (a + a.T) / 2


def group_positions(features: torch.Tensor, channels: np.ndarray) -> np.ndarray:
    """Peak of the summed map of ``channels`` on every image: (N, 2) normalised (row, col)."""
    pos, _ = channel_peaks(features[:, torch.from_numpy(channels)].sum(dim=1, keepdim=True))
    return pos[:, 0]


def saliency_at(features: torch.Tensor, positions: np.ndarray) -> float:
    """Mean over images of the summed response of all channels at ``positions``, min-max
    normalised per image (1 = where the image responds most)."""
    total = features.sum(dim=1).float()
    n, h, w = total.shape
    flat = total.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    norm = ((total - lo[:, None, None]) / (hi - lo).clamp(min=1e-12)[:, None, None]).numpy()
    r = np.rint(positions[:, 0] * (h - 1)).astype(int)
    c = np.rint(positions[:, 1] * (w - 1)).astype(int)
    return float(norm[np.arange(n), r, c].mean())


def candidate_groups(features: torch.Tensor, ks=(4, 6, 8, 10), radius: float = 0.15,
                     min_channels: int = 3, seed: int = 0) -> list[ChannelGroup]:
    """Step 1-2 and the statistics of step 3 for every spectral cluster of every count in ``ks``."""
    from sklearn.cluster import SpectralClustering
    positions, values = channel_peaks(features)
    strong = strong_peaks(values)
    affinity = colocation_affinity(positions, strong, radius) + 1e-3   # keeps the graph connected
    n_channels = features.shape[1]
    out = []
    for k in ks:
        if k >= n_channels:
            continue
        labels = SpectralClustering(k, affinity="precomputed", random_state=seed).fit(affinity).labels_
        for j in range(k):
            members = labels == j
            if members.sum() < min_channels:
                continue
            pos = group_positions(features, members)
            d = np.linalg.norm(positions[:, members] - pos[:, None], axis=2)
            s = strong[:, members]
            consistency = float((d < radius)[s].mean()) if s.any() else 0.0
            out.append(ChannelGroup(members, pos, consistency, saliency_at(features, pos)))
    return out


def choose_parts(candidates: list[ChannelGroup], n_parts: int, min_consistency: float = 0.4,
                 min_saliency: float = 0.5) -> list[ChannelGroup]:
    """Step 3: the most salient consistent candidate, then each time the one farthest on average
    from those chosen. Fewer than ``n_parts`` when too few candidates pass."""
    pool = [g for g in candidates if g.consistency >= min_consistency and g.saliency >= min_saliency]
    if not pool:
        return []
    chosen = [max(pool, key=lambda g: (g.saliency, g.consistency))]
    while len(chosen) < n_parts:
        rest = [g for g in pool if all(g is not c for c in chosen)]
        if not rest:
            break
        far = lambda g: min(np.linalg.norm(g.positions - c.positions, axis=1).mean() for c in chosen)  # noqa: E731
        chosen.append(max(rest, key=far))
    return chosen


def colocation_channel_groups(features: torch.Tensor, n_parts: int, seed: int = 0, ks=(4, 6, 8, 10),
                              radius: float = 0.15, min_channels: int = 3, min_consistency: float = 0.4,
                              min_saliency: float = 0.5) -> np.ndarray:
    """The part of every channel, (C,) in {-1, 0, ..., n_parts - 1}, or an empty array when fewer
    than ``n_parts`` groups qualify (the caller then falls back to plain k-means)."""
    groups = choose_parts(candidate_groups(features, ks, radius, min_channels, seed), n_parts,
                          min_consistency, min_saliency)
    if len(groups) < n_parts:
        return np.zeros(0, dtype=np.int64)
    labels = np.full(features.shape[1], -1, dtype=np.int64)
    for part, g in enumerate(groups):
        labels[g.channels] = part
    if any((labels == part).sum() == 0 for part in range(n_parts)):   # a later group swallowed one
        return np.zeros(0, dtype=np.int64)
    return labels
