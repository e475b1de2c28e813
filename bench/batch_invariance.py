"""Do the frozen features the feature cache keeps depend on the batch they were computed in?
(docs/reliability.md, "Interrupted training").

    python bench/batch_invariance.py

A resumed run fills its feature cache from other batches than the uninterrupted run did, so the
cache is exact across a resume only if each row's features are the same whatever else the
batch holds. For each backbone, 16 random images are run as one batch and as batches of 1, 3,
5, 7 and 8 (the first rows), contiguous and channels_last; the largest difference of the
attention features and of the image branch's pooled feature is printed. CPU, about a minute.
"""
from __future__ import annotations

import torch

from sgma.engine.backbone_cache import frozen_features
from sgma.engine.backbones import build_backbone

CASES = (("efficientnet_lite0_s16", "imagenet", 320, 224), ("small_cnn", "none", 64, 32))


def main() -> None:
    torch.manual_seed(0)
    for name, weights, size, image_size in CASES:
        net = build_backbone(name, weights).eval()
        for channels_last in (False, True):
            x = torch.rand(16, 3, size, size)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            whole = frozen_features(net, x, image_size)
            for n in (1, 3, 5, 7, 8):
                part = frozen_features(net, x[:n], image_size)
                diff = max((whole.attention[:n] - part.attention).abs().max().item(),
                           (whole.image_theta[:n] - part.image_theta).abs().max().item())
                print(f"{name:24s} {'channels_last' if channels_last else 'contiguous':13s} "
                      f"batch {n} vs 16: max difference {diff:.3g}", flush=True)


if __name__ == "__main__":
    main()
