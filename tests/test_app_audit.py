"""The part audit of the selected image with a trained model: the map overlay, the predicted
squares and ground-truth boxes with their IoU, layer toggles, colour range, export to PNG/SVG."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run, win  # noqa: F401


def map_pixels(audit) -> np.ndarray:
    from PySide6.QtGui import QImage
    img = audit.map_item.pixmap().toImage().convertToFormat(QImage.Format.Format_ARGB32)   # BGRA, straight alpha
    ptr = img.constBits()
    return np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[:, : img.width()].copy()


def test_overlays_and_boxes_are_drawn(win, small_ds):
    a = win.audit
    i = win.state.current
    pred = a.prediction
    assert pred.maps.shape[0] == 2
    assert len(a.pred_items) == 2                       # one square per attention map
    assert len(a.gt_items) == 2                         # head and tail ground truth
    assert all(it.isVisible() for it in a.pred_items + a.gt_items)
    pm = a.map_item.pixmap()
    assert not pm.isNull() and (pm.width(), pm.height()) == small_ds.load_image(i).size
    # the squares sit where the predictor put them
    from sgma.app.labels import clip_box
    r = a.pred_items[0].rect()
    np.testing.assert_allclose([r.left(), r.top(), r.right(), r.bottom()], clip_box(pred.boxes[0], *a.image_size),
                               atol=1e-3)
    g = a.gt_items[0].rect()
    np.testing.assert_allclose([g.left(), g.top(), g.right(), g.bottom()],
                               small_ds.items[i].part_boxes["head"], atol=1e-3)
    # the IoU of each (ground truth, predicted square) pair, in the table and in the labels
    from sgma.engine.metrics import iou
    assert a.iou_table.rowCount() == 2
    parts = {a.iou_table.item(r, 0).text(): float(a.iou_table.item(r, 2).text()) for r in range(2)}
    assert set(parts) == {"head", "tail"}
    m_head = int(a.iou_table.item(0, 1).text()[3]) - 1
    assert parts["head"] == pytest.approx(iou(pred.boxes[m_head], small_ds.items[i].part_boxes["head"]), abs=1e-3)
    assert any("IoU" in lab.childItems()[0].text() for lab in a.label_items)
    assert a.top_table.rowCount() > 0                   # the image's best classes
    assert a.colour_bar.isVisible()
    assert pred.mode == "combined"                      # Eq. 13's beta, the one stored in best.pt
    assert f"beta {win.state.predictor.beta:g}" in a.message.text()


def test_layer_toggles_opacity_and_range(win):
    a = win.audit
    a.opacity.setValue(50)
    px = map_pixels(a)
    assert np.all(px[..., 3] == round(0.5 * 255))       # uniform alpha = opacity
    a.opacity.setValue(80)
    assert np.all(map_pixels(a)[..., 3] == round(0.8 * 255))
    a.show_pred.setChecked(False)
    assert not any(it.isVisible() for it in a.pred_items) and all(it.isVisible() for it in a.gt_items)
    a.show_gt.setChecked(False)
    assert not any(it.isVisible() for it in a.gt_items)
    a.show_map.setChecked(False)
    assert not a.map_item.isVisible() and not a.colour_bar.isVisible()
    a.show_map.setChecked(True)
    a.show_pred.setChecked(True)
    a.show_labels.setChecked(False)
    assert not any(lab.isVisible() for lab in a.label_items)
    a.show_labels.setChecked(True)
    # colour range: fixed [0, 1] or the map's own min..max
    a.map_box.setCurrentIndex(0)
    a.range_box.setCurrentText("fixed [0, 1]")
    assert (a.colour_bar.lo, a.colour_bar.hi) == (0.0, 1.0)
    fixed = map_pixels(a).copy()
    a.range_box.setCurrentText("per image")
    m = a.prediction.maps[0]
    stretched = map_pixels(a)
    from sgma.app.overlay import lookup_table
    if m.max() - m.min() > 1e-3:
        assert a.colour_bar.lo == pytest.approx(m.min()) and a.colour_bar.hi == pytest.approx(m.max())
        assert not np.array_equal(fixed[..., :3], stretched[..., :3])
        # per image, the brightest cell is near the top of the colour map; fixed, at its value
        lut = lookup_table(a.cmap_box.currentText()).astype(int)

        def lut_index(px):
            rgb = px[..., 2::-1].reshape(-1, 1, 3).astype(int)
            return np.abs(rgb - lut[None]).sum(axis=-1).argmin(axis=1)
        assert lut_index(stretched).max() >= 200           # bilinear upsampling shaves the peak a little
        assert lut_index(fixed).max() <= np.ceil(m.max() * 255) + 3
    else:   # a flat map keeps the fixed range rather than stretching rounding noise
        assert (a.colour_bar.lo, a.colour_bar.hi) == (0.0, 1.0)
    # a map with real contrast: per-image range reaches both ends of the colour map
    from sgma.app.overlay import map_range, render_map
    ramp = np.linspace(0.2, 0.4, 64, dtype=np.float32).reshape(8, 8)
    img = render_map(ramp, 8, 8, "inferno", map_range(ramp, "image"), 1.0)
    px = np.frombuffer(img.constBits(), np.uint8).reshape(8, 8, 4).copy()
    assert tuple(px[0, 0, 2::-1]) == tuple(lookup_table("inferno")[0])
    assert tuple(px[7, 7, 2::-1]) == tuple(lookup_table("inferno")[255])
    a.map_box.setCurrentIndex(a.map_box.count() - 1)     # "max of all"
    assert a.map_box.currentText() == "max of all"
    assert a.colour_bar.hi == pytest.approx(a.prediction.maps.max(axis=0).max())


def test_next_image_is_audited(qtbot, win):
    a = win.audit
    before = win.state.current
    win.next_action.trigger()
    assert win.state.current != before
    qtbot.waitUntil(lambda: a.prediction is not None and a.index == win.state.current, timeout=10000)
    assert len(a.pred_items) == 2 and len(a.gt_items) == 2
    win.prev_action.trigger()          # the previous image's prediction is cached: drawn at once
    assert a.prediction is not None and a.index == before


def test_export_png_and_svg(win, tmp_path):
    a = win.audit
    tmp_path = tmp_path / "exports"
    tmp_path.mkdir()
    png = a.export(str(tmp_path / "view.png"))
    im = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    assert min(im.shape[:2]) >= 512 and im.std() > 10
    svg = a.export(str(tmp_path / "view.svg"))
    root = ET.parse(svg).getroot()
    tags = [el.tag.split("}")[-1] for el in root.iter()]
    assert tags.count("image") >= 2                     # the picture and the map overlay, embedded
    images = [el for el in root.iter() if el.tag.endswith("image")]
    assert any("base64" in (v or "") for el in images for v in el.attrib.values())
    assert sum(t in ("rect", "path", "polygon", "polyline") for t in tags) >= 4   # boxes stay vectors
    text = open(svg, encoding="utf-8").read()
    assert "IoU" in text
    assert sorted(os.listdir(tmp_path)) == ["view.png", "view.svg"]   # no temporary files left


def test_the_far_end_square_is_labelled_as_such(qtbot, make_window, small_ds, tmp_path):
    """With model.far_end_square the second part's square is not at its map's peak: the audit says
    which map's square is the object's far end, and draws the predictor's square for it."""
    import torch
    from app_fixtures import tiny_config
    from sgma.engine import events as ev
    from sgma.engine.trainer import Trainer
    torch.set_num_threads(2)
    cfg = tiny_config(kmeans=True)          # stage 1 fits the object direction
    cfg.model.freeze_backbone, cfg.model.far_end_square, cfg.model.object_size = True, True, 96
    cfg.train.retrain_on_trainval = False
    failed = [e for e in Trainer(cfg, tmp_path, dataset=small_ds).run() if isinstance(e, ev.Failed)]
    assert not failed, failed[0].traceback
    w = make_window(dataset=small_ds, checkpoint=str(tmp_path / "best.pt"))
    a = w.audit
    qtbot.waitUntil(lambda: a.prediction is not None, timeout=20000)
    far = a.prediction.far_end_map
    assert far == 1 - w.state.predictor.model.anchor_map
    texts = [lab.childItems()[0].text() for lab in a.label_items]
    assert sum("far end" in t for t in texts) == 1
    assert any(t.startswith(f"map{far + 1} · far end") for t in texts), texts
    # the comparison's column of the loaded model says it too
    w.compare_action.trigger()
    col = w.compare.a
    qtbot.waitUntil(lambda: col.prediction is not None, timeout=20000)
    plates = [p.childItems()[0].text() for p, _b, _t in col._plates]
    assert sum("far end" in t for t in plates) == 1 and any(t.startswith(f"map{far + 1} · far end") for t in plates)
    # the part atlas shows the far-end squares in that map's row, ranked by the anchor's peak
    dlg = w.show_part_atlas()
    dlg.k_box.setValue(3)
    dlg.run_button.click()
    qtbot.waitUntil(lambda: dlg.atlas is not None, timeout=120000)
    row, anchor_row = dlg.atlas[far], dlg.atlas[1 - far]
    assert row.far_end and not anchor_row.far_end
    headers = [dlg.grid.itemAtPosition(m, 0).widget().text() for m in range(2)]
    assert "far end" in headers[far] and "far end" not in headers[1 - far]
    model = w.state.predictor.model
    from sgma.engine.extract import extract
    ex = extract(model, small_ds, [int(i) for i in row.indices], 8, "cpu", keep_maps=True)
    np.testing.assert_allclose(row.peaks, ex["squares"][:, far, :2], atol=1e-5)
    np.testing.assert_allclose(row.values, ex["maps"][:, 1 - far].reshape(len(row.indices), -1).max(1), rtol=1e-5)
