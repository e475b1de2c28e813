"""Switching datasets and models never shows what belonged to the previous one (issue 17)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from app_fixtures import SMALL, answers, app_settings, make_window, small_ds, trained_run, win  # noqa: F401
from sgma.engine.config import DataConfig


def test_dataset_switch_shows_the_new_datasets_prediction(qtbot, win, small_ds):
    from sgma.engine.data.synthetic import make_synthetic
    a = win.audit
    assert win.state.current == 0
    old = a.prediction
    other = make_synthetic(seed=1, **SMALL)
    assert other.items[0].part_boxes != small_ds.items[0].part_boxes
    win.state.set_dataset(other, DataConfig.from_options("synthetic", None, dict(SMALL, seed=1)))
    assert win.state.current == 0 and a.index == 0
    # the old dataset's image #0 prediction is never drawn over the new image #0
    assert a.prediction is not old
    qtbot.waitUntil(lambda: a.prediction is not None, timeout=20000)
    expected = win.state.predictor.predict(other.load_image(0))
    np.testing.assert_allclose(a.prediction.boxes, expected.boxes, atol=1e-3)
    assert a.prediction.top(1)[0][0] == expected.top(1)[0][0]
    head = a.gt_items[0].rect()
    np.testing.assert_allclose([head.left(), head.top(), head.right(), head.bottom()],
                               other.items[0].part_boxes["head"], atol=1e-3)


def test_prediction_in_flight_for_the_old_dataset_is_dropped(qtbot, win, small_ds):
    """A prediction started for the old dataset's image #3 finishes after the switch: it must not
    enter the cache of the new dataset (image #3 there is another picture)."""
    import threading
    from sgma.engine.data.synthetic import make_synthetic
    a = win.audit
    gate = threading.Event()
    blockers = [win.tasks.start(gate.wait, 30) for _ in range(2)]     # both pool threads busy
    win.browser.select_index(3)              # queued behind the blockers
    assert a.index == 3 and a.prediction is None
    other = make_synthetic(seed=2, **SMALL)
    win.state.set_dataset(other, DataConfig.from_options("synthetic", None, dict(SMALL, seed=2)))
    win.browser.select_index(5)
    gate.set()
    qtbot.waitUntil(lambda: not win.tasks.busy, timeout=20000)
    assert all(b.finished.is_set() for b in blockers)
    win.browser.select_index(3)
    qtbot.waitUntil(lambda: a.prediction is not None and not win.tasks.busy, timeout=20000)
    expected = win.state.predictor.predict(other.load_image(3))
    np.testing.assert_allclose(a.prediction.boxes, expected.boxes, atol=1e-3)


def test_help_lists_every_shortcut(make_window, answers, small_ds):
    from PySide6.QtGui import QKeySequence
    w = make_window(dataset=small_ds)
    text = w.shortcuts_text()
    every = [k.toString(QKeySequence.SequenceFormat.NativeText)
             for m in w.menuBar().actions() for a in m.menu().actions() for k in a.shortcuts()]
    assert len(every) >= 10
    for k in every:
        assert k in text
    assert "Next image" in text and "zoom" in text and "F1" in text
    help_menu = [m for m in w.menuBar().actions() if "Help" in m.text()][0].menu()
    [a for a in help_menu.actions() if "shortcuts" in a.text()][0].trigger()
    assert answers.of("info")[-1][1:] == ("Keyboard shortcuts", text)


def test_info_panel_and_audit_say_which_classes_and_mode(qtbot, win, small_ds):
    assert "among all classes" in win.audit.message.text() and "beta" in win.audit.message.text()
