"""Training: a form for the preset and the main hyperparameters, start / pause / resume /
stop-and-save / resume-from-checkpoint, a progress bar with stage, epoch and ETA, live curves and a
log. The run happens in ``workers.TrainingRun``'s thread; this panel only reads its events."""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                               QProgressBar, QPushButton, QSizePolicy, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from sgma.engine.config import PRESETS, STAGE_BY_NAME, STAGE_NAMES, STAGES, stage_plan

from . import messages
from .curves import Curves
from .state import AppState
from .workers import TrainingRun, fmt_duration


def refusal(text: str, lo: float, hi: float, whole: bool, special: str = "") -> str:
    """Why a number field refused ``text`` (typed or pasted): not a number, or outside lo..hi."""
    t = text.strip()
    num = (lambda x: str(int(x))) if whole else (lambda x: f"{x:g}")
    span = f"{num(lo)}–{num(hi)}"
    try:
        v = int(t) if whole else float(t.replace(",", "."))
    except ValueError:
        kind = "a whole number" if whole else "a number"
        extra = f"; {num(lo)} = {special}" if special else ""
        return f"{t!r} is not {kind} ({span}{extra})"
    return f"{num(v)} is outside {span}"


class _Checked:
    """A spin box that says why it refuses an edit: Qt's validator silently drops a keystroke or a
    paste that is not a number or leaves the range; here ``refused`` carries the reason, shown by
    ``note`` (a label put next to the field) until the text next changes."""

    def _init_note(self) -> None:
        self.note = QLabel()
        self.note.setStyleSheet("color: #c62828")
        self.note.setWordWrap(True)
        self.note.hide()
        self.textChanged.connect(lambda _t: self.note.hide())

    def _check(self, result, whole: bool):
        state, text = result[0], result[1]
        if state == QValidator.State.Invalid and text.strip():
            self.note.setText(refusal(text, self.minimum(), self.maximum(), whole, self.specialValueText()))
            self.note.show()
        return result


class CheckedSpinBox(_Checked, QSpinBox):
    def __init__(self):
        super().__init__()
        self._init_note()

    def validate(self, text, pos):
        return self._check(super().validate(text, pos), whole=True)


class CheckedDoubleSpinBox(_Checked, QDoubleSpinBox):
    def __init__(self):
        super().__init__()
        self._init_note()

    def validate(self, text, pos):
        if "," in text and "." not in text:          # a decimal comma is read as a point
            text = text.replace(",", ".")
        return self._check(super().validate(text, pos), whole=False)


def epoch_slots(cfg) -> dict[str, int]:
    """Stage -> how many validation points the run draws before it: every epoch of a gradient
    stage, one for the k-means stage (it validates once), none for a stage that does not run."""
    runs = {st.name: epochs for _, st, epochs in stage_plan(cfg)}
    out, n = {}, 0
    for st in STAGES:
        out[st.name] = n
        if st.name in runs:
            n += runs[st.name] if st.gradient_steps else 1
    return out


def _is_fit_stage(stage: Optional[str]) -> bool:
    """A stage that is one fit without gradient steps (the channel grouping): its time is shown."""
    st = STAGE_BY_NAME.get(stage)
    return st is not None and not st.gradient_steps


def epoch_number(slots: dict[str, int], stage: str, epoch: int) -> int:
    """The x of an epoch's validation point: its place among the run's epochs, from 1."""
    return slots.get(stage, 0) + (epoch if STAGE_BY_NAME[stage].gradient_steps else 0) + 1


def _spin(lo: int, hi: int, value: int = 0) -> CheckedSpinBox:
    s = CheckedSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    return s


def _dspin(lo: float, hi: float, decimals: int, step: float) -> CheckedDoubleSpinBox:
    s = CheckedDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    return s


def _with_note(field: QWidget, *notes: QLabel) -> QWidget:
    """The field with its refusal notes to its right."""
    w = QWidget()
    row = QHBoxLayout(w)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(field)
    for n in notes:
        row.addWidget(n, 1)
    return w


