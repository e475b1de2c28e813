"""model.div_normalise: Eq. 6's sum over positions divided by |Z| in L_MA (the paper preset)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from sgma.engine import config as C
from sgma.engine.attention import compactness_loss, diversity_loss
from sgma.engine.model import SGMA


def test_paper_preset_normalises_and_cpu_presets_do_not():
    assert C.preset("paper").model.div_normalise is True
    for name in ("demo", "cpu", "tiny"):
        assert C.preset(name).model.div_normalise is False


def test_normalised_lma_divides_the_diversity_term_by_the_map_size():
    torch.manual_seed(0)
    cfg = dataclasses.replace(C.preset("tiny").model, lambda_div=2.0)
    model = SGMA(cfg, semantic_dim=5, n_train_classes=3).eval()
    x, sem, y = torch.rand(2, 3, cfg.attention_size, cfg.attention_size), torch.rand(3, 5), torch.tensor([0, 2])
    with torch.no_grad():
        out = model(x, sem)
    h, w = out.maps.shape[2:]
    sigma = cfg.compact_sigma * model.map_size[0]
    cpt = compactness_loss(out.maps, sigma).sum(dim=1).mean()
    div = diversity_loss(out.maps, cfg.div_margin).sum(dim=1).mean()
    assert float(div) > 0
    assert float(model.losses(out, y)["ma"]) == pytest.approx(float(cpt + 2.0 * div), rel=1e-5)
    model.cfg = dataclasses.replace(cfg, div_normalise=True)
    assert float(model.losses(out, y)["ma"]) == pytest.approx(float(cpt + 2.0 * div / (h * w)), rel=1e-5)
