"""The evaluator scores a folder of test images alone: the class-centre branch (Eq. 12-13) starts
from the seen-class prototypes stored in the checkpoint, not from training images of the folder."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sgma.engine import events as ev
from sgma.engine.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from sgma.engine.data.synthetic import make_synthetic
from sgma.engine.evaluate import (centred_square_iou, class_prototypes, evaluate, peak_inside, point_inside,
                                  prototypes_from_seen)
from sgma.engine.trainer import Trainer

from test_trainer import tiny_config


def test_prototypes_from_seen_by_hand():
    # 3 classes, 2 attributes; classes 0 and 1 trained. Class 2's semantics = class 0's + class 1's,
    # so with a tiny ridge lambda W ~ [1, 1] and its prototype ~ the sum of the two seen ones.
    sem = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    seen = np.array([[2.0, 0.0, 1.0], [0.0, 4.0, 1.0]])
    p = prototypes_from_seen(seen, [0, 1], sem, ridge_lambda=1e-9)
    assert p[:2] == pytest.approx(seen)
    assert p[2] == pytest.approx([2.0, 4.0, 2.0], abs=1e-6)
    # the mean path gives the same matrix from per-image features
    cct = np.array([[1.0, 0.0, 1.0], [3.0, 0.0, 1.0], [0.0, 4.0, 1.0]])
    assert class_prototypes(cct, np.array([0, 0, 1]), [0, 1], sem, 1e-9) == pytest.approx(p)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    ds = make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)
    out = tmp_path_factory.mktemp("run")
    for e in Trainer(tiny_config(), out, dataset=ds).run():
        assert not isinstance(e, ev.Failed), e
    return ds, load_checkpoint(out / "best.pt")


def test_test_only_folder_evaluates_like_the_full_dataset(trained):
    ds, state = trained
    model = model_from_checkpoint(state)
    full = evaluate(model, state, ds).summary
    sp = dataclasses.replace(ds.split, trainval=[], val_classes=[], train_classes=[])
    test_only = dataclasses.replace(ds, split=sp)
    got = evaluate(model, state, test_only).summary
    assert got["beta"] == state["beta"]                  # no validation classes: the stored beta
    for mode in ("compatibility", "center"):             # beta-free modes: identical
        assert got["modes"][mode]["zsl"]["mca"] == pytest.approx(full["modes"][mode]["zsl"]["mca"])
        assert got["modes"][mode]["gzsl"]["h"] == pytest.approx(full["modes"][mode]["gzsl"]["h"])
    assert got["parts"]["assigned_on"].startswith("the test images")


def test_without_stored_prototypes_and_training_images_the_error_says_why(trained):
    ds, state = trained
    state = dict(state)
    state.pop("prototypes")
    sp = dataclasses.replace(ds.split, trainval=[], val_classes=[], train_classes=[])
    with pytest.raises(CheckpointError, match="stores no class prototypes"):
        evaluate(model_from_checkpoint(state), state, dataclasses.replace(ds, split=sp))


def test_peak_inside_by_hand():
    maps = np.zeros((2, 4, 4))
    maps[0, 1, 2] = 1.0      # cell centre (2.5, 1.5) of 4 -> pixels (25, 15) of a 40 x 40 image
    maps[1, 3, 0] = 1.0      # (0.5, 3.5) / 4 * (40, 20) -> (5, 17.5)
    sizes = np.array([[40.0, 40.0], [40.0, 20.0]])
    got = peak_inside(maps, [(20, 10, 30, 20), (10, 10, 20, 20)], sizes)
    assert got.tolist() == [True, False]


def test_point_inside_by_hand_edges_count_as_inside():
    sizes = np.array([[40.0, 20.0]] * 3)
    box = (10, 10, 20, 20)
    # (0.25, 0.5) -> (10, 10): the box's corner; (0.5, 1.0) -> (20, 20): the opposite one; (0.51, 0.5) -> x 20.4
    got = point_inside(np.array([[0.25, 0.5], [0.5, 1.0], [0.51, 0.5]]), [box] * 3, sizes)
    assert got.tolist() == [True, True, False]


def test_centred_square_iou_by_hand():
    # a 10 x 10 box in a 100 x 100 image; a square of side 0.1 on it: IoU 1; of side 0.2: 100 / 400
    sizes = np.array([[100.0, 100.0], [100.0, 100.0]])
    got = centred_square_iou([(40, 40, 50, 50), (40, 40, 50, 50)], sizes, np.array([0.1, 0.2]))
    assert got == pytest.approx([1.0, 0.25])


def test_evaluation_json_has_pointing_and_ceiling(trained):
    ds, state = trained
    parts = evaluate(model_from_checkpoint(state), state, ds).summary["parts"]
    for key in ("pointing", "ceiling"):
        assert set(parts[key]) == {"head", "tail"}
        assert all(0.0 <= v <= 1.0 for v in parts[key].values())
    # the ceiling of a centred square is at least what the model's squares reach
    assert all(parts["ceiling"][p] >= parts[p] for p in ("head", "tail"))


def test_without_validation_images_maps_are_assigned_on_training_images(trained):
    ds, state = trained
    sp = dataclasses.replace(ds.split, val_classes=[])
    parts = evaluate(model_from_checkpoint(state), state, dataclasses.replace(ds, split=sp)).summary["parts"]
    assert parts["assigned_on"] == "training images"


def test_a_retrained_model_assigns_maps_on_a_sample_of_the_training_images(trained, monkeypatch):
    """Every seen class trained, no validation images: only the map-to-part assignment reads
    training images, from a seeded sample of at most ASSIGN_IMAGES; the scores are unchanged."""
    import sgma.engine.evaluate as E
    ds, state = trained
    sp = dataclasses.replace(ds.split, val_classes=[])
    d = dataclasses.replace(ds, split=sp)
    model = model_from_checkpoint(state)
    full = evaluate(model, state, d).summary
    totals = []
    monkeypatch.setattr(E, "ASSIGN_IMAGES", 5)
    small = evaluate(model, state, d, progress=lambda done, total: totals.append(total)).summary
    n_train = sum(1 for i in sp.trainval if ds.class_names[ds.labels[i]] in set(state["train_classes"]))
    assert small["parts"]["assigned_on"] == f"a seeded sample of 5 of the {n_train} training images"
    assert totals[-1] == 5 + len(sp.test_seen) + len(sp.test_unseen)
    assert small["zsl"] == full["zsl"] and small["gzsl"] == full["gzsl"]


def test_assign_parts_by_hand():
    """Each ground-truth part gets the distinct map whose squares overlap it best on average:
    map 1 sits on the head boxes and map 0 on the tail boxes, so head -> 1, tail -> 0, even
    though map 0 also touches one head box."""
    from sgma.engine.evaluate import assign_parts
    boxes = np.array([[[0, 0, 10, 10], [20, 20, 30, 30]],        # image 0: map 0, map 1 (x0, y0, x1, y1)
                      [[5, 5, 15, 15], [40, 40, 50, 50]]], dtype=float)
    gt = {"head": [(20, 20, 30, 30), (40, 40, 50, 50)],          # map 1 exactly
          "tail": [(0, 0, 10, 10), (5, 5, 15, 15)]}              # map 0 exactly
    assert assign_parts(boxes, gt, ["head", "tail"]) == {"head": 1, "tail": 0}
    gt["tail"] = [None, None]                                    # a part never visible scores 0 wherever it goes
    assert assign_parts(boxes, gt, ["head", "tail"])["head"] == 1


def test_gzsl_accuracies_by_hand():
    """A_U and A_S are mean class accuracies over the unseen and seen test images, each argmax
    over seen + unseen classes, and H their harmonic mean."""
    from sgma.engine.evaluate import _gzsl
    y = np.array([0, 0, 1, 2, 2, 3])                 # classes 0, 1 seen; 2, 3 unseen
    pred = np.array([0, 2, 1, 2, 0, 3])
    is_unseen = np.isin(y, [2, 3])
    g = _gzsl(y, pred, is_unseen)
    # seen: class 0 1/2, class 1 1/1 -> 0.75; unseen: class 2 1/2, class 3 1/1 -> 0.75
    assert g["seen"] == pytest.approx(0.75) and g["unseen"] == pytest.approx(0.75)
    assert g["h"] == pytest.approx(0.75)
    g = _gzsl(y, np.array([0, 0, 1, 0, 0, 0]), is_unseen)   # every unseen image called seen
    assert g["seen"] == pytest.approx(1.0) and g["unseen"] == 0.0 and g["h"] == 0.0
