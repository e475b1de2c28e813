"""The audit's image view: fits the image, zooms with the wheel (about the cursor), pans by
dragging, resets on double click or ``0``, and reports the image pixel under the cursor.

Choices: zoom steps of 1.25 per wheel notch, from the fitted size up to 32x (never smaller than
the fit, so the image cannot get lost); a resize keeps the zoom only while zoomed in."""
from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

ZOOM_STEP = 1.25
MAX_ZOOM = 32.0


class ImageView(QGraphicsView):
    hovered = Signal(float, float)      # scene (= image pixel) coordinates under the cursor
    left = Signal()                     # the cursor left the view
    zoomChanged = Signal(float)         # zoom relative to the fitted size

    def __init__(self, scene: QGraphicsScene):
        super().__init__(scene)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(QColor(40, 40, 44))
        self.setMinimumSize(240, 240)
        self.setMouseTracking(True)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.zoom = 1.0
        self.on_transform: Optional[Callable[[], None]] = None     # e.g. re-place the labels

    def scale_factor(self) -> float:
        """Screen pixels per scene unit."""
        return float(self.transform().m11()) or 1.0

    def _changed(self) -> None:
        if self.on_transform is not None:
            self.on_transform()
        self.zoomChanged.emit(self.zoom)

    def fit(self) -> None:
        r = self.scene().sceneRect()
        if r.width() > 0:
            self.fitInView(r.adjusted(-4, -4, 4, 4), Qt.AspectRatioMode.KeepAspectRatio)
        self.zoom = 1.0
        self._changed()

    def zoom_by(self, factor: float, at: Optional[QPointF] = None) -> None:
        """Multiply the zoom by ``factor`` (clamped to [1, MAX_ZOOM]), keeping the scene point
        under ``at`` (viewport coordinates; default the centre) in place."""
        new = min(max(self.zoom * factor, 1.0), MAX_ZOOM)
        if new == self.zoom:
            return
        if new == 1.0:
            self.fit()
            return
        at = at if at is not None else QPointF(self.viewport().rect().center())
        before = self.mapToScene(at.toPoint())
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        f = new / self.zoom
        self.scale(f, f)
        after = self.mapToScene(at.toPoint())
        d = after - before
        self.translate(d.x(), d.y())
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.zoom = new
        self._changed()

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_by(ZOOM_STEP ** steps, event.position())
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        self.fit()

    def keyPressEvent(self, event) -> None:
        k = event.key()
        if k in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_by(ZOOM_STEP)
        elif k == Qt.Key.Key_Minus:
            self.zoom_by(1 / ZOOM_STEP)
        elif k == Qt.Key.Key_0:
            self.fit()
        else:
            super().keyPressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        super().mouseMoveEvent(event)
        p = self.mapToScene(event.position().toPoint())
        self.hovered.emit(p.x(), p.y())

    def leaveEvent(self, event) -> None:
        super().leaveEvent(event)
        self.left.emit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.zoom <= 1.0:
            self.fit()
        else:
            self._changed()
