"""Is the head square wrong in its centre or in its side, and can geometry or finer maps fix it?
(docs/results.md, run 23.)

    SGMA_SHARED_DATA=../shared/data python bench/centre_or_side.py RUN/best.pt CUB_ROOT [--val 343]

Three probes on a trained model's validation-class images (fold 1), part boxes reported only:

1. *Oracle decomposition*: the model's centre with the ground-truth side, and the ground-truth
   centre with the model's side (a quarter of the image). Which one lifts IoU > 0.5 says where the
   error is. The CUB bird boxes (``bounding_boxes.txt``, which the engine reads only to size the
   ground-truth part boxes) give a third row: a quarter of the true bird's side at the model's centre.
2. *Sub-cell maps*: each map averaged over the image shifted by half a cell in x and y (and over
   the mirrored image), placed on a grid twice as fine, then the usual centre rules.
3. *Tail from geometry*: the cell of the SCDA object mask farthest from the head square's centre,
   or along the head -> object-centroid axis, or nearest the head's mirror through the centroid.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from scda import mask_box, object_mask
from sgma.engine.backbones import build_backbone
from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import assign_parts, image_sizes, point_inside, squares_to_pixel_boxes
from sgma.engine.extract import extract
from sgma.engine.loader import ImageSet
from sgma.engine.metrics import iou_pairs
from square_rules import centres

TAIL_RULES = ("farthest", "axis", "mirror")


def shift_averaged_maps(attend, x: torch.Tensor, stride: int, sub: int = 2, flip: bool = False) -> torch.Tensor:
    """Maps on a grid ``sub`` times finer than ``attend``'s: the image is shifted by multiples of
    ``stride / sub`` pixels (edge pixels repeated), and each shifted map's cell is written on the fine
    cells it covers in the original image; cells seen by several shifts are averaged. ``attend``:
    (B, 3, S, S) -> (B, n, S / stride, S / stride). With ``flip`` the mirrored image is attended and
    the result mirrored back. -> (B, n, sub * h, sub * h)."""
    step = stride // sub
    xs0 = x.flip(-1) if flip else x
    fine = cnt = None
    for sy in range(sub):
        for sx in range(sub):
            xs = F.pad(xs0, (0, sx * step, 0, sy * step), mode="replicate")[..., sy * step:, sx * step:]
            with torch.no_grad():
                m = attend(xs)
            h, w = m.shape[-2:]
            if fine is None:
                fine = m.new_zeros(*m.shape[:2], sub * h + sub, sub * w + sub)
                cnt = torch.zeros_like(fine)
            up = m.repeat_interleave(sub, -1).repeat_interleave(sub, -2)
            fine[..., sy:sy + sub * h, sx:sx + sub * w] += up
            cnt[..., sy:sy + sub * h, sx:sx + sub * w] += 1
    fine = (fine / cnt.clamp(min=1))[..., :-sub, :-sub]
    return fine.flip(-1) if flip else fine


def mask_cells(mask: np.ndarray) -> np.ndarray:
    """(h, w) bool -> (k, 2) centres (x, y) of its cells as fractions of the side."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return np.stack([(xs + 0.5) / w, (ys + 0.5) / h], 1)


def tail_from_head(mask: np.ndarray, head: np.ndarray, rule: str) -> np.ndarray:
    """A tail centre (x, y) from the object mask and the head centre, by ``rule`` (TAIL_RULES)."""
    c = mask_cells(mask)
    if rule == "farthest":
        return c[np.argmax(((c - head) ** 2).sum(1))]
    g = c.mean(0)
    if rule == "axis":
        d = (g - head) / (np.linalg.norm(g - head) + 1e-9)
        return c[np.argmax((c - head) @ d)]
    if rule == "mirror":
        return c[np.argmin(((c - (2 * g - head)) ** 2).sum(1))]
    raise ValueError(f"tail rule must be one of {TAIL_RULES}, got {rule!r}")


def bird_boxes(ds, indices) -> np.ndarray:
    """The CUB bird boxes (``bounding_boxes.txt``: x, y, width, height in pixels) of dataset images."""
    boxes = {}
    with open(os.path.join(ds.root, "CUB_200_2011", "bounding_boxes.txt")) as f:
        for line in f:
            a = line.split()
            boxes[a[0]] = [float(v) for v in a[1:]]
    return np.array([boxes[ds.items[i].image_id] for i in indices])


