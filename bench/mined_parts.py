"""Stage 1 by discriminative mining: can a part detector refined on its own peaks find the head
more precisely than the channel grouping's map? (docs/results.md, run 28.)

    SGMA_SHARED_DATA=../shared/data python bench/mined_parts.py --root CUB50_PLUS [--train 800] [--rounds 5]

The channel grouping's Eq. 3 maps are diffuse (run 9a): a sigmoid of a channel sum that fires over
most of the bird and peaks a cell towards the body (run 23). Mid-level discriminative mining
(Singh et al., ECCV 2012) sharpens such a start without labels: on each training image the
detector's peak cell is a positive, cells at least ``--gap`` cells away from it are negatives, a
logistic regression over the 112 stride-16 channels is refitted, and the new detector's peaks are
the next round's positives (engine/mining.py, ``mine_part_detector``). With non-negative weights
(the default; ``--signed`` lifts it) the detector is an Eq. 2 weight vector a_i, so it drops into
the model's attention subnet unchanged.

Per round, on the validation-class images: reported only, pointing and IoU > 0.5 of the quarter
square at the peak; annotation-free, the flip disagreement (run 16) and the share of training
peaks that moved. ``--stability``: the agreement of two disjoint halves' maps (no label).
``--tail-from-geometry``: a tail started at the object cell farthest from the mined head.
Features are cached in ``--cache``. CPU only.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from sgma.engine.attention import MultiAttention
from sgma.engine.backbones import build_backbone
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import image_sizes, point_inside, squares_to_pixel_boxes
from sgma.engine.loader import ImageSet
from sgma.engine.metrics import iou_pairs
from sgma.engine.grouping import group_channels
from sgma.engine.stages import pretrain_channel_weights
from sgma.engine.mining import detector_logits, mine_attention, mine_part_detector, peak_cells
from finetune_grouping import features


def cached_features(net, ds, ids, size, path, flipped=True):
    if os.path.exists(path):
        return torch.load(path)
    ims = ImageSet(ds, ids, size)
    f = features(net, ims)
    fl = features(net, [(ims[k][0].flip(-1),) for k in range(len(ims))]) if flipped else None
    torch.save((f, fl), path)
    return f, fl


def probe_split(root: str, n_train: int, cache: str):
    """The probes' images: CUB fold 1, a seeded sample of ``n_train`` training-class images and
    every validation-class image. -> (dataset, training ids, validation ids). Also two threads and
    the feature cache's folder."""
    torch.set_num_threads(2)
    os.makedirs(cache, exist_ok=True)
    ds = load_dataset("cub", root, split="ps", fold=1)
    val = set(ds.split.val_classes)
    tr = [i for i in ds.split.trainval if ds.labels[i] not in val]
    tr = [tr[k] for k in np.random.default_rng(0).permutation(len(tr))[:n_train]]
    return ds, tr, [i for i in ds.split.trainval if ds.labels[i] in val]


def grouped_attention(f: torch.Tensor, n_parts: int = 2, mine_rounds: int = 0,
                      standardise: bool = False, grouping_channels: int | None = None) -> MultiAttention:
    """Stage 1 as the trainer runs it on features ``f``: k-means over the channels' peaks, then
    Eq. 2's weights fitted to the groups (seeded); with ``mine_rounds``, each map then mined as
    ``train.mine_rounds`` does (engine/mining.py ``mine_attention``, the trainer's seed 0;
    ``standardise`` as ``train.mine_standardise``). ``grouping_channels``: k-means reads only the
    leading channels, the rest join no group (the trainer's rule for appended context channels)."""
    att = MultiAttention(f.shape[1], n_parts)
    torch.manual_seed(0)
    pretrain_channel_weights(att, f, group_channels(f, n_parts, "kmeans", 0, grouping_channels).targets, 2)
    if mine_rounds:
        for _ in mine_attention(att, f, mine_rounds, standardise=standardise):
            pass
    return att


def centres(logits: torch.Tensor) -> np.ndarray:
    n, h, w = logits.shape
    p = peak_cells(logits)
    return np.stack([(p[:, 1] + 0.5) / w, (p[:, 0] + 0.5) / h], 1)


