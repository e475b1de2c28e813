"""Persistent settings (QSettings): recent datasets and checkpoints, window geometry and state,
and the options of each panel.

The settings file is the platform's default for "SGMA / SGMA Part Explorer", or an INI file given
by ``--settings FILE`` or the ``SGMA_GUI_SETTINGS`` environment variable (tests use a temporary
one).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from PySide6.QtCore import QByteArray, QSettings

from sgma.engine.config import DATA_FIELDS, DataConfig

MAX_RECENT = 8


class Settings:
    def __init__(self, path: Optional[str] = None):
        path = path or os.environ.get("SGMA_GUI_SETTINGS") or None
        self.q = QSettings(path, QSettings.Format.IniFormat) if path else QSettings("SGMA", "SGMA Part Explorer")

    # ---------------------------------------------------------------- plain options
    def get(self, key: str, default: Any) -> Any:
        """The stored value converted to ``default``'s type (the default when absent or invalid)."""
        v = self.q.value(key, None)
        if v is None:
            return default
        try:
            if isinstance(default, bool):
                return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
            if isinstance(default, int):
                return int(v)
            if isinstance(default, float):
                return float(v)
            if isinstance(default, str):
                return str(v)
        except (TypeError, ValueError):
            return default
        return v

    def set(self, key: str, value: Any) -> None:
        self.q.setValue(key, value)

    def sync(self) -> None:
        self.q.sync()

    # ---------------------------------------------------------------- recent lists
    def _list(self, key: str) -> list:
        try:
            v = json.loads(self.q.value(key, "[]") or "[]")
        except (TypeError, ValueError):
            return []
        return v if isinstance(v, list) else []

    def _push(self, key: str, item) -> None:
        items = [x for x in self._list(key) if x != item]
        self.q.setValue(key, json.dumps([item] + items[: MAX_RECENT - 1]))

    def recent_datasets(self) -> list[DataConfig]:
        """Stored as DataConfig dicts; entries of older versions ({"kind", "root", "options"}) read
        the same way, and entries that are not a dataset are left out."""
        out = []
        for d in self._list("recent/datasets"):
            if not (isinstance(d, dict) and isinstance(d.get("kind"), str) and isinstance(d.get("options", {}), dict)):
                continue
            shared = {} if d["kind"] == "synthetic" else {k: d[k] for k in DATA_FIELDS if k in d}
            out.append(DataConfig.from_options(d["kind"], d.get("root") or "", {**shared, **(d.get("options") or {})}))
        return out

    def add_recent_dataset(self, dc: DataConfig) -> None:
        self._push("recent/datasets", dataclasses.asdict(dc))

    def recent_checkpoints(self) -> list[str]:
        return [str(p) for p in self._list("recent/checkpoints")]

    def add_recent_checkpoint(self, path: str) -> None:
        self._push("recent/checkpoints", str(path))

    # ---------------------------------------------------------------- window
    def save_window(self, window) -> None:
        self.q.setValue("window/geometry", window.saveGeometry())
        self.q.setValue("window/state", window.saveState())

    def restore_window(self, window) -> bool:
        geom, state = self.q.value("window/geometry"), self.q.value("window/state")
        ok = False
        if isinstance(geom, QByteArray) and not geom.isEmpty():
            ok = window.restoreGeometry(geom)
        if isinstance(state, QByteArray) and not state.isEmpty():
            window.restoreState(state)
        return ok
