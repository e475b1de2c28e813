"""Part audit of the selected image: the attention maps as a translucent overlay with a colour
bar, the predicted part squares (named "head"/"tail" once an evaluation has matched maps to
parts), the ground-truth boxes, the IoU of each pair, the top classes, and export to PNG/SVG."""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPen, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGraphicsPixmapItem,
                               QGraphicsRectItem, QGraphicsScene, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSlider,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from . import messages
from .export import Figure, export_png, export_svg
from .image_view import ImageView
from .labels import clip_box, place_labels, square_label
from .overlay import (COLORMAPS, fill_map_box, label_plate, MAP_COLOURS, OTHER_PART_COLOUR, PART_COLOURS, ColourBar, map_range,
                      render_map, upsample)
from .state import AppState

RANGES = {"fixed [0, 1]": "fixed", "per image": "image"}


class AuditPanel(QWidget):
    predicted = Signal(int)          # dataset index whose prediction is now drawn

    def __init__(self, state: AppState, tasks, settings, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state, self.tasks, self.settings = state, tasks, settings
        self.scene = QGraphicsScene(self)
        self.view = ImageView(self.scene)
        self.view.on_transform = self._layout_labels
        self.view.hovered.connect(self._on_hover)
        self.view.left.connect(lambda: self.readout.setText(""))
        self._shown_map: Optional[np.ndarray] = None        # the drawn map at image size, for the readout
        self.readout = QLabel()
        self.readout.setToolTip("the map value under the cursor; wheel zooms, drag pans, double click fits")
        self.colour_bar = ColourBar()
        self.image_item = QGraphicsPixmapItem()
        self.map_item = QGraphicsPixmapItem()
        self.image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.map_item.setZValue(1)
        self.scene.addItem(self.image_item)
        self.scene.addItem(self.map_item)
        self.pred_items: list[QGraphicsRectItem] = []
        self.gt_items: list[QGraphicsRectItem] = []
        self.label_items: list[QGraphicsRectItem] = []     # label plates, constant size on screen
        self._label_specs: list[tuple] = []                 # (box, colour, dashed, text) per label
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
        self.show_random = QCheckBox("Random baseline")
        self.show_random.setToolTip("a random square of the same side per map (seeded by the image), "
                                    "with its IoU: what the evaluation's random baseline measures")
        self.show_random.toggled.connect(lambda _on: self.redraw())
        self.random_boxes: list[tuple[float, float, float, float]] = []
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
        controls.addWidget(self.readout)
        controls.addWidget(self.png_button)
        controls.addWidget(self.svg_button)
        layers = QHBoxLayout()
        for w in (self.show_map, self.show_pred, self.show_gt, self.show_labels, self.show_random):
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
        fill_map_box(self.map_box, n)
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
        self.pred_items, self.gt_items, self.label_items, self._label_specs = [], [], [], []

    def _box(self, box, colour: str, dashed: bool, text: str) -> QGraphicsRectItem:
        """A box with a label plate (dark, coloured text, a constant size on screen whatever the
        zoom). Ground truth is dashed. Where the plates go is ``_layout_labels``'s job."""
        x0, y0, x1, y1 = (float(v) for v in box)
        item = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
        pen = QPen(QColor(colour), 2.5 if not dashed else 2.0)
        pen.setCosmetic(True)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        item.setPen(pen)
        item.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        item.setZValue(2 if dashed else 3)
        plate = label_plate(item, text, colour, 12, (3, 1))
        plate.setZValue(5)
        self.label_items.append(plate)
        self._label_specs.append(((x0, y0, x1, y1), colour, dashed, text))
        self.scene.addItem(item)
        return item

    def _layout_labels(self) -> None:
        """Place every label plate inside the image, none over another (``labels.place_labels``),
        for the view's current scale: called after each redraw, resize and zoom."""
        if not self.label_items or self.image_size[0] == 0:
            return
        s = self.view.scale_factor()
        sizes = [(pl.rect().width() / s, pl.rect().height() / s) for pl in self.label_items]
        rects = place_labels([sp[0] for sp in self._label_specs], sizes, [sp[2] for sp in self._label_specs],
                             (0.0, 0.0, float(self.image_size[0]), float(self.image_size[1])))
        for pl, r in zip(self.label_items, rects):
            pl.setPos(r[0], r[1])

    def label_screen_rects(self) -> list[QRectF]:
        """Where the label plates are on screen (viewport pixels), for tests and hit testing."""
        out = []
        for pl in self.label_items:
            tl = self.view.mapFromScene(pl.scenePos())
            out.append(QRectF(tl.x(), tl.y(), pl.rect().width(), pl.rect().height()))
        return out

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
        from sgma.engine.evaluate import match_parts_on_image
        pairs = match_parts_on_image(pred.boxes, gt, assignment) if pred is not None and gt else []
        iou_of_map = {m: (part, v) for part, m, v in pairs}
        for part, box in gt.items():
            self.gt_items.append(self._box(box, PART_COLOURS.get(part, OTHER_PART_COLOUR), True, f"{part} (truth)"))
        if pred is not None:
            for m, box in enumerate(pred.boxes):
                name = assignment.get(m)
                text = square_label(m, pred.far_end_map, name)
                if m in iou_of_map:
                    text += f"  IoU {iou_of_map[m][1]:.2f}"
                box = clip_box(box, *self.image_size)      # squares may reach past the border
                self.pred_items.append(self._box(box, MAP_COLOURS[m % len(MAP_COLOURS)], False, text))
        rows = [(part, f"map{m + 1}" + (f" ({assignment[m]})" if m in assignment else " (best match)"), v)
                for part, m, v in pairs]
        self.random_boxes = []
        if pred is not None and self.show_random.isChecked():
            rows += self._draw_random(pred.boxes, gt, pairs)
        for row in rows:
            r = self.iou_table.rowCount()
            self.iou_table.insertRow(r)
            for c, text in enumerate([row[0], row[1], f"{row[2]:.3f}"]):
                self.iou_table.setItem(r, c, QTableWidgetItem(text))
        if pred is not None:
            self._fill_top(pred)
            note = "" if self.state.model_fits_dataset() else \
                " (the model was trained on other attributes: scores are over its own classes)"
            mode = f"combined scores, beta {self.state.predictor.beta:g}" if pred.mode == "combined" \
                and self.state.predictor is not None else f"{pred.mode} scores"
            self.message.setText(f"top classes among all classes, seen and unseen ({mode}){note}; "
                                 + ("parts named by the evaluation" if assignment else
                                    "run an evaluation to name the parts"))
        elif self.state.predictor is None:
            self.message.setText("no model loaded: open a checkpoint (File > Open model) or train one")
        self._draw_map()
        self._apply_visibility()
        self._layout_labels()

    def random_squares(self, boxes) -> list[tuple[float, float, float, float]]:
        """One square per predicted square, of the same width and height, placed uniformly inside
        the image; the generator is seeded by the image index, so a redraw keeps them."""
        w, h = self.image_size
        rng = np.random.default_rng(self.index)
        out = []
        for b in boxes:
            bw, bh = min(float(b[2] - b[0]), w), min(float(b[3] - b[1]), h)
            x0, y0 = rng.uniform(0, max(w - bw, 0)), rng.uniform(0, max(h - bh, 0))
            out.append((x0, y0, x0 + bw, y0 + bh))
        return out

    def _draw_random(self, boxes, gt, pairs) -> list[tuple[str, str, float]]:
        from sgma.engine.metrics import iou
        self.random_boxes = self.random_squares(boxes)
        rows = []
        part_of = {m: part for part, m, _v in pairs}
        for m, rb in enumerate(self.random_boxes):
            part = part_of.get(m)
            v = iou(np.asarray(rb), gt[part]) if part is not None else None
            text = f"random{m + 1}" + (f"  IoU {v:.2f}" if v is not None else "")
            self.pred_items.append(self._box(rb, "#bbbbbb", False, text))
            if v is not None:
                rows.append((part, f"random square (side of map{m + 1})", v))
        return rows

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
            self._shown_map = None
            return
        k = self.map_box.currentData()
        m = pred.maps.max(axis=0) if k is None or k < 0 else pred.maps[min(k, len(pred.maps) - 1)]
        mode = RANGES[self.range_box.currentText()]
        lo, hi = map_range(m, mode)
        cmap = self.cmap_box.currentText()
        self._shown_map = upsample(m, self.image_size[0], self.image_size[1])
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

    def value_at(self, x: float, y: float) -> Optional[float]:
        """The drawn map's value at image pixel (x, y) (bilinear at image size), None outside."""
        m = self._shown_map
        if m is None or not (0 <= x < m.shape[1] and 0 <= y < m.shape[0]):
            return None
        return float(m[int(y), int(x)])

    def _on_hover(self, x: float, y: float) -> None:
        if not (0 <= x < self.image_size[0] and 0 <= y < self.image_size[1]):
            self.readout.setText("")
            return
        v = self.value_at(x, y)
        name = self.map_box.currentText() or "map"
        self.readout.setText(f"x {int(x)}, y {int(y)}" + (f" · {name} {v:.3f}" if v is not None else ""))

    # ---------------------------------------------------------------- export
    def caption(self) -> str:
        ds, st = self.state.dataset, self.state
        it = ds.items[self.index] if ds is not None and self.index >= 0 else None
        img = f"image #{self.index} {it.image_id} ({ds.class_names[it.label]})" if it is not None else "no image"
        from pathlib import Path
        model = Path(st.checkpoint_path).name if st.checkpoint_path else "no model"
        shown = self.map_box.currentText() if self.show_map.isChecked() and self.prediction is not None else "no map"
        return f"{img} · model {model} · {shown} · {self.range_box.currentText()} range"

    def figure(self) -> Figure:
        """What the view shows, as an exportable figure."""
        qimg = self.image_item.pixmap().toImage()
        overlay = self.map_item.pixmap().toImage() if self.show_map.isChecked() and \
            not self.map_item.pixmap().isNull() else None
        boxes = [sp for sp in self._label_specs                     # truth first, then the squares
                 if (self.show_gt.isChecked() if sp[2] else self.show_pred.isChecked())]
        bar = (self.colour_bar.cmap, self.colour_bar.lo, self.colour_bar.hi) if overlay is not None else None
        return Figure(qimg, overlay, boxes, bar, self.caption(), self.show_labels.isChecked())

    def export(self, path: str) -> str:
        fig = self.figure()
        if path.lower().endswith(".svg"):
            export_svg(fig, path)
        else:
            export_png(fig, path)
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
