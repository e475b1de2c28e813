"""The evaluator: ZSL and GZSL accuracy under the three inference modes of section 3.4, part
detection precision (section 4.3) against a random-square baseline, per-class accuracy and the
confusion matrix.

- ZSL: argmax among the unseen classes; top-1 mean class accuracy (MCA) over unseen test images.
- GZSL: argmax over seen + unseen classes; A_U and A_S are MCAs over unseen and seen test images;
  H = 2 A_U A_S / (A_U + A_S). Calibrated stacking (seen scores lowered by gamma) is reported
  under its own key (``gzsl_calibrated``), never as the headline: with the gamma the user gives
  (every mode), else with the one the trainer chose on a GZSL validation split
  (``train.gzsl_holdout``, ``choose_gamma``; the checkpoint's inference mode only).
- Class-centre prototypes: the mean phi_cct of the training images of each class the model was
  trained on, as the trainer stored them in the checkpoint (``prototypes``; computed from the
  dataset's training images only for older checkpoints without them); every other class (unseen,
  validation) gets W Phi_cct from ridge regression (Eq. 12). So a folder of test images alone
  evaluates.
- Parts: a part is found when its predicted square has IoU > 0.5 with the ground-truth box.
  Which attention map is "head" and which "tail" is decided on validation images (the best
  assignment by mean IoU; training images when there are none; the test images themselves when the
  folder holds neither) and recorded with where it was decided; the random baseline
  draws squares of the same side uniformly inside the image.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from . import metrics as M
from .checkpoint import CheckpointError, inference_config
from .cropping import squares_to_boxes
from .data.base import DatasetError, ZSLDataset, open_image
from .extract import extract
from .image_check import describe, find_unreadable
from .inference import MODES, ClassPrototypes, center_similarity, mode_scores


@dataclass
class Evaluation:
    summary: dict                                   # the evaluation JSON
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # image index -> class, per mode
    # per test image (aligned with each mode's predictions["indices"]): part -> IoU of the square of
    # the map assigned to that part with its ground-truth box, NaN where the image has no such box
    part_iou: dict[str, np.ndarray] = field(default_factory=dict)

    def default_predictions(self) -> Optional[dict]:
        """The predictions under the checkpoint's inference mode (``summary["inference"]``)."""
        return self.predictions.get(self.summary.get("inference", "combined"))

    def predicted_per_image(self, n_images: int, unseen: Sequence[int]) -> np.ndarray:
        """The predicted class of every dataset image under the checkpoint's inference mode: the
        ZSL prediction for unseen test images (``unseen``), the GZSL one for the seen, -1 where
        the image was not evaluated. (n_images,) int."""
        out = np.full(n_images, -1, dtype=np.int64)
        p = self.default_predictions()
        if p is None:
            return out
        idx = np.asarray(p["indices"], dtype=np.int64)
        is_unseen = np.isin(idx, np.asarray(unseen, dtype=np.int64))
        out[idx] = np.where(is_unseen, np.asarray(p["zsl"]), np.asarray(p["gzsl"]))
        return out

    def part_iou_per_image(self, n_images: int) -> dict[str, np.ndarray]:
        """``part_iou`` spread over the whole dataset: part -> (n_images,), NaN where not evaluated."""
        if not self.part_iou or not self.predictions:
            return {}
        idx = np.asarray(next(iter(self.predictions.values()))["indices"], dtype=np.int64)
        out = {}
        for part, v in self.part_iou.items():
            full = np.full(n_images, np.nan)
            full[idx] = np.asarray(v, dtype=np.float64)
            out[part] = full
        return out

    def map_assignment(self) -> dict[int, str]:
        """Attention-map index -> part name, as the summary's ``parts.assignment`` ("map1") records it."""
        out = {}
        for part, m in ((self.summary.get("parts") or {}).get("assignment") or {}).items():
            try:
                out[int(str(m).replace("map", "")) - 1] = part
            except ValueError:
                continue
        return out

    def zsl_cell(self, true_class: int, predicted_class: int, labels: np.ndarray) -> np.ndarray:
        """Dataset indices of the test images of one ZSL confusion-matrix cell (``labels``: the
        dataset's class of every image)."""
        p = self.default_predictions()
        if p is None:
            return np.zeros(0, dtype=np.int64)
        idx = np.asarray(p["indices"], dtype=np.int64)
        return idx[(labels[idx] == true_class) & (np.asarray(p["zsl"]) == predicted_class)]


