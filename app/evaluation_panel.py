"""Evaluation of the loaded model on the open dataset, in a worker thread: ZSL and GZSL per
inference mode, part precision against the random baseline, per-class accuracy bars, the
confusion matrix (a click filters the grid to that cell's images), and export to CSV."""
from __future__ import annotations

import csv
import io
import math
import time
from typing import NamedTuple, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QScrollArea, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from sgma.engine.config import INFERENCE_MODES as MODES

from . import messages, ranking
from .confusion import ConfusionView, short
from .state import AppState
from .workers import progress_text



CHART_MIN_WIDTH = 300     # px the bar chart and confusion matrix keep when the tables take their width


def pct(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.1f}"


class PartMeasure(NamedTuple):
    key: str          # in summary["parts"]: a dict by part, or "" for the precision itself
    metric: str       # the CSV export's name
    header: str       # the part table's column
    percent: bool     # shown as a percentage (else three decimals)
    meaning: str      # the tooltip


# the per-part measures of an evaluation (engine/evaluate.py _parts), as the table, its tooltip and
# the CSV show them
PART_MEASURES = (
    PartMeasure("", "precision", "Found", True, "% of images whose square has IoU > 0.5 with the ground truth"),
    PartMeasure("random", "random_precision", "Random", True, "the same for random squares of the same side"),
    PartMeasure("pointing", "pointing", "Pointing", True, "% of images whose map peaks inside the box"),
    PartMeasure("ceiling", "ceiling", "Ceiling", True,
                "% that a square of the model's side, centred on the box, would find"),
    PartMeasure("mean_iou", "mean_iou", "IoU", False, "mean IoU"),
)
PART_MEASURES_HELP = "; ".join(f"{m.header}: {m.meaning}" for m in PART_MEASURES)


def part_measure(parts: dict, key: str, part: str):
    """One measure of one part, None where the evaluation has none (older evaluation files lack
    pointing and ceiling; a part without a map has no pointing)."""
    return parts.get(part) if key == "" else (parts.get(key) or {}).get(part)


def part_cells(parts: dict, part: str) -> list[str]:
    """The part table's cells of ``PART_MEASURES`` for one part; "—" where a measure is missing."""
    cells = []
    for m in PART_MEASURES:
        v = part_measure(parts, m.key, part)
        cells.append(pct(v) if m.percent else ("—" if v is None else f"{v:.3f}"))
    return cells


def summary_rows(summary: dict) -> list[list[str]]:
    """The evaluation as long-format rows: section, key, metric, value."""
    rows = []
    for mode, res in summary.get("modes", {}).items():
        rows.append(["zsl", mode, "mca", res["zsl"]["mca"]])
        for k in ("unseen", "seen", "h"):
            rows.append(["gzsl", mode, k, res["gzsl"][k]])
        if "gzsl_calibrated" in res:
            for k in ("unseen", "seen", "h", "gamma"):
                rows.append(["gzsl_calibrated", mode, k, res["gzsl_calibrated"][k]])
    parts = summary.get("parts") or {}
    for part in parts.get("n_images", {}):
        for m in PART_MEASURES:
            v = part_measure(parts, m.key, part)
            if v is not None:
                rows.append(["parts", part, m.metric, v])
    for name, acc in summary.get("per_class", {}).items():
        rows.append(["per_class", name, "accuracy", acc])
    return rows


