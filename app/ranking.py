"""Ranking the whole dataset by any class vector, new ones included, with one matrix product.

The class-centre feature of an image is the concatenation of its per-branch mapped features,
phi_cct(x) = [phi_1(x), ..., phi_n(x)], and the fused compatibility with a class y is
sum_i phi_i(x) . phi(y) (late fusion), i.e. phi_cct(x) . tile(phi(y), n). The features are
extracted once per (model, dataset) by ``sgma.engine.features.FeatureCache`` (which also keeps
them on disk in the user's cache folder); every ranking afterwards is a matrix-vector product. When
that engine module is absent, a small in-memory equivalent below is used.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

CHUNK = 64


def cache_path_for(checkpoint_path: str, dataset) -> str:
    """Where the feature cache of a checkpoint goes: the engine's default, in the user's cache
    folder keyed by checkpoint and dataset (never the install folder of the bundled model)."""
    from sgma.engine.features import default_cache_path
    return str(default_cache_path(checkpoint_path, dataset))


def build_cache(checkpoint_path: Optional[str], model, dataset, ctx=None):
    """The feature cache of (model, dataset); runs in a worker thread. ``ctx`` reports progress
    and cancels between chunks."""
    def progress(done, total):
        if ctx is not None:
            ctx.check()
            ctx.progress(done, total)

    try:
        from sgma.engine.features import FeatureCache as EngineCache
    except ImportError:
        EngineCache = None
    if EngineCache is not None:
        if checkpoint_path:
            cache = EngineCache.load_or_build(checkpoint_path, model, dataset, progress=progress)
        else:
            cache = EngineCache.build(model, dataset, progress=progress)
    else:
        cache = MemoryCache.build(model, dataset, progress)
    cache.owner = (id(model), id(dataset))
    return cache


def fits(cache, model, dataset) -> bool:
    return cache is not None and getattr(cache, "owner", None) == (id(model), id(dataset))


def rank(cache, class_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dataset image indices best match first, and their compatibility scores."""
    order, scores = cache.rank(np.asarray(class_vector, dtype=np.float32).reshape(1, -1), return_scores=True)
    return np.asarray(order, dtype=np.int64), np.asarray(scores, dtype=np.float64)


class MemoryCache:
    """The fallback: per-image class-centre features kept in memory."""

    def __init__(self, cct: np.ndarray, n_branches: int, unit_norm: bool):
        self.cct, self.n_branches, self.unit_norm = cct, n_branches, unit_norm
        self.dim = cct.shape[1] // n_branches
        self.fused = cct.reshape(len(cct), n_branches, self.dim).sum(axis=1)

    @classmethod
    def build(cls, model, dataset, progress) -> "MemoryCache":
        from sgma.engine.extract import extract
        n, out = len(dataset), []
        for s in range(0, n, CHUNK):
            progress(s, n)
            out.append(np.asarray(extract(model, dataset, range(s, min(s + CHUNK, n)))["cct"], np.float32))
        progress(n, n)
        sem = np.asarray(dataset.semantics, dtype=np.float32)
        cct = np.concatenate(out) if out else np.zeros((0, len(model.branch_names) * sem.shape[1]), np.float32)
        return cls(cct, len(model.branch_names), bool(np.allclose(np.linalg.norm(sem, axis=1), 1, atol=1e-3)))

    def rank(self, vector: np.ndarray, return_scores: bool = True):
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.unit_norm and np.linalg.norm(v) > 0:
            v = v / np.linalg.norm(v)
        s = self.fused @ v
        order = np.argsort(-s, kind="stable")
        return order, s[order]
