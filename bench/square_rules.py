"""Which square rule (centre x side) should turn a trained model's attention maps into part crops,
chosen without part boxes? (docs/results.md, runs 16 and 21.)

    SGMA_SHARED_DATA=../shared/data python bench/square_rules.py RUN/best.pt CUB_ROOT [--train 400]

For every rule it crops each map's square from the 320 px image (Eq. 8's mask and zoom, as the
model does), embeds the crop with the fixed ImageNet EfficientNet-Lite0 (pooled stride-32 features)
and fits a ridge map from the crops of ``--train`` training-class images to their class attributes.
The annotation-free criterion is that map's zero-shot accuracy (MCA) on the validation classes of
fold 1: a rule that crops the same part on every bird gives crops whose features agree within a
class, so its crops classify unseen classes better. Part boxes of the validation images are
reported beside it (IoU > 0.5, mean IoU), never used to choose. CPU only. A centre rule named
"flip-averaged <rule>" applies <rule> to each map averaged with the mirrored map of the mirrored
image.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from scda import mask_box, object_mask
from sgma.engine.backbones import build_backbone
from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
from sgma.engine.cropping import crop_parts, peak_centroid, zoom_grid
from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import assign_parts, image_sizes, squares_to_pixel_boxes
from sgma.engine.extract import extract
from sgma.engine.loader import ImageSet
from sgma.engine.metrics import iou_pairs


def images_u8(ds, ids, size):
    ims = ImageSet(ds, ids, size)
    return torch.stack([(ims[k][0] * 255).round().to(torch.uint8) for k in range(len(ids))])


@torch.no_grad()
def embed(net, ims_u8, squares, part_size=112, batch=64):
    out = []
    for s in range(0, len(ims_u8), batch):
        x = ims_u8[s:s + batch].float() / 255
        crops = crop_parts(x, torch.as_tensor(squares[s:s + batch, None], dtype=torch.float32), part_size)[:, 0]
        out.append(net(crops).mean(dim=(2, 3)).numpy())
    return np.concatenate(out)


@torch.no_grad()
def object_boxes(net, ims_u8, batch=64):
    """SCDA boxes (x0, y0, x1, y1) as fractions of the resized image's side."""
    boxes = []
    for s in range(0, len(ims_u8), batch):
        a = net(ims_u8[s:s + batch].float() / 255).sum(dim=1).numpy()
        boxes.extend(mask_box(object_mask(m)) for m in a)
    return np.array(boxes)


