"""xlsa17 semantics and splits (Xian et al., "Zero-shot learning: the good, the bad and the ugly"),
plus the strict text/split helpers shared by the real loaders (cub, awa2, flo, folder).

Choices (also in docs/datasets.md):
- ``att`` is read as published (class vectors L2-normalised to unit length); ``original_att`` is
  the raw attribute matrix. Both are stored attribute x class in the .mat; we return class x attribute.
- Classes are matched BY NAME between ``allclasses_names`` and the dataset's class list (FLO's file
  has no names: its loader passes explicit columns, column k = Oxford label k+1).
- ``*_loc`` are 1-based positions in the dataset's canonical full image order (CUB: image id; AwA2:
  class folders then files, both sorted; FLO: trnid ++ valid ++ tstid). Every index must lie in
  1..n_full and, for images that are present, belong to the expected classes (seen for
  trainval/test_seen, unseen for test_unseen); the three sets must be disjoint. Otherwise DatasetError.
- Subsets (e.g. cub50): indices of absent images are dropped; if no test_seen image is present, a
  seeded 20% share of each seen class's trainval images becomes test_seen (``class_list_split``).
- Expected seen/unseen classes come from ``trainvalclasses.txt``/``testclasses.txt`` beside the .mat
  when present, else from the classes of the loc sets themselves.
- Validation fold K: ``trainclassesK.txt``/``valclassesK.txt`` beside the .mat; else, for K == 1,
  the classes of ``train_loc``/``val_loc``; else a seeded 20% of the seen classes (seed + K).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .base import FLOAT32_MAX, DatasetError

TEST_SEEN_FRAC = 0.2   # share of each seen class's images held out as test_seen in class-list splits
VAL_CLASS_FRAC = 0.2   # share of seen classes used as validation classes when no fold lists exist
SEMANTICS = ("att", "original_att", "dataset")
SPLITS = ("ps", "ss")


def shared_data_dir() -> Optional[Path]:
    """The folder named by ``$SGMA_SHARED_DATA`` (holding ``xlsa17/<DATASET>/att_splits.mat`` and
    metadata); None when unset or not a folder. No default: a user's data is where they say."""
    env = os.environ.get("SGMA_SHARED_DATA")
    p = Path(env) if env else None
    return p.resolve() if p is not None and p.is_dir() else None


