"""Configuration: one dataclass per concern, TOML round trip, and named presets.

Defaults of ``ModelConfig`` and ``TrainConfig`` are the paper's (section 4.1): VGG19, 448 px
attention input, 224 px part and image inputs, 2 parts, diversity margin 0.2, class-centre margin
0.8, boxcar steepness k = 10, alpha1 = alpha2 = 1, SGD lr 0.05 momentum 0.9 weight decay 5e-4,
ReduceLROnPlateau by 0.1 down to 5e-4, batch 32.

Choices where the paper is silent (also in docs/choices.md):
- ``attention_reduction``: Eq. 2's hidden layer has C / 16 units (the squeeze-excitation ratio).
- ``compact_sigma``: the ideal Gaussian of Eq. 5 has sigma = 0.1 of the attention-map side.
- ``lambda_div``: 1.0 with Eq. 6 summed over positions as printed.
- ``crop_hidden``: the cropping net's hidden layer has 256 units.
- ``part_side_init``: pseudo boxes have side 1/4 of the image side (section 4.1 "a quarter of the
  image size" read as a quarter of the side).
- ``ridge_lambda`` (Eq. 12) 1.0, ``beta`` (Eq. 13) 1.0, inner product on L2-normalised features.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import tomli_w

from .errors import SGMAError
from .io import atomic_write_bytes


# stage 1: the paper's k-means over peak positions, co-location (engine/colocation.py), or NMF
# factors of the features (stages.nmf_channel_targets)
CHANNEL_GROUPINGS = ("kmeans", "colocation", "nmf")
# where a part square is centred: "net" = the cropping net's (t_x, t_y) of Eq. 7; "peak_centroid" =
# the centre of mass of the map's 3 x 3 cells around its peak (engine/cropping.py peak_centroid)
CROP_CENTRES = ("net", "peak_centroid")


class ConfigError(SGMAError, ValueError):
    """A configuration file or value is invalid; the message names the field."""


@dataclass
class ModelConfig:
    backbone: str = "vgg19"                # attention + image branch backbone
    part_backbone: str = ""                # "" = same architecture as ``backbone``
    # the image branch's own CNN; "" = the attention CNN, weights shared (the paper's reading)
    image_backbone: str = ""
    pretrained: str = "imagenet"           # "imagenet", "none", or a path to a state_dict file
    shared_backbone: bool = False          # one backbone for image and parts (paper: cheaper, a bit worse)
    freeze_backbone: bool = False          # keep the pretrained image/attention CNN fixed (CPU demo)
    # the image branch's CNN (image_backbone) continues the attention CNN: its layers up to the
    # attention cut are the attention CNN's own (one set of weights, as the paper's one CNN), not a
    # copy (backbones.CONTINUATIONS lists the pairs)
    shared_trunk: bool = False
    # with freeze_backbone: stage 1 first fine-tunes the attention CNN's last N blocks on the seen
    # classes (engine/finetune.py; MA-CNN groups a fine-tuned network's channels), then groups its
    # channels; the blocks stay fixed after that. efficientnet_lite0_s16 only
    finetune_blocks: int = 0
    attention_size: int = 448
    image_size: int = 224
    part_size: int = 224
    n_parts: int = 2
    attention_reduction: int = 16
    crop_hidden: int = 256
    crop_temperature: float = 0.005        # the cropping net reads softmax(M_i / T) (engine/cropping.py)
    compact_sigma: float = 0.1             # fraction of the attention-map side
    lambda_div: float = 1.0
    # divide Eq. 6's sum over positions by |Z| (as Eq. 5 is), so lambda_div means the same at any
    # map size; the paper preset sets it (docs/choices.md)
    div_normalise: bool = False
    div_margin: float = 0.2
    cct_margin: float = 0.8
    boxcar_k: float = 10.0
    part_side_init: float = 0.25
    part_side_min: float = 0.1
    part_side_max: float = 0.6
    crop_centre: str = "net"               # CROP_CENTRES; the side always comes from the cropping net
    # two parts: the map whose peaks sit on the object keeps its square (Eq. 7); the other part's
    # square is the object's far end from it (engine/objectness.py, not in the paper; run 30).
    # The object mask is DDT over the fixed image-branch CNN at object_size, fitted in stage 1
    far_end_square: bool = False
    object_size: int = 448
    # with far_end_square: the anchor's square takes the far end's side too, a quarter of the object
    # mask's side, instead of the cropping net's t_s (its centre stays Eq. 7's; run 35)
    object_side: bool = False
    # 0: every image is read at attention_size. Larger: images are read at this side, the part
    # squares (Eq. 8) are cropped from it and the object mask reads it, while the attention CNN
    # reads it resized to attention_size (the paper crops its parts from the 448 px input its maps
    # are computed on; here the maps may stay at a cheaper size). Not in the paper; no preset
    # sets it (run 37)
    part_source_size: int = 0
    alpha_cls: float = 1.0
    alpha_cct: float = 1.0
    use_ma_loss: bool = True               # False = Table 1 "w/o MA"
    use_image_branch: bool = True          # Table 4 ablations
    use_parts: bool = True
    random_parts: bool = False             # Table 4 "Baseline + Random Parts"

    @property
    def input_size(self) -> int:
        """The side at which images are read: the attention input, or ``part_source_size``."""
        return max(self.attention_size, self.part_source_size)

    def validate(self) -> None:
        if self.n_parts < 1 and self.use_parts:
            raise ConfigError(f"model.n_parts must be >= 1, got {self.n_parts}")
        if not (self.use_image_branch or self.use_parts):
            raise ConfigError("model: at least one of use_image_branch and use_parts must be true")
        for name in ("attention_size", "image_size", "part_size", "object_size"):
            if getattr(self, name) < 16:
                raise ConfigError(f"model.{name} must be >= 16, got {getattr(self, name)}")
        if self.part_source_size and self.part_source_size <= self.attention_size:
            raise ConfigError(f"model.part_source_size must be 0 (the attention input) or larger than "
                              f"model.attention_size = {self.attention_size}, got {self.part_source_size}")
        if self.part_source_size and self.finetune_blocks:
            raise ConfigError("model.part_source_size and model.finetune_blocks cannot be combined: the "
                              "fine-tuning reads the images at model.attention_size")
        if self.shared_trunk and not self.image_backbone:
            raise ConfigError("model.shared_trunk needs model.image_backbone: the CNN that continues the attention CNN")
        if self.finetune_blocks < 0:
            raise ConfigError(f"model.finetune_blocks must be >= 0, got {self.finetune_blocks}")
        if self.finetune_blocks and not (self.freeze_backbone and self.backbone == "efficientnet_lite0_s16"):
            raise ConfigError("model.finetune_blocks fine-tunes the last blocks of a frozen efficientnet_lite0_s16 "
                              "attention CNN in stage 1: it needs model.freeze_backbone = true and that backbone")
        if self.finetune_blocks > 11:
            raise ConfigError(f"model.finetune_blocks: efficientnet_lite0_s16 has 11 blocks, got {self.finetune_blocks}")
        if self.image_backbone and self.shared_backbone:
            raise ConfigError("model.image_backbone (a CNN of its own for the image branch) cannot be combined "
                              "with model.shared_backbone (one CNN for image and parts)")
        if self.far_end_square and not (self.n_parts == 2 and self.freeze_backbone and self.use_parts):
            raise ConfigError("model.far_end_square places the second of two parts from the first through a "
                              "direction fitted once on a fixed CNN: it needs model.n_parts = 2, "
                              "model.use_parts = true and model.freeze_backbone = true")
        if self.object_side and not self.far_end_square:
            raise ConfigError("model.object_side sizes the anchor's square by the object mask of the far end: "
                              "it needs model.far_end_square = true")
        if self.crop_centre not in CROP_CENTRES:
            raise ConfigError(f"model.crop_centre must be one of {', '.join(CROP_CENTRES)}, got {self.crop_centre!r}")
        if not self.crop_temperature > 0:
            raise ConfigError(f"model.crop_temperature must be > 0, got {self.crop_temperature}")
        if not 0 < self.part_side_min <= self.part_side_init <= self.part_side_max <= 1:
            raise ConfigError("model: need 0 < part_side_min <= part_side_init <= part_side_max <= 1")


# the inference modes of section 3.4: Eq. 9's compatibility alone, Eq. 13's class-centre
# similarity alone, and their combination (the engine's inference.MODES, the evaluator's rows, the app's tables)
INFERENCE_MODES = ("compatibility", "center", "combined")


@dataclass
class InferenceConfig:
    """How a trained model scores classes (section 3.4): Eq. 13's beta (the trainer chooses it on
    the validation classes and stores it in the checkpoint; this is where the search starts and
    what a checkpoint without one uses), Eq. 12's ridge lambda and the default mode. None of it
    shapes the weights or the training losses, so a resume takes whatever is set now."""
    beta: float = 1.0
    ridge_lambda: float = 1.0
    mode: str = "combined"                 # INFERENCE_MODES

    def validate(self) -> None:
        if self.mode not in INFERENCE_MODES:
            raise ConfigError(f"inference.mode must be {'|'.join(INFERENCE_MODES)}, got {self.mode!r}")
        if not self.beta >= 0:
            raise ConfigError(f"inference.beta must be >= 0, got {self.beta}")
        if not self.ridge_lambda > 0:
            raise ConfigError(f"inference.ridge_lambda must be > 0, got {self.ridge_lambda}")


@dataclass(frozen=True)
class Stage:
    """One stage of section 4.1's schedule. ``STAGES`` is the one list of them: the trainer, the
    config checks, the CLI and the training panel read it. ``trains``, ``loss`` and ``prepare``
    name what the engine runs (``SGMA.stage_parameters``, ``trainer.StepModule``, the trainer's
    preparation steps), so that a stage's whole definition is one line here."""
    name: str                  # the TrainConfig field; the name in events, checkpoints and metrics.csv
    title: str                 # what it does, for people
    gradient_steps: bool       # False: one pass over the training images and a fit, validated once
    needs_parts: bool          # skipped when model.use_parts is false
    may_select: bool           # its epochs may become best.pt under train.select_from = "parts"
    trains: str = ""           # the parameter group it updates: "image_branch", "attention", "parts", "all"
    loss: str = ""             # "image_softmax" (Eq. 9), "pseudo_squares" (MSE + Eq. 9 + 10), "sgma" (Eq. 11)
    prepare: str = ""          # before its first epoch: "group_channels" (the fit that is the stage), "fit_cropper"


