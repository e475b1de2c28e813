"""Guards around one training run: the run-folder lock, and Ctrl-C / SIGTERM as a stop request.

The lock is the file ``<run>/.lock`` holding the holder's pid, held with ``fcntl.flock`` for as
long as the run lives. A second run into the same folder is refused, naming the holder's pid.
The kernel drops the flock when its process dies, however it dies, so a ``.lock`` left by a
killed run is stale: the next run takes it over (and says so in ``RunLock.recovered``).
Where ``fcntl`` is missing (Windows), the pid in the file decides: a lock whose pid is not a live
process is stale. Choice (docs/reliability.md): the lock file is removed on release, so a
finished run folder holds no ``.lock``.

``stop_on_signals(request_stop)`` turns the first SIGINT (Ctrl-C) or SIGTERM into a call of
``request_stop`` (the trainer then saves ``last.pt`` at its next step and finishes as stopped);
a second Ctrl-C interrupts at once. Handlers are only installed in the main thread.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional

from .errors import SGMAError

try:
    import fcntl
except ImportError:      # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


class RunLockError(SGMAError, RuntimeError):
    """The run folder is in use by another live run; the message names its pid."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # alive, owned by another user
        return True
    return True


class RunLock:
    """``with RunLock(run_dir):`` or ``acquire()`` / ``release()``."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: Optional[int] = None
        self.recovered: Optional[int] = None      # pid of a stale lock taken over, if any

    def acquire(self) -> "RunLock":
        for _ in range(10):                # the file may be swapped under us by a releasing run
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                held_by = self._lock_fd(fd)
                if held_by is not None:
                    raise RunLockError(f"the run folder {self.path.parent} is in use by another training "
                                       f"run (pid {held_by}); wait for it to end or choose another --out")
                if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    old = _read_pid_fd(fd)
                    if old is not None and old != os.getpid():
                        self.recovered = old
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                    self._fd = fd
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)                   # locked a file that was just unlinked: try again
        raise RunLockError(f"could not lock {self.path}")

    def _lock_fd(self, fd: int) -> Optional[int]:
        """None when locked; else the holder's pid (or -1 when it cannot be read)."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                pid = _read_pid_fd(fd)
                return pid if pid is not None else -1
        pid = _read_pid_fd(fd)
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            return pid
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)               # closing drops the flock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid_fd(fd: int) -> Optional[int]:
    try:
        return int(os.pread(fd, 64, 0).decode("ascii", "replace").split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[], None]) -> Iterator[dict]:
    """While active, the first SIGINT or SIGTERM calls ``request_stop()`` instead of killing the
    process; the yielded dict's ``"signal"`` is then the signal's name. A second SIGINT raises
    KeyboardInterrupt at once. Outside the main thread this does nothing."""
    got: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum, frame):
        if got["signal"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        got["signal"] = signal.Signals(signum).name
        request_stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Interrupted(KeyboardInterrupt):
    """A run ended by Ctrl-C or SIGTERM after saving ``last.pt``; ``signal`` names the signal."""

    def __init__(self, signal_name: str, run_dir):
        super().__init__(f"{signal_name}: last.pt saved in {run_dir}")
        self.signal, self.run_dir = signal_name, run_dir
