"""Does the resident memory of a training process grow across epochs?

Trains the ``demo`` preset as it stands in engine/config.py (synthetic birds, small CNN; at the
time of writing 15 steps per epoch, 12 + 2 + 4 + 10 epochs, 390 training steps, ~3.5 minutes on
one CPU thread) and records the process's resident set size (VmRSS from /proc/self/status, no
psutil) at the start, after every epoch and at the end. scikit-learn (imported by the k-means
stage, ~100 MB of code) is imported before the start so it does not count as growth. The numbers go to
docs/reliability.md between the ``memory_growth`` markers (``--write-doc``) and to ``--json``.

    python bench/memory_growth.py --write-doc
    python bench/memory_growth.py --joint-epochs 12 --json /tmp/mem.json

tests/test_reliability_memory.py runs ``measure`` on a tiny configuration (~60 steps).
Linux only (it reads /proc).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- memory_growth:begin -->", "<!-- memory_growth:end -->"


def vmrss_mb() -> float:
    """This process's resident set size in MB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status (not Linux?)")


def measure(cfg, dataset, run_dir) -> list[dict]:
    """Train ``cfg`` on ``dataset`` into ``run_dir``; one row per epoch end (plus "start" and
    "end") with the global step and VmRSS in MB. Raises RuntimeError if training fails."""
    import gc
    import sklearn.cluster  # noqa: F401  (stage 1 imports it: ~100 MB of code, not training memory)
    from sgma.engine import events as ev
    from sgma.engine.trainer import Trainer
    gc.collect()
    rows = [{"when": "start", "stage": "", "epoch": -1, "global_step": 0, "rss_mb": vmrss_mb()}]
    step = 0
    t0 = time.perf_counter()
    for e in Trainer(cfg, run_dir, dataset=dataset).run():
        if isinstance(e, ev.Step):
            step = e.global_step
        elif isinstance(e, ev.EpochEnd):
            rows.append({"when": "epoch", "stage": e.stage, "epoch": e.epoch, "global_step": step,
                         "rss_mb": vmrss_mb(), "t_s": round(time.perf_counter() - t0, 1)})
        elif isinstance(e, ev.Failed):
            raise RuntimeError(f"training failed: {e.error}")
    gc.collect()
    rows.append({"when": "end", "stage": "", "epoch": -1, "global_step": step, "rss_mb": vmrss_mb(),
                 "t_s": round(time.perf_counter() - t0, 1)})
    return rows


def growth_after_first_epoch(rows: list[dict]) -> float:
    """Largest RSS after the first epoch end minus RSS at the first epoch end (MB)."""
    epochs = [r for r in rows if r["when"] == "epoch"]
    later = [r["rss_mb"] for r in rows[rows.index(epochs[0]) + 1:]]
    return max(later, default=epochs[0]["rss_mb"]) - epochs[0]["rss_mb"]


def growth_within_stages(rows: list[dict]) -> dict[str, float]:
    """Per stage with >= 2 epochs: largest RSS at a later epoch end of that stage minus RSS at its
    first epoch end (MB). A leak per step or per epoch shows here; a new stage's larger working
    set (bigger graphs, part branches) does not."""
    out = {}
    for stage in dict.fromkeys(r["stage"] for r in rows if r["when"] == "epoch"):
        rs = [r["rss_mb"] for r in rows if r["when"] == "epoch" and r["stage"] == stage]
        if len(rs) >= 2:
            out[stage] = max(rs[1:]) - rs[0]
    return out


def markdown(rows: list[dict], info: dict) -> str:
    lines = [f"Measured {info['date']} with `python bench/memory_growth.py` on {info['machine']} "
             f"(torch {info['torch']}, {info['threads']} thread(s), CPU): demo preset, "
             f"{rows[-1]['global_step']} training steps in {rows[-1]['t_s']} s.", "",
             "| when | stage | epoch | global step | VmRSS (MB) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['when']} | {r['stage']} | {r['epoch'] if r['epoch'] >= 0 else ''} | "
                     f"{r['global_step']} | {r['rss_mb']:.1f} |")
    epochs = [r for r in rows if r["when"] == "epoch"]
    lines += ["", f"Growth after the first epoch (max later VmRSS - VmRSS at the end of epoch 1): "
                  f"**{growth_after_first_epoch(rows):+.1f} MB**; "
                  f"from the first to the last epoch end: **{epochs[-1]['rss_mb'] - epochs[0]['rss_mb']:+.1f} MB**; "
                  f"peak {max(r['rss_mb'] for r in rows):.1f} MB. Within each stage (later epoch ends - "
                  f"its first epoch end): "
                  + ", ".join(f"{k} {v:+.1f} MB" for k, v in growth_within_stages(rows).items()) + "."]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC}: markers {BEGIN} / {END} not found")
    pre, rest = doc.split(BEGIN, 1)
    _, post = rest.split(END, 1)
    DOC.write_text(f"{pre}{BEGIN}\n{text}\n{END}{post}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--joint-epochs", type=int, help="epochs of the end-to-end stage (demo: 6)")
    ap.add_argument("--max-steps-per-epoch", type=int, default=0, help="0 = whole epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--json")
    ap.add_argument("--write-doc", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    a = ap.parse_args(argv)
    import torch
    from sgma.engine.config import preset
    from sgma.engine.data.registry import load_data
    torch.set_num_threads(a.threads)
    cfg = preset("demo")
    cfg.train.device = "cpu"
    if a.joint_epochs is not None:
        cfg.train.joint.epochs = a.joint_epochs
    cfg.train.max_steps_per_epoch = a.max_steps_per_epoch
    ds = load_data(cfg.data)
    with tempfile.TemporaryDirectory() as d:
        rows = measure(cfg, ds, Path(d) / "run")
    info = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} Linux, "
            f"{len(re.findall(r'^processor', Path('/proc/cpuinfo').read_text(), re.M))} cores",
            "torch": torch.__version__, "threads": a.threads}
    text = markdown(rows, info)
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps({"info": info, "rows": rows,
                                            "growth_after_first_epoch_mb": growth_after_first_epoch(rows),
                                            "growth_within_stages_mb": growth_within_stages(rows)}, indent=2))
    if a.write_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
