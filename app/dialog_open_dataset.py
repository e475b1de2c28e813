"""File > Open dataset: the kind, the root folder and the kind's options."""
from __future__ import annotations

import ast
from typing import Optional

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout,
                               QWidget)

from sgma.engine.config import DataConfig
from sgma.engine.data.registry import DATASET_KINDS as KINDS
HELP = {
    "synthetic": "procedural birds, built in memory (no root folder)",
    "cub": "CUB-200-2011 folder (images.txt, classes.txt, attributes/…)",
    "awa2": "Animals with Attributes 2 folder (JPEGImages/, predicate-matrix…)",
    "flo": "Oxford Flowers 102 folder (jpg/, imagelabels.mat, xlsa17 att_splits.mat)",
    "folder": "your own folder: one sub-folder per class and a classes file (see docs/datasets.md)",
}


def kind_options(kind: str) -> dict[str, object]:
    try:
        from sgma.engine.data.registry import dataset_options
        return dataset_options(kind)
    except Exception:  # noqa: BLE001 - registry absent or kind unknown: no options
        return {}


def parse_option(text: str, default, name: str = "option"):
    """The text of an option field as the type of its default; ValueError naming the field."""
    text = text.strip()
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a whole number (e.g. {default})") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number (e.g. {default})") from None
    if default is None:
        if text == "":
            return None
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return text


class OpenDatasetDialog(QDialog):
    def __init__(self, parent: Optional[QWidget] = None, current: Optional[DataConfig] = None, recent=()):
        """``current``: the dataset open now; ``recent``: DataConfigs opened before."""
        super().__init__(parent)
        self.setWindowTitle("Open dataset")
        current = current or DataConfig.from_options("synthetic")
        self.kind = QComboBox()
        self.kind.addItems(KINDS)
        self.root = QLineEdit(current.root)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.help = QLabel()
        self.help.setWordWrap(True)
        self.recent = QComboBox()
        self.recent.addItem("—", None)
        for r in recent:
            self.recent.addItem(r.label(), r)
        self.recent.currentIndexChanged.connect(self._use_recent)
        self.options_form = QFormLayout()
        self.option_fields: dict[str, tuple[QWidget, object]] = {}
        rrow = QHBoxLayout()
        rrow.addWidget(self.root, 1)
        rrow.addWidget(browse)
        form = QFormLayout()
        form.addRow("Recent", self.recent)
        form.addRow("Kind", self.kind)
        form.addRow("Root folder", rrow)
        form.addRow(self.help)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d03030")
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(QLabel("Options"))
        lay.addLayout(self.options_form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.kind.currentTextChanged.connect(self._on_kind)
        self.kind.setCurrentText(current.kind)
        self._on_kind(self.kind.currentText(), current.loader_options())
        self.resize(520, 360)

    def _on_kind(self, kind: str, values: Optional[dict] = None) -> None:
        values = values or {}
        self.help.setText(HELP.get(kind, ""))
        self.root.setEnabled(kind != "synthetic")
        while self.options_form.rowCount():
            self.options_form.removeRow(0)
        self.option_fields = {}
        for name, default in kind_options(kind).items():
            value = values.get(name, default)
            if isinstance(default, bool):
                w = QCheckBox()
                w.setChecked(bool(value))
            else:
                w = QLineEdit("" if value is None else str(value))
            self.option_fields[name] = (w, default)
            self.options_form.addRow(name, w)

    def _use_recent(self) -> None:
        r = self.recent.currentData()
        if r:
            self.kind.setCurrentText(r.kind)
            self.root.setText(r.root)
            self._on_kind(r.kind, r.loader_options())

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Dataset root folder", self.root.text())
        if d:
            self.root.setText(d)

    def accept(self) -> None:
        """OK: only with valid options; otherwise the dialog stays open with the input kept, the
        message under the options and the bad field focused."""
        try:
            self.data_config()
        except ValueError as e:
            self.error.setText(str(e))
            name = str(e).split(":", 1)[0]
            if name in self.option_fields:
                self.option_fields[name][0].setFocus()
            return
        self.error.setText("")
        super().accept()

    def data_config(self) -> DataConfig:
        """The dataset the fields describe; a bad option is a ValueError naming it. The kind's own
        options are kept only where they differ from their defaults."""
        opts = {}
        for name, (w, default) in self.option_fields.items():
            v = w.isChecked() if isinstance(w, QCheckBox) else parse_option(w.text(), default, name)
            if v != default:
                opts[name] = v
        kind = self.kind.currentText()
        return DataConfig.from_options(kind, self.root.text().strip() if kind != "synthetic" else "", opts)
