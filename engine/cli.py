"""The ``sgma`` command: demo, train, evaluate, predict, ablation, bench.

Every user error (missing file, bad dataset line, bad config, refused checkpoint: an
``SGMAError``, engine/errors.py) ends the command with exit status 2 and one line on stderr that
names the problem. Any other exception is a bug and keeps its traceback."""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

from .config import PRESETS, load_toml, preset
from .data.registry import DATASET_KINDS
from .errors import SGMAError
from .io import atomic_write_bytes
from .runlock import Interrupted
from .runs import evaluate_checkpoint, run_training


class CLIError(SGMAError):
    """A command-line argument or output path that cannot be used; the message names the flag."""


def _write_json(path: str | None, obj) -> None:
    if path:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(obj, indent=2, default=float).encode())
        except OSError as e:       # a full disk, a read-only disk
            raise CLIError(f"cannot write --json {path}: {e.strerror or e}") from None


def check_output(path: str | None, flag: str, folder: bool = False) -> None:
    """Refuse, before any work, an output file (or ``folder``) that cannot be written: one that
    is a folder (a file), lies under a regular file, or whose first existing folder is not
    writable. The message names the flag and the path."""
    if not path:
        return
    p = Path(path)
    if p.exists() and p.is_dir() != folder:
        raise CLIError(f"{flag} {p}: " + ("is a file, not a folder" if folder else "is a folder"))
    a = p if folder else p.parent
    while not a.exists() and a != a.parent:
        a = a.parent
    if not a.is_dir():
        raise CLIError(f"{flag} {p}: {a} is a file, not a folder")
    if not os.access(a, os.W_OK):
        raise CLIError(f"{flag} {p}: the folder {a} is not writable")


def _int_at_least(lo: int):
    def convert(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}")
        return v
    return convert


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def summary_lines(s: dict) -> list[str]:
    lines = [f"dataset {s['dataset']} ({s['split']}), {s['n_images']} test images, inference: {s['inference']}",
             f"ZSL mean class accuracy over {s['zsl']['n_classes']} unseen classes: {s['zsl']['mca']:.3f}",
             f"GZSL: A_U {s['gzsl']['unseen']:.3f}  A_S {s['gzsl']['seen']:.3f}  H {s['gzsl']['h']:.3f}"]
    for mode, r in s["modes"].items():
        lines.append(f"  {mode:13s} ZSL {r['zsl']['mca']:.3f}  GZSL H {r['gzsl']['h']:.3f}")
    if "gzsl_calibrated" in s:
        c = s["gzsl_calibrated"]
        lines.append(f"GZSL, calibrated stacking (gamma {c['gamma']:.4g}, "
                     f"{'chosen on validation' if c.get('gamma_from') == 'validation' else 'given'}): "
                     f"A_U {c['unseen']:.3f}  A_S {c['seen']:.3f}  H {c['h']:.3f}")
    if "protocol" in s:
        pr = s["protocol"]
        epochs = ", ".join(f"{k} {v}" for k, v in (pr.get("epochs") or {}).items() if v)
        lines.append(f"protocol: trained on {pr['train_classes']} of {pr['seen_classes']} seen classes"
                     f"{' (retrained on all after selection)' if pr.get('retrained') else ''}; selected on "
                     f"{pr.get('selected_on') or 'nothing (no validation classes)'}"
                     f"{f' ({epochs})' if epochs else ''}; beta {pr.get('beta')}")
    if "parts" in s:
        p = s["parts"]
        for name in ("head", "tail"):
            if name in p:
                lines.append(f"part {name}: precision (IoU > 0.5) {p[name]:.3f}, random {p['random'][name]:.3f}, "
                             f"mean IoU {p['mean_iou'][name]:.3f} ({p['assignment'][name]}); pointing "
                             f"{p.get('pointing', {}).get(name, float('nan')):.3f}, ceiling of the square rule "
                             f"{p.get('ceiling', {}).get(name, float('nan')):.3f}")
    if s.get("skipped_images"):
        lines.append(f"left out {len(s['skipped_images'])} unreadable image(s), listed in the JSON: "
                     f"{s['skipped_images'][0]['path']}{' ...' if len(s['skipped_images']) > 1 else ''}")
    return lines


