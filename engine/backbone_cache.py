"""Feature cache for a frozen backbone (issue 14): compute what cannot change once per run.

When ``model.freeze_backbone`` is set, the image CNN of Figure 1 is a fixed function (its weights
never train and its batch norm stays in eval mode). Two of its outputs are then pure functions of
the image and of the flip that augmentation chose:

- the attention-input feature maps ``b`` of Eq. 1-3, (C, h, w) at ``attention_size``, kept in the
  backbone's compact pieces (``Backbone.pieces``: the stride-32 channels of
  ``efficientnet_lite0_s16_s32`` at their own 10 x 10, upsampled when read);
- the image branch's pooled feature ``theta_image(x)`` (Eq. 9), (C,) at ``image_size``.

``BackboneCache`` keeps both per (dataset image, flip) in memory, filled lazily from the batches the
trainer already holds (the first epoch pays, later epochs and validation read). Parts are cropped
from the image at every step as before, because the squares move; only the frozen outputs are kept.

Size (stated, and bounded by ``max_bytes``): ``4 * C * (h * w + 1)`` bytes per entry (``C * h * w +
C'`` floats when the image branch has its own CNN of C' channels), float32 so the
cached path matches the uncached one to float tolerance. For the ``cpu`` preset (C = 112, 20 x 20
maps) that is 179 KB per entry: 1,837 cub50_plus training images x 2 flips = 658 MB. Entries past the
bound are computed each time (nothing is evicted; the first ones stay), and ``stats()`` says how many.
The cache lives for one run: it is keyed by dataset index and flip only, and a new Trainer (new
weights, input size or images) starts a new one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .loader import resized

DEFAULT_MAX_BYTES = 4 * 1024 ** 3


@dataclass(frozen=True)
class FrozenFeatures:
    """What the frozen backbone gives for a batch: attention features and the image-branch theta."""
    attention: torch.Tensor      # (B, C, h, w)
    image_theta: torch.Tensor    # (B, C)
    # (B, h, w) the object direction's projection (model.far_end_square), when the cache has it
    object_projection: Optional[torch.Tensor] = None


def frozen_features(backbone, images: torch.Tensor, image_size: int, theta_backbone=None,
                    attention_size: Optional[int] = None) -> FrozenFeatures:
    """The frozen backbone's two outputs for (B, 3, S, S) images, exactly as SGMA.forward computes
    them: features of the images resized to ``attention_size`` (as read when None), and GAP
    features of the image resized to ``image_size`` (computed by ``theta_backbone`` when the image
    branch has its own CNN, ``SGMA.theta_net``)."""
    with torch.no_grad():
        feats = backbone(images if attention_size is None else resized(images, attention_size))
    return FrozenFeatures(feats, frozen_theta(backbone, images, image_size, theta_backbone))


def frozen_theta(backbone, images: torch.Tensor, image_size: int, theta_backbone=None) -> torch.Tensor:
    """The image branch's pooled feature of ``images`` resized to ``image_size`` (Eq. 9's theta)."""
    with torch.no_grad():
        return (theta_backbone or backbone)(resized(images, image_size)).mean(dim=(2, 3))


def feature_pieces(backbone, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``backbone(images)`` in the compact pieces a cache keeps (``Backbone.pieces``; one piece,
    the output itself, for any other module)."""
    split = getattr(backbone, "pieces", None)
    return split(images) if split is not None else (backbone(images),)


