"""The dataset browser: filters, the thumbnail grid with a size slider, and the selected image's
class and attributes. After an evaluation the tiles carry the per-image part IoU and whether the
prediction was right (``thumbnails.TileDelegate``), and the grid sorts and filters by them."""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QSize, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFormLayout, QHBoxLayout, QLabel,
                               QListView, QPushButton, QSizePolicy, QSlider, QSplitter, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from .state import SPLITS, AppState
from .thumbnails import INDEX_ROLE, IOU_FOUND, ThumbnailModel, TileDelegate

ALL = "All"
DATASET_ORDER = "dataset order"


def sort_keys(part_names) -> list[tuple[str, tuple]]:
    """The grid's orders, (label, key): the one list the sort box shows."""
    return ([(DATASET_ORDER, ("order",))] + [(f"worst {p} IoU first", ("iou", p)) for p in part_names]
            + [("wrong first", ("wrong",)), ("by class", ("class",))])


def sort_rows(rows: np.ndarray, key: tuple, ious: dict, correct: Optional[np.ndarray], labels: np.ndarray,
              class_names: list[str]) -> np.ndarray:
    """``rows`` (dataset indices) in the order ``key`` asks for; stable, so ties keep the order
    they came in (a ranking's, the dataset's). Images with no value for the key (no box of that
    part, not evaluated) come last."""
    rows = np.asarray(rows, dtype=np.int64)
    kind = key[0]
    if kind == "iou" and key[1] in ious:
        v = ious[key[1]][rows]
        value = np.where(np.isnan(v), np.inf, v)
    elif kind == "wrong" and correct is not None:
        value = np.choose(correct[rows] + 1, [2, 0, 1])        # wrong, right, not evaluated
    elif kind == "class":
        rank_of = np.argsort(np.argsort(np.asarray(class_names, dtype=object), kind="stable"), kind="stable")
        value = rank_of[labels[rows]]
    else:
        return rows
    return rows[np.argsort(value, kind="stable")]


