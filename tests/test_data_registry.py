"""load_dataset registry, the xlsa17 helpers and the CUB head/tail box rule."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures_data import make_awa2, make_cub, make_flo, make_folder, need_shared
from sgma.engine.data import parts as P
from sgma.engine.data.base import DatasetError
from sgma.engine.data.registry import DATASET_KINDS, dataset_options, load_dataset
from sgma.engine.data.xlsa17 import class_list_split, read_class_list, shared_data_dir


def test_kinds_and_dispatch(tmp_path):
    assert DATASET_KINDS == ("synthetic", "cub", "awa2", "flo", "folder")
    assert load_dataset("cub", str(make_cub(tmp_path)), fold=1, seed=0).name == "cub"
    assert load_dataset("awa2", str(make_awa2(tmp_path)), check_images=False).name == "awa2"
    assert load_dataset("flo", str(make_flo(tmp_path))).name == "flo"
    assert load_dataset("folder", str(make_folder(tmp_path)), split="ps").name == "folder"
    assert {"split", "att_splits", "semantics", "fold", "seed", "check_images"} <= set(dataset_options("cub"))


def test_synthetic_lazy(tmp_path):
    d = load_dataset("synthetic", None, seed=0, split="ps", semantics="att", fold=1)
    assert d.name == "synthetic" and len(d) > 0
    with pytest.raises(DatasetError, match="unknown option 'split'"):
        load_dataset("synthetic", None, split="ss")


def test_unknown_kind_and_options(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset kind 'imagenet'"):
        load_dataset("imagenet", "x")
    with pytest.raises(DatasetError, match="unknown option 'colour' for dataset kind 'cub'"):
        load_dataset("cub", str(tmp_path), colour=1)
    with pytest.raises(DatasetError, match="needs a root"):
        load_dataset("cub")
    with pytest.raises(DatasetError, match="fold must be"):
        load_dataset("cub", str(make_cub(tmp_path)), fold=0)
    with pytest.raises(DatasetError, match="unknown split 'xx'"):
        load_dataset("cub", str(make_cub(tmp_path / "b")), split="xx")
    with pytest.raises(DatasetError, match="unknown semantics 'w2v'"):
        load_dataset("cub", str(make_cub(tmp_path / "c")), semantics="w2v")


def test_att_splits_search_order(tmp_path, monkeypatch):
    root = make_cub(tmp_path)
    (root / "att_splits.mat").rename(tmp_path / "elsewhere.mat")
    monkeypatch.setenv("SGMA_SHARED_DATA", str(tmp_path / "none"))
    with pytest.raises(DatasetError, match="split 'ps' needs att_splits.mat"):
        load_dataset("cub", str(root))
    with pytest.raises(DatasetError, match="missing file: .*nope.mat"):
        load_dataset("cub", str(root), att_splits=str(tmp_path / "nope.mat"))
    d = load_dataset("cub", str(root), att_splits=str(tmp_path / "elsewhere.mat"))
    assert len(d.split.unseen) == 2


def test_shared_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMA_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path.resolve()
    monkeypatch.setenv("SGMA_SHARED_DATA", str(tmp_path / "missing"))
    assert shared_data_dir() is None


def test_class_list_formats(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("001.Black_footed_Albatross\n\n21\tfire lily\n")
    assert read_class_list(p) == ["001.Black_footed_Albatross", "fire lily"]


def test_class_list_split_is_seeded_and_per_class():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 3)
    tv, ts, tu = class_list_split(labels, [0, 1], [2], seed=0)
    assert len(ts) == 2 + 1 and len(tv) == 8 + 4 and tu == [15, 16, 17]
    assert class_list_split(labels, [0, 1], [2], seed=0) == (tv, ts, tu)
    assert class_list_split(labels, [0, 1], [2], seed=1)[1] != ts


# ----------------------------------------------------------------------------- part-box rule
BIRD = (100.0, 100.0, 300.0, 200.0)      # 200 x 100: minimum side 0.25 * 200 = 50


def test_head_box_small_extent_uses_minimum_side():
    kp = {"beak": (150, 120, True), "crown": (160, 110, True), "tail": (280, 190, True),
          "back": (200, 150, True), "nape": (0, 0, False)}
    b = P.cub_part_boxes(kp, BIRD)
    assert b["head"] == pytest.approx((130.0, 90.0, 180.0, 140.0))   # centre (155, 115), side 50
    assert b["tail"] == pytest.approx((255.0, 165.0, 305.0, 215.0))


def test_head_box_large_extent_scales_by_1_2_and_clips():
    pts = [(10, 10), (90, 50)]       # extent 80 -> side 96 around (50, 30)
    assert P.head_box(pts, BIRD) == pytest.approx((2.0, -18.0, 98.0, 78.0))
    assert P.head_box(pts, BIRD, image_size=(400, 300)) == pytest.approx((2.0, 0.0, 98.0, 78.0))


def test_invisible_parts_get_no_box():
    kp = {n: (10.0, 10.0, False) for n in P.HEAD_KEYPOINTS + P.TAIL_KEYPOINTS}
    assert P.cub_part_boxes(kp, BIRD) == {}
    kp["throat"] = (50.0, 60.0, True)         # one head point -> the minimum square around it
    assert P.cub_part_boxes(kp, BIRD) == {"head": pytest.approx((25.0, 35.0, 75.0, 85.0))}


def test_real_cub_images_head_boxes_contain_head_points():
    root = need_shared("cub_images")
    from sgma.engine.data.xlsa17 import read_rows
    names = dict(zip(range(1, 16), ["back", "beak", "belly", "breast", "crown", "forehead", "left eye",
                                    "left leg", "left wing", "nape", "right eye", "right leg",
                                    "right wing", "tail", "throat"]))
    kps: dict = {}
    for _, (i, p, x, y, v) in read_rows(root / "part_locs.txt", [int, int, float, float, int]):
        kps.setdefault(i, {})[names[p]] = (x, y, bool(v))
    bbs = {i: (x, y, x + w, y + h) for _, (i, x, y, w, h) in read_rows(root / "bounding_boxes.txt", [int] + [float] * 4)}
    for i, kp in kps.items():
        b = P.cub_part_boxes(kp, bbs[i])
        assert set(b) == {"head", "tail"}
        for n in P.HEAD_KEYPOINTS:
            x, y, v = kp[n]
            if v:
                assert b["head"][0] <= x <= b["head"][2] and b["head"][1] <= y <= b["head"][3]
