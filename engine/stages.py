"""Initialisation steps of section 4.1 that are not plain gradient epochs: the k-means channel
grouping of stage 1 and the pseudo boxes of stage 2."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .attention import channel_descriptor, peak_positions


def channel_peaks(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Peak position of every channel on every image, as (row, col) fractions of (H-1, W-1),
    and the peak value. (N, C, H, W) -> ((N, C, 2), (N, C))."""
    n, c, h, w = features.shape
    flat = features.flatten(2)
    idx = flat.argmax(dim=2)                                             # (N, C)
    rows = (idx // w).float() / max(h - 1, 1)
    cols = (idx % w).float() / max(w - 1, 1)
    return torch.stack([rows, cols], dim=2).numpy(), flat.gather(2, idx[..., None])[..., 0].float().numpy()


def channel_peak_vectors(features: torch.Tensor) -> np.ndarray:
    """For each channel, the normalised (row, col) of its peak on every image, concatenated:
    (N, C, H, W) -> (C, 2N). The description of a channel that k-means groups (MA-CNN [31])."""
    pos, _ = channel_peaks(features)
    n, c = pos.shape[:2]
    return pos.transpose(1, 0, 2).reshape(c, 2 * n)


def kmeans_channel_groups(features: torch.Tensor, n_parts: int, seed: int = 0) -> np.ndarray:
    """Stage 1: group channels by where they peak with scikit-learn's k-means; returns the cluster
    of each channel, (C,). Channels that never activate are left out of the fit and get -1."""
    from sklearn.cluster import KMeans
    vecs = channel_peak_vectors(features)
    active = (features.flatten(2).amax(dim=2) > 0).float().mean(dim=0).numpy() > 0.05
    labels = np.full(vecs.shape[0], -1, dtype=np.int64)
    if active.sum() < n_parts:
        active[:] = True
    km = KMeans(n_clusters=n_parts, n_init=10, random_state=seed).fit(vecs[active])
    labels[active] = km.labels_
    return labels


def pseudo_label_targets(groups: np.ndarray, n_parts: int) -> torch.Tensor:
    """The indicator vectors that the channel weights a_i are pretrained to: (n, C) in {0, 1}."""
    t = torch.zeros(n_parts, len(groups))
    for i in range(n_parts):
        t[i, groups == i] = 1.0
    return t


def pretrain_channel_weights(attention, features: torch.Tensor, targets: torch.Tensor,
                             epochs: int, lr: float = 0.01, batch: int = 64, seed: int = 0) -> list[float]:
    """Fit Eq. 2's FC layers so that a_i matches the k-means indicators (binary cross-entropy),
    then set the map scale and bias of each part so its logits have mean 0 and std 2 over
    positions (data-dependent initialisation, docs/choices.md). Returns the loss per epoch."""
    p = channel_descriptor(features)
    params = [q for m in (attention.fc1, attention.fc2) for q in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(max(epochs, 1) * 20):
        perm = torch.randperm(len(p), generator=g)
        total = 0.0
        for s in range(0, len(p), batch):
            logits = attention.channel_logits(p[perm[s:s + batch]])
            loss = F.binary_cross_entropy_with_logits(logits, targets.expand_as(logits))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(perm[s:s + batch])
        losses.append(total / len(p))
    standardise_map_logits(attention, features)
    return losses


@torch.no_grad()
def standardise_map_logits(attention, features: torch.Tensor, parts=None) -> None:
    """Set Eq. 3's per-part scale and bias so that each map's logits have mean 0 and std 2 over
    the positions of ``features`` (data-dependent initialisation, docs/choices.md); ``parts``:
    the parts to set, all by default."""
    a = attention.channel_weights(channel_descriptor(features))
    raw = torch.einsum("bchw,bnc->bnhw", features, a) / features.shape[1]
    mean = raw.mean(dim=(0, 2, 3))
    std = raw.std(dim=(0, 2, 3)).clamp(min=1e-6)
    for i in range(a.shape[1]) if parts is None else parts:
        attention.scale[i] = 2.0 / std[i]
        attention.bias[i] = -mean[i] * 2.0 / std[i]


def pseudo_squares(maps: torch.Tensor, side: float) -> torch.Tensor:
    """Stage 2 pseudo boxes: a square of side ``side`` (fraction of the image side) centred at each
    map's peak, the centre clamped so the square stays inside the image. (B, n, H, W) -> (B, n, 3)."""
    b, n, h, w = maps.shape
    peaks = peak_positions(maps).float()
    cy = ((peaks[..., 0] + 0.5) / h).clamp(side / 2, 1 - side / 2)
    cx = ((peaks[..., 1] + 0.5) / w).clamp(side / 2, 1 - side / 2)
    return torch.stack([cx, cy, torch.full_like(cx, side)], dim=-1)


def fit_cropper(cropper, maps: torch.Tensor, side: float, iters: int = 100, lr: float = 1e-4,
                batch: int = 64, seed: int = 0) -> list[float]:
    """Stage 2, first half: regress the cropping net (Eq. 7) onto the pseudo squares of cached
    attention maps with MSE (Adam, ``iters`` steps). The net starts near the soft-argmax of the
    map (CroppingNet), so this fit is gentle: longer or faster fits to the hard peaks lowered head
    precision on held-out synthetic birds (0.85 at the start, 0.79 after 300 steps at 3e-4)."""
    targets = pseudo_squares(maps, side)
    opt = torch.optim.Adam(cropper.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(iters):
        pick = torch.randint(len(maps), (min(batch, len(maps)),), generator=g)
        loss = F.mse_loss(cropper(maps[pick]), targets[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def factor_shape(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per factor, over images: share of mass on the map's outer ring, and mean distance of the
    mass from the map's peak in map sides. (N, k, h, w) -> ((k,), (k,))."""
    n, k, h, w = maps.shape
    mass = maps / (maps.sum(axis=(2, 3), keepdims=True) + 1e-9)
    ring = np.ones((h, w), bool)
    ring[1:-1, 1:-1] = False
    border = (mass * ring).sum(axis=(2, 3)).mean(axis=0)
    peak = maps.reshape(n, k, -1).argmax(axis=2)
    py, px = peak // w, peak % w
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy[None, None] - py[..., None, None], xx[None, None] - px[..., None, None]) / max(h, w)
    return border, (mass * d).sum(axis=(2, 3)).mean(axis=0)


NMF_FACTORS = 4     # stage 1 "nmf": factors fitted (docs/choices.md)


def nmf_channel_targets(features: torch.Tensor, n_parts: int, seed: int = 0, k: int = NMF_FACTORS,
                        max_border: float = 0.35, max_pixels: int = 40000) -> tuple[torch.Tensor, list[int]]:
    """Stage 1 by deep feature factorisation (``channel_grouping = "nmf"``, docs/choices.md): NMF
    with ``k`` factors over the pixels of the features clipped at 0 (rows: pixels of all images,
    columns: channels). A factor is a part candidate when under ``max_border`` of its mass lies on
    the map's outer ring (not background); the parts are the ``n_parts`` most compact candidates
    (smallest mean distance of the mass from its peak), then the most compact of the rest. The
    soft targets of a_i are each part's channel loadings over their maximum, (n, C) in [0, 1].
    No part annotation is read. Returns (targets, chosen factor indices)."""
    from sklearn.decomposition import NMF
    x = features.float().clamp(min=0).numpy()
    n, c, h, w = x.shape
    pix = x.transpose(0, 2, 3, 1).reshape(-1, c)
    rng = np.random.default_rng(seed)
    if len(pix) > max_pixels:
        pix = pix[rng.choice(len(pix), max_pixels, replace=False)]
    k = max(k, n_parts)
    comps = NMF(n_components=k, init="nndsvda", max_iter=300, random_state=seed).fit(pix).components_
    unit = comps / (np.linalg.norm(comps, axis=1, keepdims=True) + 1e-9)
    border, spread = factor_shape(np.einsum("nchw,kc->nkhw", x, unit))
    order = sorted(range(k), key=lambda j: (border[j] >= max_border, spread[j]))
    chosen = order[:n_parts]
    targets = comps[chosen] / (comps[chosen].max(axis=1, keepdims=True) + 1e-9)
    return torch.as_tensor(targets, dtype=torch.float32), [int(j) for j in chosen]
