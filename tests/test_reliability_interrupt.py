"""Ctrl-C and SIGTERM during `sgma train` (issue 16): like the stop request, the run saves last.pt
with its position inside the epoch, prints how to resume, and exits with status 130; the saved
position is at or after every step logged before the signal, so nothing trained is lost. A real
`sgma train --preset tiny` subprocess gets the signal; `--resume` then continues from last.pt."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgma.engine.checkpoint import load_checkpoint

TIMEOUT_S = 120


def _steps(run: Path) -> list[int]:
    p = run / "metrics.csv"
    if not p.exists():
        return []
    with open(p, newline="") as f:
        out = []
        for r in csv.reader(f):
            if len(r) == 7 and r[1] == "step" and r[4].isdigit():
                out.append(int(r[4]))
        return out


def _start(run: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "sgma.engine.cli", "train", "--preset", "tiny",
                             "--out", str(run), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _signal_after(proc: subprocess.Popen, run: Path, sig: int, at_step: int) -> tuple[int, str, int]:
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not (_steps(run) and max(_steps(run)) >= at_step):
            if proc.poll() is not None:
                pytest.fail(f"sgma train ended early (rc {proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no step {at_step} within {TIMEOUT_S} s")
            time.sleep(0.02)
        before = max(_steps(run))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode(errors="replace"), before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_saves_last_pt_says_how_to_resume_and_exits_130(tmp_path, sig):
    run = tmp_path / "run"
    rc, err, before = _signal_after(_start(run), run, sig, at_step=5)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"resume with: sgma train --preset tiny --resume --out {run}" in err, err[-2000:]
    state = load_checkpoint(run / "last.pt")
    assert state["position"]["global_step"] >= before          # nothing trained before the signal is lost
    assert state["position"]["global_step"] == max(_steps(run))
    assert state["stage"] == "warmup" and state["position"]["batch"] > 0   # inside the first epoch
    assert not (run / ".lock").exists()                          # the lock is released


@pytest.mark.slow
def test_resume_after_ctrl_c_finishes_the_run(tmp_path):
    run = tmp_path / "run"
    rc, err, _ = _signal_after(_start(run), run, signal.SIGINT, at_step=5)
    assert rc == 130, err[-2000:]
    saved = load_checkpoint(run / "last.pt")["position"]["global_step"]
    proc = _start(run, "--resume")
    _, err = proc.communicate(timeout=TIMEOUT_S * 3)
    assert proc.returncode == 0, err.decode()[-2000:]
    from collections import Counter
    rows = Counter(_steps(run))                  # one row per loss and the lr, for each step
    assert sorted(rows) == list(range(1, max(rows) + 1)) and saved in rows      # none lost
    assert len(set(rows.values())) <= 2, rows    # none logged twice (stages log different losses)
    assert (run / "best.pt").is_file()


@pytest.mark.slow
def test_ctrl_c_with_loader_workers_saves_and_exits_130(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group, DataLoader workers included
    (``train.num_workers = 2``): the run still saves last.pt, prints how to resume and exits 130,
    and no worker is left behind."""
    from sgma.engine.config import preset, save_toml
    cfg = preset("tiny")
    cfg.train.num_workers = 2
    conf = tmp_path / "workers.toml"
    save_toml(cfg, conf)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "sgma.engine.cli", "train", "--config", str(conf),
                             "--out", str(run)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    pgid = proc.pid
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not (_steps(run) and max(_steps(run)) >= 5):
            if proc.poll() is not None:
                pytest.fail(f"sgma train ended early (rc {proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "no step 5 in time"
            time.sleep(0.02)
        before = max(_steps(run))
        os.killpg(pgid, signal.SIGINT)                 # as the terminal does: every process of the group
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait()
    err = err.decode(errors="replace")
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"resume with: sgma train --config {conf} --resume --out {run}" in err, err[-2000:]
    assert load_checkpoint(run / "last.pt")["position"]["global_step"] >= before
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):            # the workers are gone with the group leader
        os.killpg(pgid, 0)
