"""The engine never imports Qt: statically (every import statement in engine/**/*.py) and at run
time (importing every sgma.engine module in a fresh interpreter loads no Qt module)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "engine"
QT_ROOTS = {"PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6", "shiboken2", "qtpy"}


def qt_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        found += [n for n in names if n.split(".")[0] in QT_ROOTS]
    return found


def test_checker_finds_qt_imports():
    src = ("import os\nfrom PySide6.QtCore import Qt\ndef f():\n    import pyqtgraph as pg\n"
           "import importlib\nimportlib.import_module('PyQt5.QtGui')\nimport shiboken6\n")
    assert sorted(qt_imports(src)) == sorted(["PySide6.QtCore", "pyqtgraph", "PyQt5.QtGui", "shiboken6"])
    assert qt_imports("import torch\nfrom .app import x\n") == []


def test_no_engine_file_imports_qt():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) >= 10 and (ENGINE / "attention.py") in files
    offenders = {str(f.relative_to(ENGINE)): q for f in files if (q := qt_imports(f.read_text(encoding="utf-8")))}
    assert offenders == {}


def test_importing_every_engine_module_loads_no_qt():
    code = r"""
import importlib, json, pkgutil, sys
import sgma.engine as engine
names = ["sgma.engine"] + [m.name for m in pkgutil.walk_packages(engine.__path__, "sgma.engine.")]
for n in names:
    importlib.import_module(n)
qt = sorted(m for m in sys.modules if m.split(".")[0] in %r)
print(json.dumps({"modules": names, "qt": qt}))
""" % (sorted(QT_ROOTS),)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "PySide6" not in res["qt"]
    assert res["qt"] == []
    for m in ("sgma.engine.attention", "sgma.engine.cropping", "sgma.engine.embedding",
              "sgma.engine.inference", "sgma.engine.model", "sgma.engine.config", "sgma.engine.stages"):
        assert m in res["modules"]
    assert any(m.startswith("sgma.engine.data.") for m in res["modules"])
