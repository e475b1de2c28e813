"""The thumbnail grid's list model: tens of thousands of images, only the visible ones loaded.

After an evaluation each tile carries badges (``BADGE_ROLE``, painted by ``TileDelegate``): per
part the IoU of the map assigned to it, green when found (IoU > 0.5, the paper's Table 1 rule),
red when missed, and a corner mark for a correct or wrong prediction.

The view asks ``data(DecorationRole)`` only for the items it paints (uniform item sizes, batched
layout). A miss queues the image in a loader thread (newest request first, the queue bounded so a
fast scroll forgets what went off screen) and answers a placeholder; the loaded QImage comes
back through a signal, becomes a QPixmap in an LRU cache bounded in bytes, and the rows repaint.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image
from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QRectF, QSize, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QStyledItemDelegate

MAX_QUEUE = 256
CACHE_BYTES = 96 * 1024 * 1024
INDEX_ROLE = Qt.ItemDataRole.UserRole + 1
BADGE_ROLE = Qt.ItemDataRole.UserRole + 2      # Badges of the tile, None before an evaluation
IOU_FOUND = 0.5                                # a part is found when IoU > 0.5 (Table 1)
FOUND_COLOUR, MISSED_COLOUR = "#1f9d55", "#d64545"


@dataclass(frozen=True)
class Badges:
    """``parts``: (part, IoU, found) for the parts this image has a box of; ``correct``: True /
    False for the evaluation's prediction, None when it was not evaluated."""
    parts: tuple
    correct: Optional[bool]

    def text(self) -> str:
        words = [f"{p} IoU {v:.2f} ({'found' if ok else 'missed'})" for p, v, ok in self.parts]
        if self.correct is not None:
            words.append("prediction correct" if self.correct else "prediction wrong")
        return ", ".join(words)


def load_thumbnail(dataset, index: int, size: int) -> QImage:
    """A thumbnail no larger than size x size as an RGB888 QImage (safe off the GUI thread)."""
    item = dataset.items[index]
    if item.path is not None and item.render is None:
        try:
            from sgma.engine.data.base import open_image, to_rgb
            with open_image(item.path) as im:
                im.draft("RGB", (size * 2, size * 2))     # JPEG: decode at a reduced scale
                im.load()
                img = to_rgb(im)
        except Exception:  # noqa: BLE001 - a broken file gets a grey tile; the audit shows the error
            img = Image.new("RGB", (size, size), (90, 90, 90))
    else:
        img = dataset.load_image(index)
    img = img.copy()
    img.thumbnail((size, size), Image.BILINEAR)
    img = img.convert("RGB")
    data = img.tobytes()
    return QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888).copy()


class ThumbnailLoader(QThread):
    loaded = Signal(int, int, QImage)      # dataset index, size, image

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.setObjectName("sgma-thumbnails")
        self._queue: deque[tuple[int, int]] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self.dataset = None
        self.n_loaded = 0

    def request(self, index: int, size: int) -> Optional[tuple[int, int]]:
        """Queue one image; returns a request that fell off the bounded queue, if any."""
        dropped = None
        with self._cond:
            self._queue.append((index, size))
            if len(self._queue) > MAX_QUEUE:
                dropped = self._queue.popleft()
            self._cond.notify()
        return dropped

    def clear(self) -> list[tuple[int, int]]:
        with self._cond:
            items = list(self._queue)
            self._queue.clear()
        return items

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.wait(5000)

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                index, size = self._queue.pop()           # newest first: what is on screen now
                ds = self.dataset
            if ds is None or index >= len(ds):
                continue
            try:
                img = load_thumbnail(ds, index, size)
            except Exception:  # noqa: BLE001
                img = QImage(size, size, QImage.Format.Format_RGB888)
                img.fill(QColor(90, 90, 90))
            self.n_loaded += 1
            self.loaded.emit(index, size, img)


