"""Checkpoints: a dict of plain types and tensors, written atomically (temporary file in the same
folder, fsync, os.replace), kept as ``last.pt`` and ``best.pt``, and read back with
``torch.load(weights_only=True)`` so a hostile file cannot run code.

``load_checkpoint`` then checks the schema (``validate_state``): the keys every reader uses, their
types, the model configuration (with upper bounds on every size, so a hostile file cannot ask for
a 200,000-pixel attention input), semantics of shape (classes, attributes), and finite weights,
semantics, prototypes, beta and the GZSL gamma. Any failure is a ``CheckpointError`` naming the file and the key.
``model_from_checkpoint`` rebuilds the trained SGMA from a loaded checkpoint.
The bounds (``MAX_SIZES``) are this project's choice: 4x the paper's 448 px input, far more parts
and hidden units than any preset (docs/reliability.md)."""
from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import SGMAError
from .io import atomic_write_bytes

if TYPE_CHECKING:
    from .model import SGMA

FORMAT_VERSION = 1
# what a run folder opens as its model, first found wins (engine/trainer.py writes them)
RUN_MODELS = ("final.pt", "best.pt", "last.pt")
MAX_SIZES = {"attention_size": 2048, "image_size": 2048, "part_size": 2048, "n_parts": 16,
             "crop_hidden": 16384, "attention_reduction": 4096, "part_source_size": 2048}
MIN_ZERO = {"part_source_size"}      # 0 means "the attention input"


class CheckpointError(SGMAError, ValueError):
    """A checkpoint is unreadable, hostile, or does not fit what it is loaded into."""


@dataclass(frozen=True)
class RunPosition:
    """Where a run stands: the stage (index into ``config.STAGES``), the epoch in it, the next
    batch of that epoch, and the gradient steps taken so far. Stored in every checkpoint as the
    dict ``position``; a resume continues from it, replaying exactly the batches left."""
    stage: int = 0
    epoch: int = 0
    batch: int = 0
    global_step: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunPosition":
        return cls(**{k: int(d[k]) for k in POSITION_FIELDS})


POSITION_FIELDS = tuple(RunPosition.__dataclass_fields__)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    state = {"format_version": FORMAT_VERSION, **state}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def model_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder's model: the first of ``RUN_MODELS`` it holds."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_MODELS:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no {', '.join(RUN_MODELS)} in this run folder")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | os.PathLike, validate: bool = True) -> dict[str, Any]:
    """Read a checkpoint file, or a run folder's model: ``final.pt`` (retrained on every seen class),
    else ``best.pt`` (selected on the validation classes), else ``last.pt``. ``validate=False`` skips
    the schema check (for low-level tests of the file format only)."""
    path = model_path(path)
    _refuse_other_formats(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(e)
        if "global" in reason.lower():         # a class or function reference: would run code
            raise CheckpointError(f"{path}: refused, the file holds objects other than tensors and plain "
                                  f"data (loading it could run code): {reason}") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}") from None
    except Exception as e:  # noqa: BLE001 - the unpickler fails in many ways on damaged bytes
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                              f"{_first_line(e)}") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path}: not an SGMA checkpoint (no format_version)")
    version = state["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than this "
                              f"program's {FORMAT_VERSION}")
    if validate:
        validate_state(state, path)
    return state


def _refuse_other_formats(path: Path) -> None:
    """A file that is neither a zip archive (torch.save) nor a pickle is named as what it is, rather
    than with the unpickler's byte value (``101`` for a text file starting with 'e')."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if head and not head.startswith(b"PK\x03\x04") and head[:1] != b"\x80":
        kind = "a text file" if _looks_like_text(head) else "of another format"
        raise CheckpointError(f"{path}: not a model checkpoint: the file is {kind}. A model is a .pt file "
                              "written by training (final.pt, best.pt or last.pt in a run folder), or the run folder")


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 of printable characters and line breaks (a character cut at the end of ``head`` is allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            return False
        text = head[:e.start].decode("utf-8")
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _unpickler_reason(e: BaseException) -> str:
    """The informative line of torch's weights_only error (it wraps it in advice about
    weights_only=False, which must not be followed for an untrusted file)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "Unsupported" in ln:
            return ln[:300]
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _names(path, state: dict, key: str, required: bool = True) -> list[str] | None:
    if key not in state:
        if required:
            raise CheckpointError(f"{path}: not a usable SGMA checkpoint: the key {key!r} is missing")
        return None
    v = state[key]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise CheckpointError(f"{path}: {key!r} must be a list of names, got {type(v).__name__}")
    if len(set(v)) != len(v):
        raise CheckpointError(f"{path}: {key!r} lists a name twice")
    return list(v)


