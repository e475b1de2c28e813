"""Compare two checkpoints (View > Compare models…): the selected image under the loaded model
(A) and a second checkpoint (B), side by side: each column its own model's attention map, part
squares, the ground-truth boxes, the IoU of each (part, square) pair and its top classes. Both
predictions run in worker threads; the columns follow the browser's selection."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QDialog, QFileDialog, QGraphicsPixmapItem, QGraphicsRectItem,
                               QGraphicsScene, QHBoxLayout, QHeaderView,
                               QLabel, QPushButton, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from . import messages
from .image_view import ImageView
from .labels import clip_box, place_labels, square_label
from .overlay import MAP_COLOURS, fill_map_box, label_plate, OTHER_PART_COLOUR, PART_COLOURS, map_range, render_map
from .state import AppState

TOP_K = 5


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    return t


def _fill(t: QTableWidget, rows: list[list[str]]) -> None:
    t.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            t.setItem(r, c, QTableWidgetItem(text))


class ModelColumn(QWidget):
    """One model's view of the image: map overlay, squares (one colour per map), dashed
    ground truth, an IoU table and the top classes."""

    def __init__(self, title: str, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.title = QLabel(title)
        self.title.setWordWrap(True)
        self.scene = QGraphicsScene(self)
        self.view = ImageView(self.scene)
        self.image_item = QGraphicsPixmapItem()
        self.map_item = QGraphicsPixmapItem()
        self.map_item.setZValue(1)
        self.scene.addItem(self.image_item)
        self.scene.addItem(self.map_item)
        self.box_items: list[QGraphicsRectItem] = []
        self._plates: list[tuple[QGraphicsRectItem, tuple, bool]] = []    # (plate, box, truth)
        self.image_size = (0, 0)
        self.view.on_transform = self._layout_labels
        self.pred_items: list[QGraphicsRectItem] = []
        self.iou_table = _table(["Part", "Square", "IoU"])
        self.top_table = _table(["Class", "Score"])
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.prediction = None
        self.index = -1
        tables = QSplitter(Qt.Orientation.Horizontal)
        tables.addWidget(self.iou_table)
        tables.addWidget(self.top_table)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.view, 3)
        lay.addWidget(self.message)
        lay.addWidget(tables, 1)

    def set_image(self, img) -> None:
        data = img.convert("RGB").tobytes()
        self.image_item.setPixmap(QPixmap.fromImage(
            QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888).copy()))
        self.scene.setSceneRect(QRectF(0, 0, img.width, img.height))
        self.image_size = img.size
        self.view.fit()

    def clear(self, message: str = "") -> None:
        for it in self.box_items:
            self.scene.removeItem(it)
        self.box_items, self.pred_items, self._plates, self.prediction = [], [], [], None
        self.map_item.setPixmap(QPixmap())
        _fill(self.iou_table, [])
        _fill(self.top_table, [])
        self.message.setText(message)

    def _rect(self, box, colour: str, dashed: bool, text: str) -> QGraphicsRectItem:
        x0, y0, x1, y1 = (float(v) for v in box)
        item = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
        pen = QPen(QColor(colour), 2.0)
        pen.setCosmetic(True)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        item.setPen(pen)
        item.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        item.setZValue(2)
        plate = label_plate(item, text, colour, 11, (2, 0))
        self._plates.append((plate, (x0, y0, x1, y1), dashed))
        self.scene.addItem(item)
        self.box_items.append(item)
        return item

    def _layout_labels(self) -> None:
        """Label plates inside the image and off each other (``labels.place_labels``, as the
        audit's), for the view's current scale; on every draw, resize and zoom."""
        if not self._plates or self.image_size[0] == 0:
            return
        s = self.view.scale_factor()
        rects = place_labels([b for _p, b, _t in self._plates],
                             [(p.rect().width() / s, p.rect().height() / s) for p, _b, _t in self._plates],
                             [t for _p, _b, t in self._plates],
                             (0.0, 0.0, float(self.image_size[0]), float(self.image_size[1])))
        for (plate, _b, _t), r in zip(self._plates, rects):
            plate.setPos(r[0], r[1])           # the box items sit at the scene origin

    def draw(self, pred, gt: dict, assignment: dict[int, str], image_size, map_choice: int, note: str) -> None:
        """Draw one prediction (``engine.predict.Prediction``) of the current image."""
        self.clear()
        self.prediction = pred
        w, h = image_size
        for part, box in gt.items():
            self._rect(box, PART_COLOURS.get(part, OTHER_PART_COLOUR), True, f"{part} (truth)")
        from sgma.engine.evaluate import match_parts_on_image
        pairs = match_parts_on_image(pred.boxes, gt, assignment) if gt else []
        iou_of = {m: v for _p, m, v in pairs}
        for m, box in enumerate(pred.boxes):
            text = square_label(m, pred.far_end_map, assignment.get(m)) + \
                (f" IoU {iou_of[m]:.2f}" if m in iou_of else "")
            self.pred_items.append(self._rect(clip_box(box, w, h), MAP_COLOURS[m % len(MAP_COLOURS)], False, text))
        m = pred.maps.max(axis=0) if map_choice < 0 else pred.maps[min(map_choice, len(pred.maps) - 1)]
        self.map_item.setPixmap(QPixmap.fromImage(render_map(m, w, h, "inferno", map_range(m, "fixed"), 0.5)))
        self._layout_labels()
        _fill(self.iou_table, [[part, f"map{m + 1}" + (f" ({assignment[m]})" if m in assignment else " (best match)"),
                                f"{v:.3f}"] for part, m, v in pairs])
        _fill(self.top_table, [[name, f"{score:.3f}"] for name, score in pred.top(TOP_K)])
        self.message.setText(note)


class CompareDialog(QDialog):
    def __init__(self, state: AppState, tasks, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("Compare models")
        self.state, self.tasks = state, tasks
        self.predictor_b = None
        self.path_b: Optional[str] = None
        self.loading = False
        self._request = 0
        self.a = ModelColumn("A")
        self.b = ModelColumn("B: no model; open a second checkpoint")
        self.open_button = QPushButton("Open model B…")
        self.open_button.clicked.connect(self.open_dialog)
        self.map_box = QComboBox()
        self.map_box.currentIndexChanged.connect(lambda _i: self.refresh())
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(QLabel("Map"))
        top.addWidget(self.map_box)
        top.addStretch(1)
        cols = QSplitter(Qt.Orientation.Horizontal)
        cols.addWidget(self.a)
        cols.addWidget(self.b)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(cols, 1)
        self.resize(1100, 700)
        state.currentChanged.connect(lambda _i: self.refresh())
        state.modelChanged.connect(self._on_models)
        state.datasetChanged.connect(self.refresh)
        state.evaluationChanged.connect(self.refresh)
        self._on_models()

    # ---------------------------------------------------------------- model B
    def open_dialog(self) -> None:
        start = self.path_b or self.state.checkpoint_path or ""
        path, _ = QFileDialog.getOpenFileName(self, "Open model B", start, "Checkpoints (*.pt);;All files (*)")
        if path:
            self.load_model_b(path)

    def load_model_b(self, path: str) -> None:
        from sgma.engine.predict import Predictor
        self.loading = True
        self.b.title.setText(f"B: loading {path}…")

        def done(predictor):
            self.loading = False
            self.predictor_b, self.path_b = predictor, path
            self._on_models()

        def failed(msg, tb):
            self.loading = False
            self.b.title.setText("B: no model; open a second checkpoint")
            messages.error(self, "Cannot load model B", msg, tb)

        self.tasks.start(Predictor.from_checkpoint, path, on_done=done, on_error=failed)

    def _on_models(self) -> None:
        pa, pb = self.state.predictor, self.predictor_b
        n = max([p.model.cfg.n_parts for p in (pa, pb) if p is not None] or [0])
        fill_map_box(self.map_box, n)
        name_a = Path(self.state.checkpoint_path).name if self.state.checkpoint_path else "no model"
        self.a.title.setText(f"<b>A</b>: {name_a} (the loaded model; parts named by its evaluation)")
        if pb is not None:
            self.b.title.setText(f"<b>B</b>: {self.path_b} (parts paired with the truth by the best match)")
        self.refresh()

    # ---------------------------------------------------------------- showing
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        """Predict the selected image with both models (worker threads) and draw each column;
        nothing while the dialog is hidden."""
        self._request += 1
        if not self.isVisible():
            return
        ds, index = self.state.dataset, self.state.current
        for col in (self.a, self.b):
            col.index = index
        if ds is None or index < 0:
            self.a.clear("no image selected")
            self.b.clear("no image selected")
            return
        try:
            img = ds.load_image(index)
        except Exception as e:  # noqa: BLE001 - a broken file is shown, not raised
            self.a.clear(f"cannot show image {index}: {e}")
            self.b.clear(f"cannot show image {index}: {e}")
            return
        gt = dict(ds.items[index].part_boxes)
        choice = self.map_box.currentData()
        choice = -1 if choice is None else int(choice)
        for col, predictor, assignment in ((self.a, self.state.predictor, self.state.part_assignment()),
                                           (self.b, self.predictor_b, {})):
            col.set_image(img)
            if predictor is None:
                col.clear("no model loaded")
                continue
            col.clear("predicting…")
            fits = list(predictor.attribute_names) == list(ds.attribute_names)
            note = "" if fits else "trained on other attributes: scores are over its own classes; "

            def done(pred, col=col, req=self._request, assignment=assignment, gt=gt, size=img.size,
                     choice=choice, note=note):
                if req == self._request:
                    col.draw(pred, gt, assignment, size, choice,
                             f"{note}top classes among all its classes, seen and unseen ({pred.mode} scores)")

            def failed(msg, _tb, col=col, req=self._request):
                if req == self._request:
                    col.clear(f"prediction failed: {msg}")

            self.tasks.start(predictor.predict, img, on_done=done, on_error=failed)
