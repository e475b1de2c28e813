"""The audit's drawing (issue 17): labels never cover each other and stay in the image, predicted
squares are clipped to the image, zoom / pan / value readout, and exported figures with a
colour bar, a caption, readable labels and normal file permissions."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses
import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run  # noqa: F401


# ---------------------------------------------------------------- geometry, by hand
def test_clip_box_by_hand():
    from sgma.app.labels import clip_box
    assert clip_box((-10, 5, 50, 140), 96, 128) == (0.0, 5.0, 50.0, 128.0)
    assert clip_box((100, 130, 120, 140), 96, 128) == (96.0, 128.0, 96.0, 128.0)   # wholly outside: empty


def test_square_label_names_the_far_end_and_the_part():
    from sgma.app.labels import square_label
    assert square_label(0, None) == "map1"
    assert square_label(1, 1, "tail") == "map2 · far end · tail"
    assert square_label(0, 1, "head") == "map1 · head"
    assert square_label(1, 1) == "map2 · far end"


def test_place_labels_by_hand():
    from sgma.app.labels import overlaps, place_labels
    bounds = (0, 0, 100, 100)
    # ground truth hangs below its box; a square's label sits in its top-left corner
    r = place_labels([(10, 10, 40, 40), (50, 50, 90, 80)], [(20, 5), (20, 5)], [True, False], bounds)
    assert r[0] == (10, 41, 20, 5)
    assert r[1] == (51, 51, 20, 5)
    # two identical squares: the second label goes to the next corner (above the square)
    r = place_labels([(30, 30, 60, 60), (30, 30, 60, 60)], [(20, 5), (20, 5)], [False, False], bounds)
    assert r[0] == (31, 31, 20, 5) and r[1] == (30, 24, 20, 5)
    # a truth box on the bottom edge: its label cannot hang below, it goes above
    r = place_labels([(10, 80, 30, 100)], [(20, 5)], [True], bounds)
    assert r[0] == (10, 74, 20, 5)
    # the truth is placed first even when listed last; nothing overlaps, all inside
    boxes = [(0, 0, 100, 100)] * 5 + [(0, 0, 100, 100)]
    r = place_labels(boxes, [(30, 10)] * 6, [False] * 5 + [True], bounds)
    assert r[5] == (0, 90, 30, 10)              # clamped "below" = at the bottom, inside
    for a, b in itertools.combinations(r, 2):
        assert not overlaps(a, b)
    assert all(0 <= x and 0 <= y and x + w <= 100 and y + h <= 100 for x, y, w, h in r)


# ---------------------------------------------------------------- in the window
@pytest.fixture
def win(qtbot, make_window, small_ds, trained_run):
    w = make_window(dataset=small_ds, checkpoint=str(trained_run / "best.pt"))
    qtbot.waitUntil(lambda: w.audit.prediction is not None, timeout=20000)
    return w


def crowd(a, small_ds):
    """Both squares on the ground-truth head, the second reaching past the image's corner."""
    head = np.asarray(small_ds.items[a.index].part_boxes["head"], dtype=np.float32)
    w, h = a.image_size
    boxes = np.stack([head, np.array([head[0], head[1], w + 30, h + 20], np.float32)])
    a.prediction = dataclasses.replace(a.prediction, boxes=boxes)
    a.redraw()
    return boxes


def assert_labels_apart_and_inside(a):
    rects = a.label_screen_rects()
    assert len(rects) == 4                    # 2 truth + 2 squares
    for r1, r2 in itertools.combinations(rects, 2):
        assert not r1.intersects(r2), (r1, r2)
    tl = a.view.mapFromScene(0, 0)
    br = a.view.mapFromScene(*a.image_size)
    for r in rects:
        assert tl.x() - 1 <= r.left() and r.right() <= br.x() + 1
        assert tl.y() - 1 <= r.top() and r.bottom() <= br.y() + 1


def test_labels_do_not_collide_and_squares_stay_in_the_image(win, small_ds):
    a = win.audit
    crowd(a, small_ds)
    assert_labels_apart_and_inside(a)
    r = a.pred_items[1].rect()
    assert (r.right(), r.bottom()) == (a.image_size[0], a.image_size[1])    # clipped to the image
    # the truth labels are where they were put first: under (or inside the foot of) their box
    texts = [pl.childItems()[0].text() for pl in a.label_items]
    assert texts[0].endswith("(truth)") and texts[1].endswith("(truth)")