def region_sides(logits: torch.Tensor, lo: float = 0.1, hi: float = 0.6) -> np.ndarray:
    """The side of the bounding square of the connected cells with a positive logit (the
    detector's "part" decision) that hold the peak, as a fraction of the map side, clamped."""
    from scipy import ndimage
    n, h, w = logits.shape
    p = peak_cells(logits)
    out = np.empty(n)
    for k in range(n):
        lab, _ = ndimage.label(logits[k].numpy() > 0)
        r = lab == lab[p[k, 0], p[k, 1]] if lab[p[k, 0], p[k, 1]] else np.zeros((h, w), bool)
        r[p[k, 0], p[k, 1]] = True
        ys, xs = np.nonzero(r)
        out[k] = max(ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()) / h
    return np.clip(out, lo, hi)


def soft_centres(logits: torch.Tensor, r: int = 1) -> np.ndarray:
    """Centre of the detector's probability mass in the (2r+1)^2 cells around its peak."""
    n, h, w = logits.shape
    p = peak_cells(logits)
    prob = torch.sigmoid(logits).numpy()
    out = np.empty((n, 2))
    for k in range(n):
        y0, y1 = max(p[k, 0] - r, 0), min(p[k, 0] + r + 1, h)
        x0, x1 = max(p[k, 1] - r, 0), min(p[k, 1] + r + 1, w)
        m = prob[k, y0:y1, x0:x1]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        out[k] = [((xx + 0.5) * m).sum() / m.sum() / w, ((yy + 0.5) * m).sum() / m.sum() / h]
    return out


