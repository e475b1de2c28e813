"""Part audit of the selected image: the attention maps as a translucent overlay with a colour
bar, the predicted part squares (named "head"/"tail" once an evaluation has matched maps to
parts), the ground-truth boxes, the IoU of each pair, the top classes, and export to PNG/SVG."""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGraphicsPixmapItem,
                               QGraphicsRectItem, QGraphicsScene, QGraphicsSimpleTextItem,
                               QGraphicsView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSlider,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from . import messages
from .export import export_png, export_svg
from .overlay import (COLORMAPS, MAP_COLOURS, OTHER_PART_COLOUR, PART_COLOURS, ColourBar, map_range,
                      render_map)
from .state import AppState

RANGES = {"fixed [0, 1]": "fixed", "per image": "image"}


class ImageView(QGraphicsView):
    """Keeps the whole image in view."""

    def __init__(self, scene: QGraphicsScene):
        super().__init__(scene)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(QColor(40, 40, 44))
        self.setMinimumSize(240, 240)

    def fit(self) -> None:
        r = self.scene().sceneRect()
        if r.width() > 0:
            self.fitInView(r.adjusted(-4, -4, 4, 4), Qt.AspectRatioMode.KeepAspectRatio)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()


def best_pairs(pred: np.ndarray, gt: dict[str, tuple], assignment: dict[int, str]) -> list[tuple[str, int, float]]:
    """(part, map index, IoU) for every ground-truth part: the evaluator's assignment when known,
    otherwise the distinct map with the largest IoU, greedily."""
    from sgma.engine.metrics import iou
    pairs, used = [], set()
    by_part = {p: m for m, p in assignment.items()}
    for part, box in gt.items():
        if part in by_part and by_part[part] < len(pred):
            m = by_part[part]
        else:
            free = [m for m in range(len(pred)) if m not in used and m not in assignment]
            if not free:
                continue
            m = max(free, key=lambda k: iou(pred[k], box))
        used.add(m)
        pairs.append((part, m, iou(pred[m], box)))
    return pairs


