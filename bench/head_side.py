"""The head square's side at the model's own centre: which side rule would fit the head boxes,
and does the training loss pull the side anywhere? (docs/results.md, run 36.)

    SGMA_SHARED_DATA=../shared/data python bench/head_side.py RUN/best.pt CUB_ROOT [--val 343] [--grad 160]

1. On the validation-class images of fold 1 (part boxes report only, nothing here chooses): the
   anchor map's square, centre kept, with the model's side, a quarter of the image, a quarter of
   the CUB bird box (``bounding_boxes.txt``), the ground-truth head box's side (an oracle), and the
   object's quarter scaled by 1.25 and 1.5; with the ratios between those sides.
2. On ``--grad`` training-class images: Eq. 9 + Eq. 10's loss (alpha_cls L_CLS + alpha_cct L_CCT)
   and its derivative with respect to s, where the anchor's side is multiplied by exp(s), at
   scales 0.8, 1, 1.25, 1.5 (batches of 16). A loss whose derivative has no steady sign gives the
   paper's learned t_s (Eq. 7) nothing to follow.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from centre_or_side import bird_boxes, validation_run
from sgma.engine.embedding import class_center_triplet_loss, embedding_softmax_loss
from sgma.engine.evaluate import squares_to_pixel_boxes
from sgma.engine.loader import ImageSet
from sgma.engine.metrics import iou_pairs


def side_table(ds, va, ex, sizes, gt, assign) -> None:
    sq, n = ex["squares"], len(va)
    head = sq[:, assign["head"]]
    have = [k for k, b in enumerate(gt["head"]) if b is not None]
    g = np.array([gt["head"][k] for k in have], dtype=np.float64)
    g_side = np.zeros(n)
    g_side[have] = np.maximum((g[:, 2] - g[:, 0]) / sizes[have, 0], (g[:, 3] - g[:, 1]) / sizes[have, 1])
    b = bird_boxes(ds, va)
    bird_quarter = 0.25 * np.maximum(b[:, 2] / sizes[:, 0], b[:, 3] / sizes[:, 1])
    model_side = head[:, 2]
    rows = {"the model's side": model_side, "a quarter of the image": np.full(n, 0.25),
            "a quarter of the bird box": bird_quarter, "the head box's side (oracle)": g_side,
            "the model's side x 1.25": np.clip(1.25 * model_side, 0.1, 0.6),
            "the model's side x 1.5": np.clip(1.5 * model_side, 0.1, 0.6)}
    for name, side in rows.items():
        boxes = squares_to_pixel_boxes(np.concatenate([head[:, :2], side[:, None]], 1)[:, None], sizes)[have, 0]
        iou = iou_pairs(boxes, g)
        print(f"head square, {name}: IoU > 0.5 {np.mean(iou > 0.5):.3f}, mean IoU {iou.mean():.3f}")
    print(f"median ratios: head box / model side {np.median(g_side[have] / model_side[have]):.2f}, "
          f"head box / quarter bird box {np.median(g_side[have] / bird_quarter[have]):.2f}, "
          f"model side / quarter bird box {np.median(model_side / bird_quarter):.2f}")


def side_gradient(model, ds, n_images: int) -> None:
    sp = ds.split
    classes = list(sp.train_classes or [c for c in sp.seen if c not in sp.val_classes])
    label = {c: i for i, c in enumerate(classes)}
    ids = [i for i in sp.trainval if ds.labels[i] in label]
    pick = np.random.default_rng(0).choice(ids, n_images, replace=False)
    ims = ImageSet(ds, list(pick), model.cfg.attention_size, label)
    sem = torch.as_tensor(ds.semantics, dtype=torch.float32)[classes]
    a, cfg = model.anchor_map, model.cfg
    own_side = model.far_end.anchor_object_side
    anchor = torch.zeros(cfg.n_parts, 3)
    anchor[a, 2] = 1.0
    for scale in (0.8, 1.0, 1.25, 1.5):
        grads, losses = [], []
        for s0 in range(0, n_images - 15, 16):
            xs, ys = zip(*[ims[k][:2] for k in range(s0, s0 + 16)])
            x, y = torch.stack(xs), torch.as_tensor(ys)
            with torch.no_grad():
                _, maps, _ = model.attend(x)
                sq = model.far_end(model.object_projection(x), model.cropper(maps))
            s = torch.tensor(float(np.log(scale)), requires_grad=True)
            scaled = (sq[:, :, 2:3] * torch.exp(s)).clamp(cfg.part_side_min, cfg.part_side_max)
            squares = sq * (1 - anchor) + anchor * scaled
            model.far_end.anchor_object_side = False     # keep the scaled side
            try:
                out = model(x, sem, squares=squares)
            finally:
                model.far_end.anchor_object_side = own_side
            loss = cfg.alpha_cls * embedding_softmax_loss(out.scores, y) + \
                cfg.alpha_cct * class_center_triplet_loss(out.cct_features, model.centers, y, cfg.cct_margin)
            loss.backward()
            grads.append(float(s.grad))
            losses.append(float(loss.detach()))
        print(f"side x {scale}: loss {np.mean(losses):.4f}, dL/ds mean {np.mean(grads):+.3f}, "
              f"spread over {len(grads)} batches {np.std(grads):.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("root")
    ap.add_argument("--val", type=int, default=343)
    ap.add_argument("--grad", type=int, default=160)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, ds, va, ex, sizes, gt, assign = validation_run(args.checkpoint, args.root, args.val, keep_maps=False)
    if model.far_end is None or not model.far_end.fitted:
        raise SystemExit(f"{args.checkpoint}: the probe needs a model with a fitted far end (model.far_end_square)")
    side_table(ds, va, ex, sizes, gt, assign)
    if args.grad:
        side_gradient(model, ds, args.grad)


if __name__ == "__main__":
    main()