STAGES = (
    Stage("warmup", "warm-up (image branch)", True, False, False, trains="image_branch", loss="image_softmax"),
    Stage("grouping", "channel grouping", False, True, False, trains="attention", prepare="group_channels"),  # k-means, co-location or NMF
    Stage("pretrain_parts", "part pre-training", True, True, True, trains="parts", loss="pseudo_squares",
          prepare="fit_cropper"),
    Stage("joint", "end to end", True, False, True, trains="all", loss="sgma"),
)
STAGE_NAMES = tuple(st.name for st in STAGES)
STAGE_BY_NAME = {st.name: st for st in STAGES}


@dataclass
class StageConfig:
    epochs: int = 1
    lr: float = 0.0          # 0 = use train.lr
    enabled: bool = True
    # multiplies the learning rate of the attention and cropping subnets (the part localisation)
    # in this stage; the paper uses one rate for everything (1.0). docs/choices.md
    localisation_lr_scale: float = 1.0
    # further multiplies the cropping subnet's rate (its gradients are large next to its weights)
    cropping_lr_scale: float = 1.0


@dataclass
class TrainConfig:
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_factor: float = 0.1
    lr_patience: int = 2
    min_lr: float = 5e-4
    warmup: StageConfig = field(default_factory=lambda: StageConfig(epochs=5))          # stage 0
    grouping: StageConfig = field(default_factory=lambda: StageConfig(epochs=3))          # stage 1
    pretrain_parts: StageConfig = field(default_factory=lambda: StageConfig(epochs=5))  # stage 2
    joint: StageConfig = field(default_factory=lambda: StageConfig(epochs=30))          # stage 3
    grouping_images: int = 256
    # stage 1 with model.finetune_blocks: epochs of the classifier alone, then as many of the blocks
    # with it (engine/finetune.py)
    finetune_epochs: int = 3
    # stage 1: "kmeans" (the paper, after MA-CNN: k-means over per-channel peak coordinates) or
    # "colocation" (groups of channels that peak strongly at the same place; engine/colocation.py)
    # or "nmf" (deep feature factorisation; stages.nmf_channel_targets)
    channel_grouping: str = "kmeans"
    # stage 1, after the grouping: rounds of discriminative mining that sharpen each part's map on
    # its own peaks (engine/mining.py); 0 = the grouping's maps as they are
    mine_rounds: int = 0
    # each mining regression reads the channels standardised over the grouping images' cells
    mine_standardise: bool = False
    # stage 1 with model.far_end_square: training images whose cell descriptors fit the object
    # direction (DDT, engine/objectness.py)
    object_images: int = 400
    # stage 2: Adam steps fitting the cropping net to the pseudo squares before the part epochs
    # (0 = keep its start, the soft-argmax of the map, which is already near those squares)
    cropper_fit_steps: int = 100
    select_on_val: bool = True             # model selection on validation classes
    # with validation classes: this share of each training class's images is kept out of the
    # selection run, so that its seen-class images and the validation classes' images form a GZSL
    # validation split on which calibrated stacking's gamma is chosen (evaluate.choose_gamma,
    # docs/choices.md). 0 = no holdout and no gamma. The retrain on trainval trains on all of them.
    gzsl_holdout: float = 0.0
    # then train the final model on every seen class with the selected epochs (xlsa17 protocol):
    # run/final/ and run/final.pt; false keeps the fold-trained best.pt as the model
    retrain_on_trainval: bool = True
    # which epochs may become best.pt: "final" (the last stage's, the end-to-end model) or "parts"
    # (stage 2 on: every epoch where all of SGMA is trained). docs/choices.md
    select_from: str = "final"
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    # an image that cannot be decoded: false stops the run before any work, naming the files; true
    # leaves it out of training and validation with a warning (listed in run.json)
    skip_unreadable: bool = False
    augment: bool = True
    amp: bool = False                      # mixed precision on GPU
    amp_dtype: str = "bf16"                # "bf16", or "fp16" with a gradient scaler
    compile: bool = False                  # torch.compile of the training step
    channels_last: bool = False            # NHWC memory layout (speed only; docs/benchmarks.md)
    num_threads: int = 0                   # torch CPU threads; 0 = torch's default
    cudnn_benchmark: bool = True
    pin_memory: bool = True
    # keep a frozen backbone's outputs per (image, flip) in memory (engine/backbone_cache.py);
    # read only when model.freeze_backbone is true. The bound is in MiB.
    feature_cache: bool = True
    feature_cache_mb: int = 4096
    checkpoint_every_steps: int = 0        # 0 = at every epoch end only
    log_every_steps: int = 1
    max_steps_per_epoch: int = 0           # 0 = the whole epoch


