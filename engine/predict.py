"""Single-image inference with a loaded model, no autograd: attention maps, part squares and
boxes, and ranked class scores against the dataset's classes and any user-defined classes.

Class-centre prototypes need features of the training images; a ``Predictor`` built from a
checkpoint uses the prototypes stored in it (``state["prototypes"]``) when present, otherwise the
compatibility scores alone (mode "compatibility"). The combined mode (Eq. 13) uses the beta the
trainer chose on the validation classes (``state["beta"]``), else the configured one.

A Predictor does not change once built: ``with_user_classes`` returns a new one that shares the
model, so a worker thread that holds one never sees its classes change under it."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image

from .checkpoint import inference_config, load_checkpoint, model_from_checkpoint
from .cropping import squares_to_boxes
from .inference import ClassPrototypes
from .loader import image_to_tensor


@dataclass
class Prediction:
    maps: np.ndarray            # (n_parts, h, w) attention maps in [0, 1]
    squares: np.ndarray         # (n_parts, 3) (t_x, t_y, t_s) fractions of the image side
    boxes: np.ndarray           # (n_parts, 4) pixel boxes in the original image
    class_names: list[str]      # every scored class, dataset classes first, then user classes
    scores: np.ndarray          # (K,) score per class under ``mode``
    mode: str
    cct: np.ndarray             # class-centre feature (for ranking)
    far_end_map: Optional[int] = None   # the map whose square is the object's far end (model.far_end_square)

    def top(self, k: int = 5, among: Optional[list[str]] = None) -> list[tuple[str, float]]:
        idx = [i for i, n in enumerate(self.class_names) if among is None or n in among]
        idx.sort(key=lambda i: -self.scores[i])
        return [(self.class_names[i], float(self.scores[i])) for i in idx[:k]]


class Predictor:
    def __init__(self, model, state: dict, device: str | torch.device = "cpu"):
        self.model, self.state, self.device = model.eval(), state, torch.device(device)
        self.class_names = list(state["class_names"])
        self.attribute_names = list(state["attribute_names"])
        self.semantics = torch.as_tensor(state["semantics"], dtype=torch.float32)
        self.train_idx = [self.class_names.index(n) for n in state["train_classes"]]
        self.seen_prototypes = state.get("prototypes")          # (S, D) per training class, optional
        self.inference = inference_config(state)
        self._classes = None if self.seen_prototypes is None else \
            ClassPrototypes(self.semantics[self.train_idx], self.seen_prototypes, self.inference.ridge_lambda)
        # Eq. 13's beta: the one chosen on the validation classes when training stored it
        self.beta = float(state.get("beta", self.inference.beta))
        self.user_names: list[str] = []
        self.user_semantics = torch.zeros(0, self.semantics.shape[1])

    @classmethod
    def from_checkpoint(cls, path, device="cpu") -> "Predictor":
        state = load_checkpoint(path)
        return cls(model_from_checkpoint(state, device), state, device)

    def with_user_classes(self, names: list[str], vectors) -> "Predictor":
        """This predictor with the user-defined classes ``names`` (raw attribute vectors in the
        dataset's attribute order, one row per name; none clears them) instead of its own. They are
        L2-normalised like the dataset's semantics when those rows have unit norm."""
        dim = self.semantics.shape[1]
        v = torch.as_tensor(np.asarray(vectors, dtype=np.float32).reshape(len(names), -1)) if names \
            else torch.zeros(0, dim)
        if v.shape[1] != dim:
            raise ValueError(f"user classes have {v.shape[1]} attributes, the model expects {dim}")
        if names and torch.allclose(self.semantics.norm(dim=1), torch.ones(len(self.semantics)), atol=1e-3):
            v = torch.nn.functional.normalize(v, dim=1)
        if list(names) == self.user_names and torch.equal(v, self.user_semantics):
            return self                  # the same classes: the same predictor (its cached results hold)
        other = copy.copy(self)
        other.user_names, other.user_semantics = list(names), v
        return other

    def all_semantics(self) -> torch.Tensor:
        return torch.cat([self.semantics, self.user_semantics])

    def all_names(self) -> list[str]:
        return self.class_names + self.user_names

    def prototypes(self) -> Optional[torch.Tensor]:
        """Phi_cct of the dataset's and the user's classes (``ClassPrototypes``), None when the
        checkpoint stores no seen prototypes."""
        if self._classes is None:
            return None
        return self._classes.of(self.all_semantics(), seen_rows=self.train_idx).float()

    @torch.no_grad()
    def predict(self, image: Image.Image, mode: Optional[str] = None) -> Prediction:
        cfg = self.model.cfg
        x = image_to_tensor(image, cfg.input_size)[None].to(self.device)
        out = self.model(x, self.all_semantics().to(self.device))
        compat = out.scores.float().cpu()
        if self._classes is None:               # no stored prototypes: the compatibility scores alone
            mode, scores = "compatibility", compat
        else:
            mode = mode or self.inference.mode
            scores = self._classes.scores(mode, compat, out.cct_features.float().cpu(), self.all_semantics(),
                                          self.beta, seen_rows=self.train_idx)
        scores = scores[0].numpy()
        sq = out.squares[0].float().cpu()
        boxes = squares_to_boxes(sq, *image.size).numpy()
        return Prediction(out.maps[0].float().cpu().numpy(), sq.numpy(), boxes, self.all_names(), scores, mode,
                          out.cct_features[0].float().cpu().numpy(), self.model.far_end_map)
