"""AwA2 loader: generated fixtures (always) and the real shared metadata (when present)."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures_data import AWA_CLASSES, make_awa2, need_shared, save_att_splits
from sgma.engine.data.awa2 import impute_missing, load_awa2, load_awa2_meta
from sgma.engine.data.base import DatasetError


def test_fixture_full_mode_uses_locs(tmp_path, monkeypatch):
    root = make_awa2(tmp_path)
    monkeypatch.setattr("sgma.engine.data.awa2.AWA2_FULL_N", 14)
    d = load_awa2(root)
    s = d.split
    assert len(d) == 14 and d.class_names == AWA_CLASSES
    # canonical order: folders sorted (antelope, bat, giant+panda, giraffe, zebra)
    assert [d.class_names[d.items[i].label] for i in (0, 1, 2)] == ["antelope", "antelope", "bat"]
    assert sorted(d.class_names[c] for c in s.unseen) == ["bat", "giraffe"]
    assert len(s.test_unseen) == 5 and len(s.trainval) + len(s.test_seen) == 9
    assert [d.class_names[c] for c in s.val_classes] == ["giant+panda"]
    np.testing.assert_allclose(np.linalg.norm(d.semantics, axis=1), 1.0, rtol=1e-5)


def test_fixture_not_full_falls_back_to_class_lists(tmp_path):
    d = load_awa2(make_awa2(tmp_path))
    s = d.split
    assert len(s.test_unseen) == 5 and len(s.test_seen) == round(0.2 * 3) + round(0.2 * 2) + round(0.2 * 4)


def test_missing_values_are_imputed(tmp_path):
    root = make_awa2(tmp_path)
    sem = load_awa2(root, semantics="dataset").semantics
    # column 3 (stripes) of antelope is -1: mean of 90, 5, 10, 0 over the other classes
    assert sem[1, 2] == pytest.approx((90 + 5 + 10 + 0) / 4)
    assert (sem >= 0).all()
    m = impute_missing(np.array([[1.0, -1.0], [3.0, 4.0]]))
    np.testing.assert_allclose(m, [[1, 4], [3, 4]])
    with pytest.raises(DatasetError, match="missing for every class"):
        impute_missing(np.array([[1.0, -1.0], [3.0, -1.0]]), "x")


def test_metadata_only(tmp_path):
    root = make_awa2(tmp_path, images=False)
    with pytest.raises(DatasetError, match="JPEGImages"):
        load_awa2(root)
    d = load_awa2_meta(root)
    assert len(d) == 0 and len(d.split.seen) == 3 and d.split.trainval == []


def test_ss_uses_root_testclasses(tmp_path):
    root = make_awa2(tmp_path)
    (root / "testclasses.txt").write_text("zebra\n")
    d = load_awa2(root, split="ss")
    assert [d.class_names[c] for c in d.split.unseen] == ["zebra"]


def test_errors(tmp_path, monkeypatch):
    root = make_awa2(tmp_path)
    (root / "JPEGImages" / "lion").mkdir()
    with pytest.raises(DatasetError, match="lion: not a folder of a class"):
        load_awa2(root)
    root = make_awa2(tmp_path / "b")
    p = root / "predicate-matrix-continuous.txt"
    p.write_text(p.read_text().replace("60.00", "sixty"))
    with pytest.raises(DatasetError, match=r"predicate-matrix-continuous.txt:3: column 1 is not a number"):
        load_awa2(root, semantics="dataset")
    root = make_awa2(tmp_path / "c")
    monkeypatch.setattr("sgma.engine.data.awa2.AWA2_FULL_N", 14)
    save_att_splits(root / "att_splits.mat", AWA_CLASSES, np.ones((5, 3)), [1, 2, 99], [], [])
    with pytest.raises(DatasetError, match="trainval_loc index 99 is out of range"):
        load_awa2(root)


def test_real_awa2_meta():
    meta = need_shared("awa2_meta")
    xl = need_shared("xlsa17", "AWA2", "att_splits.mat")
    d = load_awa2_meta(meta, att_splits=str(xl))
    s = d.split
    assert (len(s.seen), len(s.unseen)) == (40, 10)
    assert len(d.attribute_names) == 85 and d.semantics.shape == (50, 85)
    assert (len(s.train_classes), len(s.val_classes)) == (27, 13)
    raw = load_awa2_meta(meta, att_splits=str(xl), semantics="original_att").semantics
    own = load_awa2_meta(meta, att_splits=str(xl), semantics="dataset").semantics
    assert (raw >= 0).all()
    # identical apart from the first row's four quirk values (0.00 in the file, -1 in xlsa17)
    np.testing.assert_allclose(raw[1:], own[1:], atol=1e-4)
    ss = load_awa2_meta(meta, att_splits=str(xl), split="ss").split
    assert len(ss.unseen) == 10 and "chimpanzee" in [d.class_names[c] for c in ss.unseen]