# training images that assign maps to head and tail when the dataset has no validation images
# (a model retrained on every seen class): a seeded sample of at most this many
ASSIGN_IMAGES = 300


def align_classes(state: dict, dataset: ZSLDataset) -> list[int]:
    """Dataset indices of the checkpoint's training classes, matched by name; refuses a dataset
    whose attribute names differ from the checkpoint's."""
    if list(state["attribute_names"]) != list(dataset.attribute_names):
        raise CheckpointError(f"the dataset's {len(dataset.attribute_names)} attributes differ from the "
                              f"checkpoint's {len(state['attribute_names'])}: the model cannot score its classes")
    pos = {n: i for i, n in enumerate(dataset.class_names)}
    missing = [n for n in state["train_classes"] if n not in pos]
    if missing:
        raise CheckpointError(f"training classes absent from the dataset: {', '.join(missing[:5])}")
    return [pos[n] for n in state["train_classes"]]


def class_prototypes(cct_train: np.ndarray, labels_train: np.ndarray, train_classes: list[int],
                     semantics: np.ndarray, ridge_lambda: float) -> np.ndarray:
    """Phi_cct for every class: seen-class means where trained, Eq. 12 for the rest."""
    cp = ClassPrototypes.from_features(cct_train, labels_train, train_classes, semantics, ridge_lambda)
    return cp.of(semantics, seen_rows=train_classes).numpy()


def prototypes_from_seen(proto_seen: np.ndarray, train_classes: list[int], semantics: np.ndarray,
                         ridge_lambda: float) -> np.ndarray:
    """Phi_cct for every class from the training classes' prototypes (section 3.4, ``ClassPrototypes``):
    those as given, every other class W Phi^s_cct with W from the ridge regression of Eq. 12."""
    sem = torch.as_tensor(semantics, dtype=torch.float64)
    cp = ClassPrototypes(sem[list(train_classes)], np.asarray(proto_seen, dtype=np.float64), ridge_lambda)
    return cp.of(sem, seen_rows=train_classes).numpy()


def image_sizes(dataset: ZSLDataset, indices) -> np.ndarray:
    sizes = []
    for i in indices:
        it = dataset.items[i]
        if it.path:
            with open_image(it.path) as im:
                sizes.append(im.size)
        else:
            sizes.append(dataset.load_image(i).size)
    return np.asarray(sizes, dtype=np.float64).reshape(-1, 2)


