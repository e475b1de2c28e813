"""Export of the part-audit view as a figure: the image, the map overlay, the boxes and their
labels, the colour bar and a caption (image, model, map), to PNG or SVG.

The figure is painted by hand (``paint_figure``), not by rendering the view's scene: the view's
labels have a constant size on screen, which in a scene rendered at the image's own size (128
units for a synthetic bird) covers the bird. Here the image is drawn ``LONG_SIDE`` units on its
long side in both formats (PNG pixels, SVG user units), the labels are ``FONT_PX`` units high and
placed by ``labels.place_labels`` like on screen. SVG goes through QSvgGenerator
(PySide6.QtSvg): image and overlay become base64 PNG ``<image>`` elements, boxes and text stay
vectors. Both are written to a temporary file in the target folder, given the permissions a
newly created file gets under the user's umask (``mkstemp`` makes 0600), then moved into place,
so a failed export never leaves half a file.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QLinearGradient, QPainter, QPen

from .labels import place_labels
from .overlay import lookup_table

LONG_SIDE = 768          # the image's long side in the figure (px or SVG units)
FONT_PX = 14
BAR_W, BAR_MARGIN = 18, 84
CAPTION_H = 40


@dataclass
class Figure:
    image: QImage
    overlay: Optional[QImage] = None
    boxes: list = field(default_factory=list)     # (box x0 y0 x1 y1 in image px, colour, dashed, text)
    colour_bar: Optional[tuple[str, float, float]] = None      # colour map, lo, hi
    caption: str = ""
    show_labels: bool = True


@dataclass
class Layout:
    width: int
    height: int
    scale: float
    image: QRectF
    bar: Optional[QRectF]
    caption: QRectF
    labels: list       # QRectF per box, figure units


def _font() -> QFont:
    f = QFont()
    f.setPixelSize(FONT_PX)
    f.setBold(True)
    return f


def layout(fig: Figure) -> Layout:
    from PySide6.QtGui import QFontMetricsF
    iw, ih = fig.image.width(), fig.image.height()
    s = LONG_SIDE / max(iw, ih, 1)
    img = QRectF(0, 0, iw * s, ih * s)
    right = BAR_MARGIN if fig.colour_bar else 0
    bar = QRectF(img.right() + 12, 8, BAR_W, img.height() - 16) if fig.colour_bar else None
    cap = QRectF(4, img.bottom() + 4, img.width() + right - 8, CAPTION_H - 8)
    fm = QFontMetricsF(_font())
    boxes = [tuple(v * s for v in b[0]) for b in fig.boxes]
    sizes = [(fm.horizontalAdvance(b[3]) + 8, fm.height() + 2) for b in fig.boxes]
    rects = place_labels(boxes, sizes, [b[2] for b in fig.boxes], (0, 0, img.width(), img.height()))
    return Layout(int(img.width() + right), int(img.height() + CAPTION_H), s, img, bar, cap,
                  [QRectF(*r) for r in rects])


def paint_figure(p: QPainter, fig: Figure, lay: Layout) -> None:
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    p.fillRect(QRectF(0, 0, lay.width, lay.height), QColor("white"))
    p.drawImage(lay.image, fig.image)
    if fig.overlay is not None:
        p.drawImage(lay.image, fig.overlay)
    s = lay.scale
    for (box, colour, dashed, _text) in fig.boxes:
        pen = QPen(QColor(colour), 2.0 if dashed else 2.5)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        x0, y0, x1, y1 = (v * s for v in box)
        p.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
    if fig.show_labels:
        p.setFont(_font())
        for (_box, colour, _dashed, text), r in zip(fig.boxes, lay.labels):
            p.fillRect(r, QColor(0, 0, 0, 170))
            p.setPen(QColor(colour))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, text)
    if fig.colour_bar and lay.bar is not None:
        name, lo, hi = fig.colour_bar
        grad = QLinearGradient(lay.bar.bottomLeft(), lay.bar.topLeft())
        lut = lookup_table(name)
        for k in range(0, 256, 8):
            grad.setColorAt(k / 255, QColor(*(int(c) for c in lut[k])))
        grad.setColorAt(1.0, QColor(*(int(c) for c in lut[255])))
        p.fillRect(lay.bar, grad)
        p.setPen(QColor("black"))
        p.drawRect(lay.bar)
        f = QFont()
        f.setPixelSize(12)
        p.setFont(f)
        x = lay.bar.right() + 4
        p.drawText(QRectF(x, lay.bar.top() - 8, 60, 16), Qt.AlignmentFlag.AlignVCenter, f"{hi:.3g}")
        p.drawText(QRectF(x, lay.bar.bottom() - 8, 60, 16), Qt.AlignmentFlag.AlignVCenter, f"{lo:.3g}")
    f = QFont()
    f.setPixelSize(12)
    p.setFont(f)
    p.setPen(QColor("black"))
    p.drawText(lay.caption, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextWordWrap,
               fig.caption)


def _tmp_for(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)         # what open() would have given a new file
    return tmp


def _write(path, paint_to) -> Path:
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        paint_to(tmp)
        if os.path.getsize(tmp) == 0:
            raise OSError(f"cannot write {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export_png(fig: Figure, path: str | os.PathLike) -> Path:
    lay = layout(fig)

    def paint(tmp):
        img = QImage(lay.width, lay.height, QImage.Format.Format_ARGB32)
        p = QPainter(img)
        paint_figure(p, fig, lay)
        p.end()
        if not img.save(tmp, "PNG"):
            raise OSError(f"cannot write {path}")
    return _write(path, paint)


def export_svg(fig: Figure, path: str | os.PathLike, title: str = "SGMA part audit") -> Path:
    from PySide6.QtSvg import QSvgGenerator
    lay = layout(fig)

    def paint(tmp):
        gen = QSvgGenerator()
        gen.setFileName(tmp)
        gen.setSize(QSize(lay.width, lay.height))
        gen.setViewBox(QRectF(0, 0, lay.width, lay.height))
        gen.setTitle(title)
        gen.setDescription(fig.caption)
        p = QPainter(gen)
        paint_figure(p, fig, lay)
        p.end()
    return _write(path, paint)
