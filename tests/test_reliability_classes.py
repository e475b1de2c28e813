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
    with pytest.raises(ClassFileError, match="not a regular file"):
        load_classes(d, ATTRS)
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"name,size\nm\xf6we,1\n")
    with pytest.raises(ClassFileError, match="cannot read the file"):
        load_classes(p, ATTRS)


# ---------------------------------------------------------------- issue 16: values and names
@pytest.mark.parametrize("fname, text", [
    ("big.csv", "name,crest::yes,size\njay,1e39,0\n"),
    ("big.toml", "[classes.jay]\nsize = 1e300\n"),
    ("big.json", '{"classes": {"jay": [0, -3.5e38]}}'),
])
def test_values_that_overflow_float32_are_refused(tmp_path, fname, text):
    p = tmp_path / fname
    p.write_text(text)
    with pytest.raises(ClassFileError, match="outside the float32 range") as e:
        load_classes(p, ATTRS)
    assert str(p) in str(e.value)


def test_float32_max_itself_is_accepted(tmp_path):
    import numpy as np
    p = tmp_path / "edge.csv"
    p.write_text(f"name,size\njay,{float(np.finfo(np.float32).max)!r}\n")
    m = classes.to_matrix(load_classes(p, ATTRS), ATTRS)
    assert np.isfinite(m).all() and m[0, 1] == np.finfo(np.float32).max


@pytest.mark.parametrize("bad", ["jay\nerror: forged line", "jay\x1b[31m", "jay\rx", "a\u202ejay", "x\u2028y",
                                 "n\x00ul", "j" * 201])
@pytest.mark.parametrize("fmt", [".json", ".toml"])
def test_class_names_with_control_characters_or_too_long_are_refused(tmp_path, bad, fmt):
    import json
    import tomli_w
    p = tmp_path / f"c{fmt}"
    data = {"classes": {bad: {"size": 1.0}}}
    p.write_text(json.dumps(data) if fmt == ".json" else tomli_w.dumps(data))
    with pytest.raises(ClassFileError, match="control character|characters long") as e:
        load_classes(p, ATTRS)
    assert str(p) in str(e.value) and "\n" not in str(e.value) and "\x1b" not in str(e.value)


def test_control_characters_in_csv_names_and_attribute_keys_are_refused(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text('name,size\n"jay\nerror: x",1\n')
    with pytest.raises(ClassFileError, match="line 2: class name .* control character"):
        load_classes(p, ATTRS)
    p.write_text('name,"si\x1bze"\njay,1\n')
    with pytest.raises(ClassFileError, match="line 1: attribute name .* control character"):
        load_classes(p)
    q = tmp_path / "c.json"
    q.write_text('{"jay": {"si\\u0007ze": 1}}')
    with pytest.raises(ClassFileError, match="attribute name .* control character"):
        load_classes(q)


def test_saving_a_name_with_a_newline_is_refused(tmp_path):
    with pytest.raises(ClassFileError, match="control character"):
        classes.save_classes(tmp_path / "out.csv", [classes.UserClass("a\nb", {"size": 1.0})], ATTRS)
    assert not (tmp_path / "out.csv").exists()


def test_a_class_named_like_a_dataset_class_is_refused(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("name,size\nmy_jay,1\n Blue_Jay ,2\n")
    with pytest.raises(ClassFileError, match="class 'Blue_Jay' has the name of a dataset class"):
        load_classes(p, ATTRS, reserved=["robin", "blue_jay"])
    assert [c.name for c in load_classes(p, ATTRS, reserved=["robin"])] == ["my_jay", "Blue_Jay"]


def test_a_device_or_pipe_is_refused_without_reading(tmp_path):
    import os
    import threading
    link = tmp_path / "zero.csv"
    link.symlink_to("/dev/zero")                    # reading it would never end
    with pytest.raises(ClassFileError, match="not a regular file"):
        load_classes(link, ATTRS)
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)                                 # opening it would block until a writer comes
    done = []
    t = threading.Thread(target=lambda: done.append(pytest.raises(ClassFileError, load_classes, fifo, ATTRS)),
                         daemon=True)
    t.start()
    t.join(5)
    assert done and "not a regular file" in str(done[0].value)


def test_a_huge_file_is_refused_from_its_size(tmp_path):
    p = tmp_path / "huge.csv"
    with open(p, "wb") as f:
        f.write(b"name,size\n")
        f.truncate(classes.MAX_FILE_BYTES + 1)      # sparse: no time spent writing it
    with pytest.raises(ClassFileError, match=f"at most {classes.MAX_FILE_BYTES}"):
        load_classes(p, ATTRS)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.text(min_size=1, max_size=30))
def test_any_loaded_name_is_printable_on_one_line(name):
    """For any name, check_name refuses it or returns a name without control characters or
    line breaks, of at most MAX_NAME_LEN characters (so the CLI prints exactly one line)."""
    import unicodedata
    try:
        out = classes.check_name(name, "f")
    except ClassFileError as e:
        assert str(e).startswith("f: ") and "\n" not in str(e)
        return
    assert out == name.strip() and 0 < len(out) <= classes.MAX_NAME_LEN
    assert len((out + "x").splitlines()) == 1
    assert not any(unicodedata.category(c).startswith("C") for c in out)
