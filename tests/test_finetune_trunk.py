"""``model.shared_trunk`` and ``model.finetune_blocks`` (issue 13, the MA-CNN route): the image
branch continues the attention CNN, the warm-up fine-tunes the attention CNN's last blocks through
the image branch's loss, every later stage and the feature cache read the fine-tuned network
fixed, and a bundle keeps exactly the tensors that differ from the packaged ImageNet weights."""
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
from sgma.engine.model import SGMA
from sgma.engine.trainer import Trainer

pytest.importorskip("efficientnet_lite_pytorch")

TUNED = 2                                   # the last two of the stride-16 cut's 11 blocks


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
    with pytest.raises(ConfigError, match="model.finetune_blocks .* needs model.freeze_backbone = true and "
                                          "model.shared_trunk = true"):
        ModelConfig(backbone="efficientnet_lite0_s16", image_backbone="efficientnet_lite0", freeze_backbone=True,
                    finetune_blocks=2).validate()
    with pytest.raises(ConfigError, match="model.shared_trunk needs model.image_backbone"):
        ModelConfig(shared_trunk=True).validate()
    with pytest.raises(ConfigError, match="model.finetune_blocks must be >= 0"):
        ModelConfig(finetune_blocks=-1).validate()


def tuned_config():
    cfg = preset("cpu")
    m = cfg.model
    m.shared_trunk, m.finetune_blocks = True, TUNED
    m.attention_size, m.image_size, m.part_size, m.part_backbone, m.crop_hidden = 64, 64, 32, "small_cnn", 16
    tc = cfg.train
    tc.warmup.epochs, tc.grouping.epochs, tc.pretrain_parts.epochs, tc.joint.epochs = 2, 1, 1, 1
    tc.warmup.backbone_lr_scale = 0.5
    tc.batch_size, tc.grouping_images, tc.max_steps_per_epoch, tc.device = 8, 32, 2, "cpu"
    tc.retrain_on_trainval = False
    cfg.data.kind, cfg.data.root = "synthetic", ""
    return cfg


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    ds = make_synthetic(n_train_per_class=4, n_test_seen_per_class=1, n_unseen_per_class=2, image_size=64)
    d = tmp_path_factory.mktemp("tuned")
    t = Trainer(tuned_config(), d, dataset=ds)
    seen = {}
    for e in t.run():
        if isinstance(e, ev.Failed):
            pytest.fail(e.error + "\n" + e.traceback)
        if isinstance(e, ev.StageStarted):
            seen[e.stage] = {k: v.detach().clone() for k, v in t.model.image_net.state_dict().items()}
            seen[e.stage + ":grad"] = t.model.backbone_training
    return t, d, ds, seen


def test_the_warm_up_fine_tunes_the_last_blocks_and_later_stages_hold_them(tuned_run):
    t, _, _, seen = tuned_run
    imagenet = SGMA(tuned_config().model, t.sem_all.shape[1], len(t.train_classes)).state_dict()
    now = t.model.image_net.state_dict()
    first_tuned = len(t.model.image_net.trunk.blocks) - TUNED
    changed = {k for k in now if not torch.equal(now[k], imagenet["image_net." + k])}
    assert changed, "the warm-up did not change the attention CNN"
    assert all(k.startswith("trunk.blocks.") and int(k.split(".")[2]) >= first_tuned for k in changed), changed
    assert not any("running_" in k for k in changed)              # batch-norm statistics stay ImageNet's
    assert seen["warmup:grad"] and not seen["grouping:grad"] and not t.model.backbone_training
    # from stage 1 on the network is what the warm-up left
    for stage in ("grouping", "pretrain_parts", "joint"):
        assert all(torch.equal(seen[stage][k], now[k]) for k in now), stage
    # the image branch's own top layers never train
    g = t.model.global_net.state_dict()
    assert all(torch.equal(g[k], imagenet["global_net." + k]) for k in g if k.startswith("trunk.top."))


def test_the_feature_cache_holds_the_fine_tuned_networks_features(tuned_run):
    t, _, ds, _ = tuned_run
    assert len(t.cache) > 0
    (i, flip), (att, theta) = next(iter(t.cache._store.items()))
    x = ImageSet(ds, [i], t.cfg.model.attention_size)[0][0][None]
    x = x.flip(3) if flip else x
    fresh = frozen_features(t.model.image_net, x, t.cfg.model.image_size, t.model.theta_net)
    assert torch.allclose(att, fresh.attention[0], atol=1e-3)
    assert torch.allclose(theta, fresh.image_theta[0], atol=1e-3)
    # and not the ImageNet network's (a cache filled before or during the fine-tuning)
    before = build_backbone("efficientnet_lite0_s16", "imagenet").eval()
    with torch.no_grad():
        assert (before(x)[0] - att).abs().max() > 1e-2


def test_a_bundle_keeps_only_the_tensors_that_differ_from_the_package(tuned_run):
    _, d, _, _ = tuned_run
    full = load_checkpoint(d / "best.pt")
    slim = slim_state(full)
    assert slim["packaged_weights"] == ["image_net", "global_net"]
    kept = {k for k in slim["model"] if k.startswith(("image_net.", "global_net."))}
    assert kept and all(".blocks." in k for k in kept)          # the tuned blocks (under both names)
    assert not any(k.startswith("global_net.trunk.top.") for k in kept)
    a, b = model_from_checkpoint(full).state_dict(), model_from_checkpoint(slim).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