def _finite_tensor(path, key: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{path}: {key!r} must be a tensor, got {type(t).__name__}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{path}: {key!r} has NaN or infinite values")
    return t


def validate_state(state: dict, path: str | os.PathLike = "<checkpoint>") -> None:
    """Raise CheckpointError unless ``state`` has the keys, types, bounded sizes and finite values
    every reader of a checkpoint relies on (see the module docstring)."""
    from .config import ConfigError, DataConfig, from_dict, model_config_of
    for key in ("config", "model", "semantics"):
        if key not in state:
            raise CheckpointError(f"{path}: not a usable SGMA checkpoint: the key {key!r} is missing")
    cfg = state["config"]
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or not isinstance(cfg.get("data"), dict):
        raise CheckpointError(f"{path}: 'config' must be a table with 'model' and 'data' tables")
    try:
        mcfg = model_config_of(cfg)
        mcfg.validate()
        from_dict(DataConfig, cfg["data"], "data")
        inference_config(state)
    except ConfigError as e:
        raise CheckpointError(f"{path}: the stored configuration is invalid: {e}") from None
    for key, hi in MAX_SIZES.items():
        v, lo = getattr(mcfg, key), 0 if key in MIN_ZERO else 1
        if not lo <= v <= hi:
            raise CheckpointError(f"{path}: config model.{key} = {v} is outside {lo}..{hi}")
    classes = _names(path, state, "class_names")
    attrs = _names(path, state, "attribute_names")
    train = _names(path, state, "train_classes")
    if not classes or not attrs or not train:
        raise CheckpointError(f"{path}: class_names, attribute_names and train_classes must not be empty")
    for key in ("train_classes", "val_classes", "seen_classes", "unseen_classes"):
        names = _names(path, state, key, required=False) or []
        unknown = [n for n in names if n not in set(classes)]
        if unknown:
            raise CheckpointError(f"{path}: {key!r} names classes not in class_names: {unknown[:3]}")
    sem = _finite_tensor(path, "semantics", state["semantics"])
    if tuple(sem.shape) != (len(classes), len(attrs)):
        raise CheckpointError(f"{path}: 'semantics' has shape {tuple(sem.shape)}, expected "
                              f"({len(classes)} classes, {len(attrs)} attributes)")
    weights = state["model"]
    if not isinstance(weights, dict) or not weights or not all(isinstance(k, str) for k in weights):
        raise CheckpointError(f"{path}: 'model' must be a non-empty table of named tensors")
    for k, t in weights.items():
        _finite_tensor(path, f"model.{k}", t)
    if state.get("prototypes") is not None:
        pr = _finite_tensor(path, "prototypes", state["prototypes"])
        if pr.dim() != 2 or pr.shape[0] != len(train):
            raise CheckpointError(f"{path}: 'prototypes' has shape {tuple(pr.shape)}, expected "
                                  f"({len(train)} training classes, D)")
    for key in ("beta", "gzsl_gamma"):
        b = state.get(key, 0.0)
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
            raise CheckpointError(f"{path}: {key!r} must be a finite number, got {b!r}")
    if "best_metric" in state:
        b = state["best_metric"]
        if isinstance(b, bool) or not isinstance(b, (int, float)) or math.isnan(b):
            raise CheckpointError(f"{path}: 'best_metric' must be a number, got {b!r}")
    pos = state.get("position")
    if pos is not None and not (isinstance(pos, dict) and all(
            isinstance(pos.get(k), int) and not isinstance(pos.get(k), bool) and pos.get(k) >= 0
            for k in POSITION_FIELDS)):
        raise CheckpointError(f"{path}: 'position' must hold non-negative integers {', '.join(POSITION_FIELDS)}")


def inference_config(state: dict):
    """The checkpoint's ``InferenceConfig`` (beta, ridge lambda, mode), wherever its version kept
    it (``config.inference``, or ``config.model`` before 2026-12-03); defaults when it has none."""
    from .config import InferenceConfig, from_dict, moved_keys
    cfg = state.get("config") if isinstance(state, dict) else None
    if not isinstance(cfg, dict):
        return InferenceConfig()
    table = moved_keys(cfg).get("inference", {})
    ic = from_dict(InferenceConfig, table if isinstance(table, dict) else {}, "inference")
    ic.validate()
    return ic


def model_from_checkpoint(state: dict, device: str | torch.device = "cpu") -> "SGMA":
    """Rebuild a trained SGMA from a checkpoint dict (no pretrained weights are read)."""
    from .config import model_config_of
    from .model import SGMA
    mcfg = model_config_of(state["config"])
    packaged = list(state.get("packaged_weights") or [])     # a bundle's frozen CNNs (engine/bundled.py)
    if not packaged:
        mcfg.pretrained = "none"
    sem_dim = len(state["attribute_names"])
    model = SGMA(mcfg, sem_dim, len(state["train_classes"]))
    try:
        missing, unexpected = model.load_state_dict(state["model"], strict=not packaged)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint weights do not fit its configuration: {str(e).splitlines()[0]}") from None
    stray = [k for k in missing if not any(k.startswith(m + ".") for m in packaged)] + list(unexpected)
    if stray:
        raise CheckpointError(f"checkpoint weights do not fit its configuration: {len(stray)} tensors "
                              f"missing or unexpected, e.g. {stray[0]!r}")
    return model.to(device).eval()