@dataclass
class DataConfig:
    """A dataset: its kind (``data.registry.DATASET_KINDS``), folder, the loader options every
    kind shares as fields, and the kind's own options. ``data.registry.load_data`` opens it; the
    CLI, the trainer, the evaluator and the app all describe a dataset with it."""
    kind: str = "synthetic"
    root: str = ""
    split: str = "ps"
    semantics: str = "att"
    fold: int = 1
    options: dict = field(default_factory=dict)

    @classmethod
    def from_options(cls, kind: str, root: Optional[str] = None, options: Optional[dict] = None) -> "DataConfig":
        """A dataset given as a kind, a root and loader options (the open-dataset dialog,
        ``sgma-gui --option``, a recent-datasets entry): the options it holds as fields move there."""
        opts = dict(options or {})
        dc = cls(kind=kind, root=root or "")
        if kind == "synthetic":
            dc.split = "synthetic"
        else:
            for key in DATA_FIELDS:
                if key in opts:
                    setattr(dc, key, opts.pop(key))
        dc.options = opts
        return dc

    def loader_options(self) -> dict:
        """Every option as the kind's loader takes it: the shared fields (left out for the
        synthetic birds, which take none) and the kind's own."""
        shared = {} if self.kind == "synthetic" else {k: getattr(self, k) for k in DATA_FIELDS}
        return {**shared, **self.options}

    def label(self) -> str:
        return f"{self.kind}: {self.root or '(built in)'}"


