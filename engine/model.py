"""The SGMA model, wired as the paper's Figure 1.

    image (448) --CNN--> features --multi-attention subnet (Eq. 1-3)--> attention maps M_1..M_n
    M_i --cropping subnet (Eq. 7)--> square (t_x, t_y, t_s) --boxcar mask + zoom (Eq. 8)--> part i (224)
    image (224) and each part --separate CNNs + GAP--> theta_i(x) --W_i--> phi_i(x)
    scores: sum_i phi_i(x) . phi(y)            (embedding softmax, Eq. 9, late fusion)
    phi_cct(x) = [phi_1(x), ..., phi_n(x)]     (class-centre triplet branch, Eq. 10)

Choices where the paper is silent (docs/choices.md): the attention subnet reads the feature maps
of the image branch's CNN run on the 448 px input (weights shared with the 224 px image branch),
unless ``model.image_backbone`` names another CNN for the image branch (two networks, e.g. a
stride-16 cut of EfficientNet-Lite0 for the maps and its full stride-32 network for the image);
the class-centre feature is the concatenation of every branch's mapped feature (section 3.4 says
the features of the CNNs are concatenated); class centres live in that concatenated space.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .attention import MultiAttention, multi_attention_loss
from .backbone_cache import FrozenFeatures
from .backbones import Backbone, build_backbone, continued_backbone
from .config import ModelConfig
from .cropping import CroppingNet, crop_parts, peak_centroid
from .loader import resized
from .objectness import FarEndSquare
from .embedding import (SemanticProjection, class_center_triplet_loss, embedding_softmax_loss,
                        fused_compatibility, sgma_objective)


@dataclass
class SGMAOutput:
    maps: torch.Tensor                  # (B, n, h, w) attention maps, Eq. 3
    channel_weights: torch.Tensor       # (B, n, C) a_i, Eq. 2
    squares: torch.Tensor               # (B, n, 3) (t_x, t_y, t_s) fractions of the image side, Eq. 7
    parts: Optional[torch.Tensor]       # (B, n, 3, P, P) zoomed part images
    thetas: list[torch.Tensor]          # per branch (B, C_i) pooled visual features
    mapped: list[torch.Tensor]          # per branch (B, A) phi_i(x) = theta_i^T W_i
    scores: torch.Tensor                # (B, K) fused compatibility over the given semantics
    cct_features: torch.Tensor          # (B, n_branches * A) class-centre feature phi_cct(x)


class SGMA(nn.Module):
    def __init__(self, cfg: ModelConfig, semantic_dim: int, n_train_classes: int):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.image_net: Backbone = build_backbone(cfg.backbone, cfg.pretrained)
        # the image branch's own CNN when model.image_backbone names one; else it is image_net
        self.global_net: Optional[Backbone] = None
        if cfg.image_backbone:
            self.global_net = continued_backbone(self.image_net, cfg.backbone, cfg.image_backbone, cfg.pretrained) \
                if cfg.shared_trunk else build_backbone(cfg.image_backbone, cfg.pretrained)
        if cfg.freeze_backbone:
            self.image_net.requires_grad_(False)
            if self.global_net is not None:
                self.global_net.requires_grad_(False)
        n_part_nets = 0 if (cfg.shared_backbone or not cfg.use_parts) else cfg.n_parts
        part_arch = cfg.part_backbone or cfg.backbone
        self.part_nets = nn.ModuleList(build_backbone(part_arch, cfg.pretrained) for _ in range(n_part_nets))
        c = self.image_net.out_channels
        self.attention = MultiAttention(c, cfg.n_parts, cfg.attention_reduction)
        self.map_size = self._map_size()
        self.cropper = CroppingNet(self.map_size, cfg.crop_hidden, cfg.part_side_min, cfg.part_side_max,
                                   cfg.part_side_init, cfg.crop_temperature)
        self.branch_names = (["image"] if cfg.use_image_branch else []) + \
            ([f"part{i + 1}" for i in range(cfg.n_parts)] if cfg.use_parts else [])
        dims = [self._branch_net(name).out_channels for name in self.branch_names]
        self.projections = nn.ModuleList(SemanticProjection(d, semantic_dim) for d in dims)
        self.centers = nn.Parameter(torch.randn(n_train_classes, semantic_dim * len(self.branch_names)) * 0.1)
        # the object's far end for the second part (model.far_end_square, engine/objectness.py)
        self.far_end = FarEndSquare(self.image_branch_net.out_channels, cfg.part_side_min, cfg.part_side_max,
                                    cfg.object_side) if cfg.far_end_square else None
        # Without an image branch ("Parts only", Table 4) stage 0 still warms the attention CNN up.
        self.warmup_projection = None if cfg.use_image_branch else SemanticProjection(c, semantic_dim)

    def _map_size(self) -> tuple[int, int]:
        with torch.no_grad():
            was = self.image_net.training
            self.image_net.eval()
            f = self.image_net(torch.zeros(1, 3, self.cfg.attention_size, self.cfg.attention_size))
            self.image_net.train(was)
        return int(f.shape[2]), int(f.shape[3])

    @property
    def image_branch_net(self) -> Backbone:
        """The CNN of the image branch (Eq. 9's theta_image): image_net unless model.image_backbone is set."""
        return self.global_net if self.global_net is not None else self.image_net

    @property
    def theta_net(self) -> Backbone:
        """The CNN whose pooled output is the image-level theta: the image branch's, or without an
        image branch ("Parts only") the attention CNN that stage 0 warms up."""
        return self.image_branch_net if self.cfg.use_image_branch else self.image_net

    def stage_parameters(self, group: str) -> list[nn.Parameter]:
        """What a training stage updates (``config.Stage.trains``): "image_branch" (theta's CNN and
        the projection that scores it, stage 0), "attention" (Eq. 2's subnet, which the channel
        grouping of stage 1 fits by its own solver), "parts" (cropping net, part CNNs, projections and
        class centres, plus the CNN the parts share when ``shared_backbone``, stage 2), "all"."""
        if group == "all":
            return list(self.parameters())
        if group == "image_branch":
            mods = [self.theta_net, self.warmup_projection or self.projections[0]]
        elif group == "attention":
            mods = [self.attention]
        elif group == "parts":
            mods = [self.cropper, self.part_nets, self.projections] + ([self.image_net] if self.cfg.shared_backbone else [])
        else:
            raise ValueError(f"unknown parameter group {group!r}")
        return [p for mod in mods for p in mod.parameters()] + ([self.centers] if group == "parts" else [])

    def _branch_net(self, name: str) -> Backbone:
        if name == "image":
            return self.image_branch_net
        if len(self.part_nets) == 0:
            return self.image_net
        return self.part_nets[int(name[4:]) - 1]

    def train(self, mode: bool = True) -> "SGMA":
        super().train(mode)
        if self.cfg.freeze_backbone:      # a frozen pretrained CNN keeps its batch-norm statistics
            self.image_net.eval()
            self.image_branch_net.eval()
        return self

    def attention_input(self, images: torch.Tensor) -> torch.Tensor:
        """The images as the attention CNN reads them: resized (antialiased) to ``attention_size``
        when they were read larger for the part crops (``model.part_source_size``)."""
        return resized(images, self.cfg.attention_size)

    def attend(self, images: torch.Tensor, feats: Optional[torch.Tensor] = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Multi-attention subnet on the attention-size image: (features, maps, channel weights).
        ``feats``: the backbone's features of ``images`` when already known (a frozen-backbone cache)."""
        feats = self.image_net(self.attention_input(images)) if feats is None else feats
        maps, a = self.attention(feats)
        return feats, maps, a

    def object_features(self, images: torch.Tensor) -> torch.Tensor:
        """The fixed image-branch CNN's features of the image resized to ``object_size``: the cell
        descriptors of the object mask (engine/objectness.py)."""
        with torch.no_grad():
            return self.image_branch_net(resized(images, self.cfg.object_size, antialias=False))

    def object_projection(self, images: torch.Tensor, frozen: Optional[FrozenFeatures] = None) -> torch.Tensor:
        """(B, 3, S, S) -> (B, h, w): the object direction's projection (needs ``far_end``); the
        feature cache's when ``frozen`` holds it."""
        if frozen is not None and frozen.object_projection is not None:
            return frozen.object_projection
        return self.far_end.project(self.object_features(images))

    @property
    def far_end_map(self) -> Optional[int]:
        """The map whose square is the object's far end (``model.far_end_square``, fitted), else None."""
        return self.far_end.replaced_map if self.far_end is not None else None

    @property
    def anchor_map(self) -> Optional[int]:
        """The map whose peak the far end is measured from (fitted ``far_end``), else None."""
        return self.far_end.anchor_map if self.far_end is not None else None

    def random_squares(self, batch: int, device) -> torch.Tensor:
        side = self.cfg.part_side_init
        centre = side / 2 + (1 - side) * torch.rand(batch, self.cfg.n_parts, 2, device=device)
        return torch.cat([centre, torch.full((batch, self.cfg.n_parts, 1), side, device=device)], dim=-1)

    def forward(self, images: torch.Tensor, semantics: torch.Tensor,
                squares: Optional[torch.Tensor] = None, with_parts: bool = True,
                frozen: Optional[FrozenFeatures] = None) -> SGMAOutput:
        """images (B, 3, S, S) in [0, 1] with S = ``cfg.input_size``; semantics (K, A) class rows.
        ``squares`` overrides the cropping net (pseudo boxes in stage 2, random parts). With
        ``model.far_end_square`` fitted, the non-anchor part's square is then replaced by the
        object's far end (engine/objectness.py).
        ``frozen``: the frozen image CNN's outputs for ``images`` (engine/backbone_cache.py)."""
        cfg = self.cfg
        if frozen is not None and not cfg.freeze_backbone:
            raise ValueError("cached backbone features need model.freeze_backbone = true")
        _, maps, a = self.attend(images, None if frozen is None else frozen.attention)
        if squares is None:
            squares = self.random_squares(images.shape[0], images.device) if cfg.random_parts \
                else self.cropper(maps)
            if cfg.crop_centre == "peak_centroid" and not cfg.random_parts:
                squares = torch.cat([peak_centroid(maps).to(squares.dtype), squares[..., 2:]], dim=-1)
        if self.far_end is not None and self.far_end.fitted and not cfg.random_parts:
            squares = self.far_end(self.object_projection(images, frozen), squares)
        use_parts = with_parts and cfg.use_parts
        parts = crop_parts(images, squares, cfg.part_size, cfg.boxcar_k) if use_parts else None
        thetas, mapped = [], []
        for name, proj in zip(self.branch_names, self.projections):
            if name == "image" and frozen is not None:
                thetas.append(frozen.image_theta)
                mapped.append(proj(frozen.image_theta))
                continue
            if name == "image":
                x = resized(images, cfg.image_size)
            elif parts is None:
                continue
            else:
                x = parts[:, int(name[4:]) - 1]
            theta = self._branch_net(name)(x).mean(dim=(2, 3))        # global average pooling
            thetas.append(theta)
            mapped.append(proj(theta))
        if not mapped:
            raise ValueError("no branch produced features: enable the image branch or parts")
        scores = fused_compatibility(mapped, semantics)
        cct = torch.cat(mapped, dim=1) if len(mapped) == len(self.branch_names) else \
            torch.cat(mapped + [torch.zeros_like(mapped[0])] * (len(self.branch_names) - len(mapped)), dim=1)
        return SGMAOutput(maps, a, squares, parts, thetas, mapped, scores, cct)

    def image_scores(self, images: torch.Tensor, semantics: torch.Tensor,
                     frozen: Optional[FrozenFeatures] = None) -> torch.Tensor:
        """Compatibility scores of the image branch alone (stage 0 warm-up, Table 4 "Baseline")."""
        proj = self.warmup_projection or self.projections[0]
        if frozen is not None:
            return proj(frozen.image_theta) @ semantics.t()
        x = resized(images, self.cfg.image_size)
        return proj(self.theta_net(x).mean(dim=(2, 3))) @ semantics.t()

    def losses(self, out: SGMAOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of Eq. 11 for a batch whose ``labels`` index the training classes."""
        cfg = self.cfg
        lam = cfg.lambda_div / (out.maps.shape[2] * out.maps.shape[3]) if cfg.div_normalise else cfg.lambda_div
        l_ma = multi_attention_loss(out.maps, cfg.compact_sigma * self.map_size[0], lam, cfg.div_margin)
        l_cls = embedding_softmax_loss(out.scores, labels)
        l_cct = class_center_triplet_loss(out.cct_features, self.centers, labels, cfg.cct_margin)
        ma_term = l_ma if cfg.use_ma_loss else l_ma.detach() * 0
        total = sgma_objective(ma_term, l_cls, l_cct, cfg.alpha_cls, cfg.alpha_cct)
        return {"total": total, "ma": l_ma.detach(), "cls": l_cls.detach(), "cct": l_cct.detach()}
