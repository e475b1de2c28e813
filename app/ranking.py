"""Ranking the whole dataset by any class vector, new ones included, with one matrix product.

The class-centre feature of an image is the concatenation of its per-branch mapped features,
phi_cct(x) = [phi_1(x), ..., phi_n(x)], and the fused compatibility with a class y is
sum_i phi_i(x) . phi(y) (late fusion), i.e. phi_cct(x) . tile(phi(y), n). The features are
extracted once per (model, dataset) by ``sgma.engine.features.FeatureCache`` (which also keeps
them on disk in the user's cache folder, with the attention maps, so an evaluation of the same
model and dataset reads it instead of a second pass); every ranking afterwards is a
matrix-vector product.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def cache_path_for(checkpoint_path: str, dataset) -> str:
    """Where the feature cache of a checkpoint goes: the engine's default, in the user's cache
    folder keyed by checkpoint and dataset (never the install folder of the bundled model)."""
    from sgma.engine.features import default_cache_path
    return str(default_cache_path(checkpoint_path, dataset))


def build_cache(checkpoint_path: Optional[str], model, dataset, ctx=None):
    """The feature cache of (model, dataset), with the attention maps so that the evaluation can
    read it too (``evaluation_panel.run_evaluation``); runs in a worker thread. ``ctx`` reports
    progress and cancels between chunks."""
    from sgma.engine.features import FeatureCache

    def progress(done, total):
        if ctx is not None:
            ctx.check()
            ctx.progress(done, total)

    if checkpoint_path:
        cache = FeatureCache.load_or_build(checkpoint_path, model, dataset, progress=progress, keep_maps=True)
    else:
        cache = FeatureCache.build(model, dataset, progress=progress, keep_maps=True)
    cache.owner = (id(model), id(dataset))
    return cache


def fits(cache, model, dataset) -> bool:
    return cache is not None and getattr(cache, "owner", None) == (id(model), id(dataset))


def rank(cache, class_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dataset image indices best match first, and their compatibility scores."""
    order, scores = cache.rank(np.asarray(class_vector, dtype=np.float32).reshape(1, -1), return_scores=True)
    return np.asarray(order, dtype=np.int64), np.asarray(scores, dtype=np.float64)
