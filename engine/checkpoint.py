"""Checkpoints: a dict of plain types and tensors, written atomically (temporary file in the same
folder, fsync, os.replace), kept as ``last.pt`` and ``best.pt``, and read back with
``torch.load(weights_only=True)`` so a hostile file cannot run code."""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .config import atomic_write_bytes

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is unreadable, hostile, or does not fit what it is loaded into."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    state = {"format_version": FORMAT_VERSION, **state}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path}: no best.pt or last.pt in this run folder")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused, the file holds objects other than tensors and plain "
                              f"data (loading it could run code): {str(e).splitlines()[0]}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path}: not an SGMA checkpoint (no format_version)")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {state['format_version']} is newer than this "
                              f"program's {FORMAT_VERSION}")
    return state
