"""Per-run metrics: a long-format CSV (every step and every epoch) and, when the ``tensorboard``
package is installed, TensorBoard event files beside it."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path


class MetricsLog:
    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.path = Path(run_dir) / "metrics.csv"
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        new = not self.path.exists()
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(["time", "kind", "stage", "epoch", "global_step", "name", "value"])
        self._tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(Path(run_dir) / "tb"))
        except Exception:  # tensorboard not installed: CSV only
            self._tb = None
        self._last_step = 0

    def _truncate(self, step: int) -> None:
        """Drop rows logged after the checkpoint a run resumes from: they are replayed."""
        from .io import atomic_write_bytes
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        keep = rows[:1] + [r for r in rows[1:] if len(r) == 7 and r[4].isdigit() and int(r[4]) <= step]
        buf = io.StringIO()
        csv.writer(buf).writerows(keep)
        atomic_write_bytes(self.path, buf.getvalue().encode())

    def step(self, e) -> None:
        t = time.time()
        self._last_step = e.global_step
        for k, v in list(e.losses.items()) + [("lr", e.lr)]:
            self._w.writerow([f"{t:.3f}", "step", e.stage, e.epoch, e.global_step, k, f"{v:.6g}"])
            if self._tb:
                self._tb.add_scalar(f"{e.stage}/{k}", v, e.global_step)
        self._f.flush()

    def epoch(self, e, lr: float) -> None:
        t = time.time()
        for k, v in list(e.metrics.items()) + [("lr", lr)]:
            self._w.writerow([f"{t:.3f}", "epoch", e.stage, e.epoch, self._last_step, k, f"{v:.6g}"])
            if self._tb:
                self._tb.add_scalar(f"epoch/{k}", v, self._last_step)
        self._f.flush()

    def close(self) -> None:
        self._f.close()
        if self._tb:
            self._tb.close()


# stage names an earlier version wrote into metrics.csv, read as today's (config.STAGES)
EARLIER_STAGE_NAMES = {"kmeans": "grouping"}


def read_history(run_dir: Path) -> tuple[list[tuple[int, str, float]], list[tuple[str, int, str, float]]]:
    """What ``MetricsLog`` wrote to ``run_dir/metrics.csv``: the step rows as (global step, loss
    term, value) and the epoch rows as (stage, epoch, metric, value), in file order, learning
    rates left out. A missing file is an empty history; rows that do not parse (a line cut by a
    kill) are skipped."""
    path = Path(run_dir) / "metrics.csv"
    steps: list[tuple[int, str, float]] = []
    epochs: list[tuple[str, int, str, float]] = []
    if not path.is_file():
        return steps, epochs
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) != 7 or row[5] == "lr":
                continue
            _t, kind, stage, epoch, global_step, name, value = row
            try:
                if kind == "step":
                    steps.append((int(global_step), name, float(value)))
                elif kind == "epoch":
                    epochs.append((EARLIER_STAGE_NAMES.get(stage, stage), int(epoch), name, float(value)))
            except ValueError:
                continue
    return steps, epochs
