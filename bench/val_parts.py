"""A trained model's parts on the validation-class images of fold 1, as the evaluator scores the
test images: IoU > 0.5 of each part's square, mean IoU, and pointing (the map's peak inside the
part's box, or for the far-end square of ``model.far_end_square`` the square's centre). Part boxes
only report (docs/results.md, run 30).

    SGMA_SHARED_DATA=../shared/data python bench/val_parts.py RUN/best.pt CUB_ROOT [--val 343]
"""
from __future__ import annotations

from centre_or_side import validation_cli
from sgma.engine.evaluate import _parts


def main() -> None:
    model, ds, va, ex, sizes, gt, assign = validation_cli(keep_maps=True)
    far = model.far_end_map
    parts = _parts(ds, ex, ex, 0, far_end_map=far)
    for p in ("head", "tail"):
        print(f"{p} ({parts['assignment'][p]}{', far end' if far is not None and assign[p] == far else ''}): "
              f"IoU > 0.5 {parts[p]:.3f}, mean IoU {parts['mean_iou'][p]:.3f}, pointing {parts['pointing'][p]:.3f}"
              f" on {parts['n_images'][p]} images")


if __name__ == "__main__":
    main()
