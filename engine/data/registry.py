"""``load_dataset(kind, root, **options)``: one entry point for every dataset kind.

Options are the keyword arguments of the kind's loader; an unknown kind or option is a
DatasetError naming it. Common options (see docs/datasets.md for each kind's own):
``split`` ("ps" default, "ss"), ``att_splits`` (path to an xlsa17 att_splits.mat; default
``<root>/att_splits.mat`` then the shared xlsa17 folder), ``semantics`` ("att" default,
"original_att", "dataset"), ``fold`` (validation fold K, default 1), ``seed`` (default 0),
``check_images`` (default True; False loads metadata only).
"synthetic" passes its options to ``sgma.engine.data.synthetic.make_synthetic`` (imported lazily)
and ignores ``root``; common options it does not take are dropped when they hold the defaults
above (so a uniform caller can pass them) and are an error otherwise.
"""
from __future__ import annotations

import inspect
from typing import Callable, Optional

from ..config import DataConfig
from .base import DatasetError, ZSLDataset

DATASET_KINDS = ("synthetic", "cub", "awa2", "flo", "folder")
_COMMON_DEFAULTS = {"split": "ps", "semantics": "att", "fold": 1, "att_splits": None, "check_images": True}


def _loader(kind: str) -> Callable[..., ZSLDataset]:
    if kind == "synthetic":
        try:
            from .synthetic import make_synthetic
        except ImportError as e:
            raise DatasetError(f"the synthetic dataset is not available: {e}") from None
        return make_synthetic
    if kind == "cub":
        from .cub import load_cub
        return load_cub
    if kind == "awa2":
        from .awa2 import load_awa2
        return load_awa2
    if kind == "flo":
        from .flo import load_flo
        return load_flo
    if kind == "folder":
        from .folder import load_folder
        return load_folder
    raise DatasetError(f"unknown dataset kind {kind!r} (choose from {', '.join(DATASET_KINDS)})")


def dataset_options(kind: str) -> dict[str, object]:
    """The options a kind accepts, with their defaults (for CLIs and the GUI)."""
    sig = inspect.signature(_loader(kind))
    return {n: p.default for n, p in sig.parameters.items()
            if n != "root" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def load_dataset(kind: str, root: Optional[str] = None, **options) -> ZSLDataset:
    fn = _loader(kind)
    sig = inspect.signature(fn)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    known = dataset_options(kind)
    if kind == "synthetic":   # a uniform caller may pass the common options at their defaults
        options = {k: v for k, v in options.items()
                   if k in known or k not in _COMMON_DEFAULTS or v != _COMMON_DEFAULTS[k]}
    for name in options:
        if name not in known and not accepts_any:
            raise DatasetError(f"unknown option {name!r} for dataset kind {kind!r} "
                               f"(known: {', '.join(sorted(known)) or 'none'})")
    if kind == "synthetic":
        return fn(**options)
    if root is None:
        raise DatasetError(f"dataset kind {kind!r} needs a root folder: give --root PATH (or data.root)")
    if "fold" in options and (not isinstance(options["fold"], int) or options["fold"] < 1):
        raise DatasetError(f"fold must be an integer >= 1, got {options['fold']!r}")
    return fn(root, **options)


def load_data(dc: DataConfig) -> ZSLDataset:
    """The dataset a ``DataConfig`` describes: the one way from a configuration to a dataset."""
    return load_dataset(dc.kind, dc.root or None, **dc.loader_options())
