"""Compare two checkpoints side by side on the selected image: each column shows its own model's
squares, IoU and top classes."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run, win  # noqa: F401


def perturbed_checkpoint(src, dst, seed=0, scale=0.6):
    """A second model: the trained one with every float weight moved by noise of ``scale`` times
    that tensor's spread, so its squares and scores differ from the first model's."""
    import torch
    from sgma.engine.checkpoint import load_checkpoint, save_checkpoint
    state = load_checkpoint(src)
    g = torch.Generator().manual_seed(seed)
    for k, v in state["model"].items():
        if v.is_floating_point() and v.numel() > 1:
            state["model"][k] = v + scale * (v.std() + 1e-3) * torch.randn(v.shape, generator=g)
    state.pop("format_version", None)
    save_checkpoint(state, dst)
    return str(dst)


def rects(col) -> np.ndarray:
    return np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in (it.rect() for it in col.pred_items)])


def test_both_columns_show_their_own_model(qtbot, win, small_ds, trained_run, tmp_path):
    from sgma.app.labels import clip_box
    from sgma.engine.metrics import iou
    from sgma.engine.predict import Predictor
    w = win
    path_b = perturbed_checkpoint(trained_run / "best.pt", tmp_path / "b.pt")
    assert any("Compare models" in line and "Ctrl+Shift+M" in line for line in w.shortcuts_text().splitlines())
    w.compare_action.trigger()
    dlg = w.compare
    assert dlg.isVisible()
    assert "no model" in dlg.b.title.text()
    dlg.load_model_b(path_b)
    qtbot.waitUntil(lambda: dlg.predictor_b is not None, timeout=30000)
    assert "b.pt" in dlg.b.title.text() and "best.pt" in dlg.a.title.text()
    # an image where the two models' top classes differ (found with each model on its own)
    pa, pb = Predictor.from_checkpoint(str(trained_run / "best.pt")), Predictor.from_checkpoint(path_b)
    target = None
    for i in list(small_ds.split.test_unseen) + list(small_ds.split.test_seen):
        img = small_ds.load_image(i)
        ra, rb = pa.predict(img), pb.predict(img)
        if ra.top(1)[0][0] != rb.top(1)[0][0]:
            target = int(i)
            break
    assert target is not None, "the perturbed model agrees with the trained one on every image"
    w.browser.select_index(target)
    assert w.state.current == target
    qtbot.waitUntil(lambda: dlg.a.prediction is not None and dlg.b.prediction is not None
                    and dlg.a.index == dlg.b.index == target, timeout=30000)
    size = small_ds.load_image(target).size
    gt = small_ds.items[target].part_boxes
    for col, ref in ((dlg.a, ra), (dlg.b, rb)):
        # its own model's top classes, in its order
        shown = [col.top_table.item(r, 0).text() for r in range(col.top_table.rowCount())]
        assert shown == [n for n, _s in ref.top(len(shown))] and shown[0] == ref.top(1)[0][0]
        # its own model's squares, and the IoU of each with the ground truth
        np.testing.assert_allclose(rects(col), [clip_box(b, *size) for b in ref.boxes], atol=1e-3)
        for r in range(col.iou_table.rowCount()):
            part, m = col.iou_table.item(r, 0).text(), int(col.iou_table.item(r, 1).text()[3]) - 1
            assert float(col.iou_table.item(r, 2).text()) == pytest.approx(iou(ref.boxes[m], gt[part]), abs=1e-3)
        assert col.iou_table.rowCount() == len(gt)
        assert not col.map_item.pixmap().isNull()
        # labels inside the image and off each other (plates placed as in the audit), at the
        # view's scale: a plate keeps its size on screen
        sc = col.view.scale_factor()
        plates = [(pl.pos().x(), pl.pos().y(), pl.rect().width() / sc, pl.rect().height() / sc)
                  for pl, _b, _t in col._plates]
        assert len(plates) == len(gt) + len(ref.boxes)
        for k, (x, y, pw, ph) in enumerate(plates):
            assert x >= -1e-6 and y >= -1e-6 and x + pw <= size[0] + 1e-3 and y + ph <= size[1] + 1e-3
            for (x2, y2, w2, h2) in plates[k + 1:]:
                assert x + pw <= x2 + 1e-6 or x2 + w2 <= x + 1e-6 or y + ph <= y2 + 1e-6 or y2 + h2 <= y + 1e-6
    assert dlg.a.top_table.item(0, 0).text() != dlg.b.top_table.item(0, 0).text()
    assert not np.allclose(rects(dlg.a), rects(dlg.b), atol=0.5)
    # the columns follow the browser
    w.next_action.trigger()
    nxt = w.state.current
    qtbot.waitUntil(lambda: dlg.b.index == nxt and dlg.b.prediction is not None, timeout=30000)
    ref = pb.predict(small_ds.load_image(nxt))
    np.testing.assert_allclose(rects(dlg.b), [clip_box(b, *small_ds.load_image(nxt).size) for b in ref.boxes],
                               atol=1e-3)
