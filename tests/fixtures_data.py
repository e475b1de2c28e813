"""Tiny datasets in the official layouts (CUB, AwA2, FLO, user folder) and xlsa17 .mat files,
generated under a test's tmp_path, plus the location of the shared real data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

CUB_PARTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg",
             "left wing", "nape", "right eye", "right leg", "right wing", "tail", "throat"]
CUB_ATTRS = ["has_bill_shape::dagger", "has_bill_shape::hooked", "has_wing_color::blue",
             "has_size::small"]


def shared_data() -> Path | None:
    env = os.environ.get("SGMA_SHARED_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return p.resolve() if p.is_dir() else None


def need_shared(*parts: str) -> Path:
    sd = shared_data()
    if sd is None or not (sd.joinpath(*parts)).exists():
        pytest.skip(f"shared real data not found: {'/'.join(parts)} (set SGMA_SHARED_DATA or add ../shared/data)")
    return sd.joinpath(*parts)


def _img(path: Path, size=(40, 30), color=(200, 100, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _write(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{l}\n" for l in lines))


def cell(names):
    a = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        a[i, 0] = np.array([n])
    return a


def save_att_splits(path: Path, class_names, original_att, trainval, test_seen, test_unseen,
                    perm=None, names=True, **extra):
    """original_att: (n_classes, d) in ``class_names`` order; stored in ``perm`` column order."""
    perm = np.arange(len(class_names)) if perm is None else np.asarray(perm)
    orig = np.asarray(original_att, dtype=np.float64)[perm]
    att = orig / np.linalg.norm(orig, axis=1, keepdims=True)
    d = {"att": att.T, "original_att": orig.T,
         "trainval_loc": np.array(trainval, dtype=np.uint16).reshape(-1, 1),
         "test_seen_loc": np.array(test_seen, dtype=np.uint16).reshape(-1, 1),
         "test_unseen_loc": np.array(test_unseen, dtype=np.uint16).reshape(-1, 1)}
    if names:
        d["allclasses_names"] = cell([class_names[i] for i in perm])
    for k, v in extra.items():
        d[k] = np.array(v).reshape(-1, 1) if k.endswith("_loc") else v
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), d)


def make_cub(tmp: Path, n_classes=6, per_class=5, unseen=(5, 6), val=(2,), images=True,
             keep_ids=None, attributes_beside=True) -> Path:
    """CUB_200_2011/ under tmp with att_splits.mat (classes stored in reverse order) and class
    lists beside it. Class c has ids (c-1)*per_class+1 .. c*per_class; the last image of each seen
    class is test_seen. keep_ids: write only these image ids (a subset)."""
    root = tmp / "cub"
    base = root / "CUB_200_2011"
    names = [f"{c:03d}.Bird_{chr(64 + c)}" for c in range(1, n_classes + 1)]
    ids = list(range(1, n_classes * per_class + 1))
    cls = {i: (i - 1) // per_class + 1 for i in ids}
    kept = ids if keep_ids is None else sorted(keep_ids)
    paths = {i: f"{names[cls[i] - 1]}/{names[cls[i] - 1][4:]}_{i:04d}.jpg" for i in ids}
    _write(base / "classes.txt", [f"{c} {n}" for c, n in enumerate(names, 1)])
    _write(base / "images.txt", [f"{i} {paths[i]}" for i in kept])
    _write(base / "image_class_labels.txt", [f"{i} {cls[i]}" for i in kept])
    _write(base / "train_test_split.txt", [f"{i} {i % 2}" for i in kept])
    _write(base / "bounding_boxes.txt", [f"{i} 4.0 2.0 32.0 24.0" for i in kept])
    _write(base / "parts" / "parts.txt", [f"{k} {p}" for k, p in enumerate(CUB_PARTS, 1)])
    locs = []
    for i in kept:
        for k, p in enumerate(CUB_PARTS, 1):
            vis = int(p in ("beak", "crown", "tail") and not (p == "tail" and i % 2 == 0))
            x, y = {"beak": (10, 8), "crown": (14, 6), "tail": (30, 20)}.get(p, (0, 0))
            locs.append(f"{i} {k} {float(x) if vis else 0.0} {float(y) if vis else 0.0} {vis}")
    _write(base / "parts" / "part_locs.txt", locs)
    _write((root if attributes_beside else base) / "attributes.txt",
           [f"{k} {a}" for k, a in enumerate(CUB_ATTRS, 1)])
    rng = np.random.default_rng(1)
    orig = rng.uniform(0, 100, (n_classes, len(CUB_ATTRS))).round(2)
    _write(base / "attributes" / "class_attribute_labels_continuous.txt",
           [" ".join(f"{v:.2f}" for v in row) for row in orig])
    if images:
        for i in kept:
            _img(base / "images" / paths[i], color=(cls[i] * 30, 80, 120))
    seen = [c for c in range(1, n_classes + 1) if c not in unseen]
    tv = [i for i in ids if cls[i] in seen and i % per_class != 0]
    ts = [i for i in ids if cls[i] in seen and i % per_class == 0]
    tu = [i for i in ids if cls[i] in unseen]
    save_att_splits(root / "att_splits.mat", names, orig, tv, ts, tu, perm=np.arange(n_classes)[::-1])
    _write(root / "trainvalclasses.txt", [names[c - 1] for c in seen])
    _write(root / "testclasses.txt", [names[c - 1] for c in unseen])
    _write(root / "trainclasses1.txt", [names[c - 1] for c in seen if c not in val])
    _write(root / "valclasses1.txt", [names[c - 1] for c in val])
    return root


AWA_CLASSES = ["zebra", "antelope", "giant+panda", "giraffe", "bat"]   # classes.txt order


def make_awa2(tmp: Path, per_class=(3, 2, 4, 2, 3), images=True, minus_one=True) -> Path:
    """AwA2 layout. att_splits.mat locs follow the sorted-folder order; unseen = giraffe, bat."""
    root = tmp / "awa2"
    root.mkdir(parents=True)
    _write(root / "classes.txt", [f"     {k}\t{c}" for k, c in enumerate(AWA_CLASSES, 1)])
    attrs = ["black", "white", "stripes"]
    _write(root / "predicates.txt", [f"     {k}\t{a}" for k, a in enumerate(attrs, 1)])
    m = np.array([[50, 50, 90], [10, 20, 0], [60, 60, 5], [5, 30, 10], [40, 10, 0]], dtype=float)
    if minus_one:
        m[1, 2] = -1.0
    _write(root / "predicate-matrix-continuous.txt", ["  ".join(f"{v:.2f}" for v in r) for r in m])
    n_of = dict(zip(AWA_CLASSES, per_class))
    order = []   # canonical: sorted folders, sorted files
    for c in sorted(AWA_CLASSES, key=str.encode):
        for j in range(n_of[c]):
            order.append(c)
            if images:
                _img(root / "JPEGImages" / c / f"{c}_{10001 + j}.jpg")
    unseen = {"giraffe", "bat"}
    tv, ts, tu = [], [], []
    for pos, c in enumerate(order, 1):
        (tu if c in unseen else ts if pos % 3 == 0 else tv).append(pos)
    orig = m.copy()
    save_att_splits(root / "att_splits.mat", AWA_CLASSES, orig, tv, ts, tu, perm=[1, 0, 2, 4, 3])
    _write(root / "trainvalclasses.txt", [c for c in AWA_CLASSES if c not in unseen])
    _write(root / "testclasses.txt", sorted(unseen))
    _write(root / "trainclasses1.txt", ["zebra", "antelope"])
    _write(root / "valclasses1.txt", ["giant+panda"])
    return root


def make_flo(tmp: Path, n_classes=102, images=True, missing=()) -> Path:
    """Oxford-102 layout with one image per class (image k has label k, k = 1..102)."""
    root = tmp / "flo"
    root.mkdir(parents=True)
    labels = np.arange(1, n_classes + 1)
    scipy.io.savemat(str(root / "imagelabels.mat"), {"labels": labels.reshape(1, -1).astype(np.uint8)})
    order = np.r_[np.arange(51, n_classes + 1), np.arange(1, 51)]      # setid order != number order
    scipy.io.savemat(str(root / "setid.mat"), {"trnid": order[:30].reshape(1, -1), "valid": order[30:40].reshape(1, -1),
                                              "tstid": order[40:].reshape(1, -1)})
    if images:
        for k in labels:
            if k not in missing:
                _img(root / "jpg" / f"image_{k:05d}.jpg")
    pos_of = {int(n): p for p, n in enumerate(order, 1)}           # image number -> xlsa17 position
    unseen = set(range(1, 21))
    tu = [pos_of[k] for k in labels if k in unseen]
    seen = [k for k in labels if k not in unseen]
    tv = [pos_of[k] for k in seen[:60]]
    ts = [pos_of[k] for k in seen[60:]]
    att = np.random.default_rng(2).normal(size=(n_classes, 16))
    _flo_mat(root / "att_splits.mat", att, tv, ts, tu,
             [pos_of[k] for k in seen if k % 4], [pos_of[k] for k in seen if k % 4 == 0])
    return root


def _flo_mat(path, att, tv, ts, tu, train, val):
    a = att / np.linalg.norm(att, axis=1, keepdims=True)
    col = lambda v: np.array(v, dtype=np.uint16).reshape(-1, 1)
    scipy.io.savemat(str(path), {"att": a.T, "trainval_loc": col(tv), "test_seen_loc": col(ts),
                                 "test_unseen_loc": col(tu), "train_loc": col(train), "val_loc": col(val)})


def make_folder(tmp: Path, split=True, parts=True) -> Path:
    root = tmp / "mybirds"
    classes = ["robin", "crow", "jay", "owl", "wren"]
    _write(root / "classes.csv", ["class,red breast,black,blue,size"] +
           [f"{c},{i},{(i * 7) % 5},{i % 2},{3 + i}" for i, c in enumerate(classes)])
    for i, c in enumerate(classes):
        for j in range(5):
            _img(root / "images" / c / (f"{c}{j}.jpg" if j % 2 else f"{c}{j}.png"))
    if parts:
        _write(root / "parts.csv", ["image,part,x0,y0,x1,y1", "robin/robin1.jpg,head,1,2,11,12",
                                    "images/crow/crow0.png,head,0,0,5,5", "crow/crow0.png,tail,10,10,20,20"])
    if split:
        _write(root / "split.csv", ["class,split", "robin,seen", "crow,seen", "jay,val", "owl,unseen", "wren,seen"])
    return root
