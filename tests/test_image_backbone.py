"""``model.image_backbone``: the image branch reads a CNN of its own while the attention maps keep
the attention CNN (two taps, docs/choices.md). Shapes, which net trains in which stage, the frozen
cache against the uncached forward, and the refused combination."""
from __future__ import annotations

import pytest
import torch

from sgma.engine.backbone_cache import BackboneCache
from sgma.engine.config import ConfigError, ModelConfig
from sgma.engine.model import SGMA


def two_tap(**kw) -> ModelConfig:
    base = dict(backbone="small_cnn", image_backbone="resnet18", pretrained="none", attention_size=64,
                image_size=32, part_size=32, crop_hidden=16, attention_reduction=4)
    base.update(kw)
    return ModelConfig(**base)


def test_image_branch_uses_its_own_network_and_maps_the_attention_network():
    torch.manual_seed(0)
    model = SGMA(two_tap(), semantic_dim=5, n_train_classes=3)
    out = model(torch.rand(2, 3, 64, 64), torch.rand(3, 5))
    assert model.global_net is not None and model.image_branch_net is model.global_net
    assert out.thetas[0].shape == (2, 512)                       # resnet18's channels, not small_cnn's
    assert out.thetas[1].shape == (2, model.part_nets[0].out_channels)
    assert out.channel_weights.shape[-1] == model.image_net.out_channels   # a_i over the attention CNN
    assert model.projections[0].W.in_features == 512
    # without the option the image branch is the attention CNN itself
    plain = SGMA(two_tap(image_backbone=""), semantic_dim=5, n_train_classes=3)
    assert plain.global_net is None and plain.image_branch_net is plain.image_net


def test_frozen_cache_gives_the_uncached_scores_with_two_networks():
    torch.manual_seed(1)
    model = SGMA(two_tap(freeze_backbone=True), semantic_dim=5, n_train_classes=3).eval()
    x, sem = torch.rand(3, 3, 64, 64), torch.rand(3, 5)
    cache = BackboneCache(model.image_net, 32, theta_backbone=model.theta_net)
    frozen = cache.get(x, [0, 1, 2], [False] * 3)
    assert frozen.image_theta.shape == (3, 512)
    with torch.no_grad():
        squares = model.cropper(model.attend(x)[1])
        direct = model(x, sem, squares=squares)
        cached = model(x, sem, squares=squares, frozen=frozen)
        assert torch.allclose(direct.scores, cached.scores, atol=1e-5)
        assert torch.allclose(model.image_scores(x, sem), model.image_scores(x, sem, frozen=frozen), atol=1e-5)


def test_frozen_two_tap_model_keeps_both_networks_fixed_and_in_eval():
    model = SGMA(two_tap(freeze_backbone=True), semantic_dim=5, n_train_classes=3).train()
    assert not any(p.requires_grad for p in model.global_net.parameters())
    assert not model.global_net.training and not model.image_net.training
    assert all(p.requires_grad for p in model.part_nets[0].parameters())


def test_parts_only_warms_up_the_attention_network_not_the_image_one():
    model = SGMA(two_tap(use_image_branch=False), semantic_dim=5, n_train_classes=3)
    assert model.theta_net is model.image_net


def test_image_backbone_with_shared_backbone_is_refused_by_name():
    with pytest.raises(ConfigError, match="image_backbone"):
        two_tap(shared_backbone=True).validate()