DATA_FIELDS = ("split", "semantics", "fold")     # loader options that DataConfig holds as fields


@dataclass
class RunConfig:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def validate(self) -> None:
        self.model.validate()
        self.inference.validate()
        if self.train.batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {self.train.batch_size}")
        if self.train.select_from not in ("final", "parts"):
            raise ConfigError(f"train.select_from must be 'final' or 'parts', got {self.train.select_from!r}")
        if self.train.mine_rounds < 0:
            raise ConfigError(f"train.mine_rounds must be >= 0, got {self.train.mine_rounds}")
        if self.model.far_end_square and self.train.grouping.epochs < 1:
            raise ConfigError("model.far_end_square: the object direction is fitted in stage 1, which "
                              "train.grouping.epochs = 0 skips")
        if self.train.object_images < 1:
            raise ConfigError(f"train.object_images must be >= 1, got {self.train.object_images}")
        if not 0.0 <= self.train.gzsl_holdout < 1.0:
            raise ConfigError(f"train.gzsl_holdout must be in [0, 1), got {self.train.gzsl_holdout}")
        if self.train.cropper_fit_steps < 0:
            raise ConfigError(f"train.cropper_fit_steps must be >= 0, got {self.train.cropper_fit_steps}")
        if self.train.channel_grouping not in CHANNEL_GROUPINGS:
            raise ConfigError(f"train.channel_grouping must be one of {', '.join(CHANNEL_GROUPINGS)}, "
                              f"got {self.train.channel_grouping!r}")
        if not self.train.lr > 0:
            raise ConfigError(f"train.lr must be > 0, got {self.train.lr}")
        if self.model.finetune_blocks and self.train.finetune_epochs < 1:
            raise ConfigError(f"train.finetune_epochs must be >= 1 with model.finetune_blocks, got {self.train.finetune_epochs}")
        stages = {s: getattr(self.train, s) for s in STAGE_NAMES}
        for stage, sc in stages.items():
            if sc.epochs < 0:
                raise ConfigError(f"train.{stage}.epochs must be >= 0, got {sc.epochs}")
            if not sc.lr >= 0:
                raise ConfigError(f"train.{stage}.lr must be > 0, or 0 for train.lr; got {sc.lr}")
        if not any(sc.enabled and sc.epochs > 0 for sc in stages.values()):
            raise ConfigError("train: every stage has 0 epochs or is disabled; nothing would be trained")
        for stage in STAGE_NAMES:
            for key in ("localisation_lr_scale", "cropping_lr_scale"):
                scale = getattr(getattr(self.train, stage), key)
                if not scale >= 0:
                    raise ConfigError(f"train.{stage}.{key} must be >= 0, got {scale}")


