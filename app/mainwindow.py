"""The main window: the dataset browser on the left, the panels (part audit, training,
evaluation, new classes) in tabs on the right, menus for files and navigation."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu, QSplitter, QTabWidget

from sgma.engine.config import DataConfig
from sgma.engine.data.registry import load_data

from . import messages
from .audit import AuditPanel
from .browser import Browser
from .classes_panel import ClassesPanel
from .evaluation_panel import EvaluationPanel
from .settings import Settings
from .state import AppState
from .training_panel import TrainingPanel
from .workers import Tasks

APP_NAME = "SGMA Part Explorer"
TABS = ("audit", "training", "evaluation", "classes")


def bundled_model(kind: str) -> Optional[Path]:
    """The model the package ships for dataset ``kind`` (engine/bundled.py), if any."""
    from sgma.engine.bundled import bundled_checkpoint
    return bundled_checkpoint(kind)


def demo_checkpoint() -> Optional[Path]:
    """The bundled demo model (synthetic birds), when the package ships one."""
    return bundled_model("synthetic")


def preload_engine() -> None:
    """Import torch, the engine and what an optimiser's first step imports lazily (torch._dynamo,
    sympy: seconds of Python), in a worker thread as the window opens, so that no first import
    happens in the GUI thread or in the middle of a training run."""
    import sgma.engine.evaluate  # noqa: F401
    import sgma.engine.predict  # noqa: F401
    import sgma.engine.trainer  # noqa: F401
    try:
        import sklearn.cluster  # noqa: F401 - the k-means stage
    except ImportError:
        pass
    global _warm
    if not _warm:     # an optimiser's first step imports torch._dynamo (and sympy): do it now
        import torch
        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max")
        (p - 1).pow(2).sum().backward()
        opt.step()
        sched.step(0.0)
        _warm = True


_warm = False


class MainWindow(QMainWindow):
    def __init__(self, settings: Optional[Settings] = None, dataset=None, data_config: Optional[DataConfig] = None,
                 checkpoint: Optional[str] = None, load_demo: bool = True):
        super().__init__()
        import sys
        sys.setswitchinterval(0.0005)   # hand the GIL back to the GUI thread quickly while workers compute
        self.settings = settings or Settings()
        self.state = AppState(self)
        self.tasks = Tasks(self, threads=2)
        self.engine_ready = False
        self.tasks.start(preload_engine, on_done=lambda _r: setattr(self, "engine_ready", True),
                         on_error=lambda _m, _tb: setattr(self, "engine_ready", True))
        self.loading_dataset = False
        self.part_atlas = None               # View > Part atlas, made on first use
        self.compare = None                  # View > Compare models, made on first use
        self._close_after_training = False
        self._closed = False

        self.browser = Browser(self.state, self.settings)
        self.audit = AuditPanel(self.state, self.tasks, self.settings)
        self.training = TrainingPanel(self.state, self.settings)
        self.evaluation = EvaluationPanel(self.state, self.tasks, self.settings)
        self.classes = ClassesPanel(self.state, self.tasks, self.settings)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.audit, "Part audit")
        self.tabs.addTab(self.training, "Training")
        self.tabs.addTab(self.evaluation, "Evaluation")
        self.tabs.addTab(self.classes, "New classes")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.browser)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 5)
        self.splitter.setSizes([380, 1000])
        self.setCentralWidget(self.splitter)
        self._make_menus()
        self.resize(1400, 880)
        self.settings.restore_window(self)
        splitter_state = self.settings.q.value("window/splitter")
        if splitter_state is not None:
            self.splitter.restoreState(splitter_state)
        self.tabs.setCurrentIndex(min(self.settings.get("window/tab", 0), self.tabs.count() - 1))

        self.state.status.connect(lambda m: self.statusBar().showMessage(m, 10000))
        self.state.datasetChanged.connect(self._update_title)
        self.state.modelChanged.connect(self._update_title)
        self.state.currentChanged.connect(lambda _i: self.classes._update_enabled())
        self.training.runFinished.connect(self._on_training_finished)
        self.training.requestDataset.connect(self.open_dataset_dialog)
        self.classes.userClassesChanged.connect(self.audit.refresh_prediction)
        self.classes.showImage.connect(self.browser.select_index)
        self.evaluation.confusion.cellChosen.connect(lambda *_: self.browser.view.setFocus())

        if dataset is not None:
            self.state.set_dataset(dataset, data_config or DataConfig.from_options(dataset.name, dataset.root))
        elif data_config is not None:
            self.open_dataset(data_config)
        else:
            from sgma.engine.data.synthetic import make_synthetic
            self.state.set_dataset(make_synthetic(), DataConfig.from_options("synthetic"))
        kind = dataset.name if dataset is not None else (data_config.kind if data_config else "synthetic")
        ckpt = checkpoint or (bundled_model(kind) if load_demo else None)
        if ckpt is not None:
            self.load_model(str(ckpt))
        else:
            self.state.status.emit("no model loaded: open a checkpoint (File > Open model) or train one")
        self._update_title()

    # ---------------------------------------------------------------- menus
    def _make_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "&Open dataset…", self.open_dataset_dialog, QKeySequence.StandardKey.Open)
        self.recent_datasets_menu = f.addMenu("Recent datasets")
        self._action(f, "Open &model…", self.open_model_dialog, "Ctrl+M")
        self.recent_models_menu = f.addMenu("Recent models")
        f.addSeparator()
        self._action(f, "Export view as PNG…", lambda: self.audit._export_dialog("png"), "Ctrl+E")
        self._action(f, "Export view as SVG…", lambda: self.audit._export_dialog("svg"))
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        v = mb.addMenu("&View")
        self.next_action = self._action(v, "&Next image", lambda: self.browser.step(1), ["Alt+Right", "N"])
        self.prev_action = self._action(v, "&Previous image", lambda: self.browser.step(-1), ["Alt+Left", "P"])
        v.addSeparator()
        for k, name in enumerate(["Part audit", "Training", "Evaluation", "New classes"]):
            self._action(v, name, lambda k=k: self.tabs.setCurrentIndex(k), f"Ctrl+{k + 1}")
        v.addSeparator()
        self.atlas_action = self._action(v, "Part &atlas…", self.show_part_atlas, "Ctrl+Shift+A")
        self.compare_action = self._action(v, "&Compare models…", self.show_compare, "Ctrl+Shift+M")
        h = mb.addMenu("&Help")
        self._action(h, "&Keyboard shortcuts", lambda: messages.info(self, "Keyboard shortcuts", self.shortcuts_text()),
                     "F1")
        self._action(h, "&About", lambda: messages.info(
            self, f"About {APP_NAME}",
            "SGMA Part Explorer: Semantic-Guided Multi-Attention localization for zero-shot learning "
            "(Zhu et al., NeurIPS 2019). Audit the parts the model attends to, train, evaluate and "
            "define new classes by their attributes."))
        f.aboutToShow.connect(self._fill_recent)
        self._fill_recent()

    def show_part_atlas(self):
        """The part atlas dialog (one per window, not modal: the browser follows its clicks)."""
        if self.part_atlas is None:
            from .dialog_part_atlas import PartAtlasDialog
            self.part_atlas = PartAtlasDialog(self.state, self.tasks, self.browser.visible_indices, self)
            self.part_atlas.showImage.connect(self.browser.select_index)
        self.part_atlas.show()
        self.part_atlas.raise_()
        return self.part_atlas

    def show_compare(self):
        """The compare-two-checkpoints dialog (one per window, not modal: it follows the browser)."""
        if self.compare is None:
            from .dialog_compare import CompareDialog
            self.compare = CompareDialog(self.state, self.tasks, self)
        self.compare.show()
        self.compare.raise_()
        return self.compare

    def shortcuts_text(self) -> str:
        """Every key binding: the menus' actions (read from them, so the list cannot drift) and
        the audit view's own keys."""
        lines = []
        for menu_action in self.menuBar().actions():
            for a in menu_action.menu().actions():
                keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts()]
                if keys:
                    lines.append(f"{', '.join(keys)}\t{a.text().replace('&', '')}")
        lines += ["Wheel, + / -\tzoom the audit view", "Drag\tpan the audit view",
                  "Double click, 0\tfit the image in the audit view"]
        return "\n".join(lines)

    def _action(self, menu: QMenu, text: str, slot, shortcut=None) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QKeySequence(k) for k in keys])
        a.triggered.connect(lambda _checked=False: slot())
        menu.addAction(a)
        return a

    def _fill_recent(self) -> None:
        self.recent_datasets_menu.clear()
        for dc in self.settings.recent_datasets():
            self.recent_datasets_menu.addAction(dc.label()).triggered.connect(lambda _c=False, d=dc: self.open_dataset(d))
        self.recent_datasets_menu.setEnabled(not self.recent_datasets_menu.isEmpty())
        self.recent_models_menu.clear()
        for p in self.settings.recent_checkpoints():
            self.recent_models_menu.addAction(p).triggered.connect(lambda _c=False, p=p: self.load_model(p))
        self.recent_models_menu.setEnabled(not self.recent_models_menu.isEmpty())

    def _update_title(self) -> None:
        ds = self.state.dataset
        parts = [APP_NAME + " (SGMA)"]
        if ds is not None:
            parts.append(f"{ds.name} ({len(ds)} images)")
        parts.append(Path(self.state.checkpoint_path).name if self.state.checkpoint_path else "no model")
        self.setWindowTitle(" — ".join(parts))

    # ---------------------------------------------------------------- datasets
    def open_dataset_dialog(self) -> None:
        from .dialog_open_dataset import OpenDatasetDialog
        dlg = OpenDatasetDialog(self, self.state.data_config, self.settings.recent_datasets())
        if dlg.exec():
            try:
                dc = dlg.data_config()
            except ValueError as e:
                messages.error(self, "Invalid option", str(e))
                return
            self.open_dataset(dc)

    def open_dataset(self, dc: DataConfig) -> None:
        """Load a dataset in a worker thread; errors (they name the bad file) go to a dialog."""
        if self.training.is_running():
            messages.error(self, "Training is running", "Stop the training before opening another dataset.")
            return
        self.loading_dataset = True
        self.state.status.emit(f"loading {dc.kind} dataset {dc.root}…")

        def done(ds):
            self.loading_dataset = False
            self.state.set_dataset(ds, dc)
            self.settings.add_recent_dataset(dc)

        def failed(msg, tb):
            self.loading_dataset = False
            self.state.status.emit("the dataset could not be opened")
            messages.error(self, "Cannot open the dataset", msg, tb)

        self.tasks.start(load_data, dc, on_done=done, on_error=failed)

    # ---------------------------------------------------------------- models
    def open_model_dialog(self) -> None:
        start = self.state.checkpoint_path or self.settings.get("models/dir", "")
        path, _ = QFileDialog.getOpenFileName(self, "Open model checkpoint", start, "Checkpoints (*.pt);;All files (*)")
        if path:
            self.settings.set("models/dir", str(Path(path).parent))
            self.load_model(path)

    def load_model(self, path: str) -> None:
        self.state.status.emit(f"loading model {path}…")
        self.loading_model = True

        def done(predictor):
            self.loading_model = False
            self.state.set_model(predictor, path)
            self.settings.add_recent_checkpoint(path)
            note = "" if self.state.model_fits_dataset() else " (trained on other attributes than this dataset's)"
            self.state.status.emit(f"model loaded: {path}{note}")

        def failed(msg, tb):
            self.loading_model = False
            self.state.status.emit("no model loaded")
            messages.error(self, "Cannot load the model", msg, tb)

        from sgma.engine.predict import Predictor      # torch loads in the warm-up thread, not at start
        self.tasks.start(Predictor.from_checkpoint, path, on_done=done, on_error=failed)

    def _show_closing_progress(self) -> None:
        """While the run stops and saves before quitting: a busy bar with the time waited and
        *Don't quit*, which keeps the window open (the run still stops and saves its checkpoint:
        a stop cannot be taken back)."""
        from PySide6.QtWidgets import QProgressDialog
        import time
        dlg = QProgressDialog("Stopping the training and saving a checkpoint before quitting…",
                              "Don't quit", 0, 0, self)
        dlg.setWindowTitle("Quitting")
        dlg.setMinimumDuration(0)
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        started = time.monotonic()

        def update():
            text, done = self.training.stop_progress()
            if done == done:                   # known: a bar of the expected wait
                dlg.setRange(0, 100)
                dlg.setValue(min(int(100 * done), 99))
            else:
                dlg.setRange(0, 0)
            dlg.setLabelText("Stopping the training and saving a checkpoint before quitting: "
                             f"{time.monotonic() - started:.0f} s so far; {text}.")
        timer = QTimer(dlg)
        timer.timeout.connect(update)
        timer.start(250)
        update()
        dlg.canceled.connect(self._cancel_quit)
        self.closing_dialog = dlg
        dlg.show()

    def _cancel_quit(self) -> None:
        self._close_after_training = False
        self.state.status.emit("not quitting; the training still stops and saves its checkpoint")
        dlg, self.closing_dialog = getattr(self, "closing_dialog", None), None
        if dlg is not None:
            dlg.hide()
            dlg.deleteLater()

    def _on_training_finished(self, run_dir: str, stopped: bool, failed: bool) -> None:
        dlg, self.closing_dialog = getattr(self, "closing_dialog", None), None
        if dlg is not None:
            dlg.hide()
            dlg.deleteLater()
        if self._close_after_training:
            QTimer.singleShot(0, self.close)
            return
        if not stopped and not failed and run_dir:
            self.load_model(run_dir)
            self.state.status.emit(f"training finished; loading the best model of {run_dir}")

    # ---------------------------------------------------------------- closing
    def closeEvent(self, event) -> None:
        if self.training.is_running():
            if self._close_after_training:
                event.ignore()
                return
            if not messages.ask(self, "Training is running",
                                "A training run is in progress. Stop it, save a checkpoint and quit?"):
                event.ignore()
                return
            self._close_after_training = True
            self.training.stop()
            self.state.status.emit("stopping the training and saving a checkpoint before quitting…")
            self._show_closing_progress()
            event.ignore()
            return
        self.save_settings()
        self.tasks.cancel_all()
        self.tasks.wait(30000)
        self.browser.model.shutdown()
        self._closed = True
        event.accept()

    def save_settings(self) -> None:
        self.settings.save_window(self)
        self.settings.set("window/splitter", self.splitter.saveState())
        self.settings.set("window/tab", self.tabs.currentIndex())
        self.audit.save_settings()
        self.training.save_settings()
        self.settings.sync()

