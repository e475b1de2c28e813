"""Which protocol gives the paper's "Random" row of Table 1 (head 25.6, tail 26.0)?

    python bench/random_row.py --root CUB_ROOT [--seeds 10]

Uniform random squares of a quarter of the image side, scored by strict IoU > 0.5 against this
project's head and tail boxes (engine/data/parts.py), reach about 1 % on real CUB. This script
scores random squares under other plausible protocols on every image of ``--root`` that has the
part (the boxes are the loader's; the bird box is CUB's ``bounding_boxes.txt``) and prints one
row per variant, so docs/results.md can say which comes closest. It trains nothing and reads no
model. Variants:

- where the square is drawn: inside the image, or inside the bird box (the image cropped to the bird);
- its side: a quarter of the image, a quarter of the bird box, or the ground-truth box's own side;
- the ground-truth box: this project's, or grown about its centre (x1.5, x2: a looser part box);
- the overlap rule: IoU > 0.5, intersection over the ground-truth area > 0.5 (the part is mostly
  covered), intersection over the square's area > 0.5 (the square mostly lies on the part).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sgma.engine.data.registry import load_dataset
from sgma.engine.evaluate import image_sizes


def overlaps(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Row-wise IoU, intersection / area(b) and intersection / area(a) of boxes (N, 4)."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return {"iou": inter / (area_a + area_b - inter), "cover_gt": inter / area_b, "on_part": inter / area_a}


def random_boxes(frame: np.ndarray, bw: np.ndarray, bh: np.ndarray, rng) -> np.ndarray:
    """One box of size (bw, bh) per row, placed uniformly inside ``frame`` (N, 4); a box larger
    than its frame is centred on it."""
    fw, fh = frame[:, 2] - frame[:, 0], frame[:, 3] - frame[:, 1]
    x0 = frame[:, 0] + rng.random(len(frame)) * np.clip(fw - bw, 0, None) + np.minimum(fw - bw, 0) / 2
    y0 = frame[:, 1] + rng.random(len(frame)) * np.clip(fh - bh, 0, None) + np.minimum(fh - bh, 0) / 2
    return np.stack([x0, y0, x0 + bw, y0 + bh], axis=1)


def variants(sizes, bird, gt):
    W, H = sizes[:, 0], sizes[:, 1]
    image = np.stack([np.zeros_like(W), np.zeros_like(H), W, H], axis=1)
    bwid, bhei = bird[:, 2] - bird[:, 0], bird[:, 3] - bird[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    return {
        "image, quarter of the image (the project's random row)": (image, W / 4, H / 4),
        "image, quarter-side square of min(w, h)": (image, np.minimum(W, H) / 4, np.minimum(W, H) / 4),
        "image, the ground-truth box's size": (image, gw, gh),
        "bird box, quarter of the image": (bird, W / 4, H / 4),
        "bird box, quarter of the bird box": (bird, bwid / 4, bhei / 4),
        "bird box, square of a quarter of max(bird w, h)": (bird, np.maximum(bwid, bhei) / 4, np.maximum(bwid, bhei) / 4),
        "bird box, the ground-truth box's size": (bird, gw, gh),
        "bird box, half of the image": (bird, W / 2, H / 2),
    }


def grown(gt: np.ndarray, factor: float) -> np.ndarray:
    c = (gt[:, :2] + gt[:, 2:]) / 2
    half = (gt[:, 2:] - gt[:, :2]) * factor / 2
    return np.concatenate([c - half, c + half], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    ds = load_dataset("cub", args.root, split="ps")
    boxes = {}
    for line in (Path(args.root) / "CUB_200_2011" / "bounding_boxes.txt").read_text().split("\n"):
        if line.strip():
            i, x, y, w, h = line.split()
            boxes[i] = (float(x), float(y), float(x) + float(w), float(y) + float(h))
    all_sizes = image_sizes(ds, range(len(ds.items)))
    print(f"{len(ds.items)} images of {args.root}; mean of {args.seeds} seeds; strict IoU > 0.5 is the headline")
    print(f"| variant | head IoU>0.5 | tail IoU>0.5 | head cover>0.5 | tail cover>0.5 | head on-part>0.5 | tail on-part>0.5 |")
    print("|---|---|---|---|---|---|---|")
    rows: dict[str, dict[str, float]] = {}
    for part in ("head", "tail"):
        have = [k for k, it in enumerate(ds.items) if part in it.part_boxes]
        gt = np.array([ds.items[k].part_boxes[part] for k in have])
        sizes = all_sizes[have]
        bird = np.array([boxes[ds.items[k].image_id] for k in have])
        bird[:, 2] = np.minimum(bird[:, 2], sizes[:, 0])
        bird[:, 3] = np.minimum(bird[:, 3], sizes[:, 1])
        for factor in (1.0, 1.5, 2.0):
            g = grown(gt, factor)
            for name, (frame, bw, bh) in variants(sizes, bird, g).items():
                acc = {"iou": [], "cover_gt": [], "on_part": []}
                for seed in range(args.seeds):
                    rng = np.random.default_rng(seed)
                    o = overlaps(random_boxes(frame, bw, bh, rng), g)
                    for k in acc:
                        acc[k].append(float(np.mean(o[k] > 0.5)))
                key = name if factor == 1.0 else f"{name}; ground truth x{factor:g}"
                rows.setdefault(key, {}).update({f"{part} {k}": 100 * float(np.mean(v)) for k, v in acc.items()})
    for name, r in rows.items():
        cells = [r[f"{p} {k}"] for k in ("iou", "cover_gt", "on_part") for p in ("head", "tail")]
        print(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    print("paper, Table 1 Random: head 25.6, tail 26.0")


if __name__ == "__main__":
    main()