def report(tag, lv, lflip, gt, sizes, parts=("head", "tail"), rules=False):
    c = centres(lv)
    cf = centres(lflip)   # already in the image's own coordinates
    flip = float(np.median(np.hypot(*(c - cf).T)))
    line = f"{tag}: flip {flip:.3f}"
    n = len(c)
    variants = {"peak, quarter": (c, np.full(n, 0.25))}
    if rules:
        rs = region_sides(lv)
        variants.update({"3x3 soft centre, quarter": (soft_centres(lv), np.full(n, 0.25)),
                         "peak, region side": (c, rs),
                         "3x3 soft centre, region side": (soft_centres(lv), rs)})
        line += f" (mean region side {rs.mean():.3f})"
    for part in parts:
        have = [k for k, g in enumerate(gt[part]) if g is not None]
        g = np.array([gt[part][k] for k in have])
        line += f" | {part} pointing {point_inside(c[have], g, sizes[have]).mean():.3f}"
        for name, (cc, side) in variants.items():
            sq = np.concatenate([cc, side[:, None]], 1)[:, None]
            iou = iou_pairs(squares_to_pixel_boxes(sq, sizes)[have, 0], g)
            line += f" [{name}] IoU>0.5 {np.mean(iou > 0.5):.3f}"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gap", type=int, default=3)
    ap.add_argument("--neg", type=int, default=20)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--tail-from-geometry", action="store_true")
    ap.add_argument("--stability", action="store_true", help="agreement of two halves' maps (no label)")
    ap.add_argument("--signed", action="store_true", help="let channel weights be negative (not an Eq. 2 a_i)")
    ap.add_argument("--cache", default="/tmp/mined_parts")
    args = ap.parse_args()
    t0 = time.time()
    ds, tr, va = probe_split(args.root, args.train, args.cache)
    net = build_backbone("efficientnet_lite0_s16", "imagenet").eval()
    f_tr, _ = cached_features(net, ds, tr, args.size, f"{args.cache}/tr{args.train}_{args.size}.pt", flipped=False)
    f_va, f_vaf = cached_features(net, ds, va, args.size, f"{args.cache}/va_{args.size}.pt")
    f_vaf = f_vaf.flip(-1)   # mirrored back: a detector's peak on it is comparable cell for cell
    sizes = image_sizes(ds, va)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in va] for p in ("head", "tail")}
    print(f"features {tuple(f_tr.shape)} / {tuple(f_va.shape)}: {time.time() - t0:.0f} s", flush=True)

    att = grouped_attention(f_tr)
    with torch.no_grad():
        start = {s: att(f)[0] for s, f in (("tr", f_tr), ("va", f_va), ("vaf", f_vaf))}
    rng = np.random.default_rng(0)
    for i in range(2):
        report(f"map {i + 1} grouping", start["va"][:, i], start["vaf"][:, i], gt, sizes)

        def each_round(r, w, b, moved, i=i):
            print(f"  training peaks that moved: {moved:.3f}")
            report(f"map {i + 1} round {r + 1}", detector_logits(f_va, w, b), detector_logits(f_vaf, w, b),
                   gt, sizes, rules=(r + 1) % 5 == 0)
        mine_part_detector(f_tr, start["tr"][:, i], args.rounds, gap=args.gap, negatives=args.neg,
                           nonnegative=not args.signed, rng=rng, on_round=each_round)
    if args.stability:
        stability(f_tr, f_va, args.rounds, gt, sizes)
    if args.tail_from_geometry:
        tail_from_geometry(args, ds, tr, va, f_tr, f_va, f_vaf, start, gt, sizes, rng)
    print(f"done in {time.time() - t0:.0f} s")


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of images whose two maps peak within one cell of each other (no label)."""
    return float(np.mean(np.abs(peak_cells(a) - peak_cells(b)).max(1) <= 1))


def stability(f_tr, f_va, rounds, gt, sizes):
    """Annotation-free: the grouping (and the mining after it) run on two disjoint halves of the
    grouping images; how often do the two versions of each map peak at the same place on the
    validation images? Maps are paired across the halves by their agreement."""
    halves = (f_tr[: len(f_tr) // 2], f_tr[len(f_tr) // 2:])
    grouped, mined = [], []
    for f in halves:
        att = grouped_attention(f)
        with torch.no_grad():
            start, va = att(f)[0], att(f_va)[0]
        grouped.append(va)
        mined.append(torch.stack([detector_logits(f_va, *mine_part_detector(f, start[:, i], rounds)[:2])
                                  for i in range(2)], 1))
    for name, maps in (("grouping", grouped), ("mining", mined)):
        for h, m in enumerate(maps):
            for i in range(2):
                report(f"  half {h + 1} {name} map {i + 1}", m[:, i], m[:, i], gt, sizes)
    for name, (a, b) in (("grouping", grouped), ("mining", mined)):
        pair = max(((0, 1), (1, 0)), key=lambda p: agreement(a[:, 0], b[:, p[0]]) + agreement(a[:, 1], b[:, p[1]]))
        print(f"stability, {name}: map 1 {agreement(a[:, 0], b[:, pair[0]]):.3f}, "
              f"map 2 {agreement(a[:, 1], b[:, pair[1]]):.3f} (halves of {len(f_tr)} images)", flush=True)


def object_masks(ds, ids, size, path):
    """SCDA masks (bench/scda.py) of the fixed stride-32 network, on the stride-16 grid."""
    from scda import object_mask
    if os.path.exists(path):
        return torch.load(path).numpy()
    net = build_backbone("efficientnet_lite0", "imagenet").eval()
    a = features(net, ImageSet(ds, ids, size)).sum(1).numpy()
    m = np.stack([object_mask(x) for x in a]).repeat(2, 1).repeat(2, 2)
    torch.save(torch.as_tensor(m), path)
    return m


def tail_from_geometry(args, ds, tr, va, f_tr, f_va, f_vaf, start, gt, sizes, rng):
    """The tail's start from geometry (run 23): the object cell farthest from the mined head's
    peak; then mining from that start."""
    from centre_or_side import tail_from_head
    m_tr = object_masks(ds, tr, args.size, f"{args.cache}/mask_tr{args.train}_{args.size}.pt")
    m_va = object_masks(ds, va, args.size, f"{args.cache}/mask_va_{args.size}.pt")
    head = 0   # the grouping's map 1 is the head map in this fold (reported above)
    w, b, _ = mine_part_detector(f_tr, start["tr"][:, head], args.rounds, seed=0)

    def geometry_start(f, masks):
        hc = centres(detector_logits(f, w, b))
        out = torch.zeros(len(f), f.shape[2], f.shape[3])
        for k in range(len(f)):
            x, y = tail_from_head(masks[k], hc[k], "farthest")
            out[k, int(y * f.shape[2]), int(x * f.shape[3])] = 1.0
        return out

    report("head, mined", detector_logits(f_va, w, b), detector_logits(f_vaf, w, b), gt, sizes, rules=True)
    g_va = geometry_start(f_va, m_va)
    report("tail, geometry (farthest object cell)", g_va, g_va, gt, sizes)
    mine_part_detector(f_tr, geometry_start(f_tr, m_tr), args.rounds, gap=args.gap, negatives=args.neg, rng=rng,
                       on_round=lambda r, w, b, _: report(f"tail, mined from geometry, round {r + 1}",
                                                          detector_logits(f_va, w, b),
                                                          detector_logits(f_vaf, w, b), gt, sizes))


if __name__ == "__main__":
    main()
