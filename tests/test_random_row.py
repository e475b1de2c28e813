"""bench/random_row.py's overlap rules and placement, on hand-computed boxes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from random_row import grown, overlaps, random_boxes  # noqa: E402

sys.path.pop(0)


def test_overlap_rules_by_hand():
    a = np.array([[0.0, 0.0, 2.0, 2.0]])            # area 4
    b = np.array([[1.0, 0.0, 5.0, 2.0]])            # area 8, intersection 2
    o = overlaps(a, b)
    assert o["iou"] == pytest.approx([2 / 10])
    assert o["cover_gt"] == pytest.approx([2 / 8])
    assert o["on_part"] == pytest.approx([2 / 4])


def test_random_boxes_stay_in_their_frame_and_centre_when_too_big():
    rng = np.random.default_rng(0)
    frame = np.tile([[10.0, 20.0, 110.0, 70.0]], (500, 1))       # 100 x 50
    b = random_boxes(frame, np.full(500, 30.0), np.full(500, 60.0), rng)
    assert (b[:, 0] >= 10).all() and (b[:, 2] <= 110).all()      # fits in width: inside
    assert b[:, 1] == pytest.approx(np.full(500, 15.0))          # 60 > 50 high: centred (20 + 25 - 30)
    assert b[:, 0].min() < 15 and b[:, 0].max() > 75             # spread over the free 70 px


def test_grown_keeps_the_centre():
    g = grown(np.array([[10.0, 10.0, 20.0, 30.0]]), 2.0)
    assert g.tolist() == [[5.0, 0.0, 25.0, 40.0]]
