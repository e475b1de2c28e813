"""Annotation-free object boxes on real birds, and what they give the head's side and the tail's
centre (docs/results.md, run 30).

    SGMA_SHARED_DATA=../shared/data python bench/object_box.py --root CUB50_PLUS [--train 800]

Run 28 found the head square's side the larger limit once the head's centre is mined, and the
object's size the best annotation-free handle on it (with the CUB bird box itself, 0.488). It also
found the SCDA mask (Wei et al. 2017: channel sum above its mean) a poor estimate of that size.
This probe compares object masks that read no label:

- ``scda``: the SCDA mask of the fixed stride-32 network (bench/scda.py).
- ``ddt``: Deep Descriptor Transforming (Wei et al., "Unsupervised object discovery and
  co-localization by deep descriptor transformation", Pattern Recognition 2019). Every cell
  descriptor of the training images, centred on their mean, is projected on their first
  principal direction. All training images show a bird, so that direction separates the common
  object from the rest. The sign is chosen so that the border cells of the training images
  project below zero (no label). The mask is the largest connected region above zero.

Each mask's bounding box is scored against the CUB bird box (``bounding_boxes.txt``, read here
only to report) and then used as the paper's quarter side anchored to the object's size
(``0.25 x side / mean side of the training images``), around the mined head's 5 x 5 soft centre;
and for the tail, the mask cell farthest from that head centre (run 23's rule). Part boxes of
the validation-class images only report. CPU only; stride-16 features shared with
bench/mined_parts.py's cache.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from centre_or_side import tail_from_head
from finetune_grouping import features
from mined_parts import cached_features, grouped_attention, probe_split, soft_centres
from scda import mask_box, object_mask
from sgma.engine.backbones import build_backbone, fine_and_coarse
from sgma.engine.evaluate import image_sizes, point_inside, squares_to_pixel_boxes
from sgma.engine.loader import ImageSet
from sgma.engine.metrics import iou_pairs
from sgma.engine.mining import detector_logits, mine_part_detector
from sgma.engine.objectness import (UPSAMPLE, ObjectStats, choose_anchor_map, far_end_square, fit_object_direction,
                                    object_masks, object_projection, peaks_inside)


def resized(image: torch.Tensor, side: int) -> torch.Tensor:
    import torch.nn.functional as F
    return F.interpolate(image[None], size=(side, side), mode="bilinear", align_corners=False)[0]


def toward(points: np.ndarray, target: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Each point moved ``dist`` towards its target (not past it)."""
    v = target - points
    n = np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    return points + v / n * np.minimum(dist[:, None], n)


def sides(masks: np.ndarray) -> np.ndarray:
    b = np.array([mask_box(m) for m in masks])
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def bird_boxes(root: str, ds, ids) -> np.ndarray:
    """CUB bird boxes (x0, y0, x1, y1) in pixels, to report only."""
    rows = {}
    path = os.path.join(root, "CUB_200_2011", "bounding_boxes.txt")
    for line in open(path):
        a = line.split()
        rows[int(a[0])] = [float(v) for v in a[1:]]
    xywh = np.array([rows[int(ds.items[i].image_id)] for i in ids])
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


def box_scores(tag, masks, bird, sizes, head_side=None):
    b = np.array([mask_box(m) for m in masks]) * np.tile(sizes, 2)
    iou = iou_pairs(b, bird)
    s = sides(masks)
    bs = np.maximum((bird[:, 2] - bird[:, 0]) / sizes[:, 0], (bird[:, 3] - bird[:, 1]) / sizes[:, 1])
    line = (f"{tag}: bird box IoU>0.5 {np.mean(iou > 0.5):.3f} (mean IoU {iou.mean():.3f}), side mean {s.mean():.3f}"
            f" corr with bird side {np.corrcoef(s, bs)[0, 1]:.3f}")
    if head_side is not None:
        have, hs = head_side
        line += f", with head side {np.corrcoef(s[have], hs)[0, 1]:.3f}"
    print(line, flush=True)


