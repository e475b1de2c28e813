"""A user's own dataset in a plain folder (format in docs/datasets.md).

    <root>/images/<class name>/*.jpg|*.jpeg|*.png
    <root>/classes.csv   header "class,<attr 1>,<attr 2>,...", one row per class, numbers
    <root>/parts.csv     optional: header "image,part,x0,y0,x1,y1"; image relative to images/
    <root>/split.csv     optional: header "class,split"; split is seen | unseen | val

Choices:
- Every class of classes.csv is a class, even with no images (an unseen class may have none);
  a folder under images/ that is not in classes.csv is an error, as are non-image files.
- Items: class folders in classes.csv order, files sorted by name.
- ``semantics="att"`` L2-normalises each class row; "original_att"/"dataset" keep the numbers.
- split.csv must name every class once; "val" classes are seen classes that form the validation
  fold. Without split.csv: a seeded 20% of the classes (at least one) are unseen and a seeded 20%
  of the seen classes are val. test_seen is a seeded 20% share of each seen class's images.
- parts.csv boxes are pixels of the original image, x1/y1 exclusive; an image's part may appear once.
- Refused, naming the file and line (issue 16): a class name that is not a plain folder name
  (``/``, ``\\``, ``.``, ``..``, control characters: it would read images outside ``images/``), a
  number outside float32's range, a box with a negative corner or outside the image, and a seen
  class without images (its prototype would be NaN). With ``check_images`` every image's header is
  read at load, so a corrupt file is named before any training or evaluation starts.
"""
from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import numpy as np
from .base import FLOAT32_MAX, DatasetError, ImageItem, Split, ZSLDataset, image_header_sizes
from .xlsa17 import class_list_split, fold_classes, l2_rows

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
SPLIT_VALUES = ("seen", "unseen", "val")


def _read_csv(path: Path, header_min: int) -> tuple[list[str], list[tuple[int, list[str]]]]:
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(n, [c.strip() for c in r]) for n, r in enumerate(csv.reader(f), 1) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if not rows:
        raise DatasetError(f"{path}: empty file (a header row is required)")
    header = rows[0][1]
    if len(header) < header_min:
        raise DatasetError(f"{path}:{rows[0][0]}: header needs at least {header_min} columns")
    for n, r in rows[1:]:
        if len(r) != len(header):
            raise DatasetError(f"{path}:{n}: expected {len(header)} columns, got {len(r)}")
    return header, rows[1:]


def _num(v: str, path, n, col) -> float:
    try:
        x = float(v)
    except ValueError:
        x = float("nan")
    if not np.isfinite(x):
        raise DatasetError(f"{path}:{n}: column {col!r} is not a number: {v!r}")
    if abs(x) > FLOAT32_MAX:
        raise DatasetError(f"{path}:{n}: column {col!r} is outside the float32 range: {v!r}")
    return x


def _folder_name(name: str, path, n) -> str:
    """A class name that is also its image folder's name: one plain path component."""
    if (name in (".", "..") or any(c in name for c in "/\\") or
            any(unicodedata.category(c)[0] == "C" for c in name)):
        raise DatasetError(f"{path}:{n}: class name {name!r} cannot be a folder name under images/ "
                           f"(no '/', '\\', '.', '..' or control characters)")
    return name




