"""engine/config.py: paper defaults, TOML round trip, errors that name the key, presets."""
from __future__ import annotations

import dataclasses

import pytest

from sgma.engine import config as C


def test_defaults_are_the_papers():
    m, t = C.ModelConfig(), C.TrainConfig()
    assert (m.backbone, m.attention_size, m.image_size, m.part_size, m.n_parts) == ("vgg19", 448, 224, 224, 2)
    assert (m.div_margin, m.cct_margin, m.boxcar_k, m.alpha_cls, m.alpha_cct) == (0.2, 0.8, 10.0, 1.0, 1.0)
    assert (t.batch_size, t.lr, t.momentum, t.weight_decay, t.lr_factor, t.min_lr) == (32, 0.05, 0.9, 5e-4, 0.1, 5e-4)
    assert m.part_side_init == 0.25


def test_toml_round_trip_defaults(tmp_path):
    cfg = C.RunConfig()
    C.save_toml(cfg, tmp_path / "run.toml")
    assert C.load_toml(tmp_path / "run.toml") == cfg


def test_toml_round_trip_changed_values(tmp_path):
    cfg = C.preset("demo")
    cfg.name = "my run"
    cfg.inference.beta = 0.25
    cfg.model.shared_backbone = True
    cfg.train.joint = C.StageConfig(epochs=7, lr=0.003, enabled=False)
    cfg.data.options = {"n_classes": 12, "seed": 3}
    p = tmp_path / "run.toml"
    C.save_toml(cfg, p)
    back = C.load_toml(p)
    assert back == cfg
    assert back.train.joint.enabled is False and back.data.options["n_classes"] == 12
    assert not list(tmp_path.glob(".*.tmp"))             # atomic write leaves no temporary file