class TrainingPanel(QWidget):
    runFinished = Signal(str, bool, bool)       # run folder, stopped, failed
    requestDataset = Signal()

    def __init__(self, state: AppState, settings, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state, self.settings = state, settings
        self.run: Optional[TrainingRun] = None
        self.run_dir: Optional[Path] = None
        self.events: list = []              # every event but the steps
        self.n_steps = 0
        self.total_steps = 1
        self.slots: dict[str, int] = {}     # epoch_slots of the run's config
        self._stage, self._stage_at = "", 0.0
        self._task = None                    # the last Progress event of the current stage
        self._last_step, self._step_s = None, float("nan")
        self._resumed = False               # the next step is the first of a resumed run
        # the retrain on all seen classes (the trainer's second pass, into run_dir/final/) counts its
        # steps from 1 again: its curves continue after the selection pass's last step
        self._pass, self._step_offset, self._stage_index = 0, 0, -1
        self._pass_started = 0.0
        self.stage_epochs = {}
        self.failed = False

        # ---- the form
        self.dataset_label = QLabel("no dataset")
        self.dataset_button = QPushButton("Change…")
        self.dataset_button.clicked.connect(self.requestDataset)
        self.preset_box = QComboBox()
        self.preset_box.addItems(list(PRESETS))
        self.epoch_spins = {name: _spin(0, 10000) for name in STAGE_NAMES}
        self.lr = _dspin(1e-6, 10.0, 5, 0.005)
        self.batch = _spin(1, 4096, 32)
        self.lam = _dspin(0.0, 1000.0, 3, 0.1)
        self.lam.setToolTip("lambda: weight of the diversity term in the multi-attention loss (Eq. 6)")
        self.beta = _dspin(0.0, 1000.0, 3, 0.1)
        self.beta.setToolTip("beta: weight of the class-centre similarity in the combined score (Eq. 13)")
        self.max_steps = _spin(0, 10_000_000)
        self.max_steps.setSpecialValueText("all")
        self.max_steps.setToolTip("gradient steps per epoch at most (all = the whole epoch)")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.threads = _spin(1, max(os.cpu_count() or 1, 1), settings.get("training/threads",
                                                                            max((os.cpu_count() or 2) - 1, 1)))
        self.threads.setToolTip("CPU threads for training; leave one core free to keep the window responsive")
        self.out_dir = QLineEdit(settings.get("training/out_dir", str(Path.home() / "sgma-runs")))
        browse = QPushButton("…")
        browse.setMaximumWidth(32)
        browse.clicked.connect(self._browse_out)

        form = QFormLayout()
        drow = QHBoxLayout()
        drow.addWidget(self.dataset_label, 1)
        drow.addWidget(self.dataset_button)
        form.addRow("Dataset", drow)
        form.addRow("Preset", self.preset_box)
        ep = QGridLayout()
        for k, st in enumerate(STAGES):
            name = st.name
            label = QLabel(st.title)
            label.setToolTip(f"stage {k} ({name} in a config file)")
            ep.addWidget(label, 0, k)
            ep.addWidget(self.epoch_spins[name], 1, k)
            ep.addWidget(self.epoch_spins[name].note, 2, k)
        form.addRow("Epochs per stage", ep)
        form.addRow("Learning rate", _with_note(self.lr, self.lr.note))
        form.addRow("Batch size", _with_note(self.batch, self.batch.note))
        form.addRow("λ (diversity)", _with_note(self.lam, self.lam.note))
        form.addRow("β (centre score)", _with_note(self.beta, self.beta.note))
        form.addRow("Steps per epoch", _with_note(self.max_steps, self.max_steps.note))
        hw = QHBoxLayout()
        hw.addWidget(self.device)
        hw.addWidget(QLabel("CPU threads"))
        hw.addWidget(self.threads)
        hw.addWidget(self.threads.note, 1)
        form.addRow("Device", hw)
        orow = QHBoxLayout()
        orow.addWidget(self.out_dir, 1)
        orow.addWidget(browse)
        form.addRow("Output folder", orow)
        form_box = QGroupBox("Run")
        form_box.setLayout(form)

        # ---- controls and progress
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop && save")
        self.resume_ckpt_button = QPushButton("Resume from checkpoint…")
        self.start_button.clicked.connect(lambda: self.start())
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.resume_ckpt_button.clicked.connect(self._resume_dialog)
        buttons = QGridLayout()
        for k, b in enumerate((self.start_button, self.pause_button, self.resume_button, self.stop_button)):
            buttons.addWidget(b, 0, k)
        buttons.addWidget(self.resume_ckpt_button, 1, 0, 1, 4)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.task_progress = QProgressBar()   # work without steps (stage 1's feature pass), shown while it runs
        self.task_progress.setRange(0, 1000)
        self.task_progress.setVisible(False)
        self.progress_label = QLabel("idle")
        # a status line whose length changes every step must never resize the panel: a resize
        # re-lays-out and repaints both plots (20 ms of GUI work under a busy training thread)
        self.progress_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.curves = Curves(settings)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(form_box)
        ll.addLayout(buttons)
        ll.addWidget(self.progress)
        ll.addWidget(self.task_progress)
        ll.addWidget(self.progress_label)
        ll.addWidget(self.log, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.curves)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

        self._tick = QTimer(self)           # the k-means stage has no steps: its time so far, each second
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._show_stage_time)

        self.preset_box.currentTextChanged.connect(self.load_preset)
        self.preset_box.setCurrentText(settings.get("training/preset", "demo"))
        self.load_preset(self.preset_box.currentText())
        state.datasetChanged.connect(self._on_dataset)
        self._update_buttons()

    # ---------------------------------------------------------------- form <-> config
    def load_preset(self, name: str) -> None:
        from sgma.engine.config import preset
        cfg = preset(name)
        for s in STAGE_NAMES:
            self.epoch_spins[s].setValue(getattr(cfg.train, s).epochs)
        self.lr.setValue(cfg.train.lr)
        self.batch.setValue(cfg.train.batch_size)
        self.lam.setValue(cfg.model.lambda_div)
        self.beta.setValue(cfg.inference.beta)
        self.max_steps.setValue(cfg.train.max_steps_per_epoch)
        self.device.setCurrentText(cfg.train.device)

    def config(self):
        """The RunConfig the form describes, for the open dataset."""
        from sgma.engine.config import preset
        cfg = preset(self.preset_box.currentText())
        for s in STAGE_NAMES:
            getattr(cfg.train, s).epochs = self.epoch_spins[s].value()
        cfg.train.lr = self.lr.value()
        cfg.train.batch_size = self.batch.value()
        cfg.model.lambda_div = self.lam.value()
        cfg.inference.beta = self.beta.value()
        cfg.train.max_steps_per_epoch = self.max_steps.value()
        cfg.train.device = self.device.currentText()
        if hasattr(cfg.train, "num_threads"):
            cfg.train.num_threads = self.threads.value()
        if self.state.data_config is not None:
            cfg.data = copy.deepcopy(self.state.data_config)
        return cfg

    def _on_dataset(self) -> None:
        ds = self.state.dataset
        self.dataset_label.setText(f"{ds.name} ({len(ds)} images, {len(ds.class_names)} classes)"
                                   if ds is not None else "no dataset")

    def _browse_out(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Output folder", self.out_dir.text())
        if d:
            self.out_dir.setText(d)

    def save_settings(self) -> None:
        self.settings.set("training/preset", self.preset_box.currentText())
        self.settings.set("training/out_dir", self.out_dir.text())
        self.settings.set("training/threads", self.threads.value())

    # ---------------------------------------------------------------- control
    def is_running(self) -> bool:
        return self.run is not None and self.run.running

    def start(self, run_dir: Optional[str] = None, resume: bool = False) -> bool:
        """Start a new run (``run_dir`` None: a new folder in the output folder) or resume the
        run in ``run_dir``. Returns False (after telling the user) when it cannot start."""
        if self.is_running():
            return False
        ds = self.state.dataset
        if ds is None:
            messages.error(self, "Cannot train", "Open a dataset first (File > Open dataset).")
            return False
        from sgma.engine.config import ConfigError, load_toml
        try:
            if resume:
                run_dir = Path(run_dir)
                cfg = load_toml(run_dir / "config.toml")
                if not (run_dir / "last.pt").is_file():
                    raise ConfigError(f"{run_dir}: no last.pt to resume from")
                if hasattr(cfg.train, "num_threads"):
                    cfg.train.num_threads = self.threads.value()
            else:
                cfg = self.config()
                cfg.validate()
                run_dir = Path(run_dir) if run_dir else \
                    Path(self.out_dir.text()).expanduser() / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        except (ConfigError, ValueError, OSError) as e:
            messages.error(self, "Cannot train", str(e))
            return False

        def make_trainer(cfg=cfg, run_dir=run_dir, ds=ds, resume=resume):
            from sgma.engine.trainer import Trainer      # runs in the training thread
            return Trainer(cfg, run_dir, dataset=ds, resume=resume)

        self.save_settings()
        self.run_dir, self.failed = run_dir, False
        self.total_steps = 0                # the trainer's Planned event says
        self.events, self.n_steps = [], 0
        self.stage_epochs = {s: getattr(cfg.train, s).epochs for s in STAGE_NAMES}
        self.slots = epoch_slots(cfg)
        self.curves.clear()
        self._resumed = resume
        self._pass, self._step_offset, self._stage_index = 0, 0, -1
        self._pass_started = time.monotonic()
        if resume:                       # a resumed run's curves start with its history so far
            self.load_history(run_dir)
        self.progress.setValue(0)
        self._log(f"{'resuming' if resume else 'starting'} run in {run_dir}")
        self.run = TrainingRun(make_trainer, self, threads=self.threads.value())
        self.run.event.connect(self.on_event)
        self.run.finished.connect(self._on_finished)
        self.run.start()
        self._paused = False
        self._stage, self._stage_at = "", time.monotonic()
        self._last_step, self._step_s = None, float("nan")    # (monotonic time, global step); s a step
        self._update_buttons()
        return True

    def load_history(self, run_dir: Path) -> None:
        """Draw what the run logged before (its metrics.csv), whichever window trained it."""
        from sgma.engine.metrics_log import read_history
        steps, epochs = read_history(run_dir)
        for step, name, value in steps:
            self.curves.add_step(step, {name: value})
        for stage, epoch, name, value in epochs:
            if name == "val_zsl_mca":
                self.curves.add_epoch(epoch_number(self.slots, stage, epoch), {name: value})
        if (Path(run_dir) / "final" / "metrics.csv").is_file():      # the run had reached its retrain
            self._pass, self._step_offset = 1, max((st for st, _n, _v in steps), default=0)
            final, _ = read_history(Path(run_dir) / "final")
            for step, name, value in final:
                self.curves.add_step(step + self._step_offset, {name: value})
            steps += final
        if steps or epochs:
            self._log(f"curves so far: {len({s for s, _n, _v in steps})} steps and "
                      f"{len(self.curves.accuracy)} validations, from {Path(run_dir) / 'metrics.csv'}")

    def pause(self) -> None:
        if self.is_running():
            self.run.pause()
            self.progress_label.setText(self.progress_label.text() + " — pausing…")

    def resume(self) -> None:
        if self.is_running():
            self.run.resume()

    def stop(self) -> None:
        if self.is_running():
            self.run.stop()
            self._log("stop requested: saving a checkpoint after the current step…")
            self._update_buttons()

    def _task_text(self) -> str:
        """The stage's step-less work as the last Progress event gave it."""
        t = self._task
        if t is None:
            return "grouping channels"
        if t.total <= 1:
            return t.task
        eta = f" · ETA {fmt_duration(t.eta_s)}" if math.isfinite(t.eta_s) else ""
        return f"{t.task} {t.done}/{t.total} images{eta}"

    def _show_stage_time(self) -> None:
        if not self.is_running() or not _is_fit_stage(self._stage):
            self._tick.stop()
            return
        self.progress_label.setText(f"stage {self._stage} · {self._task_text()} · "
                                    f"{fmt_duration(time.monotonic() - self._stage_at)} so far")

    def stop_progress(self, now: Optional[float] = None) -> tuple[str, float]:
        """Where a requested stop stands: a sentence, and the expected share of the wait done
        (NaN when unknown). The trainer stops before its next step, so the wait is what is left of
        the current step (at the pace of the last steps), then the checkpoint; the k-means stage
        has no steps and ends first."""
        now = time.monotonic() if now is None else now
        t = self._task
        if t is not None and t.stage == self._stage and t.total > 1 and t.done < t.total:
            return (f"stage {self._stage}: {t.task} stops at its next batch ({t.done}/{t.total} images read), "
                    "then the checkpoint is saved", float("nan"))
        if _is_fit_stage(self._stage):
            return (f"stage {self._stage} ({STAGE_BY_NAME[self._stage].title}): {self._task_text()} ends first, then the checkpoint is "
                    f"saved (running for {fmt_duration(now - self._stage_at)})", float("nan"))
        if self._last_step is None or not math.isfinite(self._step_s):
            return "the run stops at its next step", float("nan")
        since = now - self._last_step[0]
        if since > 2 * self._step_s + 1:
            return (f"the run is between steps (validation or a checkpoint, {fmt_duration(since)} so far): "
                    "it stops at its next step", float("nan"))
        left = max(self._step_s - since, 0.0)
        return (f"the current step ends in about {fmt_duration(left)} (a step takes {self._step_s:.1f} s), "
                "then the checkpoint is saved", since / (since + left) if since + left > 0 else 1.0)

    def _resume_dialog(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Resume the run in folder", self.out_dir.text())
        if d:
            self.start(d, resume=True)

    def _update_buttons(self) -> None:
        running = self.is_running()
        stopping = running and self.run.stop_requested
        paused = running and getattr(self, "_paused", False)
        self.start_button.setEnabled(not running)
        self.resume_ckpt_button.setEnabled(not running)
        self.pause_button.setEnabled(running and not paused and not stopping)
        self.resume_button.setEnabled(running and paused and not stopping)
        self.stop_button.setEnabled(running and not stopping)
        for w in [self.preset_box, self.lr, self.batch, self.lam, self.beta, self.max_steps, self.device,
                  self.threads, self.out_dir, self.dataset_button, *self.epoch_spins.values()]:
            w.setEnabled(not running)

    # ---------------------------------------------------------------- events
    def _log(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def on_event(self, e) -> None:
        from sgma.engine import events as ev
        if not isinstance(e, ev.Step):
            self.events.append(e)
        if isinstance(e, ev.Step):
            self.n_steps += 1
            now = time.monotonic()
            if self._last_step is not None and e.global_step > self._last_step[1]:
                dt = (now - self._last_step[0]) / (e.global_step - self._last_step[1])
                self._step_s = dt if not math.isfinite(self._step_s) else 0.7 * self._step_s + 0.3 * dt
            self._last_step = (now, e.global_step)
            x = e.global_step + self._step_offset
            if self._resumed:            # steps logged after the checkpoint are replayed
                self._resumed = False
                self.curves.drop_steps_from(x)
            self.curves.add_step(x, e.losses)
            if self._pass == 0:
                self.progress.setValue(int(1000 * min(e.global_step / max(self.total_steps, 1), 1.0)))
            else:                        # the retrain's length is the trainer's: its ETA gives the share
                spent = now - self._pass_started
                self.progress.setValue(int(1000 * spent / max(spent + e.eta_s, 1e-9)))
            n_ep = self.stage_epochs.get(e.stage, 0)
            self.progress_label.setText(
                f"{'retrain on all seen classes · ' if self._pass else ''}"
                f"stage {e.stage} · epoch {e.epoch + 1}/{n_ep} · step {e.step + 1} · "
                f"{e.images_per_s:.0f} img/s · ETA {fmt_duration(e.eta_s)}")
        elif isinstance(e, ev.StageStarted):
            if 0 <= e.index <= self._stage_index and not self._resumed:   # a second pass begins
                self._pass += 1
                self._step_offset = int(max((p[-1][0] for p in self.curves.steps.values() if p), default=0))
                self._pass_started = time.monotonic()
                self._log(f"curves: the retrain's steps are drawn from step {self._step_offset + 1} on")
            self._stage_index = e.index
            self.stage_epochs[e.stage] = e.epochs
            self._stage, self._stage_at, self._last_step = e.stage, time.monotonic(), None
            self._task = None
            self.task_progress.setVisible(False)
            if _is_fit_stage(e.stage):      # a fit without steps: show its time
                self._tick.start()
            else:
                self._tick.stop()
            self._log(f"stage {e.index} {e.stage}: {e.epochs} epoch(s) of {e.steps_per_epoch} steps")
            self.progress_label.setText(f"stage {e.stage} starting…")
        elif isinstance(e, ev.EpochEnd):
            self.curves.add_epoch(epoch_number(self.slots, e.stage, e.epoch), e.metrics)
            m = ", ".join(f"{k} {v:.3f}" for k, v in e.metrics.items())
            self._log(f"{e.stage} epoch {e.epoch + 1} done{': ' + m if m else ''}{' (best)' if e.best else ''}")
        elif isinstance(e, ev.CheckpointSaved):
            self._log(f"checkpoint ({e.kind}) saved: {e.path}")
        elif isinstance(e, ev.Paused):
            self._paused = True
            self._log("paused")
            self.progress_label.setText(self.progress_label.text().replace(" — pausing…", "") + " — paused")
        elif isinstance(e, ev.Resumed):
            self._paused = False
            self._log("resumed")
        elif isinstance(e, ev.Planned):
            self.total_steps = e.total_steps
        elif isinstance(e, ev.Progress):
            self._task = e
            self.task_progress.setVisible(e.done < e.total)
            self.task_progress.setRange(0, 1000 if e.total > 1 else 0)     # one-piece work: a busy bar
            self.task_progress.setValue(int(1000 * e.done / max(e.total, 1)))
            self.progress_label.setText(f"stage {e.stage} · {self._task_text()}")
        elif isinstance(e, ev.Log):
            self._log(e.message)
        elif isinstance(e, ev.Finished):
            if e.stopped:
                self._log(f"stopped; resume with 'Resume from checkpoint' on {e.run_dir}")
            else:
                self.progress.setValue(1000)
                best = f" (best validation accuracy {e.best_metric:.3f})" if math.isfinite(e.best_metric) else ""
                self._log(f"finished{best}: {e.run_dir}")
        elif isinstance(e, ev.Failed):
            self.failed = True
            self._log(f"FAILED: {e.error}")
            if e.traceback:
                self._log(e.traceback)
            messages.error(self, "Training failed", e.error, e.traceback)
        self._update_buttons()

    def _on_finished(self) -> None:
        self._tick.stop()
        self.task_progress.setVisible(False)
        self._stage = ""
        from sgma.engine import events as ev
        stopped = any(isinstance(e, ev.Finished) and e.stopped for e in self.events)
        done = any(isinstance(e, ev.Finished) for e in self.events)
        self.progress_label.setText("stopped" if stopped else ("finished" if done else "ended"))
        run_dir = str(self.run_dir) if self.run_dir else ""
        self._update_buttons()
        self.runFinished.emit(run_dir, stopped, self.failed or not done)
