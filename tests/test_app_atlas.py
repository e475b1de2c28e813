"""Part atlas: the engine's ranking of images by each map's peak (hand-built maps), and the dialog
that shows k crops per map, computed in a worker with progress and Cancel."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run, win  # noqa: F401


def hand_maps():
    """5 images, 2 maps of 2 x 3 cells. Map 0 peaks: 0.9 (img 10, cell (r0, c2)), 0.5 (11), 0.7
    (12), 0.7 (13, a tie with 12), 0.2 (14). Map 1 peaks: 0.1, 0.8, 0.3, 0.6, 0.95."""
    maps = np.zeros((5, 2, 2, 3), dtype=np.float32)
    for img, (v0, cell0, v1, cell1) in enumerate([(0.9, (0, 2), 0.1, (0, 0)), (0.5, (1, 0), 0.8, (1, 1)),
                                                  (0.7, (1, 2), 0.3, (0, 1)), (0.7, (0, 0), 0.6, (1, 2)),
                                                  (0.2, (0, 1), 0.95, (1, 0))]):
        maps[img, 0][cell0] = v0
        maps[img, 1][cell1] = v1
    sides = np.array([[0.2, 0.3], [0.25, 0.35], [0.3, 0.4], [0.35, 0.45], [0.4, 0.5]])
    return maps, np.arange(10, 15), sides


def test_top_peaks_ranks_by_the_peak_value():
    from sgma.engine.atlas import top_peaks
    maps, idx, sides = hand_maps()
    a = top_peaks(maps, idx, 3, sides)
    assert a[0].indices.tolist() == [10, 12, 13]          # 0.9, then the tie 0.7 / 0.7 in image order
    np.testing.assert_allclose(a[0].values, [0.9, 0.7, 0.7], rtol=1e-6)
    # peak cell centres as (x, y) fractions of a 3-wide, 2-high map
    np.testing.assert_allclose(a[0].peaks, [[2.5 / 3, 0.25], [2.5 / 3, 0.75], [0.5 / 3, 0.25]])
    np.testing.assert_allclose(a[0].sides, [0.2, 0.3, 0.35])
    assert a[1].indices.tolist() == [14, 11, 13]
    np.testing.assert_allclose(a[1].peaks[0], [0.5 / 3, 0.75])
    np.testing.assert_allclose(a[1].sides, [0.5, 0.35, 0.45])
    with pytest.raises(ValueError, match="k must be"):
        top_peaks(maps, idx, 0)


def test_far_end_row_shows_its_squares_ranked_by_the_anchor_peak():
    """A far-end part has no map value of its own: its row is centred on its squares and ranked by
    the anchor map's peak; the anchor's row is unchanged."""
    from sgma.engine.atlas import top_peaks
    maps, idx, sides = hand_maps()
    centres = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8], [0.9, 0.1]])
    plain = top_peaks(maps, idx, 3, sides)
    a = top_peaks(maps, idx, 3, sides, far_end=(1, 0, centres))
    assert a[0].indices.tolist() == plain[0].indices.tolist() and not a[0].far_end
    assert a[1].far_end and a[1].indices.tolist() == [10, 12, 13]     # map 0's ranking, not map 1's [14, 11, 13]
    np.testing.assert_allclose(a[1].values, [0.9, 0.7, 0.7], rtol=1e-6)
    np.testing.assert_allclose(a[1].peaks, centres[[0, 2, 3]])
    np.testing.assert_allclose(a[1].sides, [0.3, 0.4, 0.45])            # the far-end squares' own sides


def test_part_atlas_merges_chunks_like_one_pass(monkeypatch):
    """``part_atlas`` over chunks of 2 images keeps the running top k: the same result as one pass."""
    from sgma.engine import atlas
    maps, idx, sides = hand_maps()
    by_index = {int(i): k for k, i in enumerate(idx)}
    calls = []

    def fake_extract(model, dataset, indices, batch_size, device, keep_maps=False):
        assert keep_maps
        rows = [by_index[i] for i in indices]
        calls.append(list(indices))
        squares = np.zeros((len(rows), 2, 3))
        squares[..., 2] = sides[rows]
        return {"maps": maps[rows], "indices": np.asarray(indices), "squares": squares}

    monkeypatch.setattr(atlas, "extract", fake_extract)
    seen = []
    got = atlas.part_atlas(None, None, list(idx), k=2, device="cpu", chunk=2,
                           progress=lambda d, t: seen.append((d, t)))
    assert calls == [[10, 11], [12, 13], [14]]
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert got[0].indices.tolist() == [10, 12] and got[1].indices.tolist() == [14, 11]
    np.testing.assert_allclose(got[1].values, [0.95, 0.8], rtol=1e-6)


def test_peak_crop_box_is_centred_and_inside():
    from sgma.engine.atlas import peak_crop_box
    assert peak_crop_box((0.5, 0.5), 0.25, 200, 100) == (75, 38, 125, 63)     # 50 x 25, centred
    assert peak_crop_box((0.02, 0.98), 0.25, 200, 100) == (0, 75, 50, 100)    # pushed inside
    assert peak_crop_box((0.5, 0.5), float("nan"), 100, 100) == (38, 38, 63, 63)   # no side: a quarter


def test_atlas_dialog_shows_k_crops_per_map(qtbot, win, small_ds):
    w = win
    dlg = w.show_part_atlas()
    assert dlg.isVisible() and dlg.run_button.isEnabled()
    assert any("Part atlas" in line and "Ctrl+Shift+A" in line for line in w.shortcuts_text().splitlines())
    dlg.k_box.setValue(3)
    dlg.run()
    assert dlg.cancel_button.isVisible() and not dlg.run_button.isEnabled()
    qtbot.waitUntil(lambda: dlg.atlas is not None, timeout=120000)
    n_maps = w.state.predictor.model.cfg.n_parts
    assert len(dlg.crops) == n_maps and all(len(row) == 3 for row in dlg.crops)
    assert not dlg.busy.isVisible() and not dlg.cancel_button.isVisible()
    # the crops are the images where each map's peak is highest, best first
    from sgma.engine.extract import extract
    ex = extract(w.state.predictor.model, small_ds, list(range(len(small_ds))), keep_maps=True)
    peaks = ex["maps"].astype(np.float32).reshape(len(small_ds), n_maps, -1).max(axis=2)
    for m, row in enumerate(dlg.crops):
        shown = [b.image_index for b in row]
        assert peaks[shown, m] == pytest.approx(np.sort(peaks[:, m])[::-1][:3], abs=1e-3)
        assert not row[0].icon().isNull()
    # a click on a crop shows that image
    target = dlg.crops[1][2].image_index
    dlg.crops[1][2].click()
    assert w.state.current == target
    # only the images in the grid (a class filter): every crop from that class
    c = int(small_ds.split.unseen[0])
    w.browser.class_box.setCurrentIndex(w.browser.class_box.findData(c))
    dlg.images_box.setCurrentText("the images in the grid")
    dlg.run()
    qtbot.waitUntil(lambda: dlg.task is None, timeout=120000)
    assert all(small_ds.labels[b.image_index] == c for row in dlg.crops for b in row)
    # Cancel stops the computation and keeps nothing new
    w.browser.class_box.setCurrentIndex(0)
    dlg.images_box.setCurrentText("every image")
    before = dlg.atlas
    dlg.run()
    dlg.cancel()
    qtbot.waitUntil(lambda: dlg.task is None, timeout=120000)
    assert dlg.status.text() == "cancelled"      # part_atlas checks after its last chunk too
    assert dlg.atlas is before and dlg.run_button.isEnabled()
