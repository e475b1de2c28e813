"""Shared fixtures of the GUI tests (tests/test_app_*.py import them; there is no conftest.py).

- ``small_ds``: a small synthetic dataset (fast to train and evaluate on);
- ``app_settings``: settings in a temporary INI file;
- ``trained_run``: a run folder trained once per session with tiny epochs (engine only);
- ``answers``: every dialog answered without showing it; the messages are recorded;
- ``make_window``: builds a MainWindow on these and closes it at the end of the test.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

_SHARED: dict = {}
SMALL = dict(n_train_per_class=6, n_test_seen_per_class=2, n_unseen_per_class=3, image_size=96)


def small_model(cfg):
    """The model of the tests: a small CNN from scratch at 96 px (the real demo preset uses an
    ImageNet EfficientNet-Lite0 at 192 px: too slow for a GUI test on two cores)."""
    m = cfg.model
    m.backbone, m.part_backbone, m.pretrained = "small_cnn", "", "none"
    m.attention_size, m.image_size, m.part_size = 96, 64, 48
    m.crop_hidden, m.attention_reduction = 128, 4
    if hasattr(m, "freeze_backbone"):
        m.freeze_backbone = False
    return cfg


def small_preset(real_preset):
    def preset(name):
        cfg = real_preset(name)
        return small_model(cfg) if name == "demo" else cfg
    return preset


def tiny_config(kmeans: bool = True):
    from sgma.engine.config import preset
    cfg = small_model(preset("demo"))
    for stage in ("warmup", "grouping", "pretrain_parts", "joint"):
        getattr(cfg.train, stage).epochs = 1
    cfg.train.grouping.epochs = int(kmeans)
    cfg.train.max_steps_per_epoch = 3
    cfg.train.batch_size = 16
    cfg.train.grouping_images = 48
    cfg.data.options = dict(SMALL)
    return cfg


@pytest.fixture(scope="session")
def small_ds():
    if "small_ds" not in _SHARED:
        from sgma.engine.data.synthetic import make_synthetic
        _SHARED["small_ds"] = make_synthetic(**SMALL)
    return _SHARED["small_ds"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_ds):
    """A run folder with best.pt/last.pt trained on ``small_ds`` (about 15 s on 2 cores; the
    k-means stage is skipped to save time, the GUI training test runs every stage)."""
    # each test module that imports this fixture gets its own copy of it: share the run
    if "trained_run" in _SHARED:
        return _SHARED["trained_run"]
    import torch
    from sgma.engine import events as ev
    from sgma.engine.trainer import Trainer
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("run")
    events = list(Trainer(tiny_config(kmeans=False), out, dataset=small_ds).run())
    failed = [e for e in events if isinstance(e, ev.Failed)]
    assert not failed, failed[0].traceback
    assert (out / "best.pt").is_file()
    _SHARED["trained_run"] = out
    return out


@pytest.fixture
def app_settings(tmp_path):
    from sgma.app.settings import Settings
    return Settings(str(tmp_path / "settings.ini"))


@pytest.fixture
def answers(monkeypatch):
    """Dialogs never block: ``ask`` answers ``answers.reply``; every message is recorded."""
    from sgma.app import messages

    class Answers:
        reply = True
        shown: list[tuple[str, str, str]] = []

        def of(self, kind):
            return [m for m in self.shown if m[0] == kind]

    a = Answers()
    a.shown = []
    monkeypatch.setattr(messages, "error", lambda parent, title, text, details="": a.shown.append(("error", title, text)))
    monkeypatch.setattr(messages, "info", lambda parent, title, text: a.shown.append(("info", title, text)))

    def ask(parent, title, text):
        a.shown.append(("ask", title, text))
        return a.reply
    monkeypatch.setattr(messages, "ask", ask)
    return a


@pytest.fixture
def make_window(qtbot, app_settings, answers, monkeypatch, tmp_path):
    """Builds windows; the training form's "demo" preset gets the small test model; the user
    cache folder (ranking features) is a temporary one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from sgma.app.mainwindow import MainWindow
    from sgma.engine import config
    monkeypatch.setattr(config, "preset", small_preset(config.preset))
    made = []

    def make(dataset=None, checkpoint=None, **kw):
        kw.setdefault("load_demo", False)
        w = MainWindow(app_settings, dataset=dataset, checkpoint=checkpoint, **kw)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        made.append(w)
        if checkpoint is not None:
            qtbot.waitUntil(lambda: w.state.predictor is not None or bool(answers.of("error")), timeout=30000)
        return w

    yield make
    for w in made:
        if w.training.is_running():
            w.training.stop()
            w.training.run.wait(60000)
        w.tasks.cancel_all()
        w.tasks.wait(60000)
        w.browser.model.shutdown()


@pytest.fixture
def win(qtbot, make_window, small_ds, trained_run):
    """A window with the trained small model and its first prediction shown."""
    w = make_window(dataset=small_ds, checkpoint=str(trained_run / "best.pt"))
    assert w.state.predictor is not None
    qtbot.waitUntil(lambda: w.audit.prediction is not None, timeout=20000)
    return w
