"""New classes: define classes by their attributes, save and load them as class files, classify
the selected image against seen, unseen and user classes, and rank the whole dataset by a user
class (per-image features are extracted once, then each ranking is one matrix product)."""
from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QComboBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QListWidget, QListWidgetItem, QProgressBar,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

from sgma.engine.classes import (ClassFileError, UserClass, check_name, load_classes, parse_vector, save_classes,
                                 to_matrix)

from . import messages
from .attribute_editor import AttributeEditor
from . import ranking
from .state import AppState
from .workers import progress_text

FILE_FILTER = "Class files (*.toml *.json *.csv);;TOML (*.toml);;JSON (*.json);;CSV (*.csv)"
RANK_ROWS = 200


def _table(headers: list[str], stretch: int) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.verticalHeader().setDefaultSectionSize(t.fontMetrics().height() + 6)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    t.setWordWrap(False)
    t.horizontalHeader().setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    t.stretch = stretch
    return t


def _fit_columns(t: QTableWidget) -> None:
    """Size the non-stretching columns once, after the rows are in (not on every insertion)."""
    for c in range(t.columnCount()):
        if c != t.stretch:
            t.resizeColumnToContents(c)


class ClassesPanel(QWidget):
    userClassesChanged = Signal()
    showImage = Signal(int)

    def __init__(self, state: AppState, tasks, settings, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state, self.tasks, self.settings = state, tasks, settings
        self.classes: list[UserClass] = []
        self.path: Optional[str] = None
        self.last_prediction = None
        self.last_ranking: Optional[tuple[str, np.ndarray, np.ndarray]] = None
        self._feature_task = None

        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._on_select)
        self.list.itemChanged.connect(self._on_renamed)
        self.new_button = QPushButton("New")
        self.delete_button = QPushButton("Delete")
        self.template_box = QComboBox()
        self.template_box.setToolTip("start from an existing class")
        self.copy_button = QPushButton("Start from class")
        self.paste_button = QPushButton("Paste vector")
        self.paste_button.setToolTip("numbers in attribute order (comma, space or line separated), a JSON "
                                     "list or object, or lines 'attribute = value'")
        self.open_button = QPushButton("Open…")
        self.import_button = QPushButton("Import…")
        self.save_button = QPushButton("Save…")
        self.new_button.clicked.connect(lambda: self.add_class())
        self.delete_button.clicked.connect(self.delete_current)
        self.copy_button.clicked.connect(lambda: self.add_from_class(self.template_box.currentData()))
        self.paste_button.clicked.connect(lambda: self.paste(QGuiApplication.clipboard().text()))
        self.open_button.clicked.connect(lambda: self._file_dialog("open"))
        self.import_button.clicked.connect(lambda: self._file_dialog("import"))
        self.save_button.clicked.connect(lambda: self._file_dialog("save"))
        grid = QGridLayout()
        grid.addWidget(self.new_button, 0, 0)
        grid.addWidget(self.delete_button, 0, 1)
        grid.addWidget(self.template_box, 1, 0)
        grid.addWidget(self.copy_button, 1, 1)
        grid.addWidget(self.paste_button, 2, 0, 1, 2)
        grid.addWidget(self.open_button, 3, 0)
        grid.addWidget(self.import_button, 3, 1)
        grid.addWidget(self.save_button, 4, 0, 1, 2)
        left = QGroupBox("User classes")
        ll = QVBoxLayout(left)
        ll.addWidget(self.list, 1)
        ll.addLayout(grid)

        self.editor = AttributeEditor()
        self.editor.valuesChanged.connect(self._on_values)
        mid = QGroupBox("Attributes of the selected class")
        QVBoxLayout(mid).addWidget(self.editor)

        self.classify_button = QPushButton("Classify the selected image")
        self.classify_button.clicked.connect(self.classify)
        self.rank_button = QPushButton("Rank the dataset by this class")
        self.rank_button.clicked.connect(self.rank)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_ranking)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.class_table = _table(["#", "Class", "Kind", "Score"], stretch=1)
        self.rank_table = _table(["#", "Image", "Class", "Score"], stretch=2)
        self.rank_table.cellDoubleClicked.connect(
            lambda r, _c: self.showImage.emit(int(self.rank_table.item(r, 1).data(Qt.ItemDataRole.UserRole))))
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.classify_button)
        rl.addWidget(self.class_table, 1)
        rl.addWidget(self.rank_button)
        prow = QHBoxLayout()
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.cancel_button)
        rl.addLayout(prow)
        rl.addWidget(self.rank_table, 1)
        rl.addWidget(self.status)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(mid)
        split.addWidget(right)
        split.setStretchFactor(1, 2)
        split.setStretchFactor(2, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        state.datasetChanged.connect(self._on_dataset)
        state.modelChanged.connect(self._push_to_predictor)
        self._update_enabled()

    # ---------------------------------------------------------------- dataset
    def _on_dataset(self) -> None:
        ds = self.state.dataset
        self.editor.set_attributes(ds.attribute_names, ds.attribute_groups)
        sem = np.asarray(ds.semantics, dtype=np.float64)
        self.editor.set_ranges({a: (float(sem[:, j].min()), float(sem[:, j].max()))
                                for j, a in enumerate(ds.attribute_names)} if len(sem) else {})
        self.template_box.clear()
        for c, name in enumerate(ds.class_names):
            self.template_box.addItem(f"{name} ({self.state.class_kind(c)})", c)
        known = set(ds.attribute_names)
        if any(a not in known for c in self.classes for a in c.values):
            self.classes = []       # another attribute set: the classes no longer mean anything
        self._refresh_list()
        self._push_to_predictor()

    @property
    def attribute_names(self) -> list[str]:
        return list(self.state.dataset.attribute_names) if self.state.dataset is not None else []

    # ---------------------------------------------------------------- the class list
    def _unique(self, base: str) -> str:
        names = {c.name for c in self.classes}
        if base not in names:
            return base
        k = 2
        while f"{base}_{k}" in names:
            k += 1
        return f"{base}_{k}"

    def add_class(self, name: str = "new_class", values: Optional[dict] = None) -> UserClass:
        c = UserClass(self._unique(name), dict(values or {}))
        self.classes.append(c)
        self._refresh_list(select=len(self.classes) - 1)
        self._changed()
        return c

    def add_from_class(self, class_index: Optional[int]) -> Optional[UserClass]:
        ds = self.state.dataset
        if ds is None or class_index is None or class_index < 0:
            return None
        row = ds.semantics[class_index]
        values = {a: float(v) for a, v in zip(ds.attribute_names, row) if v != 0}
        return self.add_class(f"my_{ds.class_names[class_index]}", values)

    def delete_current(self) -> None:
        r = self.list.currentRow()
        if 0 <= r < len(self.classes):
            name = self.classes[r].name
            del self.classes[r]
            self._refresh_list(select=min(r, len(self.classes) - 1))
            self._forget_results(name)
            self._changed()

    def _forget_results(self, name: str) -> None:
        """A deleted class leaves the tables: its row of the classification, and the ranking by it
        (with the grid's ranked selection)."""
        for row in reversed(range(self.class_table.rowCount())):
            item = self.class_table.item(row, 1)
            if item is not None and item.text() in (name, f"{name} (user)"):
                self.class_table.removeRow(row)
        for row in range(self.class_table.rowCount()):
            self.class_table.setItem(row, 0, QTableWidgetItem(str(row + 1)))
        if self.last_ranking is not None and self.last_ranking[0] == name:
            self.last_ranking = None
            self.rank_table.setRowCount(0)
            if self.state.selection_label.startswith(f"ranked by {name},"):
                self.state.set_selection(None, "")

    def current_class(self) -> Optional[UserClass]:
        r = self.list.currentRow()
        return self.classes[r] if 0 <= r < len(self.classes) else None

    def _refresh_list(self, select: int = -1) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for c in self.classes:
            it = QListWidgetItem(c.name)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(it)
        self.list.blockSignals(False)
        if select >= 0:
            self.list.setCurrentRow(select)
        self._on_select(self.list.currentRow())
        self._update_enabled()

    def _on_select(self, row: int) -> None:
        c = self.classes[row] if 0 <= row < len(self.classes) else None
        self.editor.blockSignals(True)
        self.editor.set_values(c.values if c else {})
        self.editor.blockSignals(False)
        self.editor.setEnabled(c is not None)
        self._update_enabled()

    def _on_renamed(self, item: QListWidgetItem) -> None:
        r = self.list.row(item)
        new = item.text().strip()
        if not 0 <= r < len(self.classes):
            return
        problem = None
        try:
            check_name(new, "rename", "the name")
        except ClassFileError as e:
            problem = str(e).removeprefix("rename: ")
        if problem is None and (not new or any(c.name == new for k, c in enumerate(self.classes) if k != r)):
            problem = f"the name {new!r} is empty or taken"
        if problem is None and new.casefold() in {n.casefold() for n in self._dataset_class_names()}:
            problem = f"the name {new!r} is a dataset class: a user class needs its own name"
        if problem is not None:
            self.list.blockSignals(True)
            item.setText(self.classes[r].name)
            self.list.blockSignals(False)
            self.status.setText(problem)
            return
        self.classes[r].name = new
        self._changed()

    def _on_values(self) -> None:
        c = self.current_class()
        if c is not None:
            c.values = {a: v for a, v in self.editor.values().items() if v != 0}
            self._changed()

    def paste(self, text: str) -> bool:
        c = self.current_class() or self.add_class("pasted")
        try:
            values = parse_vector(text, self.attribute_names)
        except ClassFileError as e:
            messages.error(self, "Cannot use the pasted vector", str(e))
            return False
        c.values = {a: v for a, v in values.items() if v != 0}
        self._on_select(self.list.currentRow())
        self._changed()
        return True

    def _changed(self) -> None:
        self._push_to_predictor()
        self.userClassesChanged.emit()

    def _update_enabled(self) -> None:
        has_ds = self.state.dataset is not None
        has_class = self.current_class() is not None
        can_model = self.state.model_fits_dataset()
        for b in (self.new_button, self.copy_button, self.paste_button, self.open_button, self.import_button):
            b.setEnabled(has_ds)
        self.delete_button.setEnabled(has_class)
        self.save_button.setEnabled(bool(self.classes))
        self.classify_button.setEnabled(can_model and self.state.current >= 0)
        self.rank_button.setEnabled(can_model and has_class and self._feature_task is None)
        if has_ds and self.state.predictor is not None and not can_model:
            self.status.setText("the loaded model was trained on other attributes than this dataset's: "
                                "train or load a model for this dataset to classify")

    # ---------------------------------------------------------------- files
    def _dataset_class_names(self) -> list[str]:
        ds = self.state.dataset
        return list(ds.class_names) if ds is not None else []

    def load(self, path: str, replace: bool = True) -> bool:
        """Read a class file; a class named like a dataset class, or (when merging) like a class
        already in the list, is refused with its name and nothing is read (issue 16)."""
        try:
            loaded = load_classes(path, self.attribute_names, reserved=self._dataset_class_names())
            if not replace:
                have = {c.name.casefold() for c in self.classes}
                clash = [c.name for c in loaded if c.name.casefold() in have]
                if clash:
                    raise ClassFileError(f"{path}: class {clash[0]!r} is already in the list; rename it "
                                         f"in the file or delete the listed one")
        except ClassFileError as e:
            messages.error(self, "Cannot read the class file", str(e))
            return False
        if replace:
            self.classes, self.path = [], path
        for c in loaded:
            c.values = {a: v for a, v in c.values.items() if v != 0}
            self.classes.append(c)
        self._refresh_list(select=0 if replace else len(self.classes) - 1)
        self._changed()
        self.status.setText(f"{len(loaded)} class(es) read from {path}")
        return True

    def save(self, path: str) -> bool:
        try:
            save_classes(path, self.classes, self.attribute_names)
        except (ClassFileError, OSError) as e:
            messages.error(self, "Cannot save the class file", f"{path}: {e}")
            return False
        self.path = path
        self.status.setText(f"{len(self.classes)} class(es) saved to {path}")
        return True

    def _file_dialog(self, what: str) -> None:
        start = self.path or self.settings.get("classes/dir", "")
        if what == "save":
            path, _ = QFileDialog.getSaveFileName(self, "Save user classes", start or "classes.toml", FILE_FILTER)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open user classes" if what == "open" else
                                                  "Import classes or vectors", start, FILE_FILTER)
        if not path:
            return
        self.settings.set("classes/dir", os.path.dirname(path))
        if what == "save":
            self.save(path)
        else:
            self.load(path, replace=what == "open")

    # ---------------------------------------------------------------- the model
    def _push_to_predictor(self) -> None:
        p = self.state.predictor
        if p is not None and self.state.model_fits_dataset():
            names = [c.name for c in self.classes]
            taken = set(p.class_names)
            names = [n if n not in taken else f"{n} (user)" for n in names]
            self.state.set_user_classes(names, to_matrix(self.classes, p.attribute_names) if names else [])
        self._update_enabled()

    def classify(self) -> None:
        st = self.state
        if not st.model_fits_dataset() or st.current < 0:
            return
        self._push_to_predictor()
        img, index, predictor = st.dataset.load_image(st.current), st.current, st.predictor
        self.status.setText(f"classifying image #{index}…")

        def done(pred):
            self.last_prediction = pred
            seen = set(predictor.state.get("seen_classes", []))
            user = set(predictor.user_names)
            ranked = pred.top(len(pred.class_names))
            self.class_table.setRowCount(len(ranked))
            for r, (name, score) in enumerate(ranked):
                kind = "user" if name in user else ("seen" if name in seen else "unseen")
                for col, text in enumerate([str(r + 1), name, kind, f"{score:.3f}"]):
                    self.class_table.setItem(r, col, QTableWidgetItem(text))
            _fit_columns(self.class_table)
            self.status.setText(f"image #{index}: best match {ranked[0][0]} ({pred.mode} scores)")

        self.tasks.start(predictor.predict, img, on_done=done,
                         on_error=lambda m, tb: messages.error(self, "Classification failed", m, tb))

    def rank(self) -> None:
        st, c = self.state, self.current_class()
        if c is None or not st.model_fits_dataset():
            return
        model, ds = st.predictor.model, st.dataset
        if ranking.fits(st.features, model, ds):
            self._rank_with(st.features, c)
            return
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.progress.setRange(0, len(ds))
        self.progress.setValue(0)
        self.status.setText(f"extracting the features of {len(ds)} images once (later rankings are instant)…")
        started = time.monotonic()

        def progress(i, n):
            self.progress.setRange(0, max(n, 1))
            self.progress.setValue(i)
            self.status.setText(f"extracting the features once (later rankings are instant): "
                                f"{progress_text(started, i, n)}")

        def done(cache):
            self._feature_task = None
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
            if model is not st.predictor.model or ds is not st.dataset:
                self._update_enabled()
                return
            st.features = cache
            self._update_enabled()
            cur = self.current_class()
            if cur is not None:
                self._rank_with(cache, cur)

        def failed(msg, tb):
            self._feature_task = None
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
            self._update_enabled()
            if msg == "cancelled":
                self.status.setText("ranking cancelled: the features were not extracted")
            if msg != "cancelled":
                messages.error(self, "Feature extraction failed", msg, tb)

        self._feature_task = self.tasks.start(ranking.build_cache, st.checkpoint_path, model, ds,
                                              on_done=done, on_error=failed,
                                              on_progress=progress)
        self._update_enabled()

    def cancel_ranking(self) -> None:
        """Stop the first ranking's feature extraction between chunks."""
        if self._feature_task is not None:
            self._feature_task.cancel()
            self.status.setText("cancelling…")

    def _rank_with(self, cache, c: UserClass) -> None:
        ds = self.state.dataset
        order, scores = ranking.rank(cache, to_matrix([c], ds.attribute_names)[0])
        self.last_ranking = (c.name, order, scores)
        n = min(RANK_ROWS, len(order))
        self.rank_table.setRowCount(n)
        for r in range(n):
            i = int(order[r])
            img_item = QTableWidgetItem(f"#{i}")
            img_item.setToolTip(ds.items[i].image_id)
            img_item.setData(Qt.ItemDataRole.UserRole, i)
            for col, item in enumerate([QTableWidgetItem(str(r + 1)), img_item,
                                        QTableWidgetItem(ds.class_names[ds.items[i].label]),
                                        QTableWidgetItem(f"{scores[r]:.3f}")]):
                self.rank_table.setItem(r, col, item)
        _fit_columns(self.rank_table)
        self.state.set_selection(order, f"ranked by {c.name}, best first")
        self.status.setText(f"ranked {len(order)} images by {c.name}; the grid shows them best first "
                            "(double-click a row to select the image)")
