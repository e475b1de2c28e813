"""Runs as library calls: train a configuration into a run folder, evaluate a checkpoint on its
dataset (or another). The ``sgma`` command (engine/cli.py), the ablations (engine/ablation.py)
and the benchmarks call these; they print progress but parse no arguments.

``run_training`` drives ``Trainer.run`` with a tqdm bar on stderr and turns Ctrl-C / SIGTERM into
the trainer's stop request; ``evaluate_checkpoint`` rebuilds the model, loads the dataset the
checkpoint names (or ``kind``/``root``/``split``) and returns the evaluator's summary dict."""
from __future__ import annotations

import sys
from pathlib import Path

from .config import RunConfig
from .errors import SGMAError
from .runlock import Interrupted, stop_on_signals


class RunError(SGMAError):
    """A training run failed, or a checkpoint cannot score the dataset it is evaluated on."""


def run_training(cfg: RunConfig, out: Path, resume: bool = False, dataset=None, quiet: bool = False) -> Path:
    """Train with a tqdm progress bar; returns the run folder. Raises RunError on failure.
    Ctrl-C and SIGTERM act as the stop request: ``last.pt`` is saved at the next step, then
    ``Interrupted`` is raised (engine/runlock.py)."""
    from tqdm import tqdm
    from . import events as ev
    from .trainer import Trainer
    trainer = Trainer(cfg, out, dataset=dataset, resume=resume)
    bar, stopped = None, False
    with stop_on_signals(trainer.request_stop) as got:
        try:
            for e in trainer.run():
                if isinstance(e, ev.StageStarted):
                    if bar is not None:
                        bar.close()
                    total = e.epochs * e.steps_per_epoch or None
                    bar = tqdm(total=total, desc=f"stage {e.index} {e.stage}", unit="step", disable=quiet,
                               dynamic_ncols=True, file=sys.stderr)
                elif isinstance(e, ev.Step) and bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in e.losses.items()} | {"eta": f"{e.eta_s:.0f}s"})
                elif isinstance(e, ev.Progress) and bar is not None:
                    bar.set_postfix_str(f"{e.task} {e.done}/{e.total}" if e.total > 1 else e.task)
                elif isinstance(e, ev.EpochEnd) and bar is not None and e.metrics and not quiet:
                    bar.write(f"  {e.stage} epoch {e.epoch}: " + ", ".join(f"{k}={v:.3f}" for k, v in e.metrics.items())
                              + (" (best)" if e.best else ""))
                elif isinstance(e, ev.Log) and not quiet:
                    print(f"  {e.message}", file=sys.stderr)
                elif isinstance(e, ev.Failed):
                    raise RunError(e.error)
                elif isinstance(e, ev.Finished):
                    stopped = e.stopped
        finally:
            if bar is not None:   # a tqdm without a total refuses bool()
                bar.close()
    if stopped:
        raise Interrupted(got["signal"] or "stop", out)
    return out


def _dataset_for(state: dict, kind: str | None, root: str | None, split: str | None):
    from .config import DataConfig, from_dict
    from .data.registry import load_data
    dc = from_dict(DataConfig, state["config"]["data"], "data")
    if kind and kind != dc.kind:
        dc = DataConfig(kind=kind, root=root or "")   # the old kind's options, split, semantics do not apply
    elif kind:
        dc.root = root or ""
    elif root:
        dc.root = root
    if split:
        dc.split = split
    return load_data(dc)


def evaluate_checkpoint(path: str, kind=None, root=None, split=None, gamma=None,
                        skip_unreadable: bool = False) -> dict:
    """The evaluation summary (engine/evaluate.py) of checkpoint or run folder ``path`` on the
    dataset it was trained on, or on dataset ``kind`` at ``root`` (``split``: ps or ss)."""
    import torch
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .evaluate import evaluate
    state = load_checkpoint(path)
    model = model_from_checkpoint(state)
    ds = _dataset_for(state, kind, root, split)
    if list(ds.attribute_names) != list(state["attribute_names"]):
        other = [n for n in ds.attribute_names if n not in set(state["attribute_names"])]
        raise RunError(f"the run was trained on dataset {state['config']['data']['kind']!r} with "
                       f"{len(state['attribute_names'])} attributes; dataset {ds.name!r}"
                       f"{f' at {root}' if root else ''} has other attributes ({len(ds.attribute_names)}"
                       f"{f', e.g. {other[0]!r}' if other else ''}): the model can only score classes "
                       f"described by the attributes it was trained on")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return evaluate(model.to(device), state, ds, device=device, calibration_gamma=gamma,
                    skip_unreadable=skip_unreadable).summary