def cmd_demo(a) -> int:
    check_output(a.json, "--json")
    cfg = preset("demo")
    out = Path(a.out or "runs/demo")
    t = time.perf_counter()
    run_training(cfg, out, quiet=a.quiet)
    summary = evaluate_checkpoint(str(out))
    summary["wall_s"] = round(time.perf_counter() - t, 1)
    print("\n".join(summary_lines(summary)))
    print(f"wall time {summary['wall_s']} s; run folder {out}")
    _write_json(a.json or str(out / "evaluation.json"), summary)
    return 0


def cmd_train(a) -> int:
    cfg = load_toml(a.config) if a.config else preset(a.preset)
    if a.dataset:
        if a.dataset != cfg.data.kind:
            cfg.data.options = {}        # a preset's options and split belong to its own dataset kind
            cfg.data.split = "synthetic" if a.dataset == "synthetic" else "ps"
        cfg.data.kind = a.dataset
    if a.root:
        cfg.data.root = a.root
    if a.epochs is not None:
        cfg.train.joint.epochs = a.epochs
    if a.skip_unreadable:
        cfg.train.skip_unreadable = True
    cfg.validate()
    out = Path(a.out or f"runs/{cfg.name}")
    try:
        run_training(cfg, out, resume=a.resume)
    except Interrupted as e:
        again = ["sgma", "train"] + (["--preset", a.preset] if a.preset else ["--config", a.config])
        for flag, v in (("--dataset", a.dataset), ("--root", a.root), ("--epochs", a.epochs)):
            again += [flag, str(v)] if v is not None else []
        print(f"interrupted ({e.signal}): last.pt saved in {out}", file=sys.stderr)
        print("resume with: " + shlex.join(again + ["--resume", "--out", str(out)]), file=sys.stderr)
        return 130
    print(f"trained; checkpoints in {out}")
    return 0


def cmd_evaluate(a) -> int:
    check_output(a.json, "--json")
    run = a.run
    if run is None:            # the model bundled for the dataset kind (engine/bundled.py)
        from .bundled import BUNDLED, bundled_checkpoint
        if not a.dataset:
            raise CLIError("name a run or checkpoint, or --dataset KIND to evaluate the model bundled "
                           f"for that kind ({', '.join(BUNDLED)})")
        found = bundled_checkpoint(a.dataset)
        if found is None:
            raise CLIError(f"no model is bundled for dataset kind {a.dataset!r} (bundled: "
                           f"{', '.join(k for k in BUNDLED if bundled_checkpoint(k))}); name a run or checkpoint")
        run = str(found)
        print(f"model: {run} (bundled for {a.dataset})")
    s = evaluate_checkpoint(run, a.dataset, a.root, a.split, a.gamma, a.skip_unreadable)
    print("\n".join(summary_lines(s)))
    _write_json(a.json, s)
    return 0


def cmd_predict(a) -> int:
    from .classes import load_classes, to_matrix
    from .data.base import read_image
    from .predict import Predictor
    check_output(a.json, "--json")
    check_output(a.save_maps, "--save-maps", folder=True)
    p = Predictor.from_checkpoint(a.run)
    if a.classes:
        user = load_classes(a.classes, p.attribute_names, reserved=p.class_names)
        p = p.with_user_classes([c.name for c in user], to_matrix(user, p.attribute_names))
    results = []
    for path in a.images:
        img = read_image(path)
        pred = p.predict(img)
        top = pred.top(a.top)
        print(f"{path}: " + ", ".join(f"{n} {s:.3f}" for n, s in top))
        r = {"image": path, "top": [{"class": n, "score": s} for n, s in top], "mode": pred.mode,
             "boxes": pred.boxes.round(1).tolist(), "squares": pred.squares.round(4).tolist(),
             "far_end_map": pred.far_end_map}
        if a.save_maps:
            from .overlay import save_overlay
            try:
                r["overlay"] = str(save_overlay(img, pred, Path(a.save_maps)))
            except OSError as e:
                raise CLIError(f"cannot write --save-maps {a.save_maps}: {e.strerror or e}") from None
        results.append(r)
    _write_json(a.json, results)
    return 0


