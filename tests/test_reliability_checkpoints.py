"""Reliability of checkpoints and of training start-up (issue 7): unreadable, hostile or mismatched
checkpoints are CheckpointErrors that say what is wrong; an output folder that cannot be written,
a full disk and a GPU out of memory end the run with an ev.Failed that names the folder or the
batch size to lower; the CLI turns each into exit status 2 and one "error: ..." line."""
from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch

from sgma.engine import events as ev
from sgma.engine import trainer as trainer_mod
from sgma.engine.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from sgma.engine.cli import main
from sgma.engine.config import preset, save_toml
from sgma.engine.data.synthetic import make_synthetic
from sgma.engine.evaluate import align_classes
from sgma.engine.trainer import Trainer, TrainingError, check_writable

TINY_DATA = dict(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Two intra-op threads on a loaded 2-core machine run ~20x slower than one; restore after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config():
    """demo preset cut down to 2 steps per epoch, 1 epoch per stage (6 training steps)."""
    cfg = preset("tiny")
    tc = cfg.train
    tc.warmup.epochs = tc.grouping.epochs = tc.pretrain_parts.epochs = tc.joint.epochs = 1
    tc.batch_size, tc.grouping_images, tc.max_steps_per_epoch, tc.device = 8, 16, 2, "cpu"
    return cfg


@pytest.fixture(scope="module")
def ds():
    return make_synthetic(**TINY_DATA)


@pytest.fixture(scope="module")
def trained(ds, tmp_path_factory):
    """A finished tiny run: its folder holds last.pt and best.pt."""
    d = tmp_path_factory.mktemp("trained")
    events = list(Trainer(tiny_config(), d, dataset=ds).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    return d


def error_line(err: str) -> str:
    """The CLI's one "error: ..." line (a progress bar may precede it on stderr); no traceback."""
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def failure(events) -> ev.Failed:
    assert isinstance(events[-1], ev.Failed), events[-1]
    return events[-1]


# ---------------------------------------------------------------- unreadable checkpoint files
@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "zeroed-middle"])
def test_damaged_checkpoint_is_a_checkpoint_error(trained, tmp_path, damage):
    data = (trained / "last.pt").read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes({"truncated": data[: len(data) // 3], "empty": b"", "garbage": os.urandom(4096),
                     "zeroed-middle": data[:1000] + b"\0" * (len(data) - 2000) + data[-1000:]}[damage])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value)


def test_missing_checkpoint_and_empty_run_folder(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no final.pt, best.pt, last.pt in this run folder"):
        load_checkpoint(tmp_path)


def test_plain_data_that_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.ones(3)}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="not an SGMA checkpoint"):
        load_checkpoint(tmp_path / "a.pt")
    torch.save([1, 2, 3], tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="not an SGMA checkpoint"):
        load_checkpoint(tmp_path / "b.pt")
    save_checkpoint({"x": 1}, tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["format_version"] = 99
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="format version 99 is newer"):
        load_checkpoint(tmp_path / "c.pt")


