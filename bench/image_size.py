"""Validation ZSL of the image branch alone at several input sizes: the fixed ImageNet
EfficientNet-Lite0 of the ``cpu`` preset, global average pooling, and the semantic projection W
trained as stage 0 trains it (Eq. 9's softmax over the training classes; SGD lr 0.01, momentum
0.9, weight decay 5e-4, batch 16, 3 epochs, random mirror flips). Fold 1 of a CUB folder; reads no
part box. (docs/results.md, run 36.)

    SGMA_SHARED_DATA=../shared/data python bench/image_size.py CUB_ROOT 192,224,256,288,320 [--seeds 5]

Each image is read at 320 px (the attention input, as the trainer reads it) and resized with
antialiasing, as ``SGMA.forward`` resizes it for the image branch. Pooled features are cached in
``--cache``; each size trains W from ``--seeds`` seeds and prints the mean and spread.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from sgma.engine.backbones import build_backbone
from sgma.engine.data.registry import load_dataset
from sgma.engine.embedding import SemanticProjection
from sgma.engine.loader import ImageSet, resized
from sgma.engine.metrics import mean_class_accuracy


def pooled(net, ds, ids, size: int, flip: bool, path: str) -> torch.Tensor:
    if os.path.exists(path):
        return torch.load(path)
    ims, out = ImageSet(ds, ids, 320), []
    with torch.no_grad():
        for s in range(0, len(ids), 32):
            x = torch.stack([ims[k][0] for k in range(s, min(s + 32, len(ids)))])
            x = x.flip(-1) if flip else x
            x = resized(x, size)
            out.append(net(x).mean(dim=(2, 3)))
    f = torch.cat(out)
    torch.save(f, path)
    return f


def train_w(f0, f1, y, sem, seed: int) -> SemanticProjection:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    proj = SemanticProjection(f0.shape[1], sem.shape[1])
    opt = torch.optim.SGD(proj.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        perm, flips = torch.randperm(len(y), generator=g), torch.rand(len(y), generator=g) < 0.5
        for s in range(0, len(y), 16):
            b = perm[s:s + 16]
            loss = F.cross_entropy(proj(torch.where(flips[b, None], f1[b], f0[b])) @ sem.t(), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return proj


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("sizes")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cache", default="/tmp/sgma_image_size")
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.cache, exist_ok=True)
    ds = load_dataset("cub", args.root, split="ps", fold=1)
    val = list(ds.split.val_classes)
    train_classes = [c for c in ds.split.seen if c not in val]
    label = {c: i for i, c in enumerate(train_classes)}
    tr = [i for i in ds.split.trainval if ds.labels[i] in label]
    va = [i for i in ds.split.trainval if ds.labels[i] in set(val)]
    net = build_backbone("efficientnet_lite0", "imagenet").eval()
    sem = torch.as_tensor(ds.semantics, dtype=torch.float32)
    y = torch.as_tensor([label[ds.labels[i]] for i in tr])
    y_val = np.array([ds.labels[i] for i in va])
    for size in (int(s) for s in args.sizes.split(",")):
        t0 = time.time()
        f0, f1, fv = (pooled(net, ds, ids, size, flip, f"{args.cache}/{size}_{flip}_{len(ids)}.pt")
                      for ids, flip in ((tr, False), (tr, True), (va, False)))
        accs = []
        for seed in range(args.seeds):
            proj = train_w(f0, f1, y, sem[train_classes], seed)
            with torch.no_grad():
                pred = np.asarray(val)[(proj(fv) @ sem[val].t()).argmax(1).numpy()]
            accs.append(mean_class_accuracy(y_val, pred))
        print(f"size {size}: validation ZSL {np.mean(accs):.3f} +- {np.std(accs):.3f} "
              f"{np.round(accs, 3).tolist()} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
