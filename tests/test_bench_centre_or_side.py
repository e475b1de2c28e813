"""bench/centre_or_side.py (run 23): the sub-cell maps place each shifted map's cells where they
lie in the original image, and the tail rules read the object mask's geometry."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from centre_or_side import mask_cells, shift_averaged_maps, tail_from_head  # noqa: E402


def _block_image():
    x = torch.zeros(1, 3, 64, 64)
    x[..., 24:32, 40:48] = 1.0      # an 8 x 8 block: fine cell (y 3, x 5) of an 8 px grid
    return x


def _pool(t):                        # a stride-16 "attention": the mean of each 16 x 16 cell
    return F.avg_pool2d(t[:, :1], 16)


@pytest.mark.parametrize("flip", [False, True])
def test_shift_averaged_maps_peak_on_the_fine_cell_of_the_block(flip):
    fine = shift_averaged_maps(_pool, _block_image(), stride=16, sub=2, flip=flip)
    assert fine.shape == (1, 1, 8, 8)
    k = int(fine.flatten().argmax())
    assert (k // 8, k % 8) == (3, 5)
    # the coarse map cannot tell: its peak cell (1, 2) spans fine cells 2-3 and 4-5
    assert fine[0, 0, 3, 5] > fine[0, 0, 2, 5] and fine[0, 0, 3, 5] > fine[0, 0, 3, 4]


def test_shift_averaged_maps_average_the_shifts_that_see_a_cell():
    # the block fills one fine cell (y 3, x 5): every shift's cell over it holds the block, but
    # only two of the four shifts' cells over (3, 4) do
    fine = shift_averaged_maps(_pool, _block_image(), stride=16, sub=2)
    full, half = 64 / 256, 64 / 256 / 2
    assert fine[0, 0, 3, 5].item() == pytest.approx(full)
    assert fine[0, 0, 3, 4].item() == pytest.approx(half)


def test_tail_rules_on_a_horizontal_bird():
    mask = np.zeros((4, 10), bool)
    mask[1:3, 1:9] = True                      # cells x 1..8, y 1..2
    head = np.array([2.5 / 10, 1.5 / 4])       # the head near the left end
    far = tail_from_head(mask, head, "farthest")
    assert far[0] == pytest.approx(8.5 / 10)   # the right end
    assert tail_from_head(mask, head, "axis")[0] == pytest.approx(8.5 / 10)
    mirror = tail_from_head(mask, head, "mirror")   # 2 * centroid (0.5, 0.5) - head: (0.75, 0.625), cell (7, 2)
    assert mirror == pytest.approx([7.5 / 10, 2.5 / 4])
    assert len(mask_cells(mask)) == 16
    with pytest.raises(ValueError, match="tail rule"):
        tail_from_head(mask, head, "nearest")


def test_body_frame_error_splits_along_and_across_the_body_direction():
    from centre_or_side import bird_centre, body_frame_error
    truth = np.array([[0.2, 0.5], [0.5, 0.2]])
    body = np.array([[0.6, 0.5], [0.5, 0.9]])          # the body to the right; below
    centre = np.array([[0.25, 0.47], [0.5, 0.15]])     # 0.05 towards, 0.03 across; 0.05 away
    toward, across = body_frame_error(centre, truth, body)
    assert toward == pytest.approx([0.05, -0.05])
    assert np.abs(across) == pytest.approx([0.03, 0.0], abs=1e-12)
    got = bird_centre(np.array([[10.0, 20.0, 40.0, 60.0]]), np.array([[100.0, 200.0]]))
    assert got[0] == pytest.approx([0.3, 0.25])


def test_bird_boxes_reads_the_cub_file_by_image_id(tmp_path):
    from types import SimpleNamespace
    from centre_or_side import bird_boxes
    (tmp_path / "CUB_200_2011").mkdir()
    (tmp_path / "CUB_200_2011" / "bounding_boxes.txt").write_text("1 10.0 20.0 30.0 40.0\n2 1 2 3 4\n7 5 6 7 8\n")
    ds = SimpleNamespace(root=str(tmp_path), items=[SimpleNamespace(image_id=i) for i in ("7", "1", "2")])
    got = bird_boxes(ds, [1, 0])
    assert got.tolist() == [[10.0, 20.0, 30.0, 40.0], [5.0, 6.0, 7.0, 8.0]]