# ---------------------------------------------------------------- hostile pickles never run
class Payload:
    """Unpickling this calls os.mkdir(marker): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "torch.save-legacy", "pickle.dump"])
def test_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    state = {"format_version": 1, "model": {"w": torch.ones(2)}, "hook": Payload(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    elif writer == "torch.save-legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(state, f)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert not marker.exists(), "loading the checkpoint ran code"
    assert str(path) in str(e.value) and ("refused" in str(e.value) or "not a readable checkpoint" in str(e.value))
    # the file really is hostile: an unrestricted load runs the payload
    if writer == "pickle.dump":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert marker.is_dir()


def test_hostile_checkpoint_through_the_cli(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    torch.save({"format_version": 1, "hook": Payload(marker)}, tmp_path / "best.pt")
    assert main(["evaluate", str(tmp_path)]) == 2
    err = error_line(capsys.readouterr().err)
    assert "refused" in err and "best.pt" in err
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_cli_evaluate_and_predict_on_a_bad_checkpoint_exit_2(trained, tmp_path, capsys, damage):
    bad = tmp_path / "bad.pt"
    if damage == "truncated":
        bad.write_bytes((trained / "best.pt").read_bytes()[:5000])
    for argv in (["evaluate", str(bad)], ["predict", str(bad), str(tmp_path / "x.jpg")]):
        assert main(argv) == 2, argv
        err = error_line(capsys.readouterr().err)
        assert str(bad) in err


# ---------------------------------------------------------------- checkpoints of another run
def test_resume_with_another_model_config_is_refused(ds, trained, tmp_path):
    import shutil
    shutil.copytree(trained, tmp_path / "run")
    cfg = tiny_config()
    cfg.model.n_parts = 3
    f = failure(list(Trainer(cfg, tmp_path / "run", dataset=ds, resume=True).run()))
    assert "last.pt" in f.error and "cannot resume" in f.error and "model configuration" in f.error


def test_resume_with_another_class_list_is_refused(trained, tmp_path):
    import shutil
    shutil.copytree(trained, tmp_path / "run")
    other = make_synthetic(seed=5, **TINY_DATA)
    f = failure(list(Trainer(tiny_config(), tmp_path / "run", dataset=other, resume=True).run()))
    assert "last.pt" in f.error and "cannot resume" in f.error and "class list" in f.error


def test_resume_without_a_checkpoint_is_refused(ds, tmp_path):
    f = failure(list(Trainer(tiny_config(), tmp_path, dataset=ds, resume=True).run()))
    assert "checkpoint not found" in f.error and "last.pt" in f.error


def test_resume_with_different_training_settings_is_allowed(ds, trained, tmp_path):
    """Only the model configuration and the class list must match: more epochs is a valid resume."""
    import shutil
    shutil.copytree(trained, tmp_path / "run")
    cfg = tiny_config()
    cfg.train.joint.epochs = 2
    events = list(Trainer(cfg, tmp_path / "run", dataset=ds, resume=True).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    assert [e.stage for e in events if isinstance(e, ev.Step)] == ["joint", "joint"]


def test_evaluating_on_a_dataset_with_other_attributes_is_refused(ds, trained):
    state = load_checkpoint(trained / "best.pt")
    assert align_classes(state, ds)       # its own dataset fits
    other = make_synthetic(**TINY_DATA)
    other.attribute_names = [f"renamed_{a}" for a in other.attribute_names]
    with pytest.raises(CheckpointError, match=r"attributes differ from the checkpoint's \d+"):
        align_classes(state, other)
    fewer = make_synthetic(**TINY_DATA)
    fewer.attribute_names = fewer.attribute_names[:-1]
    with pytest.raises(CheckpointError, match="attributes differ"):
        align_classes(state, fewer)
    renamed = make_synthetic(**TINY_DATA)
    renamed.class_names = [f"x{n}" for n in renamed.class_names]
    with pytest.raises(CheckpointError, match="training classes absent from the dataset"):
        align_classes(state, renamed)


def test_weights_that_do_not_fit_the_configuration(trained):
    state = load_checkpoint(trained / "best.pt")
    state["config"]["model"]["n_parts"] = 3
    with pytest.raises(CheckpointError, match="do not fit its configuration"):
        model_from_checkpoint(state)


# ---------------------------------------------------------------- output folder
def test_output_folder_under_a_regular_file_fails_before_training(ds, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    events = list(Trainer(tiny_config(), blocker / "run", dataset=ds).run())
    f = failure(events)
    assert len(events) == 1 and str(blocker / "run") in f.error and "cannot write to the output folder" in f.error


def test_full_disk_fails_before_training(ds, tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(trainer_mod.os, "fsync", no_space)
    events = list(Trainer(tiny_config(), tmp_path / "run", dataset=ds).run())
    monkeypatch.undo()
    f = failure(events)
    assert len(events) == 1, events                    # no step was taken
    assert str(tmp_path / "run") in f.error and "No space left on device" in f.error


def test_full_disk_on_open(tmp_path, monkeypatch):
    import builtins
    real_open = builtins.open

    def full(path, mode="r", *a, **k):
        if "w" in mode and str(path).endswith(".write_probe"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **k)
    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(TrainingError, match=r"cannot write to the output folder .*run: No space left on device"):
        check_writable(tmp_path / "run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only folder")
def test_read_only_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(TrainingError, match="cannot write to the output folder"):
            check_writable(ro / "run")
    finally:
        ro.chmod(0o700)


def test_cli_train_into_an_unusable_folder_exits_2(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "run"
    assert main(["train", "--preset", "demo", "--out", str(out)]) == 2
    err = error_line(capsys.readouterr().err)
    assert err.startswith("error: cannot write to the output folder") and str(out) in err


# ---------------------------------------------------------------- GPU out of memory
def _oom(*a, **k):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_names_the_batch_size_to_lower(ds, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod.StepModule, "forward", _oom)
    cfg = tiny_config()
    cfg.train.batch_size = 6
    f = failure(list(Trainer(cfg, tmp_path, dataset=ds).run()))
    assert "out of memory" in f.error and "batch size 6" in f.error and "lower" in f.error
    assert "train.batch_size" in f.error and "3" in f.error


def test_out_of_memory_during_validation(ds, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "extract", _oom)
    f = failure(list(Trainer(tiny_config(), tmp_path, dataset=ds).run()))
    assert "batch size 8" in f.error and "lower" in f.error


def test_cli_out_of_memory_exits_2_with_the_advice(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trainer_mod.StepModule, "forward", _oom)
    cfg = tiny_config()
    cfg.data.options = dict(TINY_DATA)
    save_toml(cfg, tmp_path / "cfg.toml")
    assert main(["train", "--config", str(tmp_path / "cfg.toml"), "--out", str(tmp_path / "run")]) == 2
    err = error_line(capsys.readouterr().err)
    assert err.startswith("error: the GPU ran out of memory at batch size 8: lower train.batch_size")


# ---------------------------------------------------------------- CLI predict inputs
def test_cli_predict_with_a_bad_class_file_exits_2_naming_it(trained, tmp_path, capsys):
    from PIL import Image
    Image.new("RGB", (64, 48), (200, 120, 40)).save(tmp_path / "bird.png")
    bad = tmp_path / "mine.csv"
    bad.write_text("name,no_such_attribute\nblue_jay,1\n")
    assert main(["predict", str(trained), str(tmp_path / "bird.png"), "--classes", str(bad)]) == 2
    err = error_line(capsys.readouterr().err)
    assert str(bad) in err and "unknown attribute name" in err


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 30], ids=["empty", "truncated-png"])
def test_cli_predict_on_a_corrupt_image_exits_2_naming_it(trained, tmp_path, capsys, content):
    img = tmp_path / "bird.png"
    img.write_bytes(content)
    assert main(["predict", str(trained), str(img)]) == 2
    err = error_line(capsys.readouterr().err)
    assert "cannot read image" in err and str(img) in err


def test_cli_predict_on_a_decompression_bomb_exits_2(trained, tmp_path, capsys, monkeypatch):
    from PIL import Image
    Image.new("RGB", (64, 48)).save(tmp_path / "bird.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)      # 64 x 48 > 2 x 1000
    assert main(["predict", str(trained), str(tmp_path / "bird.png")]) == 2
    err = error_line(capsys.readouterr().err)
    assert "cannot read image" in err and "decompression bomb" in err


@pytest.mark.parametrize("content, kind", [(b"epochs = 3\nlr = 0.1\n", "a text file"),
                                           (b"\x89PNG\r\n\x1a\n" + b"\0" * 60, "of another format")])
def test_a_file_that_is_not_a_checkpoint_is_named_as_what_it_is(tmp_path, content, kind):
    """Neither a zip archive (torch.save) nor a pickle: said in words, not as the unpickler's byte
    value (a text file starting with 'e' used to read '101'). The CLI and the app share this."""
    bad = tmp_path / "model.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"not a model checkpoint: the file is {kind}") as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value) and "101" not in str(e.value)
