"""The engine's decoding of an evaluation for its readers (the app's tiles, badges, confusion
click-through and audit): hand-built Evaluation objects and boxes, answers worked out by hand."""
import numpy as np
import pytest

from sgma.engine.evaluate import Evaluation, match_parts_on_image


def _evaluation():
    # 6 dataset images; images 1, 2, 4 were evaluated; 4 is an unseen test image
    preds = {"combined": {"indices": [1, 2, 4], "zsl": [7, 8, 9], "gzsl": [3, 2, 5]},
             "compatibility": {"indices": [1, 2, 4], "zsl": [0, 0, 0], "gzsl": [0, 0, 0]}}
    summary = {"inference": "combined", "parts": {"assignment": {"head": "map2", "tail": "map1", "x": "weird"}},
               "confusion": {"classes": []}}
    return Evaluation(summary, preds, part_iou={"head": np.array([0.5, np.nan, 0.9])})


def test_predicted_per_image_is_zsl_for_unseen_gzsl_for_seen_under_the_default_mode():
    ev = _evaluation()
    assert ev.predicted_per_image(6, unseen=[4]).tolist() == [-1, 3, 2, -1, 9, -1]
    ev.summary["inference"] = "compatibility"
    assert ev.predicted_per_image(6, unseen=[4]).tolist() == [-1, 0, 0, -1, 0, -1]
    ev.summary["inference"] = "centre"                      # a mode that was not evaluated
    assert ev.default_predictions() is None and ev.predicted_per_image(3, []).tolist() == [-1, -1, -1]


def test_part_iou_per_image_and_map_assignment():
    ev = _evaluation()
    full = ev.part_iou_per_image(6)["head"]
    assert np.isnan(full[[0, 2, 3, 5]]).all() and full[1] == 0.5 and full[4] == 0.9
    assert ev.map_assignment() == {1: "head", 0: "tail"}           # "weird" is not a map name


def test_zsl_cell_picks_true_and_predicted_class():
    ev = _evaluation()
    labels = np.array([0, 7, 8, 0, 1, 0])
    assert ev.zsl_cell(7, 7, labels).tolist() == [1]                # image 1: true 7, ZSL 7
    assert ev.zsl_cell(1, 9, labels).tolist() == [4]
    assert ev.zsl_cell(8, 7, labels).tolist() == []


def test_match_parts_on_image_uses_the_assignment_then_the_best_free_map():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 5]], dtype=float)
    gt = {"head": (0, 0, 10, 10), "tail": (20, 20, 30, 40)}
    # no assignment: head takes map 0 (IoU 1), tail the best of the rest, map 1 (100 / 200)
    assert match_parts_on_image(boxes, gt, {}) == [("head", 0, 1.0), ("tail", 1, 0.5)]
    # head assigned to map 2 (IoU 50 / 100); map 2 is then not free for the tail
    pairs = match_parts_on_image(boxes, gt, {2: "head"})
    assert pairs[0] == ("head", 2, pytest.approx(0.5)) and pairs[1][:2] == ("tail", 1)
    # a part with no free map left is skipped
    assert match_parts_on_image(boxes[:1], gt, {}) == [("head", 0, 1.0)]