def square_hits(centre, side, boxes, sizes):
    have = [k for k, g in enumerate(boxes) if g is not None]
    g = np.array([boxes[k] for k in have])
    sq = np.concatenate([centre[have], side[have, None]], 1)[:, None]
    iou = iou_pairs(squares_to_pixel_boxes(sq, sizes[have])[:, 0], g)
    return float(np.mean(iou > 0.5)), float(point_inside(centre[have], g, sizes[have]).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--object-size", type=int, default=None, help="input side of the object masks (default --size)")
    ap.add_argument("--object-from", type=int, default=None,
                    help="load the images at this side and resize them to --object-size (as a trainer's batch)")
    ap.add_argument("--stability", action="store_true",
                    help="agreement of the second part's square across two halves of the training sample (no label)")
    ap.add_argument("--mine-rounds", type=int, default=0,
                    help="with --stability: stage 1 also mines each map (train.mine_rounds), as run 31 trains")
    ap.add_argument("--mine-standardise", action="store_true",
                    help="with --mine-rounds: the regressions read standardised channels (train.mine_standardise)")
    ap.add_argument("--both-depths", action="store_true",
                    help="with --stability: the maps read the stride-16 channels and the stride-32 ones upsampled "
                         "beside them (backbone efficientnet_lite0_s16_s32); the grouping reads the first 112")
    ap.add_argument("--cache", default="/tmp/mined_parts")
    args = ap.parse_args()
    t0 = time.time()
    ds, tr, va = probe_split(args.root, args.train, args.cache)
    sizes = image_sizes(ds, va)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in va] for p in ("head", "tail")}
    bird = bird_boxes(args.root, ds, va)

    s16 = build_backbone("efficientnet_lite0_s16", "imagenet").eval()
    f16_tr, _ = cached_features(s16, ds, tr, args.size, f"{args.cache}/tr{args.train}_{args.size}.pt", flipped=False)
    f16_va, _ = cached_features(s16, ds, va, args.size, f"{args.cache}/va_{args.size}.pt")
    s32 = build_backbone("efficientnet_lite0", "imagenet").eval()
    f32, osize = {}, args.object_size or args.size
    for name, ids in (("tr", tr), ("va", va)):
        src = f"from{args.object_from}_" if args.object_from else ""
        path = f"{args.cache}/s32_{name}{args.train if name == 'tr' else ''}_{src}{osize}.pt"
        f32[name] = s32_features(s32, ds, ids, osize, path, args.object_from).numpy()
    print(f"features: {time.time() - t0:.0f} s", flush=True)

    # the mined head (run 28's recipe): grouping, Eq. 2 fit, 10 rounds of mining
    att = grouped_attention(f16_tr)
    with torch.no_grad():
        start = att(f16_tr)[0][:, 0]
    w, b, _ = mine_part_detector(f16_tr, start, 10, seed=0)
    head_c = soft_centres(detector_logits(f16_va, w, b), 2)

    have = [k for k, g in enumerate(gt["head"]) if g is not None]
    g = np.array([gt["head"][k] for k in have])
    head_side = np.maximum((g[:, 2] - g[:, 0]) / sizes[have, 0], (g[:, 3] - g[:, 1]) / sizes[have, 1])

    masks = {}
    for layer, f in (("s32", f32), ("s16", {"tr": f16_tr.numpy(), "va": f16_va.numpy()})):
        masks[f"scda {layer}"] = {k: np.stack([object_mask(a) for a in v.sum(1)]) for k, v in f.items()}
        stats = ObjectStats()
        stats.add(torch.as_tensor(f["tr"]))
        mean, d = fit_object_direction(stats)
        proj = {k: object_projection(torch.as_tensor(v), mean, d) for k, v in f.items()}
        masks[f"ddt {layer}"] = {k: object_masks(v, upsample=1) for k, v in proj.items()}
        if layer == "s32":
            masks["ddt s32 upsampled x8"] = {k: object_masks(v, UPSAMPLE) for k, v in proj.items()}
    n = len(va)
    quarter = np.full(n, 0.25)
    print(f"head, mined 5x5 soft centre, quarter side: IoU>0.5 {square_hits(head_c, quarter, gt['head'], sizes)[0]:.3f}")
    bs = np.maximum((bird[:, 2] - bird[:, 0]) / sizes[:, 0], (bird[:, 3] - bird[:, 1]) / sizes[:, 1])
    print(f"  (bird box side anchored to its own mean, reported: {square_hits(head_c, np.clip(0.25 * bs / bs.mean(), 0.1, 0.6), gt['head'], sizes)[0]:.3f})")
    for name, m in masks.items():
        box_scores(name, m["va"], bird, sizes, (have, head_side))
        side = np.clip(0.25 * sides(m["va"]) / sides(m["tr"]).mean(), 0.1, 0.6)
        h_iou = square_hits(head_c, side, gt["head"], sizes)[0]
        obj = sides(m["va"])
        tail_c = np.stack([tail_from_head(m["va"][k], head_c[k], "farthest") for k in range(n)])
        t_q, t_point = square_hits(tail_c, quarter, gt["tail"], sizes)
        t_a, _ = square_hits(tail_c, side, gt["tail"], sizes)
        t_o, _ = square_hits(tail_c, 0.25 * obj, gt["tail"], sizes)
        inner = np.stack([(far_end_square(m["va"][k], head_c[k]) if m["va"][k].any() else tail_c[k])[:2]
                          for k in range(n)])   # the engine's rule (an empty mask keeps the farthest cell)
        t_i, t_ip = square_hits(inner, 0.25 * obj, gt["tail"], sizes)
        t_iq, _ = square_hits(inner, quarter, gt["tail"], sizes)
        h_o, _ = square_hits(head_c, np.clip(0.25 * obj, 0.1, 0.6), gt["head"], sizes)
        print(f"  head: anchored side IoU>0.5 {h_iou:.3f}, quarter of the object {h_o:.3f} | tail (farthest cell):"
              f" pointing {t_point:.3f}, IoU>0.5 quarter {t_q:.3f}, anchored side {t_a:.3f}, quarter of the"
              f" object {t_o:.3f}; its square moved inside the object (half its side towards the head):"
              f" pointing {t_ip:.3f}, IoU>0.5 {t_i:.3f} (quarter of the image {t_iq:.3f})", flush=True)
        near = np.stack([tail_from_head(m["va"][k], tail_c[k], "farthest") for k in range(n)])
        near_in = toward(near, tail_c, 0.125 * obj)
        h_n, h_np = square_hits(near, 0.25 * obj, gt["head"], sizes)
        h_ni, h_nip = square_hits(near_in, 0.25 * obj, gt["head"], sizes)
        h_nq, _ = square_hits(near_in, quarter, gt["head"], sizes)
        print(f"  head from geometry (the object's point farthest from the tail's far end), quarter of the object:"
              f" pointing {h_np:.3f}, IoU>0.5 {h_n:.3f}; moved inside: pointing {h_nip:.3f}, IoU>0.5 {h_ni:.3f}"
              f" (quarter of the image {h_nq:.3f})", flush=True)
    if args.stability:
        att_tr, att_va = f16_tr, f16_va
        if args.both_depths:
            att_tr, att_va = (fine_and_coarse(f, s32_features(s32, ds, ids, args.size, f"{args.cache}/s32_{name}_{args.size}.pt"))
                              for f, ids, name in ((f16_tr, tr, f"tr{args.train}"), (f16_va, va, "va")))
        stability(att_tr, att_va, f32["tr"], f32["va"], args.mine_rounds, args.mine_standardise,
                  grouping_channels=f16_tr.shape[1])
    print(f"done in {time.time() - t0:.0f} s")


