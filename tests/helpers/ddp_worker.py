"""Run by tests/test_trainer.py under ``torchrun --standalone --nproc_per_node=2``: trains a tiny
config with DDP on CPU (gloo) and saves this rank's final parameters to OUT/params_rank{R}.pt.
Each rank gets its own run folder OUT/rank{R}, so the test can check that only rank 0 wrote files."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from sgma.engine import events as ev
from sgma.engine.config import preset
from sgma.engine.data.synthetic import make_synthetic
from sgma.engine.trainer import Trainer


def tiny_config():
    cfg = preset("tiny")
    for stage in (cfg.train.warmup, cfg.train.grouping, cfg.train.pretrain_parts, cfg.train.joint):
        stage.epochs = 1
    cfg.train.batch_size = 4
    cfg.train.grouping_images = 16
    cfg.train.max_steps_per_epoch = 2
    cfg.train.device = "cpu"
    cfg.train.seed = 3
    return cfg


def main(out: Path) -> int:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    ds = make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)
    trainer = Trainer(tiny_config(), out / f"rank{rank}", dataset=ds)
    last = None
    for e in trainer.run():
        last = e
        if isinstance(e, ev.Failed):
            print(f"rank {rank} failed: {e.error}\n{e.traceback}", file=sys.stderr)
            return 1
    assert isinstance(last, ev.Finished) and not last.stopped, last
    params = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    torch.save({"world": trainer.world, "rank": trainer.rank, "params": params}, out / f"params_rank{rank}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
