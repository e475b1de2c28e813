"""engine/bench.py and engine/features.py: the benchmark's result structure on a tiny setting (no
timing is asserted: speed targets live in docs/benchmarks.md), the GPU bench script's CPU
fallback, and the feature cache (invalidation by checkpoint and dataset, ranking equal to the
model's own scores)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sgma.engine.bench import run_bench
from sgma.engine.checkpoint import save_checkpoint
from sgma.engine.config import ModelConfig, RunConfig, to_dict
from sgma.engine.data.synthetic import make_synthetic
from sgma.engine.extract import extract
from sgma.engine.features import FeatureCache, checkpoint_fingerprint, default_cache_path
from sgma.engine.model import SGMA
from sgma.engine.predict import Predictor

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Feature caches go to a temporary folder, never the user's ~/.cache/sgma."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def tiny_cfg() -> ModelConfig:
    return ModelConfig(backbone="small_cnn", pretrained="none", attention_size=48, image_size=32, part_size=24,
                       crop_hidden=16, attention_reduction=4)


@pytest.fixture(scope="module")
def ds():
    return make_synthetic(n_train_per_class=2, n_test_seen_per_class=0, n_unseen_per_class=1, image_size=48)


def make_checkpoint(path: Path, ds, seed: int = 0, prototypes: bool = True):
    """A checkpoint of an untrained tiny model (random weights and BatchNorm statistics, so every
    image gets distinct features) in the trainer's format."""
    torch.manual_seed(seed)
    cfg = tiny_cfg()
    train = list(ds.split.train_classes or ds.split.seen)
    model = SGMA(cfg, ds.semantics.shape[1], len(train))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    state = {"config": to_dict(RunConfig(model=cfg)), "class_names": list(ds.class_names),
             "attribute_names": list(ds.attribute_names),
             "semantics": torch.as_tensor(ds.semantics, dtype=torch.float32),
             "train_classes": [ds.class_names[c] for c in train],
             "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    if prototypes:
        state["prototypes"] = torch.randn(len(train), len(model.branch_names) * ds.semantics.shape[1])
    save_checkpoint(state, path)
    return model, state


# ---------------------------------------------------------------------- benchmark structure
def test_run_bench_tiny_structure():
    res = run_bench(quick=True, tiny=True)
    for key in ("train_img_s_eager", "train_img_s_fast", "infer_ms_demo", "rank_10k_ms",
                "score_200_classes_ms", "peak_mem_mb", "train_speedup_fast", "train_img_s_cached",
                "train_img_s_uncached", "train_speedup_cached"):
        assert isinstance(res[key], float) and math.isfinite(res[key]) and res[key] > 0, key
    m = res["machine"]
    for key in ("platform", "cpu_count", "torch", "cpu"):
        assert m[key], key
    assert res["mode"] == "tiny"
    assert "sgma bench --quick" in res["commands"]["quick"]
    assert "gpu_check.sh" in res["commands"]["gpu"]
    assert {"eager", "fast"} <= set(res["train"])
    assert res["train"]["fast_path"][0] == "channels_last"
    assert set(res["train_cache"]) == {"uncached", "cached"}
    assert res["train_speedup_cached"] == res["train_img_s_cached"] / res["train_img_s_uncached"]
    import json
    json.dumps(res)                                                   # JSON-ready as the CLI writes it


def test_gpu_bench_cpu_fallback(tmp_path):
    out = tmp_path / "gpu.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_bench.py"), "--device", "cpu", "--tiny",
                        "--steps", "1", "--warmup", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    import json
    res = json.loads(out.read_text())
    assert res["train_flops_per_img"] > res["forward_flops_per_img"] > 0
    names = [v["variant"] for v in res["variants"]]
    assert names == ["eager", "bf16", "bf16_cl", "fast"]
    assert all(v.get("img_s", 0) > 0 for v in res["variants"]), res["variants"]
    assert "img/s" in p.stdout


def test_gpu_bench_peak_lookup():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_bench
    finally:
        sys.path.pop(0)
    assert gpu_bench.peak_tflops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert gpu_bench.peak_tflops("NVIDIA H200") == pytest.approx(989.4)
    assert gpu_bench.peak_tflops("NVIDIA H100 PCIe") == pytest.approx(756.0)
    assert gpu_bench.peak_tflops("Some Unknown GPU") is None


