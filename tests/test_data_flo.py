"""Oxford Flowers 102 loader: generated fixtures (always) and the real shared metadata."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io

from fixtures_data import make_flo, need_shared
from sgma.engine.data.base import DatasetError
from sgma.engine.data.flo import load_flo


def test_fixture(tmp_path):
    root = make_flo(tmp_path)
    (root / "cat_to_name.json").write_text(json.dumps({str(k): f"flower {k}" for k in range(1, 103)}))
    d = load_flo(root)
    s = d.split
    assert len(d) == 102 and d.class_names[0] == "flower 1" and d.semantics.shape == (102, 16)
    assert s.unseen == list(range(20)) and len(s.seen) == 82
    assert len(s.trainval) == 60 and len(s.test_seen) == 22 and len(s.test_unseen) == 20
    # items are in image-number order, loc positions follow trnid ++ valid ++ tstid
    assert d.items[5].image_id == "00006" and d.items[5].label == 5
    assert len(s.val_classes) == 20 and len(s.train_classes) == 62
    assert d.attribute_names[0] == "txt0000"
    with pytest.raises(DatasetError, match="only 'att'"):
        load_flo(root, semantics="dataset")


def test_missing_image_and_subset(tmp_path):
    root = make_flo(tmp_path, missing=(3, 70))
    with pytest.raises(DatasetError, match="image_00003.jpg"):
        load_flo(root)
    d = load_flo(root, subset=True)
    assert len(d) == 100 and len(d.split.test_unseen) == 19 and len(d.split.seen) == 82


def test_bad_setid_and_labels(tmp_path):
    root = make_flo(tmp_path, images=False)
    scipy.io.savemat(str(root / "setid.mat"), {"trnid": np.array([[1, 2]]), "valid": np.array([[3]]),
                                              "tstid": np.array([[3]])})
    with pytest.raises(DatasetError, match="permutation"):
        load_flo(root, check_images=False)
    root = make_flo(tmp_path / "b", images=False)
    scipy.io.savemat(str(root / "imagelabels.mat"), {"nolabels": np.array([[1]])})
    with pytest.raises(DatasetError, match="missing 'labels'"):
        load_flo(root, check_images=False)


def test_real_flo_meta():
    meta = need_shared("flo_meta")
    xl = need_shared("xlsa17", "FLO", "att_splits.mat")
    d = load_flo(meta, att_splits=str(xl), check_images=False)
    s = d.split
    assert len(d) == 8189 and d.semantics.shape == (102, 1024)
    assert (len(s.seen), len(s.unseen)) == (82, 20)
    assert (len(s.trainval), len(s.test_seen), len(s.test_unseen)) == (5631, 1403, 1155)
    assert (len(s.train_classes), len(s.val_classes)) == (62, 20)
    derived = [l.split("\t")[1] for l in (meta / "testclasses.DERIVED.txt").read_text().splitlines()]
    assert sorted(d.class_names[c] for c in s.unseen) == sorted(derived)