def s32_features(net, ds, ids, size: int, path: str, load_at: int | None = None) -> torch.Tensor:
    """The stride-32 network's features of ``ids`` at ``size``, cached in ``path``; with
    ``load_at`` the images are loaded at that side and resized to ``size`` (as a trainer's batch)."""
    if not os.path.exists(path):
        ims = ImageSet(ds, ids, load_at or size)
        if load_at:
            ims = [(resized(ims[k][0], size),) for k in range(len(ims))]
        torch.save(features(net, ims), path)
    return torch.load(path)


def cells(centres: np.ndarray, n: int = 20) -> np.ndarray:
    return np.minimum((centres * n).astype(int), n - 1)


def stability(f16_tr, f16_va, f32_tr, f32_va, mine_rounds: int = 0, standardise: bool = False,
              grouping_channels: int | None = None) -> None:
    """Annotation-free: stage 1 (the k-means grouping and Eq. 2's fit, the object direction, the
    anchor map) run on two disjoint halves of the training sample, as the trainer would. How often
    do the two versions of the second part's square sit in the same or a neighbouring cell of the
    20 x 20 map on the validation images: the square at the other map's peak (Eq. 7's start), or
    the object's far end from the anchor's peak?"""
    n = len(f16_tr) // 2
    found = []
    for h in (slice(0, n), slice(n, 2 * n)):
        att = grouped_attention(f16_tr[h], mine_rounds=mine_rounds, standardise=standardise,
                                grouping_channels=grouping_channels)
        stats = ObjectStats()
        stats.add(torch.as_tensor(f32_tr[h]))
        mean, d = fit_object_direction(stats)
        with torch.no_grad():
            maps_tr, maps_va = att(f16_tr[h])[0], att(f16_va)[0]
        a = choose_anchor_map(peaks_inside(maps_tr, object_masks(object_projection(torch.as_tensor(f32_tr[h]), mean, d))))
        flat = maps_va.flatten(2).argmax(-1).numpy()
        peak = np.stack([(flat % 20 + 0.5) / 20, (flat // 20 + 0.5) / 20], -1)   # (N, 2 maps, xy)
        proj = object_projection(torch.as_tensor(f32_va), mean, d)
        ends = {}
        for up in (1, UPSAMPLE):
            masks = object_masks(proj, up)
            for moved in (False, True):
                ends[(up, moved)] = np.stack([
                    peak[k, 1 - a] if not m.any() else
                    far_end_square(m, peak[k, a])[:2] if moved else tail_from_head(m, peak[k, a], "farthest")
                    for k, m in enumerate(masks)])
        found.append((a, peak, ends))
    (a1, p1, e1), (a2, p2, e2) = found
    agree = lambda u, v: float(np.mean(np.abs(cells(u) - cells(v)).max(1) <= 1))  # noqa: E731
    print(f"stability over two halves of {2 * n} images: anchor map {a1 + 1} / {a2 + 1}; "
          f"anchor's peak {agree(p1[:, a1], p2[:, a2]):.3f}; the other map's peak "
          f"{agree(p1[:, 1 - a1], p2[:, 1 - a2]):.3f}; the object's far end "
          + ", ".join(f"({'upsampled' if up > 1 else 'cells'}, {'moved inside' if moved else 'farthest'}) "
                      f"{agree(e1[key], e2[key]):.3f}" for key in e1 for up, moved in [key]), flush=True)


if __name__ == "__main__":
    main()