# ----------------------------------------------------------------------------- strict text reading
def read_rows(path: Path, types: Sequence[type], maxsplit: int = -1) -> list[tuple[int, tuple]]:
    """Whitespace-separated rows as (line number, typed fields); blank lines are ignored.
    ``maxsplit`` lets the last column hold spaces (CUB ``parts.txt``: "7 left eye")."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.split(None, maxsplit) if maxsplit >= 0 else line.split()
        if len(f) != len(types):
            raise DatasetError(f"{path}:{n}: expected {len(types)} columns, got {len(f)}: {line.strip()!r}")
        rows.append((n, tuple(_conv(t, v, path, n, k) for k, (t, v) in enumerate(zip(types, f), 1))))
    return rows


def _conv(t, v: str, path, n, k):
    if t is str:
        return v.strip()
    try:
        x = float(v)
        if not np.isfinite(x) or (t is int and not x.is_integer()):
            raise ValueError
    except ValueError:
        raise DatasetError(f"{path}:{n}: column {k} is not a{'n integer' if t is int else ' number'}: {v!r}") from None
    if abs(x) > FLOAT32_MAX:
        raise DatasetError(f"{path}:{n}: column {k} is outside the float32 range: {v!r}")
    return int(x) if t is int else x


def by_id(rows: list[tuple[int, tuple]], path: Path) -> dict:
    """Map the first field (an id) to the rest; a duplicated id is an error naming both lines."""
    out, line_of = {}, {}
    for n, f in rows:
        if f[0] in out:
            raise DatasetError(f"{path}:{n}: duplicated id {f[0]} (first on line {line_of[f[0]]})")
        out[f[0]], line_of[f[0]] = (f[1:] if len(f) > 2 else f[1]), n
    return out


def read_matrix(path: Path, n_rows: int, n_cols: int) -> np.ndarray:
    rows = read_rows(path, [float] * n_cols)
    if len(rows) != n_rows:
        raise DatasetError(f"{path}: expected {n_rows} rows of {n_cols} numbers, got {len(rows)} rows")
    return np.array([f for _, f in rows], dtype=np.float64).reshape(n_rows, n_cols)


def read_class_list(path: Path) -> list[str]:
    """One class name a line; a line "<id><tab or spaces><name>" gives <name>."""
    names = []
    for _, (line,) in read_rows(path, [str], maxsplit=0):
        f = line.split(None, 1)
        names.append(f[1].strip() if len(f) == 2 and f[0].isdigit() else line)
    return names


def l2_rows(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(n > 0, n, 1.0)).astype(np.float32)


# ----------------------------------------------------------------------------- att_splits.mat
@dataclass
class AttSplits:
    path: Path
    att: np.ndarray                     # (n_classes, d) as published (L2-normalised)
    original_att: Optional[np.ndarray]  # (n_classes, d) raw, or None (FLO)
    class_names: Optional[list[str]]    # allclasses_names, or None (FLO)
    locs: dict[str, np.ndarray]         # 1-based int64 positions

    @property
    def folder(self) -> Path:
        return self.path.parent


def _mat_array(m: dict, key: str, path: Path, index: bool = False) -> np.ndarray:
    """``m[key]`` as float64 (int64 for 1-based ``*_loc`` indices); a non-numeric array, a NaN or
    infinite value, or a fractional index is a DatasetError naming the file and the variable."""
    try:
        a = np.asarray(m[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: '{key}' is not a numeric array") from None
    if not np.isfinite(a).all():
        raise DatasetError(f"{path}: '{key}' has a NaN or infinite value")
    if (np.abs(a) > FLOAT32_MAX).any():
        raise DatasetError(f"{path}: '{key}' has a value outside the float32 range")
    if index and (a != np.round(a)).any():
        raise DatasetError(f"{path}: '{key}' has a value that is not an integer index")
    return a.astype(np.int64) if index else a


def read_att_splits(path) -> AttSplits:
    import scipy.io
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        m = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises many types on corrupt files
        raise DatasetError(f"cannot read {path}: {e}") from None
    if "att" not in m:
        raise DatasetError(f"{path}: no 'att' matrix")
    att = _mat_array(m, "att", path)
    if att.ndim != 2:
        raise DatasetError(f"{path}: 'att' must be 2-D, got shape {att.shape}")
    att = att.T
    orig = None
    if "original_att" in m:
        orig = _mat_array(m, "original_att", path).T
        if orig.shape != att.shape:
            raise DatasetError(f"{path}: original_att shape {orig.shape[::-1]} != att shape {att.shape[::-1]}")
    names = None
    if "allclasses_names" in m:
        names = [str(np.asarray(x).ravel()[0]).strip() for x in np.asarray(m["allclasses_names"]).ravel()]
        if len(names) != att.shape[0]:
            raise DatasetError(f"{path}: {len(names)} allclasses_names but att has {att.shape[0]} classes")
    locs = {}
    for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc"):
        if k in m:
            locs[k] = _mat_array(m, k, path, index=True).ravel()
        elif k in ("trainval_loc", "test_seen_loc", "test_unseen_loc"):
            raise DatasetError(f"{path}: missing '{k}'")
    return AttSplits(path, att, orig, names, locs)


def find_att_splits(explicit, roots: Sequence[Path], shared_key: str) -> Optional[Path]:
    """``explicit`` (must exist), else the first ``<r>/att_splits.mat``, else shared xlsa17/<key>."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise DatasetError(f"missing file: {p} (option att_splits)")
        return p
    cands = [Path(r) / "att_splits.mat" for r in roots]
    sd = shared_data_dir()
    if sd is not None:
        cands.append(sd / "xlsa17" / shared_key / "att_splits.mat")
    return next((c for c in cands if c.is_file()), None)