def stage_plan(cfg: RunConfig) -> list[tuple[int, Stage, int]]:
    """The stages a run trains, in order: (index in STAGES, stage, epochs). A stage with 0 epochs
    or disabled is left out, and so are the part stages when model.use_parts is false."""
    plan = []
    for i, st in enumerate(STAGES):
        sc = getattr(cfg.train, st.name)
        if sc.enabled and sc.epochs > 0 and (cfg.model.use_parts or not st.needs_parts):
            plan.append((i, st, sc.epochs))
    return plan


# the stage losses that hold Eq. 11's L_MA (config.Stage.loss): only the end-to-end objective
MA_LOSSES = ("sgma",)


def stages_trained_by_ma(cfg: RunConfig) -> list[str]:
    """The stages of ``stage_plan(cfg)`` in which L_MA's gradient reaches a weight that trains: a
    stage whose loss holds L_MA, with the parts on, and either the attention subnet at a rate above
    0 (``localisation_lr_scale``) or the CNN under the maps trainable. Empty when L_MA trains
    nothing, so that "w/o MA" (``model.use_ma_loss = false``) is the same model by construction:
    the ``cpu`` preset holds the attention subnet fixed in its only L_MA stage."""
    if not (cfg.model.use_parts and cfg.model.use_ma_loss):
        return []
    out = []
    for _, st, _ in stage_plan(cfg):
        if st.loss in MA_LOSSES and st.trains in ("all", "attention"):
            if getattr(cfg.train, st.name).localisation_lr_scale > 0 or not cfg.model.freeze_backbone:
                out.append(st.name)
    return out


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


