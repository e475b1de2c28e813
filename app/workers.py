"""Work off the GUI thread. Only Qt signals cross threads.

- ``Tasks`` runs a function in a thread pool and delivers its result (or its error) to callbacks
  in the GUI thread; a function that takes a ``ctx`` keyword can report progress and notice
  cancellation (``ctx.progress(i, n)``, ``ctx.check()``).
- ``TrainingRun`` iterates ``Trainer.run()`` in a QThread and re-emits every event; pause, resume
  and stop go straight to the trainer's thread-safe methods.
"""
from __future__ import annotations

import inspect
import os
import threading
import time
import traceback
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot


def lower_priority(niceness: int = 5) -> None:
    """Lower the calling thread's scheduling priority (Linux: per-thread nice value), so that on
    a busy machine the GUI thread is scheduled first. Silently does nothing elsewhere."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError, PermissionError):
        pass


def fmt_duration(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on); ``?`` when unknown."""
    import math
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_text(started: float, done: int, total: int, unit: str = "images") -> str:
    """``done/total unit, ETA m:ss`` for counted work begun at ``time.monotonic()`` ``started``:
    the time left at the mean rate so far (``?`` before the first item is done)."""
    eta = (time.monotonic() - started) / done * (total - done) if done else float("nan")
    return f"{done}/{total} {unit}, ETA {fmt_duration(eta)}"


class Cancelled(Exception):
    """Raised inside a task by ``ctx.check()`` after ``Task.cancel()``."""


class _TaskSignals(QObject):
    done = Signal(object)
    failed = Signal(str, str)
    progress = Signal(int, int)


class TaskContext:
    def __init__(self, signals: _TaskSignals, cancel: threading.Event):
        self._signals, self._cancel = signals, cancel

    def progress(self, done: int, total: int) -> None:
        self._signals.progress.emit(int(done), int(total))

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()
        time.sleep(0)   # give the GUI thread the GIL between chunks

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


class Task(QRunnable):
    def __init__(self, fn: Callable, args: tuple, kwargs: dict):
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = _TaskSignals()
        self._cancel = threading.Event()
        self.finished = threading.Event()
        try:
            self._wants_ctx = "ctx" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            self._wants_ctx = False

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        try:
            kw = dict(self.kwargs)
            if self._wants_ctx:
                kw["ctx"] = TaskContext(self.signals, self._cancel)
            result = self.fn(*self.args, **kw)
        except Cancelled:
            self.signals.failed.emit("cancelled", "")
        except BaseException as e:  # noqa: BLE001 - shown to the user in the GUI thread
            msg = str(e) if str(e) else type(e).__name__
            self.signals.failed.emit(msg, traceback.format_exc())
        else:
            self.signals.done.emit(result)
        finally:
            self.finished.set()


class Tasks(QObject):
    """A small thread pool for evaluation, feature extraction, predictions and dataset loading."""
    busyChanged = Signal(bool)

    def __init__(self, parent: Optional[QObject] = None, threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._live: set[Task] = set()

    def start(self, fn: Callable, *args, on_done: Optional[Callable[[Any], None]] = None,
              on_error: Optional[Callable[[str, str], None]] = None,
              on_progress: Optional[Callable[[int, int], None]] = None, **kwargs) -> Task:
        task = Task(fn, args, kwargs)
        if on_done:
            task.signals.done.connect(on_done)
        if on_error:
            task.signals.failed.connect(on_error)
        if on_progress:
            task.signals.progress.connect(on_progress)
        task.signals.done.connect(lambda _r, t=task: self._forget(t))
        task.signals.failed.connect(lambda _m, _tb, t=task: self._forget(t))
        self._live.add(task)
        self.busyChanged.emit(True)
        self.pool.start(task)
        return task

    def _forget(self, task: Task) -> None:
        self._live.discard(task)
        if not self._live:
            self.busyChanged.emit(False)

    @property
    def busy(self) -> bool:
        return bool(self._live)

    def cancel_all(self) -> None:
        for t in list(self._live):
            t.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        return self.pool.waitForDone(msecs)


class _TrainingWorker(QObject):
    event = Signal(object)
    done = Signal()

    def __init__(self, run: "TrainingRun"):
        super().__init__()
        self.run_ = run

    @Slot()
    def run(self) -> None:
        from sgma.engine import events as ev
        try:
            trainer = self.run_._create()
            if trainer is not None:
                for e in trainer.run():
                    self.event.emit(e)
                    time.sleep(0)       # let the GUI thread take the GIL between events
        except BaseException as e:  # noqa: BLE001 - the trainer reports its own errors; this is a last resort
            self.event.emit(ev.Failed(f"{type(e).__name__}: {e}", traceback.format_exc()))
        finally:
            self.done.emit()


class TrainingRun(QObject):
    """One training run in its own QThread. ``event`` carries engine events to the GUI thread.

    ``make_trainer`` is called in that thread, so the first import of torch or of its lazily
    loaded parts never happens in the GUI thread."""
    event = Signal(object)
    finished = Signal()

    def __init__(self, make_trainer: Callable[[], Any], parent: Optional[QObject] = None, threads: int = 0):
        super().__init__(parent)
        self.make_trainer, self.threads = make_trainer, threads
        self.trainer = None
        self._lock = threading.Lock()
        self._pending_pause = False
        self.thread = QThread()
        self.thread.setObjectName("sgma-training")
        self.worker = _TrainingWorker(self)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.event.connect(self.event)
        self.worker.done.connect(self.thread.quit)
        self.thread.finished.connect(self._on_thread_finished)
        self.stop_requested = False
        self._running = False

    def _create(self):
        lower_priority()
        if self.threads > 0:
            import torch
            torch.set_num_threads(self.threads)
        trainer = self.make_trainer()
        with self._lock:
            if self.stop_requested:
                return None
            self.trainer = trainer
            if self._pending_pause:
                trainer.request_pause()
        return trainer

    def start(self) -> None:
        self._running = True
        self.thread.start()

    @property
    def running(self) -> bool:
        return self._running

    def pause(self) -> None:
        with self._lock:
            self._pending_pause = True
            if self.trainer is not None:
                self.trainer.request_pause()

    def resume(self) -> None:
        with self._lock:
            self._pending_pause = False
            if self.trainer is not None:
                self.trainer.request_resume()

    def stop(self) -> None:
        with self._lock:
            self.stop_requested = True
            if self.trainer is not None:
                self.trainer.request_stop()

    def wait(self, msecs: int = 60000) -> bool:
        return self.thread.wait(msecs)

    def _on_thread_finished(self) -> None:
        self._running = False
        self.finished.emit()
