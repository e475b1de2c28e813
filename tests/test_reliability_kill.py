"""Interrupted training (issue 7): a training process killed with SIGKILL mid-epoch resumes from
its last checkpoint and loses at most one checkpoint interval; a process killed while writing a
checkpoint leaves the previous one loadable; a kill between the best.pt and last.pt writes of a
best epoch leaves a consistent pair (issue 16). The child process is tests/helpers/kill_worker.py."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sgma.engine import events as ev
from sgma.engine.checkpoint import load_checkpoint
from sgma.engine.trainer import Trainer

HERE = Path(__file__).resolve().parent / "helpers"
sys.path.insert(0, str(HERE))
import kill_worker  # noqa: E402

KILL_AT_STEP = 9          # batch 3 of 6 of the pretrain_parts epoch (after warmup and k-means)
TIMEOUT_S = 90


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Two intra-op threads on a loaded 2-core machine run ~20x slower than one; restore after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def logged_steps(run_dir: Path) -> list[int]:
    """Global steps in metrics.csv (a row cut short by the kill is skipped)."""
    p = run_dir / "metrics.csv"
    if not p.exists():
        return []
    out = []
    with open(p, newline="") as f:
        for row in csv.DictReader(f):
            try:
                if row["kind"] == "step":
                    out.append(int(row["global_step"]))
            except (TypeError, ValueError, KeyError):
                pass
    return out


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_from_the_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(HERE / "kill_worker.py"), "train", str(run_dir)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            steps = logged_steps(run_dir)
            if (run_dir / "last.pt").exists() and steps and max(steps) >= KILL_AT_STEP:
                break
            if proc.poll() is not None:
                pytest.fail(f"the worker ended before it was killed (rc {proc.returncode}):\n"
                            f"{proc.stdout.read().decode(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no step {KILL_AT_STEP} within {TIMEOUT_S} s")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(logged_steps(run_dir))
    total = 18

    state = load_checkpoint(run_dir / "last.pt")          # the last checkpoint is intact
    saved = state["position"]["global_step"]
    interval = kill_worker.kill_config().train.checkpoint_every_steps
    assert killed_at - interval <= saved <= killed_at, (saved, killed_at)
    assert state["stage"] == "pretrain_parts" and 0 < state["position"]["batch"] < 6, state["position"]
    assert state["channel_groups"], "the k-means channel groups were not checkpointed"

    trainer = Trainer(kill_worker.kill_config(), run_dir, dataset=kill_worker.kill_dataset(), resume=True)
    events = list(trainer.run())
    assert isinstance(events[-1], ev.Finished) and not events[-1].stopped, events[-1]
    steps = [e.global_step for e in events if isinstance(e, ev.Step)]
    assert steps == list(range(saved + 1, total + 1))      # picks up right after the checkpoint, to the end
    first = next(e for e in events if isinstance(e, ev.Step))
    assert (first.stage, first.step) == ("pretrain_parts", state["position"]["batch"])
    assert not any(isinstance(e, ev.StageStarted) and e.stage in ("warmup", "grouping") for e in events)
    assert load_checkpoint(run_dir / "best.pt")["position"]["global_step"] == total
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    proc = subprocess.run([sys.executable, str(HERE / "kill_worker.py"), "save", str(path)],
                          env=_env(), capture_output=True, timeout=TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode(errors="replace")[-2000:]
    state = load_checkpoint(path, validate=False)          # a bare dict, not an SGMA state
    assert state["which"] == "A" and state["position"]["global_step"] == 2
    # the half-written temporary file of B is left behind, under a name no loader picks up
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert all(n.startswith(".last.pt.") and n.endswith(".tmp") for n in leftovers), leftovers
    assert load_checkpoint(tmp_path, validate=False)["which"] == "A"        # a run folder resolves to last.pt


def _epoch_scores(run_dir: Path) -> list[tuple[str, int, float]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(r["stage"], int(r["global_step"]), float(r["value"])) for r in csv.DictReader(f)
                if r["kind"] == "epoch" and r["name"] == "val_zsl_mca"]


def test_sigkill_between_best_and_last_keeps_the_pair_consistent(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(HERE / "kill_worker.py"), "pair", str(run_dir)],
                          env=_env(), capture_output=True, timeout=TIMEOUT_S)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, out + proc.stderr.decode(errors="replace")[-2000:]
    assert out.split() == ["wrote", "last.pt", "wrote", "last.pt", "wrote", "best.pt"], out
    last = load_checkpoint(run_dir / "last.pt")
    best = load_checkpoint(run_dir / "best.pt")
    # last.pt (the k-means epoch) records no best that best.pt does not hold
    assert last["stage"] == "grouping" and last["best_metric"] == float("-inf")
    assert best["stage"] == "pretrain_parts" and best["best_metric"] > float("-inf")

    events = list(Trainer(kill_worker.pair_config(), run_dir, dataset=kill_worker.pair_dataset(),
                          resume=True).run())
    assert isinstance(events[-1], ev.Finished) and not events[-1].stopped, events[-1]
    last, best = load_checkpoint(run_dir / "last.pt"), load_checkpoint(run_dir / "best.pt")
    eligible = [(step, v) for stage, step, v in _epoch_scores(run_dir) if stage in ("pretrain_parts", "joint")]
    top_step, top = max(eligible, key=lambda sv: (sv[1], -sv[0]))     # the first epoch with the top score
    assert best["best_metric"] == pytest.approx(top, abs=1e-5) == last["best_metric"]
    assert best["step"] == top_step, (best["step"], eligible)