def assembled(backbone, pieces: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The inverse of ``feature_pieces``: the backbone's output."""
    join = getattr(backbone, "assemble", None)
    return join(pieces) if join is not None else pieces[0]


class BackboneCache:
    """Per (image index, flip) frozen features, held in memory up to ``max_bytes``."""

    def __init__(self, backbone, image_size: int, max_bytes: int = DEFAULT_MAX_BYTES, theta_backbone=None,
                 attention_size: Optional[int] = None):
        """``attention_size``: the side the attention CNN reads, when images come larger
        (``model.part_source_size``); None reads them as they come."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.backbone, self.image_size, self.max_bytes = backbone, image_size, max_bytes
        self.attention_size = attention_size
        self.theta_backbone = theta_backbone if theta_backbone is not backbone else None
        self._store: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}
        self.bytes = 0
        self.hits = self.misses = self.refused = 0
        self.object_fn: Optional[Callable] = None
        self._object_key: Optional[torch.Tensor] = None
        self._objects: dict[int, torch.Tensor] = {}

    def set_object_fn(self, fn: Callable, key: torch.Tensor) -> None:
        """Also give each batch the object projection ``fn(images)`` (B, h, w), kept per dataset
        image (a flipped row gets the mirror of its image's). ``key``: what the projections depend
        on (the object direction); the kept ones are dropped when it changes."""
        if self._object_key is None or not torch.equal(self._object_key, key):
            self._objects.clear()
        self.object_fn, self._object_key = fn, key.detach().clone()

    def _object_rows(self, images: torch.Tensor, keys: list[tuple[int, bool]]) -> torch.Tensor:
        missing = [k for k, (i, _) in enumerate(keys) if i not in self._objects]
        if missing:
            x = torch.stack([images[k].flip(-1) if keys[k][1] else images[k] for k in missing])
            with torch.no_grad():
                got = self.object_fn(x).detach().float().cpu()
            for j, k in enumerate(missing):
                self._objects[keys[k][0]] = got[j].clone()
        rows = [self._objects[i].flip(-1) if f else self._objects[i] for i, f in keys]
        return torch.stack(rows).to(images.device)

    def __len__(self) -> int:
        return len(self._store)

    def get(self, images: torch.Tensor, indices, flips) -> FrozenFeatures:
        """Features for a batch whose rows are dataset images ``indices`` with ``flips`` applied;
        rows not yet cached are computed from ``images`` (in one backbone call) and kept."""
        keys = [(int(i), bool(f)) for i, f in zip(indices, flips)]
        missing = [k for k, key in enumerate(keys) if key not in self._store]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh = {}
        if missing:
            nets = [n for n in (self.backbone, self.theta_backbone) if n is not None]
            was = [n.training for n in nets]
            for n in nets:
                n.eval()
            x = images[missing]
            with torch.no_grad():
                pieces = feature_pieces(self.backbone, x if self.attention_size is None else
                                        resized(x, self.attention_size))
            theta = frozen_theta(self.backbone, x, self.image_size, self.theta_backbone)
            for n, w in zip(nets, was):
                n.train(w)
            for j, k in enumerate(missing):
                entry = (tuple(p[j].detach().clone() for p in pieces), theta[j].detach().clone())
                fresh[k] = entry
                size = sum(p.numel() * p.element_size() for p in entry[0]) + entry[1].numel() * entry[1].element_size()
                if self.bytes + size <= self.max_bytes:
                    self._store[keys[k]] = entry
                    self.bytes += size
                else:
                    self.refused += 1
        rows = [fresh[k] if k in fresh else self._store[key] for k, key in enumerate(keys)]
        with torch.no_grad():
            feats = assembled(self.backbone, tuple(torch.stack([r[0][i] for r in rows]) for i in range(len(rows[0][0]))))
        objects = self._object_rows(images, keys) if self.object_fn is not None else None
        return FrozenFeatures(feats, torch.stack([r[1] for r in rows]), objects)

    def keys(self) -> list[tuple[int, bool]]:
        """The (image index, flip) pairs held."""
        return list(self._store)

    def entry(self, key: tuple[int, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """The held (attention features (C, h, w), image theta (C',)) of ``key``."""
        pieces, theta = self._store[key]
        with torch.no_grad():
            return assembled(self.backbone, tuple(p[None] for p in pieces))[0], theta

    def clear(self) -> None:
        """Forget every entry (the backbone's weights changed: engine/finetune.py)."""
        self._store.clear()
        self._objects.clear()
        self.bytes = 0

    def stats(self) -> dict:
        return {"entries": len(self._store), "bytes": self.bytes, "hits": self.hits, "misses": self.misses,
                "over_bound": self.refused, "max_bytes": self.max_bytes}
