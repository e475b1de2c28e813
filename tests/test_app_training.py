"""Training from the window: the form, live curves, progress, a responsive event loop, pause /
resume / stop-and-save, resume from a checkpoint, and closing while a run is in progress."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time

import pytest
from PySide6.QtCore import QElapsedTimer, Qt, QTimer

from app_fixtures import answers, app_settings, make_window, small_ds  # noqa: F401

# Training runs off the GUI thread: the event loop keeps ticking through the run. The test asserts
# that behaviour (no gap near the run's length, ticks all along), not a speed: the worst stall is
# printed, and how small it stays is a benchmark's question, not a timed test's (the brief).


class StallMeter:
    """A 10 ms timer in the GUI thread; the largest gap between two ticks is the worst stall."""

    def __init__(self):
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.clock = QElapsedTimer()
        self.gaps: list[float] = []
        self.timer.timeout.connect(self._tick)

    def start(self):
        self.clock.start()
        self.timer.start()

    def _tick(self):
        self.gaps.append(self.clock.nsecsElapsed() / 1e6)
        self.clock.restart()

    def stop(self):
        self.timer.stop()

    @property
    def worst(self) -> float:
        return max(self.gaps[1:]) if len(self.gaps) > 1 else float("nan")


def fill_form(w, tmp_path, epochs=(1, 1, 1, 1), steps=3):
    t = w.training
    t.preset_box.setCurrentText("demo")
    for spin, n in zip(t.epoch_spins.values(), epochs):
        spin.setValue(n)
    t.max_steps.setValue(steps)
    t.batch.setValue(16)
    t.out_dir.setText(str(tmp_path / "runs"))
    t.device.setCurrentText("cpu")


def events_of(w, name):
    return [e for e in w.training.events if type(e).__name__ == name]


def test_training_run_with_live_curves_and_a_responsive_window(qtbot, make_window, small_ds, tmp_path, answers):
    w = make_window(dataset=small_ds)
    w.tabs.setCurrentWidget(w.training)
    fill_form(w, tmp_path)
    t = w.training
    cfg = t.config()
    assert [getattr(cfg.train, s).epochs for s in ("warmup", "grouping", "pretrain_parts", "joint")] == [1, 1, 1, 1]
    assert cfg.train.max_steps_per_epoch == 3 and cfg.train.batch_size == 16
    assert cfg.data.kind == "synthetic"
    t.threads.setValue(1)
    assert t.config().train.num_threads == 1           # the form's CPU threads reach the trainer
    # the window warms the engine up (torch, torch._dynamo) in a worker as it opens; measure the run
    qtbot.waitUntil(lambda: w.engine_ready, timeout=120000)
    meter = StallMeter()
    run_clock = QElapsedTimer()
    run_clock.start()
    meter.start()
    with qtbot.waitSignal(t.runFinished, timeout=240000) as finished:
        qtbot.mouseClick(t.start_button, Qt.MouseButton.LeftButton)
        assert t.is_running() and not t.start_button.isEnabled() and t.pause_button.isEnabled()
    meter.stop()
    run_ms = run_clock.elapsed()
    run_dir, stopped, failed = finished.args
    assert not stopped and not failed, t.log.toPlainText()
    print(f"\nworst event-loop stall while training: {meter.worst:.1f} ms over {len(meter.gaps)} ticks")
    # the curves got every step of every stage; the accuracy curve one point per epoch
    # with the trainer's retrain on all seen classes, its steps come after the 9, drawn after them
    retrain = "retraining on all" in t.log.toPlainText()
    assert t.n_steps > 9 if retrain else t.n_steps == 9
    xs, ys = t.curves.lines["total"].getData()
    assert list(xs) == list(range(1, t.n_steps + 1))
    for term in ("cls", "cct", "ma", "mse"):
        assert len(t.curves.lines[term].getData()[0]) > 0, term
    assert len(t.curves.acc_line.getData()[0]) == 4
    assert t.progress.value() == 1000
    stages = [e.stage for e in events_of(w, "StageStarted")]
    assert stages[:4] == ["warmup", "grouping", "pretrain_parts", "joint"] and (retrain or len(stages) == 4)
    log = t.log.toPlainText()
    assert "finished" in log and ("co-location grouped" in log or "falling back to k-means" in log)  # demo stage 1
    # smoothing redraws the same points
    t.curves.smoothing.setValue(0)
    assert list(t.curves.lines["total"].getData()[1]) == pytest.approx([y for _, y in t.curves.steps["total"]])
    # the trained model is loaded into the window
    qtbot.waitUntil(lambda: w.state.checkpoint_path == run_dir, timeout=30000)
    assert w.state.predictor is not None and w.evaluation.run_button.isEnabled()
    assert (tmp_path / "runs").exists() and os.path.isfile(os.path.join(run_dir, "best.pt"))
    # a run on the GUI thread would show one gap as long as the run and a handful of ticks
    assert meter.worst < 0.2 * run_ms, f"the event loop stalled {meter.worst:.0f} ms of a {run_ms} ms run"
    assert len(meter.gaps) > run_ms / 100, f"{len(meter.gaps)} ticks of a 10 ms timer in a {run_ms} ms run"
    assert not answers.of("error")


def test_pause_resume_stop_and_resume_from_checkpoint(qtbot, make_window, small_ds, tmp_path):
    w = make_window(dataset=small_ds)
    t = w.training
    fill_form(w, tmp_path, epochs=(8, 0, 0, 0), steps=0)      # 8 epochs of 5 steps, warm-up only
    run_dir = tmp_path / "runs" / "paused"
    assert t.start(str(run_dir))
    qtbot.waitUntil(lambda: t.n_steps >= 1, timeout=60000)
    qtbot.mouseClick(t.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(events_of(w, "Paused")), timeout=30000)
    assert t.resume_button.isEnabled() and not t.pause_button.isEnabled()
    n = t.n_steps
    qtbot.wait(600)
    assert t.n_steps == n                                     # nothing happens while paused
    qtbot.mouseClick(t.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: t.n_steps > n, timeout=30000)
    assert events_of(w, "Resumed")
    with qtbot.waitSignal(t.runFinished, timeout=60000) as finished:
        qtbot.mouseClick(t.stop_button, Qt.MouseButton.LeftButton)
    assert finished.args[1] is True                           # stopped
    saved = [e for e in events_of(w, "CheckpointSaved") if e.kind == "stop"]
    assert saved and os.path.isfile(saved[0].path)
    done_steps = t.n_steps
    assert done_steps < 40
    assert w.state.checkpoint_path is None                    # a stopped run is not loaded as the model
    assert t.start_button.isEnabled() and t.resume_ckpt_button.isEnabled()
    # resume from the checkpoint: the run continues where it stopped and finishes
    with qtbot.waitSignal(t.runFinished, timeout=240000) as finished:
        assert t.start(str(run_dir), resume=True)
    assert tuple(finished.args[1:]) == (False, False), t.log.toPlainText()
    xs = [p[0] for p in t.curves.steps["total"]]
    assert xs[0] == 1 and xs[done_steps] == done_steps + 1    # the curves keep the history; global steps continue
    assert xs == sorted(set(xs)) and xs[:40] == list(range(1, 41))
    retrain = "retraining on all" in t.log.toPlainText()     # the trainer's second pass on all seen classes
    assert len(xs) > 40 if retrain else len(xs) == 40         # drawn after the first pass, not over it
    assert done_steps + t.n_steps == len(xs)
    # one validation point per epoch, numbered over the whole run (not from 1 again after the resume)
    assert [p[0] for p in t.curves.accuracy] == list(range(1, 9))


def test_resume_in_a_new_window_draws_the_runs_curves_so_far(qtbot, make_window, small_ds, tmp_path):
    w1 = make_window(dataset=small_ds)
    t1 = w1.training
    fill_form(w1, tmp_path, epochs=(4, 0, 0, 0), steps=0)     # 4 epochs of 5 steps
    run_dir = tmp_path / "runs" / "later"
    assert t1.start(str(run_dir))
    qtbot.waitUntil(lambda: t1.n_steps >= 7, timeout=60000)  # past the first epoch's validation
    with qtbot.waitSignal(t1.runFinished, timeout=60000):
        t1.stop()
    before = [p[0] for p in t1.curves.steps["total"]]
    acc_before = list(t1.curves.accuracy)
    assert len(before) >= 7 and acc_before
    w1.close()
    w2 = make_window(dataset=small_ds)                        # another session: nothing drawn yet
    t2 = w2.training
    assert t2.curves.n_points() == 0
    with qtbot.waitSignal(t2.runFinished, timeout=240000) as finished:
        assert t2.start(str(run_dir), resume=True)
        # at once, before the first resumed step: the history from the run's metrics.csv
        assert [p[0] for p in t2.curves.steps["total"]] == before
        assert [p[0] for p in t2.curves.accuracy] == [p[0] for p in acc_before]
        assert [p[1] for p in t2.curves.accuracy] == pytest.approx([p[1] for p in acc_before], abs=1e-5)
    assert tuple(finished.args[1:]) == (False, False), t2.log.toPlainText()
    xs = [p[0] for p in t2.curves.steps["total"]]
    assert xs == sorted(set(xs)) and xs[:20] == list(range(1, 21))
    assert [p[0] for p in t2.curves.accuracy] == [1, 2, 3, 4]
    assert [p[1] for p in t2.curves.accuracy[:len(acc_before)]] == pytest.approx([p[1] for p in acc_before], abs=1e-5)
    assert "curves so far" in t2.log.toPlainText()


def test_closing_while_training_asks_stops_and_saves(qtbot, make_window, small_ds, tmp_path, answers):
    w = make_window(dataset=small_ds)
    t = w.training
    fill_form(w, tmp_path, epochs=(20, 0, 0, 0), steps=0)
    run_dir = tmp_path / "runs" / "closing"
    assert t.start(str(run_dir))
    qtbot.waitUntil(lambda: t.n_steps >= 1, timeout=60000)
    answers.reply = False                 # "no": keep training, keep the window
    w.close()
    assert answers.of("ask") and w.isVisible() and t.is_running()
    answers.reply = True                  # "yes": stop, save, then close
    w.close()
    assert len(answers.of("ask")) == 2
    assert w.closing_dialog is not None and w.closing_dialog.isVisible()     # a bar while it stops
    text = w.closing_dialog.labelText()
    assert "s so far;" in text
    assert ("the current step ends in about" in text and w.closing_dialog.maximum() == 100) or \
        ("stops at its next step" in text and w.closing_dialog.maximum() == 0), text
    qtbot.waitUntil(lambda: w._closed, timeout=120000)
    assert w.closing_dialog is None
    assert not w.isVisible() and not t.is_running()
    saved = [e for e in events_of(w, "CheckpointSaved") if e.kind == "stop"]
    assert saved and (run_dir / "last.pt").is_file()


def test_stop_progress_estimates_the_wait_from_the_last_steps(make_window, small_ds, monkeypatch):
    from sgma.app import training_panel
    from sgma.engine import events as ev
    t = make_window(dataset=small_ds).training
    clock = [100.0]
    monkeypatch.setattr(training_panel.time, "monotonic", lambda: clock[0])
    t.on_event(ev.StageStarted("warmup", 0, 2, 5))
    assert t.stop_progress() == ("the run stops at its next step", pytest.approx(float("nan"), nan_ok=True))
    for step, at in ((1, 100.0), (2, 104.0), (4, 112.0)):     # 4 s a step
        clock[0] = at
        t.on_event(ev.Step("warmup", 0, step - 1, step, {"total": 1.0}, 0.1))
    text, done = t.stop_progress(now=113.0)
    assert text == "the current step ends in about 0:03 (a step takes 4.0 s), then the checkpoint is saved"
    assert done == pytest.approx(0.25)
    assert "between steps (validation or a checkpoint, 0:20 so far)" in t.stop_progress(now=132.0)[0]
    clock[0] = 200.0
    t.on_event(ev.StageStarted("grouping", 1, 1, 0))
    text, done = t.stop_progress(now=245.0)
    assert text.startswith("stage grouping (channel grouping): grouping channels ends first") and "0:45" in text
    assert done != done
    t.on_event(ev.Progress("grouping", "reading features for the channel grouping", 64, 200, 30.0))
    assert t.task_progress.isVisibleTo(t) and t.task_progress.value() == 320
    assert "reading features for the channel grouping 64/200 images · ETA 0:30" in t.progress_label.text()
    text, _ = t.stop_progress(now=250.0)
    assert text == ("stage grouping: reading features for the channel grouping stops at its next batch "
                    "(64/200 images read), then the checkpoint is saved")
    t.on_event(ev.Progress("grouping", "kmeans grouping of the channels", 0, 1))
    assert t.task_progress.isVisibleTo(t) and t.task_progress.maximum() == 0      # busy: no count to show
    assert t.stop_progress(now=251.0)[0].startswith("stage grouping (channel grouping): kmeans grouping of the "
                                                    "channels ends first")
    t.on_event(ev.Progress("grouping", "channel-weight pretraining", 1, 1, 0.0))
    assert not t.task_progress.isVisibleTo(t)


def test_closing_while_training_can_be_called_off(qtbot, make_window, small_ds, tmp_path, answers):
    w = make_window(dataset=small_ds)
    t = w.training
    fill_form(w, tmp_path, epochs=(20, 0, 0, 0), steps=0)
    assert t.start(str(tmp_path / "runs" / "calloff"))
    qtbot.waitUntil(lambda: t.n_steps >= 1, timeout=60000)
    answers.reply = True
    w.close()
    from PySide6.QtWidgets import QPushButton
    button = w.closing_dialog.findChild(QPushButton)
    assert button.text() == "Don't quit"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert w.closing_dialog is None and not w._close_after_training
    qtbot.waitUntil(lambda: not t.is_running(), timeout=120000)
    qtbot.wait(200)
    assert w.isVisible() and not w._closed       # the run stopped and saved; the window stays
    assert (tmp_path / "runs" / "calloff" / "last.pt").is_file()


def test_bad_form_values_are_reported(qtbot, make_window, small_ds, tmp_path, answers):
    w = make_window(dataset=small_ds)
    t = w.training
    fill_form(w, tmp_path)
    assert not t.start(str(tmp_path / "nope"), resume=True)      # no config.toml there
    assert "config file not found" in answers.of("error")[-1][2]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t.out_dir.setText(str(blocker))                              # the output folder is a file
    assert t.start() is True or answers.of("error")
    qtbot.waitUntil(lambda: not t.is_running(), timeout=60000)
    assert t.failed or len(answers.of("error")) >= 2
    assert "cannot write" in answers.of("error")[-1][2]
