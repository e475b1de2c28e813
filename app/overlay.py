"""Attention maps as coloured, translucent images, and the colour bar that explains them."""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
from PIL import Image
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem, QGraphicsSimpleTextItem, QSizePolicy, QWidget

COLORMAPS = ("inferno", "viridis", "turbo", "plasma", "magma")
# predicted squares per attention map; ground-truth boxes per part
MAP_COLOURS = ["#ff8c1a", "#18c8e6", "#c05cff", "#ffe14d"]
PART_COLOURS = {"head": "#39d353", "tail": "#ff4d6d"}
OTHER_PART_COLOUR = "#ffffff"


@lru_cache(maxsize=16)
def lookup_table(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of a pyqtgraph colour map."""
    import pyqtgraph as pg
    try:
        cmap = pg.colormap.get(name)
    except Exception:  # noqa: BLE001 - unknown name: grey ramp
        g = np.arange(256, dtype=np.uint8)
        return np.stack([g, g, g], axis=1)
    return np.asarray(cmap.getLookupTable(nPts=256, alpha=False), dtype=np.uint8)[:, :3]


def map_range(m: np.ndarray, mode: str) -> tuple[float, float]:
    """The value range the colours span: fixed [0, 1] or the map's own min..max (a flat map,
    whose range would only stretch rounding noise, keeps [0, 1])."""
    if mode == "fixed":
        return 0.0, 1.0
    lo, hi = float(np.min(m)), float(np.max(m))
    return (lo, hi) if hi - lo > 1e-4 else (0.0, 1.0)


def upsample(m: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (h, w) map resized to the image size, bilinear."""
    im = Image.fromarray(np.asarray(m, dtype=np.float32), mode="F")
    return np.asarray(im.resize((max(width, 1), max(height, 1)), Image.BILINEAR), dtype=np.float32)


def render_map(m: np.ndarray, width: int, height: int, cmap: str, vrange: tuple[float, float],
               opacity: float) -> QImage:
    """The coloured map as an ARGB32 QImage of the image size with uniform ``opacity``."""
    up = upsample(m, width, height)
    lo, hi = vrange
    t = np.clip((up - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = lookup_table(cmap)[(t * 255).astype(np.uint8)]
    a = np.full(t.shape + (1,), int(round(np.clip(opacity, 0, 1) * 255)), dtype=np.uint8)
    bgra = np.ascontiguousarray(np.concatenate([rgb[..., ::-1], a], axis=-1))
    h, w = t.shape
    return QImage(bgra.tobytes(), w, h, 4 * w, QImage.Format.Format_ARGB32).copy()


class ColourBar(QWidget):
    """A vertical colour ramp with the value range written at its ends."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.cmap, self.lo, self.hi = COLORMAPS[0], 0.0, 1.0
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.setMinimumWidth(56)

    def sizeHint(self) -> QSize:
        return QSize(56, 200)

    def set_colormap(self, name: str, lo: float, hi: float) -> None:
        self.cmap, self.lo, self.hi = name, float(lo), float(hi)
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        fm = p.fontMetrics()
        top, bottom = fm.height(), self.height() - fm.height()
        bar = QRectF(4, top, 16, max(bottom - top, 1))
        grad = QLinearGradient(bar.bottomLeft(), bar.topLeft())
        lut = lookup_table(self.cmap)
        for k in range(0, 256, 16):
            grad.setColorAt(k / 255, QColor(*lut[k]))
        grad.setColorAt(1.0, QColor(*lut[255]))
        p.fillRect(bar, grad)
        p.setPen(self.palette().text().color())
        p.drawRect(bar)
        p.drawText(QRectF(22, 0, self.width() - 22, top * 2), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   f"{self.hi:.3g}")
        p.drawText(QRectF(22, bottom - top, self.width() - 22, top * 2),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, f"{self.lo:.3g}")
        p.end()


def label_plate(parent: QGraphicsItem, text: str, colour: str, pixel_size: int = 12,
                pad: tuple[int, int] = (3, 1)) -> QGraphicsRectItem:
    """A box's label: bold text on a dark plate of a constant size on screen (it ignores the view's
    zoom), a child of ``parent``; the caller places it (app/labels.py says where)."""
    plate = QGraphicsRectItem(parent)
    plate.setFlag(QGraphicsRectItem.GraphicsItemFlag.ItemIgnoresTransformations)
    plate.setPen(QPen(Qt.PenStyle.NoPen))
    plate.setBrush(QColor(0, 0, 0, 170))
    label = QGraphicsSimpleTextItem(text, plate)
    font = QFont()
    font.setPixelSize(pixel_size)
    font.setBold(True)
    label.setFont(font)
    label.setBrush(QColor(colour))
    br = label.boundingRect()
    plate.setRect(QRectF(0, 0, br.width() + 2 * pad[0], br.height() + 2 * pad[1]))
    label.setPos(pad[0], pad[1])
    return plate


def fill_map_box(box, n_parts: int) -> None:
    """The map chooser's entries, one list for every view: "map 1".."map n" (data 0..n-1) and,
    with more than one map, "max of all" (data -1). No signal is emitted while it is refilled."""
    box.blockSignals(True)
    box.clear()
    for k in range(n_parts):
        box.addItem(f"map {k + 1}", k)
    if n_parts > 1:
        box.addItem("max of all", -1)
    box.blockSignals(False)
