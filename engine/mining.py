"""Stage 1 refinement by discriminative mining (``train.mine_rounds``, docs/choices.md).

The channel grouping's Eq. 3 maps are diffuse on real birds: a sigmoid of a channel sum that
fires over most of the bird, its peak about a cell towards the body (docs/results.md, runs 9a and
23). Mid-level discriminative mining (Singh, Gupta and Efros, ECCV 2012) sharpens such a start
without labels. Each round, on every grouping image, the part's current peak cell is a positive
and ``negatives`` random cells at least ``gap`` cells away from it (Chebyshev distance) are
negatives; a class-balanced, L2-regularised logistic regression over the channels at those
cells gives the next detector, whose peaks are the next round's positives.

The detector's weights are kept non-negative, so it is an a_i of Eq. 2 (a sigmoid's output, in
(0, 1)) up to the map's scale: Eq. 3's map stays a sigmoid of a positively weighted channel sum.
No part box enters: positives and negatives come from the model's own maps.

With ``standardise`` (``train.mine_standardise``) each regression reads every channel divided by
its standard deviation over the grouping images' cells (and centred), so that the L2 penalty
does not favour the channels with large activations; the detector is mapped back onto the raw
channels, still non-negative (docs/choices.md, docs/results.md run 33).
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np
import torch

from .attention import peak_positions
from .stages import standardise_map_logits

MINING_GAP = 3          # cells: negatives lie at least this far from the positive (0.15 of a 20-cell map)
MINING_NEGATIVES = 20   # negative cells sampled per image and round
MINING_C = 0.1          # inverse L2 strength, scikit-learn's convention


def peak_cells(logits: torch.Tensor) -> np.ndarray:
    """(N, H, W) -> (N, 2) (row, col) of each map's maximum."""
    return peak_positions(logits[:, None])[:, 0].cpu().numpy()


def mining_samples(features: torch.Tensor, logits: torch.Tensor, gap: int, negatives: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Channel vectors of each image's peak cell (label 1) and of ``negatives`` cells at least
    ``gap`` cells from it (label 0). features (N, C, H, W), logits (N, H, W) -> (X (M, C), y (M,))."""
    n, c, h, w = features.shape
    peak = peak_cells(logits)
    yy, xx = np.mgrid[0:h, 0:w]
    flat = features.reshape(n, c, h * w)
    pos, neg = [], []
    for k in range(n):
        pos.append(flat[k, :, peak[k, 0] * w + peak[k, 1]].numpy())
        far = np.flatnonzero((np.maximum(np.abs(yy - peak[k, 0]), np.abs(xx - peak[k, 1])) >= gap).ravel())
        if len(far):
            pick = rng.choice(far, size=min(negatives, len(far)), replace=False)
            neg.append(flat[k][:, pick].T.numpy())
    if not neg:
        raise ValueError(f"mining needs cells at least {gap} cells from a map's peak, and the maps are "
                         f"{h} x {w}: use a larger model.attention_size or train.mine_rounds = 0")
    x = np.concatenate([np.stack(pos)] + neg).astype(np.float64)
    y = np.r_[np.ones(len(pos)), np.zeros(len(x) - len(pos))]
    return x, y


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = MINING_C, nonnegative: bool = True
                 ) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression, ``sum_i s_i log(1 + exp(-t_i (w.x_i + b))) + |w|^2 / (2c)``
    with t in {-1, 1} and s_i = M / (2 M_class): scikit-learn's objective, with w >= 0 when
    ``nonnegative`` (L-BFGS-B). -> (w (C,), b)."""
    from scipy.optimize import minimize
    t = 2.0 * y - 1.0
    s = np.where(y > 0, len(y) / (2.0 * max(y.sum(), 1)), len(y) / (2.0 * max((1 - y).sum(), 1)))
    d = x.shape[1]

    def loss(v):
        w, b = v[:d], v[d]
        z = t * (x @ w + b)
        lz = np.logaddexp(0.0, -z)
        g = -s * t * np.exp(-np.logaddexp(0.0, z))      # d/dm of s log(1 + e^{-t m}) = -s t sigmoid(-t m)
        return float((s * lz).sum() + w @ w / (2 * c)), np.r_[x.T @ g + w / c, g.sum()]

    bounds = [(0.0, None)] * d + [(None, None)] if nonnegative else None
    res = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 2000})
    return res.x[:d], float(res.x[d])


def detector_logits(features: torch.Tensor, w: np.ndarray, b: float) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): ``w . f(i, j) + b`` at every cell."""
    return torch.einsum("nchw,c->nhw", features, torch.as_tensor(w, dtype=features.dtype)) + b


def channel_standardisation(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) -> each channel's mean and standard deviation over all cells of all images."""
    c = features.shape[1]
    total, square, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for chunk in features.split(64):        # in double, a chunk at a time (1,392 channels: GBs at once)
        f = chunk.double().transpose(0, 1).reshape(c, -1)
        total += f.sum(1)
        square += (f * f).sum(1)
        n += f.shape[1]
    mean = total / n
    var = (square - n * mean * mean) / max(n - 1, 1)
    return mean.numpy(), var.clamp_min(0).sqrt().clamp_min(1e-6).numpy()


