"""Stage 1's discriminative mining (engine/mining.py, ``train.mine_rounds``): the samples of a
round by hand, the logistic fit against scikit-learn's, the sharpening of a diffuse start on
planted features, the detector written into Eq. 2-3, and the trainer's use of it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgma.engine.attention import MultiAttention
from sgma.engine.config import ConfigError
from sgma.engine.mining import (detector_logits, fit_logistic, mine_attention, mine_part_detector,
                                mining_samples, peak_cells, set_part_detector)


def test_peak_cells_are_row_and_column_of_each_maximum():
    m = torch.zeros(2, 3, 4)
    m[0, 2, 1] = 5.0
    m[1, 0, 3] = 1.0
    assert peak_cells(m).tolist() == [[2, 1], [0, 3]]


def test_mining_samples_take_the_peak_and_only_cells_at_least_gap_away():
    f = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)   # the cell's index as its feature
    logits = torch.zeros(1, 5, 5)
    logits[0, 1, 1] = 1.0
    x, y = mining_samples(f, logits, gap=3, negatives=20, rng=np.random.default_rng(0))
    assert y.tolist() == [1.0] + [0.0] * 9
    assert x[0, 0] == 6.0                                    # cell (1, 1)
    # Chebyshev distance >= 3 from (1, 1): row 4 or column 4, 9 cells
    assert sorted(x[1:, 0].tolist()) == [4.0, 9.0, 14.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0]
    x, y = mining_samples(f, logits, gap=3, negatives=4, rng=np.random.default_rng(0))
    assert len(y) == 5 and set(x[1:, 0]) <= {4.0, 9.0, 14.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0}


def test_maps_too_small_for_the_gap_are_refused_by_name():
    f = torch.rand(2, 4, 3, 3)
    with pytest.raises(ValueError, match=r"at least 3 cells .* maps are 3 x 3.*mine_rounds = 0"):
        mining_samples(f, f[:, 0], gap=3, negatives=5, rng=np.random.default_rng(0))
    # before any round: a 5 x 5 map has far cells for a corner peak, none for a central one
    f = torch.rand(2, 4, 5, 5)
    with pytest.raises(ValueError, match=r"maps are 5 x 5 \(at least 6 x 6 needed\).*mine_rounds = 0"):
        mine_part_detector(f, f[:, 0], rounds=1, gap=3)


def test_fit_logistic_is_scikit_learns_balanced_l2_objective():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x @ np.array([1.5, -1.0, 0.0, 0.5]) + 0.3 * rng.normal(size=300) > 1.0).astype(float)
    w, b = fit_logistic(x, y, c=0.1, nonnegative=False)
    ref = LogisticRegression(C=0.1, class_weight="balanced", tol=1e-10, max_iter=5000).fit(x, y)
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-4)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-4)
    # non-negative: the negatively predictive feature gets weight 0, the others stay positive
    w, _ = fit_logistic(x, y, c=0.1)
    assert w[1] == 0.0 and w[0] > 0 and w[3] > 0 and (w >= 0).all()


def planted(n=60, seed=0):
    """Channel 0 marks a 1-cell part at a random place; channel 1 is a broad blob centred two
    cells to the part's right, as a diffuse map that leans off the part."""
    g = torch.Generator().manual_seed(seed)
    f = 0.1 * torch.rand(n, 3, 12, 12, generator=g)
    parts = torch.randint(2, 8, (n, 2), generator=g)
    yy, xx = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    for k, (r, c) in enumerate(parts.tolist()):
        f[k, 0, r, c] += 1.0
        f[k, 1] += torch.exp(-((yy - r) ** 2 + (xx - c - 2) ** 2) / 8.0)
    return f, parts.numpy()


