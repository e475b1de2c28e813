"""Live training curves: one line per loss term against the global step, and the validation
accuracy per epoch, with exponential-moving-average smoothing. Points are stored as they arrive
and drawn at most ``fps`` times a second, so a fast stream of steps never floods the GUI. The
plots have no grid: pyqtgraph's grid costs ~20 ms a paint, long enough to stall the window while
the training thread competes for the GIL. Each plot is redrawn only when its own data changed (the
accuracy plot once an epoch), and the step axis grows in steps of a nice number, so its ticks
are not laid out again at every redraw (the loss axis likewise moves only when the data leave
it): under a busy training thread a full repaint of both plots stretched from 14 ms to over 50 ms."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from scipy.signal import lfilter     # imported here: a first import during training would stall the GUI
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

# the loss terms of the four stages (events.Step.losses), drawn from the start in fixed colours
TERMS = ("total", "cls", "cct", "ma", "mse")
COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average with smoothing ``alpha`` in [0, 1) (0 = raw), bias-corrected
    like TensorBoard's so the start of the curve is not pulled towards 0."""
    v = np.asarray(values, dtype=np.float64)
    if alpha <= 0 or len(v) == 0:
        return v
    acc = lfilter([1 - alpha], [1, -alpha], v)
    weight = 1 - alpha ** np.arange(1, len(v) + 1)
    return acc / weight


class Curves(QWidget):
    def __init__(self, settings, parent: Optional[QWidget] = None, fps: int = 5):
        super().__init__(parent)
        self.settings = settings
        self.loss_plot = pg.PlotWidget(title="Losses")
        self.loss_plot.setDownsampling(auto=True, mode="peak")   # long runs: draw what the pixels show
        self.loss_plot.setClipToView(True)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.addLegend(offset=(-10, 10))
        self.acc_plot = pg.PlotWidget(title="Validation accuracy")
        self.acc_plot.setLabel("bottom", "epoch")
        self.acc_plot.setToolTip("ZSL mean class accuracy on the validation classes, after each epoch")
        self.acc_plot.setYRange(0, 1)
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(settings.get("training/smoothing", 60))
        self.smoothing_label = QLabel()
        self.smoothing.valueChanged.connect(self._on_smoothing)
        row = QHBoxLayout()
        row.addWidget(QLabel("Smoothing"))
        row.addWidget(self.smoothing, 1)
        row.addWidget(self.smoothing_label)
        plots = QVBoxLayout()                 # stacked: the pane beside the form is tall and narrow
        plots.addWidget(self.loss_plot, 3)
        plots.addWidget(self.acc_plot, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addLayout(plots, 1)
        self.steps: dict[str, list[tuple[int, float]]] = {}
        self.accuracy: list[tuple[int, float]] = []
        self.lines: dict[str, pg.PlotDataItem] = {}
        self.acc_line = self.acc_plot.plot([], [], pen=pg.mkPen("#4363d8", width=2), symbol="o", symbolSize=6)
        for k in TERMS:
            self._line(k)
        # draw a point once now: the first symbol drawn builds pyqtgraph's symbol atlas (~15 ms),
        # which would otherwise happen at the first epoch's end, in the middle of training
        self.acc_line.setData([0.0], [0.0])
        self.acc_plot.grab()
        self.acc_line.setData([], [])
        self.acc_plot.setXRange(0, 10, padding=0.02)
        self._dirty = False          # the loss lines changed
        self._acc_dirty = False      # the accuracy line changed
        self._x_max = 0.0
        self._y_range: Optional[tuple[float, float]] = None
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / fps))
        self._timer.timeout.connect(self.redraw)
        self._timer.start()
        self._on_smoothing(self.smoothing.value())

    def clear(self) -> None:
        self.steps.clear()
        self.accuracy.clear()
        for k in list(self.lines):
            if k not in TERMS:
                self.loss_plot.removeItem(self.lines.pop(k))
        for line in self.lines.values():
            line.setData([], [])
        self._dirty = self._acc_dirty = True
        self._x_max = 0.0
        self._y_range = None
        self.redraw()

    def _line(self, k: str) -> pg.PlotDataItem:
        if k not in self.lines:
            colour = COLOURS[len(self.lines) % len(COLOURS)]
            self.lines[k] = self.loss_plot.plot([], [], pen=pg.mkPen(colour, width=1.5), name=k)
        return self.lines[k]

    def add_step(self, step: int, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            self.steps.setdefault(k, []).append((step, float(v)))
        self._dirty = True

    def drop_steps_from(self, step: int) -> None:
        """Forget the points at ``step`` and after: a resumed run replays them (a run killed
        after its last checkpoint logged steps that the checkpoint does not hold)."""
        for k, pts in self.steps.items():
            while pts and pts[-1][0] >= step:
                pts.pop()
        self._dirty = True

    def add_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """The validation accuracy after epoch number ``epoch`` of the run (counted over its
        stages); a point at or after it from before a resume is replaced."""
        if "val_zsl_mca" in metrics:
            while self.accuracy and self.accuracy[-1][0] >= epoch:
                self.accuracy.pop()
            self.accuracy.append((epoch, float(metrics["val_zsl_mca"])))
            self._acc_dirty = True

    def n_points(self) -> int:
        return sum(len(v) for v in self.steps.values())

    def _on_smoothing(self, value: int) -> None:
        self.smoothing_label.setText(f"{value / 100:.2f}")
        self.settings.set("training/smoothing", value)
        self._dirty = True
        self.redraw()

    def _fit_y(self, lo: float, hi: float) -> None:
        new = _y_range_for(lo, hi, self._y_range)
        if new is not None:
            self._y_range = new
            self.loss_plot.setYRange(*new, padding=0)

    def redraw(self) -> None:
        if self._dirty:
            self._dirty = False
            alpha = self.smoothing.value() / 100
            last, lo, hi = 0.0, np.inf, -np.inf
            for k, pts in self.steps.items():
                if not pts:
                    self._line(k).setData([], [])
                    continue
                a = np.asarray(pts, dtype=np.float64)
                y = ema(a[:, 1], alpha)
                self._line(k).setData(a[:, 0], y)
                last = max(last, float(a[-1, 0]))
                finite = y[np.isfinite(y)]
                if len(finite):
                    lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
            if last > self._x_max or last < self._x_max / 4:
                self._x_max = nice_ceiling(last)
                self.loss_plot.setXRange(0, self._x_max, padding=0.02)
            if np.isfinite(lo):
                self._fit_y(lo, hi)
        if self._acc_dirty:
            self._acc_dirty = False
            if self.accuracy:
                a = np.asarray(self.accuracy, dtype=np.float64)
                self.acc_line.setData(a[:, 0], a[:, 1])
                self.acc_plot.setXRange(0, nice_ceiling(a[-1, 0]), padding=0.02)
            else:
                self.acc_line.setData([], [])


def _y_range_for(lo: float, hi: float, current: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
    """The loss axis's new range, or None to keep ``current``: it changes only when the data
    leave it or fill less than a third of it, and then leaves 20 % headroom on each side."""
    span = max(hi - lo, 1e-6)
    if current is not None:
        c_lo, c_hi = current
        if c_lo <= lo and hi <= c_hi and span >= (c_hi - c_lo) / 3:
            return None
    return lo - 0.2 * span, hi + 0.2 * span


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``x`` (10 at least)."""
    x = max(float(x), 10.0)
    p = 10.0 ** np.floor(np.log10(x))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * p >= x:
            return m * p
    return 10.0 * p
