"""Where a trained checkpoint's head and tail squares go wrong on validation-class images
(docs/results.md, run 5): square centre rules x side rules, an annotation-free object box (SCDA on
the fixed EfficientNet-Lite0's stride-32 head) and a far-end rule for the tail. Part boxes only
report here; nothing in this script chooses a setting.

    SGMA_SHARED_DATA=../shared/data python bench/square_analysis.py RUN/best.pt CUB_ROOT [N_IMAGES]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, torch
from scda import mask_box, object_mask
from sgma.engine.checkpoint import load_checkpoint
try:
    from sgma.engine.checkpoint import model_from_checkpoint
except ImportError:
    from sgma.engine.trainer import model_from_checkpoint
from sgma.engine.data.registry import load_dataset
from sgma.engine.extract import extract
from sgma.engine.evaluate import image_sizes, assign_parts, squares_to_pixel_boxes, peak_inside
from sgma.engine.metrics import iou_pairs

ckpt, root = sys.argv[1], sys.argv[2]
n_img = int(sys.argv[3]) if len(sys.argv) > 3 else 300
torch.set_num_threads(2)
state = load_checkpoint(ckpt)
model = model_from_checkpoint(state)
ds = load_dataset("cub", root, split="ps", fold=1)
sp = ds.split
ids = [i for i in sp.trainval if ds.labels[i] in set(sp.val_classes)][:n_img]
t0 = time.time()
ex = extract(model, ds, ids, keep_maps=True)
print(f"{len(ids)} images in {time.time()-t0:.0f} s; squares side mean {ex['squares'][..., 2].mean():.3f}")
sizes = image_sizes(ds, ids); W, H = sizes[:, 0], sizes[:, 1]
gt = {p: [ds.items[i].part_boxes.get(p) for i in ids] for p in ("head", "tail")}
boxes = squares_to_pixel_boxes(ex["squares"], sizes)
assign = assign_parts(boxes, gt, ["head", "tail"])
print("assignment", assign)
maps = ex["maps"].astype(np.float32)   # (N, n, h, w)
N, n, h, w = maps.shape

def centre_peak(m):
    k = m.reshape(N, -1).argmax(1); return (k % w + 0.5) / w, (k // w + 0.5) / h

def centre_refined(m, r=1):
    cx, cy = centre_peak(m); out = []
    for j in range(N):
        k = m[j].argmax(); py, px = divmod(k, w)
        y0, y1, x0, x1 = max(0, py - r), min(h, py + r + 1), max(0, px - r), min(w, px + r + 1)
        patch = m[j, y0:y1, x0:x1]; patch = patch - patch.min(); s = patch.sum() + 1e-9
        yy, xx = np.mgrid[y0:y1, x0:x1]
        out.append((((xx * patch).sum() / s + 0.5) / w, ((yy * patch).sum() / s + 0.5) / h))
    return np.array(out)[:, 0], np.array(out)[:, 1]

def rect(cx, cy, side):      # the model's rule: fractions of each axis
    return np.stack([(cx - side / 2) * W, (cy - side / 2) * H, (cx + side / 2) * W, (cy + side / 2) * H], 1)

def pixsq(cx, cy, side):     # a square in pixels of side side * sqrt(W H)
    s = side * np.sqrt(W * H) / 2
    return np.stack([cx * W - s, cy * H - s, cx * W + s, cy * H + s], 1)

def score(p, b):
    have = [k for k, g in enumerate(gt[p]) if g is not None]
    g = np.array([gt[p][k] for k in have]); v = iou_pairs(b[have], g)
    return f"{np.mean(v > 0.5):.3f} (mIoU {v.mean():.3f})"

for p, m_i in assign.items():
    m = maps[:, m_i]
    have = [k for k, g in enumerate(gt[p]) if g is not None]
    pt = peak_inside(m[have], [gt[p][k] for k in have], sizes[have]).mean()
    print(f"\n== {p} (map {m_i + 1}), pointing {pt:.3f}")
    sq = ex["squares"][:, m_i]
    print("  model squares:", score(p, rect(sq[:, 0], sq[:, 1], sq[:, 2])))
    g = np.array([gt[p][k] if gt[p][k] is not None else (0, 0, 1, 1) for k in range(N)])
    gcx, gcy = (g[:, 0] + g[:, 2]) / 2 / W, (g[:, 1] + g[:, 3]) / 2 / H
    gside = (g[:, 2] - g[:, 0]) / np.sqrt(W * H)
    for name, (cx, cy) in {"model centre": (sq[:, 0], sq[:, 1]), "hard peak": centre_peak(m),
                           "3x3 centroid": centre_refined(m, 1), "5x5 centroid": centre_refined(m, 2),
                           "GT centre (oracle)": (gcx, gcy)}.items():
        err = np.hypot((cx - gcx) * W, (cy - gcy) * H) / (gside * np.sqrt(W * H))
        print(f"  {name:20s} side .25 rect {score(p, rect(cx, cy, 0.25))} | pixel square .25 {score(p, pixsq(cx, cy, 0.25))}"
              f" | oracle side {score(p, pixsq(cx, cy, gside))} | median centre error / GT side {np.median(err[have]):.2f}")

# ---- the object (SCDA on the s32 head of the same fixed network) and a far-end rule for the tail
from nmf_parts import Taps, extract as tap_extract
taps = Taps()
F = tap_extract(taps, ds, ids, model.cfg.attention_size)["s32_head"]
A = F.sum(axis=1); oh, ow = A.shape[1:]
masks = np.array([object_mask(a) for a in A])
bx = np.array([mask_box(mk) for mk in masks]); ow_f, oh_f = bx[:, 2] - bx[:, 0], bx[:, 3] - bx[:, 1]
obj_side = 0.25 * np.maximum(ow_f * W, oh_f * H) / np.sqrt(W * H)
print(f"\nobject side (0.25 of the SCDA box, pixel square): mean {obj_side.mean():.3f}")
for p, m_i in assign.items():
    m = maps[:, m_i]; cx, cy = centre_refined(m, 1); pcx, pcy = centre_peak(m)
    print(f"  {p}: hard peak + object side {score(p, pixsq(pcx, pcy, obj_side))}; 3x3 centroid + object side {score(p, pixsq(cx, cy, obj_side))}")
hm = assign.get("head")
if hm is not None:
    hx, hy = centre_refined(maps[:, hm], 1)
    tx, ty, rx, ry = [], [], [], []
    for j, mk in enumerate(masks):
        ys, xs = np.nonzero(mk); px, py = (xs + 0.5) / ow * W[j], (ys + 0.5) / oh * H[j]
        d = np.hypot(px - hx[j] * W[j], py - hy[j] * H[j]); k = d.argmax()
        tx.append(px[k] / W[j]); ty.append(py[k] / H[j])
        mx, my = px.mean(), py.mean()
        rx.append((2 * mx - hx[j] * W[j]) / W[j]); ry.append((2 * my - hy[j] * H[j]) / H[j])
    tx, ty, rx, ry = map(np.array, (tx, ty, rx, ry))
    for name, (cx, cy) in {"farthest object cell from the head": (tx, ty), "head reflected through the object centroid": (rx, ry)}.items():
        have = [k for k, g in enumerate(gt["tail"]) if g is not None]
        g = np.array([gt["tail"][k] for k in have])
        inside = np.mean([(g[i][0] <= cx[k] * W[k] <= g[i][2]) and (g[i][1] <= cy[k] * H[k] <= g[i][3]) for i, k in enumerate(have)])
        print(f"  tail by {name}: pointing {inside:.3f}; object side {score('tail', pixsq(cx, cy, obj_side))}; side .25 rect {score('tail', rect(cx, cy, 0.25))}")
