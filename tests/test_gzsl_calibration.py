"""Calibrated stacking's gamma chosen on a GZSL validation split (``train.gzsl_holdout``): the
hand-computed choice, the holdout split, and a training run that stores the gamma, hands it to
the final model, and the evaluator reports under its own key beside the paper's headline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sgma.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sgma.engine.config import ConfigError
from sgma.engine.evaluate import choose_gamma, evaluate
from sgma.engine.checkpoint import model_from_checkpoint
from sgma.engine.trainer import Trainer, holdout_split

from test_trainer import ds, run_all, tiny_config  # noqa: F401  (ds: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_choose_gamma_on_a_hand_computed_split():
    # classes 0, 1 seen; 2, 3 unseen. Each row's best seen and best unseen class are right, so
    # only the seen-or-unseen decision (margin = best seen - best unseen >= gamma) matters.
    scores = np.array([[5.0, 0.0, 1.0, 0.0],     # seen 0, margin 4
                       [0.0, 3.0, 0.0, 2.0],     # seen 1, margin 1
                       [4.0, 0.0, 3.5, 0.0],     # unseen 2, margin 0.5
                       [0.0, 2.0, 0.0, 0.0]])    # unseen 3, margin 2 (its best unseen is class 2: 0 = 0, first)
    labels = np.array([0, 1, 2, 3])
    gamma, rec = choose_gamma(scores, labels, [0, 1], [2, 3])
    # margins sorted 0.5, 1, 2, 4; gamma 0: all seen, A_U 0, H 0. Between 0.5 and 1 (0.75): image 3
    # goes to unseen class 2 (right); A_U = (1 + 0) / 2, A_S = 1, H = 2/3. Between 1 and 2 (1.5):
    # image 2 goes unseen too, A_S = 1/2, H = 1/2. So 0.75.
    assert gamma == pytest.approx(0.75)
    assert rec["chosen"] == pytest.approx({"unseen": 0.5, "seen": 1.0, "h": 2 / 3})
    assert rec["uncalibrated"]["h"] == 0.0 and rec["uncalibrated"]["seen"] == 1.0
    assert rec["n_seen_images"] == 2 and rec["n_unseen_images"] == 2


def test_choose_gamma_ties_go_to_the_smallest_change():
    # already balanced: gamma 0 is as good as any other, so 0 it is
    scores = np.array([[2.0, 0.0], [0.0, 2.0]])
    gamma, rec = choose_gamma(scores, np.array([0, 1]), [0], [1])
    assert gamma == 0.0 and rec["chosen"]["h"] == 1.0
    # seen scores too low: a negative gamma raises them
    scores = np.array([[1.0, 2.0], [0.0, 2.0]])
    gamma, rec = choose_gamma(scores, np.array([0, 1]), [0], [1])
    assert gamma < -1.0 and gamma > -2.0 and rec["chosen"]["h"] == 1.0


def test_choose_gamma_needs_both_sides():
    with pytest.raises(ValueError, match="both sides"):
        choose_gamma(np.zeros((2, 2)), np.array([0, 0]), [0], [1])


def test_holdout_split_takes_a_share_of_every_class_and_never_its_last_image():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
    idx = list(range(14))
    kept, held = holdout_split(idx, labels, 0.2, seed=0)
    assert sorted(kept + held) == idx and not set(kept) & set(held)
    assert [int((labels[held] == c).sum()) for c in range(3)] == [2, 1, 0]   # round(0.2 n), class 2 keeps its one
    assert kept == sorted(kept) and held == sorted(held)
    assert holdout_split(idx, labels, 0.2, seed=0) == (kept, held)          # the seed decides
    assert holdout_split(idx, labels, 0.2, seed=1) != (kept, held)


def test_holdout_share_is_checked_by_name():
    cfg = tiny_config()
    cfg.train.gzsl_holdout = 1.0
    with pytest.raises(ConfigError, match="train.gzsl_holdout"):
        cfg.validate()


@pytest.fixture(scope="module")
def run(ds, tmp_path_factory):
    d = tmp_path_factory.mktemp("gzsl")
    cfg = tiny_config()
    cfg.train.gzsl_holdout = 0.34
    t = Trainer(cfg, d, dataset=ds)
    run_all(t)
    return d, t


def test_selection_run_holds_images_out_and_stores_gamma(ds, run):
    d, t = run
    seen_train = [i for i in ds.split.trainval if ds.labels[i] in set(t.train_classes)]
    assert sorted(t.train_idx + t.holdout_idx) == sorted(seen_train)
    assert len(t.holdout_idx) == 2 * len(t.train_classes)        # round(0.34 * 6) of each class's 6
    assert json.loads((d / "run.json").read_text())["gzsl_holdout_images"] == len(t.holdout_idx)
    best, final = load_checkpoint(d / "best.pt"), load_checkpoint(d / "final.pt")
    rec = best["gzsl_gamma_validation"]
    assert np.isfinite(best["gzsl_gamma"]) and rec["mode"] == t.cfg.inference.mode
    assert rec["n_seen_images"] == len(t.holdout_idx) and rec["n_unseen_images"] == len(t.val_idx)
    assert rec["chosen"]["h"] >= rec["uncalibrated"]["h"]
    # the final model inherits it, as it inherits beta, and says so in its protocol
    assert final["gzsl_gamma"] == best["gzsl_gamma"] == final["protocol"]["gzsl_gamma"]
    # ... and trained on every seen image, the held-out ones too
    assert sorted(final["train_classes"]) == sorted(ds.class_names[c] for c in ds.split.seen)


def test_evaluator_reports_the_stored_gamma_beside_the_headline(ds, run):
    d, _ = run
    state = load_checkpoint(d / "final.pt")
    s = evaluate(model_from_checkpoint(state, torch.device("cpu")), state, ds).summary
    mode = s["inference"]
    cal = s["gzsl_calibrated"]
    assert cal == s["modes"][mode]["gzsl_calibrated"]
    assert cal["gamma"] == state["gzsl_gamma"] and cal["gamma_from"] == "validation"
    assert all("gzsl_calibrated" not in r for m, r in s["modes"].items() if m != mode)
    from sgma.engine.cli import summary_lines
    line = [x for x in summary_lines(s) if x.startswith("GZSL, calibrated stacking")]
    assert line == [f"GZSL, calibrated stacking (gamma {cal['gamma']:.4g}, chosen on validation): "
                    f"A_U {cal['unseen']:.3f}  A_S {cal['seen']:.3f}  H {cal['h']:.3f}"]
    # gamma 0 would be the headline itself; the stored gamma is applied to the same scores
    state0 = {**state, "gzsl_gamma": 0.0}
    s0 = evaluate(model_from_checkpoint(state0, torch.device("cpu")), state0, ds).summary
    assert s0["gzsl_calibrated"]["h"] == pytest.approx(s0["gzsl"]["h"])
    assert s0["gzsl"] == s["gzsl"]                       # the headline does not move with gamma
    # a gamma the user gives wins, for every mode
    s_user = evaluate(model_from_checkpoint(state, torch.device("cpu")), state, ds, calibration_gamma=1e6).summary
    assert all(r["gzsl_calibrated"]["gamma_from"] == "user" for r in s_user["modes"].values())
    assert s_user["gzsl_calibrated"]["seen"] == 0.0       # every seen score pushed below every unseen one


def test_a_non_finite_gamma_in_a_checkpoint_is_refused_by_name(run, tmp_path):
    d, _ = run
    state = load_checkpoint(d / "best.pt")
    state["gzsl_gamma"] = float("nan")
    save_checkpoint(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="gzsl_gamma"):
        load_checkpoint(tmp_path / "bad.pt")
