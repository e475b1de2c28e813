"""bench/scda.py, the object mask the square probes share: the largest region above the map's
mean, and its box as fractions of the map's side."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from scda import mask_box, object_mask  # noqa: E402


def test_object_mask_keeps_the_largest_region_above_the_mean():
    a = np.zeros((8, 10))
    a[1:4, 1:3] = 5.0          # 6 cells
    a[4:7, 5:9] = 4.0          # 12 cells: the largest region, though weaker
    m = object_mask(a)
    assert m.sum() == 12 and m[4:7, 5:9].all() and not m[1:4, 1:3].any()
    assert mask_box(m) == (5 / 10, 4 / 8, 9 / 10, 7 / 8)


def test_object_mask_of_a_flat_map_is_empty():
    a = np.ones((4, 4))        # nothing above the mean: no region, the mask stays all false
    assert not object_mask(a).any()