# keys an earlier version wrote, read under their new names (configs and checkpoints keep loading)
RENAMED_KEYS = {"TrainConfig": {"kmeans": "grouping", "kmeans_images": "grouping_images"}}
# keys an earlier version kept in [model], read from there into their own tables (table, new name)
MOVED_MODEL_KEYS = {"beta": ("inference", "beta"), "ridge_lambda": ("inference", "ridge_lambda"),
                    "inference": ("inference", "mode"), "channels_last": ("train", "channels_last")}


def model_config_of(config: dict) -> "ModelConfig":
    """The ModelConfig of a stored RunConfig dict (a checkpoint's ``config``), whatever version wrote it."""
    return from_dict(ModelConfig, moved_keys(config)["model"], "model")


def moved_keys(data: dict) -> dict:
    """A RunConfig dict with the keys of ``MOVED_MODEL_KEYS`` moved out of ``model`` (a key set in
    both places is an error); any other dict comes back as it is."""
    model = data.get("model")
    if not isinstance(model, dict) or not any(k in model for k in MOVED_MODEL_KEYS):
        return data
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for old, (table, new) in MOVED_MODEL_KEYS.items():
        if old in model:
            dest = out.setdefault(table, {})
            if not isinstance(dest, dict):
                continue
            if new in dest:
                raise ConfigError(f"config keys 'model.{old}' and '{table}.{new}' are the same setting "
                                  f"('model.{old}' is its earlier place): keep '{table}.{new}'")
            dest[new] = out["model"].pop(old)
    return out


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys and wrong types by name; a key
    of ``RENAMED_KEYS`` is read under its new name (both at once is an error)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {type(data).__name__}")
    if cls.__name__ == "RunConfig":
        data = moved_keys(data)
    known = {f.name: f for f in fields(cls)}
    renamed = RENAMED_KEYS.get(cls.__name__, {})
    for old, new in renamed.items():
        if old in data:
            if new in data:
                raise ConfigError(f"config keys {where + '.' if where else ''}{old!r} and {new!r} are the same "
                                  f"setting ({old!r} is its earlier name): keep {new!r}")
            data = {(new if k == old else k): v for k, v in data.items()}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            raise ConfigError(f"unknown config key {path!r}")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = from_dict(type(default), value, path)
            continue
        kwargs[key] = _coerce(value, default, path)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, path: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {path!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {path!r} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {path!r} must be a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"config key {path!r} must be finite, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"config key {path!r} must be a string, got {value!r}")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {path!r} must be a table, got {value!r}")
        return value
    return value


def save_toml(cfg: RunConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as TOML atomically (temporary file, then os.replace)."""
    atomic_write_bytes(path, tomli_w.dumps(to_dict(cfg)).encode())


def load_toml(path: str | os.PathLike) -> RunConfig:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as e:   # a folder, no permission
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:   # TOMLDecodeError, UnicodeDecodeError, int digit limit, nesting
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    try:
        cfg = from_dict(RunConfig, data)
        cfg.validate()
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    return cfg


def presets_dir() -> Path:
    """``resources/presets``: one TOML file per preset, each with the reasons for its settings."""
    from sgma import resources
    return Path(resources.__file__).parent / "presets"


def preset_names() -> tuple[str, ...]:
    """The presets, as the files in ``presets_dir()`` name them (the CLI and the GUI list these)."""
    order = {"demo": 0, "cpu": 1, "paper": 2}          # the everyday ones first, then the rest by name
    return tuple(sorted((p.stem for p in presets_dir().glob("*.toml")), key=lambda n: (order.get(n, 9), n)))


def preset(name: str) -> RunConfig:
    """The preset ``resources/presets/<name>.toml``: ``demo`` (synthetic, small CNN, minutes on 2
    cores), ``cpu`` (real CUB with efficientnet_lite0 on CPU), ``paper`` (VGG19 448/224 with the
    paper's hyperparameters), ``tiny`` (tests). A preset holds only what differs from the defaults
    of the dataclasses above, and says why in comments."""
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r}; choose {', '.join(preset_names())}")
    return load_toml(presets_dir() / f"{name}.toml")


PRESETS = preset_names()