def test_mining_moves_the_start_s_outliers_onto_the_part_its_majority_found():
    f, parts = planted()
    # the start finds the part on 3 images in 5, and peaks at a random cell on the others
    start = 0.5 * f[:, 0] + 0.1 * f[:, 1]
    g = torch.Generator().manual_seed(1)
    for k in range(0, len(f), 5):
        for j in (k, k + 1):
            start[j].view(-1)[torch.randint(144, (1,), generator=g)] += 2.0
    assert np.mean((peak_cells(start) == parts).all(1)) == pytest.approx(0.6, abs=0.05)
    w, b, moved = mine_part_detector(f, start, rounds=4, gap=2, negatives=10)
    assert np.mean((peak_cells(detector_logits(f, w, b)) == parts).all(1)) == 1.0
    assert moved[0] == pytest.approx(0.4) and moved[-1] == 0.0     # the outliers moved, then it converged
    assert (w >= 0).all() and w[0] > w[1]
    with pytest.raises(ValueError, match="at least one round"):
        mine_part_detector(f, start, rounds=0)


def test_a_written_detector_is_eq3_map_with_the_same_peaks_standardised():
    f, parts = planted(n=20)
    att = MultiAttention(3, 2, reduction=1)
    w = np.array([2.0, 0.5, 0.0])
    set_part_detector(att, 1, w, f)
    maps, a = att(f)
    # Eq. 2's a_i is the constant w / max(w) (up to the clamp that keeps its logit finite)
    np.testing.assert_allclose(a[:, 1].detach().numpy(), np.tile([1.0, 0.25, 0.0], (20, 1)), atol=2e-4)
    with torch.no_grad():    # Eq. 3's logits, before the sigmoid (a planted spike saturates it)
        logits = torch.einsum("nchw,nc->nhw", f, a[:, 1]) / 3 * att.scale[1] + att.bias[1]
    assert torch.equal(torch.sigmoid(logits), maps[:, 1].detach())
    assert (peak_cells(logits) == peak_cells(detector_logits(f, w, 0.0))).all()
    assert float(logits.mean()) == pytest.approx(0.0, abs=1e-3)
    assert float(logits.std()) == pytest.approx(2.0, rel=1e-3)
    with pytest.raises(ValueError, match="non-negative"):
        set_part_detector(att, 0, np.array([1.0, -0.1, 0.0]), f)


def test_mine_attention_mines_every_map_from_the_grouping_s_maps_and_writes_each():
    """Each part's detector is mined from the maps as they were before any was replaced (part i
    seeded seed + i), and written into Eq. 2: the one mining loop the trainer and the probes run."""
    f, parts = planted(n=20)
    torch.manual_seed(0)
    att = MultiAttention(3, 2, reduction=1)
    with torch.no_grad():
        before = att(f)[0]
    got = list(mine_attention(att, f, rounds=2, seed=5))
    assert [i for i, _w, _m in got] == [0, 1]
    for i, w, moved in got:
        w_ref, _b, moved_ref = mine_part_detector(f, before[:, i], 2, seed=5 + i)
        np.testing.assert_allclose(w, w_ref)
        assert moved == moved_ref
        assert float(att.fc2[i].weight.abs().max()) == 0.0          # a_i is the written constant
        ref = MultiAttention(3, 2, reduction=1)
        set_part_detector(ref, i, w_ref, f)
        torch.testing.assert_close(att.fc2[i].bias, ref.fc2[i].bias)


def test_config_refuses_negative_rounds():
    from test_trainer import tiny_config
    cfg = tiny_config()
    cfg.train.mine_rounds = -1
    with pytest.raises(ConfigError, match="train.mine_rounds"):
        cfg.validate()


def test_trainer_stage1_mines_every_map_and_logs_it(tmp_path):
    from sgma.engine import events as ev
    from sgma.engine.data.synthetic import make_synthetic
    from sgma.engine.trainer import Trainer
    from test_trainer import tiny_config
    torch.set_num_threads(1)
    cfg = tiny_config()
    cfg.train.mine_rounds = 2
    cfg.train.retrain_on_trainval = False    # one stage 1, not two
    cfg.train.joint.epochs = cfg.train.pretrain_parts.epochs = 0
    ds = make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)
    tr = Trainer(cfg, tmp_path, dataset=ds)
    logs = [e.message for e in tr.run() if isinstance(e, ev.Log)]
    mined = [m for m in logs if "mining rounds" in m]
    assert len(mined) == tr.model.cfg.n_parts, logs
    for fc2 in tr.model.attention.fc2:       # each a_i is the mined constant
        assert float(fc2.weight.abs().max()) == 0.0