class Browser(QWidget):
    """Emits nothing of its own: the selected image goes to ``state.set_current``."""
    rowsChanged = Signal(int)

    def __init__(self, state: AppState, settings, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state, self.settings = state, settings
        self.model = ThumbnailModel(self)

        self.class_box = QComboBox()
        self.class_box.setMinimumContentsLength(12)
        self.class_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.kind_box = QComboBox()
        self.kind_box.addItems([ALL, "seen", "unseen"])
        self.split_box = QComboBox()
        self.split_box.addItems([ALL, *SPLITS])
        self.result_box = QComboBox()
        self.result_box.addItems([ALL, "correct", "incorrect"])
        self.result_box.setToolTip("after an evaluation: unseen test images judged by their ZSL "
                                   "prediction, seen test images by their GZSL prediction")
        self.sort_box = QComboBox()
        self.sort_box.setToolTip("worst IoU first and wrong first need an evaluation")
        self.parts_box = QComboBox()
        self.parts_box.setToolTip(f"after an evaluation: found means IoU > {IOU_FOUND} between the "
                                  "part's ground-truth box and the square of the map assigned to it")
        self.selection_label = QLabel()
        # a confusion cell's "true ... -> predicted ..." is long: wrapped, and ignored when the
        # splitter sizes the pane, so it never widens the browser at the evaluation tab's expense
        self.selection_label.setWordWrap(True)
        self.selection_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.clear_selection = QPushButton("Show all")
        self.clear_selection.clicked.connect(lambda: self.state.set_selection(None, ""))
        self.count_label = QLabel()

        filters = QFormLayout()
        filters.addRow("Class", self.class_box)
        row = QHBoxLayout()
        row.addWidget(self.kind_box)
        row.addWidget(QLabel("Split"))
        row.addWidget(self.split_box)
        filters.addRow("Classes", row)
        row = QHBoxLayout()
        row.addWidget(self.result_box)
        row.addWidget(QLabel("Parts"))
        row.addWidget(self.parts_box)
        filters.addRow("Result", row)
        filters.addRow("Sort", self.sort_box)
        sel = QHBoxLayout()
        sel.addWidget(self.selection_label, 1)
        sel.addWidget(self.clear_selection)
        filters.addRow(sel)

        self.view = QListView()
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setUniformItemSizes(True)
        self.view.setLayoutMode(QListView.LayoutMode.SinglePass)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setModel(self.model)
        self.view.setItemDelegate(TileDelegate(self.view))
        self.view.selectionModel().currentChanged.connect(self._on_current)

        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(32, 256)
        self.size_slider.setValue(settings.get("browser/thumb_size", 96))
        self.size_slider.setToolTip("thumbnail size")
        self.size_slider.valueChanged.connect(self._set_size)
        bottom = QHBoxLayout()
        bottom.addWidget(self.count_label, 1)
        bottom.addWidget(QLabel("Size"))
        bottom.addWidget(self.size_slider, 1)

        self.info = QLabel("no image selected")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.attributes = QTreeWidget()
        self.attributes.setHeaderLabels(["Attribute", "Value"])
        self.attributes.setRootIsDecorated(True)
        info_box = QWidget()
        il = QVBoxLayout(info_box)
        il.setContentsMargins(0, 0, 0, 0)
        il.addWidget(self.info)
        il.addWidget(self.attributes, 1)

        grid_box = QWidget()
        gl = QVBoxLayout(grid_box)
        gl.setContentsMargins(0, 0, 0, 0)
        gl.addLayout(filters)
        gl.addWidget(self.view, 1)
        gl.addLayout(bottom)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(grid_box)
        split.addWidget(info_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        for box in (self.class_box, self.kind_box, self.split_box, self.result_box, self.parts_box):
            box.currentIndexChanged.connect(self.apply_filters)
        self.sort_box.currentIndexChanged.connect(self._on_sort)
        state.datasetChanged.connect(self._on_dataset)
        state.evaluationChanged.connect(self._on_evaluation)
        state.selectionChanged.connect(self._on_selection)
        state.currentChanged.connect(self._show_current)
        self._set_size(self.size_slider.value())
        self._on_evaluation()

    # ---------------------------------------------------------------- dataset and filters
    def _on_dataset(self) -> None:
        ds = self.state.dataset
        self._split_of = self.state.split_of()
        self._labels = ds.labels
        self._unseen = np.isin(self._labels, np.asarray(ds.split.unseen, dtype=np.int64))
        for box in (self.class_box, self.kind_box, self.split_box, self.result_box):
            box.blockSignals(True)
        self.class_box.clear()
        self.class_box.addItem(ALL, -1)
        for c, name in enumerate(ds.class_names):
            self.class_box.addItem(f"{name} ({self.state.class_kind(c)})", c)
        for box in (self.kind_box, self.split_box, self.result_box):
            box.setCurrentIndex(0)
        for box in (self.class_box, self.kind_box, self.split_box, self.result_box):
            box.blockSignals(False)
        self._fill_part_boxes(ds.part_names)
        self.model.set_dataset(ds)
        self.apply_filters()
        if len(self.model.rows):
            self.select_row(0)

    def _on_selection(self) -> None:
        """A new explicit selection (a ranking, best first; a confusion cell) starts at its first
        image, scrolled to the top, rather than keeping the previous image wherever it now is."""
        self.apply_filters(keep_current=self.state.selection is None)
        if self.state.selection is not None and self.model.rowCount():
            self.select_row(0)
            self.view.scrollToTop()

    def _on_sort(self) -> None:
        """A new order starts at its first image (the worst, for a localisation sort), scrolled
        to the top."""
        self.apply_filters(keep_current=False)
        if self.model.rowCount():
            self.view.scrollToTop()

    def _fill_part_boxes(self, part_names) -> None:
        for box in (self.sort_box, self.parts_box):
            box.blockSignals(True)
            box.clear()
        for label, key in sort_keys(part_names):
            self.sort_box.addItem(label, key)
        self.parts_box.addItem(ALL, None)
        for p in part_names:
            self.parts_box.addItem(f"{p} found", (p, True))
            self.parts_box.addItem(f"{p} missed", (p, False))
        for box in (self.sort_box, self.parts_box):
            box.blockSignals(False)
        self._update_eval_enabled()

    def _update_eval_enabled(self) -> None:
        """What needs an evaluation (correctness) or one with part ground truth (IoU) is enabled
        only then; a sort by either falls back to the dataset order."""
        has, ious = self.state.evaluation is not None, self.state.image_ious()
        self.result_box.setEnabled(has)
        self.parts_box.setEnabled(bool(ious))
        m = self.sort_box.model()
        for r in range(self.sort_box.count()):
            kind = self.sort_box.itemData(r)[0]
            ok = (kind != "iou" or self.sort_box.itemData(r)[1] in ious) and (kind != "wrong" or has)
            m.item(r).setEnabled(ok)
        cur = self.sort_box.currentIndex()
        for box, reset in ((self.result_box, not has), (self.parts_box, not ious),
                           (self.sort_box, cur > 0 and not m.item(cur).isEnabled())):
            if reset and box.currentIndex() > 0:
                box.blockSignals(True)
                box.setCurrentIndex(0)
                box.blockSignals(False)

    def _on_evaluation(self) -> None:
        self._update_eval_enabled()
        self.model.set_badges(self.state.image_ious(), self.state.correctness())
        if self.state.dataset is not None:
            self.apply_filters()

    def visible_indices(self) -> np.ndarray:
        """Dataset indices passing every filter, in display order."""
        ds = self.state.dataset
        if ds is None:
            return np.zeros(0, dtype=np.int64)
        mask = np.ones(len(ds), dtype=bool)
        c = self.class_box.currentData()
        if c is not None and c >= 0:
            mask &= self._labels == c
        kind = self.kind_box.currentText()
        if kind == "seen":
            mask &= ~self._unseen
        elif kind == "unseen":
            mask &= self._unseen
        if self.split_box.currentIndex() > 0:
            mask &= self._split_of == self.split_box.currentIndex() - 1
        corr = self.state.correctness()
        if corr is not None and self.result_box.currentIndex() > 0:
            mask &= corr == (1 if self.result_box.currentText() == "correct" else 0)
        ious = self.state.image_ious()
        want = self.parts_box.currentData()
        if want is not None and want[0] in ious:
            v = ious[want[0]]
            mask &= ~np.isnan(v) & ((v > IOU_FOUND) == want[1])
        if self.state.selection is not None:
            sel = self.state.selection
            rows = sel[mask[sel]]
        else:
            rows = np.nonzero(mask)[0]
        key = self.sort_box.currentData() or ("order",)
        return sort_rows(rows, key, ious, corr, self._labels, ds.class_names)

    def apply_filters(self, keep_current: bool = True) -> None:
        if self.state.dataset is None:
            return
        current = self.state.current if keep_current else -1
        rows = self.visible_indices()
        self.model.set_rows(rows)
        sel = self.state.selection is not None
        self.selection_label.setText(f"showing: {self.state.selection_label}" if sel else "")
        self.selection_label.setToolTip(self.selection_label.text())
        self.selection_label.setVisible(sel)
        self.clear_selection.setVisible(sel)
        self.count_label.setText(f"{len(rows)} of {len(self.state.dataset)} images")
        row = self.model.row_of(current) if current >= 0 else -1
        if row >= 0:
            self.select_row(row)
        elif len(rows):
            self.select_row(0)
        self.rowsChanged.emit(len(rows))

    # ---------------------------------------------------------------- navigation
    def select_row(self, row: int) -> None:
        if not 0 <= row < self.model.rowCount():
            return
        idx = self.model.index(row)
        self.view.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.view.scrollTo(idx)

    def step(self, delta: int) -> None:
        n = self.model.rowCount()
        if not n:
            return
        cur = self.view.currentIndex().row()
        self.select_row(min(max(cur + delta, 0), n - 1) if cur >= 0 else 0)

    def select_index(self, index: int) -> None:
        row = self.model.row_of(index)
        if row < 0:     # hidden by the filters: show everything, then select it
            self.state.set_selection(None, "")
            for box in (self.class_box, self.kind_box, self.split_box, self.result_box, self.parts_box):
                box.setCurrentIndex(0)
            row = self.model.row_of(index)
        self.select_row(row)

    def _on_current(self, current, _previous) -> None:
        if current.isValid():
            self.state.set_current(int(current.data(INDEX_ROLE)))

    def _set_size(self, size: int) -> None:
        self.model.set_size(size)
        self.view.setIconSize(QSize(size, size))
        self.view.setGridSize(QSize(size + 8, size + 8))
        self.settings.set("browser/thumb_size", size)

    # ---------------------------------------------------------------- info panel
    def _show_current(self, index: int) -> None:
        ds = self.state.dataset
        self.attributes.clear()
        if ds is None or index < 0:
            self.info.setText("no image selected")
            return
        it = ds.items[index]
        c = it.label
        splits = [name for k, name in enumerate(SPLITS) if self._split_of[index] == k]
        text = (f"<b>#{index}</b> {it.image_id}<br><b>{ds.class_names[c]}</b> "
                f"({self.state.class_kind(c)}, {splits[0] if splits else 'no split'})")
        pred = self.state.predicted_class(index)
        if pred is not None and pred >= 0:
            ok = "correct" if pred == c else "wrong"
            ev = self.state.evaluation
            mode = ev.summary.get("inference", "combined")
            among = "ZSL, among unseen classes" if c in set(ds.split.unseen) else "GZSL, among all classes"
            text += f"<br>evaluation ({among}, {mode} scores): predicted {ds.class_names[pred]} ({ok})"
        self.info.setText(text)
        row = ds.semantics[c]
        groups = ds.attribute_groups or {}
        seen_cols = set()
        for group, cols in groups.items():
            nz = [j for j in cols if row[j] != 0]
            seen_cols.update(cols)
            if not nz:
                continue
            g = QTreeWidgetItem(self.attributes, [group, ""])
            for j in sorted(nz, key=lambda j: -row[j]):
                QTreeWidgetItem(g, [ds.attribute_names[j].split("::", 1)[-1], f"{row[j]:.3g}"])
        rest = [j for j in range(len(row)) if j not in seen_cols and row[j] != 0]
        for j in sorted(rest, key=lambda j: -row[j]):
            QTreeWidgetItem(self.attributes, [ds.attribute_names[j], f"{row[j]:.3g}"])
        self.attributes.expandAll()
        self.attributes.resizeColumnToContents(0)
