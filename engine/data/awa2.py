"""Animals with Attributes 2 (AwA2) in its package layout.

``root`` holds ``classes.txt`` ("<id>\\t<name>", 50 lines), ``predicates.txt`` (85 attribute
names), ``predicate-matrix-continuous.txt`` (50 x 85) and ``JPEGImages/<class>/*.jpg``.

Choices:
- Missing values: entries of -1 in the continuous matrix (and in xlsa17 ``original_att``) mean
  "not annotated". We replace each by the mean of that attribute over the classes where it is
  present (>= 0). The published xlsa17 ``att`` is used as is (it was normalised with the -1 in it).
  Known quirk of the shared copy: four values of the first row read 0.00 where xlsa17 has -1; they
  are indistinguishable from real zeros and stay 0.
- Canonical image order (what xlsa17 ``*_loc`` index): class folders sorted by name (byte order),
  then file names sorted within each folder. This reproduces xlsa17's runs: e.g. the first unseen
  run starts at 1047, right after the 1,046 antelope images, with bat (alphabetically second).
  The loc split is used only when all 37,322 images are present (full mode, every index checked);
  with another number of images (a subset has no stable ids) the PS split falls back to the class
  lists ``trainvalclasses.txt``/``testclasses.txt`` beside the .mat with a seeded 20% test_seen share.
- ``check_images=False`` allows a metadata-only root: images are listed from ``JPEGImages`` when it
  exists, and zero images are allowed (``load_awa2_meta`` is the same call). With
  ``check_images=True`` a missing ``JPEGImages`` is an error.
- ``split="ss"`` = the standard split: unseen classes from ``ss_unseen`` (file or list) or else
  ``<root>/testclasses.txt`` (the AwA2 package's own, 10 classes); validation classes are a seeded
  20% of the seen classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .base import DatasetError, ImageItem, Split, ZSLDataset, image_header_sizes
from .xlsa17 import (SPLITS, by_id, class_columns, class_list_split, find_att_splits, fold_classes,
                     listed_classes, loc_split, names_to_indices, read_att_splits, read_class_list,
                     read_matrix, read_rows, select_semantics)

AWA2_FULL_N = 37322
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def impute_missing(m: np.ndarray, where: str = "") -> np.ndarray:
    """Replace -1 ("missing") by the attribute's mean over the classes where it is present."""
    m = np.array(m, dtype=np.float64)
    miss = m == -1
    if not miss.any():
        return m
    bad = (m < 0) & ~miss
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DatasetError(f"{where}: negative value {m[r, c]} at row {r + 1}, column {c + 1}")
    present = ~miss
    counts = present.sum(axis=0)
    if (counts == 0).any():
        raise DatasetError(f"{where}: attribute column {int(np.flatnonzero(counts == 0)[0]) + 1} is missing for every class")
    means = np.where(present, m, 0).sum(axis=0) / counts
    return np.where(miss, means[None, :], m)


def _names(path: Path) -> list[str]:
    ids = by_id(read_rows(path, [int, str], maxsplit=1), path)
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise DatasetError(f"{path}: ids must be 1..{len(ids)}")
    names = [ids[i] for i in range(1, len(ids) + 1)]
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: duplicated name")
    return names


def _list_images(jpeg: Path, class_names: list[str]) -> list[tuple[str, int]]:
    index = {n: k for k, n in enumerate(class_names)}
    out = []
    for d in sorted(jpeg.iterdir(), key=lambda p: p.name.encode()):
        if d.name.startswith("."):
            continue
        if not d.is_dir() or d.name not in index:
            raise DatasetError(f"{d}: not a folder of a class in classes.txt")
        for f in sorted(d.iterdir(), key=lambda p: p.name.encode()):
            if f.name.startswith("."):
                continue
            if f.suffix.lower() not in IMAGE_EXTS or not f.is_file():
                raise DatasetError(f"{f}: not an image file ({', '.join(IMAGE_EXTS)})")
            out.append((str(f), index[d.name]))
    return out


def load_awa2(root, split: str = "ps", att_splits=None, semantics: str = "att", fold: int = 1,
              seed: int = 0, check_images: bool = True, ss_unseen=None) -> ZSLDataset:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    root = Path(root)
    class_names = _names(root / "classes.txt")
    attr_names = [n.strip() for n in _names(root / "predicates.txt")]
    jpeg = root / "JPEGImages"
    if jpeg.is_dir():
        listed = _list_images(jpeg, class_names)
    elif check_images:
        raise DatasetError(f"missing folder: {jpeg} (use check_images=False for metadata only)")
    else:
        listed = []
    items = [ImageItem(label=c, path=p, image_id=Path(p).name) for p, c in listed]
    if check_images:
        image_header_sizes([it.path for it in items])     # a corrupt file is named now, not mid-run
    labels = np.array([c for _, c in listed], dtype=np.int64)

    xl_path = find_att_splits(att_splits, [root], "AWA2")
    xl = read_att_splits(xl_path) if xl_path is not None else None
    dataset_att = None
    if semantics == "dataset" or xl is None:
        mp = root / "predicate-matrix-continuous.txt"
        dataset_att = impute_missing(read_matrix(mp, len(class_names), len(attr_names)), str(mp))
    cols = class_columns(xl, class_names) if xl is not None else None
    if xl is not None and xl.original_att is not None:
        xl.original_att = impute_missing(xl.original_att, f"{xl.path} original_att")
    sem = select_semantics(semantics, xl, cols, dataset_att)
    if sem.shape[1] != len(attr_names):
        raise DatasetError(f"semantics have {sem.shape[1]} attributes but predicates.txt names {len(attr_names)}")

    if split == "ps":
        if xl is None:
            raise DatasetError(f"split 'ps' needs att_splits.mat: none in {root} or $SGMA_SHARED_DATA/xlsa17/AWA2")
        lists = listed_classes(xl.folder, class_names, subset=False)
        if len(items) == AWA2_FULL_N:
            seen, unseen = lists if lists else (None, None)
            seen, unseen, tv, ts, tu = loc_split(xl, np.arange(AWA2_FULL_N), labels, class_names,
                                                 seen, unseen, seed)
        else:
            if lists is None:
                raise DatasetError(f"{xl.folder}: trainvalclasses.txt/testclasses.txt are needed when "
                                   f"not all {AWA2_FULL_N} images are present ({len(items)} found)")
            seen, unseen = lists
            tv, ts, tu = class_list_split(labels, seen, unseen, seed)
        tr, va = fold_classes(fold, seen, class_names, False, seed, xl,
                              np.arange(AWA2_FULL_N) if len(items) == AWA2_FULL_N else None,
                              labels if len(items) == AWA2_FULL_N else None)
    else:
        src = ss_unseen if ss_unseen is not None else root / "testclasses.txt"
        names = list(src) if isinstance(src, (list, tuple)) else read_class_list(Path(src))
        unseen = names_to_indices(names, class_names, src, subset=False)
        seen = sorted(set(range(len(class_names))) - set(unseen))
        tv, ts, tu = class_list_split(labels, seen, unseen, seed)
        tr, va = fold_classes(fold, seen, class_names, False, seed)
    return ZSLDataset(name="awa2", root=str(root), class_names=class_names, attribute_names=attr_names,
                      semantics=sem, items=items,
                      split=Split(split, seen, unseen, tv, ts, tu, train_classes=tr, val_classes=va))


def load_awa2_meta(root, **options) -> ZSLDataset:
    """AwA2 metadata without images (zero items allowed)."""
    return load_awa2(root, check_images=False, **options)
