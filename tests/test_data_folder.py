"""Generic user-folder datasets (engine/data/folder.py)."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures_data import make_folder, _write
from sgma.engine.data.base import DatasetError
from sgma.engine.data.folder import load_folder


def test_folder_with_split_and_parts(tmp_path):
    d = load_folder(make_folder(tmp_path))
    assert d.class_names == ["robin", "crow", "jay", "owl", "wren"]
    assert d.attribute_names == ["red breast", "black", "blue", "size"]
    assert len(d) == 25 and d.split.name == "file"
    assert [d.class_names[c] for c in d.split.unseen] == ["owl"]
    assert [d.class_names[c] for c in d.split.val_classes] == ["jay"]
    assert len(d.split.test_unseen) == 5 and len(d.split.test_seen) == 4 and len(d.split.trainval) == 16
    np.testing.assert_allclose(np.linalg.norm(d.semantics, axis=1), 1.0, rtol=1e-5)
    assert load_folder(make_folder(tmp_path / "r"), semantics="dataset").semantics[1, 3] == 4.0
    by_id = {it.image_id: it for it in d.items}
    assert by_id["robin/robin1.jpg"].part_boxes == {"head": (1.0, 2.0, 11.0, 12.0)}
    assert set(by_id["crow/crow0.png"].part_boxes) == {"head", "tail"}
    assert d.part_names == ["head", "tail"]


def test_folder_seeded_split(tmp_path):
    root = make_folder(tmp_path, split=False, parts=False)
    a, b = load_folder(root, seed=1), load_folder(root, seed=1)
    assert a.split.unseen == b.split.unseen and len(a.split.unseen) == 1
    assert len(a.split.val_classes) == 1 and a.part_names == []


@pytest.mark.parametrize("fname,lines,pattern", [
    ("classes.csv", ["class,a,b", "robin,1,2", "crow,1"], r"classes.csv:3: expected 3 columns"),
    ("classes.csv", ["class,a", "robin,1", "robin,2"], r"classes.csv:3: duplicated class 'robin'"),
    ("classes.csv", ["class,a", "robin,x"], r"classes.csv:2: column 'a' is not a number"),
    ("split.csv", ["class,split", "robin,maybe"], r"split.csv:2: split must be one of"),
    ("split.csv", ["class,split", "robin,seen"], r"split.csv: class 'crow' is not listed"),
    ("parts.csv", ["image,part,x0,y0,x1,y1", "robin/nope.jpg,head,0,0,1,1"], r"parts.csv:2: image"),
    ("parts.csv", ["image,part,x0,y0,x1,y1", "robin/robin1.jpg,head,5,0,1,1"], r"parts.csv:2: box must"),
])
def test_folder_errors(tmp_path, fname, lines, pattern):
    root = make_folder(tmp_path)
    _write(root / fname, lines)
    with pytest.raises(DatasetError, match=pattern):
        load_folder(root)


def test_folder_unknown_class_folder_and_missing_csv(tmp_path):
    root = make_folder(tmp_path)
    (root / "images" / "eagle").mkdir()
    with pytest.raises(DatasetError, match="eagle: not a folder of a class"):
        load_folder(root)
    with pytest.raises(DatasetError, match="missing file: .*classes.csv"):
        load_folder(tmp_path / "empty")
