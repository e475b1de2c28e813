"""The MA-CNN route on real birds: does fine-tuning the stride-16 blocks of EfficientNet-Lite0 on
the seen classes make stage 1's channel grouping find the head and the tail?

    python bench/finetune_grouping.py --root CUB50_PLUS [--blocks 6] [--epochs 3]

The fine-tuning is stage 1's own (``engine/finetune.py``, ``model.finetune_blocks``): blocks 5-10
(the stride-16 stage the ``cpu`` preset's attention reads) trained on the fold-1 training classes
with a cosine classifier on the network's fixed layers above the cut, the classifier alone first.
Before and after, on the stride-16 features at 320 px:
- annotation-free: the k-means and co-location groupings of 200 training images as the trainer
  forms them (Eq. 2 fitted to the groups);
- reported only: pointing of each group's Eq. 3 map, and of the best single channel, against the
  head and tail boxes of the validation-class images.
Results: docs/results.md (run 14; its first table came from an earlier version of this script
with its own copy of the fine-tuning, commit 2a7fa4b). CPU only.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from sgma.engine.attention import MultiAttention
from sgma.engine.backbones import build_backbone
from sgma.engine.colocation import colocation_channel_groups
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import image_sizes, peak_inside
from sgma.engine.finetune import finetune_attention_cnn
from sgma.engine.loader import ImageSet
from sgma.engine.stages import kmeans_channel_groups, pretrain_channel_weights, pseudo_label_targets


def features(net, ims):
    with torch.no_grad():
        return torch.cat([net(torch.stack([ims[k][0] for k in range(s, min(s + 32, len(ims)))]))
                          for s in range(0, len(ims), 32)])


def pointing(maps, boxes, sizes):
    have = [k for k, b in enumerate(boxes) if b is not None]
    return float(peak_inside(maps[have], [boxes[k] for k in have], sizes[have]).mean())


def grouping_report(tag, f_tr, f_va, gt, sizes, n_parts=2):
    feats = f_tr[torch.randperm(len(f_tr), generator=torch.Generator().manual_seed(0))[:200]]
    for how in ("kmeans", "colocation"):
        groups = kmeans_channel_groups(feats, n_parts) if how == "kmeans" else colocation_channel_groups(feats, n_parts)
        if len(groups) == 0:
            print(f"  {tag} {how}: no groups")
            continue
        att = MultiAttention(feats.shape[1], n_parts)
        torch.manual_seed(0)
        pretrain_channel_weights(att, feats, pseudo_label_targets(groups, n_parts), 2)
        with torch.no_grad():
            maps = att(f_va)[0].numpy()
        line = f"  {tag} {how} groups {[int((groups == i).sum()) for i in range(n_parts)]}:"
        for i in range(n_parts):
            line += "".join(f" map{i + 1} {p} {pointing(maps[:, i], gt[p], sizes):.3f}" for p in ("head", "tail"))
        print(line)
    best = {p: max(pointing(f_va[:, c].numpy(), gt[p], sizes) for c in range(f_va.shape[1])) for p in ("head", "tail")}
    print(f"  {tag} best single channel: head {best['head']:.3f} tail {best['tail']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="at most this many images per split (a quick check)")
    args = ap.parse_args()
    ds = load_dataset("cub", args.root, split="ps", fold=1)
    sp, labels = ds.split, ds.labels
    tr_ids, va_ids = sp.fold_train_images(labels), sp.fold_val_images(labels)
    if args.limit:
        tr_ids, va_ids = tr_ids[:args.limit], va_ids[:args.limit]
    tr, va = ImageSet(ds, tr_ids, args.size, cache=True), ImageSet(ds, va_ids, args.size)
    sizes = image_sizes(ds, va_ids)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in va_ids] for p in ("head", "tail")}
    net = build_backbone("efficientnet_lite0_s16", "imagenet").eval().requires_grad_(False)
    t0 = time.time()
    grouping_report("fixed", features(net, tr), features(net, va), gt, sizes)
    tuned = copy.deepcopy(net)
    tr_c = sorted(set(sp.train_classes))
    y = torch.tensor([tr_c.index(int(labels[i])) for i in tr_ids])
    sem = torch.tensor(ds.semantics[tr_c], dtype=torch.float32)
    run = finetune_attention_cnn(tuned, lambda k: tr[k][0], len(tr_ids), y, sem, args.blocks, args.epochs)
    while True:
        try:
            next(run)
        except StopIteration as fin:
            print(f"fine-tuned blocks {11 - args.blocks}-10 in {time.time() - t0:.0f} s; losses "
                  + " ".join(f"{v:.3f}" for v in fin.value))
            break
    grouping_report("tuned", features(tuned, tr), features(tuned, va), gt, sizes)


if __name__ == "__main__":
    main()
