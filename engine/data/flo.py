"""Oxford Flowers 102 (FLO) with the xlsa17 1024-d text semantics.

``root`` holds ``jpg/image_XXXXX.jpg`` (1-based image numbers), ``imagelabels.mat`` (``labels``,
1..102 per image) and ``setid.mat`` (``trnid``, ``valid``, ``tstid``).

Choices:
- Semantics: ``att`` of xlsa17/FLO/att_splits.mat, 1024 x 102 (Reed et al.'s char-CNN-RNN text
  embeddings). The file has no ``allclasses_names`` and no ``original_att``: column k is taken to be
  Oxford label k+1. There is no attribute file, so ``semantics`` must be "att"; attribute names are
  ``txt0000`` .. ``txt1023``.
- Canonical image order (what the ``*_loc`` index): ``trnid ++ valid ++ tstid`` in setid.mat's own
  order. With it every loc set is class-pure (test_unseen = all images of labels 1..20), and the
  loader checks this for every index (shared/data/flo_meta/*.DERIVED.txt were derived the same way).
- Seen/unseen classes are the classes of the loc sets (no class lists are published for FLO).
  Validation fold 1 = the classes of ``train_loc``/``val_loc`` (62/20); other folds fall back to a
  seeded 20% of the seen classes.
- ``split="ss"`` is the same split: the xlsa17 FLO split is Reed et al.'s standard one.
- Class names: ``class_names`` option (a JSON {"label": name} file), else ``<root>/cat_to_name.json``,
  else shared/data/flo_meta/cat_to_name.json, else ``flower_001`` ...
- ``check_images=False`` loads metadata only; ``subset=True`` keeps only the present jpgs (indices
  of absent images are dropped); otherwise a missing jpg is an error.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .base import DatasetError, ImageItem, Split, ZSLDataset, image_header_sizes
from .xlsa17 import (SPLITS, find_att_splits, fold_classes, loc_split, read_att_splits,
                     select_semantics, shared_data_dir)

N_CLASSES = 102


def _mat(path: Path, keys):
    import scipy.io
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        m = scipy.io.loadmat(str(path))
    except Exception as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    out = []
    for k in keys:
        if k not in m:
            raise DatasetError(f"{path}: missing '{k}'")
        out.append(np.asarray(m[k]).astype(np.int64).ravel())
    return out


def _class_names(option, root: Path) -> list[str]:
    cands = [Path(option)] if option is not None else [root / "cat_to_name.json"]
    sd = shared_data_dir()
    if option is None and sd is not None:
        cands.append(sd / "flo_meta" / "cat_to_name.json")
    for p in cands:
        if p.is_file():
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
                names = [str(d[str(k)]).strip() for k in range(1, N_CLASSES + 1)]
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise DatasetError(f"{p}: expected a JSON object with keys \"1\"..\"{N_CLASSES}\": {e!r}") from None
            if len(set(names)) != len(names):
                raise DatasetError(f"{p}: duplicated class name")
            return names
        if option is not None:
            raise DatasetError(f"missing file: {p} (option class_names)")
    return [f"flower_{k:03d}" for k in range(1, N_CLASSES + 1)]


def load_flo(root, split: str = "ps", att_splits=None, semantics: str = "att", fold: int = 1,
             seed: int = 0, check_images: bool = True, subset: bool = False,
             class_names=None) -> ZSLDataset:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    root = Path(root)
    (labels_all,) = _mat(root / "imagelabels.mat", ["labels"])
    trn, val, tst = _mat(root / "setid.mat", ["trnid", "valid", "tstid"])
    n = len(labels_all)
    if labels_all.min() < 1 or labels_all.max() > N_CLASSES:
        raise DatasetError(f"{root / 'imagelabels.mat'}: labels must be in 1..{N_CLASSES}")
    order = np.concatenate([trn, val, tst])
    if len(order) != n or not np.array_equal(np.sort(order), np.arange(1, n + 1)):
        raise DatasetError(f"{root / 'setid.mat'}: trnid+valid+tstid must be a permutation of 1..{n} "
                           f"(imagelabels.mat has {n} images)")
    names = _class_names(class_names, root)
    keep = np.ones(n, dtype=bool)
    if check_images:
        for k in range(1, n + 1):
            if not (root / "jpg" / f"image_{k:05d}.jpg").is_file():
                if not subset:
                    raise DatasetError(f"missing image file: {root / 'jpg' / f'image_{k:05d}.jpg'} "
                                       "(use check_images=False for metadata only, subset=True for a subset)")
                keep[k - 1] = False
    numbers = np.flatnonzero(keep) + 1            # items in image-number order
    item_of_number = np.full(n + 1, -1, dtype=np.int64)
    item_of_number[numbers] = np.arange(len(numbers))
    labels = labels_all[numbers - 1] - 1
    items = [ImageItem(label=int(c), path=str(root / "jpg" / f"image_{k:05d}.jpg"), image_id=f"{k:05d}")
             for k, c in zip(numbers, labels)]
    if check_images:
        image_header_sizes([it.path for it in items])     # a corrupt file is named now, not mid-run

    xl_path = find_att_splits(att_splits, [root], "FLO")
    if xl_path is None:
        raise DatasetError(f"FLO needs att_splits.mat (its semantics): none in {root} or $SGMA_SHARED_DATA/xlsa17/FLO")
    xl = read_att_splits(xl_path)
    if xl.att.shape[0] != N_CLASSES:
        raise DatasetError(f"{xl_path}: att has {xl.att.shape[0]} classes, expected {N_CLASSES}")
    if semantics != "att":
        raise DatasetError(f"FLO has only 'att' semantics (text embeddings), not {semantics!r}")
    sem = select_semantics("att", xl, np.arange(N_CLASSES), None)
    # classes and every index are checked on the full metadata (all labels are known), then the
    # split is taken over the images that are present
    seen, unseen, tv, ts, tu = loc_split(xl, order - 1, labels_all - 1, names, None, None, seed)
    pos_to_item = item_of_number[order]
    if len(numbers) != n:
        seen, unseen, tv, ts, tu = loc_split(xl, pos_to_item, labels, names, seen, unseen, seed)
    tr, va = fold_classes(fold, seen, names, subset, seed, xl, pos_to_item, labels)
    return ZSLDataset(name="flo", root=str(root), class_names=names,
                      attribute_names=[f"txt{j:04d}" for j in range(sem.shape[1])], semantics=sem,
                      items=items, split=Split(split, seen, unseen, tv, ts, tu, train_classes=tr, val_classes=va))
