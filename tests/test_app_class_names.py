"""The class editor refuses names that clash or forge lines, instead of renaming them (issue 16):
a class file naming a dataset class, a merge clashing with a listed class, a rename to a dataset
class or to a name with a line break."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from sgma.engine.classes import UserClass, save_classes

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run, win  # noqa: F401


def _file(tmp_path, name, classes, attrs):
    p = tmp_path / name
    save_classes(p, classes, attrs)
    return p


def test_a_class_file_naming_a_dataset_class_is_refused_whole(win, small_ds, tmp_path, answers):
    p = win.classes
    attrs = list(small_ds.attribute_names)
    bad = _file(tmp_path, "bad.toml", [UserClass("fine", {attrs[0]: 1.0}),
                                       UserClass(small_ds.class_names[0].upper(), {attrs[1]: 1.0})], attrs)
    assert not p.load(str(bad))
    assert "name of a dataset class" in answers.of("error")[-1][2] and p.classes == []


def test_merging_a_file_whose_class_is_already_listed_is_refused(win, small_ds, tmp_path, answers):
    p = win.classes
    attrs = list(small_ds.attribute_names)
    p.add_class("mine", {attrs[0]: 1.0})
    other = _file(tmp_path, "other.toml", [UserClass("new_one", {attrs[2]: 1.0}),
                                           UserClass("Mine", {attrs[3]: 1.0})], attrs)
    assert not p.load(str(other), replace=False)
    assert "'Mine' is already in the list" in answers.of("error")[-1][2]
    assert [c.name for c in p.classes] == ["mine"]                     # nothing was read
    assert p.load(str(_file(tmp_path, "ok.toml", [UserClass("new_one", {attrs[2]: 1.0})], attrs)), replace=False)
    assert [c.name for c in p.classes] == ["mine", "new_one"]


def test_renames_to_a_dataset_class_or_a_forged_line_are_refused(win, small_ds):
    p = win.classes
    p.add_class("mine")
    item = p.list.item(0)
    item.setText(small_ds.class_names[1])
    assert p.classes[0].name == "mine" and item.text() == "mine"
    assert "is a dataset class" in p.status.text()
    item.setText("two\nlines")
    assert p.classes[0].name == "mine" and "control character or line break" in p.status.text()
    item.setText("fine name")
    assert p.classes[0].name == "fine name"