def squares_to_pixel_boxes(squares: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(N, n, 3) fractions -> (N, n, 4) pixel boxes of each image's own (width, height)."""
    sizes = torch.as_tensor(sizes, dtype=torch.float64)
    return squares_to_boxes(torch.as_tensor(squares, dtype=torch.float64), sizes[:, None, 0], sizes[:, None, 1]).numpy()


def _ious(pred: np.ndarray, gt: list[Optional[tuple]]) -> np.ndarray:
    return np.array([M.iou(p, g) if g is not None else np.nan for p, g in zip(pred, gt)])


def assign_parts(boxes: np.ndarray, gt: dict[str, list], part_names: list[str]) -> dict[str, int]:
    """Map each ground-truth part to a distinct attention map by the best mean IoU."""
    n = boxes.shape[1]
    best, best_perm = -1.0, None
    for perm in itertools.permutations(range(n), min(len(part_names), n)):
        score = np.nanmean([np.nanmean(_ious(boxes[:, m], gt[p]) if any(g is not None for g in gt[p]) else [0.0])
                            for p, m in zip(part_names, perm)])
        if score > best:
            best, best_perm = score, perm
    return {p: int(m) for p, m in zip(part_names, best_perm or ())}


def evaluate(model, state: dict, dataset: ZSLDataset, batch_size: int = 32, device="cpu",
             calibration_gamma: Optional[float] = None, seed: int = 0, progress=None,
             skip_unreadable: bool = False, features=None) -> Evaluation:
    """``progress(done, total)``: images extracted so far, after each batch (it may raise to cancel).
    ``features``: a ``features.FeatureCache`` of this model over the dataset's images, built with
    its maps (the app's, shared with ranking): its rows are read instead of a second pass.
    Every image is checked before the first is extracted (engine/image_check.py): an unreadable
    one raises a DatasetError naming the files, or with ``skip_unreadable`` is left out and listed
    in the summary's ``skipped_images``."""
    cfg = model.cfg
    ic = inference_config(state)
    train_classes = align_classes(state, dataset)
    sp = dataset.split
    labels = dataset.labels
    tc = set(train_classes)
    train_idx = [i for i in sp.trainval if labels[i] in tc]
    val_idx = [i for i in sp.trainval if labels[i] in set(sp.val_classes) and labels[i] not in tc]
    test_idx = list(sp.test_seen) + list(sp.test_unseen)
    bad = find_unreadable(dataset, train_idx + val_idx + test_idx)
    if bad and not skip_unreadable:
        raise DatasetError(f"{describe(bad)}; nothing was evaluated (sgma evaluate --skip-unreadable "
                           "leaves them out)")
    if bad:
        drop = {i for i, _, _ in bad}
        train_idx, val_idx, test_idx = ([i for i in ids if i not in drop] for ids in (train_idx, val_idx, test_idx))
    stored = state.get("prototypes")     # the trainer's, from the training images (Trainer._store_prototypes)
    if stored is None and not train_idx:
        raise CheckpointError("the checkpoint stores no class prototypes and the dataset holds no training "
                              "images of its classes: the class-centre branch (Eq. 12-13) has nothing to "
                              "start from; evaluate a best.pt written by this version's trainer")
    with_parts = bool(dataset.part_names and cfg.use_parts)
    # training images are read for the prototypes of an old checkpoint, or to assign maps to parts
    # when there are no validation images
    read_train = bool(train_idx) and (stored is None or (with_parts and not val_idx))
    n_train_all = len(train_idx)
    if read_train and stored is not None and len(train_idx) > ASSIGN_IMAGES:
        # only the map-to-part assignment reads them: a seeded sample is enough (a few minutes less)
        pick = np.random.default_rng(seed).choice(len(train_idx), ASSIGN_IMAGES, replace=False)
        train_idx = [train_idx[k] for k in sorted(pick)]
    done, total = [0], (len(train_idx) if read_train else 0) + len(val_idx) + len(test_idx)

    def tick(n):
        done[0] += n
        progress(done[0], total)
    tick = tick if progress is not None else None

    def read(ids, keep_maps=False):
        if features is not None:
            return features.extract_rows(ids, keep_maps)
        return extract(model, dataset, ids, batch_size, device, progress=tick, keep_maps=keep_maps)
    ex_train = read(train_idx) if read_train else None
    ex_val = read(val_idx) if val_idx else None
    ex_test = read(test_idx, keep_maps=with_parts)
    if stored is not None:
        protos = prototypes_from_seen(np.asarray(stored), train_classes, dataset.semantics, ic.ridge_lambda)
    else:
        protos = class_prototypes(ex_train["cct"], ex_train["labels"], train_classes, dataset.semantics,
                                  ic.ridge_lambda)
    compat = torch.as_tensor(ex_test["scores"])
    csim = center_similarity(torch.as_tensor(ex_test["cct"]), torch.as_tensor(protos, dtype=torch.float32))
    stored_beta = float(state.get("beta", ic.beta))     # chosen on validation classes at training time
    beta, beta_scores = choose_beta(ex_val, protos, sp.val_classes, ic.beta) if ex_val is not None \
        else (stored_beta, {})
    stored_gamma = state.get("gzsl_gamma")       # chosen on a GZSL validation split at training time
    gamma_mode = (state.get("gzsl_gamma_validation") or {}).get("mode", ic.mode)
    y = ex_test["labels"]
    is_unseen = np.isin(ex_test["indices"], sp.test_unseen)
    seen, unseen = list(sp.seen), list(sp.unseen)
    all_classes = seen + unseen
    modes, predictions = {}, {}
    for mode in MODES:
        s = mode_scores(mode, compat, csim, beta).numpy()
        zsl_pred = np.asarray(unseen)[s[is_unseen][:, unseen].argmax(axis=1)] if unseen else np.zeros(0, int)
        g_pred = np.asarray(all_classes)[s[:, all_classes].argmax(axis=1)]
        res = {"zsl": {"mca": _mca(y[is_unseen], zsl_pred), "n_classes": len(unseen)},
               "gzsl": _gzsl(y, g_pred, is_unseen)}
        # a gamma the user gives applies to every mode; the one chosen in training, to its own mode
        gamma, source = (calibration_gamma, "user") if calibration_gamma is not None else \
            (stored_gamma, "validation") if stored_gamma is not None and mode == gamma_mode else (None, "")
        if gamma is not None:
            s_cal = M.calibrated_stacking(s, np.isin(np.arange(s.shape[1]), seen), gamma)
            c_pred = np.asarray(all_classes)[s_cal[:, all_classes].argmax(axis=1)]
            res["gzsl_calibrated"] = {**_gzsl(y, c_pred, is_unseen), "gamma": float(gamma), "gamma_from": source}
        modes[mode] = res
        full = np.full(len(y), -1)
        full[is_unseen] = zsl_pred
        predictions[mode] = {"indices": ex_test["indices"], "zsl": full, "gzsl": g_pred}
    default = modes[ic.mode]
    zsl_pred = predictions[ic.mode]["zsl"][is_unseen]
    per_class = {dataset.class_names[c]: float(np.mean(zsl_pred[y[is_unseen] == c] == c))
                 for c in unseen if np.any(y[is_unseen] == c)}
    conf = M.confusion_matrix(np.searchsorted(unseen_sorted := sorted(unseen), y[is_unseen]),
                              np.searchsorted(unseen_sorted, zsl_pred), len(unseen)) if unseen else np.zeros((0, 0))
    summary = {"zsl": default["zsl"], "gzsl": default["gzsl"], "modes": modes, "per_class": per_class,
               **({"gzsl_calibrated": default["gzsl_calibrated"]} if "gzsl_calibrated" in default else {}),
               "confusion": {"classes": [dataset.class_names[c] for c in unseen_sorted] if unseen else [],
                             "matrix": np.asarray(conf).astype(int).tolist()},
               "inference": ic.mode, "beta": beta, "beta_validation": beta_scores,
               "n_images": int(len(y)), "dataset": dataset.name,
               "split": sp.name, "protocol": run_protocol(state, train_classes, len(seen), stored_beta)}
    if bad:
        summary["skipped_images"] = [{"path": path, "reason": reason} for _, path, reason in bad]
    part_iou: dict[str, np.ndarray] = {}
    if with_parts:
        assign_on, where = ((ex_val, "validation-class images") if ex_val is not None else
                            (ex_train, "training images" if len(train_idx) == n_train_all else
                             f"a seeded sample of {len(train_idx)} of the {n_train_all} training images")
                            if ex_train is not None else
                            (ex_test, "the test images themselves (the folder has no validation or training images)"))
        summary["parts"] = _parts(dataset, assign_on, ex_test, seed, per_image=part_iou,
                                  far_end_map=model.far_end_map)
        summary["parts"]["assigned_on"] = where
    return Evaluation(summary, predictions, part_iou)


BETA_GRID = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def run_protocol(state: dict, train_classes: list[int], n_seen: int, stored_beta: float) -> dict:
    """What the numbers rest on: the checkpoint's own ``protocol`` record (written by the trainer's
    retrain on trainval, engine/trainer.py) with the class counts of this evaluation, or, for a
    checkpoint without one, what its configuration and position say."""
    rec = dict(state.get("protocol") or {})
    if not rec:
        tc = state["config"].get("train", {})
        fold = state["config"].get("data", {}).get("fold", 1)
        rec = {"selected_on": f"valclasses{fold}" if tc.get("select_on_val", True) else None,
               "epochs": None, "beta": stored_beta, "retrained": False,
               "position": dict(state.get("position", {}))}
    rec.update(train_classes=len(train_classes), seen_classes=int(n_seen))
    return rec


def choose_beta(ex_val: dict, protos: np.ndarray, val_classes: list[int], default: float) -> tuple[float, dict]:
    """Eq. 13's beta by grid search on the validation classes (section 4.1: hyperparameters by
    grid search on the validation set): ZSL MCA among the validation classes for each beta; ties
    go to the configured value, then to the smaller beta. Unseen test classes are not used."""
    if not val_classes or len(ex_val["labels"]) == 0:
        return default, {}
    cand = np.asarray(val_classes)
    compat = torch.as_tensor(ex_val["scores"])
    csim = center_similarity(torch.as_tensor(ex_val["cct"]), torch.as_tensor(protos, dtype=torch.float32))
    scores = {}
    for b in sorted(set(BETA_GRID) | {default}):
        s = mode_scores("combined", compat, csim, b).numpy()[:, cand]
        scores[b] = _mca(ex_val["labels"], cand[s.argmax(axis=1)])
    best = max(scores.values())
    chosen = default if scores[default] == best else min(b for b, v in scores.items() if v == best)
    return float(chosen), {str(b): v for b, v in scores.items()}


def choose_gamma(scores: np.ndarray, labels: np.ndarray, seen: Sequence[int], unseen: Sequence[int]) -> tuple[float, dict]:
    """Calibrated stacking's gamma (Chao et al., 2016: seen-class scores lowered by gamma before the
    GZSL argmax) chosen on a validation GZSL split: images of seen classes the model did not train
    on and images of the validation classes, ``scores`` (N, K) over every class, ``labels`` (N,)
    class ids. An image goes to a seen class when its best seen score minus gamma is at least its
    best unseen score (the evaluator's argmax over seen + unseen, seen first), so H changes only
    where gamma crosses an image's margin; every gap between sorted margins is tried (its
    midpoint) and so is 0. The best H wins; ties go to the gamma nearest 0, the least change to
    the uncalibrated scores of the paper. Returns gamma and, at it and at 0, A_U, A_S and H."""
    seen, unseen = np.asarray(list(seen)), np.asarray(list(unseen))
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if len(seen) == 0 or len(unseen) == 0 or not np.isin(y, seen).any() or not np.isin(y, unseen).any():
        raise ValueError("choose_gamma needs images and classes on both sides, seen and unseen")
    best_seen, best_unseen = seen[s[:, seen].argmax(axis=1)], unseen[s[:, unseen].argmax(axis=1)]
    margin = s[:, seen].max(axis=1) - s[:, unseen].max(axis=1)
    is_unseen = np.isin(y, unseen)

    def at(gamma: float) -> dict:
        return _gzsl(y, np.where(margin >= gamma, best_seen, best_unseen), is_unseen)
    m = np.unique(margin)
    candidates = np.concatenate([[0.0], (m[:-1] + m[1:]) / 2, [m[0] - 1.0, m[-1] + 1.0]])
    results = [(at(float(g)), float(g)) for g in candidates]
    best_h = max(r["h"] for r, _ in results)
    gamma = min((g for r, g in results if r["h"] == best_h), key=abs)
    return gamma, {"chosen": at(gamma), "uncalibrated": at(0.0), "n_seen_images": int((~is_unseen).sum()),
                   "n_unseen_images": int(is_unseen.sum())}


def _mca(y_true, y_pred) -> float:
    return float(M.mean_class_accuracy(y_true, y_pred)) if len(y_true) else float("nan")


def _gzsl(y, pred, is_unseen) -> dict:
    a_u, a_s = _mca(y[is_unseen], pred[is_unseen]), _mca(y[~is_unseen], pred[~is_unseen])
    return {"unseen": a_u, "seen": a_s, "h": float(M.gzsl_harmonic(a_u, a_s))}


def point_inside(points: np.ndarray, boxes: list, sizes: np.ndarray) -> np.ndarray:
    """Whether each point (x, y as fractions of the side), scaled to its image's (width, height),
    lies in its box. points (N, 2), boxes N x (x0, y0, x1, y1) pixels, sizes (N, 2)."""
    x, y = np.asarray(points, dtype=np.float64).T * np.asarray(sizes, dtype=np.float64).T
    b = np.asarray(boxes, dtype=np.float64).reshape(len(x), 4)
    return (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])


