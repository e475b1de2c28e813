"""The package names no development data folder: shared data comes only from $SGMA_SHARED_DATA."""
from __future__ import annotations

from pathlib import Path

from sgma.engine.config import PRESETS, preset
from sgma.engine.data.xlsa17 import shared_data_dir

REPO = Path(__file__).resolve().parents[1]


def test_without_the_variable_there_is_no_shared_folder(monkeypatch):
    monkeypatch.delenv("SGMA_SHARED_DATA", raising=False)
    assert shared_data_dir() is None


def test_no_source_file_or_preset_names_the_development_folder():
    for folder in ("engine", "app"):
        for f in (REPO / folder).rglob("*.py"):
            text = f.read_text(encoding="utf-8")
            assert '"shared"' not in text and "../shared" not in text, f
    assert all("shared" not in preset(name).data.root for name in PRESETS)
