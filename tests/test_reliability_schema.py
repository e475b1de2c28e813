"""Checkpoint schema (issue 16): a readable file whose dict lacks a key, has a wrong type, asks for
absurd sizes or holds NaN/inf values is a CheckpointError naming the file and the key; damaged
bytes of any kind raise only CheckpointError (hypothesis); the efficientnet weights path loads
with weights_only. The checkpoints are built in the trainer's format from an untrained tiny model."""
from __future__ import annotations

import io
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgma.engine.checkpoint import MAX_SIZES, MIN_ZERO, CheckpointError, load_checkpoint, save_checkpoint
from sgma.engine.cli import main
from sgma.engine.config import RunConfig, preset, to_dict
from sgma.engine.data.synthetic import make_synthetic
from sgma.engine.model import SGMA

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def good_state():
    torch.set_num_threads(1)
    ds = make_synthetic(n_train_per_class=2, n_test_seen_per_class=1, n_unseen_per_class=1, image_size=96)
    cfg = preset("tiny")
    train = list(ds.split.train_classes or ds.split.seen)
    model = SGMA(cfg.model, ds.semantics.shape[1], len(train))
    return {"config": to_dict(RunConfig(model=cfg.model, data=cfg.data)), "class_names": list(ds.class_names),
            "attribute_names": list(ds.attribute_names),
            "semantics": torch.as_tensor(ds.semantics, dtype=torch.float32),
            "train_classes": [ds.class_names[c] for c in train],
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "prototypes": torch.zeros(len(train), 8), "beta": 0.5, "best_metric": -math.inf,
            "position": {"stage": 0, "epoch": 1, "batch": 0, "global_step": 4}}


@pytest.fixture(scope="module")
def good_bytes(good_state):
    buf = io.BytesIO()
    torch.save({"format_version": 1, **good_state}, buf)
    return buf.getvalue()


def _copy(state: dict) -> dict:
    out = dict(state)
    out["config"] = {k: dict(v) if isinstance(v, dict) else v for k, v in state["config"].items()}
    out["model"] = dict(state["model"])
    return out


def test_the_valid_state_loads(good_state, tmp_path):
    save_checkpoint(good_state, tmp_path / "ok.pt")
    assert load_checkpoint(tmp_path / "ok.pt")["beta"] == 0.5


@pytest.mark.parametrize("key", ["config", "model", "class_names", "attribute_names", "train_classes",
                                 "semantics"])
def test_missing_key_is_named(good_state, tmp_path, key):
    state = _copy(good_state)
    del state[key]
    save_checkpoint(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=f"c.pt: .*{key}"):
        load_checkpoint(tmp_path / "c.pt")


def _edit(state, how):
    s = _copy(state)
    first = next(iter(s["model"]))
    edits = {
        "version-str": lambda: s.__setitem__("format_version", "1"),
        "config-str": lambda: s.__setitem__("config", "model"),
        "config-no-data": lambda: s["config"].pop("data"),
        "model-list": lambda: s.__setitem__("model", [1, 2]),
        "weight-str": lambda: s["model"].__setitem__(first, "w"),
        "names-str": lambda: s.__setitem__("class_names", "abc"),
        "names-dup": lambda: s.__setitem__("attribute_names", ["a"] * len(s["attribute_names"])),
        "train-unknown": lambda: s.__setitem__("train_classes", s["train_classes"][:-1] + ["nope"]),
        "sem-shape": lambda: s.__setitem__("semantics", s["semantics"][:, :-1]),
        "sem-1d": lambda: s.__setitem__("semantics", s["semantics"].reshape(-1)),
        "proto-rows": lambda: s.__setitem__("prototypes", torch.zeros(1, 8)),
        "beta-str": lambda: s.__setitem__("beta", "1"),
        "position": lambda: s.__setitem__("position", {"stage": -1, "epoch": 0, "batch": 0, "global_step": 0}),
        "bad-config-type": lambda: s["config"]["model"].__setitem__("n_parts", "2"),
        "unknown-config-key": lambda: s["config"]["model"].__setitem__("evil", 1),
    }
    edits[how]()
    return s


EXPECT = {"version-str": "format_version must be a positive integer", "config-str": "'config' must be a table",
          "config-no-data": "'data' tables", "model-list": "'model' must be a non-empty table",
          "weight-str": "must be a tensor", "names-str": "'class_names' must be a list",
          "names-dup": "'attribute_names' lists a name twice", "train-unknown": "'train_classes' names classes not",
          "sem-shape": "'semantics' has shape", "sem-1d": "'semantics' has shape",
          "proto-rows": "'prototypes' has shape", "beta-str": "'beta' must be a finite number",
          "position": "'position' must hold", "bad-config-type": "'model.n_parts' must be an integer",
          "unknown-config-key": "unknown config key 'model.evil'"}