class ThumbnailModel(QAbstractListModel):
    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.dataset = None
        self.rows = np.zeros(0, dtype=np.int64)           # dataset index of each row
        self._row_of = np.zeros(0, dtype=np.int64)        # row of each dataset index, -1 if hidden
        self.size = 96
        self.cache: OrderedDict[tuple[int, int], QPixmap] = OrderedDict()
        self._cache_bytes = 0
        self._pending: set[tuple[int, int]] = set()
        self._dirty: set[int] = set()
        self.n_requests = 0
        self.labels: Optional[list[str]] = None            # tooltips
        self.ious: dict[str, np.ndarray] = {}              # part -> IoU per dataset image (NaN: none)
        self.correct: Optional[np.ndarray] = None          # per dataset image: 1, 0, -1 not evaluated
        self.loader = ThumbnailLoader(self)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.start()
        self._flush = QTimer(self)
        self._flush.setSingleShot(True)
        self._flush.setInterval(30)
        self._flush.timeout.connect(self._emit_dirty)
        self._placeholder = self._make_placeholder()

    # ---------------------------------------------------------------- configuration
    def set_dataset(self, dataset) -> None:
        self.beginResetModel()
        self.loader.clear()
        self.loader.dataset = dataset
        self.dataset = dataset
        self.cache.clear()
        self._cache_bytes = 0
        self._pending.clear()
        n = len(dataset) if dataset is not None else 0
        self.rows = np.arange(n, dtype=np.int64)
        self._row_of = np.arange(n, dtype=np.int64)
        self.ious, self.correct = {}, None
        self.endResetModel()

    def set_badges(self, ious: dict[str, np.ndarray], correct: Optional[np.ndarray]) -> None:
        """The evaluation's per-image part IoUs and correctness (``AppState.image_ious`` and
        ``correctness``); empty / None clear the badges."""
        self.ious, self.correct = dict(ious or {}), correct
        if len(self.rows):
            self.dataChanged.emit(self.index(0), self.index(len(self.rows) - 1),
                                  [BADGE_ROLE, Qt.ItemDataRole.ToolTipRole])

    def badges(self, i: int) -> Optional[Badges]:
        parts = tuple((p, float(v[i]), bool(v[i] > IOU_FOUND)) for p, v in self.ious.items() if not np.isnan(v[i]))
        c = None if self.correct is None or self.correct[i] < 0 else bool(self.correct[i])
        return Badges(parts, c) if parts or c is not None else None

    def set_rows(self, rows: np.ndarray) -> None:
        self.beginResetModel()
        self.rows = np.asarray(rows, dtype=np.int64)
        self._row_of = np.full(len(self.dataset) if self.dataset is not None else 0, -1, dtype=np.int64)
        self._row_of[self.rows] = np.arange(len(self.rows))
        for key in self.loader.clear():
            self._pending.discard(key)
        self.endResetModel()

    def set_size(self, size: int) -> None:
        if size == self.size:
            return
        self.size = int(size)
        for key in self.loader.clear():
            self._pending.discard(key)
        self._placeholder = self._make_placeholder()
        self.layoutChanged.emit()

    def row_of(self, index: int) -> int:
        return int(self._row_of[index]) if 0 <= index < len(self._row_of) else -1

    def shutdown(self) -> None:
        self.loader.stop()

    # ---------------------------------------------------------------- Qt model
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        i = int(self.rows[index.row()])
        if role == Qt.ItemDataRole.DecorationRole:
            key = (i, self.size)
            pm = self.cache.get(key)
            if pm is not None:
                self.cache.move_to_end(key)
                return pm
            if key not in self._pending:
                self._pending.add(key)
                self.n_requests += 1
                dropped = self.loader.request(i, self.size)
                if dropped is not None:
                    self._pending.discard(dropped)
            return self._placeholder
        if role == INDEX_ROLE:
            return i
        if role == BADGE_ROLE:
            return self.badges(i)
        if role == Qt.ItemDataRole.ToolTipRole and self.dataset is not None:
            it = self.dataset.items[i]
            b = self.badges(i)
            return f"#{i} {it.image_id}\n{self.dataset.class_names[it.label]}" + (f"\n{b.text()}" if b else "")
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(self.size + 8, self.size + 8)
        return None

    # ---------------------------------------------------------------- loading
    def _on_loaded(self, index: int, size: int, img: QImage) -> None:
        key = (index, size)
        self._pending.discard(key)
        if self.dataset is None or index >= len(self.dataset):
            return
        pm = QPixmap.fromImage(img)
        self.cache[key] = pm
        self._cache_bytes += pm.width() * pm.height() * 4
        while self._cache_bytes > CACHE_BYTES and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self._cache_bytes -= old.width() * old.height() * 4
        if size == self.size:
            row = self.row_of(index)
            if row >= 0:
                self._dirty.add(row)
                if not self._flush.isActive():
                    self._flush.start()

    def _emit_dirty(self) -> None:
        rows, self._dirty = sorted(self._dirty), set()
        if not rows:
            return
        lo, hi = rows[0], rows[-1]
        if hi - lo < 400:
            self.dataChanged.emit(self.index(lo), self.index(hi), [Qt.ItemDataRole.DecorationRole])
        else:
            for r in rows:
                self.dataChanged.emit(self.index(r), self.index(r), [Qt.ItemDataRole.DecorationRole])

    def _make_placeholder(self) -> QPixmap:
        pm = QPixmap(self.size, self.size)
        pm.fill(QColor(70, 70, 74))
        return pm


class TileDelegate(QStyledItemDelegate):
    """Paints a tile as usual, then its badges over the thumbnail: one plate per part at the
    bottom (the part's initial and its IoU; green found, red missed) and a corner mark
    (a green tick for a correct prediction, a red cross for a wrong one)."""

    def paint(self, painter: QPainter, option, index) -> None:
        super().paint(painter, option, index)
        b = index.data(BADGE_ROLE)
        if not b:
            return
        r = QRectF(option.rect).adjusted(4, 4, -4, -4)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont()
        font.setPixelSize(max(8, min(12, int(r.height() / 7))))
        font.setBold(True)
        painter.setFont(font)
        h = font.pixelSize() + 3
        w = r.width() / max(len(b.parts), 1)
        for k, (part, v, ok) in enumerate(b.parts):
            plate = QRectF(r.left() + k * w, r.bottom() - h, w - 1, h)
            painter.fillRect(plate, QColor(FOUND_COLOUR if ok else MISSED_COLOUR))
            painter.setPen(QColor("white"))
            painter.drawText(plate, Qt.AlignmentFlag.AlignCenter, f"{part[:1].upper()} {v:.2f}")
        if b.correct is not None:
            mark = QRectF(r.right() - h, r.top(), h, h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(FOUND_COLOUR if b.correct else MISSED_COLOUR))
            painter.drawEllipse(mark)
            painter.setPen(QColor("white"))
            painter.drawText(mark, Qt.AlignmentFlag.AlignCenter, "\u2713" if b.correct else "\u2717")
        painter.restore()
