"""cropping.peak_centroid (model.crop_centre = "peak_centroid") on hand-computed maps, and the
model's squares taking their centre from it while the side stays the cropping net's."""
from __future__ import annotations

import pytest
import torch

from sgma.engine.config import ConfigError, ModelConfig
from sgma.engine.cropping import peak_centroid


def test_centroid_of_the_3x3_window_above_its_minimum():
    m = torch.zeros(1, 1, 5, 5)
    m[0, 0, 2, 2] = 4.0          # peak at cell (x 2, y 2)
    m[0, 0, 2, 3] = 2.0          # right neighbour
    m[0, 0, 1, 2] = 1.0          # upper neighbour; window minimum 0
    # x: (4*2 + 2*3 + 1*2) / 7 = 16/7, y: (4*2 + 2*2 + 1*1) / 7 = 13/7; cells centred at +0.5, over 5
    c = peak_centroid(m)
    assert c[0, 0].tolist() == pytest.approx([(16 / 7 + 0.5) / 5, (13 / 7 + 0.5) / 5])


def test_window_at_the_border_leaves_outside_cells_out():
    m = torch.full((1, 1, 4, 4), 1.0)
    m[0, 0, 0, 0] = 3.0          # peak in the corner; window = cells (0..1, 0..1), minimum 1
    m[0, 0, 0, 1] = 2.0
    c = peak_centroid(m)
    # weights above 1: (0,0) -> 2, (x1,y0) -> 1: x = 1/3, y = 0
    assert c[0, 0].tolist() == pytest.approx([(1 / 3 + 0.5) / 4, 0.5 / 4])


def test_flat_map_gives_its_peak_cell_and_no_gradient():
    m = torch.ones(2, 3, 6, 6, requires_grad=True)
    c = peak_centroid(m)
    assert c.shape == (2, 3, 2) and not c.requires_grad
    assert c[0, 0].tolist() == pytest.approx([0.5 / 6, 0.5 / 6])     # argmax of a flat map: cell 0


def test_model_squares_take_the_centroid_and_keep_the_nets_side():
    from sgma.engine.model import SGMA
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="small_cnn", pretrained="none", attention_size=64, image_size=32,
                      part_size=32, crop_hidden=16, attention_reduction=4, crop_centre="peak_centroid")
    model = SGMA(cfg, semantic_dim=5, n_train_classes=3).eval()
    x, sem = torch.rand(2, 3, 64, 64), torch.rand(4, 5)
    with torch.no_grad():
        out = model(x, sem)
        net = model.cropper(out.maps)
    assert torch.allclose(out.squares[..., :2], peak_centroid(out.maps))
    assert torch.allclose(out.squares[..., 2], net[..., 2])
    assert not torch.allclose(out.squares[..., :2], net[..., :2])     # not the net's centre
    with pytest.raises(ConfigError, match="crop_centre"):
        ModelConfig(crop_centre="middle").validate()
