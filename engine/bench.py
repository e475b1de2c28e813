"""Throughput and latency benchmarks (``sgma bench [--quick] [--json FILE]``); results and the
machine they were measured on go to docs/benchmarks.md.

What is measured, all in one process on the same machine:

- ``train_img_s_eager`` / ``train_img_s_fast``: images per second of the demo preset's joint stage
  (``StepModule`` forward + backward + SGD step) on synthetic tensors (no data loading). *Eager*
  is the plain configuration (fp32, NCHW, default threads); *fast* is what the configuration
  switches offer: on CPU ``train.channels_last`` with the number of threads tuned, on CUDA
  bf16 autocast (``train.amp``), channels_last and cudnn.benchmark. The two step functions are
  timed alternately (eager, fast, eager, ...) so that both see the same load on a shared machine;
  medians and best times are reported. Full mode adds ``torch.compile`` of the step module.
- ``train_img_s_uncached`` / ``train_img_s_cached``: the same joint stage (eager) without and with
  the frozen-backbone feature cache (engine/backbone_cache.py), timed in turn on the same tensors.
- ``infer_ms_demo``: median latency of ``Predictor.predict`` on one PIL image with the demo
  model (``resources/demo.pt``, or an untrained demo-config model when absent); full mode adds
  efficientnet_lite0 and VGG19 at 448 px (``pretrained="none"``).
- ``rank_10k_ms``: ``FeatureCache.rank`` of 10,000 cached images (CUB sizes: 312 attributes,
  3 branches) for a new class vector; ``score_200_classes_ms``: one cached image against 200
  classes in the combined mode (ridge prototypes from 150 seen classes, Eq. 12-13).

No timing is asserted anywhere; targets live in docs/benchmarks.md.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .config import STAGE_BY_NAME, ModelConfig, preset

COMMANDS = {
    "quick": "sgma bench --quick --json bench_quick.json",
    "full": "sgma bench --json bench_full.json",
    "gpu": "bash bench/gpu_check.sh",
}

# CUB-like sizes for the ranking benchmarks
RANK_ATTRS, RANK_BRANCHES, RANK_SEEN, RANK_CLASSES = 312, 3, 150, 200


# ---------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: Optional[torch.device] = None) -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT",
                                          "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ},
        "cuda": bool(torch.cuda.is_available()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    if device is not None:
        info["device"] = str(device)
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1 << 20) if platform.system() == "Darwin" else r / 1024


# ---------------------------------------------------------------------- timing helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_alternating(fns: dict[str, Callable[[], None]], warmup: int, reps: int,
                     device: torch.device = torch.device("cpu"),
                     threads: Optional[dict[str, int]] = None, max_s: Optional[float] = None,
                     min_reps: int = 3) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn (a, b, a, b, ...) so every function sees
    the same background load; ``threads`` sets torch's intra-op threads before each call. With
    ``max_s``, stops after ``min_reps`` timed rounds once that many seconds have passed (a busy
    machine keeps the quick benchmark within its time)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    default = torch.get_num_threads()
    t_start = time.perf_counter()
    try:
        for r in range(warmup + reps):
            if max_s is not None and r >= warmup + min_reps and time.perf_counter() - t_start > max_s:
                break
            for name, fn in fns.items():
                torch.set_num_threads((threads or {}).get(name, default))
                _sync(device)
                t0 = time.perf_counter()
                fn()
                _sync(device)
                if r >= warmup:
                    times[name].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(default)
    return times


def summary(seconds: list[float], per: int = 1) -> dict:
    """Median and best of a list of timings; ``per`` items per call gives items/s as well."""
    med, best = statistics.median(seconds), min(seconds)
    out = {"median_s": med, "best_s": best, "n": len(seconds)}
    if per > 1:
        out.update(img_s_median=per / med, img_s_best=per / best)
    return out


def latency(seconds: list[float]) -> dict:
    ts = sorted(seconds)
    return {"median_ms": 1e3 * statistics.median(ts), "best_ms": 1e3 * ts[0],
            "p90_ms": 1e3 * ts[min(int(0.9 * len(ts)), len(ts) - 1)], "n": len(ts)}


def median_ms(fn: Callable[[], object], warmup: int, reps: int) -> dict:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return latency(ts)


# ---------------------------------------------------------------------- training step
def make_train_step(cfg: ModelConfig, batch: int, sem_dim: int, n_classes: int, device: torch.device,
                    channels_last: bool = False, amp: bool = False, compile: bool = False,
                    stage: str = "joint", seed: int = 0, foreach: Optional[bool] = None,
                    cudnn_benchmark: Optional[bool] = None, cached: bool = False):
    """A closure running one training step of ``stage`` as ``Trainer._train_step`` does (same
    autocast, channels_last and SGD settings), on fixed synthetic tensors. ``cudnn_benchmark``
    (CUDA) is set at every call, so step functions timed in turn each keep their own. With
    ``cached`` (a frozen backbone) the step reads the backbone's outputs computed once, as the
    trainer's feature cache gives them from the second epoch on. Returns (step, model)."""
    from .model import SGMA
    from .trainer import StepModule
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SGMA(cfg, sem_dim, n_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    sm = StepModule(model)
    if compile:
        sm = torch.compile(sm)
    tc = preset("paper").train
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=tc.momentum, weight_decay=tc.weight_decay,
                          foreach=foreach)
    s = cfg.attention_size
    x = torch.rand(batch, 3, s, s, generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (batch,), generator=g).to(device)
    sem = torch.nn.functional.normalize(torch.rand(n_classes, sem_dim, generator=g), dim=1).to(device)
    use_amp = amp and device.type in ("cuda", "cpu")
    frozen = None
    if cached:
        from .backbone_cache import frozen_features
        model.image_net.eval()
        model.theta_net.eval()
        frozen = frozen_features(model.image_net, x, cfg.image_size, model.theta_net, cfg.attention_size)

    def step() -> torch.Tensor:
        if cudnn_benchmark is not None and device.type == "cuda":
            torch.backends.cudnn.benchmark = cudnn_benchmark
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            losses = sm(STAGE_BY_NAME[stage].loss, x, y, sem, cfg.part_side_init, frozen)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        return losses["total"].detach()

    return step, model


