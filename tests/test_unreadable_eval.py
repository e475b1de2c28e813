"""An unreadable test image is found before the evaluation extracts anything, and named; with
``skip_unreadable`` it is left out and listed (issue 16)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sgma.engine import evaluate as E
from sgma.engine import events as ev
from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
from sgma.engine.data.base import DatasetError
from sgma.engine.data.registry import load_dataset
from sgma.engine.image_check import find_unreadable, image_problem
from sgma.engine.trainer import Trainer

from fixtures_data import make_folder
from test_trainer import tiny_config


def _cut_jpeg(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])      # header intact, scan data cut


def test_image_problem_tells_a_cut_jpeg_from_a_whole_one(tmp_path):
    whole, cut = tmp_path / "whole.jpg", tmp_path / "cut.jpg"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(whole)
    _cut_jpeg(cut)
    assert image_problem(str(whole)) is None
    assert "truncated" in image_problem(str(cut))
    assert image_problem(str(tmp_path / "absent.jpg")) == "file is missing"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = make_folder(tmp_path_factory.mktemp("data"))
    ds = load_dataset("folder", str(root))
    out = tmp_path_factory.mktemp("run")
    events = list(Trainer(tiny_config(), out, dataset=ds).run())
    assert not [e for e in events if isinstance(e, ev.Failed)]
    return root, out


def test_evaluation_names_an_unreadable_test_image_before_extracting(trained, monkeypatch):
    root, run = trained
    ds = load_dataset("folder", str(root))
    victim_i = ds.split.test_unseen[0]
    victim = Path(ds.items[victim_i].path)
    original = victim.read_bytes()
    try:
        _cut_jpeg(victim)
        ds = load_dataset("folder", str(root))            # the header check at load lets it through
        state = load_checkpoint(run)
        model = model_from_checkpoint(state)
        calls = []
        real_extract = E.extract
        monkeypatch.setattr(E, "extract", lambda *a, **k: calls.append(1) or real_extract(*a, **k))
        with pytest.raises(DatasetError) as err:
            E.evaluate(model, state, ds)
        assert str(victim) in str(err.value) and "--skip-unreadable" in str(err.value)
        assert calls == []                                  # found before any extraction
        assert [b[0] for b in find_unreadable(ds, ds.split.test_unseen)] == [victim_i]
        full_n = len(ds.split.test_seen) + len(ds.split.test_unseen)
        summary = E.evaluate(model, state, ds, skip_unreadable=True).summary
        assert summary["skipped_images"] == [{"path": str(victim), "reason": image_problem(str(victim))}]
        assert summary["n_images"] == full_n - 1
    finally:
        victim.write_bytes(original)


def test_cli_stops_on_an_unreadable_image_or_skips_it_with_the_flag(trained, tmp_path, capsys):
    from sgma.engine.cli import main
    root, run = trained
    ds = load_dataset("folder", str(root))
    victim = Path(ds.items[ds.split.test_seen[0]].path)
    original = victim.read_bytes()
    try:
        _cut_jpeg(victim)
        argv = ["evaluate", str(run), "--dataset", "folder", "--root", str(root)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(victim) in err
        out_json = tmp_path / "e.json"
        assert main(argv + ["--skip-unreadable", "--json", str(out_json)]) == 0
        assert "left out 1 unreadable image" in capsys.readouterr().out
        import json
        assert json.loads(out_json.read_text())["skipped_images"][0]["path"] == str(victim)
    finally:
        victim.write_bytes(original)


def test_cli_evaluate_without_a_run_needs_a_kind_with_a_bundled_model(capsys):
    from sgma.engine.cli import main
    assert main(["evaluate"]) == 2
    assert "--dataset KIND" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "awa2", "--root", "/nowhere"]) == 2
    assert "no model is bundled for dataset kind 'awa2'" in capsys.readouterr().err
