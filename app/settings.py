"""Persistent settings (QSettings): recent datasets and checkpoints, window geometry and state,
and the options of each panel.

The settings file is the platform's default for "SGMA / SGMA Part Explorer", or an INI file given
by ``--settings FILE`` or the ``SGMA_GUI_SETTINGS`` environment variable (tests use a temporary
one).
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from PySide6.QtCore import QByteArray, QSettings

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

    def recent_datasets(self) -> list[dict]:
        """Each as {"kind": ..., "root": ..., "options": {...}}."""
        return [d for d in self._list("recent/datasets") if isinstance(d, dict) and "kind" in d]

    def add_recent_dataset(self, spec: dict) -> None:
        self._push("recent/datasets", {"kind": spec["kind"], "root": spec.get("root"),
                                       "options": dict(spec.get("options") or {})})

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
