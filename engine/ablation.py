"""Ablations: ``sgma ablation ma`` (Table 1, "Ours" against "Ours w/o MA") and ``sgma ablation
table4`` (the rows of Table 4). Every variant trains the same preset with the same seed in its own
folder under ``out`` and is evaluated on the preset's test split; the results are printed as a
table, written to ``out/results.json`` and returned.

Table 4 variants (section 4.5). The paper's baseline is "the model without localizing parts and
with only embedding softmax loss as the objective". The four upper rows (Baseline, Parts,
Baseline+Parts, Baseline+Random Parts) differ only in their *inputs*: each trains its embedding
with the softmax loss alone (alpha_cct = 0) and infers by compatibility (Eq. 9), as the paper's
67.4 for Baseline+Parts under its 71.0 for the full model implies (issue 12). Where parts are
localised (Parts, Baseline+Parts), L_MA still trains the attention subnet: it shapes where the
parts are, not the embedding. The full model (L_CLS + L_CCT + L_MA, combined inference) is its
own row. The bottom rows train the image branch alone with the joint loss (L_CLS + L_CCT) and
read the three inference modes of section 3.4 from one evaluation of that model.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from .config import RunConfig, load_toml, preset, stages_trained_by_ma
from .errors import SGMAError
from .io import atomic_write_bytes
from .runs import evaluate_checkpoint, run_training

PARTS = ("head", "tail")


class AblationError(SGMAError, ValueError):
    """An ablation's earlier results file cannot be continued; the message names it."""


def _base_config(preset_name: str) -> RunConfig:
    """A preset name, or a path to a TOML config (handy for small experiments)."""
    p = Path(preset_name)
    return load_toml(p) if p.suffix == ".toml" or p.is_file() else preset(preset_name)


def _variant(base: RunConfig, name: str, inference: str | None = None, **model) -> RunConfig:
    """``base`` with model keys changed and, when given, the default inference mode."""
    cfg = copy.deepcopy(base)
    cfg.name = f"{base.name}_{name}"
    for k, v in model.items():
        if not hasattr(cfg.model, k):
            raise ValueError(f"unknown model key {k!r}")
        setattr(cfg.model, k, v)
    if inference is not None:
        cfg.inference.mode = inference
    if cfg.model.random_parts or not cfg.model.use_parts:
        cfg.model.far_end_square = False     # no square of the model's own for the far end to replace
        cfg.model.object_side = False
    cfg.validate()
    return cfg


def _train_and_evaluate(cfg: RunConfig, run_dir: Path, quiet: bool) -> dict:
    if not quiet:
        print(f"== {cfg.name} -> {run_dir}", flush=True)
    run_training(cfg, run_dir, quiet=quiet)
    summary = evaluate_checkpoint(str(run_dir))
    atomic_write_bytes(run_dir / "evaluation.json", json.dumps(summary, indent=2, default=float).encode())
    return summary


def _fmt(v) -> str:
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.1f}"


def _table(title: str, header: list[str], rows: list[list]) -> str:
    first = max(len(header[0]), *(len(r[0]) for r in rows))
    lines = [title, "  ".join([header[0].ljust(first)] + [h.rjust(8) for h in header[1:]])]
    for r in rows:
        lines.append("  ".join([r[0].ljust(first)] + [_fmt(v).rjust(8) for v in r[1:]]))
    return "\n".join(lines)


def ablation_ma(base: RunConfig, out: Path, quiet: bool = False) -> dict:
    """Table 1: part precision (IoU > 0.5) of head and tail, and ZSL, with and without L_MA."""
    res = {}
    trained = stages_trained_by_ma(base)
    if not trained:
        print(f"note: in {base.name} L_MA trains no weight (no stage with it trains the attention subnet "
              "or the CNN under the maps), so 'w/o MA' is the same model by construction; both are trained "
              "and evaluated anyway", flush=True)
    res["ma_trains"] = trained
    for key, use in (("with_ma", True), ("without_ma", False)):
        s = _train_and_evaluate(_variant(base, key, use_ma_loss=use), out / key, quiet)
        parts = s.get("parts", {})
        got = {p: parts.get(p) for p in PARTS}
        vals = [v for v in got.values() if v is not None]
        res[key] = {**got, "average": sum(vals) / len(vals) if vals else None,
                    "random": parts.get("random", {}), "zsl": s["zsl"]["mca"], "run": str(out / key)}
    keys = list(PARTS) + ["average", "zsl"]
    res["difference"] = {k: (res["with_ma"][k] - res["without_ma"][k])
                         if res["with_ma"][k] is not None and res["without_ma"][k] is not None else None
                         for k in keys}
    rand = res["with_ma"]["random"]
    rows = [["Ours"] + [res["with_ma"][k] for k in keys],
            ["Ours w/o MA"] + [res["without_ma"][k] for k in keys],
            ["difference"] + [res["difference"][k] for k in keys],
            ["Random squares"] + [rand.get(p) for p in PARTS]
            + [sum(rand.values()) / len(rand) if rand else None, None]]
    print(_table(f"Table 1 ablation ({base.name}): part precision (IoU > 0.5, %) and ZSL MCA (%)",
                 ["method", "head", "tail", "average", "ZSL"], rows))
    return res


