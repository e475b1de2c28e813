"""The models the package ships, one per dataset kind, and how a run's checkpoint becomes one.

``BUNDLED`` is the one list: the app opens the bundled model of the dataset it opens when no
checkpoint is given, and ``sgma evaluate`` without a checkpoint uses it. A bundled file is a
``best.pt`` without what only resuming needs (optimizer, scheduler, random-generator states), so
it stays small; it still loads through ``load_checkpoint`` and its schema check.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .checkpoint import load_checkpoint, save_checkpoint

# dataset kind -> file in the sgma.resources package, and what it was trained on
BUNDLED = {
    "synthetic": ("demo.pt", "the demo preset on the built-in synthetic birds"),
    "cub": ("cub.pt", "the cpu preset on cub50_plus (real CUB birds of classes 001-050), retrained on its 40 seen classes"),
}
TRAINING_ONLY = ("optimizer", "scheduler", "grad_scaler", "rng")


def resources_dir() -> Path:
    from sgma import resources
    return Path(resources.__file__).parent


def bundled_checkpoint(kind: str) -> Optional[Path]:
    """The shipped model for dataset ``kind``, or None when there is none (or its file is absent)."""
    if kind not in BUNDLED:
        return None
    p = resources_dir() / BUNDLED[kind][0]
    return p if p.is_file() else None


def slim_state(state: dict) -> dict:
    """A checkpoint dict without the training-only entries (it can no longer be resumed)."""
    out = {k: v for k, v in state.items() if k not in TRAINING_ONLY}
    out.pop("format_version", None)
    out["bundled"] = True
    return out


def write_bundle(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write ``src`` (a checkpoint or run folder) slimmed to ``dst``, atomically."""
    return save_checkpoint(slim_state(load_checkpoint(src)), dst)
