"""Export of the part-audit view (a QGraphicsScene) to PNG and SVG.

PNG is rendered at ``scale`` times the image size. SVG goes through QSvgGenerator (PySide6.QtSvg,
part of pyside6-essentials): the image and the map overlay are embedded as base64 PNG <image>
elements, the boxes and labels stay vector graphics. Both are written to a temporary file and
moved into place, so a failed export never leaves half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsScene


def _tmp_for(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return tmp


def export_png(scene: QGraphicsScene, rect: QRectF, path: str | os.PathLike, scale: float = 2.0) -> Path:
    path = Path(path)
    w, h = max(int(rect.width() * scale), 1), max(int(rect.height() * scale), 1)
    img = QImage(w, h, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.white)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    scene.render(p, QRectF(0, 0, w, h), rect)
    p.end()
    tmp = _tmp_for(path)
    try:
        if not img.save(tmp, "PNG"):
            raise OSError(f"cannot write {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export_svg(scene: QGraphicsScene, rect: QRectF, path: str | os.PathLike, title: str = "SGMA part audit") -> Path:
    from PySide6.QtSvg import QSvgGenerator
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        gen = QSvgGenerator()
        gen.setFileName(tmp)
        gen.setSize(QSize(int(rect.width()), int(rect.height())))
        gen.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
        gen.setTitle(title)
        p = QPainter(gen)
        scene.render(p, QRectF(0, 0, rect.width(), rect.height()), rect)
        p.end()
        if os.path.getsize(tmp) == 0:
            raise OSError(f"cannot write {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
