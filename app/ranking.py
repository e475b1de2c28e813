"""Ranking the whole dataset by any class vector, new ones included, with one matrix product.

The class-centre feature of an image is the concatenation of its per-branch mapped features,
phi_cct(x) = [phi_1(x), ..., phi_n(x)], and the fused compatibility with a class y is
sum_i phi_i(x) . phi(y) (late fusion). Hence compat(x, y) = phi_cct(x) . tile(phi(y), n): the
features are extracted once per (model, dataset) and every ranking afterwards is ``F @ v``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

CHUNK = 64


def extract_features(model, dataset, indices: Optional[Sequence[int]] = None, batch_size: int = 32,
                     ctx=None) -> np.ndarray:
    """(N, D) class-centre features of ``indices`` (all images by default), in chunks so that
    progress is reported and a cancel request is honoured between them."""
    from sgma.engine.extract import extract
    indices = list(range(len(dataset))) if indices is None else list(indices)
    out = []
    for s in range(0, len(indices), CHUNK):
        if ctx is not None:
            ctx.check()
            ctx.progress(s, len(indices))
        ex = extract(model, dataset, indices[s:s + CHUNK], batch_size)
        out.append(np.asarray(ex["cct"], dtype=np.float32))
    if ctx is not None:
        ctx.progress(len(indices), len(indices))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def normalise_like(vectors: np.ndarray, semantics: np.ndarray) -> np.ndarray:
    """L2-normalise class vectors when the dataset's semantic rows have unit norm (as the
    predictor does for user classes)."""
    v = np.asarray(vectors, dtype=np.float32).reshape(-1, semantics.shape[1])
    if np.allclose(np.linalg.norm(semantics, axis=1), 1.0, atol=1e-3):
        n = np.linalg.norm(v, axis=1, keepdims=True)
        v = v / np.where(n > 0, n, 1.0)
    return v


class FeatureCache:
    """Per-image features of one (model, dataset) pair, kept in memory."""

    def __init__(self, features: np.ndarray, n_attributes: int, model_id: int, dataset_id: int):
        if features.ndim != 2 or features.shape[1] % n_attributes:
            raise ValueError(f"features of width {features.shape[1]} are not a whole number of "
                             f"{n_attributes}-attribute branches")
        self.features = features
        self.n_branches = features.shape[1] // n_attributes
        self.key = (model_id, dataset_id)

    def fits(self, model, dataset) -> bool:
        return self.key == (id(model), id(dataset))

    def scores(self, class_vectors: np.ndarray) -> np.ndarray:
        """(N, K) compatibility of every image with every class vector (already normalised)."""
        v = np.atleast_2d(np.asarray(class_vectors, dtype=np.float32))
        return self.features @ np.tile(v, (1, self.n_branches)).T

    def rank(self, class_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image indices best match first, and their scores."""
        s = self.scores(class_vector)[:, 0]
        order = np.argsort(-s, kind="stable")
        return order, s[order]