def class_columns(xl: AttSplits, names: Sequence[str]) -> np.ndarray:
    """For each dataset class, its column in the .mat, matched by name."""
    if xl.class_names is None:
        raise DatasetError(f"{xl.path}: no allclasses_names to match classes by name")
    pos = {n: i for i, n in enumerate(xl.class_names)}
    missing = [n for n in names if n not in pos]
    if missing:
        raise DatasetError(f"{xl.path}: class {missing[0]!r} is missing from allclasses_names")
    return np.array([pos[n] for n in names], dtype=np.int64)


def select_semantics(kind: str, xl: Optional[AttSplits], cols: Optional[np.ndarray],
                     dataset_att: Optional[np.ndarray]) -> np.ndarray:
    """"att": xlsa17 att (or the L2-normalised dataset file when no .mat); "original_att";
    "dataset": the dataset's own attribute file, raw."""
    if kind not in SEMANTICS:
        raise DatasetError(f"unknown semantics {kind!r} (choose from {', '.join(SEMANTICS)})")
    if kind == "dataset" or (kind == "att" and xl is None):
        if dataset_att is None:
            raise DatasetError("semantics: this dataset has no attribute file of its own and no att_splits.mat")
        return (l2_rows(dataset_att) if kind == "att" else dataset_att).astype(np.float32)
    if xl is None:
        raise DatasetError("semantics 'original_att' needs an att_splits.mat (none found)")
    m = xl.att if kind == "att" else xl.original_att
    if m is None:
        raise DatasetError(f"{xl.path}: no '{kind}' in this file")
    return np.ascontiguousarray(m[cols], dtype=np.float32)


# ----------------------------------------------------------------------------- splits
def names_to_indices(names: Sequence[str], class_names: Sequence[str], where, subset: bool) -> list[int]:
    pos = {n: i for i, n in enumerate(class_names)}
    out = []
    for n in names:
        if n in pos:
            out.append(pos[n])
        elif not subset:
            raise DatasetError(f"{where}: class {n!r} is not in the dataset")
    return sorted(set(out))


def listed_classes(folder: Path, class_names, subset) -> Optional[tuple[list[int], list[int]]]:
    tv, te = folder / "trainvalclasses.txt", folder / "testclasses.txt"
    if not (tv.is_file() and te.is_file()):
        return None
    seen = names_to_indices(read_class_list(tv), class_names, tv, subset)
    unseen = names_to_indices(read_class_list(te), class_names, te, subset)
    check_partition(seen, unseen, class_names, f"{tv} / {te}")
    return seen, unseen


def check_partition(seen, unseen, class_names, where):
    both = set(seen) & set(unseen)
    if both:
        raise DatasetError(f"{where}: class {class_names[min(both)]!r} is both seen and unseen")
    rest = set(range(len(class_names))) - set(seen) - set(unseen)
    if rest:
        raise DatasetError(f"{where}: class {class_names[min(rest)]!r} is neither seen nor unseen")


