"""CUB-200-2011 in its official layout, whole or as a subset (e.g. shared/data/cub50).

``root`` is the folder holding ``CUB_200_2011/`` or that folder itself. Files read:
``images.txt``, ``image_class_labels.txt``, ``classes.txt`` (required); ``attributes.txt`` (312 names,
looked up in the folder, in ``attributes/`` and beside the folder: the official tarball puts it
beside); ``attributes/class_attribute_labels_continuous.txt`` (only for ``semantics="dataset"`` or
when no att_splits.mat is found); ``bounding_boxes.txt`` + ``parts/parts.txt`` + ``parts/part_locs.txt``
(head/tail boxes, see parts.py; skipped as a whole when ``parts/`` is absent).
``train_test_split.txt`` is not read: it is the supervised split, not the zero-shot one.

Choices:
- Items are in image-id order (= images.txt order of the full dataset, the xlsa17 loc order).
- A subset is a root whose image ids are not exactly 1..N (auto) or ``subset=True``. Then loc
  indices refer to the full 11,788-image order; absent images are dropped.
- Classes: those of classes.txt with at least one listed image (cub50 -> 50 classes), in class-id
  order. The continuous attribute file has one row per class id of the full 200.
- ``split="ss"`` needs ``ss_unseen=<file of unseen class names>`` (the standard 150/50 split of
  Akata et al. is not in shared/data); its test_seen is a seeded 20% share of seen-class images
  and its validation classes are a seeded 20% of the seen classes.
- ``check_images=False`` loads metadata only (no file checks, no image sizes: part boxes are then
  not clipped to the image).
- A bounding box with a negative corner or a width/height <= 0, and (when the image size is
  known) a box or a visible keypoint outside the image by more than ``EDGE_TOLERANCE`` of its
  larger side (at least 1 px), is a DatasetError naming the file and line. The tolerance is our
  choice: the official boxes overshoot by up to 1.1% of the side (cub50), and are clipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from .base import DatasetError, ImageItem, Split, ZSLDataset, open_image
from . import parts as P
from .xlsa17 import (SPLITS, by_id, class_list_split, find_att_splits, fold_classes, listed_classes,
                     loc_split, names_to_indices, read_att_splits, read_class_list, read_matrix,
                     read_rows, select_semantics, class_columns)

CUB_FULL_N = 11788
EDGE_TOLERANCE = 0.05      # of the image's larger side; official boxes overshoot by up to 1.1%


def cub_base(root) -> Path:
    r = Path(root)
    for base in (r / "CUB_200_2011", r):
        if (base / "images.txt").is_file():
            return base
    raise DatasetError(f"missing file: {r / 'CUB_200_2011' / 'images.txt'} (not a CUB-200-2011 folder: {r})")


def _find(base: Path, names: list[str]) -> Path:
    for c in names:
        p = base / c
        if p.is_file():
            return p
    raise DatasetError(f"missing file: {base / names[0]} (also looked for {', '.join(names[1:])})")


def read_cub_attribute_names(base: Path) -> tuple[list[str], dict[str, list[int]]]:
    path = _find(base, ["attributes.txt", "attributes/attributes.txt", "../attributes.txt"])
    ids = by_id(read_rows(path, [int, str], maxsplit=1), path)
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise DatasetError(f"{path}: attribute ids must be 1..{len(ids)}")
    names = [ids[i] for i in range(1, len(ids) + 1)]
    groups: dict[str, list[int]] = {}
    for j, n in enumerate(names):
        groups.setdefault(n.split("::")[0], []).append(j)
    return names, groups


def _part_boxes(base, image_ids, sizes):
    """image id -> {"head": box, "tail": box} (visible parts only); {} when parts/ is absent."""
    if not (base / "parts").is_dir():
        return None
    pp, lp, bp = base / "parts" / "parts.txt", base / "parts" / "part_locs.txt", base / "bounding_boxes.txt"
    part_name = by_id(read_rows(pp, [int, str], maxsplit=1), pp)
    need = set(P.HEAD_KEYPOINTS) | set(P.TAIL_KEYPOINTS)
    if not need <= set(part_name.values()):
        raise DatasetError(f"{pp}: part {sorted(need - set(part_name.values()))[0]!r} is missing")
    brows = read_rows(bp, [int, float, float, float, float])
    boxes, bline = by_id(brows, bp), {r[0]: n for n, r in brows}
    wanted = set(image_ids)
    kp: dict[int, dict] = {i: {} for i in image_ids}
    for n, (iid, pid, x, y, vis) in read_rows(lp, [int, int, float, float, int]):
        if pid not in part_name:
            raise DatasetError(f"{lp}:{n}: unknown part id {pid}")
        if vis not in (0, 1):
            raise DatasetError(f"{lp}:{n}: visible flag must be 0 or 1, got {vis}")
        if iid in wanted:
            if part_name[pid] in kp[iid]:
                raise DatasetError(f"{lp}:{n}: duplicated part {pid} for image {iid}")
            if vis and _outside(x, y, sizes.get(iid)):
                raise DatasetError(f"{lp}:{n}: visible keypoint ({x:g}, {y:g}) of image id {iid} is outside "
                                   f"the image{_size_text(sizes.get(iid))}")
            kp[iid][part_name[pid]] = (x, y, bool(vis))
    out = {}
    for iid in image_ids:
        if iid not in boxes:
            raise DatasetError(f"{bp}: no bounding box for image id {iid}")
        if len(kp[iid]) != len(part_name):
            raise DatasetError(f"{lp}: image id {iid} has {len(kp[iid])} of {len(part_name)} parts")
        x, y, w, h = boxes[iid]
        if not (w > 0 and h > 0) or _outside(x, y, sizes.get(iid)):
            raise DatasetError(f"{bp}:{bline[iid]}: bounding box (x {x:g}, y {y:g}, width {w:g}, height {h:g}) of "
                               f"image id {iid} must have width and height > 0 and start inside the "
                               f"image{_size_text(sizes.get(iid))}")
        x1, y1 = x + w, y + h
        if sizes.get(iid):     # the official file has boxes that overhang the image (id 1218 by 32 px): clip
            x1, y1 = min(x1, sizes[iid][0]), min(y1, sizes[iid][1])
        out[iid] = P.cub_part_boxes(kp[iid], (x, y, x1, y1), sizes.get(iid))
    return out


def _outside(x: float, y: float, size) -> bool:
    t = max(1.0, EDGE_TOLERANCE * max(size)) if size else 1.0
    if x < -t or y < -t:
        return True
    return size is not None and (x > size[0] + t or y > size[1] + t)


def _size_text(size) -> str:
    return f" ({size[0]} x {size[1]} px)" if size else ""


def load_cub(root, split: str = "ps", att_splits=None, semantics: str = "att", fold: int = 1,
             seed: int = 0, check_images: bool = True, subset: Optional[bool] = None,
             ss_unseen=None, parts: bool = True) -> ZSLDataset:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    base = cub_base(root)
    p_img, p_lab, p_cls = base / "images.txt", base / "image_class_labels.txt", base / "classes.txt"
    images = by_id(read_rows(p_img, [int, str]), p_img)
    labels_by_id = by_id(read_rows(p_lab, [int, int]), p_lab)
    classes = by_id(read_rows(p_cls, [int, str]), p_cls)
    if not images:
        raise DatasetError(f"{p_img}: no image is listed")
    for iid, rel in images.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DatasetError(f"{p_img}: image id {iid}: path {rel!r} must be relative to images/ "
                               f"and stay inside it")
        if iid not in labels_by_id:
            raise DatasetError(f"{p_lab}: no class label for image id {iid}")
    for iid, c in labels_by_id.items():
        if iid not in images:
            raise DatasetError(f"{p_lab}: image id {iid} is not in {p_img.name}")
        if c not in classes:
            raise DatasetError(f"{p_lab}: image id {iid} has unknown class id {c}")
    ids = sorted(images)
    if subset is None:
        subset = ids != list(range(1, len(ids) + 1))
    class_ids = sorted({labels_by_id[i] for i in ids})
    class_names = [classes[c] for c in class_ids]
    cindex = {c: k for k, c in enumerate(class_ids)}
    attr_names, groups = read_cub_attribute_names(base)

    sizes = {}
    if check_images:
        for iid in ids:
            p = base / "images" / images[iid]
            if not p.is_file():
                raise DatasetError(f"missing image file: {p} (use check_images=False for metadata only)")
            try:
                with open_image(p) as im:
                    sizes[iid] = im.size
            except (OSError, Image.DecompressionBombError) as e:
                raise DatasetError(f"cannot read image {p}: {e}") from None
    boxes = _part_boxes(base, ids, sizes) if parts else None
    items = [ImageItem(label=cindex[labels_by_id[i]], path=str(base / "images" / images[i]),
                       part_boxes=(boxes[i] if boxes else {}), image_id=str(i)) for i in ids]
    labels = np.array([it.label for it in items], dtype=np.int64)

    xl_path = find_att_splits(att_splits, [Path(root), base], "CUB")
    xl = read_att_splits(xl_path) if xl_path is not None else None
    dataset_att = None
    if semantics == "dataset" or xl is None:
        full = [c for c in sorted(classes)]
        ap = base / "attributes" / "class_attribute_labels_continuous.txt"
        m = read_matrix(ap, len(full), len(attr_names))
        dataset_att = m[[full.index(c) for c in class_ids]]
    cols = class_columns(xl, class_names) if xl is not None else None
    sem = select_semantics(semantics, xl, cols, dataset_att)
    if sem.shape[1] != len(attr_names):
        raise DatasetError(f"semantics have {sem.shape[1]} attributes but attributes.txt names {len(attr_names)}")

    n_full = max(CUB_FULL_N, ids[-1]) if subset else len(ids)
    pos_to_item = np.full(n_full, -1, dtype=np.int64)
    pos_to_item[np.array(ids) - 1] = np.arange(len(ids))
    if split == "ps":
        if xl is None:
            raise DatasetError(f"split 'ps' needs att_splits.mat: none in {root}, {base} or $SGMA_SHARED_DATA/xlsa17/CUB")
        lists = listed_classes(xl.folder, class_names, subset)
        seen, unseen = lists if lists else (None, None)
        seen, unseen, tv, ts, tu = loc_split(xl, pos_to_item, labels, class_names, seen, unseen, seed)
        tr, va = fold_classes(fold, seen, class_names, subset, seed, xl, pos_to_item, labels)
    else:
        if ss_unseen is None:
            raise DatasetError("split 'ss' for CUB needs ss_unseen=<file listing the 50 unseen class names>")
        names = read_class_list(Path(ss_unseen)) if not isinstance(ss_unseen, (list, tuple)) else ss_unseen
        unseen = names_to_indices(names, class_names, ss_unseen, subset)
        seen = sorted(set(range(len(class_names))) - set(unseen))
        tv, ts, tu = class_list_split(labels, seen, unseen, seed)
        tr, va = fold_classes(fold, seen, class_names, subset, seed)
    return ZSLDataset(
        name="cub", root=str(root), class_names=class_names, attribute_names=attr_names,
        semantics=sem, items=items,
        split=Split(split, seen, unseen, tv, ts, tu, train_classes=tr, val_classes=va),
        part_names=list(P.PART_NAMES) if boxes is not None else [], attribute_groups=groups)
