"""``model.shared_trunk`` (the image branch continues the attention CNN) and ``model.finetune_blocks``
(issue 13, the MA-CNN route, engine/finetune.py): stage 1 first fine-tunes the attention CNN's last
blocks on the seen classes, then groups its channels; nothing else changes those blocks, the
feature cache holds the fine-tuned features, a stop during the fine-tuning resumes to the same
model, and a bundle keeps exactly the tensors that differ from the packaged ImageNet weights."""
from __future__ import annotations

import pytest
import torch

from sgma.engine import events as ev
from sgma.engine.backbones import build_backbone, continued_backbone
from sgma.engine.backbone_cache import frozen_features
from sgma.engine.bundled import slim_state
from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
from sgma.engine.config import ConfigError, ModelConfig, preset
from sgma.engine.data.synthetic import make_synthetic
from sgma.engine.loader import ImageSet
from sgma.engine.trainer import Trainer

pytest.importorskip("efficientnet_lite_pytorch")

TUNED = 2                                   # the last two of the stride-16 cut's 11 blocks


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_continued_network_is_the_full_network_on_the_shared_cut():
    cut = build_backbone("efficientnet_lite0_s16", "imagenet").eval()
    full = build_backbone("efficientnet_lite0", "imagenet").eval()
    cont = continued_backbone(cut, "efficientnet_lite0_s16", "efficientnet_lite0", "imagenet").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(cont(x), full(x), atol=1e-5)
        assert cont.trunk.cut is cut                       # shared, not copied
        cut.trunk.blocks[-1]._project_conv.weight.mul_(0.5)
        assert not torch.allclose(cont(x), full(x), atol=1e-3)
    with pytest.raises(ValueError, match="model.shared_trunk: resnet18 does not continue efficientnet_lite0_s16"):
        continued_backbone(cut, "efficientnet_lite0_s16", "resnet18")


def test_config_names_what_finetune_blocks_needs():
    ok = dict(backbone="efficientnet_lite0_s16", freeze_backbone=True)
    ModelConfig(**ok, finetune_blocks=6).validate()
    with pytest.raises(ConfigError, match="needs model.freeze_backbone = true and that backbone"):
        ModelConfig(backbone="efficientnet_lite0_s16", finetune_blocks=2).validate()
    with pytest.raises(ConfigError, match="needs model.freeze_backbone = true and that backbone"):
        ModelConfig(backbone="vgg19", freeze_backbone=True, finetune_blocks=2).validate()
    with pytest.raises(ConfigError, match="efficientnet_lite0_s16 has 11 blocks, got 12"):
        ModelConfig(**ok, finetune_blocks=12).validate()
    with pytest.raises(ConfigError, match="model.shared_trunk needs model.image_backbone"):
        ModelConfig(shared_trunk=True).validate()
    cfg = tuned_config()
    cfg.train.finetune_epochs = 0
    with pytest.raises(ConfigError, match="train.finetune_epochs must be >= 1 with model.finetune_blocks"):
        cfg.validate()


def tuned_config():
    cfg = preset("cpu")
    m = cfg.model
    m.backbone = "efficientnet_lite0_s16"          # the cut whose blocks fine-tune
    m.finetune_blocks = TUNED
    m.attention_size, m.image_size, m.part_size, m.part_backbone, m.crop_hidden = 64, 64, 32, "small_cnn", 16
    tc = cfg.train
    tc.warmup.epochs, tc.grouping.epochs, tc.pretrain_parts.epochs, tc.joint.epochs = 1, 1, 1, 1
    tc.finetune_epochs = 1
    tc.batch_size, tc.grouping_images, tc.max_steps_per_epoch, tc.device = 8, 32, 2, "cpu"
    tc.retrain_on_trainval = False
    tc.mine_rounds = 0           # the shrunk model's 4 x 4 maps are too small to mine
    cfg.data.kind, cfg.data.root = "synthetic", ""
    return cfg


@pytest.fixture(scope="module")
def ds():
    return make_synthetic(n_train_per_class=4, n_test_seen_per_class=1, n_unseen_per_class=2, image_size=64)