SOFTMAX_ONLY = dict(alpha_cct=0.0, inference="compatibility")


def table4_upper_rows() -> dict[str, dict]:
    """The model settings of Table 4's upper rows and of the full model: the upper rows share one
    loss (L_CLS) and one inference (compatibility) and differ only in their inputs."""
    return {
        "Baseline": dict(use_parts=False, use_ma_loss=False, **SOFTMAX_ONLY),
        "Parts": dict(use_image_branch=False, **SOFTMAX_ONLY),
        "Baseline+Parts": dict(**SOFTMAX_ONLY),
        "Baseline+Random Parts": dict(random_parts=True, **SOFTMAX_ONLY),
        "Full model (L_CLS + L_CCT + L_MA, combined)": dict(),
    }


JOINT_LOSS_MODES = (("Embedding Softmax", "compatibility"), ("Class-Center Triplet", "center"),
                    ("Combined", "combined"))


def table4_runs() -> dict[str, tuple[list[tuple[str, str | None]], dict]]:
    """Table 4's trainings, in the table's order: folder name -> (its rows as (label, inference
    mode read from the evaluation, None for the run's own), model settings). The joint-loss
    image-only model gives three rows, one per inference mode of section 3.4."""
    runs = {label.split(" (")[0].lower().replace("+", "_").replace(" ", "_"): ([(label, None)], model)
            for label, model in table4_upper_rows().items()}
    runs["joint_loss_image_only"] = (list(JOINT_LOSS_MODES), dict(use_parts=False, use_ma_loss=False))
    return runs


def table4_rows(runs: dict[str, tuple[list[tuple[str, str | None]], dict]] | None = None) -> list[str]:
    """Every row label of Table 4, in order."""
    return [label for rows, _ in (runs or table4_runs()).values() for label, _ in rows]


def ablation_table4(base: RunConfig, out: Path, quiet: bool = False, only: list[str] | None = None) -> dict:
    """Table 4: image inputs (upper part) and the inference branches of the joint loss (lower part).
    ``only``: train these of ``table4_runs()`` and keep the rows of the others that ``out/results.json``
    already holds from an earlier call (a table filled over several calls)."""
    runs = table4_runs()
    unknown = [k for k in (only or []) if k not in runs]
    if unknown:
        raise ValueError(f"unknown Table 4 run {', '.join(unknown)}; choose from {', '.join(runs)}")
    res = _earlier_rows(out / "results.json", "table4") if only else {}
    for key, (rows, model) in runs.items():
        if only and key not in only:
            continue
        s = _train_and_evaluate(_variant(base, key, **model), out / key, quiet)
        for label, mode in rows:
            m = s["modes"][mode] if mode else s
            res[label] = {"zsl": m["zsl"]["mca"], "gzsl_h": m["gzsl"]["h"], "inference": mode or s["inference"],
                          "run": str(out / key)}
    res = {label: res[label] for label in table4_rows(runs) if label in res}
    print(_table(f"Table 4 ablation ({base.name}): ZSL mean class accuracy and GZSL H (%)",
                 ["method", "ZSL", "GZSL H"], [[label, v["zsl"], v["gzsl_h"]] for label, v in res.items()]))
    return res


def _earlier_rows(path: Path, which: str) -> dict:
    """The rows of an earlier ``results.json`` of the same ablation, {} when there is none."""
    if not path.is_file():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AblationError(f"{path}: cannot read the earlier results ({e}); move it away to start the table afresh") from None
    if earlier.get("ablation") != which:
        raise AblationError(f"{path} holds the {earlier.get('ablation')!r} ablation, not {which!r}")
    return dict(earlier.get("results", {}))


def run_ablation(which: str, out: Path, preset_name: str = "demo", quiet: bool = False,
                 only: list[str] | None = None) -> dict:
    """``which`` is "ma" (Table 1) or "table4"; returns the results and writes ``out/results.json``.
    ``only`` (Table 4): the trainings to run, by folder name (``table4_runs``)."""
    out = Path(out)
    if only and which != "table4":
        raise ValueError("only Table 4's trainings can be chosen one by one")
    base = _base_config(preset_name)
    if which == "ma":
        res = ablation_ma(base, out, quiet)
    elif which == "table4":
        res = ablation_table4(base, out, quiet, only)
    else:
        raise ValueError(f"unknown ablation {which!r}; choose ma or table4")
    res = {"ablation": which, "preset": preset_name, "seed": base.train.seed, "results": res}
    atomic_write_bytes(out / "results.json", json.dumps(res, indent=2, default=float).encode())
    return res
