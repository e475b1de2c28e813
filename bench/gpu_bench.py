"""GPU training throughput of the paper configuration: eager fp32 against the fast path.

    python bench/gpu_bench.py [--batch 32] [--steps 10] [--compile] [--json FILE]
    python bench/gpu_bench.py --device cpu --tiny          # CPU smoke test of this script

Paper configuration (section 4.1): VGG19, 448 px attention input, 224 px image and part inputs,
2 parts, ``pretrained="none"`` (weights do not change the speed), CUB sizes (312 attributes, 150
seen classes), joint stage (stage 3: every branch, L_SGMA of Eq. 11), SGD with momentum, synthetic
448 px images already on the GPU (the data pipeline is not measured).

Variants, each a fresh model, timed after warm-up with CUDA synchronisation:
  eager     fp32, NCHW, cudnn.benchmark off (TF32 per torch defaults, printed)
  bf16      + bf16 autocast (train.amp)
  bf16_cl   + channels_last (train.channels_last)
  fast      + cudnn.benchmark (train.cudnn_benchmark)
  compiled  + torch.compile of the step module (with --compile; compile time printed apart)

Model FLOPs per image are counted with torch.utils.flop_counter.FlopCounterMode over one training
step on the meta device (forward + backward; convolutions and matrix products, elementwise work
not counted) and divided by the batch. MFU = FLOPs/image x images/s / the GPU's dense bf16 peak
(looked up by the device name, or --peak-tflops). Results are printed line by line as they come, so a run cut off
by a timeout still shows what it measured, and written as JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

# dense (non-sparse) bf16 tensor-core peaks, TFLOP/s, matched on torch.cuda.get_device_name()
PEAK_BF16_TFLOPS = [
    ("GH200", 989.4), ("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
    ("H800", 989.4), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
    ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("V100", 125.0),
]


def peak_tflops(name: str) -> float | None:
    for key, tf in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tf
    return None


def say(msg: str) -> None:
    print(msg, flush=True)


def build_config(tiny: bool):
    from sgma.engine.config import ModelConfig
    if tiny:
        cfg = ModelConfig(backbone="small_cnn", pretrained="none", attention_size=64, image_size=32,
                          part_size=32, crop_hidden=32, attention_reduction=4)
        return cfg, 16, 10
    return ModelConfig(backbone="vgg19", pretrained="none", attention_size=448, image_size=224,
                       part_size=224, n_parts=2), 312, 150


def count_flops(cfg, batch, sem_dim, n_cls) -> dict:
    """FLOPs of one joint-stage training step, counted on the meta device (no compute, no memory;
    the count depends only on shapes)."""
    from torch.utils.flop_counter import FlopCounterMode
    from sgma.engine.model import SGMA
    from sgma.engine.config import STAGE_BY_NAME
    from sgma.engine.trainer import StepModule
    torch.manual_seed(0)
    model = SGMA(cfg, sem_dim, n_cls).to("meta").train()
    sm = StepModule(model)
    s = cfg.attention_size
    x = torch.rand(batch, 3, s, s, device="meta")
    y = torch.zeros(batch, dtype=torch.long, device="meta")
    sem = torch.rand(n_cls, sem_dim, device="meta")
    with FlopCounterMode(display=False) as fc:
        losses = sm(STAGE_BY_NAME["joint"].loss, x, y, sem, cfg.part_side_init)
    fwd = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        losses["total"].backward()
    bwd = fc.get_total_flops()
    return {"forward_flops_per_img": fwd / batch, "train_flops_per_img": (fwd + bwd) / batch}


def run_variant(name, cfg, batch, sem_dim, n_cls, device, steps, warmup, *, amp, channels_last,
                cudnn_benchmark, compile) -> dict:
    from sgma.engine.bench import make_train_step
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    step, model = make_train_step(cfg, batch, sem_dim, n_cls, device, channels_last=channels_last,
                                  amp=amp and device.type == "cuda", compile=compile,
                                  cudnn_benchmark=cudnn_benchmark)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    step()
    sync()
    first_s = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        step()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    out = {"variant": name, "img_s": batch / med, "img_s_best": batch / times[0], "step_ms": 1e3 * med,
           "first_step_s": first_s, "steps": steps}
    if device.type == "cuda":
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    del step, model
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the step module")
    ap.add_argument("--budget-s", type=float, default=240.0,
                    help="skip the compiled variant when less than 120 s of this budget is left")
    ap.add_argument("--tiny", action="store_true", help="toy configuration (smoke test of this script)")
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU (default: by name)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        say("error: no CUDA GPU visible to torch (use --device cpu --tiny for a smoke test)")
        return 2
    cfg, sem_dim, n_cls = build_config(a.tiny)
    if a.tiny:
        a.batch = min(a.batch, 4)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = a.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    res = {"device": name, "torch": str(torch.__version__), "cuda": torch.version.cuda,
           "config": {"backbone": cfg.backbone, "sizes": f"{cfg.attention_size}/{cfg.image_size}/{cfg.part_size}",
                      "n_parts": cfg.n_parts, "batch": a.batch, "stage": "joint", "tiny": a.tiny},
           "peak_bf16_tflops": peak, "variants": []}
    if device.type == "cuda":
        res["tf32"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                       "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    say(f"device: {name}  torch {torch.__version__}  peak bf16: {peak} TFLOP/s  config: {res['config']}")

    def dump():
        if a.json:
            from sgma.engine.io import atomic_write_bytes
            atomic_write_bytes(a.json, json.dumps(res, indent=2).encode())

    fl = count_flops(cfg, a.batch, sem_dim, n_cls)
    res.update(fl)
    say(f"model FLOPs per image: forward {fl['forward_flops_per_img'] / 1e9:.1f} GFLOP, "
        f"training step {fl['train_flops_per_img'] / 1e9:.1f} GFLOP")
    dump()
    variants = [("eager", dict(amp=False, channels_last=False, cudnn_benchmark=False, compile=False)),
                ("bf16", dict(amp=True, channels_last=False, cudnn_benchmark=False, compile=False)),
                ("bf16_cl", dict(amp=True, channels_last=True, cudnn_benchmark=False, compile=False)),
                ("fast", dict(amp=True, channels_last=True, cudnn_benchmark=True, compile=False))]
    if a.compile:
        variants.append(("compiled", dict(amp=True, channels_last=True, cudnn_benchmark=True, compile=True)))
    for vname, kw in variants:
        if vname == "compiled" and time.perf_counter() - t_start > a.budget_s - 120:
            say("compiled: skipped (time budget)")
            continue
        try:
            r = run_variant(vname, cfg, a.batch, sem_dim, n_cls, device, a.steps, a.warmup, **kw)
        except torch.cuda.OutOfMemoryError:
            r = {"variant": vname, "error": f"out of memory at batch {a.batch}"}
        except Exception as e:  # noqa: BLE001 - report the variant as failed, keep the others
            r = {"variant": vname, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
        if "img_s" in r:
            achieved = r["img_s"] * fl["train_flops_per_img"]
            r["achieved_tflops"] = achieved / 1e12
            if peak:
                r["mfu"] = achieved / (peak * 1e12)
        res["variants"].append(r)
        if "error" in r:
            say(f"{vname:9s} ERROR {r['error']}")
        else:
            line = (f"{vname:9s} {r['img_s']:8.1f} img/s  step {r['step_ms']:8.1f} ms  "
                    f"{r['achieved_tflops']:7.2f} TFLOP/s")
            if "mfu" in r:
                line += f"  MFU {100 * r['mfu']:5.1f}%"
            if "peak_mem_gb" in r:
                line += f"  peak mem {r['peak_mem_gb']:.1f} GiB"
            line += f"  (first step {r['first_step_s']:.1f} s)"
            say(line)
        dump()
    by = {r["variant"]: r for r in res["variants"] if "img_s" in r}
    if "eager" in by:
        for k in ("fast", "compiled"):
            if k in by:
                res[f"speedup_{k}"] = by[k]["img_s"] / by["eager"]["img_s"]
                say(f"speedup {k} / eager: {res[f'speedup_{k}']:.2f}x")
    best = max(by.values(), key=lambda r: r["img_s"]) if by else None
    if best is not None and not a.tiny:
        ok = best["img_s"] >= 350 and res.get(f"speedup_{best['variant']}", 0) >= 3
        res["targets"] = {"img_s>=350": best["img_s"] >= 350,
                          "speedup>=3x": res.get(f"speedup_{best['variant']}", 0) >= 3, "met": ok}
        say(f"targets (paper config >= 350 img/s and >= 3x eager): best {best['variant']} "
            f"{best['img_s']:.1f} img/s -> {'MET' if ok else 'NOT MET'}")
    res["wall_s"] = time.perf_counter() - t_start
    say(f"total {res['wall_s']:.1f} s")
    dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
