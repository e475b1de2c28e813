"""Reliability of user class files beyond tests/test_classes.py (issue 7). test_classes.py already
covers wrong vector lengths, unknown attribute names, non-numeric and non-finite values, duplicate
names in CSV, empty files and interrupted saves (see docs/reliability.md); this file adds what it
does not: duplicate keys in JSON, which Python's json module merges silently (last one wins)."""
from __future__ import annotations

import pytest

classes = pytest.importorskip("sgma.engine.classes")
ClassFileError, load_classes = classes.ClassFileError, classes.load_classes

ATTRS = ["crest::yes", "size"]

# Regression: json.loads kept the last of duplicated keys, so a class (or attribute) named twice
# loaded silently; engine/classes.py now refuses repeated keys.
def test_duplicate_class_name_in_json_is_refused(tmp_path):
    p = tmp_path / "dup.json"
    p.write_text('{"classes": {"jay": {"size": 1}, "jay": {"size": 2}}}')
    with pytest.raises(ClassFileError, match="duplicate class name 'jay'"):
        load_classes(p, ATTRS)


def test_duplicate_attribute_of_a_class_in_json_is_refused(tmp_path):
    p = tmp_path / "dup.json"
    p.write_text('{"classes": {"jay": {"size": 1, "size": 3}}}')
    with pytest.raises(ClassFileError, match="size"):
        load_classes(p, ATTRS)


@pytest.mark.parametrize("name, text, problem", [
    ("dup.toml", "[classes.jay]\nsize = 1\n[classes.jay]\nsize = 2\n", "not valid TOML"),
    ("dupkey.toml", "[classes.jay]\nsize = 1\nsize = 2\n", "not valid TOML"),
    ("dupspace.csv", "name,size\njay,1\n jay ,2\n", "duplicate class name 'jay'"),
    ("dupspace.toml", '[classes]\n"jay" = [1, 0]\n" jay" = [2, 0]\n', "duplicate class name 'jay'"),
    ("dupattr.csv", "name,size,size\njay,1,2\n", "attribute(s) listed twice: size"),
])
def test_duplicates_in_toml_and_csv_are_refused(tmp_path, name, text, problem):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ClassFileError) as e:
        load_classes(p, ATTRS)
    assert str(p) in str(e.value) and problem in str(e.value)


def test_class_file_that_is_a_folder_or_not_utf8(tmp_path):
    d = tmp_path / "classes.toml"
    d.mkdir()
    with pytest.raises(ClassFileError, match="cannot read the file"):
        load_classes(d, ATTRS)
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"name,size\nm\xf6we,1\n")
    with pytest.raises(ClassFileError, match="cannot read the file"):
        load_classes(p, ATTRS)