@pytest.mark.parametrize("how", sorted(EXPECT))
def test_wrong_type_or_shape_is_named(good_state, tmp_path, how):
    state = _edit(good_state, how)
    path = tmp_path / "c.pt"
    torch.save({"format_version": 1, **state} if how != "version-str" else state, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and EXPECT[how] in str(e.value), str(e.value)


@pytest.mark.parametrize("key", sorted(MAX_SIZES))
def test_absurd_sizes_are_refused_before_any_allocation(good_state, tmp_path, key):
    state = _copy(good_state)
    state["config"]["model"][key] = 200_000
    save_checkpoint(state, tmp_path / "c.pt")
    low = 0 if key in MIN_ZERO else 1
    with pytest.raises(CheckpointError, match=f"model.{key} = 200000 is outside {low}..{MAX_SIZES[key]}"):
        load_checkpoint(tmp_path / "c.pt")


@pytest.mark.parametrize("where", ["weights", "semantics", "prototypes", "beta"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(good_state, tmp_path, where, value):
    state = _copy(good_state)
    if where == "weights":
        k = next(k for k, v in state["model"].items() if v.is_floating_point())
        t = state["model"][k].clone()
        t.view(-1)[0] = value
        state["model"][k] = t
        name = f"model.{k}"
    elif where == "beta":
        state["beta"], name = value, "beta"
    else:
        t = state[where].clone()
        t.view(-1)[-1] = value
        state[where], name = t, where
    save_checkpoint(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="NaN or infinite|finite number") as e:
        load_checkpoint(tmp_path / "c.pt")
    assert repr(name) in str(e.value) and "c.pt" in str(e.value)


def test_cli_evaluate_on_a_schema_error_exits_2(good_state, tmp_path, capsys):
    state = _copy(good_state)
    state["config"]["model"]["attention_size"] = 200_000
    save_checkpoint(state, tmp_path / "c.pt")
    assert main(["evaluate", str(tmp_path / "c.pt")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and "attention_size = 200000" in err


@FUZZ
@given(cuts=st.lists(st.tuples(st.integers(0, 10**9), st.binary(min_size=1, max_size=8)), min_size=1, max_size=6),
       truncate=st.one_of(st.none(), st.integers(0, 10**9)))
def test_damaged_bytes_raise_only_checkpoint_error(good_bytes, tmp_path, cuts, truncate):
    """Overwrite a few spans of a valid checkpoint (and maybe cut it): loading either succeeds
    with a valid state or raises CheckpointError naming the file; never IndexError, KeyError..."""
    data = bytearray(good_bytes)
    for at, chunk in cuts:
        at %= len(data)
        data[at:at + len(chunk)] = chunk
    if truncate is not None:
        data = data[: truncate % len(data)]
    path = tmp_path / "fuzz.pt"
    path.write_bytes(bytes(data))
    try:
        load_checkpoint(path)
    except CheckpointError as e:
        assert str(path) in str(e)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_checkpoint_error(tmp_path, data):
    path = tmp_path / "rand.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_efficientnet_weights_are_loaded_with_weights_only(tmp_path):
    """The third-party EfficientNet.from_pretrained calls torch.load without weights_only; the
    backbone reads the file itself: a hostile weights file is refused and its code never runs."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from sgma.engine.backbones import _efficientnet_lite0_net
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"_fc.weight": torch.zeros(1), "x": Payload(marker)}, evil)
    with pytest.raises(ValueError, match="evil.pth: not a loadable weights file"):
        _efficientnet_lite0_net(str(evil))
    assert not marker.exists()
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="wrong.pth: weights do not fit efficientnet_lite0"):
        _efficientnet_lite0_net(str(wrong))


def test_run_position_round_trip_and_its_fields_are_the_schema():
    from sgma.engine.checkpoint import POSITION_FIELDS, RunPosition
    assert POSITION_FIELDS == ("stage", "epoch", "batch", "global_step")
    p = RunPosition.from_dict({"stage": 3, "epoch": 1, "batch": 7, "global_step": 40, "other": 1})
    assert p == RunPosition(3, 1, 7, 40) and p.to_dict() == {"stage": 3, "epoch": 1, "batch": 7, "global_step": 40}
    with pytest.raises(KeyError):
        RunPosition.from_dict({"stage": 0, "epoch": 0, "batch": 0})