def test_the_documented_mined_recipe_is_run_26s_cpu_preset_with_mining_and_the_cropper_kept():
    from pathlib import Path
    from sgma.engine.config import load_toml, preset, to_dict
    cfg = load_toml(Path(__file__).resolve().parents[1] / "docs" / "configs" / "cub50_plus_mined.toml")
    cfg.validate()
    assert cfg.train.mine_rounds == 10 and cfg.train.cropper_fit_steps == 0
    assert cfg.train.pretrain_parts.cropping_lr_scale == 0.0 and cfg.data.root == ""
    run26 = preset("cpu")
    run26.model.far_end_square = False          # the preset of run 26, which run 29 mined
    run26.model.object_side = False             # (run 35's, later)
    run26.train.mine_standardise = False        # (run 33's, later)
    run26.model.backbone, run26.model.part_backbone = "efficientnet_lite0_s16", ""    # (run 34's, later)
    base = to_dict(run26)
    mined = to_dict(cfg)
    for key in ("mine_rounds", "cropper_fit_steps", "pretrain_parts"):
        base["train"].pop(key), mined["train"].pop(key)
    base.pop("name"), mined.pop("name")
    assert mined == base         # nothing else differs from the preset


def test_standardised_mining_is_mining_on_standardised_channels_mapped_back_to_raw_ones():
    """``train.mine_standardise``: the regression reads each channel centred and divided by its
    standard deviation over all cells; the detector returned is the same one over the raw channels
    (w / std, bias shifted), still non-negative."""
    f, parts = planted(n=30)
    f = f * torch.tensor([0.01, 10.0, 1.0]).view(1, 3, 1, 1)     # the part's channel is tiny
    start = 100 * f[:, 0]                                        # on the part, but on 2 images in 5
    g = torch.Generator().manual_seed(1)
    for k in range(0, len(f), 5):
        for j in (k, k + 1):
            start[j].view(-1)[torch.randint(144, (1,), generator=g)] += 2.0
    w, b, _ = mine_part_detector(f, start, 3, gap=2, negatives=10, standardise=True)
    m, s = f.mean((0, 2, 3), keepdim=True), f.std((0, 2, 3), keepdim=True)
    w_s, b_s, _ = mine_part_detector((f - m) / s, start, 3, gap=2, negatives=10)
    # (float32 features: the two routes round differently in the 5th digit)
    np.testing.assert_allclose(w, w_s / s.flatten().numpy(), rtol=1e-4)
    assert b == pytest.approx(b_s - float(w_s @ (m / s).flatten().numpy()), rel=1e-4)
    torch.testing.assert_close(detector_logits(f, w, b), detector_logits((f - m) / s, w_s, b_s),
                               rtol=1e-4, atol=1e-4)
    assert (w >= 0).all()
    # on the raw channels the penalty leaves the tiny channel unused and the detector drifts to
    # the blob beside the part; standardised, it finds the part on every image
    w_raw, b_raw, _ = mine_part_detector(f, start, 3, gap=2, negatives=10)
    on_part = lambda w_, b_: np.mean((peak_cells(detector_logits(f, w_, b_)) == parts).all(1))  # noqa: E731
    assert on_part(w, b) == 1.0 and on_part(w_raw, b_raw) < 0.2


def test_mine_attention_passes_standardise_on():
    f, _ = planted(n=20)
    torch.manual_seed(0)
    att = MultiAttention(3, 2, reduction=1)
    with torch.no_grad():
        before = att(f)[0]
    for i, w, _moved in mine_attention(att, f, rounds=2, seed=0, standardise=True):
        np.testing.assert_allclose(w, mine_part_detector(f, before[:, i], 2, seed=i, standardise=True)[0])