def bird_centre(bird_xywh: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """CUB bird boxes (x, y, w, h pixels) -> their centres as fractions of each image's side."""
    return (bird_xywh[:, :2] + bird_xywh[:, 2:] / 2) / sizes


def body_frame_error(centre: np.ndarray, truth: np.ndarray, body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The error ``centre - truth`` split along the unit vector from ``truth`` to ``body`` (positive:
    towards the body) and across it (signed)."""
    d = body - truth
    d = d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-12)
    e = centre - truth
    return (e * d).sum(1), e[:, 1] * d[:, 0] - e[:, 0] * d[:, 1]


def validation_run(checkpoint: str, root: str, n_val: int, keep_maps: bool):
    """A trained model and its pass over the first ``n_val`` validation-class images of fold 1:
    (model, dataset, image indices, extract's output, image sizes, part boxes, map per part)."""
    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    ds = load_dataset("cub", root, split="ps", fold=1)
    va = [i for i in ds.split.trainval if ds.labels[i] in set(ds.split.val_classes)][:n_val]
    ex = extract(model, ds, va, keep_maps=keep_maps)
    sizes = image_sizes(ds, va)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in va] for p in ("head", "tail")}
    assign = assign_parts(squares_to_pixel_boxes(ex["squares"], sizes), gt, ["head", "tail"])
    return model, ds, va, ex, sizes, gt, assign


def validation_cli(keep_maps: bool):
    """``CHECKPOINT ROOT [--val N]`` from the command line, two threads, then ``validation_run``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("root")
    ap.add_argument("--val", type=int, default=343)
    args = ap.parse_args()
    torch.set_num_threads(2)
    return validation_run(args.checkpoint, args.root, args.val, keep_maps)


def main():
    t0 = time.time()
    model, ds, va, ex, sizes, gt, assign = validation_cli(keep_maps=True)
    sq, n = ex["squares"], len(va)
    ims = ImageSet(ds, va, model.cfg.attention_size)
    x = torch.stack([ims[k][0] for k in range(n)])
    print(f"{n} validation images, maps assigned {assign}: {time.time() - t0:.0f} s", flush=True)

    def score(part, at, side):
        have = [k for k, g in enumerate(gt[part]) if g is not None]
        g = np.array([gt[part][k] for k in have])
        b = squares_to_pixel_boxes(np.concatenate([at, side[:, None]], 1)[:, None], sizes)[have, 0]
        iou = iou_pairs(b, g)
        inside = point_inside(at[have], g, sizes[have])
        return f"centre in box {inside.mean():.3f}, IoU > 0.5 {np.mean(iou > 0.5):.3f}, mean IoU {iou.mean():.3f}"

    quarter = np.full(n, 0.25)
    hm, tm = assign["head"], assign["tail"]
    head_c = sq[:, hm, :2]
    # 1. oracle decomposition
    g = np.array([b if b is not None else (0, 0, 1, 1) for b in gt["head"]], dtype=np.float64)
    g_side = np.maximum((g[:, 2] - g[:, 0]) / sizes[:, 0], (g[:, 3] - g[:, 1]) / sizes[:, 1])
    g_centre = np.stack([(g[:, 0] + g[:, 2]) / 2 / sizes[:, 0], (g[:, 1] + g[:, 3]) / 2 / sizes[:, 1]], 1)
    print("head, the model's squares:", score("head", head_c, sq[:, hm, 2]))
    print("head, model centre + ground-truth side:", score("head", head_c, g_side))
    print("head, ground-truth centre + quarter side:", score("head", g_centre, quarter))
    bird = bird_boxes(ds, va)
    bird_side = np.maximum(bird[:, 2] / sizes[:, 0], bird[:, 3] / sizes[:, 1])
    print("head, model centre + quarter of the true bird's side:", score("head", head_c, 0.25 * bird_side))
    have = [k for k, b in enumerate(gt["head"]) if b is not None]
    err = np.abs(head_c - g_centre)[have] / g_side[have, None]
    print(f"head centre error / box side: median x {np.median(err[:, 0]):.3f}, y {np.median(err[:, 1]):.3f}")
    toward, across = body_frame_error(head_c[have], g_centre[have], bird_centre(bird, sizes)[have])
    print(f"head centre error in the bird's frame / box side: toward the bird's centre median "
          f"{np.median(toward / g_side[have]):+.3f} (positive: the square sits on the body side), "
          f"across median |.| {np.median(np.abs(across) / g_side[have]):.3f}")
    # 2. sub-cell maps
    coarse = torch.as_tensor(ex["maps"].astype(np.float32))
    stride = model.cfg.attention_size // coarse.shape[-1]
    attend = lambda t: model.attend(t)[1]  # noqa: E731
    fine = {fl: torch.cat([shift_averaged_maps(attend, x[s:s + 32], stride, flip=fl) for s in range(0, n, 32)])
            for fl in (False, True)}
    print(f"sub-cell maps {tuple(fine[False].shape)}: {time.time() - t0:.0f} s", flush=True)
    for part, m in (("head", hm), ("tail", tm)):
        for name, mp in (("coarse", coarse[:, m]), ("shift x2", fine[False][:, m]),
                         ("shift x2 + flip", (fine[False][:, m] + fine[True][:, m]) / 2)):
            for rule in ("hard peak", "centroid 1", "centroid 2", "centroid 3"):
                print(f"{part} {name:16s} {rule}: {score(part, centres(mp, rule), quarter)}")
    # 3. tail from geometry
    net = build_backbone("efficientnet_lite0", "imagenet").eval()
    with torch.no_grad():
        masks = [object_mask(a) for s in range(0, n, 32) for a in net(x[s:s + 32]).sum(1).numpy()]
    obj_side = np.array([max(b[2] - b[0], b[3] - b[1]) for b in map(mask_box, masks)])
    print("tail, the model's squares:", score("tail", sq[:, tm, :2], sq[:, tm, 2]))
    for rule in TAIL_RULES:
        tc = np.array([tail_from_head(mk, head_c[k], rule) for k, mk in enumerate(masks)])
        print(f"tail {rule:8s}, quarter side: {score('tail', tc, quarter)}; "
              f"quarter of the object: {score('tail', tc, 0.25 * obj_side)}")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