def cmd_ablation(a) -> int:
    check_output(a.json, "--json")
    from .ablation import run_ablation, table4_runs
    only = [k.strip() for k in a.runs.split(",") if k.strip()] if a.runs else None
    if only is not None:
        if a.which != "table4":
            raise CLIError("--runs chooses Table 4's trainings: use it with 'sgma ablation table4'")
        unknown = [k for k in only if k not in table4_runs()]
        if unknown or not only:
            raise CLIError(f"--runs {a.runs}: unknown training {', '.join(unknown) or '(none named)'}; "
                           f"choose from {', '.join(table4_runs())}")
    res = run_ablation(a.which, Path(a.out or f"runs/ablation_{a.which}"), a.preset, quiet=a.quiet, only=only)
    _write_json(a.json, res)
    return 0


def cmd_bench(a) -> int:
    check_output(a.json, "--json")
    from .bench import run_bench
    res = run_bench(quick=a.quick)
    print(json.dumps(res, indent=2))
    _write_json(a.json, res)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sgma", description="SGMA zero-shot learning: train, evaluate, predict")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("demo", help="train the demo preset on synthetic birds, evaluate, summarise")
    p.add_argument("--out")
    p.add_argument("--json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("train", help="train a preset or a TOML config")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", choices=PRESETS)
    g.add_argument("--config")
    p.add_argument("--dataset", choices=DATASET_KINDS)
    p.add_argument("--root")
    p.add_argument("--out")
    p.add_argument("--epochs", type=_int_at_least(0), help="epochs of the end-to-end stage (stage 3)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave images that cannot be decoded out of training, with a warning listing them")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="ZSL, GZSL and part precision of a run or checkpoint")
    p.add_argument("run", nargs="?", help="run folder or checkpoint; without it, the model bundled "
                   "for --dataset")
    p.add_argument("--dataset", choices=DATASET_KINDS)
    p.add_argument("--root")
    p.add_argument("--split", choices=["ps", "ss"])
    p.add_argument("--gamma", type=_finite_float, help="also report GZSL with calibrated stacking")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave out images that cannot be decoded (listed in the JSON) instead of stopping")
    p.add_argument("--json")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("predict", help="attention maps, part boxes and top classes of images")
    p.add_argument("run")
    p.add_argument("images", nargs="+")
    p.add_argument("--classes", help="TOML/JSON/CSV file of user-defined classes")
    p.add_argument("--top", type=_int_at_least(1), default=5)
    p.add_argument("--save-maps", metavar="DIR", help="write PNG overlays of maps and boxes")
    p.add_argument("--json")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("ablation", help="Table 1 w/o MA or Table 4 variants")
    p.add_argument("which", choices=["ma", "table4"])
    p.add_argument("--preset", default="demo")
    p.add_argument("--out")
    p.add_argument("--runs", help="table4: train only these of its trainings, named by their folders, "
                   "comma-separated (an unknown name lists them); the rows that --out's results.json "
                   "holds from earlier calls are kept")
    p.add_argument("--json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_ablation)
    p = sub.add_parser("bench", help="throughput and latency benchmarks")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    p.set_defaults(func=cmd_bench)
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except SGMAError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:     # Interrupted: last.pt was saved; a second Ctrl-C: at once
        print(f"interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
