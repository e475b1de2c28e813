"""Staged SGMA training (section 4.1) as a generator of typed events.

    stage 0 "warmup"          image branch on seen-class classification, embedding softmax (Eq. 9)
    stage 1 "grouping"        channels grouped by peak position (k-means, or the co-location grouping
                              of engine/colocation.py); a_i pretrained on the groups; with
                              ``mine_rounds`` each map then sharpened by mining (engine/mining.py);
                              with ``model.far_end_square`` the object direction and the anchor map
                              (engine/objectness.py)
    stage 2 "pretrain_parts"  pseudo squares at the map peaks: cropping net by MSE (``cropper_fit_steps``
                              Adam steps, then with the part epochs), part branches by L_CLS + L_CCT
                              on the pseudo-cropped parts (image CNN frozen)
    stage 3 "joint"           everything end to end with L_SGMA (Eq. 11)

Model selection uses validation classes only: with ``select_on_val`` the model trains on the
fold's train classes and ``best.pt`` is the epoch with the best ZSL mean class accuracy
(compatibility scores) on the held-out validation classes. Unseen test classes are never looked at.
With ``retrain_on_trainval`` (the default; the xlsa17 protocol) the final model is then trained
again on every seen class in ``final/``, for the stages and epochs that selection chose, with the
learning rates the selection run had at each of those epochs and Eq. 13's beta it chose; it is
copied to ``final.pt``, which a run folder then opens first. Its checkpoint's ``protocol`` says what
the numbers rest on. With ``gzsl_holdout`` the selection run also keeps that share of each training
class's images out of training, and chooses calibrated stacking's gamma on them and the validation
classes (a GZSL validation split; ``evaluate.choose_gamma``); the final model inherits it.
Pause, resume and stop are cooperative (checked between steps); stop saves ``last.pt`` with the
position inside the epoch, and a resumed run replays exactly the batches that were left.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import threading
import time
import traceback
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import events as ev
from .backbone_cache import BackboneCache
from .finetune import finetune_attention_cnn
from .checkpoint import CheckpointError, RunPosition, load_checkpoint, model_from_checkpoint, save_checkpoint
from .objectness import ObjectStats, choose_anchor_map, fit_object_direction, object_masks, peaks_inside
from .mining import mine_attention
from .config import (STAGE_BY_NAME, STAGE_NAMES, ModelConfig, RunConfig, from_dict,
                     save_toml, stage_plan, to_dict)
from .data.base import ZSLDataset
from .data.registry import load_data
from .embedding import class_center_triplet_loss, embedding_softmax_loss
from .errors import SGMAError
from .extract import extract
from .image_check import describe, find_unreadable
from .loader import EpochOrder, ImageSet, make_loader
from .metrics import mean_class_accuracy, part_precision
from .metrics_log import MetricsLog
from .runlock import RunLock, RunLockError
from .model import SGMA
from .grouping import group_channels
from .stages import fit_cropper, pretrain_channel_weights, pseudo_squares


class TrainingError(SGMAError, RuntimeError):
    """Training cannot start or continue; the message says why and what to change."""


class StepModule(nn.Module):
    """One training step's losses, as a module so DistributedDataParallel can wrap it."""

    def __init__(self, model: SGMA):
        super().__init__()
        self.model = model

    def forward(self, loss: str, x, y, sem, pseudo_side: float = 0.25, frozen=None):
        """The losses of ``config.Stage.loss`` for a batch."""
        m = self.model
        if loss == "image_softmax":
            l_cls = F.cross_entropy(m.image_scores(x, sem, frozen=frozen), y)
            return {"total": l_cls, "cls": l_cls.detach()}
        if loss == "pseudo_squares":
            with torch.no_grad():
                _, maps, _ = m.attend(x, None if frozen is None else frozen.attention)
            target = pseudo_squares(maps, pseudo_side)
            l_mse = F.mse_loss(m.cropper(maps), target)
            out = m(x, sem, squares=target, frozen=frozen)
            l_cls = embedding_softmax_loss(out.scores, y)
            l_cct = class_center_triplet_loss(out.cct_features, m.centers, y, m.cfg.cct_margin)
            total = l_mse + m.cfg.alpha_cls * l_cls + m.cfg.alpha_cct * l_cct
            return {"total": total, "mse": l_mse.detach(), "cls": l_cls.detach(), "cct": l_cct.detach()}
        if loss != "sgma":
            raise ValueError(f"unknown stage loss {loss!r}")
        out = m(x, sem, frozen=frozen)
        return m.losses(out, y)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_writable(run_dir: Path) -> None:
    """Fail before training if the run folder cannot be created or written (full disk, read-only)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_probe"
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"cannot write to the output folder {run_dir}: {e.strerror or e}") from None


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | os.PathLike, dataset: Optional[ZSLDataset] = None,
                 resume: bool = False, _selection: Optional["Trainer"] = None):
        cfg.validate()
        self.cfg, self.run_dir, self.resume = cfg, Path(run_dir), resume
        self._dataset = dataset
        self._pause, self._stop = threading.Event(), threading.Event()
        self.model: Optional[SGMA] = None
        # the retrain on trainval: the selection run whose images, cache and learning rates it reuses
        self._selection = _selection
        self.lr_history: dict[str, list[float]] = {}   # stage -> the rate each epoch started with

    # cooperative control, safe to call from another thread
    def request_pause(self) -> None:
        self._pause.set()

    def request_resume(self) -> None:
        self._pause.clear()

    def request_stop(self) -> None:
        self._stop.set()
        self._pause.clear()

    def run(self) -> Iterator[ev.Event]:
        try:
            yield from self._run()
        except (TrainingError, CheckpointError, RunLockError) as e:
            yield ev.Failed(str(e))
        except torch.cuda.OutOfMemoryError:
            yield ev.Failed(f"the GPU ran out of memory at batch size {self.cfg.train.batch_size}: "
                            f"lower train.batch_size (e.g. to {max(self.cfg.train.batch_size // 2, 1)})",
                            traceback.format_exc())
        except Exception as e:  # noqa: BLE001 - reported to the user as an event, never swallowed
            yield ev.Failed(f"{type(e).__name__}: {e}", traceback.format_exc())
        finally:
            if self._lock is not None:
                self._lock.release()
            # the retrain pass (``_selection`` set) runs inside its parent's process group
            if self.world > 1 and self._selection is None and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    # ------------------------------------------------------------------ set-up
    world = 1
    _lock: Optional[RunLock] = None     # the run-folder lock (engine/runlock.py), held by rank 0

    def _setup(self) -> None:
        cfg, tc = self.cfg, self.cfg.train
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = resolve_device(tc.device)
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            if not torch.distributed.is_initialized():
                torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.rank == 0:
            check_writable(self.run_dir)
            self._lock = RunLock(self.run_dir).acquire()
            for stale in self.run_dir.glob(".*.pt.*.tmp"):   # a write killed before its os.replace
                stale.unlink(missing_ok=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = tc.cudnn_benchmark
        if tc.num_threads > 0:
            torch.set_num_threads(tc.num_threads)
        self.amp = tc.amp and self.device.type == "cuda"
        self.amp_dtype = torch.float16 if tc.amp_dtype == "fp16" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and tc.amp_dtype == "fp16")
        torch.manual_seed(tc.seed)
        np.random.seed(tc.seed)
        random.seed(tc.seed)
        if self._dataset is None:
            self._dataset = load_data(cfg.data)
        ds = self.dataset = self._dataset
        sp = ds.split
        if tc.select_on_val and sp.val_classes:
            self.train_classes = list(sp.train_classes or [c for c in sp.seen if c not in sp.val_classes])
            self.val_classes = list(sp.val_classes)
        else:
            self.train_classes, self.val_classes = list(sp.seen), []
        self.label_map = {c: i for i, c in enumerate(self.train_classes)}
        labels = ds.labels
        keep = set(self.train_classes)
        self.train_idx = [i for i in sp.trainval if labels[i] in keep]
        vk = set(self.val_classes)
        self.val_idx = [i for i in sp.trainval if labels[i] in vk]
        # every image decoded once up front (engine/image_check.py): a bad file is named before any work
        self.skipped = self._selection.skipped if self._selection is not None else \
            find_unreadable(ds, self.train_idx + self.val_idx)      # the retrain reads the same images
        if self.skipped and not tc.skip_unreadable:
            raise TrainingError(f"{describe(self.skipped)}; nothing was trained (train.skip_unreadable = true, "
                                "sgma train --skip-unreadable, leaves them out)")
        if self.skipped:
            drop = {i for i, _, _ in self.skipped}
            self.train_idx = [i for i in self.train_idx if i not in drop]
            self.val_idx = [i for i in self.val_idx if i not in drop]
        self.holdout_idx: list[int] = []
        if tc.gzsl_holdout > 0 and self.val_idx:
            self.train_idx, self.holdout_idx = holdout_split(self.train_idx, labels, tc.gzsl_holdout, tc.seed)
        if not self.train_idx:
            raise TrainingError(f"dataset {ds.name}: no training images in the seen classes")
        self.sem_all = torch.as_tensor(ds.semantics, dtype=torch.float32, device=self.device)
        self.sem_train = self.sem_all[self.train_classes]
        self.model = SGMA(cfg.model, ds.semantics.shape[1], len(self.train_classes)).to(self.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_module: nn.Module = StepModule(self.model)
        if self.world > 1:
            self.step_module = nn.parallel.DistributedDataParallel(self.step_module, find_unused_parameters=True)
        if tc.compile:
            self.step_module = torch.compile(self.step_module)
        cache = ds.name == "synthetic" or len(self.train_idx) <= 4000
        self.images = ImageSet(ds, self.train_idx, cfg.model.input_size, self.label_map,
                               augment=tc.augment, seed=tc.seed, cache=cache)
        self.val_images = ImageSet(ds, self.val_idx, cfg.model.input_size, cache=cache)
        sel = self._selection
        if cache and sel is not None and sel.images._cache is not None:    # decoded once for both runs
            self.images._cache.update(sel.images._cache)
            self.images._cache.update(sel.val_images._cache)
        if cache and self.rank == 0:     # decoded into memory now rather than during the first epoch
            bad = self.images.preload() + self.val_images.preload()
            if bad:                       # changed on disk since the check above
                raise TrainingError(f"{len(bad)} of {len(self.train_idx) + len(self.val_idx)} images cannot be "
                                    f"read: " + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
        self.order = EpochOrder(len(self.images), tc.batch_size, tc.seed, rank=self.rank, world=self.world)
        self.cache = BackboneCache(self.model.image_net, cfg.model.image_size, tc.feature_cache_mb * 1024 ** 2,
                                   theta_backbone=self.model.theta_net, attention_size=cfg.model.attention_size) \
            if cfg.model.freeze_backbone and tc.feature_cache else None
        if self.cache is not None and sel is not None and sel.cache is not None and not cfg.model.finetune_blocks:
            self.cache = sel.cache     # the same frozen pretrained weights, keyed by dataset image and flip
        self.log = None            # opened in _run, once a resume has said where the run stands
        self._val_sizes = None

    def _stage_plan(self) -> list[tuple[int, str, int]]:
        return [(i, st.name, epochs) for i, st, epochs in stage_plan(self.cfg)]

    def _make_optim(self, name: str, lr: float):
        """SGD over the stage's parameters; the attention subnet gets ``lr * localisation_lr_scale``
        and the cropping subnet that times ``cropping_lr_scale`` (a scale of 0 holds them fixed)."""
        tc = self.cfg.train
        stage = getattr(tc, name)
        scales = {id(p): stage.localisation_lr_scale for p in self.model.attention.parameters()}
        scales.update({id(p): stage.localisation_lr_scale * stage.cropping_lr_scale
                       for p in self.model.cropper.parameters()})
        params = [p for p in self.model.stage_parameters(STAGE_BY_NAME[name].trains) if p.requires_grad]
        by_scale: dict[float, list] = {1.0: []}     # the stage's own rate first: param_groups[0] is logged
        for p in params:
            by_scale.setdefault(scales.get(id(p), 1.0), []).append(p)
        groups = [{"params": ps, "lr": lr * scale, "stage_lr": lr * scale} for scale, ps in by_scale.items()
                  if scale > 0 and ps]
        opt = torch.optim.SGD(groups, lr=lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=tc.lr_factor,
                                                           patience=tc.lr_patience, min_lr=tc.min_lr)
        return opt, sched

    # ------------------------------------------------------------------ the run
    def _run(self) -> Iterator[ev.Event]:
        self._setup()
        tc = self.cfg.train
        if self.skipped and self._selection is None:
            yield ev.Log(f"left out of training: {describe(self.skipped, limit=10)} (train.skip_unreadable)")
        plan = self._stage_plan()
        pos = RunPosition(stage=plan[0][0] if plan else 0)
        self.best = -math.inf
        self.channel_groups: list[int] = []
        resumed_state = None
        if self.resume:
            resumed_state = self._load_resume()
            pos = RunPosition.from_dict(resumed_state["position"])
            self.best = resumed_state["best_metric"]
            self._attach_object_projection()
            if (self.run_dir / "best.pt").is_file():     # killed after writing best.pt, before last.pt
                self.best = max(self.best, load_checkpoint(self.run_dir / "best.pt")["best_metric"])
        if self.rank == 0:
            self._write_run_files()
            self.log = MetricsLog(self.run_dir, pos.global_step if self.resume else None)
        self.n_batches = self.order.n_batches() if tc.max_steps_per_epoch <= 0 else \
            min(self.order.n_batches(), tc.max_steps_per_epoch)
        self._total_steps = sum(e * self.n_batches for _, name, e in plan if STAGE_BY_NAME[name].gradient_steps)
        self.global_step = pos.global_step
        self._t_start, self._steps_done_here = time.perf_counter(), 0
        if self._selection is None:
            yield ev.Planned(self._total_steps)
        for stage_idx, name, epochs in plan:
            if stage_idx < pos.stage:
                continue
            stopped = yield from self._run_stage(stage_idx, name, epochs, pos, resumed_state)
            if stopped:
                return
            resumed_state = None   # the saved optimizer belongs to the resumed stage only, never a later one
            pos = self._at(stage_idx + 1)
        if self.rank == 0:
            if not (self.run_dir / "best.pt").exists():
                self._save("best", pos, None, None)
            self._store_prototypes(self.run_dir / "best.pt")
        if self._selection is None and tc.retrain_on_trainval and self.val_classes:
            stopped = yield from self._retrain_on_trainval()
            if stopped:
                return
        yield ev.Finished(str(self.run_dir), stopped=False, best_metric=self.best)

    def _selected_epochs(self, best: dict) -> dict[str, int]:
        """Per stage, the epochs the selection run had trained when it wrote ``best``: every
        stage before best.pt's in full, best.pt's own up to its epoch, none after it."""
        at = RunPosition.from_dict(best["position"])
        out = {}
        for i, name, epochs in self._stage_plan():
            out[name] = epochs if i < at.stage else (at.epoch if i == at.stage else 0)
        return out

    def _retrain_on_trainval(self) -> Iterator[ev.Event]:
        """Train the final model on every seen class with what selection chose (the xlsa17
        protocol): ``final/`` holds that run, ``final.pt`` its model. Returns True when stopped."""
        final_dir = self.run_dir / "final"
        best = load_checkpoint(self.run_dir / "best.pt") if self.rank == 0 else None
        chosen = [self._selected_epochs(best), dict(best.get("lr_history", {})),
                  (final_dir / "last.pt").is_file()] if best is not None else [None, None, None]
        if self.world > 1:                   # only rank 0 writes (and reads) the run folder
            torch.distributed.broadcast_object_list(chosen, src=0)
        epochs, lr_history, resume = chosen
        cfg = from_dict(RunConfig, to_dict(self.cfg), "config")
        cfg.train.select_on_val = False
        for name in STAGE_NAMES:
            getattr(cfg.train, name).epochs = epochs.get(name, 0)
        child = Trainer(cfg, final_dir, dataset=self.dataset, resume=resume, _selection=self)
        child._pause, child._stop = self._pause, self._stop      # one pause / stop for both runs
        child.lr_history = lr_history
        seen = len(self.dataset.split.seen)
        yield ev.Log(f"retraining on all {seen} seen classes with the selected epochs "
                     + ", ".join(f"{k} {v}" for k, v in epochs.items() if v) + f" (selected on the validation "
                     f"classes: ZSL {self.best:.3f}); into {final_dir}")
        for e in child.run():
            if isinstance(e, ev.Failed):
                raise TrainingError(f"the retrain on all seen classes failed: {e.error}")
            if isinstance(e, ev.Finished):
                if e.stopped:
                    yield ev.Finished(str(self.run_dir), stopped=True, best_metric=self.best)
                    return True
                continue
            yield e
        if self.rank != 0:
            return False
        final = load_checkpoint(final_dir / "best.pt")
        protocol = {"train_classes": len(final["train_classes"]), "seen_classes": seen,
                    "selected_on": f"valclasses{self.cfg.data.fold}", "val_zsl_mca": float(self.best),
                    "epochs": epochs, "beta": best.get("beta", self.cfg.inference.beta), "retrained": True,
                    "selection_checkpoint": "best.pt"}
        final["protocol"] = protocol
        if "gzsl_gamma" in best:
            protocol["gzsl_gamma"] = best["gzsl_gamma"]
        # Eq. 13's beta, as chosen on the validation classes, and the GZSL gamma, on the holdout
        for key in ("beta", "beta_validation", "gzsl_gamma", "gzsl_gamma_validation"):
            if key in best:
                final[key] = best[key]
        final.pop("format_version", None)
        save_checkpoint(final, self.run_dir / "final.pt")
        best["protocol"] = dict(protocol, train_classes=len(best["train_classes"]), retrained=False,
                                final_checkpoint="final.pt")
        best.pop("format_version", None)
        save_checkpoint(best, self.run_dir / "best.pt")
        yield ev.CheckpointSaved(str(self.run_dir / "final.pt"), "final")
        return False

    def _run_stage(self, stage_idx: int, name: str, epochs: int, pos: RunPosition,
                   resumed_state: Optional[dict]) -> Iterator[ev.Event]:
        """One stage of ``_stage_plan`` from ``pos`` on; returns True when a stop request ended it."""
        tc = self.cfg.train
        opt, sched = self._make_optim(name, getattr(tc, name).lr or tc.lr)
        if resumed_state is not None and stage_idx == pos.stage and resumed_state.get("optimizer"):
            opt.load_state_dict(resumed_state["optimizer"])
            sched.load_state_dict(resumed_state["scheduler"])
        stage = STAGE_BY_NAME[name]
        yield ev.StageStarted(name, stage_idx, epochs, self.n_batches if stage.gradient_steps else 0)
        start_epoch = pos.epoch if stage_idx == pos.stage else 0
        for epoch in range(start_epoch, epochs):
            start_batch = pos.batch if (stage_idx == pos.stage and epoch == pos.epoch) else 0
            at_start = self._at(stage_idx)
            if stage.prepare == "fit_cropper" and epoch == 0 and start_batch == 0:
                if (yield from self._fit_cropper()):         # stopped: a resume redoes the fit
                    return (yield from self._wait_or_stop(at_start, opt, sched))
            if not stage.gradient_steps:       # stage 1: one grouping fit, then one validation
                if start_batch == 0 and epoch == 0 and stage.prepare == "group_channels":
                    if (yield from self._grouping_stage(epochs)):
                        return (yield from self._wait_or_stop(at_start, opt, sched))
                self._sync_ranks()
                yield from self._end_epoch(name, stage_idx, epochs - 1, self._validate(), sched=None, opt=opt)
                return False
            stopped = yield from self._run_epoch(stage_idx, name, epoch, start_batch, opt, sched)
            if stopped:
                return True
            self._sync_ranks()
            yield from self._end_epoch(name, stage_idx, epoch, self._validate(), sched, opt)
        return False

    def _epoch_rates(self, name: str, epoch: int, opt) -> None:
        """Record the rate this epoch starts with, as a factor of the stage's own; the retrain on
        trainval, which has no validation classes to drive the plateau schedule, replays the
        selection run's factors instead."""
        history = self.lr_history.setdefault(name, [])
        if self._selection is not None:
            factor = history[epoch] if epoch < len(history) else (history[-1] if history else 1.0)
            for g in opt.param_groups:
                g["lr"] = g.get("stage_lr", g["lr"]) * factor
            return
        del history[epoch:]
        g = opt.param_groups[0]
        history.append(g["lr"] / g.get("stage_lr", g["lr"]))

    def _run_epoch(self, stage_idx: int, name: str, epoch: int, start_batch: int, opt, sched) -> Iterator[ev.Event]:
        """The training steps of one epoch from ``start_batch``; returns True when stopped."""
        tc = self.cfg.train
        self._epoch_rates(name, epoch, opt)
        self.model.train()
        self.images.epoch = epoch + 1000 * stage_idx
        self.order.set_epoch(stage_idx, epoch, start_batch)
        loader = make_loader(self.images, self.order, tc.batch_size, tc.num_workers,
                             tc.pin_memory and self.device.type == "cuda")
        for b, (x, y, idx) in enumerate(loader, start=start_batch):
            if tc.max_steps_per_epoch > 0 and b >= tc.max_steps_per_epoch:
                break
            if self._stop.is_set() or self._pause.is_set():
                stopped = yield from self._wait_or_stop(self._at(stage_idx, epoch, b), opt, sched)
                if stopped:
                    return True
            t0 = time.perf_counter()
            losses = self._train_step(name, x, y, opt, idx)
            self.global_step += 1
            self._steps_done_here += 1
            dt = time.perf_counter() - t0
            elapsed = time.perf_counter() - self._t_start
            eta = elapsed / self._steps_done_here * max(self._total_steps - self.global_step, 0)
            step = ev.Step(name, epoch, b, self.global_step, losses, opt.param_groups[0]["lr"],
                           len(x) * self.world / max(dt, 1e-9), eta)
            if self.log:
                self.log.step(step)
            if self.global_step % max(tc.log_every_steps, 1) == 0:
                yield step
            if tc.checkpoint_every_steps and self.global_step % tc.checkpoint_every_steps == 0:
                p = self._save("last", self._at(stage_idx, epoch, b + 1), opt, sched)
                if p:
                    yield ev.CheckpointSaved(str(p), "last")
        return False

    def _sync_ranks(self) -> None:
        """DDP: give every rank rank 0's parameters and buffers. BatchNorm running statistics drift
        apart in an epoch's last step (DDP broadcasts buffers only at the next forward) and k-means
        runs on each rank; without this, validation, the LR schedule and k-means would differ."""
        if self.world > 1:
            with torch.no_grad():
                for t in self.model.state_dict().values():
                    torch.distributed.broadcast(t, 0)

    def _frozen(self, x, idx, images: ImageSet):
        """The frozen backbone's outputs for a batch, from the feature cache (None without one)."""
        if self.cache is None:
            return None
        return self.cache.get(x, idx.tolist(), [images.is_flipped(int(i)) for i in idx])

    def _train_step(self, name: str, x, y, opt, idx=None) -> dict[str, float]:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            frozen = self._frozen(x, idx, self.images) if idx is not None else None
            losses = self.step_module(STAGE_BY_NAME[name].loss, x, y, self.sem_train, self.cfg.model.part_side_init, frozen)
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        self.scaler.step(opt)
        self.scaler.update()
        values = torch.stack([v.detach().float() for v in losses.values()]).tolist()   # one device sync
        return dict(zip(losses.keys(), values))

    def _at(self, stage: int, epoch: int = 0, batch: int = 0) -> RunPosition:
        """The position (stage, epoch, next batch) with the steps taken so far."""
        return RunPosition(stage, epoch, batch, self.global_step)

    def _wait_or_stop(self, where: RunPosition, opt, sched) -> Iterator[ev.Event]:
        if self._pause.is_set() and not self._stop.is_set():
            yield ev.Paused()
            while self._pause.is_set() and not self._stop.is_set():
                time.sleep(0.05)
            if not self._stop.is_set():
                yield ev.Resumed()
        if self._stop.is_set():
            p = self._save("last", where, opt, sched)
            if p:
                yield ev.CheckpointSaved(str(p), "stop")
            yield ev.Finished(str(self.run_dir), stopped=True, best_metric=self.best)
            return True
        return False

    def _sample_pass(self, n: int, seed: int, fn, stage: str, task: str) -> Iterator[ev.Event]:
        """``fn(x, frozen)`` over ``n`` seeded-random training images in eval mode without autograd,
        concatenated: the cached inputs of the stage 1 and stage 2 initialisations. ``frozen`` is
        the feature cache's entry for the batch, or None without a cache. Yields a Progress event
        per batch; returns the tensor, or None when a stop request ended the pass."""
        pick = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        self.model.eval()
        out, t0, bs = [], time.perf_counter(), self.cfg.train.batch_size
        with torch.no_grad():
            for s in range(0, n, bs):
                if self._stop.is_set():
                    return None
                ks = pick[s:s + bs]
                x = torch.stack([self.images[k][0] for k in ks]).to(self.device)
                frozen = self._frozen(x, torch.tensor([self.images.indices[k] for k in ks]), self.images)
                out.append(fn(x, frozen))
                done = min(s + bs, n)
                yield ev.Progress(stage, task, done, n, (time.perf_counter() - t0) / done * (n - done))
        return torch.cat(out)

    def _finetune_attention(self) -> Iterator[ev.Event]:
        """Stage 1's fine-tuning of the attention CNN (``model.finetune_blocks``, engine/finetune.py)
        on the training images; the feature cache, filled with the features before it, is emptied.
        Returns True when a stop request ended it: the blocks are then put back as they were, so
        that a resume redoes the stage from the same weights."""
        m, tc = self.model, self.cfg.train
        before = {k: v.clone() for k, v in m.image_net.state_dict().items()}
        labels = torch.as_tensor([self.label_map[int(self.dataset.labels[i])] for i in self.images.indices],
                                 device=self.device)
        # every rank fine-tunes the same way on all training images; _sync_ranks then gives them rank 0's
        run = finetune_attention_cnn(m.image_net, self.images.unflipped, len(self.images), labels, self.sem_train,
                                     m.cfg.finetune_blocks, tc.finetune_epochs, tc.seed, m.cfg.pretrained)
        t0 = time.perf_counter()
        while True:
            if self._stop.is_set():
                m.image_net.load_state_dict(before)
                return True
            try:
                task, done, total = next(run)
            except StopIteration as fin:
                losses = fin.value
                break
            yield ev.Progress("grouping", task, done, total, (time.perf_counter() - t0) / done * (total - done))
        if self.cache is not None:
            self.cache.clear()
        yield ev.Log(f"fine-tuned the attention CNN's last {m.cfg.finetune_blocks} blocks on {len(self.images)} "
                     f"images: loss {losses[0]:.3f} -> {losses[tc.finetune_epochs - 1]:.3f} (classifier alone), "
                     f"{losses[tc.finetune_epochs]:.3f} -> {losses[-1]:.3f} (with the blocks)")
        return False

    def _grouping_stage(self, epochs: int) -> Iterator[ev.Event]:
        tc, m = self.cfg.train, self.model
        if m.cfg.finetune_blocks and (yield from self._finetune_attention()):
            return True
        n = min(tc.grouping_images, len(self.images))
        feats = yield from self._sample_pass(n, tc.seed, lambda x, fr: (m.image_net(m.attention_input(x)) if fr is None else
                                                                        fr.attention).float().cpu(),
                                             "grouping", "reading features for the channel grouping")
        if feats is None:
            return True
        yield ev.Progress("grouping", f"{tc.channel_grouping} grouping of the channels", 0, 1)
        grouping = group_channels(feats, m.cfg.n_parts, tc.channel_grouping, tc.seed, m.image_net.grouping_channels)
        if grouping.fell_back:
            yield ev.Log(f"co-location grouping found fewer than {m.cfg.n_parts} consistent, salient "
                         "channel groups; falling back to k-means over peak positions")
        groups, how, targets = grouping.groups, grouping.how, grouping.targets
        self.channel_groups = groups.tolist()
        att = m.attention.cpu()
        losses = pretrain_channel_weights(att, feats, targets, epochs, seed=tc.seed)
        sizes = [int((groups == i).sum()) for i in range(m.cfg.n_parts)]
        yield ev.Progress("grouping", "channel-weight pretraining", 1, 1, 0.0)
        yield ev.Log(f"{how} grouped {len(groups)} channels into {sizes} on {n} images; "
                     f"channel-weight pretraining loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        if tc.mine_rounds:
            yield ev.Progress("grouping", "discriminative mining of the part maps", 0, m.cfg.n_parts)
            for i, w, moved in mine_attention(att, feats, tc.mine_rounds, tc.seed, tc.mine_standardise):
                yield ev.Progress("grouping", "discriminative mining of the part maps", i + 1, m.cfg.n_parts)
                yield ev.Log(f"map {i + 1}: {tc.mine_rounds} mining rounds, peaks that moved per round "
                             + " ".join(f"{v:.2f}" for v in moved) + f"; {int((w > 0).sum())} channels weighted")
        m.attention.to(self.device)
        if m.far_end is not None:
            return (yield from self._fit_far_end())
        return False

    def _attach_object_projection(self) -> None:
        """Let the feature cache keep each image's object projection once the direction is fitted."""
        fe = self.model.far_end
        if self.cache is not None and fe is not None and fe.fitted:
            self.cache.set_object_fn(self.model.object_projection, fe.direction)

    def _fit_far_end(self) -> Iterator[ev.Event]:
        """Stage 1 with ``model.far_end_square`` (engine/objectness.py): the object direction (DDT)
        on ``train.object_images`` seeded training images, then the anchor map on the same images.
        The retrain on trainval takes its selection run's direction, so the projections the feature
        cache keeps stay valid. Returns True when a stop request ended it."""
        tc, m = self.cfg.train, self.model
        fe, n = m.far_end, min(tc.object_images, len(self.images))
        fe.anchor.fill_(-1)
        parent = self._selection.model.far_end if self._selection is not None else None
        if parent is not None and parent.fitted:
            fe.set_direction(parent.mean, parent.direction)
            how = "the selection run's object direction"
        else:
            stats = ObjectStats()

            def add(x, frozen):
                stats.add(m.object_features(x))
                return torch.zeros(len(x), 0)   # the moments are the result; the pass needs a tensor
            if (yield from self._sample_pass(n, tc.seed + 2, add, "grouping", "object direction (DDT)")) is None:
                return True
            fe.set_direction(*fit_object_direction(stats))
            how = f"object direction (DDT) fitted on {stats.n} cells of {n} images"
        if self.cache is not None:
            self.cache.set_object_fn(m.object_projection, fe.direction)

        def inside(x, frozen):
            return torch.as_tensor(peaks_inside(m.attend(x, None if frozen is None else frozen.attention)[1],
                                                object_masks(m.object_projection(x, frozen))))
        hits = yield from self._sample_pass(n, tc.seed + 2, inside, "grouping", "the anchor map")
        if hits is None:
            return True
        share = hits.float().mean(0).tolist()
        fe.anchor.fill_(choose_anchor_map(hits.numpy()))
        a = int(fe.anchor)
        yield ev.Log(f"{how}; map peaks inside the object on {n} images: "
                     + ", ".join(f"map {i + 1} {v:.2f}" for i, v in enumerate(share))
                     + f"; map {a + 1} keeps its square, map {2 - a} gets the object's far end from it")
        return False

    def _fit_cropper(self) -> Iterator[ev.Event]:
        tc, m = self.cfg.train, self.model
        n = min(tc.grouping_images * 4, len(self.images))
        maps = yield from self._sample_pass(n, tc.seed + 1,
                                            lambda x, fr: m.attend(x, None if fr is None else fr.attention)[1].float(),
                                            "pretrain_parts", "attention maps for the cropping net's start")
        if maps is None:
            return True
        if tc.cropper_fit_steps == 0:
            with torch.no_grad():
                mse = F.mse_loss(m.cropper(maps), pseudo_squares(maps, m.cfg.part_side_init))
            yield ev.Log(f"cropping net kept at its start (the soft-argmax of the map): MSE {float(mse):.4f} "
                         f"to the pseudo squares of {n} images")
            return False
        losses = fit_cropper(m.cropper, maps, m.cfg.part_side_init, iters=tc.cropper_fit_steps, seed=tc.seed)
        m.train()
        yield ev.Log(f"cropping net fitted to pseudo squares of {n} images: MSE {losses[0]:.4f} -> {losses[-1]:.4f}")
        return False

    def _validate(self) -> dict[str, float]:
        """ZSL mean class accuracy on the validation classes (compatibility scores, argmax among
        validation classes), and the mean predicted part side."""
        if not self.val_idx:
            return {}
        out = extract(self.model, self.dataset, self.val_idx, self.cfg.train.batch_size, self.device,
                      images=self.val_images, cache=self.cache)
        cand = np.asarray(self.val_classes)
        pred = cand[out["scores"][:, cand].argmax(axis=1)]
        metrics = {"val_zsl_mca": float(mean_class_accuracy(out["labels"], pred)),
                   "val_part_side": float(out["squares"][..., 2].mean())}
        # each branch alone (its block of phi_cct against the semantics, Eq. 9 without the late
        # fusion): how well the part crops classify, a signal about them that reads no part box
        names = self.model.branch_names
        if len(names) > 1:
            sem = np.asarray(self.dataset.semantics, dtype=np.float32)[cand]
            for b, block in zip(names, np.split(np.asarray(out["cct"]), len(names), axis=1)):
                metrics[f"val_zsl_mca_{b}"] = float(mean_class_accuracy(out["labels"], cand[(block @ sem.T).argmax(axis=1)]))
        if self.dataset.part_names and self.cfg.model.use_parts:   # logged for the user, never used to select
            from .evaluate import assign_parts, image_sizes, squares_to_pixel_boxes
            if self._val_sizes is None:
                self._val_sizes = image_sizes(self.dataset, out["indices"])
            boxes = squares_to_pixel_boxes(out["squares"], self._val_sizes)
            gt = {p: [self.dataset.items[i].part_boxes.get(p) for i in out["indices"]] for p in self.dataset.part_names}
            for p, m in assign_parts(boxes, gt, self.dataset.part_names).items():
                metrics[f"val_{p}_precision"] = part_precision(list(boxes[:, m]), gt[p])
        return metrics

    def _end_epoch(self, name, stage_idx, epoch, metrics, sched, opt) -> Iterator[ev.Event]:
        score = metrics.get("val_zsl_mca", float("nan"))
        if sched is not None and not math.isnan(score):
            sched.step(score)
        if self.cfg.train.select_from == "parts" and self.cfg.model.use_parts:
            eligible = STAGE_BY_NAME[name].may_select
        else:
            eligible = stage_idx == self._stage_plan()[-1][0]
        is_best = eligible and (math.isnan(score) or score > self.best)
        if is_best and not math.isnan(score):
            self.best = score
        after = self._at(stage_idx, epoch + 1)
        end = ev.EpochEnd(name, epoch, metrics, best=is_best)
        if self.log:
            self.log.epoch(end, opt.param_groups[0]["lr"])
        yield end
        # best.pt first: last.pt never records a best score that best.pt does not hold
        for kind in (("best", "last") if is_best else ("last",)):
            p = self._save(kind, after, opt, sched)
            if p:
                yield ev.CheckpointSaved(str(p), kind)

    # ------------------------------------------------------------------ persistence
    def _state(self, position: RunPosition, opt, sched) -> dict:
        ds = self.dataset
        return {
            "config": to_dict(self.cfg),
            "class_names": list(ds.class_names),
            "attribute_names": list(ds.attribute_names),
            "semantics": torch.as_tensor(ds.semantics, dtype=torch.float32),
            "train_classes": [ds.class_names[c] for c in self.train_classes],
            "val_classes": [ds.class_names[c] for c in self.val_classes],
            "seen_classes": [ds.class_names[c] for c in ds.split.seen],
            "unseen_classes": [ds.class_names[c] for c in ds.split.unseen],
            "dataset": ds.identity(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": opt.state_dict() if opt is not None else {},
            "scheduler": sched.state_dict() if sched is not None else {},
            "grad_scaler": self.scaler.state_dict(),          # empty unless fp16 mixed precision
            "position": position.to_dict(),
            "stage": STAGE_NAMES[position.stage] if position.stage < len(STAGE_NAMES) else "done",
            "epoch": position.epoch,
            "step": position.global_step,
            "best_metric": float(self.best),
            "channel_groups": list(self.channel_groups),
            "lr_history": {k: list(v) for k, v in self.lr_history.items()},
            "rng": {"torch": torch.get_rng_state(), "numpy": _np_state(), "python": repr(random.getstate())},
            "versions": {"torch": str(torch.__version__), "python": platform.python_version()},
        }

    def _save(self, kind: str, position: RunPosition, opt, sched) -> Optional[Path]:
        if self.rank != 0:
            return None
        return save_checkpoint(self._state(position, opt, sched), self.run_dir / f"{kind}.pt")

    def _store_prototypes(self, path: Path) -> None:
        """Add to a checkpoint the class-centre prototypes of the training classes (section 3.4,
        the mean phi_cct of each class's training images), so prediction needs no training data,
        and Eq. 13's beta chosen on the validation classes (``evaluate.choose_beta``), so the
        predictor and the GUI score with the beta the evaluator reports; with GZSL holdout images,
        calibrated stacking's gamma chosen on them and the validation classes (``choose_gamma``)."""
        from .evaluate import choose_beta, choose_gamma, class_prototypes
        from .inference import center_similarity, mode_scores
        state = load_checkpoint(path)
        model = model_from_checkpoint(state, self.device)
        bs = self.cfg.train.batch_size
        out = extract(model, self.dataset, self.train_idx, bs, self.device, cache=self.cache)
        every = class_prototypes(out["cct"], out["labels"], self.train_classes, self.dataset.semantics,
                                 self.cfg.inference.ridge_lambda)
        state["prototypes"] = torch.as_tensor(every[self.train_classes], dtype=torch.float32)
        if self.val_idx:
            ex_val = extract(model, self.dataset, self.val_idx, bs, self.device, images=self.val_images,
                             cache=self.cache)
            beta, scores = choose_beta(ex_val, every, self.val_classes, self.cfg.inference.beta)
            state["beta"], state["beta_validation"] = beta, scores
            if self.holdout_idx:
                ex_h = extract(model, self.dataset, self.holdout_idx, bs, self.device, cache=self.cache)
                both = {k: np.concatenate([ex_h[k], ex_val[k]]) for k in ("scores", "cct", "labels")}
                s = mode_scores(self.cfg.inference.mode, torch.as_tensor(both["scores"]),
                                center_similarity(torch.as_tensor(both["cct"]),
                                                  torch.as_tensor(every, dtype=torch.float32)), beta).numpy()
                gamma, record = choose_gamma(s, both["labels"], self.train_classes, self.val_classes)
                state["gzsl_gamma"] = gamma
                state["gzsl_gamma_validation"] = {**record, "mode": self.cfg.inference.mode}
        state.pop("format_version", None)
        save_checkpoint(state, path)

    def _load_resume(self) -> dict:
        path = self.run_dir / "last.pt"
        state = load_checkpoint(path)
        mine = to_dict(self.cfg)
        theirs = state["config"]
        known = to_dict(ModelConfig())      # a key newer than the checkpoint holds its default there
        diff = [f"model.{k}: {theirs.get('model', {}).get(k, known[k])!r} in the checkpoint, {v!r} now"
                for k, v in mine["model"].items()
                if theirs.get("model", {}).get(k, known[k]) != v]
        if diff:
            raise CheckpointError(f"{path}: cannot resume, the checkpoint was trained with a different "
                                  f"model configuration: {'; '.join(diff[:5])}")
        if state["class_names"] != list(self.dataset.class_names):
            extra = sorted(set(state["class_names"]) ^ set(self.dataset.class_names))[:5]
            raise CheckpointError(f"{path}: cannot resume, the checkpoint was trained with a different class "
                                  f"list ({len(state['class_names'])} classes vs {len(self.dataset.class_names)} now; "
                                  f"differing: {', '.join(extra) or 'same names, other order'})")
        self.model.load_state_dict(state["model"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.channel_groups = state.get("channel_groups", state.get("kmeans_groups", []))   # the earlier key
        if self._selection is None:
            self.lr_history = {k: list(v) for k, v in state.get("lr_history", {}).items()}
        # a later stage may have been extended (--epochs): keep the position, train what is left
        return state

    def _write_run_files(self) -> None:
        save_toml(self.cfg, self.run_dir / "config.toml")
        info = {"seed": self.cfg.train.seed, "dataset": self.dataset.identity(),
                "train_classes": [self.dataset.class_names[c] for c in self.train_classes],
                "model_selection": ("validation classes " + ", ".join(self.dataset.class_names[c]
                                    for c in self.val_classes)) if self.val_classes else "none (last epoch)",
                "versions": {"torch": str(torch.__version__), "numpy": np.__version__,
                             "python": platform.python_version()},
                "device": str(self.device), "world_size": self.world}
        if self.holdout_idx:
            info["gzsl_holdout_images"] = len(self.holdout_idx)
        if self.skipped:
            info["skipped_images"] = [{"path": path, "reason": reason} for _, path, reason in self.skipped]
        from .io import atomic_write_bytes
        atomic_write_bytes(self.run_dir / "run.json", json.dumps(info, indent=2).encode())


def holdout_split(indices: list[int], labels, share: float, seed: int) -> tuple[list[int], list[int]]:
    """Split images into (kept, held out): ``round(share * n)`` of each class's n images, drawn
    with ``seed``, held out, but never a class's last image. Both lists keep the input's order."""
    rng = np.random.default_rng(seed)
    out: set[int] = set()
    by_class: dict[int, list[int]] = {}
    for i in indices:
        by_class.setdefault(int(labels[i]), []).append(i)
    for c in sorted(by_class):
        ids = by_class[c]
        k = min(int(round(share * len(ids))), len(ids) - 1)
        out.update(ids[j] for j in rng.permutation(len(ids))[:k])
    return [i for i in indices if i not in out], [i for i in indices if i in out]


def _np_state() -> list:
    s = np.random.get_state()
    return [s[0], torch.from_numpy(s[1].astype(np.int64)), int(s[2]), int(s[3]), float(s[4])]
