"""Evaluation from the window (tables, bars, confusion matrix that filters the grid, CSV) and
user-defined classes (edit, classify, rank the dataset, save and reload)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app_fixtures import answers, app_settings, make_window, small_ds, trained_run  # noqa: F401


@pytest.fixture
def win(qtbot, make_window, small_ds, trained_run):
    w = make_window(dataset=small_ds, checkpoint=str(trained_run / "best.pt"))
    assert w.state.predictor is not None
    return w


def evaluate_in(qtbot, w):
    w.tabs.setCurrentWidget(w.evaluation)
    qtbot.mouseClick(w.evaluation.run_button, Qt.MouseButton.LeftButton)
    assert not w.evaluation.run_button.isEnabled()           # one evaluation at a time
    qtbot.waitUntil(lambda: w.state.evaluation is not None, timeout=120000)
    return w.state.evaluation


def test_evaluation_tables_bars_confusion_and_csv(qtbot, win, small_ds, tmp_path, answers):
    w = win
    ev = evaluate_in(qtbot, w)
    e = w.evaluation
    s = ev.summary
    # ZSL / GZSL per inference mode
    assert e.zsl_table.rowCount() == 3
    modes = [e.zsl_table.item(r, 0).text().split()[0] for r in range(3)]
    assert modes == ["compatibility", "center", "combined"]
    for r, mode in enumerate(modes):
        assert float(e.zsl_table.item(r, 1).text()) == pytest.approx(100 * s["modes"][mode]["zsl"]["mca"], abs=0.051)
        assert float(e.zsl_table.item(r, 4).text()) == pytest.approx(100 * s["modes"][mode]["gzsl"]["h"], abs=0.051)
    # part precision against the random baseline
    assert e.parts_table.rowCount() == 2
    cols = [e.parts_table.horizontalHeaderItem(c).text() for c in range(e.parts_table.columnCount())]
    assert cols == ["Part", "Map", "Found", "Random", "Pointing", "Ceiling", "IoU", "Images"]
    head = dict(zip(cols, (e.parts_table.item(0, c).text() for c in range(len(cols)))))
    assert head["Part"] == "head" and head["Map"].startswith("map")
    parts = s["parts"]
    for col, key in (("Found", "head"), ("Random", "random"), ("Pointing", "pointing"), ("Ceiling", "ceiling")):
        want = parts["head"] if key == "head" else parts[key]["head"]
        assert float(head[col]) == pytest.approx(100 * want, abs=0.051), col
    assert float(head["IoU"]) == pytest.approx(parts["mean_iou"]["head"], abs=5e-4)
    assert int(head["Images"]) == parts["n_images"]["head"]
    # every column in view: the table is as wide as its contents, nothing scrolled or cut
    t = e.parts_table
    assert t.minimumWidth() >= sum(t.sizeHintForColumn(c) for c in range(t.columnCount()))
    w.tabs.setCurrentWidget(e)
    qtbot.waitUntil(lambda: t.horizontalScrollBar().maximum() == 0, timeout=5000)
    # per-class accuracy bars: one per unseen class
    heights = e.bar_item.opts["width"]                      # horizontal bars: the length is the accuracy
    assert len(heights) == len(small_ds.split.unseen)
    assert list(heights) == pytest.approx(list(s["per_class"].values()))
    from sgma.app.confusion import short
    ticks = e.bars.getAxis("left")._tickLevels[0]             # each bar labelled with its class name
    assert [t[1] for t in ticks] == [short(n, 28) for n in s["per_class"]]
    # the confusion matrix; a click shows that cell's images in the grid
    cm = e.confusion.model_
    n_unseen = len(small_ds.split.unseen)
    assert cm.rowCount() == cm.columnCount() == n_unseen
    assert cm.matrix.sum() == len(small_ds.split.test_unseen)
    r, c = np.unravel_index(np.argmax(cm.matrix), cm.matrix.shape)
    e.confusion.clicked.emit(cm.index(int(r), int(c)))
    rows = w.browser.model.rows
    assert len(rows) == cm.matrix[r, c] > 0
    true_name, pred_name = cm.classes[r], cm.classes[c]
    assert all(small_ds.class_names[small_ds.items[i].label] == true_name for i in rows)
    pred = ev.predictions[s["inference"]]
    for i in rows:
        k = list(pred["indices"]).index(i)
        assert small_ds.class_names[pred["zsl"][k]] == pred_name
    assert "true" in w.browser.selection_label.text() and w.browser.clear_selection.isVisible()
    qtbot.mouseClick(w.browser.clear_selection, Qt.MouseButton.LeftButton)
    assert w.browser.model.rowCount() == len(small_ds)
    # correct / incorrect filter
    b = w.browser
    assert b.result_box.isEnabled()
    b.result_box.setCurrentText("correct")
    n_ok = b.model.rowCount()
    b.result_box.setCurrentText("incorrect")
    n_bad = b.model.rowCount()
    assert n_ok + n_bad == len(small_ds.split.test_seen) + len(small_ds.split.test_unseen)
    b.kind_box.setCurrentText("unseen")
    assert b.model.rowCount() == cm.matrix.sum() - np.trace(cm.matrix)
    # the info panel says which prediction it shows (the audit lists all classes; see its message)
    b.select_row(0)
    assert f"evaluation (ZSL, among unseen classes, {s['inference']} scores)" in b.info.text()
    # CSV export
    path = e.export_csv(str(tmp_path / "metrics.csv"))
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["section", "key", "metric", "value"]
    got = {(a, b_, m): float(v) for a, b_, m, v in rows[1:]}
    assert got[("zsl", "combined", "mca")] == pytest.approx(s["modes"]["combined"]["zsl"]["mca"], rel=1e-5)
    assert ("parts", "tail", "random_precision") in got
    assert got[("parts", "head", "pointing")] == pytest.approx(s["parts"]["pointing"]["head"], rel=1e-5)
    assert got[("parts", "tail", "ceiling")] == pytest.approx(s["parts"]["ceiling"]["tail"], rel=1e-5)
    assert sum(1 for k in got if k[0] == "per_class") == n_unseen
    # the audit now names the maps after the parts they were matched to
    qtbot.waitUntil(lambda: w.audit.prediction is not None, timeout=20000)
    w.audit.redraw()
    texts = [lab.childItems()[0].text() for lab in w.audit.label_items]
    assigned = s["parts"]["assignment"]
    assert any(f"{assigned['head']} · head" in t for t in texts)
    assert any(f"{assigned['tail']} · tail" in t for t in texts)
    assert not answers.of("error")


def test_user_class_classify_rank_save_reload(qtbot, win, small_ds, tmp_path, answers):
    w = win
    p = w.classes
    w.tabs.setCurrentWidget(p)
    # a class made from scratch in the attribute editor
    qtbot.mouseClick(p.new_button, Qt.MouseButton.LeftButton)
    assert p.list.count() == 1 and p.current_class().name == "new_class"
    p.editor.set_value("head_color::blue", 1.0)
    p.editor.set_value("crest::yes", 1.0)
    assert p.current_class().values == {"head_color::blue": 1.0, "crest::yes": 1.0}
    assert p.editor.group_items["head_color"].text(1) == "1 set"
    # a copy of an unseen class: it must score exactly like that class
    target = small_ds.split.unseen[0]
    p.template_box.setCurrentIndex(p.template_box.findData(target))
    qtbot.mouseClick(p.copy_button, Qt.MouseButton.LeftButton)
    copy = p.current_class()
    assert copy.name == f"my_{small_ds.class_names[target]}"
    # classify the selected image against seen, unseen and user classes
    w.browser.select_index(small_ds.split.test_unseen[0])
    qtbot.mouseClick(p.classify_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: p.class_table.rowCount() == len(small_ds.class_names) + 2, timeout=20000)
    table = {p.class_table.item(r, 1).text(): (p.class_table.item(r, 2).text(), float(p.class_table.item(r, 3).text()))
             for r in range(p.class_table.rowCount())}
    assert table[copy.name][0] == "user" and table["new_class"][0] == "user"
    assert table[copy.name][1] == pytest.approx(table[small_ds.class_names[target]][1], abs=2e-3)
    scores = [float(p.class_table.item(r, 3).text()) for r in range(p.class_table.rowCount())]
    assert scores == sorted(scores, reverse=True)
    # the audit's top classes include user classes too
    qtbot.waitUntil(lambda: w.audit.prediction is not None and copy.name in w.audit.prediction.class_names,
                    timeout=20000)
    # rank the whole dataset by the copied class: the compatibility with its twin, best first
    qtbot.mouseClick(p.rank_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: p.last_ranking is not None, timeout=120000)
    name, order, ranked = p.last_ranking
    assert name == copy.name and sorted(order.tolist()) == list(range(len(small_ds)))
    from sgma.engine.extract import extract
    ex = extract(w.state.predictor.model, small_ds, list(range(len(small_ds))))
    twin = ex["scores"][:, target]
    np.testing.assert_allclose(ranked, twin[order], rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(ranked) <= 1e-6)                       # best matches first
    assert p.rank_table.rowCount() == min(200, len(small_ds))
    assert w.browser.model.rows.tolist() == order.tolist()        # the grid shows the ranking
    assert "ranked by" in w.browser.selection_label.text()
    # a second ranking reuses the cached features: one matrix product
    p.list.setCurrentRow(0)
    cache = w.state.features
    qtbot.mouseClick(p.rank_button, Qt.MouseButton.LeftButton)
    assert p._feature_task is None                                 # no extraction started: ranked at once
    assert w.state.features is cache and p.last_ranking[0] == "new_class"
    # double-clicking a ranked image selects it
    i = int(p.rank_table.item(3, 1).data(Qt.ItemDataRole.UserRole))
    p.rank_table.cellDoubleClicked.emit(3, 1)
    assert w.state.current == i
    # save, clear, reload
    path = str(tmp_path / "mine.toml")
    assert p.save(path)
    before = [(c.name, dict(c.values)) for c in p.classes]
    p.list.setCurrentRow(0)
    qtbot.mouseClick(p.delete_button, Qt.MouseButton.LeftButton)
    assert len(p.classes) == 1
    assert p.load(path)
    assert [(c.name, c.values) for c in p.classes] == before
    from sgma.engine.classes import load_classes
    assert [c.name for c in load_classes(path, small_ds.attribute_names)] == [n for n, _ in before]
    # a bad file is refused with a message naming it
    bad = tmp_path / "bad.csv"
    bad.write_text("name,wings::two\nx,1\n")
    assert not p.load(str(bad))
    assert str(bad) in answers.of("error")[-1][2] and "unknown attribute" in answers.of("error")[-1][2]
    assert len(p.classes) == 2                                    # the loaded classes are kept


def test_paste_and_rename(qtbot, win, small_ds, answers):
    p = win.classes
    vec = ",".join("1" if j in (0, 5) else "0" for j in range(len(small_ds.attribute_names)))
    assert p.paste(vec)                          # no class yet: a "pasted" class is made
    c = p.current_class()
    assert c.name == "pasted"
    assert c.values == {small_ds.attribute_names[0]: 1.0, small_ds.attribute_names[5]: 1.0}
    assert p.editor.values()[small_ds.attribute_names[5]] == 1.0
    assert not p.paste("1, 2, 3")                # wrong length: refused, named
    assert "has 3 values" in answers.of("error")[-1][2]
    p.add_class("other")
    item = p.list.item(1)
    item.setText("pasted")                       # taken: refused
    assert p.classes[1].name == "other" and p.list.item(1).text() == "other"
    item.setText("renamed")
    assert p.classes[1].name == "renamed"
    p.editor.search.setText("tail")
    visible = [n for n, it in p.editor.items.items() if not it.isHidden()]
    assert visible and all("tail" in n for n in visible)


def test_evaluation_reads_the_ranking_feature_cache(qtbot, win, small_ds, monkeypatch):
    """Ranking extracts every image once, with its maps; the evaluation that follows reads that
    cache (no extraction of its own) and gives the numbers of a fresh evaluation."""
    from sgma.app import ranking
    from sgma.engine import evaluate as evaluate_mod
    w = win
    model = w.state.predictor.model
    cache = ranking.build_cache(w.state.checkpoint_path, model, small_ds)
    assert cache.maps is not None and len(cache) == len(small_ds)
    w.state.features = cache
    fresh = evaluate_mod.evaluate(model, w.state.predictor.state, small_ds)

    def no_second_pass(*a, **k):
        raise AssertionError("the evaluation extracted images although the ranking cache holds them")
    monkeypatch.setattr(evaluate_mod, "extract", no_second_pass)
    w.evaluation.run()
    qtbot.waitUntil(lambda: w.evaluation.task is None, timeout=120000)
    assert w.state.evaluation is not None
    assert w.state.evaluation.summary["zsl"] == fresh.summary["zsl"]
    assert w.state.evaluation.summary["parts"] == fresh.summary["parts"]


def test_evaluation_of_a_replaced_model_is_discarded(qtbot, win, trained_run):
    from sgma.engine.predict import Predictor
    w = win
    other = Predictor.from_checkpoint(str(trained_run / "best.pt"))
    w.evaluation.run()
    w.state.set_model(other, str(trained_run / "best.pt"))     # a new model while it runs
    qtbot.waitUntil(lambda: w.evaluation.task is None, timeout=120000)
    assert w.state.evaluation is None
    assert "discarded" in w.evaluation.status.text() and w.evaluation.run_button.isEnabled()


def test_feature_cache_of_the_bundled_model_stays_out_of_the_package(tmp_path, small_ds, monkeypatch):
    from pathlib import Path
    from sgma import resources
    from sgma.app.ranking import cache_path_for
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    inside = Path(resources.__file__).parent / "demo.pt"
    if not inside.is_file():
        pytest.skip("resources/demo.pt is not bundled")
    p = Path(cache_path_for(str(inside), small_ds))
    assert p.parent == tmp_path / "xdg" / "sgma" / "features" and p.suffix == ".npz"
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"x")
    q = Path(cache_path_for(str(run / "best.pt"), small_ds))
    assert q.parent == p.parent and q != p                  # keyed by checkpoint
    from sgma.engine.data.synthetic import make_synthetic
    assert Path(cache_path_for(str(run / "best.pt"), make_synthetic(seed=3, image_size=64))) != q   # and dataset


def test_part_measures_of_an_older_evaluation_show_a_dash():
    """An evaluation file written before pointing and ceiling existed: those cells and CSV rows are
    left out, the others kept."""
    from sgma.app.evaluation_panel import PART_MEASURES, part_cells, part_measure, summary_rows
    parts = {"head": 0.2, "random": {"head": 0.01}, "mean_iou": {"head": 0.3}, "n_images": {"head": 5}}
    assert [part_measure(parts, m.key, "head") for m in PART_MEASURES] == [0.2, 0.01, None, None, 0.3]
    assert part_cells(parts, "head") == ["20.0", "1.0", "—", "—", "0.300"]
    rows = summary_rows({"parts": parts})
    assert [r[2] for r in rows] == ["precision", "random_precision", "mean_iou"]


def test_evaluation_tab_fits_a_narrow_window(qtbot, win):
    """The part table is as wide as its columns, but that width does not add to the tab's minimum:
    in a narrow window the tables scroll in their pane, and the bar chart and the confusion matrix
    stay in view (with the 960-image synthetic set, the tab once pushed the chart out of a 1400 px
    window)."""
    w = win
    evaluate_in(qtbot, w)
    e = w.evaluation
    t = e.parts_table
    chart_min = max(e.bars.minimumWidth(), e.bars.minimumSizeHint().width())
    assert e.minimumSizeHint().width() < t.minimumWidth() + chart_min
    # in a wide window the tables get their whole width, and the chart the rest
    w.resize(1600, 900)
    w.show()
    qtbot.waitExposed(w)
    e.show_evaluation()
    qtbot.wait(50)
    assert e.tables_scroll.horizontalScrollBar().maximum() == 0
    assert e.bars.width() >= 300
    width = max(1000, w.minimumSizeHint().width())
    w.resize(width, 800)
    w.splitter.setSizes([width - 560, 560])     # the tab as narrow as the user may drag it
    qtbot.wait(50)
    assert w.width() == width
    for view in (e.bars, e.confusion):
        right = view.mapTo(w, view.rect().topRight()).x()
        assert view.width() > 200 and right <= w.width()
    # the chart draws inside its widget: its axis of class names and its title are not cut
    assert e.bars.getPlotItem().size().width() <= e.bars.viewport().width() + 0.5
    # the whole part table is still there, scrolled within its pane rather than cut
    assert t.width() >= sum(t.sizeHintForColumn(c) for c in range(t.columnCount()))
    assert e.tables_scroll.horizontalScrollBar().maximum() > 0


def test_calibrated_gzsl_gets_its_own_row_beside_the_headline(qtbot, make_window, small_ds):
    from sgma.engine.evaluate import Evaluation
    w = make_window(dataset=small_ds)
    w.resize(1400, 880)
    w.show()
    qtbot.waitExposed(w)
    w.tabs.setCurrentWidget(w.evaluation)
    qtbot.wait(100)                                 # the tab laid out before the result arrives
    g = {"unseen": 0.1, "seen": 0.8, "h": 0.178}
    cal = {"unseen": 0.4, "seen": 0.6, "h": 0.48, "gamma": 0.25, "gamma_from": "validation"}
    modes = {"compatibility": {"zsl": {"mca": 0.5}, "gzsl": g},
             "center": {"zsl": {"mca": 0.6}, "gzsl": g},
             "combined": {"zsl": {"mca": 0.55}, "gzsl": g, "gzsl_calibrated": cal}}
    summary = {"zsl": modes["combined"]["zsl"], "gzsl": g, "gzsl_calibrated": cal, "modes": modes,
               "inference": "combined", "per_class": {f"0{i}.Yellow_bellied_Flycatcher": 0.5 for i in range(10, 20)},
               "confusion": {"classes": [], "matrix": []}, "dataset": small_ds.name, "split": "ps", "n_images": 10}
    w.state.set_evaluation(Evaluation(summary))
    t = w.evaluation.zsl_table
    rows = [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]
    assert [r[0] for r in rows] == ["compatibility", "center", "combined (default)",
                                    "combined, calibrated (γ 0.25, chosen on validation)"]
    assert rows[3][1:] == ["—", "40.0", "60.0", "48.0"]             # GZSL only: ZSL is not changed
    assert "calibrated 48.0 %" in w.evaluation.status.text() and "GZSL H 17.8 %" in w.evaluation.status.text()
    # the longer row widens the table, and the splitter gives the tables that width at once (it
    # read the tables' cached minimum before, and left them 211 px, scrolled)
    e = w.evaluation
    qtbot.wait(100)
    tables, chart = e.split.sizes()
    assert tables >= e.zsl_table.minimumWidth() > 0 and chart >= e._chart_min_width()
    assert e.tables_scroll.horizontalScrollBar().maximum() == 0
