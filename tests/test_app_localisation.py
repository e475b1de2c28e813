"""Localisation at dataset scale: per-image part IoU from the engine, badges on the tiles, and the
grid sorted and filtered by localisation, correctness and class."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run, win  # noqa: F401


def test_image_part_ious_hand_computed():
    from sgma.engine.evaluate import image_part_ious
    # 2 images, 2 maps; head is map 1 (index 1), tail map 0
    boxes = np.array([[[0, 0, 10, 10], [5, 0, 15, 10]],
                      [[0, 0, 4, 4], [0, 0, 10, 10]]], dtype=np.float64)
    gt = {"head": [(0, 0, 10, 10), (0, 0, 10, 10)], "tail": [(0, 0, 10, 10), None]}
    got = image_part_ious(boxes, gt, {"head": 1, "tail": 0})
    # image 0 head: [5,0,15,10] vs [0,0,10,10]: overlap 50, union 150; image 1 head: identical
    np.testing.assert_allclose(got["head"], [1 / 3, 1.0])
    assert got["tail"][0] == pytest.approx(1.0) and np.isnan(got["tail"][1])


def test_sort_rows_hand_computed():
    from sgma.app.browser import sort_rows
    rows = np.array([0, 1, 2, 3, 4])
    ious = {"head": np.array([0.9, np.nan, 0.1, 0.5, 0.1])}
    correct = np.array([1, 0, -1, 0, 1], dtype=np.int8)
    labels = np.array([2, 0, 1, 0, 2])
    names = ["crow", "ant", "bee"]          # alphabetical: ant (1), bee (2), crow (0)
    assert list(sort_rows(rows, ("iou", "head"), ious, correct, labels, names)) == [2, 4, 3, 0, 1]
    assert list(sort_rows(rows, ("wrong",), ious, correct, labels, names)) == [1, 3, 0, 4, 2]
    assert list(sort_rows(rows, ("class",), ious, correct, labels, names)) == [2, 0, 4, 1, 3]
    assert list(sort_rows(rows[::-1], ("order",), ious, correct, labels, names)) == [4, 3, 2, 1, 0]


def evaluate_in(qtbot, w):
    w.evaluation.run()
    qtbot.waitUntil(lambda: w.state.evaluation is not None, timeout=120000)
    return w.state.evaluation


def expected_wrong(ev, ds) -> set[int]:
    """Test images whose evaluation prediction differs from the label: ZSL for unseen test
    images, GZSL for seen ones (the evaluation's default mode)."""
    p = ev.predictions[ev.summary["inference"]]
    unseen = set(ds.split.test_unseen)
    out = set()
    for k, i in enumerate(p["indices"]):
        pred = p["zsl"][k] if int(i) in unseen else p["gzsl"][k]
        if pred != ds.labels[i]:
            out.add(int(i))
    return out


def test_tiles_sort_and_filter_by_localisation_and_correctness(qtbot, win, small_ds):
    b = win.browser
    assert not b.parts_box.isEnabled()                            # nothing to sort by before an evaluation
    sort_items = [b.sort_box.itemText(r) for r in range(b.sort_box.count())]
    assert sort_items == ["dataset order", "worst head IoU first", "worst tail IoU first", "wrong first", "by class"]
    assert not b.sort_box.model().item(1).isEnabled()
    from sgma.app.thumbnails import BADGE_ROLE
    assert b.model.data(b.model.index(0), BADGE_ROLE) is None    # no badges before an evaluation
    ev = evaluate_in(qtbot, win)
    idx = np.asarray(ev.predictions[ev.summary["inference"]]["indices"])
    head = ev.part_iou["head"]
    assert len(head) == len(idx) and np.isfinite(head).any()
    # the badges carry the engine's per-image IoU and the pass/fail rule IoU > 0.5
    k = int(np.nanargmax(head))
    i = int(idx[k])
    badge = b.model.data(b.model.index(b.model.row_of(i)), BADGE_ROLE)
    got = {p: (v, ok) for p, v, ok in badge.parts}
    assert got["head"][0] == pytest.approx(head[k]) and got["head"][1] == bool(head[k] > 0.5)
    assert badge.correct == (i not in expected_wrong(ev, small_ds))
    train_i = int(small_ds.split.trainval[0])                     # not evaluated: no badge
    assert b.model.data(b.model.index(b.model.row_of(train_i)), BADGE_ROLE) is None

    # worst head IoU first: the lowest IoU at the top, non-decreasing, images without it last
    b.sort_box.setCurrentText("worst head IoU first")
    rows = b.model.rows
    full = win.state.image_ious()["head"]
    assert full[rows[0]] == pytest.approx(np.nanmin(head))
    vals = full[rows]
    n_have = int(np.isfinite(vals).sum())
    assert n_have == int(np.isfinite(head).sum())
    assert np.all(np.diff(vals[:n_have]) >= 0) and np.all(np.isnan(vals[n_have:]))
    assert win.state.current == rows[0]                           # the worst image is selected
    b.sort_box.setCurrentText("worst tail IoU first")
    assert win.state.image_ious()["tail"][b.model.rows[0]] == pytest.approx(np.nanmin(ev.part_iou["tail"]))

    # only wrong: exactly the images whose prediction differs from their label
    b.sort_box.setCurrentText("dataset order")
    wrong = expected_wrong(ev, small_ds)
    b.result_box.setCurrentText("incorrect")
    assert set(b.model.rows.tolist()) == wrong
    b.result_box.setCurrentText("All")
    # wrong first: every wrong image before every right one
    b.sort_box.setCurrentText("wrong first")
    first = b.model.rows[:len(wrong)]
    assert set(first.tolist()) == wrong
    # parts filter: head missed = head IoU <= 0.5 where the image has a head box
    b.sort_box.setCurrentText("dataset order")
    b.parts_box.setCurrentText("head missed")
    assert set(b.model.rows.tolist()) == {int(j) for j, v in zip(idx, head) if np.isfinite(v) and v <= 0.5}
    b.parts_box.setCurrentText("All")
    # by class: the classes in alphabetical order, contiguous
    b.sort_box.setCurrentText("by class")
    names = [small_ds.class_names[small_ds.labels[j]] for j in b.model.rows]
    assert names == sorted(names)
    # no evaluation any more (as after loading another model): no badges, no localisation filter
    win.state.set_evaluation(None)
    assert b.model.data(b.model.index(b.model.row_of(i)), BADGE_ROLE) is None
    assert not b.parts_box.isEnabled()


def test_tile_badges_are_painted(qtbot, win):
    """The delegate paints a green plate for a found part and a red one for a missed part."""
    from PySide6.QtGui import QColor, QImage, QPainter
    from PySide6.QtWidgets import QStyleOptionViewItem
    from sgma.app.thumbnails import FOUND_COLOUR, MISSED_COLOUR
    b = win.browser
    n = len(win.state.dataset)
    ious = {"head": np.full(n, np.nan), "tail": np.full(n, np.nan)}
    ious["head"][0], ious["tail"][0] = 0.8, 0.2
    correct = np.full(n, -1, dtype=np.int8)
    correct[0] = 0
    b.model.set_badges(ious, correct)
    row = b.model.row_of(0)
    size = b.model.size + 8
    img = QImage(size, size, QImage.Format.Format_RGB32)
    img.fill(QColor("black"))
    p = QPainter(img)
    opt = QStyleOptionViewItem()
    opt.rect = img.rect()
    b.view.itemDelegate().paint(p, opt, b.model.index(row))
    p.end()
    # bottom plates: left half head (found: green), right half tail (missed: red)
    assert QColor(img.pixel(8, size - 6)) == QColor(FOUND_COLOUR)
    assert QColor(img.pixel(size - 8, size - 6)) == QColor(MISSED_COLOUR)
    # the corner mark: red for a wrong prediction
    corner = QColor(img.pixel(size - 4 - 7, 4 + 3))
    assert corner.red() > 150 and corner.green() < 120
    assert "head IoU 0.80 (found)" in b.model.data(b.model.index(row), Qt.ItemDataRole.ToolTipRole)
