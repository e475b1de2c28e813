"""User-defined class files (engine/classes.py): formats, errors naming the file, atomic saves."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from sgma.engine import classes as C
from sgma.engine.classes import ClassFileError, UserClass, load_classes, save_classes, to_matrix

from half_writer import half_writing_fdopen

ATTRS = ["head_color::red", "head_color::blue", "crest::yes", "tail_shape::fan"]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("ext", [".toml", ".json", ".csv"])
def test_round_trip_every_format(tmp_path, ext):
    classes = [UserClass("blue_crest", {"head_color::blue": 1.0, "crest::yes": 0.5}),
               UserClass("red fan", {"head_color::red": 1.0, "tail_shape::fan": 0.25})]
    p = save_classes(tmp_path / f"mine{ext}", classes, ATTRS)
    back = load_classes(p, ATTRS)
    assert [c.name for c in back] == ["blue_crest", "red fan"]
    np.testing.assert_allclose(to_matrix(back, ATTRS), to_matrix(classes, ATTRS))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_toml_tables_and_vectors(tmp_path):
    p = write(tmp_path, "c.toml", '[classes.a]\n"crest::yes" = 1\n\n[classes]\nb = [0, 1, 0, 0.5]\n')
    a, b = load_classes(p, ATTRS)
    assert a.values == {"crest::yes": 1.0}
    assert b.vector(ATTRS).tolist() == [0, 1, 0, 0.5]


def test_json_without_classes_key(tmp_path):
    p = write(tmp_path, "c.json", json.dumps({"x": [1, 0, 0, 0], "y": {"tail_shape::fan": 2}}))
    x, y = load_classes(p, ATTRS)
    assert x.values["head_color::red"] == 1.0 and y.values == {"tail_shape::fan": 2.0}


def test_to_matrix_missing_attributes_are_zero():
    m = to_matrix([UserClass("a", {"crest::yes": 3.0})], ATTRS)
    assert m.shape == (1, 4) and m.dtype == np.float32
    assert m.tolist() == [[0, 0, 3, 0]]
    with pytest.raises(ValueError, match="unknown attribute"):
        to_matrix([UserClass("a", {"wings::2": 1.0})], ATTRS)


@pytest.mark.parametrize("name,text,problem", [
    ("len.toml", "[classes]\nb = [0, 1]\n", "has 2 values but the dataset has 4"),
    ("len.json", '{"classes": {"b": [1, 2, 3, 4, 5]}}', "has 5 values"),
    ("row.csv", "name,crest::yes,tail_shape::fan\na,1\n", "line 2: 1 values for 2"),
    ("unk.toml", '[classes.a]\n"wings::two" = 1\n', "unknown attribute name"),
    ("unk.csv", "name,wings::two\na,1\n", "unknown attribute name"),
    ("nan.json", '{"classes": {"a": {"crest::yes": "lots"}}}', "is not a number"),
    ("nan.csv", "name,crest::yes\na,abc\n", "line 2, attribute 'crest::yes': 'abc' is not a number"),
    ("inf.csv", "name,crest::yes\na,inf\n", "not a finite number"),
    ("bool.toml", '[classes.a]\n"crest::yes" = true\n', "is not a number"),
    ("dup.csv", "name,crest::yes\na,1\na,2\n", "duplicate class name 'a'"),
    ("empty.toml", "", "the file is empty"),
    ("empty.csv", "\n\n", "the file is empty"),
    ("none.json", '{"classes": {}}', "holds no class"),
    ("bad.toml", "[classes.a\n", "not valid TOML"),
    ("bad.json", "{", "not valid JSON"),
    ("hdr.csv", "label,crest::yes\na,1\n", "must start with 'name'"),
])
def test_errors_name_the_file_and_the_problem(tmp_path, name, text, problem):
    p = write(tmp_path, name, text)
    with pytest.raises(ClassFileError) as e:
        load_classes(p, ATTRS)
    assert str(p) in str(e.value)
    assert problem in str(e.value)
    assert isinstance(e.value, ValueError)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(ClassFileError, match="not found"):
        load_classes(tmp_path / "nope.toml", ATTRS)
    with pytest.raises(ClassFileError, match="unknown class file type"):
        load_classes(write(tmp_path, "c.yaml", "a: 1"), ATTRS)


def test_duplicate_names_refused_on_save(tmp_path):
    with pytest.raises(ClassFileError, match="duplicate"):
        save_classes(tmp_path / "d.json", [UserClass("a"), UserClass("a")])
    assert not (tmp_path / "d.json").exists()


def test_interrupted_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    p = save_classes(tmp_path / "keep.toml", [UserClass("old", {"crest::yes": 1.0})], ATTRS)
    before = p.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C.os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        save_classes(p, [UserClass("new", {"tail_shape::fan": 1.0})], ATTRS)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert [c.name for c in load_classes(p, ATTRS)] == ["old"]
    assert sorted(os.listdir(tmp_path)) == ["keep.toml"]     # the temporary file was removed


def test_interrupted_write_midway_leaves_the_old_file_intact(tmp_path, monkeypatch):
    p = save_classes(tmp_path / "keep.csv", [UserClass("old", {"crest::yes": 1.0})], ATTRS)
    before = p.read_bytes()
    monkeypatch.setattr(C.os, "fdopen", half_writing_fdopen(KeyboardInterrupt()))   # killed mid-write
    with pytest.raises(KeyboardInterrupt):
        save_classes(p, [UserClass("new", {"tail_shape::fan": 1.0})], ATTRS)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.csv"]


@pytest.mark.parametrize("text,expected", [
    ("1, 0, 0.5, 0", [1, 0, 0.5, 0]),
    ("1\t0\n0.5\n0", [1, 0, 0.5, 0]),
    ("[0, 1, 0, 0]", [0, 1, 0, 0]),
    ('{"crest::yes": 2}', [0, 0, 2, 0]),
    ("crest::yes = 1\ntail_shape::fan = 0.5", [0, 0, 1, 0.5]),
    ("crest::yes: 1\nhead_color::red: 3", [3, 0, 1, 0]),
])
def test_parse_pasted_vector(text, expected):
    vals = C.parse_vector(text, ATTRS)
    assert to_matrix([UserClass("p", vals)], ATTRS)[0].tolist() == expected


@pytest.mark.parametrize("text,problem", [
    ("1, 2", "has 2 values but the dataset has 4"),
    ("wings = 1", "unknown attribute"),
    ("a b c d", "is not a number"),
    ("", "empty"),
])
def test_parse_pasted_vector_errors(text, problem):
    with pytest.raises(ClassFileError, match=problem):
        C.parse_vector(text, ATTRS)


@pytest.mark.parametrize("name,text,problem", [
    ("dupname.json", '{"classes": {"jay": {"crest::yes": 1}, "jay": {"crest::yes": 2}}}', "duplicate class name 'jay'"),
    ("dupattr.json", '{"classes": {"jay": {"crest::yes": 1, "crest::yes": 3}}}', "'crest::yes' is given twice"),
    ("bigint.json", '{"classes": {"a": {"crest::yes": ' + "1" * 5000 + "}}}", "not a usable JSON"),
    ("deep.json", '{"classes": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}", "not a usable JSON"),
    ("bigint.toml", '[classes.a]\n"crest::yes" = ' + "1" * 5000 + "\n", "TOML"),
    ("deep.toml", "[classes]\na = " + "[" * 100_000 + "]" * 100_000 + "\n", "TOML"),
    ("hugefield.csv", "name,crest::yes\n" + "a" * 200_000 + ",1\n", "not a readable CSV"),
])
def test_duplicate_keys_and_parser_limits_are_class_file_errors(tmp_path, name, text, problem):
    p = write(tmp_path, name, text)
    with pytest.raises(ClassFileError) as e:
        load_classes(p, ATTRS)
    assert str(p) in str(e.value) and problem in str(e.value)
