"""What the object's far end costs one prediction: ``Predictor.predict`` of the bundled CUB model
on one real image, with the far end as trained and with it switched off (anchor unset), called in
turn so both see the same background load (docs/benchmarks.md).

    SGMA_SHARED_DATA=../shared/data python bench/far_end_latency.py CUB_ROOT [--reps 10] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from sgma.engine.bench import machine_info, time_alternating
from sgma.engine.bundled import bundled_checkpoint
from sgma.engine.data.registry import load_dataset
from sgma.engine.predict import Predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with_far = Predictor.from_checkpoint(bundled_checkpoint("cub"))
    if with_far.model.far_end is None or not with_far.model.far_end.fitted:
        raise SystemExit("the bundled CUB model has no fitted far end")
    without = Predictor(copy.deepcopy(with_far.model), with_far.state)
    without.model.far_end.anchor.fill_(-1)
    image = load_dataset("cub", args.root, split="ps").load_image(0)
    with torch.no_grad():
        times = time_alternating({"far end": lambda: with_far.predict(image),
                                  "off": lambda: without.predict(image)}, warmup=2, reps=args.reps,
                                 threads={"far end": args.threads, "off": args.threads})
    print(machine_info())
    for name, t in times.items():
        print(f"{name}: median {np.median(t) * 1000:.0f} ms over {len(t)} calls, {args.threads} thread(s)")


if __name__ == "__main__":
    main()
