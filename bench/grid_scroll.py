"""The thumbnail grid on a large dataset: how long the main window takes to open on it, the worst
scroll step, and a filter over every row (docs/benchmarks.md). Offscreen Qt, no model.

    python bench/grid_scroll.py [--images 12000]

The behaviour (only what is on screen is requested, the end loads after a scroll, the filter's
row count) is tested in tests/test_app_browse.py on the same dataset; the times live here.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PIL import Image


class Solid:
    """A cheap procedural image, one colour per index."""
    def __init__(self, i: int):
        self.i = i

    def __call__(self):
        return Image.new("RGB", (64, 48), ((self.i * 37) % 255, (self.i * 11) % 255, 90))


def big_dataset(n: int = 12000):
    """A ten-class dataset of ``n`` cheap procedural images; classes 7-9 unseen."""
    from sgma.engine.data.base import ImageItem, Split, ZSLDataset
    items = [ImageItem(label=i % 10, render=Solid(i), image_id=f"img{i}") for i in range(n)]
    sem = np.eye(10, 4, dtype=np.float32) + 0.1
    split = Split("big", seen=list(range(7)), unseen=[7, 8, 9],
                  trainval=[i for i in range(n) if i % 10 < 7], test_seen=[],
                  test_unseen=[i for i in range(n) if i % 10 >= 7])
    return ZSLDataset("big", None, [f"class{c}" for c in range(10)], [f"g::a{j}" for j in range(4)], sem,
                      items, split)


def wait_until(app, cond, timeout: float = 30.0) -> None:
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("the grid did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=12000)
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication
    from sgma.app.mainwindow import MainWindow
    from sgma.app.settings import Settings
    app = QApplication.instance() or QApplication([])
    ds = big_dataset(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        w = MainWindow(Settings(os.path.join(tmp, "settings.ini")), dataset=ds, load_demo=False)
        w.show()
        app.processEvents()
        build = time.perf_counter() - t0
        m, bar = w.browser.model, w.browser.view.verticalScrollBar()
        wait_until(app, lambda: len(m.cache) > 0)
        steps = []
        for frac in (0.25, 0.5, 0.75, 1.0):
            t = time.perf_counter()
            bar.setValue(int(bar.maximum() * frac))
            app.processEvents()
            steps.append(time.perf_counter() - t)
        t = time.perf_counter()
        w.browser.kind_box.setCurrentText("unseen")
        filt = time.perf_counter() - t
        print(f"{args.images} images: window open {build:.2f} s; scroll steps "
              + " ".join(f"{s * 1000:.0f}" for s in steps) + f" ms (worst {max(steps) * 1000:.0f} ms); "
              f"filter to {m.rowCount()} rows {filt * 1000:.0f} ms; thumbnails requested {m.n_requests}")
        w.tasks.cancel_all()
        w.tasks.wait(60000)
        m.shutdown()


if __name__ == "__main__":
    main()
