"""Part atlas (View > Part atlas…): for each attention map, the k images of the dataset where
that map fires most (``engine.atlas.part_atlas``), each shown as a crop around the map's peak (for a
far-end part, around its square, ranked by the anchor map's peak).
Computed in a worker thread with a progress bar, the ETA and Cancel; a click on a crop shows that
image in the browser and the audit."""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
from PIL import Image
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QDialog, QGridLayout, QHBoxLayout, QLabel, QProgressBar,
                               QPushButton, QScrollArea, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from .labels import square_label
from .overlay import MAP_COLOURS
from .state import AppState
from .workers import progress_text

CROP_PX = 112
IMAGE_SETS = ("every image", "the images in the grid")


def compute_atlas(model, dataset, indices, k: int, ctx=None):
    """The engine's atlas (runs in a worker thread); ``ctx`` gets progress and cancels between chunks."""
    from sgma.engine.atlas import part_atlas

    def progress(done, total):
        ctx.check()
        ctx.progress(done, total)
    return part_atlas(model, dataset, indices, k=k, progress=progress if ctx is not None else None)


def crop_pixmap(dataset, index: int, peak, side: float, size: int = CROP_PX) -> QPixmap:
    """The crop of image ``index`` around ``peak`` (``engine.atlas.peak_crop_box``), scaled to fit
    ``size`` x ``size``."""
    from sgma.engine.atlas import peak_crop_box
    img = dataset.load_image(index).convert("RGB")
    box = peak_crop_box(peak, side, img.width, img.height)
    crop = img.crop(box)
    s = size / max(crop.size)
    crop = crop.resize((max(1, round(crop.width * s)), max(1, round(crop.height * s))), Image.BILINEAR)
    data = crop.tobytes()
    return QPixmap.fromImage(QImage(data, crop.width, crop.height, 3 * crop.width,
                                    QImage.Format.Format_RGB888).copy())


class PartAtlasDialog(QDialog):
    showImage = Signal(int)          # a crop was clicked: its dataset image index

    def __init__(self, state: AppState, tasks, grid_indices: Callable[[], np.ndarray],
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("Part atlas")
        self.state, self.tasks, self.grid_indices = state, tasks, grid_indices
        self.task = None
        self.atlas = None                     # list[AtlasMap] of the last computation
        self.atlas_owner = (None, None)       # the (dataset, predictor) it belongs to
        self.crops: list[list[QToolButton]] = []
        self.k_box = QSpinBox()
        self.k_box.setRange(1, 64)
        self.k_box.setValue(8)
        self.k_box.setToolTip("crops per map")
        self.images_box = QComboBox()
        self.images_box.addItems(IMAGE_SETS)
        self.run_button = QPushButton("Compute")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.busy = QProgressBar()
        self.busy.setVisible(False)
        self.busy.setMaximumWidth(220)
        self.status = QLabel()
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        for w in (QLabel("Top"), self.k_box, QLabel("of"), self.images_box, self.run_button, self.busy,
                  self.cancel_button):
            top.addWidget(w)
        top.addWidget(self.status, 1)
        self.grid_widget = QWidget()
        self.grid = QGridLayout(self.grid_widget)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_widget)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(scroll, 1)
        self.resize(1000, 420)
        state.modelChanged.connect(self._on_inputs_changed)
        state.datasetChanged.connect(self._on_inputs_changed)
        self._on_inputs_changed()

    def _on_inputs_changed(self) -> None:
        ok = self.state.predictor is not None and self.state.dataset is not None
        self.run_button.setEnabled(ok and self.task is None)
        if (self.state.dataset, self.state.predictor) != self.atlas_owner:
            self.atlas = None
            self._clear()
        if self.task is None:
            self.status.setText("" if ok else "load a model and a dataset first")

    # ---------------------------------------------------------------- running
    def run(self) -> None:
        st = self.state
        if st.predictor is None or st.dataset is None or self.task is not None:
            return
        predictor, dataset, k = st.predictor, st.dataset, self.k_box.value()
        indices = None if self.images_box.currentIndex() == 0 else [int(i) for i in self.grid_indices()]
        n = len(dataset) if indices is None else len(indices)
        self.status.setText(f"reading the maps of {n} images…")
        self.busy.setRange(0, max(n, 1))
        self.busy.setValue(0)
        self.busy.setVisible(True)
        self.cancel_button.setVisible(True)
        started = time.monotonic()

        def progress(done, total):
            self.busy.setRange(0, max(total, 1))
            self.busy.setValue(done)
            self.status.setText(progress_text(started, done, total))

        def finish():
            self.task = None
            self.busy.setVisible(False)
            self.cancel_button.setVisible(False)
            self._on_inputs_changed()

        def done(atlas):
            finish()
            if predictor is not st.predictor or dataset is not st.dataset:
                self.status.setText("the model or the dataset changed meanwhile: compute again")
                return
            self.atlas, self.atlas_owner = atlas, (dataset, predictor)
            self.show_atlas()
            self.status.setText(f"top {k} of {n} images per map, by the map's peak value")

        def failed(msg, _tb):
            finish()
            self.status.setText("cancelled" if msg == "cancelled" else f"failed: {msg}")

        self.task = self.tasks.start(compute_atlas, predictor.model, dataset, indices, k,
                                     on_done=done, on_error=failed, on_progress=progress)
        self.run_button.setEnabled(False)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status.setText("cancelling…")

    def done(self, r: int) -> None:          # closing the dialog stops a computation in progress
        self.cancel()
        super().done(r)

    # ---------------------------------------------------------------- showing
    def _clear(self) -> None:
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.crops = []

    def show_atlas(self) -> None:
        self._clear()
        ds, names = self.state.dataset, self.state.part_assignment()
        for m, entry in enumerate(self.atlas):
            label = QLabel(f"<b>{square_label(m, m if entry.far_end else None)}</b>"
                           + (f"<br>{names[m]}" if m in names else ""))
            if entry.far_end:
                label.setToolTip("This part's square is the object's far end from the anchor's square:\n"
                                 "the crops show that square, ranked by the anchor map's peak.")
            label.setStyleSheet(f"color: {MAP_COLOURS[m % len(MAP_COLOURS)]}")
            self.grid.addWidget(label, m, 0)
            row = []
            for j, (i, peak, v, side) in enumerate(zip(entry.indices, entry.peaks, entry.values, entry.sides)):
                b = QToolButton()
                b.setIcon(QIcon(crop_pixmap(ds, int(i), peak, float(side))))
                b.setIconSize(QSize(CROP_PX, CROP_PX))
                b.setAutoRaise(True)
                b.setToolTip(f"#{int(i)} {ds.items[int(i)].image_id}\n{ds.class_names[ds.labels[int(i)]]}\n"
                             + (f"far end; anchor map peak {v:.3f}" if entry.far_end else f"map {m + 1} peak {v:.3f}"))
                b.clicked.connect(lambda _c=False, i=int(i): self.showImage.emit(i))
                b.image_index = int(i)
                self.grid.addWidget(b, m, j + 1)
                row.append(b)
            self.crops.append(row)