def thread_candidates() -> list[int]:
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return sorted({1, max(ncpu // 2, 1), ncpu, torch.get_num_threads()})


def bench_train(cfg: ModelConfig, batch: int, sem_dim: int, n_classes: int, device: torch.device,
                warmup: int, reps: int, tune: bool, with_compile: bool, extra_variants: bool,
                max_s: Optional[float] = None) -> dict:
    """Training steps per second of the eager and fast paths, timed in turn in one window.

    On CPU the fast path is channels_last at each candidate thread count (``fast_t<n>``); the
    best median is the fast path's figure and its thread count is reported. Eager also runs at
    the other thread counts (``eager_t<n>``) so the thread effect and the channels_last effect can
    be told apart. Extra variants show switches the trainer does not offer on CPU (bf16 autocast,
    foreach SGD). With ``with_compile`` the compiled step is timed in a second window against
    eager and the best fast variant again."""
    cuda = device.type == "cuda"
    default = torch.get_num_threads()
    out: dict = {"config": {"backbone": cfg.backbone, "attention_size": cfg.attention_size,
                            "image_size": cfg.image_size, "part_size": cfg.part_size,
                            "n_parts": cfg.n_parts, "batch": batch, "stage": "joint",
                            "semantic_dim": sem_dim, "n_classes": n_classes},
                 "eager_threads": default}
    fns = {"eager": make_train_step(cfg, batch, sem_dim, n_classes, device, cudnn_benchmark=False)[0]}
    threads: dict[str, int] = {}
    cands = thread_candidates() if (tune and not cuda) else [default]

    def fast_step(**kw):
        return make_train_step(cfg, batch, sem_dim, n_classes, device, channels_last=True, amp=cuda,
                               cudnn_benchmark=True, **kw)[0]

    fast_names = []
    for n in cands:
        if n != default:
            fns[f"eager_t{n}"] = make_train_step(cfg, batch, sem_dim, n_classes, device, cudnn_benchmark=False)[0]
            threads[f"eager_t{n}"] = n
    for n in cands:
        fns[f"fast_t{n}"] = fast_step()
        threads[f"fast_t{n}"] = n
        fast_names.append(f"fast_t{n}")
    if extra_variants and not cuda:
        # informative only: switches the trainer does not offer on CPU today; one thread, to
        # compare with fast_t1 (one thread is the least disturbed by other processes)
        fns["fast_bf16_cpu_t1"] = make_train_step(cfg, batch, sem_dim, n_classes, device, channels_last=True,
                                                  amp=True)[0]
        fns["fast_foreach_sgd_t1"] = fast_step(foreach=True)
        threads["fast_bf16_cpu_t1"] = threads["fast_foreach_sgd_t1"] = 1
    t = time_alternating(fns, warmup, reps, device, threads, max_s=max_s)
    for k, v in t.items():
        out[k] = summary(v, batch)
    best = max(fast_names, key=lambda k: out[k]["img_s_median"])
    out["fast"] = dict(out[best], variant=best)
    out["fast_threads"] = threads.get(best, default)
    out["fast_path"] = ["channels_last"] + (["bf16 autocast", "cudnn.benchmark"] if cuda else
                                           [f"{out['fast_threads']} threads"])
    if with_compile:
        out["compiled"] = bench_compiled(cfg, batch, sem_dim, n_classes, device, warmup, reps,
                                         {"eager": fns["eager"], "fast": fns[best]},
                                         {"fast": out["fast_threads"], "compiled": out["fast_threads"]})
    return out


def bench_compiled(cfg, batch, sem_dim, n_classes, device, warmup, reps, others: dict, threads: dict) -> dict:
    """The fast path with ``torch.compile`` of the step module, timed in turn with ``others``
    (compile time reported apart)."""
    try:
        step, _ = make_train_step(cfg, batch, sem_dim, n_classes, device, channels_last=True,
                                  amp=device.type == "cuda", compile=True, cudnn_benchmark=True)
        default = torch.get_num_threads()
        torch.set_num_threads(threads.get("compiled", default))
        t0 = time.perf_counter()
        try:
            step()
            _sync(device)
        finally:
            torch.set_num_threads(default)
        compile_s = time.perf_counter() - t0
        t = time_alternating({**others, "compiled": step}, max(warmup - 1, 1), reps, device, threads)
        res = {"compile_s": compile_s, "threads": threads.get("compiled")}
        for k, v in t.items():
            res[k] = summary(v, batch)
        res["speedup_vs_eager"] = res["compiled"]["img_s_median"] / res["eager"]["img_s_median"]
        return res
    except Exception as e:  # noqa: BLE001 - a benchmark reports a failed variant, it does not stop
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}


# ---------------------------------------------------------------------- inference
def synthetic_state(cfg: ModelConfig, class_names: list[str], attribute_names: list[str],
                    semantics: np.ndarray, train_classes: list[int], model) -> dict:
    """A checkpoint-like state for an untrained model (random seen prototypes, so the Predictor
    runs its combined mode with the Eq. 12 ridge regression like a trained one)."""
    from .config import RunConfig, to_dict
    g = torch.Generator().manual_seed(0)
    d = len(model.branch_names) * semantics.shape[1]
    return {"config": to_dict(RunConfig(model=cfg)), "class_names": list(class_names),
            "attribute_names": list(attribute_names), "semantics": torch.as_tensor(semantics, dtype=torch.float32),
            "train_classes": [class_names[c] for c in train_classes],
            "prototypes": torch.randn(len(train_classes), d, generator=g)}


def demo_predictor(device: torch.device, tiny_cfg: Optional[ModelConfig] = None):
    """(Predictor, PIL image, source): the bundled demo model when resources/demo.pt exists,
    otherwise an untrained model of the demo configuration with the synthetic dataset's classes."""
    from .data.synthetic import make_synthetic
    from .predict import Predictor
    ds = make_synthetic(n_train_per_class=1, n_test_seen_per_class=0, n_unseen_per_class=1)
    image = ds.load_image(0)
    demo = Path(__file__).resolve().parents[1] / "resources" / "demo.pt"
    if tiny_cfg is None and demo.is_file():
        return Predictor.from_checkpoint(demo, device), image, str(demo)
    cfg = tiny_cfg or preset("demo").model
    return (model_predictor(cfg, ds.class_names, ds.attribute_names, ds.semantics,
                            list(ds.split.train_classes or ds.split.seen), device), image,
            "untrained demo-config model (resources/demo.pt absent)" if tiny_cfg is None else "tiny config")


def model_predictor(cfg: ModelConfig, class_names, attribute_names, semantics, train_classes, device,
                    channels_last: bool = False):
    from .model import SGMA
    from .predict import Predictor
    torch.manual_seed(0)
    model = SGMA(cfg, semantics.shape[1], len(train_classes)).to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Predictor(model, synthetic_state(cfg, class_names, attribute_names, semantics, train_classes, model), device)


def bench_predict_448(backbone: str, device: torch.device, warmup: int, reps: int) -> dict:
    """Single-image latency of an untrained 448/224/224 model (``pretrained="none"``) scoring
    200 CUB-sized classes."""
    from PIL import Image
    cfg = ModelConfig(backbone=backbone, pretrained="none", attention_size=448, image_size=224, part_size=224)
    k, a = RANK_CLASSES, RANK_ATTRS
    rng = np.random.default_rng(0)
    sem = rng.random((k, a)).astype(np.float32)
    sem /= np.linalg.norm(sem, axis=1, keepdims=True)
    try:
        pred = model_predictor(cfg, [f"c{i}" for i in range(k)], [f"a{j}" for j in range(a)], sem,
                               list(range(RANK_SEEN)), device)
    except Exception as e:  # noqa: BLE001 - e.g. the efficientnet package is missing
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    img = Image.fromarray(rng.integers(0, 256, (500, 375, 3), dtype=np.uint8))
    return {"backbone": backbone, "sizes": "448/224/224", **median_ms(lambda: pred.predict(img), warmup, reps)}


# ---------------------------------------------------------------------- ranking
def bench_rank(n_rows: int, reps: int, n_attrs: int = RANK_ATTRS, n_branches: int = RANK_BRANCHES,
               n_seen: int = RANK_SEEN, n_classes: int = RANK_CLASSES) -> dict:
    from .features import FeatureCache
    rng = np.random.default_rng(0)
    cct = rng.standard_normal((n_rows, n_branches * n_attrs)).astype(np.float32)
    seen_sem = rng.random((n_seen, n_attrs)).astype(np.float32)
    seen_sem /= np.linalg.norm(seen_sem, axis=1, keepdims=True)
    cache = FeatureCache(cct, n_branches, np.arange(n_rows), np.zeros(n_rows, np.int64), {},
                         unit_norm_semantics=True,
                         seen_prototypes=rng.standard_normal((n_seen, n_branches * n_attrs)).astype(np.float32),
                         seen_semantics=seen_sem)
    v = rng.random(n_attrs).astype(np.float32)
    classes = rng.random((n_classes, n_attrs)).astype(np.float32)
    one = np.array([0])
    return {
        "rows": n_rows, "attributes": n_attrs, "branches": n_branches,
        "rank_all": median_ms(lambda: cache.rank(v), 3, reps),
        "rank_top100": median_ms(lambda: cache.rank(v, top=min(100, n_rows - 1)), 3, reps),
        "score_classes": n_classes, "seen_classes": n_seen,
        "score_combined": median_ms(lambda: cache.score_classes(classes, rows=one, mode="combined"), 3, reps),
        "score_compatibility": median_ms(lambda: cache.score_classes(classes, rows=one), 3, reps),
    }


# ---------------------------------------------------------------------- the whole run
def bench_loader(n: int, size: int) -> dict:
    """The loader alone: ``n`` CUB-sized (500 x 375) JPEGs read by ``ImageSet`` without its memory
    cache (PIL decode, resize with antialiasing, to a float tensor), against torchvision's JPEG
    decoder with a transforms-v2 resize on tensors, one process. (Measured here: both about
    280 images/s at 448 px on one core, so the loader keeps PIL, which also handles CMYK, 16-bit
    and alpha; torchvision 0.29 deprecates its decoders.)"""
    import tempfile
    import warnings
    from PIL import Image
    from .data.base import ImageItem, Split, ZSLDataset
    from .loader import ImageSet
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        items = []
        for k in range(n):
            base = rng.integers(0, 255, (1, 1, 3)) + rng.normal(0, 40, (375, 500, 3))
            Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(f"{d}/{k}.jpg", quality=90)
            items.append(ImageItem(0, f"{d}/{k}.jpg"))
        ds = ZSLDataset("bench", d, ["c"], ["a"], np.ones((1, 1), np.float32), items,
                        Split("bench", [0], [], list(range(n)), [], []))
        images = ImageSet(ds, range(n), size)
        images[0]                                   # first-call imports are not the loader's cost
        t0 = time.perf_counter()
        for k in range(n):
            images[k]
        t_pil = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_jpeg, read_file
            from torchvision.transforms.v2 import functional as TF
            TF.resize(decode_jpeg(read_file(f"{d}/0.jpg"), mode=ImageReadMode.RGB), [size, size], antialias=True)
            t0 = time.perf_counter()
            for k in range(n):
                x = decode_jpeg(read_file(f"{d}/{k}.jpg"), mode=ImageReadMode.RGB)
                TF.resize(x, [size, size], antialias=True).float().div_(255.0)
            t_tv = time.perf_counter() - t0
    return {"images": n, "size": size, "pil_img_s": n / t_pil, "torchvision_img_s": n / t_tv}


def tiny_model_config() -> ModelConfig:
    return ModelConfig(backbone="small_cnn", pretrained="none", attention_size=32, image_size=32,
                       part_size=16, crop_hidden=16, attention_reduction=4, freeze_backbone=True)


def run_bench(quick: bool = True, tiny: bool = False, device: str = "cpu",
              log: Optional[Callable[[str], None]] = None) -> dict:
    """Run the benchmarks and return a JSON-ready dict (see the module docstring).

    ``quick``: few steps and runs, no torch.compile, no 448 px models (under 3 minutes on two
    CPU cores). ``tiny``: a toy configuration that only checks the benchmark runs (tests).
    ``device``: "cpu", "cuda" or "auto"."""
    say = log or (lambda s: None)
    t_start = time.perf_counter()
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    res: dict = {"mode": "tiny" if tiny else ("quick" if quick else "full"), "machine": machine_info(dev),
                 "commands": dict(COMMANDS)}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    # training throughput
    if tiny:
        mcfg, batch, sem_dim, n_cls, warm, reps = tiny_model_config(), 4, 8, 5, 1, 2
    else:
        mcfg, batch = preset("demo").model, preset("demo").train.batch_size
        from .data.synthetic import make_synthetic
        ds = make_synthetic(n_train_per_class=1, n_test_seen_per_class=0, n_unseen_per_class=1)
        sem_dim, n_cls = ds.semantics.shape[1], len(ds.split.train_classes or ds.split.seen)
        warm, reps = (2, 6) if quick else (3, 12)
    say(f"training throughput ({'tiny' if tiny else 'demo'} joint stage, batch {batch}) ...")
    tr = bench_train(mcfg, batch, sem_dim, n_cls, dev, warm, reps, tune=not tiny, with_compile=not quick and not tiny,
                     extra_variants=not tiny, max_s=90.0 if quick else 600.0)
    res["train"] = tr
    res["train_img_s_eager"] = tr["eager"]["img_s_median"]
    res["train_img_s_fast"] = tr["fast"]["img_s_median"]
    res["train_speedup_fast"] = tr["fast"]["img_s_median"] / tr["eager"]["img_s_median"]
    res["train_speedup_fast_best"] = tr["fast"]["img_s_best"] / tr["eager"]["img_s_best"]
    if "compiled" in tr and "compiled" in tr["compiled"]:
        res["train_img_s_compiled"] = tr["compiled"]["compiled"]["img_s_median"]
    if mcfg.freeze_backbone:
        say("training throughput with and without the frozen-backbone feature cache ...")
        fns = {name: make_train_step(mcfg, batch, sem_dim, n_cls, dev, cached=name == "cached")[0]
               for name in ("uncached", "cached")}
        t = time_alternating(fns, warm, reps, dev, max_s=60.0 if quick else 300.0)
        res["train_cache"] = {k: summary(v, batch) for k, v in t.items()}
        res["train_img_s_uncached"] = res["train_cache"]["uncached"]["img_s_median"]
        res["train_img_s_cached"] = res["train_cache"]["cached"]["img_s_median"]
        res["train_speedup_cached"] = res["train_img_s_cached"] / res["train_img_s_uncached"]

    # inference latency
    say("inference latency (Predictor.predict, one image) ...")
    pred, image, source = demo_predictor(dev, tiny_model_config() if tiny else None)
    n_inf = 2 if tiny else (20 if quick else 50)
    fns = {"demo": lambda: pred.predict(image), "demo_t1": lambda: pred.predict(image)}
    if not tiny:     # the same model in channels_last, timed in turn with it
        import dataclasses
        cl_cfg = dataclasses.replace(pred.model.cfg, pretrained="none")
        cl = model_predictor(cl_cfg, pred.class_names, pred.attribute_names, pred.semantics.numpy(),
                             pred.train_idx, dev, channels_last=True)
        cl.model.load_state_dict(pred.model.state_dict())
        cl.seen_prototypes = pred.seen_prototypes
        fns["demo_channels_last"] = lambda: cl.predict(image)
    t = time_alternating(fns, 1 if tiny else 3, n_inf, dev, {"demo_t1": 1}, max_s=20.0 if quick else 120.0,
                         min_reps=5)
    res["infer_demo"] = {"model": source, "threads": torch.get_num_threads(), **latency(t["demo"])}
    res["infer_ms_demo"] = res["infer_demo"]["median_ms"]
    res["infer_demo_t1"] = latency(t["demo_t1"])
    res["infer_ms_demo_t1"] = res["infer_demo_t1"]["median_ms"]
    if "demo_channels_last" in t:
        res["infer_demo_channels_last"] = latency(t["demo_channels_last"])
    if not quick and not tiny:
        for bb in ("efficientnet_lite0", "vgg19"):
            say(f"inference latency {bb} at 448 ...")
            r = bench_predict_448(bb, dev, 1, 10 if bb == "efficientnet_lite0" else 3)
            res[f"infer_{bb}_448"] = r
            if "median_ms" in r:
                res[f"infer_ms_{bb}_448"] = r["median_ms"]

    say("data loader alone ...")
    res["loader"] = bench_loader(16 if tiny else 96, 224 if tiny else 448)
    res["loader_img_s"] = res["loader"]["pil_img_s"]
    res["loader_img_s_torchvision"] = res["loader"]["torchvision_img_s"]

    # ranking and scoring from the feature cache
    say("ranking (feature cache) ...")
    rk = bench_rank(500 if tiny else 10_000, 5 if tiny else (50 if quick else 200),
                    n_attrs=16 if tiny else RANK_ATTRS, n_seen=10 if tiny else RANK_SEEN,
                    n_classes=20 if tiny else RANK_CLASSES)
    res["rank"] = rk
    res["rank_10k_ms"] = rk["rank_all"]["median_ms"]
    res["rank_10k_top100_ms"] = rk["rank_top100"]["median_ms"]
    res["score_200_classes_ms"] = rk["score_combined"]["median_ms"]
    res["score_200_classes_compat_ms"] = rk["score_compatibility"]["median_ms"]

    res["peak_mem_mb"] = peak_rss_mb()
    if dev.type == "cuda":
        res["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(dev) / (1 << 20)
    if hasattr(os, "getloadavg"):
        res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res["wall_s"] = time.perf_counter() - t_start
    return res
