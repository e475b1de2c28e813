"""The run-folder lock (issue 16, engine/runlock.py): a second run into a folder that a live run
holds is refused naming the holder's pid, before it writes anything; a lock left by a killed run
is recovered; a finished run leaves no lock behind. The holder is a real second process
(tests/helpers/kill_worker.py hold)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sgma.engine import events as ev
from sgma.engine.runlock import LOCK_NAME, RunLock, RunLockError
from sgma.engine.trainer import Trainer

HERE = Path(__file__).resolve().parent / "helpers"
sys.path.insert(0, str(HERE))
import kill_worker  # noqa: E402


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/run."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(HERE / "kill_worker.py"), "hold", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline().decode()
    assert line.strip() == "locked", line + proc.stderr.read().decode()
    yield run, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def test_second_lock_is_refused_naming_the_holder_pid(holder):
    run, proc = holder
    with pytest.raises(RunLockError, match=f"in use by another training run \\(pid {proc.pid}\\)"):
        RunLock(run).acquire()


def test_second_training_run_fails_before_writing(holder):
    run, proc = holder
    torch.set_num_threads(1)
    before = sorted(p.name for p in run.iterdir())
    events = list(Trainer(kill_worker.pair_config(), run, dataset=kill_worker.pair_dataset()).run())
    assert isinstance(events[-1], ev.Failed) and f"pid {proc.pid}" in events[-1].error, events[-1]
    assert not any(isinstance(e, ev.Step) for e in events)
    assert sorted(p.name for p in run.iterdir()) == before          # no metrics.csv, no config.toml
    assert (run / LOCK_NAME).read_text().split() == [str(proc.pid)]  # the holder's lock is untouched


def test_stale_lock_of_a_killed_run_is_recovered(holder):
    run, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / LOCK_NAME).exists()                 # the killed run could not clean up
    lock = RunLock(run).acquire()
    try:
        assert lock.recovered == proc.pid
        assert (run / LOCK_NAME).read_text().split() == [str(os.getpid())]
    finally:
        lock.release()
    assert not (run / LOCK_NAME).exists()


def test_stale_lock_with_garbage_content_is_recovered(tmp_path):
    (tmp_path / LOCK_NAME).write_bytes(b"\xff not a pid")
    with RunLock(tmp_path) as lock:
        assert lock.recovered is None
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_held_in_this_process_refuses_a_second_run_here_too(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()              # free again once released
