"""bench/mined_parts.py and bench/contrast_squares.py (run 28): the annotation-free agreement of
two maps, the sub-cell centre, and the squares of a map that competes with another, by hand."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from contrast_squares import region, square  # noqa: E402
from mined_parts import agreement, region_sides, soft_centres  # noqa: E402


def spikes(cells, size=10):
    m = torch.full((len(cells), size, size), -5.0)
    for k, (r, c) in enumerate(cells):
        m[k, r, c] = 5.0
    return m


def test_agreement_counts_peaks_within_one_cell():
    a = spikes([(2, 2), (5, 5), (0, 9), (7, 1)])
    b = spikes([(3, 3), (5, 7), (0, 9), (9, 1)])
    # (2,2)-(3,3): 1 cell; (5,5)-(5,7): 2; same; (7,1)-(9,1): 2
    assert agreement(a, b) == pytest.approx(0.5)


def test_soft_centre_is_the_probability_mass_centre_around_the_peak():
    m = torch.full((1, 10, 10), -20.0)
    m[0, 4, 4] = 20.0          # probability 1
    m[0, 4, 5] = 0.0           # probability 1/2, to the right
    c = soft_centres(m)[0]
    assert c[1] == pytest.approx(4.5 / 10, abs=1e-6)
    assert c[0] == pytest.approx((4.5 * 1 + 5.5 * 0.5) / 1.5 / 10, abs=1e-6)


def test_region_side_is_the_positive_piece_holding_the_peak_clamped():
    m = torch.full((2, 20, 20), -1.0)
    m[0, 5:9, 3:5] = 1.0       # 4 x 2 cells: side 4 / 20
    m[0, 15, 15] = 2.0         # the peak's own piece is the single cell
    m[1, 2:4, 2:4] = 1.0       # 2 x 2: 0.1, and an isolated peak elsewhere is not joined
    m[1, 2, 2] = 3.0
    np.testing.assert_allclose(region_sides(m), [0.1, 0.1])
    m[0, 15, 15] = -1.0
    np.testing.assert_allclose(region_sides(m), [0.2, 0.1])
    assert region_sides(torch.ones(1, 20, 20))[0] == 0.6


def test_contrast_square_leaves_the_cells_the_other_map_holds():
    own = np.zeros((10, 10))
    own[4, 2:7] = [0.6, 0.8, 1.0, 0.9, 0.7]     # a ridge peaking at column 4
    other = np.zeros((10, 10))
    other[4, 4:8] = 1.0                            # the other part covers columns 4-7
    r, peak = region(own, other)
    assert peak == (4, 3)                          # own - other is largest at column 3
    assert np.argwhere(r).tolist() == [[4, 2], [4, 3]]
    assert square(own, other, "peak") == pytest.approx((0.45, 0.45, 0.25))
    assert square(own, other, "contrast peak") == pytest.approx((0.35, 0.45, 0.25))
    cx, cy, side = square(own, other, "region box")
    assert (cx, cy, side) == pytest.approx((0.3, 0.45, 0.2))
    with pytest.raises(ValueError, match="rule must be one of"):
        square(own, other, "nearest")
