"""Stage 1 by deep feature factorisation (stages.nmf_channel_targets): on planted features, the
two compact part factors are chosen, the background factor on the map's border is not."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgma.engine import config as C
from sgma.engine.stages import factor_shape, nmf_channel_targets


def planted(n=40, h=12, w=12, seed=0):
    """Channels 0-3 fire on a small blob (the 'head'), 4-7 on another blob ('tail'), 8-11 on the
    border ring (background); blob positions move per image."""
    rng = np.random.default_rng(seed)
    f = np.zeros((n, 12, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        for chans, (cy, cx) in ((range(0, 4), rng.integers(3, 6, 2)), (range(4, 8), rng.integers(6, 9, 2))):
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
            for c in chans:
                f[i, c] = blob * rng.uniform(0.8, 1.2)
        ring = np.zeros((h, w))
        ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = 1, 1, 1, 1
        for c in range(8, 12):
            f[i, c] = ring * rng.uniform(0.8, 1.2)
    return torch.from_numpy(f + 0.01 * rng.random(f.shape).astype(np.float32))


def testfactor_shape_by_hand():
    maps = np.zeros((1, 2, 4, 4))
    maps[0, 0, 1, 1] = 1.0                       # one interior cell: no border mass, spread 0
    maps[0, 1, 0, 0] = maps[0, 1, 0, 3] = 1.0    # two corners: all on the border, half at distance 3/4
    border, spread = factor_shape(maps)
    assert border == pytest.approx([0.0, 1.0])
    assert spread == pytest.approx([0.0, 0.5 * 3 / 4])


def test_nmf_targets_pick_the_compact_parts_not_the_background():
    targets, chosen = nmf_channel_targets(planted(), n_parts=2, seed=0, k=3)
    assert targets.shape == (2, 12) and float(targets.min()) >= 0 and float(targets.max()) <= 1
    owners = {int(t[:4].mean() > 0.5) * 1 + int(t[4:8].mean() > 0.5) * 2 for t in targets}
    assert owners == {1, 2}                     # one target per blob group
    assert float(targets[:, 8:].max()) < 0.2    # the border group is in neither part


def test_config_accepts_nmf_and_refuses_others():
    cfg = C.RunConfig()
    cfg.train.channel_grouping = "nmf"
    cfg.validate()
    cfg.train.channel_grouping = "pca"
    with pytest.raises(C.ConfigError, match="kmeans, colocation, nmf"):
        cfg.validate()


def test_trainer_stage1_with_nmf_logs_it_and_pretrains_soft_targets(tmp_path):
    from sgma.engine import events as ev
    from sgma.engine.data.synthetic import make_synthetic
    from sgma.engine.trainer import Trainer
    from test_trainer import tiny_config
    torch.set_num_threads(1)
    cfg = tiny_config()
    cfg.train.channel_grouping = "nmf"
    cfg.train.joint.epochs = cfg.train.pretrain_parts.epochs = 0
    ds = make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)
    tr = Trainer(cfg, tmp_path, dataset=ds)
    logs = [e.message for e in tr.run() if isinstance(e, ev.Log)]
    assert any(m.startswith("NMF (factors") for m in logs), logs
    assert len(tr.channel_groups) == tr.model.image_net.out_channels
