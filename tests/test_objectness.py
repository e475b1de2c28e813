"""The object's far end (engine/objectness.py, ``model.far_end_square``): the DDT direction and its
sign on hand-computed descriptors, the mask read-out, the far-end square on a drawn mask, the
anchor, the square replacement in the model, the feature cache's projections and stage 1's fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgma.engine.backbone_cache import BackboneCache
from sgma.engine.config import ConfigError
from sgma.engine.objectness import (FarEndSquare, ObjectStats, choose_anchor_map, far_end_square, fit_object_direction,
                                    object_masks, object_projection, peaks_inside)


def centre_and_border(centre=(3.0, 0.0)) -> torch.Tensor:
    """(1, 2, 3, 3): the centre cell holds ``centre``, the 8 border cells (0, +-0.1) alternately."""
    f = torch.zeros(1, 2, 3, 3)
    f[0, :, 1, 1] = torch.tensor(centre)
    ys = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]
    for k, (y, x) in enumerate(ys):
        f[0, 1, y, x] = 0.1 if k % 2 else -0.1
    return f


def test_direction_is_the_leading_eigenvector_signed_so_the_border_projects_below_zero():
    stats = ObjectStats()
    stats.add(centre_and_border())
    mean, d = fit_object_direction(stats)
    # mean (3/9, 0); variance along x 8/9 * (1/3)^2 + 1/9 * (8/3)^2 = 8/9, along y 0.08/9
    assert torch.allclose(mean, torch.tensor([1 / 3, 0.0]), atol=1e-6)
    assert torch.allclose(d, torch.tensor([1.0, 0.0]), atol=1e-6)      # +x: the border sits at -1/3
    p = object_projection(centre_and_border(), mean, d)[0]
    assert p[1, 1] == pytest.approx(8 / 3, abs=1e-5) and p[0, 0] == pytest.approx(-1 / 3, abs=1e-5)
    # the object darker than its border: the same axis, the other sign
    stats = ObjectStats()
    stats.add(centre_and_border((-3.0, 0.0)))
    assert torch.allclose(fit_object_direction(stats)[1], torch.tensor([-1.0, 0.0]), atol=1e-6)


def test_streamed_moments_match_one_pass_pca():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(6, 4, 5, 5, generator=g) * torch.tensor([3.0, 1.0, 0.5, 0.2]).view(1, 4, 1, 1)
    one, two = ObjectStats(), ObjectStats()
    one.add(f)
    two.add(f[:2]), two.add(f[2:])
    m1, d1 = fit_object_direction(one)
    m2, d2 = fit_object_direction(two)
    assert torch.allclose(m1, m2, atol=1e-6) and torch.allclose(d1, d2, atol=1e-6)
    x = f.permute(0, 2, 3, 1).reshape(-1, 4).double().numpy()
    top = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))[1][:, -1]
    assert abs(float(np.dot(top, d1.double().numpy()))) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least two cells"):
        fit_object_direction(ObjectStats())


def test_mask_keeps_the_largest_region_above_zero():
    p = -torch.ones(1, 5, 5)
    p[0, 0, 0] = 1.0                       # a one-cell region
    p[0, 2:4, 2:5] = 2.0                   # a six-cell region
    m = object_masks(p, upsample=1)[0]
    assert m.sum() == 6 and m[2:4, 2:5].all() and not m[0, 0]
    up = object_masks(p, upsample=4)
    assert up.shape == (1, 20, 20) and not up[0, :4, :4].any()
    assert not object_masks(-torch.ones(2, 3, 3), upsample=2).any()


def test_far_end_square_on_a_drawn_bar():
    mask = np.zeros((10, 10), bool)
    mask[4, 1:9] = True                     # cells x 0.15..0.85 at y 0.45; object side 0.8
    sq = far_end_square(mask, np.array([0.15, 0.45]))
    # farthest cell (0.85, 0.45); side 0.8 / 4 = 0.2; moved back by 0.1 towards the anchor
    assert sq == pytest.approx([0.75, 0.45, 0.2])
    sq = far_end_square(mask, np.array([0.15, 0.45]), side_min=0.25)
    assert sq == pytest.approx([0.725, 0.45, 0.25])
    one = np.zeros((10, 10), bool)
    one[2, 3] = True                        # the anchor on the only cell: nowhere to move
    assert far_end_square(one, np.array([0.35, 0.25])) == pytest.approx([0.35, 0.25, 0.025])
    near = far_end_square(one, np.array([0.36, 0.25]))
    assert near[:2] == pytest.approx([0.36, 0.25])      # moved by 0.0125 but not past the anchor (0.01 away)
    assert far_end_square(np.zeros((4, 4), bool), np.array([0.5, 0.5])) is None


def test_anchor_is_the_map_whose_peaks_sit_on_the_object():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, 0, 0] = 1.0                  # map 1 peaks top left, map 2 bottom right
    maps[0, 1, 1, 1] = 1.0
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :2, :2] = True
    assert peaks_inside(maps, mask).tolist() == [[True, False]]
    assert choose_anchor_map(np.array([[1, 0], [1, 0], [0, 1]], bool)) == 0
    assert choose_anchor_map(np.array([[0, 1], [1, 1]], bool)) == 1


def test_far_end_replaces_the_other_maps_square_and_keeps_the_anchors_gradient():
    fe = FarEndSquare(2, 0.1, 0.6)
    assert not fe.fitted and fe.anchor_map is None and fe.replaced_map is None
    fe.anchor.fill_(1)
    assert fe.anchor_map == 1 and fe.replaced_map == 0
    squares = torch.tensor([[[0.5, 0.5, 0.25], [0.2, 0.2, 0.3]]], requires_grad=True)
    out = fe(torch.ones(1, 2, 2), squares)  # all positive: the whole image is the object
    far = 15.5 / 16 - 0.125 / np.sqrt(2)    # farthest cell of the 16 x 16 mask, moved back along the diagonal
    assert out[0, 0].tolist() == pytest.approx([far, far, 0.25], abs=1e-6)
    assert torch.equal(out[0, 1], squares[0, 1])
    out[0, 1].sum().backward()
    assert squares.grad[0, 1].tolist() == [1.0, 1.0, 1.0] and squares.grad[0, 0].abs().sum() == 0
    kept = fe(-torch.ones(1, 2, 2), squares)  # no object: the squares stay
    assert torch.equal(kept, squares)


def test_object_side_sizes_the_anchor_by_the_object_and_keeps_its_centre_gradient():
    fe = FarEndSquare(2, 0.1, 0.6, anchor_object_side=True)
    fe.anchor.fill_(1)
    projection = -torch.ones(1, 4, 4)
    projection[0, 1:3, 0:2] = 1.0           # the object: rows 1-2, columns 0-1 of a 4 x 4 grid
    mask = object_masks(projection)[0]
    ys, xs = np.nonzero(mask)
    obj = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) / mask.shape[0]
    assert 0.25 < obj < 1                   # the bilinear mask is about half the image across
    squares = torch.tensor([[[0.5, 0.5, 0.25], [0.3, 0.4, 0.3]]], requires_grad=True)
    out = fe(projection, squares)
    side = max(0.1, min(0.6, obj / 4))
    assert out[0, 1].tolist() == pytest.approx([0.3, 0.4, side], abs=1e-6)     # centre kept, side the object's
    assert out[0, 0, 2].item() == pytest.approx(side, abs=1e-6)                # the far end's side is the same
    out[0, 1].sum().backward()
    assert squares.grad[0, 1].tolist() == [1.0, 1.0, 0.0] and squares.grad[0, 0].abs().sum() == 0
    big = torch.ones(1, 4, 4)               # the whole image: a quarter of it
    assert fe(big, squares.detach())[0, 1, 2].item() == pytest.approx(0.25, abs=1e-6)
    assert torch.equal(fe(-torch.ones(1, 4, 4), squares), squares)      # no object: the squares stay


def test_cache_keeps_one_projection_per_image_and_mirrors_it_for_flips():
    calls = []

    def fn(x):
        calls.append(len(x))
        return x[:, 0, :3, :3] * 10             # a projection that tells left from right

    net = torch.nn.Conv2d(3, 2, 1)
    cache = BackboneCache(net, 4)
    images = torch.rand(2, 3, 4, 4)
    cache.set_object_fn(fn, torch.tensor([1.0]))
    a = cache.get(images, [7, 8], [False, False])
    assert torch.allclose(a.object_projection, images[:, 0, :3, :3] * 10)
    b = cache.get(images.flip(-1), [7, 8], [True, True])    # the same images mirrored by augmentation
    assert calls == [2] and torch.allclose(b.object_projection, a.object_projection.flip(-1))
    cache.set_object_fn(fn, torch.tensor([1.0]))             # same direction: kept
    cache.get(images, [7], [False])
    assert calls == [2]
    cache.set_object_fn(fn, torch.tensor([2.0]))             # a new direction: recomputed
    cache.get(images, [7], [False])
    assert calls == [2, 1]


def test_config_names_what_far_end_square_needs():
    from test_trainer import tiny_config
    for change in ({"n_parts": 3}, {"freeze_backbone": False}, {"use_parts": False}):
        cfg = tiny_config(far_end_square=True, freeze_backbone=True)
        for k, v in change.items():
            setattr(cfg.model, k, v)
        with pytest.raises(ConfigError, match="model.far_end_square"):
            cfg.validate()
    cfg = tiny_config()
    cfg.train.object_images = 0
    with pytest.raises(ConfigError, match="train.object_images"):
        cfg.validate()
    cfg = tiny_config(far_end_square=True, freeze_backbone=True)
    cfg.train.grouping.epochs = 0
    with pytest.raises(ConfigError, match="model.far_end_square.*stage 1"):
        cfg.validate()
    cfg = tiny_config(object_side=True)
    with pytest.raises(ConfigError, match="model.object_side.*far_end_square"):
        cfg.validate()
    cfg = tiny_config(object_size=8)
    with pytest.raises(ConfigError, match="model.object_size"):
        cfg.validate()


def test_trainer_fits_the_object_and_the_model_uses_it(tmp_path):
    from sgma.engine import events as ev
    from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from sgma.engine.data.synthetic import make_synthetic
    from sgma.engine.trainer import Trainer
    from test_trainer import tiny_config
    torch.set_num_threads(1)
    cfg = tiny_config(freeze_backbone=True, far_end_square=True, object_size=96)
    cfg.train.joint.epochs = 0
    ds = make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)
    logs = []
    for e in Trainer(cfg, tmp_path, dataset=ds).run():
        if isinstance(e, ev.Failed):
            pytest.fail(e.traceback)
        if isinstance(e, ev.Log):
            logs.append(e.message)
    fits = [m for m in logs if "far end" in m]
    assert len(fits) == 2 and "DDT" in fits[0] and "the selection run's object direction" in fits[1], logs
    chosen = model_from_checkpoint(load_checkpoint(tmp_path / "best.pt"))
    final = model_from_checkpoint(load_checkpoint(tmp_path / "final" / "best.pt"))
    assert chosen.far_end.fitted and final.far_end.fitted
    assert float(final.far_end.direction.norm()) == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(final.far_end.direction, chosen.far_end.direction)
    final.eval()
    x = torch.rand(4, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    sem = torch.as_tensor(np.asarray(ds.semantics, dtype=np.float32))
    with torch.no_grad():
        out = final(x, sem)
        plain = final.cropper(out.maps)
    a = final.anchor_map
    assert a == int(final.far_end.anchor) and final.far_end_map == 1 - a
    assert torch.allclose(out.squares[:, a], plain[:, a])
    masks = object_masks(final.object_projection(x))
    for k in range(4):
        want = far_end_square(masks[k], plain[k, a, :2].double().numpy(), cfg.model.part_side_min,
                              cfg.model.part_side_max)
        if want is not None:
            assert out.squares[k, 1 - a].tolist() == pytest.approx(want.tolist(), abs=1e-5)
    # sgma predict says which square is the far end
    import json
    from PIL import Image
    from sgma.engine.cli import main
    img = tmp_path / "bird.png"
    Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(img)
    assert main(["predict", str(tmp_path / "final" / "best.pt"), str(img), "--json", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["far_end_map"] == 1 - a


def test_pointing_of_the_far_end_part_reads_its_square_not_its_map():
    from sgma.engine.data.synthetic import make_synthetic
    from sgma.engine.evaluate import _parts, image_sizes
    ds = make_synthetic(n_train_per_class=2, n_test_seen_per_class=1, n_unseen_per_class=2, image_size=96)
    idx = [i for i, it in enumerate(ds.items) if {"head", "tail"} <= set(it.part_boxes)][:4]
    sizes = image_sizes(ds, idx)
    squares = np.zeros((len(idx), 2, 3))
    for k, i in enumerate(idx):
        for m, p in enumerate(("head", "tail")):
            x0, y0, x1, y1 = ds.items[i].part_boxes[p]
            squares[k, m] = [(x0 + x1) / 2 / sizes[k, 0], (y0 + y1) / 2 / sizes[k, 1], 0.2]
    maps = np.zeros((len(idx), 2, 8, 8), np.float32)
    maps[:, :, 0, 0] = 1.0          # every map peaks in the top-left corner, on no part
    ex = {"indices": np.array(idx), "squares": squares, "maps": maps}
    assert all(ds.items[i].part_boxes[p][0] > 96 / 8 or ds.items[i].part_boxes[p][1] > 96 / 8
               for i in idx for p in ("head", "tail"))
    plain = _parts(ds, ex, ex, 0)
    far = _parts(ds, ex, ex, 0, far_end_map=1)
    assert plain["assignment"] == far["assignment"] == {"head": "map1", "tail": "map2"}
    assert plain["pointing"] == {"head": 0.0, "tail": 0.0}
    assert far["pointing"] == {"head": 0.0, "tail": 1.0}


def test_ablation_rows_without_the_models_own_parts_drop_the_far_end():
    from sgma.engine.ablation import _variant, table4_upper_rows
    from test_trainer import tiny_config
    base = tiny_config(far_end_square=True, freeze_backbone=True)
    got = {label: _variant(base, "x", **model).model for label, model in table4_upper_rows().items()}
    assert not got["Baseline"].far_end_square and not got["Baseline+Random Parts"].far_end_square
    assert got["Parts"].far_end_square and got["Baseline+Parts"].far_end_square
    assert _variant(base, "wo_ma", use_ma_loss=False).model.far_end_square