def load_folder(root, split: str = "file", semantics: str = "att", fold: int = 1, seed: int = 0,
                check_images: bool = True) -> ZSLDataset:
    root = Path(root)
    cpath = root / "classes.csv"
    header, rows = _read_csv(cpath, 2)
    attr_names = header[1:]
    if len(set(attr_names)) != len(attr_names) or any(not a for a in attr_names):
        raise DatasetError(f"{cpath}:1: attribute names must be non-empty and distinct")
    class_names, sem, line_of = [], [], {}
    for n, r in rows:
        if not r[0]:
            raise DatasetError(f"{cpath}:{n}: empty class name")
        if r[0] in line_of:
            raise DatasetError(f"{cpath}:{n}: duplicated class {r[0]!r} (first on line {line_of[r[0]]})")
        line_of[r[0]] = n
        class_names.append(_folder_name(r[0], cpath, n))
        sem.append([_num(v, cpath, n, a) for v, a in zip(r[1:], attr_names)])
    if not class_names:
        raise DatasetError(f"{cpath}: no classes")
    sem = np.array(sem, dtype=np.float64)
    if semantics not in ("att", "original_att", "dataset"):
        raise DatasetError(f"unknown semantics {semantics!r} (choose from att, original_att, dataset)")
    sem = l2_rows(sem) if semantics == "att" else sem.astype(np.float32)

    img_dir = root / "images"
    cindex = {c: k for k, c in enumerate(class_names)}
    items = []
    if img_dir.is_dir():
        for d in sorted(img_dir.iterdir()):
            if d.name.startswith("."):
                continue
            if not d.is_dir() or d.name not in cindex:
                raise DatasetError(f"{d}: not a folder of a class in {cpath.name}")
        for c in class_names:
            d = img_dir / c
            for f in (sorted(d.iterdir()) if d.is_dir() else []):
                if f.name.startswith("."):
                    continue
                if f.suffix.lower() not in IMAGE_EXTS or not f.is_file():
                    raise DatasetError(f"{f}: not an image file ({', '.join(IMAGE_EXTS)})")
                items.append(ImageItem(label=cindex[c], path=str(f), image_id=f"{c}/{f.name}"))
    elif check_images:
        raise DatasetError(f"missing folder: {img_dir} (use check_images=False for classes only)")
    sizes = dict(zip([it.image_id for it in items], image_header_sizes([it.path for it in items]))) \
        if check_images else {}
    labels = np.array([it.label for it in items], dtype=np.int64)

    part_names: list[str] = []
    ppath = root / "parts.csv"
    if ppath.is_file():
        by_image = {it.image_id: it for it in items}
        ph, prows = _read_csv(ppath, 6)
        if len(ph) != 6:
            raise DatasetError(f"{ppath}:1: expected header image,part,x0,y0,x1,y1")
        for n, r in prows:
            key = r[0].replace("\\", "/").removeprefix("images/")
            if key not in by_image:
                raise DatasetError(f"{ppath}:{n}: image {r[0]!r} is not under {img_dir}")
            if not r[1]:
                raise DatasetError(f"{ppath}:{n}: empty part name")
            x0, y0, x1, y1 = (_num(v, ppath, n, h) for v, h in zip(r[2:], ph[2:]))
            if not (x1 > x0 and y1 > y0):
                raise DatasetError(f"{ppath}:{n}: box must have x1 > x0 and y1 > y0")
            w, h = sizes.get(key, (float("inf"), float("inf")))
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise DatasetError(f"{ppath}:{n}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the image "
                                   + (f"({w} x {h} px)" if key in sizes else "(negative coordinate)"))
            if r[1] in by_image[key].part_boxes:
                raise DatasetError(f"{ppath}:{n}: part {r[1]!r} given twice for {r[0]!r}")
            by_image[key].part_boxes[r[1]] = (x0, y0, x1, y1)
            if r[1] not in part_names:
                part_names.append(r[1])

    spath = root / "split.csv"
    if split not in ("file", "ps"):
        raise DatasetError(f"unknown split {split!r} for a folder dataset (use 'file': split.csv or seeded)")
    if spath.is_file():
        _, srows = _read_csv(spath, 2)
        role, sline = {}, {}
        for n, r in srows:
            if r[0] not in cindex:
                raise DatasetError(f"{spath}:{n}: class {r[0]!r} is not in {cpath.name}")
            if r[0] in role:
                raise DatasetError(f"{spath}:{n}: class {r[0]!r} listed twice (first on line {sline[r[0]]})")
            if r[1] not in SPLIT_VALUES:
                raise DatasetError(f"{spath}:{n}: split must be one of {', '.join(SPLIT_VALUES)}, got {r[1]!r}")
            role[r[0]], sline[r[0]] = r[1], n
        missing = [c for c in class_names if c not in role]
        if missing:
            raise DatasetError(f"{spath}: class {missing[0]!r} is not listed")
        unseen = [cindex[c] for c in class_names if role[c] == "unseen"]
        val = [cindex[c] for c in class_names if role[c] == "val"]
        seen = sorted(set(range(len(class_names))) - set(unseen))
        train = sorted(set(seen) - set(val))
        name = "file"
    else:
        rng = np.random.default_rng(seed)
        k = max(1, int(round(0.2 * len(class_names)))) if len(class_names) >= 2 else 0
        unseen = sorted(rng.permutation(len(class_names))[:k].tolist())
        seen = sorted(set(range(len(class_names))) - set(unseen))
        train, val = fold_classes(fold, seen, class_names, False, seed)
        name = f"seeded{seed}"
    if items or check_images:
        empty = [class_names[c] for c in seen if not (labels == c).any()]
        if empty:
            raise DatasetError(f"{img_dir}: seen class {empty[0]!r} has no images (a training class needs "
                               f"at least one; {len(empty)} such class(es))")
    tv, ts, tu = class_list_split(labels, seen, unseen, seed)
    return ZSLDataset(name="folder", root=str(root), class_names=class_names, attribute_names=attr_names,
                      semantics=sem, items=items,
                      split=Split(name, seen, sorted(unseen), tv, ts, tu, train_classes=train, val_classes=sorted(val)),
                      part_names=part_names)
