"""The retrain on trainval (issue 12, the xlsa17 protocol): settings chosen on the validation
fold, then the final model trained on every seen class with them. The checkpoint's classes are
the seen classes, its epochs are what selection chose, its learning rates replay the selection
run's, beta is the selected one, and a run folder opens the final model."""
from __future__ import annotations

import csv
import shutil

import pytest
import torch

from sgma.engine import events as ev
from sgma.engine.checkpoint import load_checkpoint, save_checkpoint
from sgma.engine.trainer import Trainer

from test_trainer import ds, run_all, stop_after, tiny_config  # noqa: F401  (ds: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def config(**train):
    cfg = tiny_config()
    cfg.train.lr_patience = 0            # the plateau schedule cuts the rate after any epoch that is no better
    cfg.train.joint.epochs = 4
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(scope="module")
def run(ds, tmp_path_factory):
    d = tmp_path_factory.mktemp("retrain")
    events = run_all(Trainer(config(), d, dataset=ds))
    return d, events


def epoch_rates(path):
    """(stage, epoch) -> the learning rate the epoch's steps ran with (metrics.csv step rows)."""
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "step" and r["name"] == "lr"]
    return {(r["stage"], int(r["epoch"])): float(r["value"]) for r in rows}


def test_final_model_is_trained_on_every_seen_class(ds, run):
    d, events = run
    assert (d / "final.pt").is_file() and (d / "final" / "best.pt").is_file()
    final, best = load_checkpoint(d / "final.pt"), load_checkpoint(d / "best.pt")
    seen = sorted(ds.class_names[c] for c in ds.split.seen)
    assert sorted(final["train_classes"]) == seen and final["val_classes"] == []
    assert len(best["train_classes"]) < len(seen)               # the fold run trained on fewer
    assert final["prototypes"].shape[0] == len(seen)            # Eq. 12 prototypes of every seen class
    assert isinstance(events[-1], ev.Finished) and not events[-1].stopped
    assert any(isinstance(e, ev.CheckpointSaved) and e.kind == "final" for e in events)


def test_protocol_block_says_what_the_numbers_rest_on(ds, run):
    d, _ = run
    final, best = load_checkpoint(d / "final.pt"), load_checkpoint(d / "best.pt")
    p = final["protocol"]
    assert p["train_classes"] == len(ds.split.seen) == p["seen_classes"]
    assert p["selected_on"] == "valclasses1" and p["retrained"] is True
    at, done = best["position"]["stage"], best["position"]["epoch"]
    stages = ["warmup", "grouping", "pretrain_parts", "joint"]
    planned = {"warmup": 1, "grouping": 1, "pretrain_parts": 2, "joint": 4}     # config()'s stages
    want = {s: (planned[s] if i < at else done if i == at else 0) for i, s in enumerate(stages)}
    assert p["epochs"] == want
    assert p["beta"] == best["beta"] == final["beta"]          # Eq. 13's beta is the one chosen on the fold
    assert best["protocol"]["retrained"] is False and best["protocol"]["final_checkpoint"] == "final.pt"
    assert best["protocol"]["train_classes"] == len(best["train_classes"])
    # the final run trained exactly those epochs
    assert final["position"]["stage"] == max(i for i, s in enumerate(stages) if want[s])


def test_retrain_replays_the_selection_runs_learning_rates(ds, tmp_path):
    """The selection run's per-epoch rate factors (stored in best.pt) drive the retrain; here
    they are set by hand so every epoch has its own rate, and the retrain is redone by resuming."""
    run_all(Trainer(config(), tmp_path, dataset=ds))
    fold = epoch_rates(tmp_path / "metrics.csv")
    assert fold                                       # the fold run logs its rates
    best = load_checkpoint(tmp_path / "best.pt")
    history = {"warmup": [1.0], "pretrain_parts": [1.0, 0.5], "joint": [1.0, 0.1, 0.01, 0.001]}
    assert set(best["lr_history"]) == set(history) and all(v[0] == 1.0 for v in best["lr_history"].values())
    best["lr_history"] = history
    best.pop("format_version")
    save_checkpoint(best, tmp_path / "best.pt")
    shutil.rmtree(tmp_path / "final")
    (tmp_path / "final.pt").unlink()
    run_all(Trainer(config(), tmp_path, dataset=ds, resume=True))
    final = epoch_rates(tmp_path / "final" / "metrics.csv")
    lr = 0.05                                        # the tiny preset's train.lr; no stage sets its own
    want = {(s, e): lr * f for s, fs in history.items() for e, f in enumerate(fs)}
    assert final and all(final[k] == pytest.approx(want[k]) for k in final), (final, want)
    assert len(set(final.values())) > 1


def test_run_folder_opens_the_final_model(run):
    d, _ = run
    assert load_checkpoint(d)["protocol"]["retrained"] is True


def test_fold_only_run_keeps_best_pt_as_the_model(ds, tmp_path):
    run_all(Trainer(config(retrain_on_trainval=False), tmp_path, dataset=ds))
    assert not (tmp_path / "final.pt").exists() and not (tmp_path / "final").exists()
    assert "protocol" not in load_checkpoint(tmp_path)


def test_stop_during_the_retrain_resumes_into_the_final_model(ds, tmp_path):
    n_fold_steps = 3 * 7            # 3 steps per epoch, 1 + 2 + 4 gradient epochs
    first = run_all(Trainer(config(), tmp_path, dataset=ds), stop_after(n_fold_steps + 2))
    assert isinstance(first[-1], ev.Finished) and first[-1].stopped
    assert (tmp_path / "final" / "last.pt").is_file() and not (tmp_path / "final.pt").exists()
    second = run_all(Trainer(config(), tmp_path, dataset=ds, resume=True))
    assert isinstance(second[-1], ev.Finished) and not second[-1].stopped
    assert load_checkpoint(tmp_path / "final.pt")["protocol"]["retrained"] is True


def test_evaluation_summary_carries_the_protocol(ds, run, tmp_path):
    """The evaluation JSON's ``protocol`` (and the CLI's summary line) says on how many of the
    seen classes the model was trained and what selection chose."""
    from sgma.engine.checkpoint import model_from_checkpoint
    from sgma.engine.cli import summary_lines
    from sgma.engine.evaluate import evaluate
    d, _ = run
    n_seen = len(ds.split.seen)
    final = load_checkpoint(d / "final.pt")
    s = evaluate(model_from_checkpoint(final), final, ds).summary
    assert s["protocol"]["train_classes"] == s["protocol"]["seen_classes"] == n_seen
    assert s["protocol"]["retrained"] is True and s["protocol"]["epochs"] == final["protocol"]["epochs"]
    line = next(x for x in summary_lines(s) if x.startswith("protocol:"))
    assert f"trained on {n_seen} of {n_seen} seen classes (retrained on all after selection)" in line
    assert "selected on valclasses1" in line
    best = load_checkpoint(d / "best.pt")
    s = evaluate(model_from_checkpoint(best), best, ds).summary
    assert s["protocol"]["train_classes"] == len(best["train_classes"]) < n_seen
    assert s["protocol"]["retrained"] is False
    # a checkpoint without a protocol record (an earlier trainer's): derived from its configuration
    best.pop("protocol")
    s = evaluate(model_from_checkpoint(best), best, ds).summary
    assert s["protocol"]["selected_on"] == "valclasses1" and s["protocol"]["epochs"] is None
    assert s["protocol"]["position"]["stage"] == best["position"]["stage"]
    assert s["protocol"]["beta"] == best["beta"]
