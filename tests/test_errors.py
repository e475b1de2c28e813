"""One domain error base (engine/errors.py): the ``sgma`` command turns exactly those into one
``error:`` line and exit status 2; any other exception is a bug and keeps its traceback."""
from __future__ import annotations

import subprocess
import sys
from importlib.resources import files

import pytest

from sgma.engine import cli
from sgma.engine.backbones import WeightsNotFound
from sgma.engine.checkpoint import CheckpointError
from sgma.engine.classes import ClassFileError
from sgma.engine.config import ConfigError, load_toml
from sgma.engine.data.base import DatasetError
from sgma.engine.errors import SGMAError
from sgma.engine.runlock import RunLockError
from sgma.engine.trainer import TrainingError

# each domain error, with the built-in base that callers written before SGMAError catch
OLD_BASES = [(DatasetError, ValueError), (ConfigError, ValueError), (CheckpointError, ValueError),
             (ClassFileError, ValueError), (WeightsNotFound, FileNotFoundError),
             (TrainingError, RuntimeError), (RunLockError, RuntimeError), (cli.CLIError, Exception)]


@pytest.mark.parametrize("cls, old", OLD_BASES, ids=[c.__name__ for c, _ in OLD_BASES])
def test_every_domain_error_is_an_sgma_error_and_keeps_its_old_base(cls, old):
    try:
        raise cls("the message names the file")
    except old as e:                     # an old ``except ValueError`` still catches it
        assert isinstance(e, SGMAError) and str(e) == "the message names the file"


def test_a_config_error_from_a_real_file_is_caught_as_sgma_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[model]\nn_parts = 'two'\n")
    with pytest.raises(SGMAError, match="model.n_parts"):
        load_toml(p)


def test_a_dataset_error_exits_2_with_one_error_line(tmp_path, capsys):
    """A real dataset error: the bundled demo model evaluated on a CUB folder that does not exist."""
    missing = tmp_path / "no_such_cub"
    demo = files("sgma.resources") / "demo.pt"
    assert cli.main(["evaluate", str(demo), "--dataset", "cub", "--root", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(missing) in err[0], err


@pytest.mark.parametrize("error", [DatasetError("labels.txt line 3: no class 7"),
                                   ClassFileError("my.toml: duplicate class name 'jay'")])
def test_a_domain_error_from_a_command_exits_2_without_traceback(monkeypatch, capsys, error):
    def fails(a):
        raise error
    monkeypatch.setattr(cli, "cmd_bench", fails)
    assert cli.main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {error}\n"


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), ValueError("not a user error"),
                                 KeyError("prototypes"), FileNotFoundError("/tmp/internal")])
def test_a_bug_propagates_with_its_type(monkeypatch, capsys, bug):
    def fails(a):
        raise bug
    monkeypatch.setattr(cli, "cmd_bench", fails)
    with pytest.raises(type(bug)) as e:
        cli.main(["bench", "--quick"])
    assert e.value is bug and "error:" not in capsys.readouterr().err


def test_a_bug_in_the_command_prints_a_traceback_and_not_exit_2():
    code = ("import sys; from sgma.engine import cli\n"
            "def fails(a): return 1 // 0\n"
            "cli.cmd_bench = fails\n"
            "sys.exit(cli.main(['bench', '--quick']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.returncode != 2
    assert "Traceback" in r.stderr and "ZeroDivisionError" in r.stderr and "error: " not in r.stderr


def test_a_failed_training_run_is_a_run_error_naming_the_cause(tmp_path):
    """engine/runs.py: the trainer's Failed event becomes a RunError (an SGMAError) whose message
    names the missing dataset folder; nothing is trained."""
    from sgma.engine.config import preset
    from sgma.engine.runs import RunError, run_training
    cfg = preset("tiny")
    cfg.data.kind, cfg.data.root, cfg.data.split, cfg.data.options = "cub", str(tmp_path / "no_cub"), "ps", {}
    with pytest.raises(RunError, match="no_cub") as e:
        run_training(cfg, tmp_path / "run", quiet=True)
    assert isinstance(e.value, SGMAError)
    assert not (tmp_path / "run" / "best.pt").exists()
