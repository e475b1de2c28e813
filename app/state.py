"""The app's model (in MNELAB's sense): the open dataset, the loaded checkpoint, the last
evaluation, the selected image and the grid's explicit selection. Panels read it and listen to
its signals; nothing here draws."""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QObject, Signal

SPLITS = ("trainval", "test_seen", "test_unseen")


class AppState(QObject):
    datasetChanged = Signal()
    modelChanged = Signal()
    evaluationChanged = Signal()
    currentChanged = Signal(int)          # dataset image index, -1 for none
    selectionChanged = Signal()           # the grid's explicit selection (confusion cell, ranking)
    status = Signal(str)

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.dataset = None
        self.data_config = None                            # the DataConfig the dataset came from
        self.predictor = None
        self.checkpoint_path: Optional[str] = None
        self.evaluation = None
        self.current = -1
        self.selection: Optional[np.ndarray] = None       # dataset indices, in display order
        self.selection_label = ""
        self.features = None                               # see ranking.build_cache, built on demand
        self._ious = None                                  # (evaluation, dataset, image_ious()) cached

    # ------------------------------------------------------------------ setters
    def set_dataset(self, dataset, data_config) -> None:
        """``data_config``: the engine's ``DataConfig`` that ``dataset`` was opened from."""
        self.dataset, self.data_config = dataset, data_config
        self.evaluation, self.features, self.current = None, None, -1
        self.selection, self.selection_label = None, ""
        self.datasetChanged.emit()
        self.status.emit(f"dataset {dataset.name}: {len(dataset)} images, {len(dataset.class_names)} classes, "
                         f"{len(dataset.attribute_names)} attributes")

    def set_model(self, predictor, path: Optional[str]) -> None:
        self.predictor, self.checkpoint_path = predictor, path
        self.evaluation, self.features = None, None
        self.modelChanged.emit()
        self.evaluationChanged.emit()

    def set_user_classes(self, names: list[str], vectors) -> None:
        """Score the user's classes too: the model's predictor is replaced by one that also holds
        them (``Predictor.with_user_classes``; a predictor never changes, so a prediction running
        in a worker keeps the classes it started with). The evaluation and feature cache stay."""
        if self.predictor is not None:
            self.predictor = self.predictor.with_user_classes(names, vectors)

    def set_evaluation(self, evaluation) -> None:
        self.evaluation = evaluation
        self.evaluationChanged.emit()

    def set_current(self, index: int) -> None:
        if index != self.current:
            self.current = index
            self.currentChanged.emit(index)

    def set_selection(self, indices, label: str) -> None:
        self.selection = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.selection_label = label if indices is not None else ""
        self.selectionChanged.emit()

    # ------------------------------------------------------------------ queries
    def model_fits_dataset(self) -> bool:
        return (self.predictor is not None and self.dataset is not None
                and list(self.predictor.attribute_names) == list(self.dataset.attribute_names))

    def class_kind(self, c: int) -> str:
        sp = self.dataset.split
        if c in sp.unseen:
            return "unseen"
        if c in sp.val_classes:
            return "seen (validation)"
        return "seen" if c in sp.seen else "unused"

    def split_of(self) -> np.ndarray:
        """Per image: 0 trainval, 1 test_seen, 2 test_unseen, -1 none."""
        out = np.full(len(self.dataset), -1, dtype=np.int8)
        for k, name in enumerate(SPLITS):
            idx = getattr(self.dataset.split, name)
            if len(idx):
                out[np.asarray(idx)] = k
        return out

    def _predicted(self) -> Optional[np.ndarray]:
        ev = self.evaluation
        if ev is None or self.dataset is None or ev.default_predictions() is None:
            return None
        return ev.predicted_per_image(len(self.dataset), self.dataset.split.test_unseen)

    def correctness(self) -> Optional[np.ndarray]:
        """Per image after an evaluation: 1 correct, 0 incorrect, -1 not evaluated
        (``Evaluation.predicted_per_image``: ZSL for unseen test images, GZSL for seen ones)."""
        pred = self._predicted()
        if pred is None:
            return None
        return np.where(pred < 0, -1, pred == self.dataset.labels).astype(np.int8)

    def image_ious(self) -> dict[str, np.ndarray]:
        """Per dataset image after an evaluation with part ground truth: part -> IoU of the square
        of the map the evaluation assigned to that part (``Evaluation.part_iou_per_image``), NaN
        for images without that box or not evaluated."""
        ev = self.evaluation
        if ev is None or self.dataset is None:
            return {}
        if self._ious is None or self._ious[0] is not ev or self._ious[1] is not self.dataset:
            self._ious = (ev, self.dataset, ev.part_iou_per_image(len(self.dataset)))
        return self._ious[2]

    def predicted_class(self, index: int) -> Optional[int]:
        """The evaluation's prediction for one image (ZSL for unseen, GZSL for seen), if any."""
        pred = self._predicted()
        return None if pred is None or pred[index] < 0 else int(pred[index])

    def part_assignment(self) -> dict[int, str]:
        """Attention-map index -> part name ("head", "tail") from the last evaluation, if known."""
        return self.evaluation.map_assignment() if self.evaluation is not None else {}

    def confusion_indices(self, row: int, col: int) -> np.ndarray:
        """Test images of confusion-matrix cell (true class row, predicted class col)."""
        ev = self.evaluation
        names = ev.summary["confusion"]["classes"]
        pos = {n: i for i, n in enumerate(self.dataset.class_names)}
        return ev.zsl_cell(pos[names[row]], pos[names[col]], self.dataset.labels)