class AuditPanel(QWidget):
    predicted = Signal(int)          # dataset index whose prediction is now drawn

    def __init__(self, state: AppState, tasks, settings, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state, self.tasks, self.settings = state, tasks, settings
        self.scene = QGraphicsScene(self)
        self.view = ImageView(self.scene)
        self.colour_bar = ColourBar()
        self.image_item = QGraphicsPixmapItem()
        self.map_item = QGraphicsPixmapItem()
        self.image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.map_item.setZValue(1)
        self.scene.addItem(self.image_item)
        self.scene.addItem(self.map_item)
        self.pred_items: list[QGraphicsRectItem] = []
        self.gt_items: list[QGraphicsRectItem] = []
        self.label_items: list[QGraphicsSimpleTextItem] = []
        self.index = -1
        self.image_size = (0, 0)
        self.prediction = None
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._cache_owner = (None, None)     # the (dataset, predictor) the cached predictions belong to
        self._request = 0

        self.map_box = QComboBox()
        self.cmap_box = QComboBox()
        self.cmap_box.addItems(COLORMAPS)
        self.cmap_box.setCurrentText(settings.get("audit/colormap", COLORMAPS[0]))
        self.range_box = QComboBox()
        self.range_box.addItems(list(RANGES))
        self.range_box.setCurrentText(settings.get("audit/range", "fixed [0, 1]"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(settings.get("audit/opacity", 55))
        self.opacity.setToolTip("map opacity")
        self.show_map = QCheckBox("Attention map")
        self.show_pred = QCheckBox("Predicted parts")
        self.show_gt = QCheckBox("Ground truth")
        self.show_labels = QCheckBox("Labels")
        for cb, key in ((self.show_map, "map"), (self.show_pred, "pred"), (self.show_gt, "gt"),
                        (self.show_labels, "labels")):
            cb.setChecked(settings.get(f"audit/show_{key}", True))
            cb.toggled.connect(self._apply_visibility)
        self.png_button = QPushButton("Export PNG…")
        self.svg_button = QPushButton("Export SVG…")
        self.png_button.clicked.connect(lambda: self._export_dialog("png"))
        self.svg_button.clicked.connect(lambda: self._export_dialog("svg"))
        self.message = QLabel()
        self.message.setWordWrap(True)

        self.iou_table = QTableWidget(0, 3)
        self.iou_table.setHorizontalHeaderLabels(["Part", "Predicted square", "IoU"])
        self.top_table = QTableWidget(0, 3)
        self.top_table.setHorizontalHeaderLabels(["Class", "Kind", "Score"])
        for t in (self.iou_table, self.top_table):
            t.verticalHeader().setVisible(False)
            t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
            t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

        controls = QHBoxLayout()
        for w in (QLabel("Map"), self.map_box, QLabel("Colours"), self.cmap_box, QLabel("Range"),
                  self.range_box):
            controls.addWidget(w)
        controls.addStretch(1)
        controls.addWidget(self.png_button)
        controls.addWidget(self.svg_button)
        layers = QHBoxLayout()
        for w in (self.show_map, self.show_pred, self.show_gt, self.show_labels):
            layers.addWidget(w)
        layers.addWidget(QLabel("Opacity"))
        layers.addWidget(self.opacity, 1)
        image_row = QHBoxLayout()
        image_row.addWidget(self.view, 1)
        image_row.addWidget(self.colour_bar)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(controls)
        tl.addLayout(layers)
        tl.addLayout(image_row, 1)
        tl.addWidget(self.message)
        tables = QSplitter(Qt.Orientation.Horizontal)
        tables.addWidget(self.iou_table)
        tables.addWidget(self.top_table)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(tables)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        for box in (self.map_box, self.cmap_box, self.range_box):
            box.currentIndexChanged.connect(self._draw_map)
        self.opacity.valueChanged.connect(self._draw_map)
        state.currentChanged.connect(self.show_index)
        state.modelChanged.connect(self._on_model)
        state.evaluationChanged.connect(self.redraw)
        state.datasetChanged.connect(self._on_dataset)
        self._on_model()

    # ---------------------------------------------------------------- state changes
    def _on_dataset(self) -> None:
        self._cache.clear()
        self._cache_owner = (self.state.dataset, self.state.predictor)

    def _check_cache_owner(self) -> None:
        """Predictions are cached per dataset image index: they belong to one (dataset, model).
        Checked on every show, so the order in which panels hear ``datasetChanged`` (the browser
        selects image #0 first) cannot bring back the previous dataset's image #0."""
        owner = (self.state.dataset, self.state.predictor)
        if self._cache_owner[0] is not owner[0] or self._cache_owner[1] is not owner[1]:
            self._cache.clear()
            self._request += 1               # a prediction in flight for the old pair is dropped
            self._cache_owner = owner

    def _on_model(self) -> None:
        self._cache.clear()
        pred = self.state.predictor
        n = pred.model.cfg.n_parts if pred is not None else 0
        self.map_box.blockSignals(True)
        self.map_box.clear()
        for k in range(n):
            self.map_box.addItem(f"map {k + 1}", k)
        if n > 1:
            self.map_box.addItem("max of all", -1)
        self.map_box.blockSignals(False)
        if self.index >= 0:
            self.show_index(self.index)

    def save_settings(self) -> None:
        s = self.settings
        s.set("audit/colormap", self.cmap_box.currentText())
        s.set("audit/range", self.range_box.currentText())
        s.set("audit/opacity", self.opacity.value())
        for cb, key in ((self.show_map, "map"), (self.show_pred, "pred"), (self.show_gt, "gt"),
                        (self.show_labels, "labels")):
            s.set(f"audit/show_{key}", cb.isChecked())

    # ---------------------------------------------------------------- showing an image
    def show_index(self, index: int) -> None:
        self.index = index
        ds = self.state.dataset
        self.prediction = None
        self._check_cache_owner()
        if ds is None or index < 0:
            self.image_item.setPixmap(QPixmap())
            self.redraw()
            return
        try:
            img = ds.load_image(index)
        except Exception as e:  # noqa: BLE001 - a broken image file is shown, not raised
            self.message.setText(f"cannot show image {index}: {e}")
            self.image_item.setPixmap(QPixmap())
            self.redraw()
            return
        self._pil = img
        self.image_size = img.size
        data = img.tobytes()
        qimg = QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888).copy()
        self.image_item.setPixmap(QPixmap.fromImage(qimg))
        self.scene.setSceneRect(QRectF(0, 0, img.width, img.height))
        self.view.fit()
        if index in self._cache:
            self.prediction = self._cache[index]
        elif self.state.predictor is not None:
            self._predict(index, img)
        self.redraw()

    def _predict(self, index: int, img) -> None:
        self._request += 1
        req, predictor, dataset = self._request, self.state.predictor, self.state.dataset
        self.message.setText("predicting…")

        def done(pred, req=req, index=index, predictor=predictor, dataset=dataset):
            if predictor is not self.state.predictor or dataset is not self.state.dataset:
                return
            self._cache[index] = pred
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
            if req == self._request and index == self.index:
                self.prediction = pred
                self.redraw()
                self.predicted.emit(index)

        def failed(msg, _tb, req=req):
            if req == self._request:
                self.message.setText(f"prediction failed: {msg}")

        self.tasks.start(predictor.predict, img, on_done=done, on_error=failed)

    def refresh_prediction(self) -> None:
        """Predict the current image again (after user classes changed)."""
        self._cache.pop(self.index, None)
        if self.index >= 0:
            self.show_index(self.index)

    # ---------------------------------------------------------------- drawing
    def _clear_boxes(self) -> None:
        for it in self.pred_items + self.gt_items:
            self.scene.removeItem(it)
        self.pred_items, self.gt_items, self.label_items = [], [], []

    def _box(self, box, colour: str, dashed: bool, text: str, corner: int = 0) -> QGraphicsRectItem:
        """A box with a label. Ground truth (dashed): label under the box. Predicted squares:
        label inside the top-left corner (``corner`` 0) or the bottom-right one (1), so the labels
        of two overlapping squares do not cover each other."""
        x0, y0, x1, y1 = (float(v) for v in box)
        item = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
        pen = QPen(QColor(colour), 2.5 if not dashed else 2.0)
        pen.setCosmetic(True)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        item.setPen(pen)
        item.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        item.setZValue(2 if dashed else 3)
        # the label: a dark plate with coloured text, a constant size on screen whatever the zoom
        plate = QGraphicsRectItem(item)
        plate.setFlag(QGraphicsRectItem.GraphicsItemFlag.ItemIgnoresTransformations)
        plate.setPen(QPen(Qt.PenStyle.NoPen))
        plate.setBrush(QColor(0, 0, 0, 170))
        label = QGraphicsSimpleTextItem(text, plate)
        font = QFont()
        font.setPixelSize(12)
        font.setBold(True)
        label.setFont(font)
        label.setBrush(QColor(colour))
        br = label.boundingRect()
        w, h = br.width() + 6, br.height() + 2
        if dashed:                      # anchored at the bottom-left corner, hanging below
            plate.setPos(x0, y1 + 1)
            plate.setRect(QRectF(0, 0, w, h))
        elif corner % 2 == 0:           # anchored top-left, inside
            plate.setPos(x0 + 1, y0 + 1)
            plate.setRect(QRectF(0, 0, w, h))
        else:                           # anchored bottom-right, inside (offsets in screen pixels)
            plate.setPos(x1 - 1, y1 - 1)
            plate.setRect(QRectF(-w, -h, w, h))
        label.setPos(plate.rect().left() + 3, plate.rect().top() + 1)
        self.label_items.append(plate)
        self.scene.addItem(item)
        return item

    def redraw(self) -> None:
        self._clear_boxes()
        ds, pred = self.state.dataset, self.prediction
        self.iou_table.setRowCount(0)
        self.top_table.setRowCount(0)
        if ds is None or self.index < 0:
            self.map_item.setPixmap(QPixmap())
            return
        gt = dict(ds.items[self.index].part_boxes)
        assignment = self.state.part_assignment()
        pairs = best_pairs(pred.boxes, gt, assignment) if pred is not None and gt else []
        iou_of_map = {m: (part, v) for part, m, v in pairs}
        for part, box in gt.items():
            self.gt_items.append(self._box(box, PART_COLOURS.get(part, OTHER_PART_COLOUR), True, f"{part} (truth)"))
        if pred is not None:
            for m, box in enumerate(pred.boxes):
                name = assignment.get(m)
                text = f"map{m + 1}" + (f" · {name}" if name else "")
                if m in iou_of_map:
                    text += f"  IoU {iou_of_map[m][1]:.2f}"
                self.pred_items.append(self._box(box, MAP_COLOURS[m % len(MAP_COLOURS)], False, text, corner=m))
        for part, m, v in pairs:
            r = self.iou_table.rowCount()
            self.iou_table.insertRow(r)
            label = f"map{m + 1}" + (f" ({assignment[m]})" if m in assignment else " (best match)")
            for c, text in enumerate([part, label, f"{v:.3f}"]):
                self.iou_table.setItem(r, c, QTableWidgetItem(text))
        if pred is not None:
            self._fill_top(pred)
            note = "" if self.state.model_fits_dataset() else \
                " (the model was trained on other attributes: scores are over its own classes)"
            mode = f"combined scores, beta {self.state.predictor.beta:g}" if pred.mode == "combined" \
                and self.state.predictor is not None else f"{pred.mode} scores"
            self.message.setText(f"prediction ({mode}){note}; "
                                 + ("parts named by the evaluation" if assignment else
                                    "run an evaluation to name the parts"))
        elif self.state.predictor is None:
            self.message.setText("no model loaded: open a checkpoint (File > Open model) or train one")
        self._draw_map()
        self._apply_visibility()

    def _fill_top(self, pred) -> None:
        user = set(getattr(self.state.predictor, "user_names", []) or [])
        seen = set(self.state.predictor.state.get("seen_classes", []))
        for name, score in pred.top(8):
            r = self.top_table.rowCount()
            self.top_table.insertRow(r)
            kind = "user" if name in user else ("seen" if name in seen else "unseen")
            for c, text in enumerate([name, kind, f"{score:.3f}"]):
                self.top_table.setItem(r, c, QTableWidgetItem(text))

    def _draw_map(self) -> None:
        pred = self.prediction
        if pred is None or self.map_box.count() == 0 or self.image_size[0] == 0:
            self.map_item.setPixmap(QPixmap())
            return
        k = self.map_box.currentData()
        m = pred.maps.max(axis=0) if k is None or k < 0 else pred.maps[min(k, len(pred.maps) - 1)]
        mode = RANGES[self.range_box.currentText()]
        lo, hi = map_range(m, mode)
        cmap = self.cmap_box.currentText()
        img = render_map(m, self.image_size[0], self.image_size[1], cmap, (lo, hi), self.opacity.value() / 100)
        self.map_item.setPixmap(QPixmap.fromImage(img))
        self.colour_bar.set_colormap(cmap, lo, hi)

    def _apply_visibility(self) -> None:
        self.map_item.setVisible(self.show_map.isChecked())
        self.colour_bar.setVisible(self.show_map.isChecked() and self.prediction is not None)
        for it in self.pred_items:
            it.setVisible(self.show_pred.isChecked())
        for it in self.gt_items:
            it.setVisible(self.show_gt.isChecked())
        for it in self.label_items:
            it.setVisible(self.show_labels.isChecked())

    # ---------------------------------------------------------------- export
    def export(self, path: str) -> str:
        rect = self.scene.sceneRect()
        if path.lower().endswith(".svg"):
            export_svg(self.scene, rect, path)
        else:
            export_png(self.scene, rect, path, scale=max(1.0, 512 / max(rect.width(), 1)))
        return path

    def _export_dialog(self, fmt: str) -> None:
        if self.index < 0:
            return
        start = self.settings.get("audit/export_dir", "")
        name = f"{start}/sgma_audit_{self.index}.{fmt}" if start else f"sgma_audit_{self.index}.{fmt}"
        path, _ = QFileDialog.getSaveFileName(self, f"Export view as {fmt.upper()}", name,
                                              f"{fmt.upper()} (*.{fmt})")
        if not path:
            return
        try:
            self.export(path)
        except OSError as e:
            messages.error(self, "Export failed", f"cannot write {path}: {e}")
            return
        import os
        self.settings.set("audit/export_dir", os.path.dirname(path))
        self.state.status.emit(f"exported {path}")
