"""Messages for bad input (issue 17): a text file opened as a model, a non-number in a dataset
option (the dialog stays open with the input), attribute values that are not numbers or out of
the dataset's range; and a deleted user class leaving the tables."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import Qt

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run  # noqa: F401


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
    dlg = OpenDatasetDialog(None, {"kind": "cub", "root": "/data/CUB", "options": {}})
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
    assert dlg.spec()["options"] == {"fold": 2}


def test_command_line_option_that_is_not_a_number(tmp_path):
    from sgma.app.main import dataset_spec, parse_args
    with pytest.raises(SystemExit, match="fold: 'x' is not a whole number"):
        dataset_spec(parse_args(["--dataset", "cub", "--root", str(tmp_path), "--option", "fold=x"]))


@pytest.fixture
def win(qtbot, make_window, small_ds, trained_run):
    return make_window(dataset=small_ds, checkpoint=str(trained_run / "best.pt"))


def test_attribute_values_refused_or_warned(win, small_ds):
    c = win.classes
    c.add_class("mine", {})
    ed = c.editor
    name = small_ds.attribute_names[0]
    item = ed.items[name]
    # commit through the delegate's path: a non-number is refused, the old value stays
    assert not ed.commit_text(name, "abc", lambda v: item.setData(1, Qt.ItemDataRole.EditRole, v))
    assert c.status.text() == f"{name}: 'abc' is not a number; the value stays 0"
    assert ed.values()[name] == 0.0 and c.current_class().values == {}
    lo, hi = float(small_ds.semantics[:, 0].min()), float(small_ds.semantics[:, 0].max())
    assert ed.commit_text(name, str(hi + 5), lambda v: item.setData(1, Qt.ItemDataRole.EditRole, v))
    assert ed.values()[name] == pytest.approx(hi + 5)
    assert c.current_class().values[name] == pytest.approx(hi + 5)             # kept
    assert "outside this dataset's range" in c.status.text() and f"{hi:g}" in c.status.text()
    assert ed.commit_text(name, f"{(lo + hi) / 2}", lambda v: item.setData(1, Qt.ItemDataRole.EditRole, v))
    assert c.status.text() == ""


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