def peak_inside(maps: np.ndarray, boxes: list, sizes: np.ndarray) -> np.ndarray:
    """Pointing: whether each map's peak cell centre lies in the part's box (``point_inside``).
    maps (N, h, w)."""
    n, h, w = maps.shape
    peak = maps.reshape(n, -1).argmax(axis=1)
    return point_inside(np.stack([(peak % w + 0.5) / w, (peak // w + 0.5) / h], 1), boxes, sizes)


def centred_square_iou(boxes: list, sizes: np.ndarray, side: np.ndarray) -> np.ndarray:
    """The ceiling of a square rule: IoU of a square of side ``side`` (fraction of each image's
    side, as the model's squares; width and height scale with the image's axes) centred on each
    ground-truth box. The best any centre can do with that side."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    hw, hh = np.asarray(side) * sizes[:, 0] / 2, np.asarray(side) * sizes[:, 1] / 2
    sq = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
    return M.iou_pairs(sq, b)


def match_parts_on_image(boxes: np.ndarray, gt: dict[str, tuple],
                         assignment: dict[int, str]) -> list[tuple[str, int, float]]:
    """One image's (part, map index, IoU) for every ground-truth part in ``gt``: the map the
    evaluation assigned to that part (``assignment``, map index -> part) when known; otherwise the
    free map (assigned to no part, not yet paired) with the largest IoU, parts taken in order.
    ``boxes``: the image's predicted boxes, one per map, in the ground truth's pixels."""
    pairs, used = [], set()
    by_part = {p: m for m, p in assignment.items()}
    for part, box in gt.items():
        if part in by_part and by_part[part] < len(boxes):
            m = by_part[part]
        else:
            free = [m for m in range(len(boxes)) if m not in used and m not in assignment]
            if not free:
                continue
            m = max(free, key=lambda k: M.iou(boxes[k], box))
        used.add(m)
        pairs.append((part, m, M.iou(boxes[m], box)))
    return pairs


def image_part_ious(boxes: np.ndarray, gt: dict[str, list], assignment: dict[str, int]) -> dict[str, np.ndarray]:
    """Per image, the IoU of each part's square with its ground-truth box: boxes (N, n, 4) pixel
    squares of the n maps, gt part -> N boxes (None where absent), assignment part -> map index.
    NaN where an image has no box of that part. A part is found where the IoU is > 0.5 (Table 1)."""
    return {p: _ious(boxes[:, m], gt[p]) for p, m in assignment.items()}


def _parts(dataset: ZSLDataset, ex_assign: dict, ex_test: dict, seed: int,
           per_image: Optional[dict] = None, far_end_map: Optional[int] = None) -> dict:
    """Part precision, random squares, mean IoU, pointing and ceiling on the test images, with the
    maps assigned to parts on ``ex_assign``. Pointing is where the model points for the part: its
    map's peak, or for the map whose square is the object's far end (``far_end_map``,
    model.far_end_square), that square's centre."""
    names = list(dataset.part_names)

    def gt_of(ex):
        return {p: [dataset.items[i].part_boxes.get(p) for i in ex["indices"]] for p in names}

    boxes_a = squares_to_pixel_boxes(ex_assign["squares"], image_sizes(dataset, ex_assign["indices"]))
    assignment = assign_parts(boxes_a, gt_of(ex_assign), names)
    sizes = image_sizes(dataset, ex_test["indices"])
    boxes = squares_to_pixel_boxes(ex_test["squares"], sizes)
    gt = gt_of(ex_test)
    if per_image is not None:
        per_image.update(image_part_ious(boxes, gt, assignment))
    rng = np.random.default_rng(seed)
    out, rand, mean_iou, pointing, ceiling = {}, {}, {}, {}, {}
    for p, m in assignment.items():
        have = [k for k, g in enumerate(gt[p]) if g is not None]
        if not have:
            continue
        ious = _ious(boxes[have, m], [gt[p][k] for k in have])
        out[p] = float(np.mean(ious > 0.5))
        mean_iou[p] = float(np.mean(ious))
        side = ex_test["squares"][have, m, 2]
        rand[p] = float(M.random_square_precision([gt[p][k] for k in have], sizes[have], float(side.mean()), rng))
        if m == far_end_map:
            pointing[p] = float(np.mean(point_inside(ex_test["squares"][have, m, :2], [gt[p][k] for k in have],
                                                     sizes[have])))
        elif "maps" in ex_test and len(ex_test["maps"]):
            pointing[p] = float(np.mean(peak_inside(ex_test["maps"][have, m], [gt[p][k] for k in have], sizes[have])))
        ceiling[p] = float(np.mean(centred_square_iou([gt[p][k] for k in have], sizes[have], side) > 0.5))
    return {**out, "random": rand, "mean_iou": mean_iou, "pointing": pointing, "ceiling": ceiling,
            "assignment": {p: f"map{m + 1}" for p, m in assignment.items()},
            "n_images": {p: int(sum(g is not None for g in gt[p])) for p in names}}
