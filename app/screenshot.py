"""Screenshots of every panel for docs/gui.md, taken by driving the real window in-process.

    python -m sgma.app.screenshot --out docs/screenshots [--checkpoint FILE] [--epochs 2,1,2,3]
    python -m sgma.app.screenshot --dataset cub --root PATH [--compare CKPT] [--history RUN_DIR]

It opens the built-in synthetic dataset, runs a short training from the Training panel (for its
curves), then audits an unseen image, evaluates, defines a user class, classifies and ranks with
it, and saves ``audit.png``, ``training.png``, ``evaluation.png``, ``classes.png``,
``open_dataset.png``, ``localisation.png`` (the grid, worst head IoU first), ``atlas.png`` (the part atlas) and ``compare.png`` (the audited model against
the short run's, when they differ). The model audited and evaluated is ``--checkpoint`` when given, else the
bundled demo model when the package has one, else the model the short training produced.
Runs offscreen when there is no display.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def wait_until(app, cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def settle(app, seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def shoot_localisation(w, shoot) -> None:
    """The browser after an evaluation, sorted worst head IoU first (the tiles' IoU badges)."""
    b = w.browser
    b.sort_box.setCurrentText(f"worst {w.state.dataset.part_names[0]} IoU first")
    shoot(b, "localisation.png")
    b.sort_box.setCurrentIndex(0)


def shoot_atlas_and_compare(app, w, shoot, second_checkpoint=None) -> None:
    """The part atlas (top 6 crops per map) and, given a second checkpoint, the comparison of the
    window's model with it on the selected image."""
    atlas = w.show_part_atlas()
    atlas.resize(900, 330)
    atlas.k_box.setValue(6)
    atlas.run()
    wait_until(app, lambda: atlas.task is None and atlas.atlas is not None, 3600, "the part atlas")
    shoot(atlas, "atlas.png")
    atlas.close()
    if second_checkpoint is None or str(second_checkpoint) == str(w.state.checkpoint_path):
        return
    shoot_compare(app, w, shoot, second_checkpoint, (1000, 620), timeout=300)


def shoot_compare(app, w, shoot, checkpoint, size: tuple[int, int], timeout: float) -> None:
    """The current image, model A (the window's) against ``checkpoint`` as model B."""
    cmp = w.show_compare()
    cmp.resize(*size)
    cmp.load_model_b(str(checkpoint))
    wait_until(app, lambda: cmp.predictor_b is not None, timeout, "model B")
    wait_until(app, lambda: cmp.a.prediction is not None and cmp.b.prediction is not None, timeout,
               "both predictions")
    shoot(cmp, "compare.png")
    cmp.close()


def shoot_evaluation(app, w, shoot, timeout: float) -> None:
    """Evaluate, show the diagonal confusion cell with the most images in the grid (so it is not
    empty), shoot, and clear the selection."""
    import numpy as np
    w.tabs.setCurrentWidget(w.evaluation)
    w.evaluation.run()
    wait_until(app, lambda: w.state.evaluation is not None, timeout, "the evaluation")
    cm = w.evaluation.confusion.model_
    diag = np.diag(np.asarray(w.state.evaluation.summary["confusion"]["matrix"]))
    k = int(diag.argmax()) if len(diag) else 0
    w.evaluation.confusion.clicked.emit(cm.index(k, k))
    shoot(w, "evaluation.png")
    w.state.set_selection(None, "")


def shoot_real(app, w, shoot, compare=None, history=None) -> None:
    """The screenshots on a real dataset (``--dataset cub --root PATH``) with the model the window
    opened (the bundled one of that kind, or ``--checkpoint``): evaluation, the grid's IoU badges,
    the part audit of the unseen test image whose head square the evaluation found best, the part
    atlas of the seen test images, the comparison with ``compare``, a user class ranked, and the
    training curves of the run folder ``history`` as a resume draws them (nothing is trained)."""
    import numpy as np
    from .training_panel import epoch_slots
    ds, b = w.state.dataset, w.browser
    shoot_evaluation(app, w, shoot, timeout=7200)
    # ---- the part audit: the unseen test image with the best head IoU (said so in docs/gui.md)
    head = w.state.image_ious().get(ds.part_names[0]) if ds.part_names else None
    unseen = np.asarray(ds.split.test_unseen)
    pick = int(unseen[np.nanargmax(head[unseen])]) if head is not None else int(unseen[0])
    w.tabs.setCurrentWidget(w.audit)
    b.split_box.setCurrentText("test_seen")
    shoot(b, "localisation.png")                    # the badges, in the dataset's order
    b.split_box.setCurrentText("test_unseen")
    b.select_index(pick)
    wait_until(app, lambda: w.audit.prediction is not None and w.audit.index == pick, 600, "the prediction")
    shoot(w, "audit.png")
    # ---- the part atlas of the seen test images, then model A against model B on the same image
    b.split_box.setCurrentText("test_seen")
    atlas = w.show_part_atlas()
    atlas.resize(980, 360)
    atlas.k_box.setValue(6)
    atlas.images_box.setCurrentIndex(1)             # the images in the grid
    atlas.run()
    wait_until(app, lambda: atlas.task is None and atlas.atlas is not None, 7200, "the part atlas")
    shoot(atlas, "atlas.png")
    atlas.close()
    b.split_box.setCurrentText("test_unseen")
    b.select_index(pick)
    if compare:
        shoot_compare(app, w, shoot, compare, (1100, 680), timeout=600)
    # ---- a user class: an unseen class whose bill is made hooked; classify and rank
    c = w.classes
    w.tabs.setCurrentWidget(c)
    target = int(ds.labels[pick])
    c.add_from_class(target)
    bill = [n for n in ds.attribute_names if n.startswith("has_bill_shape::")]
    for n in bill:
        c.editor.set_value(n, 0.0)
    hooked = next((n for n in bill if n.endswith("hooked")), bill[0] if bill else None)
    if hooked:
        c.editor.set_value(hooked, 100.0)
        c.list.currentItem().setText(f"{ds.class_names[target].split('.')[-1]}_hooked_bill")
    c.classify()
    wait_until(app, lambda: c.class_table.rowCount() > 0, 600, "the classification")
    c.rank()
    wait_until(app, lambda: c.last_ranking is not None, 7200, "the ranking")
    if hooked:
        c.editor.tree.scrollToItem(c.editor.items[hooked])
    shoot(w, "classes.png")
    # ---- the curves of a finished run, as a resume in the window draws them
    if history:
        from sgma.engine.config import PRESETS, load_toml
        t = w.training
        w.tabs.setCurrentWidget(t)
        cfg = load_toml(Path(history) / "config.toml")
        t.preset_box.setCurrentText(cfg.name if cfg.name in PRESETS else "cpu")
        t.slots = epoch_slots(cfg)
        t.load_history(Path(history))
        t.progress.setValue(1000)
        t.progress_label.setText(f"the curves of {history} (read from its metrics.csv)")
        t.curves.redraw()
        shoot(w, "training.png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--checkpoint", help="the model to audit and evaluate (default: demo model or the short run)")
    p.add_argument("--epochs", default="2,1,2,3", help="warmup,grouping,pretrain_parts,joint epochs of the short run")
    p.add_argument("--steps", type=int, default=8, help="steps per epoch of the short run")
    p.add_argument("--dataset", help="a real dataset kind (e.g. cub): shoot on it with its bundled model "
                   "(or --checkpoint) instead of the synthetic birds; nothing is trained")
    p.add_argument("--root", help="the real dataset's folder")
    p.add_argument("--compare", help="with --dataset: model B of the compare view")
    p.add_argument("--history", help="with --dataset: a run folder whose curves the training panel shows")
    args = p.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from sgma.engine.config import DataConfig

    from . import messages
    from .dialog_open_dataset import OpenDatasetDialog
    from .mainwindow import MainWindow, demo_checkpoint
    from .settings import Settings

    messages.ask = lambda *a, **k: True
    messages.error = lambda parent, title, text, details="": print(f"error: {title}: {text}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sgma-shots-"))
    real = bool(args.dataset)
    dc = DataConfig.from_options(args.dataset, args.root) if real else None
    w = MainWindow(Settings(str(tmp / "settings.ini")), data_config=dc, checkpoint=args.checkpoint,
                   load_demo=real)
    w.resize(1400, 880)
    w.show()
    wait_until(app, lambda: w.engine_ready, 300, "the engine to load")

    def shoot(widget, name):
        settle(app, 0.6)
        path = out / name
        widget.grab().save(str(path))
        print(f"saved {path}")

    if real:
        wait_until(app, lambda: w.state.dataset is not None and w.state.predictor is not None
                   and not w.tasks.busy, 600, "the dataset and its model")
        shoot_real(app, w, shoot, args.compare, args.history)
        dlg = OpenDatasetDialog(w, dc, w.settings.recent_datasets())
        dlg.show()
        shoot(dlg, "open_dataset.png")
        dlg.close()
        w.close()
        return 0

    # ---- training (short run on the synthetic birds)
    t = w.training
    w.tabs.setCurrentWidget(t)
    t.preset_box.setCurrentText("demo")
    for spin, n in zip(t.epoch_spins.values(), [int(x) for x in args.epochs.split(",")]):
        spin.setValue(n)
    t.max_steps.setValue(args.steps)
    t.out_dir.setText(str(tmp / "runs"))
    done = []
    t.runFinished.connect(lambda *a: done.append(a))
    t.start()
    wait_until(app, lambda: bool(done), 3600, "the training run")
    t.curves.redraw()
    shoot(w, "training.png")

    # ---- the model to audit: --checkpoint, the demo model, or the short run's
    ckpt = str(args.checkpoint or demo_checkpoint() or done[0][0])
    wait_until(app, lambda: not w.tasks.busy, 300, "the trained model to load")   # loaded after a run
    if w.state.checkpoint_path != ckpt:
        w.load_model(ckpt)
        wait_until(app, lambda: w.state.checkpoint_path == ckpt and not w.tasks.busy, 300, "the model")

    shoot_evaluation(app, w, shoot, timeout=3600)
    if w.state.dataset.part_names:
        shoot_localisation(w, shoot)

    # ---- part audit of an unseen test image (parts named by the evaluation)
    ds = w.state.dataset
    w.tabs.setCurrentWidget(w.audit)
    w.browser.kind_box.setCurrentText("unseen")
    w.browser.select_index(ds.split.test_unseen[5])
    wait_until(app, lambda: w.audit.prediction is not None and w.audit.index == w.state.current, 120,
               "the prediction")
    w.audit.range_box.setCurrentText("per image")
    shoot(w, "audit.png")
    w.audit.export(str(tmp / "audit.svg"))
    shoot_atlas_and_compare(app, w, shoot, done[0][0] if done[0][0] else None)

    # ---- a user class: an unseen class with another tail colour; classify and rank
    c = w.classes
    w.tabs.setCurrentWidget(c)
    target = ds.split.unseen[0]
    c.template_box.setCurrentIndex(c.template_box.findData(target))
    c.add_from_class(target)
    names = ds.attribute_names
    cls = c.current_class()
    tail = [n for n in names if n.startswith("tail_color::")]
    if tail:
        for n in tail:
            c.editor.set_value(n, 0.0)
        c.editor.set_value(tail[-1], 1.0)
        c.list.currentItem().setText(f"{ds.class_names[target]}_{tail[-1].split('::')[1]}_tail")
    c.classify()
    wait_until(app, lambda: c.class_table.rowCount() > 0, 120, "the classification")
    c.rank()
    wait_until(app, lambda: c.last_ranking is not None, 3600, "the ranking")
    c.editor.tree.scrollToItem(c.editor.items[tail[-1]] if tail else c.editor.tree.topLevelItem(0))
    shoot(w, "classes.png")
    del cls

    # ---- the open-dataset dialog
    dlg = OpenDatasetDialog(w, DataConfig.from_options("cub", "/data/CUB_200_2011"),
                            w.settings.recent_datasets())
    dlg.show()
    shoot(dlg, "open_dataset.png")
    dlg.close()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
