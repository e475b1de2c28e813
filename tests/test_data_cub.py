"""CUB-200-2011 loader: generated fixtures (always) and the real shared metadata (when present)."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures_data import make_cub, need_shared, save_att_splits, _write
from sgma.engine.data.base import DatasetError
from sgma.engine.data.cub import load_cub


def test_fixture_ps_split_and_semantics(tmp_path):
    root = make_cub(tmp_path)
    d = load_cub(root)
    s = d.split
    assert d.name == "cub" and len(d) == 30 and len(d.class_names) == 6
    assert [d.class_names[c] for c in s.unseen] == ["005.Bird_E", "006.Bird_F"]
    assert len(s.trainval) == 16 and len(s.test_seen) == 4 and len(s.test_unseen) == 10
    assert [d.class_names[c] for c in s.val_classes] == ["002.Bird_B"]
    assert set(s.train_classes) | set(s.val_classes) == set(s.seen)
    # att stored in reverse class order in the .mat: mapping by name restores the dataset order
    orig = np.loadtxt(root / "CUB_200_2011/attributes/class_attribute_labels_continuous.txt")
    np.testing.assert_allclose(d.semantics, orig / np.linalg.norm(orig, axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d.semantics, axis=1), 1.0, rtol=1e-5)
    raw = load_cub(root, semantics="original_att").semantics
    np.testing.assert_allclose(raw, orig, rtol=1e-5)
    np.testing.assert_allclose(load_cub(root, semantics="dataset").semantics, orig, rtol=1e-5)
    assert d.attribute_names[0] == "has_bill_shape::dagger"
    assert d.attribute_groups == {"has_bill_shape": [0, 1], "has_wing_color": [2], "has_size": [3]}
    assert d.items[0].image_id == "1" and d.load_image(0).size == (40, 30)


def test_fixture_part_boxes(tmp_path):
    d = load_cub(make_cub(tmp_path))
    assert d.part_names == ["head", "tail"]
    # head points (10,8),(14,6): extent 4 -> side = max(4.8, 0.25*32=8) = 8 around (12,7)
    assert d.items[0].part_boxes["head"] == pytest.approx((8.0, 3.0, 16.0, 11.0))
    # tail (30,20): a square of side 8 centred on the point
    assert d.items[0].part_boxes["tail"] == pytest.approx((26.0, 16.0, 34.0, 24.0))
    assert "tail" not in d.items[1].part_boxes          # even ids: tail not visible


def test_metadata_only_and_subset(tmp_path):
    root = make_cub(tmp_path, images=False)
    with pytest.raises(DatasetError, match="missing image file"):
        load_cub(root)
    d = load_cub(root, check_images=False)
    assert len(d) == 30
    # subset: classes 1, 2 and 5 only, ids not 1..N; loc indices map by image id
    sub = make_cub(tmp_path / "s", keep_ids=[1, 2, 5, 6, 7, 21, 22])
    d = load_cub(sub)
    assert len(d.class_names) == 3 and len(d) == 7
    assert [d.items[i].image_id for i in d.split.test_seen] == ["5"]
    assert len(d.split.test_unseen) == 2 and len(d.split.val_classes) == 1


def test_subset_without_test_seen_falls_back_to_seeded_share(tmp_path):
    root = make_cub(tmp_path, keep_ids=[1, 2, 3, 4, 6, 7, 8, 9, 21])
    s = load_cub(root, seed=3).split
    assert len(s.test_seen) == 2 and len(s.trainval) == 6          # round(0.2 * 4) per class
    assert s.test_seen == load_cub(root, seed=3).split.test_seen


def test_ss_split_needs_class_list(tmp_path):
    root = make_cub(tmp_path)
    with pytest.raises(DatasetError, match="ss_unseen"):
        load_cub(root, split="ss")
    _write(tmp_path / "ss.txt", ["001.Bird_A", "003.Bird_C"])
    d = load_cub(root, split="ss", ss_unseen=str(tmp_path / "ss.txt"))
    assert d.split.unseen == [0, 2] and len(d.split.test_unseen) == 10
    assert len(d.split.test_seen) == 4 and len(d.split.trainval) == 16


@pytest.mark.parametrize("fname,line,pattern", [
    ("images.txt", "3 a/b.jpg extra", r"images.txt:3: expected 2 columns"),
    ("image_class_labels.txt", "3 x", r"image_class_labels.txt:3: column 2 is not an integer"),
    ("classes.txt", "2 001.Bird_A", r"classes.txt:\d+: duplicated id 2"),
    ("bounding_boxes.txt", "3 1 2 3", r"bounding_boxes.txt:3: expected 5 columns"),
])
def test_bad_lines(tmp_path, fname, line, pattern):
    root = make_cub(tmp_path)
    p = root / "CUB_200_2011" / fname
    lines = p.read_text().splitlines()
    if "duplicated" in pattern:
        lines.append(line)
    else:
        lines[2] = line
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=pattern):
        load_cub(root)


@pytest.mark.parametrize("path", ["../../outside.jpg", "/etc/passwd", "001.Bird_A/../../x.jpg"])
def test_image_paths_must_stay_inside_images_folder(tmp_path, path):
    root = make_cub(tmp_path)
    p = root / "CUB_200_2011" / "images.txt"
    lines = p.read_text().splitlines()
    lines[2] = f"3 {path}"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"images.txt: image id 3: path .* must be relative to images/"):
        load_cub(root)


def test_missing_files(tmp_path):
    root = make_cub(tmp_path)
    (root / "attributes.txt").unlink()
    with pytest.raises(DatasetError, match="missing file: .*attributes.txt"):
        load_cub(root)
    root = make_cub(tmp_path / "b")
    (root / "CUB_200_2011" / "parts" / "part_locs.txt").unlink()
    with pytest.raises(DatasetError, match="missing file: .*part_locs.txt"):
        load_cub(root)
    with pytest.raises(DatasetError, match="images.txt"):
        load_cub(tmp_path / "nowhere")


def test_att_splits_errors(tmp_path):
    root = make_cub(tmp_path)
    names = [f"{c:03d}.Bird_{chr(64 + c)}" for c in range(1, 7)]
    orig = np.ones((6, 4))
    save_att_splits(root / "att_splits.mat", names, orig, [1, 2, 31], [5], list(range(21, 31)))
    with pytest.raises(DatasetError, match="trainval_loc index 31 is out of range 1..30"):
        load_cub(root)
    save_att_splits(root / "att_splits.mat", names, orig, [1, 2, 21], [5], list(range(22, 31)))
    with pytest.raises(DatasetError, match="trainval_loc lists image #21 of class '005.Bird_E'.*not a seen"):
        load_cub(root)
    save_att_splits(root / "att_splits.mat", names[:5], orig[:5], [1], [5], [21])
    with pytest.raises(DatasetError, match="class '006.Bird_F' is missing from allclasses_names"):
        load_cub(root)
    save_att_splits(root / "att_splits.mat", names, orig, [1, 2], [2], list(range(21, 31)))
    with pytest.raises(DatasetError, match="overlap"):
        load_cub(root)


def test_class_list_names_unknown_class(tmp_path):
    root = make_cub(tmp_path)
    _write(root / "testclasses.txt", ["005.Bird_E", "006.Bird_F", "999.Nope"])
    with pytest.raises(DatasetError, match="class '999.Nope' is not in the dataset"):
        load_cub(root)


# ----------------------------------------------------------------------------- real shared data
def test_real_cub_meta_ps():
    meta = need_shared("cub_meta")
    xl = need_shared("xlsa17", "CUB", "att_splits.mat")
    d = load_cub(meta, att_splits=str(xl), check_images=False)
    s = d.split
    assert len(d) == 11788 and d.semantics.shape == (200, 312)
    assert (len(s.seen), len(s.unseen)) == (150, 50)
    assert (len(s.trainval), len(s.test_seen), len(s.test_unseen)) == (7057, 1764, 2967)
    assert (len(s.train_classes), len(s.val_classes)) == (100, 50)
    assert sum("head" in it.part_boxes for it in d.items) > 11000
    assert len(d.attribute_groups) == 28
    # xlsa17 original_att == the continuous attribute file (class order mapped by name)
    a = load_cub(meta, att_splits=str(xl), check_images=False, semantics="original_att", parts=False).semantics
    b = load_cub(meta, att_splits=str(xl), check_images=False, semantics="dataset", parts=False).semantics
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_real_cub50():
    root = need_shared("cub50")
    xl = need_shared("xlsa17", "CUB", "att_splits.mat")
    d = load_cub(root, att_splits=str(xl))
    s = d.split
    assert len(d) == 820 and len(d.class_names) == 50
    assert (len(s.seen), len(s.unseen)) == (40, 10)
    assert len(s.val_classes) == 8 and len(s.train_classes) == 32
    assert len(s.trainval) + len(s.test_seen) == 800 and len(s.test_unseen) == 20
    assert s.test_seen, "cub50 holds some xlsa17 test_seen images"
    assert d.load_image(0).mode == "RGB"
