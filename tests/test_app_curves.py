"""The live curves' axis rules: axes that move in steps, so a redraw during training repaints
the lines and not the axes (a full replot stalled the window while the training thread ran)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from sgma.app.curves import _y_range_for, ema, nice_ceiling


@pytest.mark.parametrize("x, expected", [(0, 10), (3, 10), (10, 10), (10.5, 20), (20, 20), (21, 50),
                                         (51, 100), (999, 1000), (1001, 2000), (4500, 5000)])
def test_nice_ceiling_is_the_next_1_2_5_step(x, expected):
    assert nice_ceiling(x) == pytest.approx(expected)


def test_loss_axis_keeps_its_range_while_the_data_stay_inside_and_fill_it():
    first = _y_range_for(1.0, 5.0, None)
    assert first == pytest.approx((0.2, 5.8))                 # 20 % of the span each side
    assert _y_range_for(1.5, 4.0, first) is None               # inside, fills > 1/3: unchanged
    assert _y_range_for(0.1, 5.0, first) == pytest.approx((0.1 - 0.98, 5.0 + 0.98))   # left below
    assert _y_range_for(2.0, 2.5, first) == pytest.approx((1.9, 2.6))   # fills < 1/3: shrinks


def test_ema_is_bias_corrected():
    v = np.array([2.0, 4.0, 6.0])
    # alpha 0.5: acc = [1, 2.5, 4.25], weights = [0.5, 0.75, 0.875]
    assert ema(v, 0.5) == pytest.approx([2.0, 2.5 / 0.75, 4.25 / 0.875])
    assert list(ema(v, 0.0)) == [2.0, 4.0, 6.0]