def ridge_zsl(xtr, ytr, xva, yva, sem, alpha=10.0):
    """ZSL MCA of a ridge map features -> class attributes, scored by cosine over the validation classes."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a, b = (xtr - mu) / sd, (xva - mu) / sd
    t = sem[ytr]
    w = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]), a.T @ t)
    classes = np.unique(yva)
    s = sem[classes] / np.linalg.norm(sem[classes], axis=1, keepdims=True)
    p = b @ w
    pred = classes[(p / (np.linalg.norm(p, axis=1, keepdims=True) + 1e-9) @ s.T).argmax(1)]
    return float(np.mean([np.mean(pred[yva == c] == c) for c in classes]))


def centres(maps, rule):
    """(N, h, w) maps -> (N, 2) centre (x, y) fractions."""
    n, h, w = maps.shape
    t = torch.as_tensor(maps, dtype=torch.float32)[:, None]
    if rule == "hard peak":
        k = t.flatten(1).argmax(1)
        return torch.stack([(k % w + 0.5) / w, (k // w + 0.5) / h], 1).numpy()
    if rule.startswith("centroid"):
        return peak_centroid(t, int(rule[-1]))[:, 0].numpy()
    if rule == "bicubic x8 peak":     # of the logit: sigmoid maps saturate, and bicubic overshoots a plateau's edge
        up = F.interpolate(torch.logit(t.clamp(1e-4, 1 - 1e-4)), scale_factor=8, mode="bicubic", align_corners=False)
        H, W = up.shape[2:]
        k = up.flatten(1).argmax(1)
        return torch.stack([(k % W + 0.5) / W, (k // W + 0.5) / H], 1).numpy()
    raise ValueError(rule)


@torch.no_grad()
def zoom_refined(model, ims_u8, centre, m, zoom=0.5, batch=32):
    """Look closer (RA-CNN, the paper's [36]): the square of side ``zoom`` around ``centre`` is
    resampled to the attention input size, attended again, and map ``m``'s 3 x 3 centroid there is
    carried back to the image. (N, 2) -> (N, 2) fractions."""
    out = []
    for s in range(0, len(ims_u8), batch):
        x = ims_u8[s:s + batch].float() / 255
        c = torch.as_tensor(centre[s:s + batch], dtype=torch.float32).clamp(zoom / 2, 1 - zoom / 2)
        sq = torch.cat([c, torch.full((len(c), 1), zoom)], 1)
        crops = F.grid_sample(x, zoom_grid(sq, x.shape[-1]), mode="bilinear", align_corners=False)
        _, maps, _ = model.attend(crops)
        p = peak_centroid(maps[:, m:m + 1], 1)[:, 0]
        out.append((c - zoom / 2 + p * zoom).numpy())
    return np.concatenate(out)


@torch.no_grad()
def flip_averaged_maps(model, ims_u8, batch=32):
    """Each map averaged with the mirrored map of the mirrored image: (N, n, h, w). A square rule
    over it is mirror-consistent by construction (run 21)."""
    out = []
    for s in range(0, len(ims_u8), batch):
        x = ims_u8[s:s + batch].float() / 255
        out.append(((model.attend(x)[1] + model.attend(x.flip(-1))[1].flip(-1)) / 2).numpy())
    return np.concatenate(out)


@torch.no_grad()
def flip_disagreement(model, ims_u8, m, rule, batch=32):
    """Unsupervised: the median distance (fraction of the side) between a rule's centre on the
    image and the mirror of its centre on the flipped image."""
    maps, fmaps = [], []
    for s in range(0, len(ims_u8), batch):
        x = ims_u8[s:s + batch].float() / 255
        maps.append(model.attend(x)[1][:, m].numpy())
        fmaps.append(model.attend(x.flip(-1))[1][:, m].numpy())
    maps, fmaps = np.concatenate(maps), np.concatenate(fmaps)
    if rule == "zoom x2 (centroid 1)":
        a = zoom_refined(model, ims_u8, centres(maps, "centroid 1"), m)
        b = zoom_refined(model, ims_u8.flip(-1), centres(fmaps, "centroid 1"), m)
    else:
        a, b = centres(maps, rule), centres(fmaps, rule)
    b = np.stack([1 - b[:, 0], b[:, 1]], 1)
    return float(np.median(np.hypot(*(a - b).T)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("root")
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--val", type=int, default=400)
    ap.add_argument("--centres", default="model,hard peak,centroid 1,centroid 2,bicubic x8 peak,zoom x2 (centroid 1)")
    ap.add_argument("--sides", default="model,0.25 image,0.25 object,0.35 object")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    model = model_from_checkpoint(load_checkpoint(args.checkpoint))
    ds = load_dataset("cub", args.root, split="ps", fold=1)
    sp = ds.split
    rng = np.random.default_rng(0)
    tr_all = [i for i in sp.trainval if ds.labels[i] in set(sp.train_classes)]
    tr = sorted(rng.choice(tr_all, min(args.train, len(tr_all)), replace=False).tolist())
    va = [i for i in sp.trainval if ds.labels[i] in set(sp.val_classes)][:args.val]
    size = model.cfg.attention_size
    data = {}
    for name, ids in (("train", tr), ("val", va)):
        ex = extract(model, ds, ids, keep_maps=True)
        data[name] = dict(ids=ids, maps=ex["maps"].astype(np.float32), squares=ex["squares"],
                          y=np.array([ds.labels[i] for i in ids]), ims=images_u8(ds, ids, size))
    # the fixed ImageNet EfficientNet-Lite0 (stride 32): crop embedding and the SCDA object box
    net = build_backbone("efficientnet_lite0", "imagenet").eval()
    for d in data.values():
        d["obj"] = object_boxes(net, d["ims"])
    print(f"{len(tr)} training / {len(va)} validation images, maps {data['val']['maps'].shape}: {time.time() - t0:.0f} s")
    sem = np.asarray(ds.semantics, dtype=np.float64)
    v = data["val"]
    sizes = image_sizes(ds, va)
    gt = {p: [ds.items[i].part_boxes.get(p) for i in va] for p in ("head", "tail")}
    assign = assign_parts(squares_to_pixel_boxes(v["squares"], sizes), gt, ["head", "tail"])
    print("maps assigned (reported only):", assign)
    whole = {k: embed(net, d["ims"], np.tile([[0.5, 0.5, 1.0]], (len(d["ims"]), 1))) for k, d in data.items()}
    print(f"whole image: val ZSL {ridge_zsl(whole['train'], data['train']['y'], whole['val'], v['y'], sem):.3f}")

    def sides(d, m, rule):
        n = len(d["ims"])
        if rule == "0.25 image":
            return np.full(n, 0.25)
        if rule == "model":
            return d["squares"][:, m, 2]
        o = d["obj"]
        return float(rule.split()[0]) * np.maximum(o[:, 2] - o[:, 0], o[:, 3] - o[:, 1])

    rows = []
    for p, m in sorted(assign.items(), key=lambda kv: kv[1]):
        have = [k for k, g in enumerate(gt[p]) if g is not None]
        g = np.array([gt[p][k] for k in have])
        for crule in args.centres.split(","):
            if crule != "model" and not crule.startswith("flip-averaged"):
                print(f"map {m + 1} ({p}) centre {crule}: flip disagreement (unsupervised) "
                      f"{flip_disagreement(model, v['ims'], m, crule):.4f}", flush=True)
            cs = {}
            for k, d in data.items():
                if crule == "model":
                    cs[k] = d["squares"][:, m, :2]
                elif crule.startswith("flip-averaged "):
                    if "fmaps" not in d:
                        d["fmaps"] = flip_averaged_maps(model, d["ims"])
                    cs[k] = centres(d["fmaps"][:, m], crule[len("flip-averaged "):])
                elif crule.startswith("zoom"):
                    cs[k] = zoom_refined(model, d["ims"], centres(d["maps"][:, m], "centroid 1"), m)
                else:
                    cs[k] = centres(d["maps"][:, m], crule)
            for srule in args.sides.split(","):
                sq = {}
                for k, d in data.items():
                    c = cs[k]
                    sq[k] = np.concatenate([c, sides(d, m, srule)[:, None]], 1)
                f = {k: embed(net, d["ims"], sq[k]) for k, d in data.items()}
                zsl = ridge_zsl(f["train"], data["train"]["y"], f["val"], v["y"], sem)
                iou = iou_pairs(squares_to_pixel_boxes(sq["val"][:, None], sizes)[have, 0], g)
                rows.append((p, m + 1, crule, srule, zsl, float(np.mean(iou > 0.5)), float(iou.mean())))
                print(f"map {m + 1} ({p:4s}) centre {crule:16s} side {srule:11s} | val ZSL of its crops {zsl:.3f}"
                      f" | reported: IoU>0.5 {np.mean(iou > 0.5):.3f}, mean IoU {iou.mean():.3f}", flush=True)
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