def fit_standardised(x: np.ndarray, y: np.ndarray, mean: np.ndarray, std: np.ndarray,
                     nonnegative: bool = True) -> tuple[np.ndarray, float]:
    """``fit_logistic`` on the columns of ``x`` standardised by (mean, std), returned as the same
    detector over the raw channels: ``w = w_s / std``, ``b = b_s - (w_s / std) . mean``. The L2
    penalty then weighs every channel on its own scale; ``w`` stays non-negative where ``w_s`` is."""
    w, b = fit_logistic((x - mean) / std, y, nonnegative=nonnegative)
    w = w / std
    return w, float(b - w @ mean)


def mine_part_detector(features: torch.Tensor, logits: torch.Tensor, rounds: int, seed: int = 0,
                       gap: int = MINING_GAP, negatives: int = MINING_NEGATIVES, nonnegative: bool = True,
                       rng: Optional[np.random.Generator] = None,
                       on_round: Optional[Callable[[int, np.ndarray, float, float], None]] = None,
                       standardise: bool = False) -> tuple[np.ndarray, float, list[float]]:
    """``rounds`` rounds of mining from the start ``logits`` (N, H, W) over ``features``
    (N, C, H, W). Returns the last detector (w, b) and, per round, the share of images whose
    peak cell moved (the mining's own convergence, no label). ``rng`` (default: seeded by
    ``seed``) draws the negatives; ``on_round(round, w, b, moved)`` is called after each round.
    ``standardise``: each round's regression reads the channels standardised over all cells of
    ``features`` (``fit_standardised``, ``train.mine_standardise``)."""
    if rounds < 1:
        raise ValueError(f"mining needs at least one round, got {rounds}")
    h, w_ = features.shape[-2:]
    if min(h, w_) < 2 * gap:    # else a round whose peaks all sit mid-map has no negative
        raise ValueError(f"mining needs cells at least {gap} cells from a map's peak wherever it is, "
                         f"and the maps are {h} x {w_} (at least {2 * gap} x {2 * gap} needed): use a "
                         f"larger model.attention_size or train.mine_rounds = 0")
    rng = np.random.default_rng(seed) if rng is None else rng
    stats = channel_standardisation(features) if standardise else None
    moved, w, b = [], None, 0.0
    for r in range(rounds):
        x, y = mining_samples(features, logits, gap, negatives, rng)
        w, b = (fit_standardised(x, y, *stats, nonnegative=nonnegative) if stats is not None
                else fit_logistic(x, y, nonnegative=nonnegative))
        before, logits = peak_cells(logits), detector_logits(features, w, b)
        moved.append(float(np.mean(np.any(peak_cells(logits) != before, axis=1))))
        if on_round is not None:
            on_round(r, w, b, moved[-1])
    return w, b, moved


@torch.no_grad()
def set_part_detector(attention, part: int, w: np.ndarray, features: torch.Tensor) -> None:
    """Write a non-negative detector into part ``part`` of a MultiAttention: Eq. 2's a_i becomes
    the constant ``w / max(w)`` (the second FC layer's weights zeroed, its bias the logit of
    that), and the map's scale and bias standardise its logits on ``features`` to mean 0, std 2
    over positions, as after the grouping's pretraining (stages.pretrain_channel_weights)."""
    if (w < 0).any():
        raise ValueError("a part detector written into Eq. 2 needs non-negative channel weights")
    a = torch.as_tensor(w / max(float(w.max()), 1e-12), dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
    fc2 = attention.fc2[part]
    fc2.weight.zero_()
    fc2.bias.copy_(torch.logit(a))
    standardise_map_logits(attention, features, parts=[part])


def mine_attention(attention, features: torch.Tensor, rounds: int, seed: int = 0, standardise: bool = False
                   ) -> Iterator[tuple[int, np.ndarray, list[float]]]:
    """Stage 1's mining (``train.mine_rounds``): each part's map of ``attention`` on ``features``
    (as the grouping left them, read once before any is replaced), mined for ``rounds`` rounds with
    the negatives seeded ``seed + i``, then written into Eq. 2 (``set_part_detector``). Yields
    (part, detector weights, share of peaks moved per round) after each part is written."""
    with torch.no_grad():
        maps = attention(features)[0]
    for i in range(maps.shape[1]):
        w, _, moved = mine_part_detector(features, maps[:, i], rounds, seed=seed + i, standardise=standardise)
        set_part_detector(attention, i, w, features)
        yield i, w, moved
