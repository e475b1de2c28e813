"""From a ``ZSLDataset`` to batches of (B, 3, S, S) float tensors in [0, 1].

Images are resized to a square of the attention-input size (aspect ratio not kept: boxes scale
with the axes, and IoU is invariant to that). Augmentation is a horizontal flip decided by a hash
of (seed, epoch, image index), so an epoch's batches are the same whether or not the run was
interrupted and resumed. Decoded images can be kept in memory as uint8 (``cache=True``).
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data.base import DatasetError, ZSLDataset


def image_to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """PIL RGB image -> (3, size, size) float tensor in [0, 1], bilinear with antialiasing."""
    img = img.convert("RGB").resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def resized(images: torch.Tensor, side: int, antialias: bool = True) -> torch.Tensor:
    """(B, 3, S, S) -> (B, 3, side, side), bilinear (with antialiasing unless ``antialias`` is
    False); the images themselves when S = side."""
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=antialias)


def _flip(seed: int, epoch: int, index: int) -> bool:
    h = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=1).digest()[0]
    return bool(h & 1)


class ImageSet(torch.utils.data.Dataset):
    """Images of ``indices`` with labels remapped by ``label_map`` (class id -> training index)."""

    def __init__(self, dataset: ZSLDataset, indices: Sequence[int], size: int,
                 label_map: Optional[dict[int, int]] = None, augment: bool = False,
                 seed: int = 0, cache: bool = False):
        self.dataset, self.indices, self.size = dataset, list(indices), size
        self.label_map = label_map
        self.augment, self.seed, self.epoch = augment, seed, 0
        self._cache: Optional[dict[int, torch.Tensor]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i].float().div_(255.0)
        t = image_to_tensor(self.dataset.load_image(i), self.size)
        if self._cache is not None:
            self._cache[i] = (t * 255).round().to(torch.uint8)
        return t

    def preload(self) -> list[str]:
        """Decode every image into the in-memory cache now (needs ``cache=True``), so an unreadable
        file is named before training starts; returns the errors, one per bad file."""
        bad = []
        for i in self.indices:
            try:
                self._load(i)
            except DatasetError as e:
                bad.append(str(e))
        return bad

    def is_flipped(self, i: int) -> bool:
        """Whether dataset image ``i`` is flipped in the current epoch."""
        return self.augment and _flip(self.seed, self.epoch, i)

    def unflipped(self, k: int) -> torch.Tensor:
        """Image ``k`` of the set without augmentation (engine/finetune.py flips its own inputs)."""
        return self._load(self.indices[k])

    def __getitem__(self, k: int):
        i = self.indices[k]
        x = self._load(i)
        if self.is_flipped(i):
            x = x.flip(-1)
        label = self.dataset.items[i].label
        if self.label_map is not None:
            label = self.label_map[label]
        return x, label, i


class EpochOrder(torch.utils.data.Sampler):
    """A seeded permutation per (seed, stage, epoch), sharded over ranks, able to start mid-epoch."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world = rank, world
        self.key = (0, 0)
        self.start_batch = 0

    def set_epoch(self, stage: int, epoch: int, start_batch: int = 0) -> None:
        self.key, self.start_batch = (stage, epoch), start_batch

    def order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.key[0] * 10_007 + self.key[1])
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world > 1:   # equal shards (pad by wrapping) so every rank runs the same number of steps
            per = -(-self.n // self.world)
            order = (order * 2)[: per * self.world][self.rank::self.world]
        return order

    def n_batches(self) -> int:
        return -(-len(self.order()) // self.batch_size)

    def __iter__(self):
        order = self.order()[self.start_batch * self.batch_size:]
        return iter(order)

    def __len__(self) -> int:
        return max(len(self.order()) - self.start_batch * self.batch_size, 0)


def make_loader(images: ImageSet, order: EpochOrder, batch_size: int, num_workers: int = 0,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    # A private generator: each new DataLoader iterator draws its base seed from it, never from the
    # global torch RNG, so a resumed run (which builds one iterator more) keeps the global stream.
    return torch.utils.data.DataLoader(images, batch_size=batch_size, sampler=order, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=num_workers > 0,
                                       drop_last=False, generator=torch.Generator().manual_seed(order.seed))
