"""Trainer options of stages 1 and 2: ``channel_grouping`` (k-means or co-location, with its
fallback) and ``cropper_fit_steps`` (0 keeps the cropping net at its soft-argmax start)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgma.engine import events as ev
from sgma.engine.config import ConfigError
from sgma.engine.data.synthetic import make_synthetic
from sgma.engine.trainer import Trainer

from test_trainer import run_all, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds():
    return make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)


def _logs(events) -> list[str]:
    return [e.message for e in events if isinstance(e, ev.Log)]


def test_colocation_grouping_runs_in_stage_1_and_says_which_grouping_it_used(ds, tmp_path):
    cfg = tiny_config()
    cfg.train.channel_grouping = "colocation"
    cfg.train.retrain_on_trainval = False       # one stage 1: the retrain would group again
    t = Trainer(cfg, tmp_path, dataset=ds)
    logs = _logs(run_all(t))
    grouping = [m for m in logs if "grouped" in m]
    assert len(grouping) == 1
    groups = np.array(t.channel_groups)
    assert len(groups) == t.model.image_net.out_channels
    assert set(groups) <= {-1, 0, 1}
    if grouping[0].startswith("co-location"):
        # co-location leaves channels outside every part; both parts have channels
        assert (groups == 0).any() and (groups == 1).any()
    else:                                   # the small untrained CNN has no consistent groups
        assert any("falling back to k-means" in m for m in logs)
        assert grouping[0].startswith("k-means")


def test_kmeans_grouping_is_the_default_and_says_so(ds, tmp_path):
    t = Trainer(tiny_config(), tmp_path, dataset=ds)
    logs = _logs(run_all(t))
    assert [m for m in logs if "grouped" in m][0].startswith("k-means grouped")
    assert not any("co-location" in m for m in logs)


def _cropper_through_stage_2(ds, tmp_path, fit_steps: int):
    """Stages 0-2 with ``cropper_fit_steps`` and the cropping net out of the stage-2 optimizer:
    (log messages, cropper state at the start of stage 2, cropper after it)."""
    cfg = tiny_config()
    cfg.train.cropper_fit_steps = fit_steps
    cfg.train.pretrain_parts.cropping_lr_scale = 0.0
    cfg.train.joint.enabled = False
    cfg.train.retrain_on_trainval = False       # the cropper of one stage 2: the retrain would refit it
    t = Trainer(cfg, tmp_path, dataset=ds)
    start = {}

    def at_stage(trainer, e, events):
        if isinstance(e, ev.StageStarted) and e.stage == "pretrain_parts":
            start.update({k: v.detach().clone() for k, v in trainer.model.cropper.state_dict().items()})

    logs = _logs(run_all(t, at_stage))
    return logs, start, t.model.cropper.state_dict()


def test_cropper_fit_steps_zero_keeps_the_soft_argmax_start_through_stage_2(ds, tmp_path):
    logs, start, end = _cropper_through_stage_2(ds, tmp_path, 0)
    assert any(m.startswith("cropping net kept at its start") for m in logs)
    for k, v in end.items():
        assert torch.equal(v, start[k]), k


def test_cropper_fit_steps_move_the_cropper(ds, tmp_path):
    logs, start, end = _cropper_through_stage_2(ds, tmp_path, 20)
    assert any(m.startswith("cropping net fitted to pseudo squares") for m in logs)
    assert any(not torch.equal(v, start[k]) for k, v in end.items())


def test_negative_cropper_fit_steps_are_refused_by_name():
    cfg = tiny_config()
    cfg.train.cropper_fit_steps = -1
    with pytest.raises(ConfigError, match="train.cropper_fit_steps"):
        cfg.validate()
