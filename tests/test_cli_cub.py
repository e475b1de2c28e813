"""``sgma train`` and ``sgma evaluate`` on CUB-layout folders: a model trained on one folder is
evaluated on another folder of the same classes that it has never seen (issue 4)."""
from __future__ import annotations

import json

import pytest

from sgma.engine.cli import main
from sgma.engine.config import save_toml
from sgma.engine.data.cub import load_cub

from fixtures_data import make_cub
from test_cli import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cub_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("cubcli")
    train_root = make_cub(d / "a", per_class=6)
    cfg = tiny_config(steps=2, long_stages=1)
    cfg.data.options = {}
    save_toml(cfg, d / "tiny.toml")
    assert main(["train", "--config", str(d / "tiny.toml"), "--dataset", "cub", "--root", str(train_root),
                 "--out", str(d / "run")]) == 0
    return d


def test_evaluate_on_a_cub_folder_the_model_never_saw(cub_run, capsys):
    # a subset folder: 3 images per class (ids 1-3 of every class of 6), in another place
    keep = [c * 6 + k for c in range(6) for k in (1, 2, 3)]
    other = make_cub(cub_run / "b", per_class=6, keep_ids=keep)
    out = cub_run / "b.json"
    assert main(["evaluate", str(cub_run / "run"), "--dataset", "cub", "--root", str(other),
                 "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["dataset"] == "cub"
    b = load_cub(other)
    assert len(b.split.test_unseen) == 2 * 3           # the 2 unseen classes' images present in b
    assert s["n_images"] == len(b.split.test_seen) + len(b.split.test_unseen)
    assert s["zsl"]["n_classes"] == 2
    assert 0.0 <= s["zsl"]["mca"] <= 1.0
    assert set(s["parts"]) >= {"head", "tail", "random"}
    full = cub_run / "a.json"
    assert main(["evaluate", str(cub_run / "run"), "--json", str(full)]) == 0
    assert json.loads(full.read_text())["n_images"] != s["n_images"]


def test_evaluate_on_a_folder_with_other_classes_names_the_class(cub_run, capsys, tmp_path):
    other = make_cub(tmp_path, per_class=6)
    p = other / "CUB_200_2011" / "classes.txt"
    p.write_text(p.read_text().replace("Bird_B", "Bird_Z"))
    assert main(["evaluate", str(cub_run / "run"), "--dataset", "cub", "--root", str(other)]) == 2
    err = capsys.readouterr().err
    assert "Bird_Z" in err and "att_splits.mat" in err