def summary_csv(summary: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", "metric", "value"])
    for r in summary_rows(summary):
        w.writerow(r[:3] + [f"{float(r[3]):.6g}"])
    return buf.getvalue()


def run_evaluation(model, state, dataset, features=None, checkpoint_path=None, ctx=None):
    """The engine's evaluator (runs in a worker thread); ``ctx`` gets the images extracted so
    far after each batch, and Cancel stops it between batches. It reads the feature cache of
    this model and dataset when one exists (``features``, the ranking's, or one stored in the
    user's cache folder for ``checkpoint_path``) instead of a second pass over the images.
    Choice (docs/gui.md): an evaluation without a cache does not build one over the whole
    dataset, which would cost it a pass over every training image it does not need."""
    from sgma.engine.evaluate import evaluate
    from sgma.engine.features import FeatureCache

    def progress(done, total):
        ctx.check()
        ctx.progress(done, total)
    if features is None and checkpoint_path:
        features = FeatureCache.stored(checkpoint_path, dataset, keep_maps=True)
    return evaluate(model, state, dataset, progress=progress if ctx is not None else None, features=features)


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    _fit_height(t)
    return t


def _fit_height(t: QTableWidget, min_rows: int = 2) -> None:
    """As tall as its rows, no more (the tables hold a handful of rows)."""
    rows = max(t.rowCount(), min_rows)
    h = t.horizontalHeader().sizeHint().height() + rows * t.verticalHeader().defaultSectionSize()
    t.setFixedHeight(h + 2 * t.frameWidth() + 2)


def _fill(t: QTableWidget, rows: list[list[str]]) -> None:
    t.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            t.setItem(r, c, item)
    _fit_height(t)
    _fit_width(t)


def _fit_width(t: QTableWidget) -> None:
    """At least as wide as its columns' contents, so that no column is cut or scrolled away."""
    t.resizeColumnsToContents()
    header = t.horizontalHeader()
    width = sum(max(header.sectionSizeHint(c), t.sizeHintForColumn(c)) for c in range(t.columnCount()))
    t.setMinimumWidth(width + 2 * t.frameWidth())


class EvaluationPanel(QWidget):
    def __init__(self, state: AppState, tasks, settings, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state, self.tasks, self.settings = state, tasks, settings
        self.task = None
        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(self.run)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._export_dialog)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setVisible(False)
        self.busy.setMaximumWidth(220)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel()
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.run_button)
        top.addWidget(self.export_button)
        top.addWidget(self.busy)
        top.addWidget(self.cancel_button)
        top.addWidget(self.status, 1)

        self.zsl_table = _table(["Inference", "ZSL", "A_U", "A_S", "H"])
        self.parts_table = _table(["Part", "Map"] + [m.header for m in PART_MEASURES] + ["Images"])
        self.parts_table.setToolTip(PART_MEASURES_HELP)
        self.bars = pg.PlotWidget(title="Per-class ZSL accuracy")
        self.bars.setXRange(0, 1)
        self.bars.showGrid(x=True, alpha=0.2)
        self.bar_item: Optional[pg.BarGraphItem] = None
        self.confusion = ConfusionView()
        self.confusion.cellChosen.connect(self.show_cell)

        tables = QWidget()
        tl = QVBoxLayout(tables)
        tl.setContentsMargins(0, 0, 0, 0)
        g1 = QGroupBox("ZSL and GZSL accuracy (%)")
        g1.setToolTip("ZSL: mean class accuracy among unseen classes; GZSL: among all classes, "
                      "A_U on unseen and A_S on seen test images, H their harmonic mean")
        QVBoxLayout(g1).addWidget(self.zsl_table)
        g2 = QGroupBox("Part localisation")
        g2.setToolTip(PART_MEASURES_HELP)
        QVBoxLayout(g2).addWidget(self.parts_table)
        tl.addWidget(g1)
        tl.addWidget(g2)
        tl.addStretch(1)
        g3 = QGroupBox("ZSL confusion matrix")
        g3.setToolTip("rows: true class, columns: predicted class; click a cell to show its images in the grid")
        QVBoxLayout(g3).addWidget(self.confusion)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.bars)
        right.addWidget(g3)
        # the tables keep their full width (no column cut) but scroll in a narrow window, so the
        # tab never grows wider than the window and pushes the chart out of view
        self.tables_scroll = QScrollArea()
        self.tables_scroll.setWidget(tables)
        self.tables_scroll.setWidgetResizable(True)
        self.tables_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.tables_scroll.setMinimumWidth(200)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.tables_scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 0)           # a wider window widens the chart, not the tables
        split.setStretchFactor(1, 1)
        split.setSizes([460, 540])
        self.split = split
        self._room_pending = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(split, 1)

        state.modelChanged.connect(self._on_inputs_changed)
        state.datasetChanged.connect(self._on_inputs_changed)
        state.evaluationChanged.connect(self.show_evaluation)
        self._on_inputs_changed()

    def _update_enabled(self) -> None:
        ok = self.state.predictor is not None and self.state.dataset is not None
        self.run_button.setEnabled(ok and self.task is None)
        self.export_button.setEnabled(self.state.evaluation is not None)

    def _on_inputs_changed(self) -> None:
        self._update_enabled()
        if self.task is not None:
            return
        if self.state.predictor is None or self.state.dataset is None:
            self.status.setText("load a model and a dataset to evaluate")
        elif self.state.evaluation is None:
            self.status.setText("not evaluated yet")

    # ---------------------------------------------------------------- running
    def run(self) -> None:
        st = self.state
        if st.predictor is None or st.dataset is None or self.task is not None:
            return
        predictor, dataset = st.predictor, st.dataset
        self.status.setText(f"evaluating on {dataset.name}…")
        self.busy.setRange(0, 0)
        self.busy.setVisible(True)
        self.cancel_button.setVisible(True)
        started = time.monotonic()

        def progress(n, total):
            self.busy.setRange(0, max(total, 1))
            self.busy.setValue(n)
            self.status.setText(f"evaluating on {dataset.name}: {progress_text(started, n, total)}")

        def done(result):
            self.task = None
            self.busy.setVisible(False)
            self.cancel_button.setVisible(False)
            if predictor is st.predictor and dataset is st.dataset:
                st.set_evaluation(result)
            else:
                self.status.setText("the model or the dataset changed during the evaluation: its result "
                                    "was discarded; evaluate again")
            self._update_enabled()

        def failed(msg, tb):
            self.task = None
            self.busy.setVisible(False)
            self.cancel_button.setVisible(False)
            self.status.setText("evaluation cancelled" if msg == "cancelled" else f"evaluation failed: {msg}")
            self._update_enabled()
            if msg != "cancelled":
                messages.error(self, "Evaluation failed", msg, tb)

        features = st.features if ranking.fits(st.features, predictor.model, dataset) else None
        self.task = self.tasks.start(run_evaluation, predictor.model, predictor.state, dataset, features,
                                     st.checkpoint_path, on_done=done, on_error=failed, on_progress=progress)
        self._update_enabled()

    def cancel(self) -> None:
        """Stop the running evaluation after its current batch; nothing is kept."""
        if self.task is not None:
            self.task.cancel()
            self.status.setText("cancelling the evaluation…")

    # ---------------------------------------------------------------- showing
    def show_evaluation(self) -> None:
        ev = self.state.evaluation
        self._update_enabled()
        if ev is None:
            self._on_inputs_changed()
            _fill(self.zsl_table, [])
            _fill(self.parts_table, [])
            self.confusion.model_.set_matrix([], [])
            if self.bar_item is not None:
                self.bars.removeItem(self.bar_item)
                self.bar_item = None
            return
        s = ev.summary
        default = s.get("inference", "combined")
        rows = []
        for mode in MODES:
            res = s["modes"].get(mode)
            if res is None:
                continue
            g = res["gzsl"]
            rows.append([mode + (" (default)" if mode == default else ""), pct(res["zsl"]["mca"]),
                         pct(g["unseen"]), pct(g["seen"]), pct(g["h"])])
            c = res.get("gzsl_calibrated")
            if c is not None:      # seen scores lowered by gamma: GZSL only, ZSL is unchanged
                how = "chosen on validation" if c.get("gamma_from") == "validation" else "given"
                rows.append([f"{mode}, calibrated (γ {c['gamma']:.3g}, {how})", "—",
                             pct(c["unseen"]), pct(c["seen"]), pct(c["h"])])
        _fill(self.zsl_table, rows)
        parts = s.get("parts") or {}
        prow = []
        for part in parts.get("n_images", {}):
            prow.append([part, parts.get("assignment", {}).get(part, "—"), *part_cells(parts, part),
                         str(parts["n_images"][part])])
        _fill(self.parts_table, prow)
        self._show_bars(s.get("per_class", {}))
        conf = s.get("confusion", {})
        self.confusion.model_.set_matrix(conf.get("classes", []), conf.get("matrix", []))
        self.status.setText(f"{s.get('dataset', '')} split {s.get('split', '')}: {s.get('n_images', 0)} test images; "
                            f"ZSL {pct(s['zsl']['mca'])} %, GZSL H {pct(s['gzsl']['h'])} % ({default})"
                            + (f", calibrated {pct(s['gzsl_calibrated']['h'])} %" if "gzsl_calibrated" in s else ""))
        self._give_tables_room()

    def _give_tables_room(self) -> None:
        """The tables' pane as wide as the tables where the chart keeps ``CHART_MIN_WIDTH``; done
        when the tab is next shown if it is hidden now (a hidden splitter has no sizes)."""
        total = sum(self.split.sizes())
        self._room_pending = not self.isVisible() or total <= 0
        if self._room_pending:
            return
        tables = self.tables_scroll.widget()
        for box in tables.findChildren(QGroupBox):      # the tables' new minimum widths, not the cached ones
            box.layout().activate()
        tables.layout().activate()
        need = (tables.minimumSizeHint().width()
                + self.tables_scroll.verticalScrollBar().sizeHint().width())
        left = max(self.tables_scroll.minimumWidth(), min(need, total - self._chart_min_width()))
        self.split.setSizes([left, total - left])

    def _chart_min_width(self) -> int:
        """``CHART_MIN_WIDTH``, or more where the chart's axis of class names needs it (``_show_bars``)."""
        return max(CHART_MIN_WIDTH, self.bars.minimumWidth())

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._room_pending:
            self._give_tables_room()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        sizes = self.split.sizes()
        if sum(sizes) > 0 and sizes[1] < self._chart_min_width():   # narrowed: the tables scroll, the chart stays
            self._give_tables_room()

    def _show_bars(self, per_class: dict) -> None:
        if self.bar_item is not None:
            self.bars.removeItem(self.bar_item)
        # horizontal bars, one row per class, labelled with the class name (readable for 50 classes)
        names = list(per_class)
        y = np.arange(len(names))
        self.bar_item = pg.BarGraphItem(x0=0, y=y, height=0.7, width=[per_class[n] for n in names], brush="#4363d8")
        self.bars.addItem(self.bar_item)
        labels = [short(n, 28) for n in names]
        left = self.bars.getAxis("left")
        left.setTicks([list(zip(y, labels))])
        # the axis as wide as its longest label, set now: pyqtgraph widens it only when it paints,
        # after the layout, and the plot then overflows its widget at the right
        font = left.style.get("tickFont") or self.bars.font()
        text = max((QFontMetrics(font).horizontalAdvance(t) for t in labels), default=0)
        left.setWidth(text + left.style["tickTextOffset"][0] + abs(left.style["tickLength"]) + 4)
        need = self.bars.getPlotItem().effectiveSizeHint(Qt.SizeHint.MinimumSize).width()
        self.bars.setMinimumWidth(int(math.ceil(need)) + 2 * self.bars.frameWidth())
        self.bars.getAxis("bottom").setTicks(None)
        self.bars.setXRange(0, 1)
        self.bars.setYRange(-0.6, max(len(names) - 0.4, 0.6))
        self.bars.getViewBox().invertY(True)            # the first class at the top
        self.bars.setToolTip("ZSL accuracy per unseen class")

    def show_cell(self, row: int, col: int) -> None:
        if self.state.evaluation is None:
            return
        conf = self.state.evaluation.summary["confusion"]
        idx = self.state.confusion_indices(row, col)
        self.state.set_selection(idx, f"true {short(conf['classes'][row], 30)} → predicted "
                                      f"{short(conf['classes'][col], 30)} ({len(idx)})")

    # ---------------------------------------------------------------- export
    def export_csv(self, path: str) -> str:
        from sgma.engine.io import atomic_write_bytes
        atomic_write_bytes(path, summary_csv(self.state.evaluation.summary).encode())
        return path

    def _export_dialog(self) -> None:
        if self.state.evaluation is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics", "sgma_metrics.csv", "CSV (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except OSError as e:
                messages.error(self, "Export failed", f"cannot write {path}: {e}")
                return
            self.state.status.emit(f"metrics written to {path}")
