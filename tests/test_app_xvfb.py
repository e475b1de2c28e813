"""`sgma-gui` as a real process: on a real (virtual) X server it starts, draws its window and
quits by itself (skipped when Xvfb is not installed: ``apt-get install xvfb xauth libxcb-icccm4
libxcb-keysyms1 libxcb-cursor0``); offscreen it opens the dataset and checkpoint it is given."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

needs_xvfb = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")


@pytest.fixture
def display():
    """A private Xvfb server; yields its DISPLAY string."""
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    yield f":{number}"
    proc.terminate()
    proc.wait(10)


def gui_command() -> list[str]:
    script = Path(sys.executable).parent / "sgma-gui"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sgma.app.main"]


@pytest.mark.xvfb
@needs_xvfb
def test_sgma_gui_draws_its_window_under_xvfb(display, tmp_path):
    shot = tmp_path / "screen.png"
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", SGMA_GUI_SETTINGS=str(tmp_path / "s.ini"))
    proc = subprocess.run(gui_command() + ["--no-demo", "--screenshot", str(shot), "--quit-after", "6"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "screenshot saved" in proc.stdout
    from PIL import Image
    im = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert im.shape[0] > 400 and im.shape[1] > 600
    assert im.std() > 20, "the screenshot is blank"
    assert len(np.unique(im.reshape(-1, 3)[::97], axis=0)) > 50     # thumbnails, text, widgets


def test_sgma_gui_opens_the_dataset_and_checkpoint_it_is_given(tmp_path):
    """``sgma-gui --dataset KIND --checkpoint FILE`` as a process (offscreen: no X server needed)."""
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).parent))
    from app_fixtures import SMALL, tiny_config
    from sgma.engine.trainer import Trainer
    from sgma.engine.data.synthetic import make_synthetic
    cfg = tiny_config(kmeans=False)
    for stage in ("pretrain_parts", "joint"):
        getattr(cfg.train, stage).epochs = 0
    cfg.train.max_steps_per_epoch = 1
    run = tmp_path / "run"
    list(Trainer(cfg, run, dataset=make_synthetic(**SMALL)).run())
    assert (run / "best.pt").is_file()
    shot = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SGMA_GUI_SETTINGS=str(tmp_path / "s.ini"))
    opts = [x for k, v in SMALL.items() for x in ("--option", f"{k}={v}")]
    proc = subprocess.run(gui_command() + ["--dataset", "synthetic", *opts, "--checkpoint", str(run / "best.pt"),
                                           "--screenshot", str(shot), "--quit-after", "8"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = 16 * (SMALL["n_train_per_class"] + SMALL["n_test_seen_per_class"]) + 8 * SMALL["n_unseen_per_class"]
    assert f"state: dataset=synthetic images={n} model={run / 'best.pt'}" in proc.stdout
    assert shot.is_file()


@pytest.mark.slow
@pytest.mark.xvfb
@needs_xvfb
def test_sgma_gui_on_real_cub_under_xvfb_opens_the_bundled_real_bird_model(display, tmp_path):
    """Issue 17: the real window on real CUB images, audited by the bundled real-bird model."""
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).parent))
    from fixtures_data import need_shared
    from sgma.engine.bundled import bundled_checkpoint
    cub = bundled_checkpoint("cub")
    if cub is None:
        pytest.skip("resources/cub.pt is not bundled")
    root = need_shared("cub50")
    shot = tmp_path / "cub.png"
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", SGMA_GUI_SETTINGS=str(tmp_path / "s.ini"),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run(gui_command() + ["--dataset", "cub", "--root", str(root), "--screenshot", str(shot),
                                           "--quit-after", "25"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"state: dataset=cub images=820 model={cub}" in proc.stdout, proc.stdout
    from PIL import Image
    im = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert im.std() > 20 and len(np.unique(im.reshape(-1, 3)[::97], axis=0)) > 200   # real photos