def test_integer_for_float_is_accepted(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[inference]\nbeta = 2\n")
    cfg = C.load_toml(p)
    assert cfg.inference.beta == 2.0 and isinstance(cfg.inference.beta, float)


@pytest.mark.parametrize("text, key", [
    ("[model]\nfoo = 1\n", "model.foo"),
    ("bogus = true\n", "bogus"),
    ("[train.joint]\nepochz = 3\n", "train.joint.epochz"),
])
def test_unknown_key_is_named(tmp_path, text, key):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(C.ConfigError, match=key.replace(".", r"\.")):
        C.load_toml(p)


@pytest.mark.parametrize("text, key", [
    ('[model]\nn_parts = "two"\n', "model.n_parts"),
    ("[model]\nn_parts = 2.5\n", "model.n_parts"),
    ("[model]\nn_parts = true\n", "model.n_parts"),
    ('[model]\nuse_parts = "yes"\n', "model.use_parts"),
    ('[inference]\nbeta = "high"\n', "inference.beta"),
    ("[model]\nbackbone = 19\n", "model.backbone"),
    ("[train]\njoint = 5\n", "train.joint"),
    ("[train]\nlr = nan\n", "train.lr"),
])
def test_wrong_type_is_named(tmp_path, text, key):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(C.ConfigError, match=key.replace(".", r"\.")):
        C.load_toml(p)


def test_from_dict_errors_directly():
    with pytest.raises(C.ConfigError, match="'model.nparts'"):
        C.from_dict(C.RunConfig, {"model": {"nparts": 3}})
    with pytest.raises(C.ConfigError, match="'batch_size'"):
        C.from_dict(C.TrainConfig, {"batch_size": "32"})
    assert C.from_dict(C.ModelConfig, {"n_parts": 3}).n_parts == 3


def test_invalid_values_and_files(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[inference]\nmode = "best"\n')
    with pytest.raises(C.ConfigError, match="inference.mode"):
        C.load_toml(p)
    p.write_text("[model\n")
    with pytest.raises(C.ConfigError, match="not valid TOML"):
        C.load_toml(p)
    with pytest.raises(C.ConfigError, match="not found"):
        C.load_toml(tmp_path / "missing.toml")
    with pytest.raises(C.ConfigError):
        C.ModelConfig(use_parts=False, use_image_branch=False).validate()
    with pytest.raises(C.ConfigError):
        C.ModelConfig(part_side_min=0.3, part_side_init=0.25).validate()
    with pytest.raises(C.ConfigError, match="batch_size"):
        C.RunConfig(train=C.TrainConfig(batch_size=0)).validate()


def test_presets_exist_and_validate(tmp_path):
    assert set(C.PRESETS) == {"demo", "cpu", "paper", "tiny"}
    for name in C.PRESETS:
        cfg = C.preset(name)
        assert isinstance(cfg, C.RunConfig) and cfg.name == name
        cfg.validate()
        C.save_toml(cfg, tmp_path / f"{name}.toml")
        assert C.load_toml(tmp_path / f"{name}.toml") == cfg
    # the defaults are the paper's, but for Eq. 6's normalisation (off by default so that older
    # checkpoints and the CPU presets keep their loss)
    assert C.preset("paper").model == dataclasses.replace(C.ModelConfig(), div_normalise=True)
    # CPU presets: fixed ImageNet EfficientNet-Lite0 at stride 16 (the cpu preset's maps also read
    # its stride-32 channels, run 34), the part CNNs its stride-16 cut
    for name, backbone in (("demo", "efficientnet_lite0_s16"), ("cpu", "efficientnet_lite0_s16_s32")):
        m = C.preset(name).model
        assert (m.backbone, m.pretrained, m.freeze_backbone) == (backbone, "imagenet", True)
    assert C.preset("cpu").model.part_backbone == "efficientnet_lite0_s16"
    assert C.preset("demo").data.kind == "synthetic" and C.preset("cpu").data.kind == "cub"
    with pytest.raises(C.ConfigError, match="unknown preset"):
        C.preset("huge")


def test_to_dict_is_plain():
    d = C.to_dict(C.RunConfig())
    assert d["model"]["n_parts"] == 2 and d["train"]["joint"]["epochs"] == 30
    assert dataclasses.is_dataclass(C.from_dict(C.RunConfig, d))


def test_cpu_preset_names_no_development_path_and_asks_for_a_root():
    from sgma.engine.data.base import DatasetError
    from sgma.engine.data.registry import load_data
    cfg = C.preset("cpu")
    assert cfg.data.root == ""
    with pytest.raises(DatasetError, match="needs a root folder: give --root"):
        load_data(cfg.data)


def test_presets_are_the_toml_files_of_the_presets_folder(tmp_path, monkeypatch):
    """A preset is a file under resources/presets: the list (CLI choices, the training panel)
    is read from the folder, a new file is a new preset, and a bad file is named."""
    folder = tmp_path / "presets"
    folder.mkdir()
    for name in C.PRESETS:
        (folder / f"{name}.toml").write_text((C.presets_dir() / f"{name}.toml").read_text())
    (folder / "mine.toml").write_text('name = "mine"\n[train]\nbatch_size = 7\n')
    (folder / "broken.toml").write_text('[train]\nbatch_sise = 7\n')
    monkeypatch.setattr(C, "presets_dir", lambda: folder)
    assert C.preset_names() == ("demo", "cpu", "paper", "broken", "mine", "tiny")
    mine = C.preset("mine")
    assert mine.train.batch_size == 7 and mine.train.lr == C.TrainConfig().lr   # the rest: defaults
    with pytest.raises(C.ConfigError, match=r"broken\.toml: unknown config key 'train\.batch_sise'"):
        C.preset("broken")
    with pytest.raises(C.ConfigError, match="unknown preset 'huge'; choose demo, cpu, paper, broken, mine, tiny"):
        C.preset("huge")


def test_no_preset_file_holds_a_path():
    for name in C.PRESETS:
        d = C.to_dict(C.preset(name))
        assert d["data"]["root"] == "" and d["model"]["pretrained"] in ("imagenet", "none"), name


def test_stage_plan_is_the_one_list_of_stages():
    """config.STAGES in order; stage_plan leaves out disabled, 0-epoch and (without parts) part stages."""
    assert C.STAGE_NAMES == ("warmup", "grouping", "pretrain_parts", "joint")
    assert [f.name for f in dataclasses.fields(C.TrainConfig) if f.type in ("StageConfig", C.StageConfig)] \
        == list(C.STAGE_NAMES)                                     # one config table per stage, same order
    cfg = C.preset("tiny")
    assert [(i, st.name, e) for i, st, e in C.stage_plan(cfg)] == [(0, "warmup", 2), (1, "grouping", 1),
                                                                   (2, "pretrain_parts", 1), (3, "joint", 2)]
    cfg.train.pretrain_parts.enabled = False
    cfg.train.warmup.epochs = 0
    assert [st.name for _, st, _ in C.stage_plan(cfg)] == ["grouping", "joint"]
    cfg.model.use_parts = False
    assert [st.name for _, st, _ in C.stage_plan(cfg)] == ["joint"]
    assert [st.gradient_steps for st in C.STAGES] == [True, False, True, True]
    assert C.STAGE_BY_NAME["grouping"].title == "channel grouping"
    assert [(st.trains, st.loss, st.prepare) for st in C.STAGES] == [
        ("image_branch", "image_softmax", ""), ("attention", "", "group_channels"),
        ("parts", "pseudo_squares", "fit_cropper"), ("all", "sgma", "")]


def test_stage_parameter_groups_are_what_each_stage_trains():
    """SGMA.stage_parameters: the warm-up trains the image branch and its projection only; part
    pre-training the cropper, part nets, projections and centres but not the attention subnet;
    the end-to-end stage everything."""
    import torch
    from sgma.engine.model import SGMA
    cfg = C.preset("tiny").model
    m = SGMA(cfg, semantic_dim=6, n_train_classes=4)
    ids = lambda group: {id(p) for p in m.stage_parameters(group)}
    allp = {id(p) for p in m.parameters()}
    assert ids("all") == allp
    assert ids("image_branch") == {id(p) for p in m.theta_net.parameters()} | {id(p) for p in m.projections[0].parameters()}
    parts = ids("parts")
    assert id(m.centers) in parts and {id(p) for p in m.cropper.parameters()} <= parts
    assert not ({id(p) for p in m.attention.parameters()} & parts)
    assert not ({id(p) for p in m.attention.parameters()} & ids("image_branch"))
    assert ids("attention") == {id(p) for p in m.attention.parameters()}
    with pytest.raises(ValueError, match="unknown parameter group"):
        m.stage_parameters("heads")


def test_data_config_from_loader_options_and_back():
    """DataConfig.from_options moves the shared loader options into their fields; loader_options
    gives them back as the kind's loader takes them; load_data opens it."""
    dc = C.DataConfig.from_options("cub", "/d", {"split": "ss", "fold": 2, "att_splits": "/x.mat"})
    assert (dc.kind, dc.root, dc.split, dc.fold, dc.semantics) == ("cub", "/d", "ss", 2, "att")
    assert dc.options == {"att_splits": "/x.mat"} and dc.label() == "cub: /d"
    assert dc.loader_options() == {"split": "ss", "semantics": "att", "fold": 2, "att_splits": "/x.mat"}
    syn = C.DataConfig.from_options("synthetic", None, {"n_classes": 12, "n_unseen": 4, "n_val": 2})
    assert syn.split == "synthetic" and syn.root == "" and syn.label() == "synthetic: (built in)"
    assert syn.loader_options() == {"n_classes": 12, "n_unseen": 4, "n_val": 2}
    from sgma.engine.data.registry import load_data
    ds = load_data(C.DataConfig.from_options("synthetic", None, dict(syn.options, n_train_per_class=2,
                   n_test_seen_per_class=1, n_unseen_per_class=1)))
    assert len(ds.class_names) == 12 and len(ds.split.unseen) == 4


def test_earlier_names_of_stage_1_still_read():
    """Stage 1 was called "kmeans" (for one of its algorithms); configs, checkpoints and
    metrics.csv files of that name still read, as the "grouping" stage."""
    cfg = C.from_dict(C.RunConfig, {"train": {"kmeans": {"epochs": 4}, "kmeans_images": 99}})
    assert cfg.train.grouping.epochs == 4 and cfg.train.grouping_images == 99
    with pytest.raises(C.ConfigError, match="'kmeans' and 'grouping' are the same setting"):
        C.from_dict(C.RunConfig, {"train": {"kmeans": {"epochs": 1}, "grouping": {"epochs": 2}}})
    assert cfg.train.channel_grouping == "kmeans"          # the algorithm keeps its name


def test_metrics_csv_of_the_earlier_stage_name_reads_as_grouping(tmp_path):
    from sgma.engine.metrics_log import read_history
    (tmp_path / "metrics.csv").write_text("time,kind,stage,epoch,global_step,name,value\n"
                                          "1.0,epoch,kmeans,1,10,val_zsl_mca,0.5\n"
                                          "2.0,epoch,joint,0,20,val_zsl_mca,0.6\n")
    _steps, epochs = read_history(tmp_path)
    assert epochs == [("grouping", 1, "val_zsl_mca", 0.5), ("joint", 0, "val_zsl_mca", 0.6)]


def test_inference_settings_have_their_own_table_and_the_earlier_place_still_reads():
    """beta, ridge_lambda and the mode are [inference], channels_last is [train]: none shapes the
    model. Configs and checkpoints that kept them in [model] read the same values."""
    old = {"model": {"beta": 3.0, "ridge_lambda": 0.5, "inference": "center", "channels_last": True,
                     "n_parts": 3}}
    cfg = C.from_dict(C.RunConfig, old)
    assert cfg.inference == C.InferenceConfig(beta=3.0, ridge_lambda=0.5, mode="center")
    assert cfg.train.channels_last is True and cfg.model.n_parts == 3
    assert old["model"]["beta"] == 3.0                         # the caller's dict is left as it was
    assert not hasattr(cfg.model, "beta")
    with pytest.raises(C.ConfigError, match="'model.beta' and 'inference.beta' are the same setting"):
        C.from_dict(C.RunConfig, {"model": {"beta": 1.0}, "inference": {"beta": 2.0}})
    with pytest.raises(C.ConfigError, match="inference.ridge_lambda must be > 0"):
        C.from_dict(C.RunConfig, {"inference": {"ridge_lambda": 0.0}}).validate()
    from sgma.engine.checkpoint import inference_config
    assert inference_config({"config": old}).mode == "center"
    assert inference_config({"config": {"model": {}}}) == C.InferenceConfig()


def test_stages_trained_by_ma_says_when_w_o_ma_is_the_same_model():
    """L_MA (Eq. 11) trains a weight only in a stage whose loss holds it and whose attention subnet
    (or the CNN under the maps) learns: the cpu preset holds the attention fixed in its joint stage,
    so its Table 1 "w/o MA" run is the same model; at any rate above 0 it is not."""
    cpu = C.preset("cpu")
    assert cpu.train.joint.localisation_lr_scale == 0 and C.stages_trained_by_ma(cpu) == []
    cpu.train.joint.localisation_lr_scale = 0.1
    assert C.stages_trained_by_ma(cpu) == ["joint"]
    cpu.model.use_ma_loss = False
    assert C.stages_trained_by_ma(cpu) == []
    cpu = C.preset("cpu")
    cpu.model.freeze_backbone = False          # the CNN under the maps trains in the joint stage
    assert C.stages_trained_by_ma(cpu) == ["joint"]
    cpu.train.joint.enabled = False
    assert C.stages_trained_by_ma(cpu) == []
    paper = C.preset("paper")
    assert C.stages_trained_by_ma(paper) == ["joint"]
    paper.model.use_parts = False
    assert C.stages_trained_by_ma(paper) == []
