"""Deep feature factorisation on real birds: which layer of the fixed EfficientNet-Lite0 gives NMF
factors that point at the head and the tail, chosen without part boxes?

    python bench/nmf_parts.py --root CUB50_PLUS [--size 320] [--fit 300] [--k 4 6] [--checkpoint RUN/best.pt]

``--checkpoint``: the stride-16 blocks are that model's attention CNN (its fine-tuned blocks with
``model.finetune_blocks``, run 16); the stride-32 head stays ImageNet's.

For each feature layer (the stride-16 block output the model reads, clipped at 0; the same block's
post-activation expansion before its linear projection; the stride-32 head conv after its
activation) it fits NMF with k factors on pixels of ``--fit`` training-class images (fold 1 train
classes), then on the validation-class images it reports for every factor:
- unsupervised signals (what a selection may use): ``border`` (share of the factor's mass on the
  map's outer ring: background), ``spread`` (mean distance of the mass from its peak, in map sides),
  ``presence`` (share of images where the factor's peak is at least half its median peak);
- pointing (peak inside the ground-truth box) for head and tail (reported only, never used to choose).
The unsupervised rule: among factors with border < 0.35, the most compact is the head candidate.
Results: docs/results.md. CPU only.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sgma.engine.backbones import _efficientnet_lite0_net
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import image_sizes, peak_inside
from sgma.engine.loader import ImageSet
from sgma.engine.stages import factor_shape


class Taps(torch.nn.Module):
    """EfficientNet-Lite0 trunk returning three layers: s16 block output, its expansion, s32 head."""

    def __init__(self):
        super().__init__()
        net = _efficientnet_lite0_net("imagenet").eval()
        self.net = net
        self.expand = None
        net._blocks[10]._project_conv.register_forward_pre_hook(self._grab)

    def _grab(self, mod, inp):
        self.expand = inp[0]

    def forward(self, x):
        net = self.net
        x = net._swish(net._bn0(net._conv_stem((x - 0.5) / 0.5)))
        s16 = None
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i == 10:
                s16, expand = x, self.expand
        head = net._swish(net._bn1(net._conv_head(x)))
        return {"s16_clipped": s16.clamp(min=0), "s16_expanded": expand.clamp(min=0), "s32_head": head.clamp(min=0)}


def extract(taps, ds, ids, size):
    ims = ImageSet(ds, ids, size)
    out: dict[str, list] = {}
    with torch.no_grad():
        for s in range(0, len(ids), 32):
            x = torch.stack([ims[k][0] for k in range(s, min(s + 32, len(ids)))])
            for k, v in taps(x).items():
                out.setdefault(k, []).append(v.numpy().astype(np.float32))
    return {k: np.concatenate(v) for k, v in out.items()}


def factor_maps(feats: np.ndarray, comps: np.ndarray) -> np.ndarray:
    """Each factor's map: the features projected on its unit-norm channel loadings, as
    ``stages.nmf_channel_targets`` scores them. (N, C, h, w), (k, C) -> (N, k, h, w)."""
    return np.einsum("nchw,kc->nkhw", feats, comps)


def signals(maps: np.ndarray) -> dict[str, np.ndarray]:
    """Border share and spread (``stages.factor_shape``, the stage-1 rule's signals) and presence."""
    border, spread = factor_shape(maps)
    pk = maps.reshape(*maps.shape[:2], -1).max(axis=2)
    presence = (pk >= 0.5 * np.median(pk, axis=0, keepdims=True)).mean(axis=0)
    return {"border": border, "spread": spread, "presence": presence}


def pointing(maps: np.ndarray, boxes, sizes: np.ndarray) -> float:
    """Share of images with a box whose map peak lies in it (``evaluate.peak_inside``)."""
    have = [k for k, b in enumerate(boxes) if b is not None]
    if not have:
        return float("nan")
    return float(peak_inside(maps[have], [boxes[k] for k in have], sizes[have]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--fit", type=int, default=300)
    ap.add_argument("--k", type=int, nargs="+", default=[4, 6])
    ap.add_argument("--val", type=int, default=400)
    ap.add_argument("--checkpoint", default="")
    args = ap.parse_args()
    from sklearn.decomposition import NMF
    torch.manual_seed(0)
    ds = load_dataset("cub", args.root, split="ps", fold=1)
    sp = ds.split
    train_c, val_c = set(sp.train_classes), set(sp.val_classes)
    rng = np.random.default_rng(0)
    fit_ids = [i for i in sp.trainval if ds.labels[i] in train_c]
    fit_ids = sorted(rng.choice(fit_ids, min(args.fit, len(fit_ids)), replace=False).tolist())
    val_ids = [i for i in sp.trainval if ds.labels[i] in val_c][: args.val]
    taps = Taps()
    if args.checkpoint:
        from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
        trunk = model_from_checkpoint(load_checkpoint(args.checkpoint)).image_net.trunk
        for i, block in enumerate(trunk.blocks):
            taps.net._blocks[i].load_state_dict(block.state_dict())
    t0 = time.time()
    f_fit, f_val = extract(taps, ds, fit_ids, args.size), extract(taps, ds, val_ids, args.size)
    print(f"features of {len(fit_ids)} + {len(val_ids)} images in {time.time() - t0:.0f} s")
    sizes = image_sizes(ds, val_ids)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in val_ids] for p in ("head", "tail")}
    for layer in f_fit:
        X = f_fit[layer]
        n, c, h, w = X.shape
        pix = X.transpose(0, 2, 3, 1).reshape(-1, c)
        pix = pix[rng.choice(len(pix), min(len(pix), 40000), replace=False)]
        for k in args.k:
            nmf = NMF(n_components=k, init="nndsvda", max_iter=300, random_state=0)
            nmf.fit(pix)
            comps = nmf.components_ / (np.linalg.norm(nmf.components_, axis=1, keepdims=True) + 1e-9)
            maps = factor_maps(f_val[layer], comps)
            sg = signals(maps)
            cand = [j for j in range(k) if sg["border"][j] < 0.35]
            head_j = min(cand, key=lambda j: sg["spread"][j]) if cand else -1
            print(f"\n{layer} ({c} ch, {h}x{w}) k={k}: unsupervised head candidate = factor {head_j}")
            for j in range(k):
                ph = pointing(maps[:, j], gt["head"], sizes)
                pt = pointing(maps[:, j], gt["tail"], sizes)
                print(f"  factor {j}: border {sg['border'][j]:.2f} spread {sg['spread'][j]:.3f} "
                      f"presence {sg['presence'][j]:.2f} | pointing head {ph:.3f} tail {pt:.3f}")


if __name__ == "__main__":
    main()
