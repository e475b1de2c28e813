"""The live curves' axis rules: axes that move in steps, so a redraw during training repaints
the lines and not the axes (a full replot stalled the window while the training thread ran)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

from sgma.app.curves import _y_range_for, ema, nice_ceiling


@pytest.mark.parametrize("x, expected", [(0, 10), (3, 10), (10, 10), (10.5, 20), (20, 20), (21, 50),
                                         (51, 100), (999, 1000), (1001, 2000), (4500, 5000)])
def test_nice_ceiling_is_the_next_1_2_5_step(x, expected):
    assert nice_ceiling(x) == pytest.approx(expected)


def test_loss_axis_keeps_its_range_while_the_data_stay_inside_and_fill_it():
    first = _y_range_for(1.0, 5.0, None)
    assert first == pytest.approx((0.2, 5.8))                 # 20 % of the span each side
    assert _y_range_for(1.5, 4.0, first) is None               # inside, fills > 1/3: unchanged
    assert _y_range_for(0.1, 5.0, first) == pytest.approx((0.1 - 0.98, 5.0 + 0.98))   # left below
    assert _y_range_for(2.0, 2.5, first) == pytest.approx((1.9, 2.6))   # fills < 1/3: shrinks


def test_ema_is_bias_corrected():
    v = np.array([2.0, 4.0, 6.0])
    # alpha 0.5: acc = [1, 2.5, 4.25], weights = [0.5, 0.75, 0.875]
    assert ema(v, 0.5) == pytest.approx([2.0, 2.5 / 0.75, 4.25 / 0.875])
    assert list(ema(v, 0.0)) == [2.0, 4.0, 6.0]


def test_history_of_a_run_read_back_and_replayed_steps_replaced(qtbot, tmp_path):
    """A resumed run starts from what metrics.csv holds; steps after the checkpoint it resumes
    from (logged before a kill) are replayed, so they are replaced, not drawn twice."""
    from types import SimpleNamespace
    from sgma.app.curves import Curves
    from sgma.app.settings import Settings
    from sgma.app.training_panel import epoch_number, epoch_slots
    from sgma.engine.metrics_log import MetricsLog, read_history
    from sgma.engine import events as ev

    log = MetricsLog(tmp_path)
    for s in range(1, 6):
        log.step(ev.Step("warmup", 0, s - 1, s, {"total": 10.0 - s, "cls": 1.0}, lr=0.1))
    log.epoch(ev.EpochEnd("warmup", 0, {"val_zsl_mca": 0.25}), lr=0.1)
    log.close()
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("123.0,step,warmup,1,6,tot")                 # a row cut by a kill
    steps, epochs = read_history(tmp_path)
    assert steps[:2] == [(1, "total", 9.0), (1, "cls", 1.0)] and len(steps) == 10
    assert epochs == [("warmup", 0, "val_zsl_mca", 0.25)]       # learning rates left out
    assert read_history(tmp_path / "nothing") == ([], [])

    c = Curves(Settings(str(tmp_path / "s.ini")))
    qtbot.addWidget(c)
    for s, name, v in steps:
        c.add_step(s, {name: v})
    c.drop_steps_from(4)                                      # the checkpoint was at step 3
    c.add_step(4, {"total": 0.5, "cls": 0.5})
    c.redraw()
    assert [p[0] for p in c.steps["total"]] == [1, 2, 3, 4] and c.steps["total"][-1][1] == 0.5
    assert list(c.lines["total"].getData()[0]) == [1, 2, 3, 4]

    # validation points: numbered over the run's stages (k-means validates once), replaced on replay
    def stage(n, enabled=True):
        return SimpleNamespace(epochs=n, enabled=enabled)
    cfg = SimpleNamespace(train=SimpleNamespace(warmup=stage(2), grouping=stage(3), pretrain_parts=stage(0),
                                                joint=stage(4)), model=SimpleNamespace(use_parts=True))
    slots = epoch_slots(cfg)
    assert [epoch_number(slots, "warmup", e) for e in (0, 1)] == [1, 2]
    assert epoch_number(slots, "grouping", 2) == 3
    assert [epoch_number(slots, "joint", e) for e in range(4)] == [4, 5, 6, 7]
    for x in (1, 2, 3, 4):
        c.add_epoch(x, {"val_zsl_mca": x / 10})
    c.add_epoch(4, {"val_zsl_mca": 0.9})                      # epoch 4 again after a resume
    c.add_epoch(5, {"other": 1.0})                            # no accuracy: no point
    assert c.accuracy == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.9)]


def test_plots_are_stacked_so_each_title_fits_a_narrow_pane(qtbot):
    """Beside the training form the curves get a tall, narrow pane; side by side the accuracy plot
    was 170 px wide in a 1400 px window and cut its own title. Stacked, each plot has the width."""
    from types import SimpleNamespace
    from sgma.app.curves import Curves
    c = Curves(SimpleNamespace(get=lambda key, default: default, set=lambda *a: None))
    qtbot.addWidget(c)
    c.resize(430, 800)
    c.show()
    qtbot.waitExposed(c)
    for plot in (c.loss_plot, c.acc_plot):
        title = plot.getPlotItem().titleLabel.item.boundingRect().width()
        assert plot.width() >= 400 and title < plot.width()
    assert c.acc_plot.y() > c.loss_plot.y()