# ---------------------------------------------------------------------- feature cache
def test_cache_ranking_equals_model_scores(tmp_path, ds):
    ck = tmp_path / "best.pt"
    model, state = make_checkpoint(ck, ds)
    cache = FeatureCache.load_or_build(ck, model, ds)
    assert len(cache) == len(ds)
    assert cache.path == default_cache_path(ck, ds) and cache.path.is_file()
    ref = extract(model, ds, list(range(len(ds))), 16)
    # compatibility against every dataset class equals the model's fused scores
    np.testing.assert_allclose(cache.score_classes(ds.semantics), ref["scores"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cache.cct, ref["cct"], rtol=1e-5, atol=1e-5)
    for c in (0, ds.split.unseen[0]):
        order = cache.rank(ds.semantics[c])
        assert sorted(order.tolist()) == list(range(len(ds)))
        assert np.all(np.diff(ref["scores"][order, c]) <= 1e-5)      # best first by the model's scores
        assert order[0] == ref["scores"][:, c].argmax()
        top, scores = cache.rank(ds.semantics[c], top=5, return_scores=True)
        np.testing.assert_array_equal(top, order[:5])
        assert np.all(np.diff(scores) <= 0)
    # a new class vector: the fused product equals phi_cct . [a, ..., a]
    v = np.random.default_rng(0).random(ds.semantics.shape[1]).astype(np.float32)
    s_ref = cache.cct @ np.tile(cache.prepare(v)[0], cache.n_branches)
    np.testing.assert_array_equal(cache.rank(v), np.argsort(-s_ref, kind="stable"))


def test_cache_combined_mode_equals_predictor(tmp_path, ds):
    ck = tmp_path / "best.pt"
    model, state = make_checkpoint(ck, ds)
    cache = FeatureCache.load_or_build(ck, model, ds, indices=[0, 5, 9])
    pred = Predictor(model, state)
    for row, i in enumerate([0, 5, 9]):
        p = pred.predict(ds.load_image(i), mode="combined")
        mine = cache.score_classes(ds.semantics, rows=[row], mode="combined")[0]
        np.testing.assert_allclose(mine, p.scores, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(cache.cct[row], p.cct, rtol=1e-4, atol=1e-4)
    assert list(cache.rows_of([9, 0])) == [2, 0]


def test_cache_reused_then_invalidated_by_checkpoint(tmp_path, ds, monkeypatch):
    ck = tmp_path / "best.pt"
    model, _ = make_checkpoint(ck, ds, seed=0)
    first = FeatureCache.load_or_build(ck, model, ds)
    calls = []
    real_build = FeatureCache.build.__func__

    def counting_build(cls, *a, **k):
        calls.append(1)
        return real_build(cls, *a, **k)

    monkeypatch.setattr(FeatureCache, "build", classmethod(counting_build))
    again = FeatureCache.load_or_build(ck, None, ds)                 # same checkpoint: read from disk
    assert calls == [] and again.key == first.key
    np.testing.assert_array_equal(again.cct, first.cct)
    old_fp = checkpoint_fingerprint(ck)
    make_checkpoint(ck, ds, seed=1)                                   # the run trained on: new weights
    assert checkpoint_fingerprint(ck) != old_fp
    rebuilt = FeatureCache.load_or_build(ck, None, ds)               # model rebuilt from the checkpoint
    assert calls == [1]
    assert rebuilt.key["checkpoint"] != first.key["checkpoint"]
    assert not np.allclose(rebuilt.cct, first.cct)
    assert FeatureCache.load(rebuilt.path).key == rebuilt.key        # the file on disk was replaced
    # quick fingerprints (large checkpoints) change with the file too
    assert checkpoint_fingerprint(ck, full=False).startswith("quick:")
    assert checkpoint_fingerprint(ck, full=False) != checkpoint_fingerprint(ck, full=True)


def test_cache_invalidated_by_dataset(tmp_path, ds):
    ck = tmp_path / "best.pt"
    model, _ = make_checkpoint(ck, ds)
    path = tmp_path / "features.npz"
    a = FeatureCache.load_or_build(ck, model, ds, cache_path=path)
    other = make_synthetic(seed=3, n_train_per_class=2, n_test_seen_per_class=0, n_unseen_per_class=1,
                           image_size=48)
    assert other.identity()["sha256"] != ds.identity()["sha256"]
    assert default_cache_path(ck, other) != default_cache_path(ck, ds)
    b = FeatureCache.load_or_build(ck, model, other, cache_path=path)   # same file, other dataset
    assert b.key["dataset"] == other.identity()["sha256"] != a.key["dataset"]
    assert not np.allclose(a.cct, b.cct)
    c = FeatureCache.load_or_build(ck, model, ds, indices=[1, 2], cache_path=path)  # other images
    assert len(c) == 2 and c.key["indices"] != a.key["indices"]
    np.testing.assert_allclose(c.cct, a.cct[[1, 2]], rtol=1e-5, atol=1e-5)


def test_cache_file_is_atomic_and_corrupt_file_rebuilt(tmp_path, ds):
    ck = tmp_path / "best.pt"
    model, _ = make_checkpoint(ck, ds)
    path = tmp_path / "f.npz"
    FeatureCache.load_or_build(ck, model, ds, indices=[0, 1], cache_path=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "f.npz"]   # no temporary left
    path.write_bytes(b"not a zip file")
    assert FeatureCache.load(path) is None
    c = FeatureCache.load_or_build(ck, model, ds, indices=[0, 1], cache_path=path)
    assert len(c) == 2 and FeatureCache.load(path) is not None


def test_cache_without_prototypes_scores_compatibility_only(tmp_path, ds):
    ck = tmp_path / "best.pt"
    model, _ = make_checkpoint(ck, ds, prototypes=False)
    cache = FeatureCache.load_or_build(ck, model, ds, indices=[0, 1, 2])
    assert cache.score_classes(ds.semantics).shape == (3, len(ds.class_names))
    with pytest.raises(ValueError, match="prototypes"):
        cache.score_classes(ds.semantics, mode="combined")
    with pytest.raises(ValueError, match="mode"):
        cache.score_classes(ds.semantics, mode="nope")


def test_evaluation_from_the_shared_feature_cache_equals_a_fresh_pass(tmp_path, ds):
    """The app's one pass (FeatureCache with maps, also the ranking's) gives the evaluator the
    same numbers as its own extraction, and a cache without maps is rebuilt when maps are asked."""
    import json as _json
    from sgma.engine.evaluate import evaluate
    ck = tmp_path / "best.pt"
    model, state = make_checkpoint(ck, ds)
    plain = FeatureCache.load_or_build(ck, model, ds)
    assert plain.maps is None and plain.scores is not None
    with pytest.raises(ValueError, match="lacks"):
        plain.extract_rows([0, 1], keep_maps=True)
    cache = FeatureCache.load_or_build(ck, model, ds, keep_maps=True)       # rebuilt: the stored one has no maps
    assert cache.maps is not None and cache.maps.shape[:2] == (len(ds), model.cfg.n_parts)
    again = FeatureCache.load(cache.path)
    assert np.array_equal(again.maps, cache.maps) and np.array_equal(again.scores, cache.scores)
    ref = extract(model, ds, [3, 1], 16, keep_maps=True)
    rows = again.extract_rows([3, 1], keep_maps=True)
    for k in ("scores", "cct", "squares", "labels", "indices"):
        assert np.allclose(rows[k], ref[k], atol=1e-5), k
    assert np.allclose(rows["maps"].astype(np.float32), ref["maps"].astype(np.float32), atol=1e-3)
    fresh = evaluate(model, state, ds)
    shared = evaluate(model, state, ds, features=again)
    drop = lambda s: {k: v for k, v in s.items() if k not in ("timing", "wall_s", "elapsed_s")}
    assert _json.dumps(drop(shared.summary), sort_keys=True, default=str) == \
        _json.dumps(drop(fresh.summary), sort_keys=True, default=str)
