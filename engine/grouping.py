"""Stage 1's channel grouping, one entry point over its three methods (``train.channel_grouping``):
the paper's k-means over channel peaks (engine/stages.py), co-location (engine/colocation.py) and
deep feature factorisation (NMF, engine/stages.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .colocation import colocation_channel_groups
from .stages import NMF_FACTORS, kmeans_channel_groups, nmf_channel_targets, pseudo_label_targets


@dataclass
class ChannelGrouping:
    """Stage 1's grouping: each channel's part (-1: none), the a_i targets (n, C), and how."""
    groups: np.ndarray
    targets: torch.Tensor
    how: str
    fell_back: bool = False     # co-location found too few groups; k-means was used


def group_channels(features: torch.Tensor, n_parts: int, method: str, seed: int = 0,
                   grouping_channels: Optional[int] = None) -> ChannelGrouping:
    """Stage 1's channel grouping (``train.channel_grouping``: "kmeans", the paper's; "colocation";
    "nmf") over the leading ``grouping_channels`` of ``features`` (N, C, H, W) (default all). The
    channels after them (the coarse context of ``efficientnet_lite0_s16_s32``) join no group: their
    targets are 0, so Eq. 2's pretrained a_i start near 0 on them."""
    fine = features[:, :grouping_channels]
    groups, how, targets, fell_back = np.zeros(0, dtype=np.int64), "co-location", None, False
    if method == "nmf":
        targets, factors = nmf_channel_targets(fine, n_parts, seed)
        groups = np.where(targets.max(dim=0).values.numpy() >= 0.5, targets.argmax(dim=0).numpy(), -1)
        how = f"NMF (factors {factors} of {NMF_FACTORS}; channels with loading >= 0.5 of the part's largest)"
    if method == "colocation":
        groups = colocation_channel_groups(fine, n_parts, seed)
        fell_back = len(groups) == 0
    if len(groups) == 0:
        groups, how = kmeans_channel_groups(fine, n_parts, seed), "k-means"
    context = features.shape[1] - fine.shape[1]
    if context:
        groups = np.r_[groups, np.full(context, -1, dtype=groups.dtype)]
        targets = None if targets is None else F.pad(targets, (0, context))
        how += f" of the {fine.shape[1]} fine channels ({context} context channels in no group)"
    return ChannelGrouping(groups, pseudo_label_targets(groups, n_parts) if targets is None else targets,
                           how, fell_back)
