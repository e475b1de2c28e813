"""Stage options and the stored Eq. 13 beta: ``localisation_lr_scale`` gives the attention and
cropping subnets their own learning rate (0 holds them fixed), and a trained ``best.pt`` carries
the beta chosen on the validation classes, which the predictor and the evaluator use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgma.engine import events as ev
from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
from sgma.engine.config import ConfigError, InferenceConfig
from sgma.engine.data.synthetic import make_synthetic
from sgma.engine.evaluate import BETA_GRID, evaluate
from sgma.engine.predict import Predictor
from sgma.engine.trainer import Trainer

from test_trainer import run_all, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds():
    return make_synthetic(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)


def _localisation(model) -> dict[str, torch.Tensor]:
    return {f"{mod}.{k}": v.detach().clone() for mod in ("attention", "cropper")
            for k, v in getattr(model, mod).named_parameters()}


def test_scale_sets_the_learning_rate_of_exactly_the_localisation_parameters(ds, tmp_path):
    cfg = tiny_config()
    cfg.train.joint.localisation_lr_scale = 0.25
    t = Trainer(cfg, tmp_path, dataset=ds)
    t._setup()
    opt, _ = t._make_optim("joint", 0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.0025]
    local = {id(p) for m in (t.model.attention, t.model.cropper) for p in m.parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == local
    assert not local & {id(p) for p in opt.param_groups[0]["params"]}


def test_cropping_scale_multiplies_the_localisation_scale_for_the_cropping_net_only(ds, tmp_path):
    cfg = tiny_config()
    cfg.train.joint.localisation_lr_scale = 0.5
    cfg.train.joint.cropping_lr_scale = 0.1
    t = Trainer(cfg, tmp_path, dataset=ds)
    t._setup()
    opt, _ = t._make_optim("joint", 0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.005, 0.0005])
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in t.model.attention.parameters()}
    assert {id(p) for p in opt.param_groups[2]["params"]} == {id(p) for p in t.model.cropper.parameters()}
    cfg.train.joint.cropping_lr_scale = 0.0       # the cropper held, the attention trains
    opt, _ = t._make_optim("joint", 0.01)
    held = {id(p) for p in t.model.cropper.parameters()}
    assert not held & {id(p) for g in opt.param_groups for p in g["params"]}
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.005])
    cfg.train.joint.cropping_lr_scale = -0.5
    with pytest.raises(ConfigError, match="train.joint.cropping_lr_scale"):
        cfg.validate()


def test_scale_zero_holds_attention_and_cropper_while_the_rest_trains(ds, tmp_path):
    cfg = tiny_config()
    cfg.train.joint.localisation_lr_scale = 0.0
    cfg.train.retrain_on_trainval = False     # one pass: the events below are the selection run's
    t = Trainer(cfg, tmp_path, dataset=ds)
    seen = {}

    def at_joint_start(trainer, e, events):
        if isinstance(e, ev.StageStarted) and e.stage == "joint":
            seen["local"] = _localisation(trainer.model)
            seen["part"] = [p.detach().clone() for p in trainer.model.part_nets.parameters()]

    run_all(t, at_joint_start)
    after = _localisation(t.model)
    assert seen["local"].keys() == after.keys()
    for k, v in after.items():
        assert torch.equal(v, seen["local"][k]), k
    moved = [not torch.equal(a, b) for a, b in zip(seen["part"], t.model.part_nets.parameters())]
    assert any(moved)


def test_negative_scale_is_refused_by_name():
    cfg = tiny_config()
    cfg.train.joint.localisation_lr_scale = -1.0
    with pytest.raises(ConfigError, match="train.joint.localisation_lr_scale"):
        cfg.validate()


@pytest.fixture(scope="module")
def trained(ds, tmp_path_factory):
    d = tmp_path_factory.mktemp("beta")
    run_all(Trainer(tiny_config(), d, dataset=ds))
    return load_checkpoint(d / "best.pt")


def test_best_checkpoint_stores_the_beta_the_evaluator_chooses(ds, trained):
    assert trained["beta"] in set(BETA_GRID) | {1.0}
    assert set(trained["beta_validation"]) == {str(b) for b in sorted(set(BETA_GRID) | {1.0})}
    model = model_from_checkpoint(trained)
    summary = evaluate(model, trained, ds).summary
    assert summary["beta"] == pytest.approx(trained["beta"])
    assert summary["beta_validation"] == pytest.approx(trained["beta_validation"])


def test_predictor_scores_with_the_stored_beta(ds, trained):
    image = ds.load_image(ds.split.test_unseen[0])
    model = model_from_checkpoint(trained)
    combined = {}
    for beta in (0.0, 3.0, 6.0):
        p = Predictor(model, {**trained, "beta": beta})
        assert p.beta == beta
        combined[beta] = p.predict(image, mode="combined").scores
    compat = Predictor(model, trained).predict(image, mode="compatibility").scores
    np.testing.assert_allclose(combined[0.0], compat, atol=1e-6)
    centre = (combined[3.0] - compat) / 3.0                  # Eq. 13: compat + beta * centre similarity
    np.testing.assert_allclose((combined[6.0] - compat) / 6.0, centre, atol=1e-5)
    assert np.abs(centre).max() > 1e-3
    legacy = {k: v for k, v in trained.items() if k != "beta"}
    assert Predictor(model, legacy).beta == InferenceConfig().beta


@pytest.mark.parametrize("select_from,eligible", [("final", {"joint"}), ("parts", {"pretrain_parts", "joint"})])
def test_select_from_names_the_epochs_that_may_become_best(ds, tmp_path, select_from, eligible):
    cfg = tiny_config()
    cfg.train.select_from = select_from
    events = run_all(Trainer(cfg, tmp_path, dataset=ds))
    ends = [e for e in events if isinstance(e, ev.EpochEnd)]
    best = [e for e in ends if e.best]
    assert {e.stage for e in best} <= eligible
    first = next(e for e in ends if e.stage in eligible)
    assert first.best                                   # the first eligible epoch always beats -inf
    last_best = best[-1]
    state = load_checkpoint(tmp_path / "best.pt")
    assert state["stage"] == last_best.stage
    assert state["position"]["epoch"] == last_best.epoch + 1


def test_select_from_must_be_final_or_parts():
    cfg = tiny_config()
    cfg.train.select_from = "warmup"
    with pytest.raises(ConfigError, match="train.select_from"):
        cfg.validate()


def test_predictor_and_feature_cache_score_a_user_class_alike(ds, trained):
    """One owner of Eq. 12-13 (inference.ClassPrototypes): the predictor (one image) and the app's
    feature cache (a dataset) give the same scores for the same user classes in every mode,
    with the checkpoint's beta, and a user class typed as a copy of a seen class gets that class's
    prototype in both."""
    from sgma.engine.features import FeatureCache
    model = model_from_checkpoint(trained)
    state = {**trained, "beta": 3.0}
    k = ds.split.test_unseen[0]
    trained_on = ds.class_names.index(trained["train_classes"][0])
    seen_vec = np.asarray(ds.semantics[trained_on], dtype=np.float32)
    user = np.stack([seen_vec, np.asarray(ds.semantics[ds.split.unseen[0]]) * 0.5 + seen_vec * 0.5])
    base = Predictor(model, state)
    p = base.with_user_classes(["copy of a seen class", "a mix"], user)
    assert base.user_names == [] and len(base.all_names()) == len(p.all_names()) - 2     # unchanged
    assert p.with_user_classes(["copy of a seen class", "a mix"], user) is p        # same classes, same one
    assert p.with_user_classes([], []).user_names == [] and p.user_names == ["copy of a seen class", "a mix"]
    with pytest.raises(ValueError, match=f"user classes have 3 attributes, the model expects {user.shape[1]}"):
        base.with_user_classes(["x"], [[1.0, 2.0, 3.0]])
    cache = FeatureCache.build(model, ds, [k], state=state)
    assert cache.beta == 3.0                                  # the stored beta, not the config's
    n = len(p.class_names)
    for mode in ("compatibility", "center", "combined"):
        one = p.predict(ds.load_image(k), mode=mode).scores[n:]
        many = cache.score_classes(user, mode=mode)[0]
        np.testing.assert_allclose(one, many, atol=2e-4, err_msg=mode)
    want = torch.as_tensor(trained["prototypes"][0]).float()      # the first training class's own
    torch.testing.assert_close(p.prototypes()[n], want)
    np.testing.assert_allclose(cache.prototypes(user)[0], want.numpy(), atol=1e-6)
