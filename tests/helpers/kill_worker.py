"""Child process of tests/test_reliability_kill.py; the test kills it with SIGKILL.

    python tests/helpers/kill_worker.py train RUN_DIR   train ``kill_config()`` on ``kill_dataset()``,
                                                 sleeping STEP_SLEEP_S after every step so that
                                                 the test's SIGKILL lands mid-epoch
    python tests/helpers/kill_worker.py save PATH        save checkpoint A at PATH, then start writing
                                                 checkpoint B and SIGKILL itself inside the fsync
                                                 of B's temporary file (a crash mid-write)
    python tests/helpers/kill_worker.py pair RUN_DIR     train ``pair_config()`` and SIGKILL itself right
                                                 after the third checkpoint write: between the
                                                 two writes (best.pt, last.pt) of the first best
                                                 epoch
    python tests/helpers/kill_worker.py hold RUN_DIR     take the run-folder lock, print "locked", sleep

The sleep is in the consumer of ``Trainer.run()`` (a generator), so the training itself is the
real code path; it only makes the kill's timing deterministic on a loaded machine.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

STEP_SLEEP_S = 0.4


def kill_config():
    """The demo preset cut down: 6 steps per epoch of batch 8, stages 1/1/1/1 epochs (18 steps),
    a checkpoint every 2 steps."""
    from sgma.engine.config import preset
    cfg = preset("demo")
    tc = cfg.train
    tc.warmup.epochs, tc.grouping.epochs, tc.pretrain_parts.epochs, tc.joint.epochs = 1, 1, 1, 1
    tc.batch_size, tc.grouping_images, tc.max_steps_per_epoch = 8, 32, 6
    tc.device, tc.seed, tc.num_workers = "cpu", 0, 0
    tc.checkpoint_every_steps = 2
    tc.retrain_on_trainval = False      # one pass: the kill and the resume are of the selection run
    return cfg


def kill_dataset():
    from sgma.engine.data.synthetic import make_synthetic
    return make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=192)


def train(run_dir: Path) -> int:
    import torch
    from sgma.engine import events as ev
    from sgma.engine.trainer import Trainer
    torch.set_num_threads(1)
    for e in Trainer(kill_config(), run_dir, dataset=kill_dataset()).run():
        if isinstance(e, ev.Failed):
            print(f"failed: {e.error}", file=sys.stderr)
            return 1
        if isinstance(e, ev.Step):
            time.sleep(STEP_SLEEP_S)
    return 0


def save(path: Path) -> int:
    import torch
    from sgma.engine.checkpoint import save_checkpoint
    save_checkpoint({"which": "A", "weights": torch.arange(1000), "position": {"global_step": 2}}, path)

    def die(fd):                      # the temporary file of B is written but not yet synced/renamed
        os.kill(os.getpid(), signal.SIGKILL)

    os.fsync = die
    save_checkpoint({"which": "B", "weights": torch.arange(100_000), "position": {"global_step": 4}}, path)
    return 0                          # never reached


def pair_config():
    """The tiny preset, 1 epoch per stage of 2 steps, best.pt chosen from stage 2 on (so the
    third checkpoint write is the first of a best epoch's pair)."""
    from sgma.engine.config import preset
    cfg = preset("tiny")
    tc = cfg.train
    tc.warmup.epochs = tc.grouping.epochs = tc.pretrain_parts.epochs = tc.joint.epochs = 1
    tc.batch_size, tc.grouping_images, tc.max_steps_per_epoch, tc.device = 8, 16, 2, "cpu"
    tc.select_from = "parts"
    return cfg


def pair_dataset():
    from sgma.engine.data.synthetic import make_synthetic
    return make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)


def pair(run_dir: Path) -> int:
    import torch
    from sgma.engine import trainer as trainer_mod
    torch.set_num_threads(1)
    real, writes = trainer_mod.save_checkpoint, []

    def save_then_die(state, path):
        out = real(state, path)
        writes.append(Path(path).name)
        print(f"wrote {Path(path).name}", flush=True)
        if len(writes) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    trainer_mod.save_checkpoint = save_then_die
    for e in trainer_mod.Trainer(pair_config(), run_dir, dataset=pair_dataset()).run():
        pass
    return 0                          # never reached


def hold(run_dir: Path) -> int:
    from sgma.engine.runlock import RunLock
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir).acquire()
    print("locked", flush=True)
    time.sleep(120)
    lock.release()
    return 0


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    sys.exit({"train": train, "save": save, "pair": pair, "hold": hold}[mode](target))