def test_zoom_pan_and_value_readout(qtbot, win, small_ds):
    a = win.audit
    crowd(a, small_ds)
    s0 = a.view.scale_factor()
    a.view.zoom_by(2.0)
    assert a.view.scale_factor() == pytest.approx(2 * s0)
    rects = a.label_screen_rects()
    for r1, r2 in itertools.combinations(rects, 2):       # still apart at the new scale
        assert not r1.intersects(r2)
    a.view.zoom_by(100.0)
    assert a.view.zoom == 32.0                             # bounded
    a.view.mouseDoubleClickEvent(None)
    assert a.view.zoom == 1.0 and a.view.scale_factor() == pytest.approx(s0)
    a.view.zoom_by(0.5)                                    # never smaller than the fit
    assert a.view.scale_factor() == pytest.approx(s0)
    # hovering reports the drawn map's value at that pixel
    a.map_box.setCurrentIndex(0)
    from sgma.app.overlay import upsample
    up = upsample(a.prediction.maps[0], *a.image_size)
    a.view.hovered.emit(20.5, 30.5)
    assert a.readout.text().startswith("x 20, y 30")
    assert float(a.readout.text().rsplit(" ", 1)[1]) == pytest.approx(up[30, 20], abs=1e-3)
    a.view.hovered.emit(-5.0, 3.0)
    assert a.readout.text() == ""


def test_exported_figure_has_colour_bar_caption_and_normal_permissions(win, small_ds, tmp_path):
    from sgma.app.export import LONG_SIDE, layout
    from sgma.app.overlay import lookup_table
    a = win.audit
    crowd(a, small_ds)
    a.map_box.setCurrentIndex(0)
    tmp_path = tmp_path / "exports"
    tmp_path.mkdir()
    png = a.export(str(tmp_path / "view.png"))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(png).st_mode & 0o777 == 0o666 & ~umask
    fig = a.figure()
    lay = layout(fig)
    im = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert im.shape[:2] == (lay.height, lay.width) and max(lay.image.width(), lay.image.height()) == LONG_SIDE
    # the colour bar: the colour map's top colour at its top, bottom colour at its bottom
    lut = lookup_table(fig.colour_bar[0]).astype(int)
    x = int(lay.bar.center().x())
    assert np.abs(im[int(lay.bar.top()) + 3, x] - lut[255]).sum() < 40
    assert np.abs(im[int(lay.bar.bottom()) - 3, x] - lut[0]).sum() < 40
    # the caption band holds text (dark pixels on white) naming image, model and map
    band = im[int(lay.caption.top()):int(lay.caption.bottom()), : int(lay.image.width())]
    assert (band.sum(axis=-1) < 200).sum() > 50
    cap = a.caption()
    assert f"#{a.index}" in cap and "best.pt" in cap and "map 1" in cap
    # labels: small against the figure, apart from each other
    assert all(r.height() < 0.04 * lay.image.height() for r in lay.labels)
    for r1, r2 in itertools.combinations(lay.labels, 2):
        assert not r1.intersects(r2)
    svg = a.export(str(tmp_path / "view.svg"))
    assert os.stat(svg).st_mode & 0o777 == 0o666 & ~umask
    root = ET.parse(svg).getroot()
    vb = [float(v) for v in root.attrib["viewBox"].split()]
    assert vb[2:] == [lay.width, lay.height]
    text = open(svg, encoding="utf-8").read()
    assert "(truth)" in text and "IoU" in text and f"image #{a.index}" in text
    assert sorted(os.listdir(tmp_path)) == ["view.png", "view.svg"]


def test_random_baseline_toggle(win, small_ds):
    from sgma.engine.metrics import iou
    a = win.audit
    assert not a.show_random.isChecked() and len(a.pred_items) == 2
    a.show_random.setChecked(True)
    assert len(a.pred_items) == 4 and len(a.random_boxes) == 2
    w, h = a.image_size
    for rb, pb in zip(a.random_boxes, a.prediction.boxes):
        assert 0 <= rb[0] and 0 <= rb[1] and rb[2] <= w + 1e-6 and rb[3] <= h + 1e-6     # inside the image
        assert rb[2] - rb[0] == pytest.approx(min(pb[2] - pb[0], w))                   # same side
    rows = {a.iou_table.item(r, 1).text(): (a.iou_table.item(r, 0).text(), float(a.iou_table.item(r, 2).text()))
            for r in range(a.iou_table.rowCount())}
    rand = {k: v for k, v in rows.items() if k.startswith("random")}
    assert len(rand) == 2
    gt = small_ds.items[a.index].part_boxes
    for k, (part, v) in rand.items():
        m = int(k.rsplit("map", 1)[1].rstrip(")")) - 1
        assert v == pytest.approx(iou(np.asarray(a.random_boxes[m]), gt[part]), abs=1e-3)
    before = list(a.random_boxes)
    a.redraw()
    assert a.random_boxes == before                      # seeded by the image: stable
    assert_labels_apart_and_inside_n(a, 6)
    a.show_random.setChecked(False)
    assert len(a.pred_items) == 2 and a.iou_table.rowCount() == 2


def assert_labels_apart_and_inside_n(a, n):
    rects = a.label_screen_rects()
    assert len(rects) == n
    for r1, r2 in itertools.combinations(rects, 2):
        assert not r1.intersects(r2), (r1, r2)
