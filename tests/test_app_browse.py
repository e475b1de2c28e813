"""The main window as a user meets it: first launch, the thumbnail grid, filters, keyboard
navigation, the info panel, opening datasets (and their errors), settings, the error dialog."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app_fixtures import SMALL, answers, app_settings, make_window, small_ds  # noqa: F401
from sgma.engine.config import DataConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from grid_scroll import big_dataset  # noqa: E402


def test_first_launch_opens_synthetic_without_a_model(make_window, answers, monkeypatch):
    from sgma.app import mainwindow
    monkeypatch.setattr(mainwindow, "bundled_model", lambda kind: None)   # as if no model were bundled
    w = make_window(load_demo=True)
    assert "SGMA" in w.windowTitle()
    assert w.state.dataset.name == "synthetic" and len(w.state.dataset) == 960
    assert w.state.predictor is None
    assert "no model loaded" in w.statusBar().currentMessage()
    assert "no model loaded" in w.audit.message.text()
    assert w.training.start_button.isEnabled()                    # training is allowed
    assert not w.evaluation.run_button.isEnabled()
    assert w.browser.model.rowCount() == 960
    assert w.state.current == 0                                    # the first image is selected
    assert len(w.audit.gt_items) == 2 and not w.audit.pred_items   # ground truth without a model
    assert not answers.shown


def test_first_launch_loads_the_bundled_demo_model(qtbot, make_window, answers):
    from sgma.app.mainwindow import demo_checkpoint
    demo = demo_checkpoint()
    if demo is None:
        pytest.skip("resources/demo.pt is not bundled")
    w = make_window(load_demo=True)
    qtbot.waitUntil(lambda: w.state.predictor is not None or bool(answers.of("error")), timeout=60000)
    assert not answers.of("error")
    assert w.state.checkpoint_path == str(demo) and "demo.pt" in w.windowTitle()
    assert w.state.model_fits_dataset()                   # trained on the default synthetic dataset
    qtbot.waitUntil(lambda: w.audit.prediction is not None, timeout=60000)
    assert len(w.audit.pred_items) == 2 and len(w.audit.gt_items) == 2


def test_thumbnails_load_lazily_and_are_cached(qtbot, make_window, small_ds):
    w = make_window(dataset=small_ds)
    m = w.browser.model
    qtbot.waitUntil(lambda: len(m.cache) > 0, timeout=10000)
    first = next(iter(m.cache))
    pm = m.cache[first]
    assert not pm.isNull() and max(pm.width(), pm.height()) == m.size
    # the painted tile is the cached pixmap once loaded, the placeholder before
    idx = m.index(m.row_of(first[0]))
    assert m.data(idx, Qt.ItemDataRole.DecorationRole) is pm
    w.browser.size_slider.setValue(64)
    assert m.size == 64 and w.browser.view.iconSize().width() == 64
    qtbot.waitUntil(lambda: any(k[1] == 64 for k in m.cache), timeout=10000)
    assert w.settings.get("browser/thumb_size", 0) == 64


def test_grid_on_12000_images_asks_only_for_what_is_on_screen(qtbot, make_window):
    """Lazy loading on a large dataset; the times (window open, scroll step, filter) are measured
    by bench/grid_scroll.py, not here."""
    ds = big_dataset()
    w = make_window(dataset=ds)
    m, view = w.browser.model, w.browser.view
    assert m.rowCount() == 12000
    qtbot.waitUntil(lambda: len(m.cache) > 0, timeout=10000)
    # only what is on screen was asked for, not 12000 images
    assert 0 < m.n_requests < 600, m.n_requests
    bar = view.verticalScrollBar()
    last = [-1]

    def laid_out():     # the batched layout has placed every item (the scroll range stops growing)
        done = bar.maximum() == last[0] and bar.maximum() > 0
        last[0] = bar.maximum()
        return done
    qtbot.waitUntil(laid_out, timeout=10000)
    rows_per_screen = view.viewport().height() // view.gridSize().height() + 1
    cols = view.viewport().width() // view.gridSize().width()
    assert bar.maximum() >= (12000 // cols - rows_per_screen) * view.gridSize().height() * 0.9
    for frac in (0.25, 0.5, 0.75, 1.0):
        bar.setValue(int(bar.maximum() * frac))
        QApplication.processEvents()
    qtbot.waitUntil(lambda: any(k[0] >= 11000 for k in m.cache), timeout=10000)   # the end got loaded
    assert m.n_requests < 2500
    w.browser.kind_box.setCurrentText("unseen")
    assert m.rowCount() == 3600


def test_filters(make_window, small_ds):
    w = make_window(dataset=small_ds)
    b, ds = w.browser, small_ds
    labels = ds.labels
    b.kind_box.setCurrentText("unseen")
    rows = b.model.rows
    assert len(rows) == len(ds.split.test_unseen) and set(labels[rows]) == set(ds.split.unseen)
    b.kind_box.setCurrentText("All")
    b.split_box.setCurrentText("test_seen")
    assert sorted(b.model.rows.tolist()) == sorted(ds.split.test_seen)
    c = ds.split.seen[3]
    b.class_box.setCurrentIndex(b.class_box.findData(c))
    assert len(b.model.rows) == SMALL["n_test_seen_per_class"] and set(labels[b.model.rows]) == {c}
    assert b.count_label.text().startswith(f"{len(b.model.rows)} of {len(ds)}")
    b.kind_box.setCurrentText("unseen")        # a seen class among unseen images: nothing
    assert b.model.rowCount() == 0
    assert not b.result_box.isEnabled()        # correct/incorrect needs an evaluation


def test_keyboard_next_previous_and_info_panel(qtbot, make_window, small_ds):
    w = make_window(dataset=small_ds)
    b = w.browser
    b.select_row(0)
    first = w.state.current
    w.activateWindow()
    w.next_action.trigger()
    assert w.state.current == int(b.model.rows[1])
    qtbot.keyClick(b.view, Qt.Key.Key_Right)          # the grid's own arrow keys work too
    assert w.state.current == int(b.model.rows[2])
    w.prev_action.trigger()
    w.prev_action.trigger()
    assert w.state.current == first
    w.prev_action.trigger()                           # stays at the first image
    assert w.state.current == first
    # the info panel: class, kind, split and the class's non-zero attributes by group
    i = int(b.model.rows[1])
    b.select_row(1)
    c = small_ds.items[i].label
    assert small_ds.class_names[c] in b.info.text()
    tree = b.attributes
    tops = [tree.topLevelItem(k) for k in range(tree.topLevelItemCount())]
    groups = {g.text(0): [g.child(j).text(0) for j in range(g.childCount())] for g in tops}
    nz = [small_ds.attribute_names[j] for j in np.nonzero(small_ds.semantics[c])[0]]
    assert sum(len(v) for v in groups.values()) == len(nz) == 6
    for name in nz:
        g, v = name.split("::")
        assert v in groups[g]


def test_open_dataset_errors_name_the_bad_file(qtbot, make_window, answers, small_ds, tmp_path):
    w = make_window(dataset=small_ds)
    (tmp_path / "cub").mkdir()
    w.open_dataset(DataConfig(kind="cub", root=str(tmp_path / "cub")))
    qtbot.waitUntil(lambda: bool(answers.of("error")), timeout=20000)
    kind, title, text = answers.of("error")[0]
    assert title == "Cannot open the dataset"
    assert str(tmp_path / "cub") in text                      # the message names the missing file
    assert w.state.dataset is small_ds                        # the open dataset is kept
    assert not w.settings.recent_datasets()


def test_open_dataset_succeeds_and_is_remembered(qtbot, make_window, small_ds):
    w = make_window(dataset=small_ds)
    w.open_dataset(DataConfig.from_options("synthetic", None, {"n_classes": 12, "n_unseen": 4, "n_val": 2,
                                                              "n_train_per_class": 2, "n_test_seen_per_class": 1,
                                                              "n_unseen_per_class": 2}))
    qtbot.waitUntil(lambda: w.state.dataset is not small_ds, timeout=20000)
    assert len(w.state.dataset.class_names) == 12
    assert w.browser.model.rowCount() == len(w.state.dataset)
    assert w.settings.recent_datasets()[0].options["n_classes"] == 12
    w._fill_recent()
    assert w.recent_datasets_menu.actions()[0].text().startswith("synthetic")


def test_open_dataset_dialog_spec():
    from sgma.app.dialog_open_dataset import OpenDatasetDialog
    d = OpenDatasetDialog(None, DataConfig(kind="cub", root="/data/cub", split="ss"))
    assert d.kind.currentText() == "cub" and d.root.text() == "/data/cub"
    dc = d.data_config()
    assert dc.kind == "cub" and dc.root == "/data/cub"
    assert dc.split == "ss" and dc.options == {}
    d.kind.setCurrentText("synthetic")
    assert not d.root.isEnabled() and d.data_config().root == ""
    d.deleteLater()


def test_bad_checkpoint_is_reported(qtbot, make_window, answers, small_ds, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    w = make_window(dataset=small_ds, checkpoint=str(bad))
    qtbot.waitUntil(lambda: bool(answers.of("error")), timeout=10000)
    assert str(bad) in answers.of("error")[0][2]
    assert w.state.predictor is None


def test_settings_persist_between_windows(qtbot, make_window, small_ds, app_settings):
    w = make_window(dataset=small_ds)
    w.resize(1000, 650)            # the offscreen screen is 800 x 800: Qt clamps the width on restore
    w.browser.size_slider.setValue(120)
    w.audit.opacity.setValue(30)
    w.audit.cmap_box.setCurrentText("viridis")
    w.tabs.setCurrentIndex(2)
    app_settings.add_recent_checkpoint("/x/best.pt")
    w.close()
    assert w._closed
    w2 = make_window(dataset=small_ds)
    assert w2.height() == 650 and w2.width() <= 1000
    assert w2.browser.size_slider.value() == 120
    assert w2.audit.opacity.value() == 30 and w2.audit.cmap_box.currentText() == "viridis"
    assert w2.tabs.currentIndex() == 2
    assert w2.settings.recent_checkpoints() == ["/x/best.pt"]


def test_uncaught_error_shows_a_dialog_and_the_app_lives(qtbot, make_window, answers, small_ds):
    from sgma.app.errors import ErrorReporter
    w = make_window(dataset=small_ds)
    rep = ErrorReporter()
    try:
        raise ZeroDivisionError("boom in a slot")
    except ZeroDivisionError as e:
        rep.hook(type(e), e, e.__traceback__)
    qtbot.waitUntil(lambda: rep.count == 1, timeout=5000)
    err = answers.of("error")[0]
    assert err[1] == "Unexpected error" and "ZeroDivisionError: boom in a slot" in err[2]
    # from another thread too: the dialog opens in the GUI thread
    import threading
    t = threading.Thread(target=lambda: rep.hook(ValueError, ValueError("in a worker"), None))
    t.start()
    t.join()
    qtbot.waitUntil(lambda: rep.count == 2, timeout=5000)
    assert w.isVisible()
    w.next_action.trigger()            # still working
    assert w.state.current == int(w.browser.model.rows[1])


def test_command_line_arguments(tmp_path):
    from sgma.app.main import data_config, parse_args
    a = parse_args(["--dataset", "cub", "--root", "/d", "--checkpoint", "m.pt", "--option", "split=ss",
                    "--option", "fold=2"])
    assert a.checkpoint == "m.pt"
    dc = data_config(a)
    assert dc.kind == "cub" and dc.root == "/d" and dc.options == {}
    assert dc.split == "ss" and dc.fold == 2
    assert data_config(parse_args([])) is None
    with pytest.raises(SystemExit):
        parse_args(["--root", "/d"])


def test_recent_datasets_are_data_configs_and_old_entries_still_read(tmp_path):
    import json
    from sgma.app.settings import Settings
    s = Settings(str(tmp_path / "s.ini"))
    s.q.setValue("recent/datasets", json.dumps([
        {"kind": "cub", "root": "/d", "options": {"split": "ss"}},          # an older version's entry
        "junk", {"root": "/x"},
        {"kind": "synthetic", "root": None, "options": {"n_classes": 12}}]))
    assert s.recent_datasets() == [DataConfig(kind="cub", root="/d", split="ss"),
                                   DataConfig(kind="synthetic", split="synthetic", options={"n_classes": 12})]
    new = DataConfig(kind="awa2", root="/a", fold=3, options={"check_images": False})
    s.add_recent_dataset(new)
    assert s.recent_datasets()[0] == new and len(s.recent_datasets()) == 3


def test_a_long_selection_label_wraps_instead_of_widening_the_browser(qtbot, make_window, small_ds):
    w = make_window(dataset=small_ds)
    w.resize(1400, 900)
    w.show()
    b = w.browser
    qtbot.waitExposed(w)
    width, min_width = b.width(), b.minimumSizeHint().width()
    label = "true " + "Black_footed_Albatross " * 3 + "→ predicted " + "Laysan_Albatross " * 3
    w.state.set_selection(small_ds.split.test_unseen[:2], label)
    qtbot.wait(100)
    assert b.selection_label.text() == f"showing: {label}" and b.selection_label.isVisible()
    assert b.selection_label.toolTip() == b.selection_label.text()    # the whole text on hover
    # before: the one-line label (about 900 px) set the pane's minimum and took the window's width
    assert b.minimumSizeHint().width() == min_width and b.width() == width
    # wrapped onto more lines instead
    assert b.selection_label.height() > b.selection_label.fontMetrics().height()
