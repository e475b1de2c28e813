"""engine/metrics.py against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from sgma.engine import metrics as M


def test_mca_differs_from_overall_accuracy():
    y = [0] * 8 + [1] * 2
    p = [0] * 8 + [0, 1]                       # class 0: 8/8, class 1: 1/2
    assert M.mean_class_accuracy(y, p) == pytest.approx(0.75)
    assert np.mean(np.array(y) == np.array(p)) == pytest.approx(0.9)
    assert M.per_class_accuracy(y, p) == {0: 1.0, 1: 0.5}
    assert M.mean_class_accuracy(y, p, classes=[1]) == pytest.approx(0.5)
    assert M.mean_class_accuracy(y, p, classes=[1, 7]) == pytest.approx(0.5)   # 7 has no image
    assert M.mean_class_accuracy([], []) == 0.0


def test_harmonic_mean():
    assert M.gzsl_harmonic(0.367, 0.713) == pytest.approx(2 * 0.367 * 0.713 / 1.08)
    assert M.gzsl_harmonic(0.5, 0.5) == 0.5 and M.gzsl_harmonic(0.0, 0.0) == 0.0
    assert M.gzsl_harmonic(0.0, 0.9) == 0.0


def test_confusion_matrix():
    m = M.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 3], [0, 0], 3)


def test_iou_hand_made():
    assert M.iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert M.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert M.iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
    assert M.iou((0, 0, 4, 4), (1, 1, 3, 3)) == pytest.approx(4 / 16)
    a = [(0, 0, 10, 10), (5, 5, 15, 15)]
    b = [(0, 0, 10, 10), (5, 0, 15, 10), (20, 20, 30, 30)]
    m = M.iou_matrix(a, b)
    assert m.shape == (2, 3)
    assert m[0, 1] == pytest.approx(1 / 3) and m[1, 0] == pytest.approx(25 / 175) and m[1, 2] == 0
    np.testing.assert_allclose(M.iou_pairs(a, b[:2]), [m[0, 0], m[1, 1]])


def test_part_precision_excludes_images_without_part():
    gt = [(0, 0, 10, 10), None, (0, 0, 10, 10), (0, 0, 10, 10)]
    pred = [(0, 0, 10, 10), (50, 50, 60, 60), (5, 0, 15, 10), (1, 1, 10, 10)]   # IoU 1, -, 1/3, 0.81
    assert M.part_precision(pred, gt) == pytest.approx(2 / 3)
    assert M.part_precision(pred, gt, thr=0.9) == pytest.approx(1 / 3)
    exact = [(0, 0, 10, 10), None, (0, 0, 5, 10), None]                # IoU exactly 0.5 is not > 0.5
    assert M.part_precision([(0, 0, 10, 10)] * 4, exact) == pytest.approx(0.5)
    assert np.isnan(M.part_precision([None], [None]))


def test_random_square_precision():
    rng = np.random.default_rng(0)
    sizes = np.array([[100, 100]] * 50)
    sq = M.random_squares(sizes, 0.25, rng)
    assert (sq[:, 0] >= 0).all() and (sq[:, 2] <= 100).all()
    np.testing.assert_allclose(sq[:, 2] - sq[:, 0], 25)
    whole = [(0, 0, 100, 100)] * 50
    assert M.random_square_precision(whole, sizes, 1.0, rng, n_draws=2) == 1.0
    assert M.random_square_precision(whole, sizes, 0.25, rng, n_draws=2) == 0.0
    p = M.random_square_precision([(0, 0, 50, 50)] * 50, sizes, 0.5, np.random.default_rng(1), 20)
    assert 0.0 < p < 0.5
    r = M.random_squares(np.array([[200, 100]]), 0.25, rng)            # input frame: 50 x 25
    assert (r[0, 2] - r[0, 0], r[0, 3] - r[0, 1]) == pytest.approx((50, 25))
    r = M.random_squares(np.array([[200, 100]]), 0.25, rng, frame="image")
    assert (r[0, 2] - r[0, 0], r[0, 3] - r[0, 1]) == pytest.approx((25, 25))


def test_calibrated_stacking():
    s = np.array([[1.0, 0.9, 0.2]])
    out = M.calibrated_stacking(s, [True, False, False], 0.2)
    np.testing.assert_allclose(out, [[0.8, 0.9, 0.2]])
    assert s[0, 0] == 1.0                       # input untouched
    assert int(np.argmax(out)) == 1
