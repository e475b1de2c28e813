"""Long runs (issue 7): resident memory does not grow across epochs. A light version of
bench/memory_growth.py: ~60 training steps of the demo model on a tiny synthetic dataset, VmRSS
read from /proc/self/status after every epoch. The image cache and the first validation fill up
during epoch 1, so growth is measured from the end of the first epoch; each stage also has its own
working set (stage 3 trains the whole model), so growth within a stage is bounded more tightly."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from sgma.engine.config import preset
from sgma.engine.data.synthetic import make_synthetic

BENCH = Path(__file__).resolve().parents[1] / "bench" / "memory_growth.py"
BOUND_MB = 100.0          # after the first epoch, all stages included
STAGE_BOUND_MB = 50.0     # within one stage, from its first epoch end on

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")


def _bench():
    spec = importlib.util.spec_from_file_location("memory_growth", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["memory_growth"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_rss_does_not_grow_across_epochs(tmp_path):
    bench = _bench()
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = preset("tiny")
        tc = cfg.train
        tc.warmup.epochs, tc.grouping.epochs, tc.pretrain_parts.epochs, tc.joint.epochs = 3, 1, 3, 4
        tc.batch_size, tc.grouping_images, tc.max_steps_per_epoch, tc.device = 8, 32, 6, "cpu"
        tc.retrain_on_trainval = False      # the 60 steps and 11 epochs of one pass
        ds = make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)
        rows = bench.measure(cfg, ds, tmp_path / "run")
    finally:
        torch.set_num_threads(n)
    assert rows[-1]["global_step"] == 60
    assert sum(r["when"] == "epoch" for r in rows) == 11
    growth = bench.growth_after_first_epoch(rows)
    table = "\n".join(f"{r['when']:5s} {r['stage']:14s} {r['epoch']:3d} step {r['global_step']:3d} "
                      f"{r['rss_mb']:8.1f} MB" for r in rows)
    assert growth < BOUND_MB, f"RSS grew {growth:.1f} MB after the first epoch:\n{table}"
    within = bench.growth_within_stages(rows)
    assert set(within) == {"warmup", "pretrain_parts", "joint"}
    assert max(within.values()) < STAGE_BOUND_MB, f"RSS grew within a stage: {within}\n{table}"
    assert "| when |" in bench.markdown(rows, {"date": "d", "machine": "m", "torch": "t", "threads": 1})