def loc_split(xl: AttSplits, pos_to_item: np.ndarray, labels: np.ndarray, class_names,
              seen: Optional[list[int]], unseen: Optional[list[int]], seed: int):
    """(seen, unseen, trainval, test_seen, test_unseen) from the *_loc arrays; see module docstring."""
    n_full = len(pos_to_item)
    got = {}
    for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc"):
        loc = xl.locs[key]
        bad = np.flatnonzero((loc < 1) | (loc > n_full))
        if bad.size:
            raise DatasetError(f"{xl.path}: {key} index {loc[bad[0]]} is out of range 1..{n_full}")
        items = pos_to_item[loc - 1]
        got[key] = items[items >= 0]
    if seen is None:
        seen = sorted(set(labels[np.r_[got["trainval_loc"], got["test_seen_loc"]]].tolist()))
        unseen = sorted(set(labels[got["test_unseen_loc"]].tolist()))
        check_partition(seen, unseen, class_names, f"{xl.path} (classes of the loc sets)")
    for key, expect, what in (("trainval_loc", seen, "seen"), ("test_seen_loc", seen, "seen"),
                              ("test_unseen_loc", unseen, "unseen")):
        labs = labels[got[key]]
        wrong = np.flatnonzero(~np.isin(labs, expect))
        if wrong.size:
            i = got[key][wrong[0]]
            raise DatasetError(f"{xl.path}: {key} lists image #{int(np.flatnonzero(pos_to_item == i)[0]) + 1} of "
                               f"class {class_names[labs[wrong[0]]]!r}, which is not a {what} class")
    sets = [set(got[k].tolist()) for k in ("trainval_loc", "test_seen_loc", "test_unseen_loc")]
    if sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]:
        raise DatasetError(f"{xl.path}: the trainval/test_seen/test_unseen loc sets overlap")
    trainval, test_seen = sorted(sets[0]), sorted(sets[1])
    if not test_seen and trainval:
        trainval, test_seen, _ = class_list_split(labels[trainval], seen, [], seed, index=trainval)
    return seen, unseen, trainval, test_seen, sorted(sets[2])


def class_list_split(labels: np.ndarray, seen, unseen, seed: int, frac: float = TEST_SEEN_FRAC,
                     index: Optional[Sequence[int]] = None):
    """Seen-class images -> (trainval, test_seen): per seen class (in index order), round(frac * n)
    images drawn by ``np.random.default_rng(seed)``; unseen-class images -> test_unseen."""
    labels = np.asarray(labels)
    index = np.arange(len(labels)) if index is None else np.asarray(index)
    rng = np.random.default_rng(seed)
    trainval, test_seen = [], []
    for c in sorted(seen):
        idx = index[labels == c]
        k = int(round(frac * len(idx)))
        perm = rng.permutation(len(idx))
        test_seen += idx[perm[:k]].tolist()
        trainval += idx[perm[k:]].tolist()
    test_unseen = index[np.isin(labels, list(unseen))].tolist() if len(unseen) else []
    return sorted(trainval), sorted(test_seen), sorted(test_unseen)


def fold_classes(fold: int, seen: list[int], class_names, subset: bool, seed: int,
                 xl: Optional[AttSplits] = None, pos_to_item=None, labels=None):
    """(train_classes, val_classes) of validation fold ``fold`` inside ``seen``."""
    if not isinstance(fold, int) or fold < 1:
        raise DatasetError(f"fold must be an integer >= 1, got {fold!r}")
    if xl is not None:
        tr, va = xl.folder / f"trainclasses{fold}.txt", xl.folder / f"valclasses{fold}.txt"
        if tr.is_file() and va.is_file():
            train = names_to_indices(read_class_list(tr), class_names, tr, subset)
            val = names_to_indices(read_class_list(va), class_names, va, subset)
            for lst, where in ((train, tr), (val, va)):
                out = set(lst) - set(seen)
                if out:
                    raise DatasetError(f"{where}: class {class_names[min(out)]!r} is not a seen class")
            if set(train) & set(val):
                raise DatasetError(f"{tr} / {va}: a class is in both the train and the val list")
            return train, val
        if fold == 1 and "train_loc" in xl.locs and "val_loc" in xl.locs and labels is not None:
            out = []
            for key in ("train_loc", "val_loc"):
                loc = xl.locs[key]
                if loc.size and (loc.min() < 1 or loc.max() > len(pos_to_item)):
                    raise DatasetError(f"{xl.path}: {key} has an index out of range 1..{len(pos_to_item)}")
                items = pos_to_item[loc - 1]
                out.append(sorted(set(labels[items[items >= 0]].tolist()) & set(seen)))
            if out[0] or out[1]:
                return out[0], out[1]
    rng = np.random.default_rng(seed + fold)
    s = np.array(sorted(seen))
    k = max(1, int(round(VAL_CLASS_FRAC * len(s)))) if len(s) >= 2 else 0
    val = sorted(rng.permutation(s)[:k].tolist())
    return sorted(set(s.tolist()) - set(val)), val
