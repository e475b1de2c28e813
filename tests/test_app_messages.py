"""Messages for bad input (issue 17): a text file opened as a model, a non-number in a dataset
option (the dialog stays open with the input), attribute values that are not numbers or out of
the dataset's range; and a deleted user class leaving the tables."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import Qt

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run  # noqa: F401
from sgma.engine.config import DataConfig


def test_text_file_opened_as_a_model_is_named(qtbot, make_window, answers, small_ds, tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello, these are my notes\n")
    w = make_window(dataset=small_ds)
    w.load_model(str(bad))
    qtbot.waitUntil(lambda: bool(answers.of("error")), timeout=20000)
    kind, title, text = answers.of("error")[0]
    assert title == "Cannot load the model"
    assert str(bad) in text and "not a model checkpoint" in text and "text file" in text
    assert w.state.predictor is None


def test_non_number_fold_keeps_the_dialog_open(qtbot):
    from sgma.app.dialog_open_dataset import OpenDatasetDialog, parse_option
    with pytest.raises(ValueError, match=r"fold: 'two' is not a whole number"):
        parse_option("two", 1, "fold")
    dlg = OpenDatasetDialog(None, DataConfig(kind="cub", root="/data/CUB"))
    qtbot.addWidget(dlg)
    dlg.show()
    field = dlg.option_fields["fold"][0]
    field.setText("two")
    dlg.accept()
    assert dlg.isVisible() and dlg.result() == 0          # not accepted, not closed
    assert "fold: 'two' is not a whole number" in dlg.error.text()
    assert field.text() == "two" and dlg.root.text() == "/data/CUB"      # the input is kept
    field.setText("2")
    dlg.accept()
    assert not dlg.isVisible() and dlg.result() == 1
    assert dlg.data_config().fold == 2 and dlg.data_config().options == {}


def test_command_line_option_that_is_not_a_number(tmp_path):
    from sgma.app.main import data_config, parse_args
    with pytest.raises(SystemExit, match="fold: 'x' is not a whole number"):
        data_config(parse_args(["--dataset", "cub", "--root", str(tmp_path), "--option", "fold=x"]))


@pytest.fixture
def win(qtbot, make_window, small_ds, trained_run):
    return make_window(dataset=small_ds, checkpoint=str(trained_run / "best.pt"))


def type_into_attribute(qtbot, ed, name, text):
    """Edit an attribute's value as a user does: open the cell's text field, type, press Enter."""
    import shiboken6
    from PySide6.QtWidgets import QLineEdit
    item = ed.items[name]
    ed.tree.setCurrentItem(item, 1)
    ed.tree.editItem(item, 1)
    fields = [f for f in ed.tree.viewport().findChildren(QLineEdit) if f.isVisible()]   # not a closed one
    assert len(fields) == 1
    field = fields[0]
    field.selectAll()
    qtbot.keyClicks(field, text)
    qtbot.keyClick(field, Qt.Key.Key_Return)
    # Qt commits in a queued call, and may delete the closed editor before the wait looks at it
    qtbot.waitUntil(lambda: not shiboken6.isValid(field) or not field.isVisible(), timeout=5000)


def test_attribute_values_refused_or_warned(qtbot, win, small_ds):
    c = win.classes
    win.tabs.setCurrentWidget(c)
    c.add_class("mine", {})
    ed = c.editor
    name = small_ds.attribute_names[0]
    # typed in the tree's cell: a non-number is refused, said so right under the values, old value kept
    type_into_attribute(qtbot, ed, name, "abc")
    assert ed.note.isVisible() and ed.note.text() == f"{name}: 'abc' is not a number; the value stays 0"
    assert ed.values()[name] == 0.0 and c.current_class().values == {}
    lo, hi = float(small_ds.semantics[:, 0].min()), float(small_ds.semantics[:, 0].max())
    type_into_attribute(qtbot, ed, name, f"{hi + 5:g}")
    assert ed.values()[name] == pytest.approx(hi + 5)
    assert c.current_class().values[name] == pytest.approx(hi + 5)             # kept
    assert "outside this dataset's range" in ed.note.text() and f"{hi:g}" in ed.note.text()
    type_into_attribute(qtbot, ed, name, f"{(lo + hi) / 2:g}")
    assert ed.note.text() == "" and not ed.note.isVisible()


def test_training_form_says_why_it_refuses_a_value(make_window, small_ds):
    """Qt's spin boxes drop a keystroke or paste that is not a number without a word: the form
    says why next to the field, and the value stays."""
    w = make_window(dataset=small_ds)
    t = w.training
    w.tabs.setCurrentWidget(t)
    t.max_steps.setValue(3)
    t.max_steps.lineEdit().selectAll()
    t.max_steps.lineEdit().insert("ten")                      # a paste
    assert t.max_steps.value() == 3
    assert t.max_steps.note.isVisible()
    assert t.max_steps.note.text() == "'ten' is not a whole number (0–10000000; 0 = all)"
    t.max_steps.lineEdit().selectAll()
    t.max_steps.lineEdit().insert("12")                       # a number: the note goes
    assert t.max_steps.value() == 12 and not t.max_steps.note.isVisible()
    t.batch.lineEdit().selectAll()
    t.batch.lineEdit().insert("99999")
    assert t.batch.note.text() == "99999 is outside 1–4096" and t.batch.note.isVisible()
    t.lr.lineEdit().selectAll()
    t.lr.lineEdit().insert("fast")
    assert t.lr.note.text().startswith("'fast' is not a number")
    t.lr.lineEdit().selectAll()
    t.lr.lineEdit().insert("0,02")                            # a decimal comma is a point
    t.lr.interpretText()
    assert t.lr.value() == pytest.approx(0.02) and not t.lr.note.isVisible()
    assert t.config().train.max_steps_per_epoch == 12


def test_deleted_user_class_leaves_the_tables(qtbot, win, small_ds):
    c = win.classes
    c.add_from_class(int(small_ds.split.unseen[0]))
    name = c.current_class().name
    c.classify()
    qtbot.waitUntil(lambda: c.class_table.rowCount() > 0, timeout=20000)
    names = [c.class_table.item(r, 1).text() for r in range(c.class_table.rowCount())]
    assert name in names
    c.rank()
    qtbot.waitUntil(lambda: c.last_ranking is not None, timeout=60000)
    assert c.rank_table.rowCount() > 0 and win.state.selection is not None
    # the grid shows the best matches: first row selected, scrolled to the top
    assert win.state.current == int(c.last_ranking[1][0])
    assert win.browser.view.currentIndex().row() == 0
    assert win.browser.view.verticalScrollBar().value() == 0
    c.delete_current()
    names = [c.class_table.item(r, 1).text() for r in range(c.class_table.rowCount())]
    assert name not in names and len(names) == len(small_ds.class_names)
    assert [c.class_table.item(r, 0).text() for r in range(len(names))] == [str(k + 1) for k in range(len(names))]
    assert c.rank_table.rowCount() == 0 and win.state.selection is None


def test_evaluation_progress_and_cancel(qtbot, win, small_ds):
    e = win.evaluation
    seen = []
    e.run()
    e.task.signals.progress.connect(lambda n, t: seen.append((n, t)))
    assert not e.cancel_button.isHidden() and not e.busy.isHidden()
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=30000)
    e.cancel()
    qtbot.waitUntil(lambda: e.task is None, timeout=30000)
    assert win.state.evaluation is None and e.status.text() == "evaluation cancelled"
    assert e.cancel_button.isHidden() and e.run_button.isEnabled()
    n, total = seen[0]
    sp = small_ds.split
    assert 0 < n < total <= len(sp.trainval) + len(sp.test_seen) + len(sp.test_unseen)
    # run to the end: the bar reaches the total, with an ETA on the way
    seen.clear()
    e.run()
    e.task.signals.progress.connect(lambda n, t: seen.append((n, t)))
    qtbot.waitUntil(lambda: win.state.evaluation is not None, timeout=120000)
    assert seen and seen[-1][0] == seen[-1][1] and [s[0] for s in seen] == sorted(s[0] for s in seen)


def test_first_ranking_shows_its_eta_and_cancels_midway(qtbot, win, small_ds, monkeypatch):
    from sgma.engine import features
    monkeypatch.setattr(features, "CHUNK", 4)                 # many chunks: a cancel between two
    c = win.classes
    c.add_from_class(int(small_ds.split.unseen[0]))
    seen = []
    c.rank()
    c._feature_task.signals.progress.connect(lambda n, t: seen.append((n, t)))
    qtbot.waitUntil(lambda: any(n > 0 for n, _t in seen), timeout=60000)
    n, total = next(s for s in seen if s[0] > 0)
    assert total == len(small_ds) and c.progress.maximum() == total and c.progress.value() >= n
    assert "ETA " in c.status.text() and f"/{total} images" in c.status.text()
    assert "ETA ?" not in c.status.text()                     # a time, once a chunk is done
    c.cancel_ranking()
    qtbot.waitUntil(lambda: c._feature_task is None, timeout=60000)
    assert max(s[0] for s in seen) < total                    # stopped before the end
    assert c.status.text() == "ranking cancelled: the features were not extracted"
    assert win.state.features is None and c.last_ranking is None and c.progress.isHidden()


def test_first_ranking_can_be_cancelled(qtbot, win, small_ds):
    import threading
    c = win.classes
    c.add_from_class(int(small_ds.split.unseen[0]))
    gate = threading.Event()
    for _ in range(2):                          # hold both pool threads: the extraction waits
        win.tasks.start(gate.wait, 30)
    c.rank()
    assert not c.cancel_button.isHidden() and not c.rank_button.isEnabled()
    c.cancel_ranking()
    gate.set()
    qtbot.waitUntil(lambda: c._feature_task is None, timeout=30000)
    assert c.status.text() == "ranking cancelled: the features were not extracted"
    assert win.state.features is None and c.last_ranking is None and c.cancel_button.isHidden()
    assert c.rank_button.isEnabled()
