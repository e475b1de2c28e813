"""`sgma-gui` as a real process on a real (virtual) X server: it starts, draws its window and
quits by itself. Skipped when Xvfb is not installed (``apt-get install xvfb xauth libxcb-icccm4
libxcb-keysyms1 libxcb-cursor0``)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.xvfb, pytest.mark.skipif(shutil.which("Xvfb") is None,
                                                   reason="Xvfb is not installed (apt-get install xvfb)")]


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
