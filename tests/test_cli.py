"""The ``sgma`` command through ``engine.cli.main``: train a tiny TOML config, evaluate (JSON
schema), predict (JSON, user classes), ablations, and user errors (exit status 2, one line that
names the file)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from sgma.engine.cli import main
from sgma.engine.config import preset, save_toml
from sgma.engine.data.synthetic import make_synthetic

DATA = dict(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)


def tiny_config(steps: int = 3, long_stages: int = 2):
    cfg = preset("tiny")
    cfg.name = "tiny"
    tc = cfg.train
    tc.warmup.epochs, tc.grouping.epochs = 1, 1
    tc.pretrain_parts.epochs = tc.joint.epochs = long_stages
    tc.batch_size, tc.grouping_images, tc.max_steps_per_epoch, tc.device = 8, 32, steps, "cpu"
    cfg.data.options = dict(DATA)
    return cfg


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    save_toml(tiny_config(), d / "tiny.toml")
    assert main(["train", "--config", str(d / "tiny.toml"), "--out", str(d / "run")]) == 0
    return d


@pytest.fixture(scope="module")
def bird_png(trained):
    ds = make_synthetic(**DATA)
    path = trained / "bird.png"
    ds.load_image(ds.split.test_unseen[0]).save(path)
    return path


def test_train_writes_run_folder(trained, capsys):
    run = trained / "run"
    assert {"best.pt", "last.pt", "config.toml", "run.json", "metrics.csv"} <= {p.name for p in run.iterdir()}


def _fraction(v) -> bool:
    return isinstance(v, float) and 0.0 <= v <= 1.0


def test_evaluate_json_schema(trained, capsys):
    out = trained / "eval.json"
    assert main(["evaluate", str(trained / "run"), "--json", str(out)]) == 0
    assert "ZSL mean class accuracy" in capsys.readouterr().out
    s = json.loads(out.read_text())
    assert {"zsl", "gzsl", "parts", "modes", "per_class", "n_images", "dataset", "split"} <= set(s)
    assert _fraction(s["zsl"]["mca"]) and s["zsl"]["n_classes"] == 8
    assert all(_fraction(s["gzsl"][k]) for k in ("unseen", "seen", "h"))
    assert set(s["modes"]) == {"compatibility", "center", "combined"}
    for m in s["modes"].values():
        assert _fraction(m["zsl"]["mca"]) and all(_fraction(m["gzsl"][k]) for k in ("unseen", "seen", "h"))
    assert len(s["per_class"]) == 8 and all(_fraction(v) for v in s["per_class"].values())
    assert all(_fraction(s["parts"][p]) and _fraction(s["parts"]["random"][p]) for p in ("head", "tail"))
    # 16 seen classes x 2 test images + 8 unseen classes x 3 images
    assert s["n_images"] == 16 * 2 + 8 * 3
    assert s["dataset"] == "synthetic" and isinstance(s["split"], str)


def test_predict_json(trained, bird_png, capsys):
    out = trained / "pred.json"
    assert main(["predict", str(trained / "run"), str(bird_png), "--top", "3", "--json", str(out)]) == 0
    assert str(bird_png) in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert len(res) == 1 and res[0]["image"] == str(bird_png)
    names = set(make_synthetic(**DATA).class_names)
    assert len(res[0]["top"]) == 3 and all(t["class"] in names for t in res[0]["top"])
    scores = [t["score"] for t in res[0]["top"]]
    assert scores == sorted(scores, reverse=True)
    assert len(res[0]["boxes"]) == 2 and all(len(b) == 4 for b in res[0]["boxes"])
    assert all(0 <= v <= 1 for sq in res[0]["squares"] for v in sq)


@pytest.mark.skipif(importlib.util.find_spec("sgma.engine.classes") is None,
                    reason="engine/classes.py (user class files) is not there yet")
def test_predict_with_user_classes(trained, bird_png, capsys):
    classes = trained / "mine.toml"
    classes.write_text('[classes.my_blue_bird]\n"head_color::blue" = 1.0\n"crest::yes" = 1.0\n'
                       '"tail_shape::fan" = 1.0\n')
    out = trained / "pred_user.json"
    assert main(["predict", str(trained / "run"), str(bird_png), "--classes", str(classes),
                 "--top", "100", "--json", str(out)]) == 0
    top = json.loads(out.read_text())[0]["top"]
    assert "my_blue_bird" in [t["class"] for t in top]
    assert len(top) == 24 + 1


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_missing_config_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    assert main(["train", "--config", str(missing), "--out", str(tmp_path / "run")]) == 2
    assert str(missing) in _error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_bad_toml_key_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[train]\nbatch_sise = 4\n')
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert str(bad) in line and "train.batch_sise" in line


def test_bad_toml_syntax_exits_2(tmp_path, capsys):
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "x\n')
    assert main(["train", "--config", str(bad)]) == 2
    assert str(bad) in _error_line(capsys)


def test_missing_checkpoint_exits_2(tmp_path, capsys):
    missing = tmp_path / "gone.pt"
    assert main(["evaluate", str(missing)]) == 2
    assert str(missing) in _error_line(capsys)
    assert main(["predict", str(missing), str(tmp_path / "x.png")]) == 2
    assert str(missing) in _error_line(capsys)


def test_empty_run_folder_exits_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert str(tmp_path) in _error_line(capsys)


def test_unreadable_image_exits_2(trained, tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    assert main(["predict", str(trained / "run"), str(junk)]) == 2
    assert str(junk) in _error_line(capsys)


# ---------------------------------------------------------------- ablations on a 2-step config
@pytest.fixture(scope="module")
def micro_toml(tmp_path_factory):
    p = tmp_path_factory.mktemp("abl") / "micro.toml"
    save_toml(tiny_config(steps=2, long_stages=1), p)
    return p


def test_ablation_ma(micro_toml, tmp_path, capsys):
    out = tmp_path / "ma"
    assert main(["ablation", "ma", "--preset", str(micro_toml), "--out", str(out), "--quiet",
                 "--json", str(tmp_path / "ma.json")]) == 0
    text = capsys.readouterr().out
    assert "Ours w/o MA" in text and "difference" in text
    assert "same model by construction" not in text       # the tiny preset trains its attention with L_MA
    res = json.loads((tmp_path / "ma.json").read_text())
    assert res["results"]["ma_trains"] == ["joint"]
    assert res == json.loads((out / "results.json").read_text())
    r = res["results"]
    for key in ("with_ma", "without_ma"):
        assert all(_fraction(r[key][k]) for k in ("head", "tail", "average", "zsl"))
    assert r["difference"]["zsl"] == pytest.approx(r["with_ma"]["zsl"] - r["without_ma"]["zsl"])
    from sgma.engine.checkpoint import load_checkpoint
    assert load_checkpoint(out / "without_ma" / "best.pt")["config"]["model"]["use_ma_loss"] is False
    assert load_checkpoint(out / "with_ma" / "best.pt")["config"]["model"]["use_ma_loss"] is True


@pytest.mark.slow
def test_ablation_table4(micro_toml, tmp_path, capsys):
    out = tmp_path / "t4"
    assert main(["ablation", "table4", "--preset", str(micro_toml), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    full = "Full model (L_CLS + L_CCT + L_MA, combined)"
    rows = ["Baseline", "Parts", "Baseline+Parts", "Baseline+Random Parts", full, "Embedding Softmax",
            "Class-Center Triplet", "Combined"]
    assert all(r in text for r in rows)
    res = json.loads((out / "results.json").read_text())["results"]
    assert list(res) == rows
    assert all(_fraction(v["zsl"]) for v in res.values())
    assert [res[r]["inference"] for r in rows[-3:]] == ["compatibility", "center", "combined"]
    assert len({res[r]["run"] for r in rows[-3:]}) == 1          # three modes of one model
    from sgma.engine.checkpoint import load_checkpoint
    base = load_checkpoint(out / "baseline" / "best.pt")["config"]
    assert (base["model"]["use_parts"], base["model"]["alpha_cct"], base["inference"]["mode"]) == (False, 0.0, "compatibility")
    assert load_checkpoint(out / "parts" / "best.pt")["config"]["model"]["use_image_branch"] is False
    assert load_checkpoint(out / "baseline_random_parts" / "best.pt")["config"]["model"]["random_parts"] is True
    # the upper rows differ only in their inputs: one loss (L_CLS) and one inference for all four
    for key in ("baseline", "parts", "baseline_parts", "baseline_random_parts"):
        c = load_checkpoint(out / key / "best.pt")["config"]
        assert (c["model"]["alpha_cct"], c["inference"]["mode"]) == (0.0, "compatibility"), key
    assert [res[r]["inference"] for r in rows[:4]] == ["compatibility"] * 4
    c = load_checkpoint(out / "full_model" / "best.pt")["config"]
    m = c["model"]
    assert m["alpha_cct"] > 0 and c["inference"]["mode"] == "combined" and m["use_parts"] and m["use_ma_loss"]


def test_ablation_table4_runs_fill_one_table_over_calls(micro_toml, tmp_path, capsys):
    from sgma.engine.ablation import table4_rows, table4_runs
    out = tmp_path / "t4"
    assert main(["ablation", "table4", "--preset", str(micro_toml), "--out", str(out), "--quiet",
                 "--runs", "baseline"]) == 0
    first = json.loads((out / "results.json").read_text())["results"]
    assert list(first) == ["Baseline"] and not (out / "parts").exists()
    assert main(["ablation", "table4", "--preset", str(micro_toml), "--out", str(out), "--quiet",
                 "--runs", "joint_loss_image_only"]) == 0
    res = json.loads((out / "results.json").read_text())["results"]
    assert list(res) == ["Baseline", "Embedding Softmax", "Class-Center Triplet", "Combined"]
    assert res["Baseline"] == first["Baseline"]                   # kept, not trained again
    assert {res[r]["run"] for r in list(res)[1:]} == {str(out / "joint_loss_image_only")}
    assert "Baseline" in capsys.readouterr().out                   # the printed table holds the kept row
    assert table4_rows()[:1] == ["Baseline"] and len(table4_rows()) == 8 and len(table4_runs()) == 6
    for argv, needle in ((["table4", "--runs", "heads"], "--runs heads: unknown training heads"),
                         (["table4", "--runs", ","], "(none named)"),
                         (["ma", "--runs", "baseline"], "--runs chooses Table 4")):
        assert main(["ablation", *argv, "--preset", str(micro_toml), "--out", str(tmp_path / "x")]) == 2
        assert needle in _error_line(capsys)
    (out / "results.json").write_text(json.dumps({"ablation": "ma", "results": {}}))
    assert main(["ablation", "table4", "--preset", str(micro_toml), "--out", str(out), "--runs", "baseline"]) == 2
    assert "results.json holds the 'ma' ablation" in _error_line(capsys)
    (out / "results.json").write_text("{not json")
    assert main(["ablation", "table4", "--preset", str(micro_toml), "--out", str(out), "--runs", "baseline"]) == 2
    assert "cannot read the earlier results" in _error_line(capsys)


# ---------------------------------------------------------------- issue 16: flag values and outputs
def _one_error_line(capsys) -> str:
    """Exactly one line on stderr starting with "error: " (argparse's own starts with "sgma ..."), no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if "error: " in l]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv, flag", [
    (["train", "--preset", "tiny", "--epochs", "-1"], "--epochs"),
    (["predict", "RUN", "x.png", "--top", "0"], "--top"),
    (["predict", "RUN", "x.png", "--top", "-3"], "--top"),
    (["evaluate", "RUN", "--gamma", "nan"], "--gamma"),
    (["evaluate", "RUN", "--gamma", "inf"], "--gamma"),
    (["evaluate", "RUN", "--gamma", "abc"], "--gamma"),
])
def test_bad_flag_values_are_refused_naming_the_flag(tmp_path, capsys, argv, flag):
    argv = [str(tmp_path / "run") if a == "RUN" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path / "out")] if argv[0] == "train" else argv)
    assert e.value.code == 2
    line = _one_error_line(capsys)
    assert f"argument {flag}:" in line and "could not convert" not in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("toml, field", [
    ("[train.warmup]\nepochs = -2\n", "train.warmup.epochs must be >= 0"),
    ("[train]\nlr = 0.0\n", "train.lr must be > 0"),
    ("[train]\nlr = -0.1\n", "train.lr must be > 0"),
    ("[train.joint]\nlr = -1.0\n", "train.joint.lr must be > 0, or 0"),
    ("[train.warmup]\nepochs = 0\n[train.grouping]\nepochs = 0\n[train.pretrain_parts]\nepochs = 0\n"
     "[train.joint]\nepochs = 0\n", "every stage has 0 epochs"),
])
def test_bad_training_values_in_a_config_exit_2_naming_the_field(tmp_path, capsys, toml, field):
    p = tmp_path / "c.toml"
    p.write_text(toml)
    assert main(["train", "--config", str(p), "--out", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: ") and str(p) in line and field in line, line
    assert not (tmp_path / "run").exists()


def test_epochs_zero_with_every_other_stage_zero_is_refused(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text("[train.warmup]\nepochs = 0\n[train.grouping]\nepochs = 0\n[train.pretrain_parts]\nepochs = 0\n")
    assert main(["train", "--config", str(p), "--epochs", "0", "--out", str(tmp_path / "run")]) == 2
    assert "every stage has 0 epochs" in _one_error_line(capsys)


def _bad_outputs(tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    afile = tmp_path / "a_file"
    afile.write_text("x")
    return {"folder": (folder, "is a folder"), "under-a-file": (afile / "out.json", "is a file, not a folder")}


@pytest.mark.parametrize("case", ["folder", "under-a-file"])
def test_json_output_that_cannot_be_a_file_exits_2_before_work(trained, tmp_path, capsys, case):
    path, problem = _bad_outputs(tmp_path)[case]
    assert main(["evaluate", str(trained / "run"), "--json", str(path)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: --json") and str(path) in line and problem in line, line
    assert "ZSL" not in capsys.readouterr().out                  # refused before the evaluation ran


def test_save_maps_under_a_file_exits_2(trained, bird_png, tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    for bad, problem in ((afile, "is a file, not a folder"), (afile / "maps", "is a file, not a folder")):
        assert main(["predict", str(trained / "run"), str(bird_png), "--save-maps", str(bad)]) == 2
        line = _one_error_line(capsys)
        assert line.startswith("error: --save-maps") and str(bad) in line and problem in line, line


def test_json_write_failure_names_the_path(trained, tmp_path, capsys, monkeypatch):
    """A full disk (ENOSPC from the write) after the work: exit 2 naming the path, no traceback."""
    import errno
    from sgma.engine import cli as cli_mod
    out = tmp_path / "eval.json"

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(cli_mod, "atomic_write_bytes", full)
    assert main(["evaluate", str(trained / "run"), "--json", str(out)]) == 2
    line = _one_error_line(capsys)
    assert str(out) in line and "No space left on device" in line, line


def test_user_class_named_like_a_dataset_class_is_refused(trained, bird_png, tmp_path, capsys):
    name = make_synthetic(**DATA).class_names[0]
    p = tmp_path / "c.toml"
    p.write_text(f'[classes."{name}"]\n"crest::yes" = 1.0\n')
    assert main(["predict", str(trained / "run"), str(bird_png), "--classes", str(p)]) == 2
    assert f"class {name!r} has the name of a dataset class" in _one_error_line(capsys)


def test_evaluate_on_another_dataset_kind_drops_the_old_options(trained, tmp_path, capsys):
    """The run was trained on synthetic birds with options (image_size, ...); evaluating it on a
    CUB folder must not pass those options to the CUB loader, and says plainly that the
    attributes differ."""
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).parent))
    from fixtures_data import make_cub
    root = make_cub(tmp_path)
    assert main(["evaluate", str(trained / "run"), "--dataset", "cub", "--root", str(root)]) == 2
    line = _one_error_line(capsys)
    assert "unknown option" not in line, line
    assert "trained on dataset 'synthetic'" in line and "'cub'" in line and "attributes" in line, line
