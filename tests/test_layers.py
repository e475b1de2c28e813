"""The import-linter contracts of pyproject.toml (docs/architecture.md, "Layers") hold, and they
bite: a copy of the engine with an upward import, a Qt import and an unlisted module breaks them.

import-linter finds modules by walking the package folder, but the install maps the folders
``engine/`` and ``app/`` to ``sgma.engine`` and ``sgma.app`` (pyproject.toml, package-dir), so
the test builds that tree from symlinks and runs ``lint-imports`` over it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _tree(tmp_path: Path, engine: Path = REPO / "engine") -> Path:
    """``<tmp>/sgma/{engine,app}`` as links to the folders the install maps there."""
    pkg = tmp_path / "tree" / "sgma"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine").symlink_to(engine, target_is_directory=True)
    (pkg / "app").symlink_to(REPO / "app", target_is_directory=True)
    return pkg.parent


def _lint(root: Path) -> subprocess.CompletedProcess:
    assert LINT_IMPORTS.is_file(), f"{LINT_IMPORTS} missing: install the dev extras (pip install -e '.[dev]')"
    env = dict(os.environ, PYTHONPATH=str(root))      # before the editable install's finder
    return subprocess.run([str(LINT_IMPORTS), str(REPO / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_are_kept(tmp_path):
    r = _lint(_tree(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout and "engine layers, top to bottom KEPT" in r.stdout, r.stdout


def test_an_upward_import_a_qt_import_and_an_unlisted_module_break_the_contracts(tmp_path):
    engine = tmp_path / "engine"
    shutil.copytree(REPO / "engine", engine, ignore=shutil.ignore_patterns("__pycache__"))
    with open(engine / "evaluate.py", "a") as f:
        f.write("\nfrom . import trainer  # an evaluator that reaches up into training\n")
    with open(engine / "metrics.py", "a") as f:
        f.write("\nimport PySide6  # an equation module that needs Qt\n")
    (engine / "unlisted.py").write_text('"""A module that no layer lists."""\n')
    r = _lint(_tree(tmp_path, engine))
    assert r.returncode != 0
    out = " ".join(r.stdout.split())            # lint-imports wraps long lines
    assert "engine layers, top to bottom BROKEN" in out, out
    assert "sgma.engine.evaluate -> sgma.engine.trainer" in out, out
    assert "the engine never imports Qt or pyqtgraph BROKEN" in out and "sgma.engine.metrics -> PySide6" in out, out
    assert "sgma.engine.unlisted" in out, out
    assert "the app is a view over the engine: engine never imports the app KEPT" in out, out
