"""Typed events a training run emits. The GUI and the CLI are views over this stream."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Event:
    pass


@dataclass
class StageStarted(Event):
    stage: str               # "warmup", "grouping", "pretrain_parts", "joint"
    index: int               # 0..3
    epochs: int
    steps_per_epoch: int


@dataclass
class Planned(Event):
    """Once, before the first stage: the gradient steps the run (its selection pass) will make,
    resumed steps included. The retrain on all seen classes that may follow plans its own."""
    total_steps: int


@dataclass
class Step(Event):
    stage: str
    epoch: int
    step: int                # step within the epoch
    global_step: int
    losses: dict[str, float]
    lr: float
    images_per_s: float = 0.0
    eta_s: float = 0.0       # estimated seconds left in the whole run


@dataclass
class Progress(Event):
    """Work inside a stage that has no gradient steps to count (the feature passes of stage 1's
    channel grouping and of stage 2's cropping-net fit); a stop request ends it between batches."""
    stage: str
    task: str                # what is being done, for the user: "reading features for the grouping"
    done: int
    total: int
    eta_s: float = float("nan")


@dataclass
class EpochEnd(Event):
    stage: str
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)   # e.g. val_zsl_mca, val_head_iou
    best: bool = False


@dataclass
class CheckpointSaved(Event):
    path: str
    kind: str                # "last", "best", "stop"


@dataclass
class Paused(Event):
    pass


@dataclass
class Resumed(Event):
    pass


@dataclass
class Log(Event):
    message: str


@dataclass
class Finished(Event):
    run_dir: str
    stopped: bool            # True when a stop request ended the run early
    best_metric: float = float("nan")


@dataclass
class Failed(Event):
    error: str               # a message for the user
    traceback: str = ""
