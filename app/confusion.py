"""The ZSL confusion matrix as a table: rows are true unseen classes, columns predicted ones;
cells are shaded by their share of the row. Clicking a cell emits (row, col)."""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QTableView, QWidget


def short(name: str, n: int = 18) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


class ConfusionModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.classes: list[str] = []
        self.matrix = np.zeros((0, 0), dtype=np.int64)

    def set_matrix(self, classes: list[str], matrix) -> None:
        self.beginResetModel()
        self.classes = list(classes)
        self.matrix = np.asarray(matrix, dtype=np.int64).reshape(len(classes), len(classes))
        self._share = self.matrix / np.maximum(self.matrix.sum(axis=1, keepdims=True), 1)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        v = int(self.matrix[r, c])
        if role == Qt.ItemDataRole.DisplayRole:
            return str(v) if v else ""
        if role == Qt.ItemDataRole.BackgroundRole:
            t = float(self._share[r, c])
            if r == c:
                return QColor(int(255 - 180 * t), int(255 - 60 * t), int(255 - 180 * t))
            return QColor(255, int(255 - 170 * t), int(255 - 170 * t))
        if role == Qt.ItemDataRole.ForegroundRole:
            return QColor(20, 20, 20)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"true {self.classes[r]}\npredicted {self.classes[c]}\n{v} image(s) — click to show them"
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and section < len(self.classes):
            return short(self.classes[section]) if orientation == Qt.Orientation.Vertical else str(section + 1)
        if role == Qt.ItemDataRole.ToolTipRole and section < len(self.classes):
            return self.classes[section]
        return None


class ConfusionView(QTableView):
    cellChosen = Signal(int, int)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.model_ = ConfusionModel(self)
        self.setModel(self.model_)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.clicked.connect(lambda idx: self.cellChosen.emit(idx.row(), idx.column()))
        self.setToolTip("rows: true class; columns: predicted class (numbered like the rows)")