def snapshot(t):
    return {k: v.detach().clone() for k, v in t.model.image_net.state_dict().items()}


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, ds):
    d = tmp_path_factory.mktemp("tuned")
    t = Trainer(tuned_config(), d, dataset=ds)
    seen, logs = {}, []
    for e in t.run():
        if isinstance(e, ev.Failed):
            pytest.fail(e.error + "\n" + e.traceback)
        if isinstance(e, ev.StageStarted):
            seen[e.stage] = snapshot(t)
        if isinstance(e, ev.Log):
            logs.append(e.message)
    return t, d, seen, logs


def test_stage_1_fine_tunes_the_last_blocks_and_nothing_else_moves_them(tuned_run):
    t, _, seen, logs = tuned_run
    imagenet = build_backbone("efficientnet_lite0_s16", "imagenet").state_dict()
    now = snapshot(t)
    first_tuned = len(t.model.image_net.trunk.blocks) - TUNED
    changed = {k for k in now if not torch.equal(now[k], imagenet[k])}
    assert changed, "stage 1 did not change the attention CNN"
    assert all(k.startswith("trunk.blocks.") and int(k.split(".")[2]) >= first_tuned for k in changed), changed
    assert not any("running_" in k for k in changed)              # batch-norm statistics stay ImageNet's
    assert all(torch.equal(seen["grouping"][k], imagenet[k]) for k in now)        # the warm-up leaves it
    for stage in ("pretrain_parts", "joint"):                                       # fixed after stage 1
        assert all(torch.equal(seen[stage][k], now[k]) for k in now), stage
    assert not any(p.requires_grad for p in t.model.image_net.parameters())
    full = build_backbone("efficientnet_lite0", "imagenet").state_dict()            # the image branch's CNN
    g = t.model.global_net.state_dict()
    assert all(torch.equal(g[k], full[k]) for k in full)
    assert any("fine-tuned the attention CNN's last 2 blocks" in m for m in logs)


def test_the_feature_cache_holds_the_fine_tuned_networks_features(tuned_run, ds):
    t, _, _, _ = tuned_run
    assert len(t.cache) > 0
    i, flip = t.cache.keys()[0]
    att, theta = t.cache.entry((i, flip))
    x = ImageSet(ds, [i], t.cfg.model.attention_size)[0][0][None]
    x = x.flip(3) if flip else x
    fresh = frozen_features(t.model.image_net, x, t.cfg.model.image_size, t.model.theta_net)
    assert torch.allclose(att, fresh.attention[0], atol=1e-3)
    assert torch.allclose(theta, fresh.image_theta[0], atol=1e-3)
    before = build_backbone("efficientnet_lite0_s16", "imagenet").eval()     # not the ImageNet network's
    with torch.no_grad():
        assert (before(x)[0] - att).abs().max() > 1e-2


def test_a_stop_during_the_fine_tuning_resumes_to_the_same_model(tuned_run, ds, tmp_path):
    t0, _, _, _ = tuned_run
    t = Trainer(tuned_config(), tmp_path, dataset=ds)
    for e in t.run():
        if isinstance(e, ev.Progress) and e.task == "fine-tuning the attention CNN":
            t.request_stop()
    imagenet = build_backbone("efficientnet_lite0_s16", "imagenet").state_dict()
    saved = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(saved["image_net." + k], imagenet[k]) for k in imagenet)   # put back
    again = Trainer(tuned_config(), tmp_path, dataset=ds, resume=True)
    for e in again.run():
        assert not isinstance(e, ev.Failed), getattr(e, "error", "")
    a, b = snapshot(again), snapshot(t0)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_bundle_keeps_only_the_tensors_that_differ_from_the_package(tuned_run):
    _, d, _, _ = tuned_run
    full = load_checkpoint(d / "best.pt")
    slim = slim_state(full)
    assert slim["packaged_weights"] == ["image_net", "global_net"]
    kept = {k for k in slim["model"] if k.startswith(("image_net.", "global_net."))}
    assert kept and all(k.startswith("image_net.trunk.blocks.") for k in kept)     # the tuned blocks only
    a, b = model_from_checkpoint(full).state_dict(), model_from_checkpoint(slim).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
