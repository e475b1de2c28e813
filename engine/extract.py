"""Batched, autograd-free pass of a trained model over dataset images: compatibility scores against
every class, class-centre features, part squares and (optionally) attention maps."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .data.base import ZSLDataset
from .loader import EpochOrder, ImageSet, make_loader


@torch.no_grad()
def extract(model, dataset: ZSLDataset, indices: Sequence[int], batch_size: int = 32,
            device: str | torch.device = "cpu", keep_maps: bool = False, num_workers: int = 0,
            images: ImageSet | None = None, cache=None, progress=None) -> dict[str, np.ndarray]:
    """``cache``: a ``BackboneCache`` of the model's frozen image CNN (engine/backbone_cache.py);
    images are read unflipped, so its entries are shared with training's unflipped ones."""
    was_training = model.training
    model.eval()
    sem = torch.as_tensor(dataset.semantics, dtype=torch.float32, device=device)
    images = images or ImageSet(dataset, indices, model.cfg.input_size)
    loader = make_loader(images, EpochOrder(len(images), batch_size, 0, shuffle=False), batch_size, num_workers)
    out: dict[str, list] = {"scores": [], "cct": [], "squares": [], "labels": [], "indices": [], "maps": []}
    for x, y, idx in loader:
        x = x.to(device)
        frozen = cache.get(x, idx.tolist(), [False] * len(idx)) if cache is not None else None
        o = model(x, sem, frozen=frozen)
        out["scores"].append(o.scores.float().cpu().numpy())
        out["cct"].append(o.cct_features.float().cpu().numpy())
        out["squares"].append(o.squares.float().cpu().numpy())
        out["labels"].append(np.asarray(y))
        out["indices"].append(np.asarray(idx))
        if keep_maps:
            out["maps"].append(o.maps.float().cpu().numpy().astype(np.float16))
        if progress is not None:        # called with the batch's size; may raise to cancel
            progress(len(idx))
    model.train(was_training)
    res = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in out.items() if k != "maps"}
    if keep_maps:
        res["maps"] = np.concatenate(out["maps"]) if out["maps"] else np.zeros((0,))
    return res
