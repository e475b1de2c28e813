"""Feature cache for instant ranking: per-image features of a trained model, computed once.

Everything that scores an image against a class vector ``a`` needs only the image's class-centre
feature phi_cct(x) = [phi_1(x), ..., phi_n(x)] (the concatenated per-branch mapped features):

    compatibility (late fusion, Eq. 9)   s(x, a) = sum_i phi_i(x) . a = phi_cct(x) . [a, ..., a]
    class-centre similarity (Eq. 13)     <phi_cct(x)^, Phi_cct(a)^> with Phi_cct(a) from Eq. 12

so after one pass of the model over a dataset (``engine.extract.extract``) ranking every image for
a new class is a single matrix-vector product. The cache keeps the fused feature
f(x) = sum_i phi_i(x) as well, so that product is (N, A) @ (A,) rather than (N, n A) @ (n A,).

The cache is an ``.npz`` in the user's cache folder (``default_cache_path``: $XDG_CACHE_HOME/sgma,
default ~/.cache/sgma, keyed by checkpoint and dataset; never beside the checkpoint, which may be
in the install folder for the bundled model), written
atomically (temporary file in the same folder, fsync, ``os.replace``). It is keyed by the
checkpoint's fingerprint (sha256 of the file, or for files above ``FULL_HASH_LIMIT`` of its size,
mtime and first and last MiB) and the dataset's ``identity()["sha256"]`` and the image indices;
a cache whose key differs is rebuilt, never used.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .checkpoint import inference_config, model_path
from .data.base import ZSLDataset
from .inference import MODES, ClassPrototypes
from .io import atomic_write_bytes

CACHE_VERSION = 2                   # 2: the compatibility scores and, when asked, the attention maps
FULL_HASH_LIMIT = 64 << 20          # checkpoints up to 64 MiB are hashed in full
OPTIONAL_ARRAYS = ("squares", "seen_prototypes", "seen_semantics", "scores", "maps")
CHUNK = 256                         # images per extraction chunk (progress / cancel granularity)


_BLAS = None


def _one_thread():
    """Context limiting numpy's BLAS to one thread. The cache's products are small (a 10,000 x 312
    matrix-vector product, a 200 x 312 by 312 x 936 product): one thread does them in about a
    millisecond, while two threads on a busy two-core machine wait 10-30 ms for each other."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController    # a scikit-learn dependency
            _BLAS = ThreadpoolController()
        except Exception:  # noqa: BLE001 - without it the products simply use every thread
            _BLAS = False
    return _BLAS.limit(limits=1, user_api="blas") if _BLAS else contextlib.nullcontext()


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with _one_thread():
        return a @ b


def checkpoint_fingerprint(path: str | os.PathLike, full: Optional[bool] = None) -> str:
    """sha256 of the checkpoint file (``full=True``, the default up to ``FULL_HASH_LIMIT``), or a
    quick fingerprint: "quick:" + sha256 of (size, mtime_ns, first MiB, last MiB)."""
    p = model_path(path)
    st = p.stat()
    if full is None:
        full = st.st_size <= FULL_HASH_LIMIT
    h = hashlib.sha256()
    with open(p, "rb") as f:
        if full:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        h.update(f.read(1 << 20))
        f.seek(max(st.st_size - (1 << 20), 0))
        h.update(f.read(1 << 20))
    return "quick:" + h.hexdigest()


def indices_digest(indices: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()


def user_cache_dir() -> Path:
    """The user's cache folder for SGMA: ``$XDG_CACHE_HOME/sgma`` (default ``~/.cache/sgma``;
    on Windows ``%LOCALAPPDATA%/sgma/cache``). Never the install folder, never the run folder."""
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "sgma" / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sgma"


def cache_key(checkpoint: Path, dataset: ZSLDataset, indices: Sequence[int], full_hash: Optional[bool] = None) -> dict:
    """What a cache was built from: the cache version, the checkpoint's fingerprint, the
    dataset's identity and the image indices. A stored cache with another key is not used."""
    return {"version": CACHE_VERSION, "checkpoint": checkpoint_fingerprint(checkpoint, full_hash),
            "dataset": dataset.identity()["sha256"], "indices": indices_digest(list(indices))}


def default_cache_path(checkpoint_path: str | os.PathLike, dataset: ZSLDataset) -> Path:
    """``user_cache_dir()/features/<checkpoint>-<dataset>.npz``: named by a hash of the
    checkpoint's resolved path and the dataset's identity; the checkpoint's content fingerprint
    is in the cache's key, so a checkpoint rewritten in place rebuilds its cache."""
    ck = model_path(checkpoint_path).resolve()
    where = hashlib.sha256(str(ck).encode()).hexdigest()[:16]
    return user_cache_dir() / "features" / f"{ck.stem}-{where}-{dataset.identity()['sha256'][:12]}.npz"


class FeatureCache:
    """Class-centre features of a set of dataset images under one trained model.

    ``cct`` (N, n_branches * A) phi_cct per image; ``fused`` (N, A) the sum over branches;
    ``indices`` (N,) dataset image indices; ``labels`` (N,) their classes; ``squares`` (N, n, 3)
    predicted part squares; ``key`` what the cache was built from (see the module docstring);
    ``scores`` (N, classes) the model's compatibility with the dataset's classes and, when built
    with ``keep_maps``, ``maps`` (N, n, h, w) float16: with them the cache holds everything
    ``extract`` gives, so the evaluator can read it instead of a second pass (``extract_rows``).
    Optional ``seen_prototypes`` (S, n A) and ``seen_semantics`` (S, A) (from the checkpoint)
    enable the class-centre and combined modes of ``score_classes``."""

    def __init__(self, cct: np.ndarray, n_branches: int, indices: np.ndarray, labels: np.ndarray,
                 key: dict, squares: Optional[np.ndarray] = None, unit_norm_semantics: bool = False,
                 seen_prototypes: Optional[np.ndarray] = None, seen_semantics: Optional[np.ndarray] = None,
                 ridge_lambda: float = 1.0, beta: float = 1.0, path: Optional[Path] = None,
                 scores: Optional[np.ndarray] = None, maps: Optional[np.ndarray] = None):
        cct = np.ascontiguousarray(cct, dtype=np.float32)
        if cct.ndim != 2 or n_branches < 1 or cct.shape[1] % n_branches:
            raise ValueError(f"features of shape {cct.shape} are not {n_branches} equal branches")
        self.cct, self.n_branches = cct, int(n_branches)
        self.dim = cct.shape[1] // self.n_branches
        self.fused = np.ascontiguousarray(cct.reshape(len(cct), self.n_branches, self.dim).sum(axis=1))
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.squares = None if squares is None else np.asarray(squares, dtype=np.float32)
        self.key = dict(key)
        self.unit_norm_semantics = bool(unit_norm_semantics)
        self.seen_prototypes = None if seen_prototypes is None else np.asarray(seen_prototypes, np.float32)
        self.seen_semantics = None if seen_semantics is None else np.asarray(seen_semantics, np.float32)
        self.ridge_lambda, self.beta = float(ridge_lambda), float(beta)
        self.path = path
        self.scores = None if scores is None else np.asarray(scores, dtype=np.float32)   # (N, classes), extract's
        self.maps = None if maps is None else np.asarray(maps, dtype=np.float16)         # (N, n, h, w) or None
        self._cct_unit: Optional[np.ndarray] = None
        self._classes = None            # ClassPrototypes over the stored seen prototypes, built on first use

    def __len__(self) -> int:
        return len(self.cct)

    # ------------------------------------------------------------------ building and loading
    @classmethod
    def build(cls, model, dataset: ZSLDataset, indices: Optional[Sequence[int]] = None, batch_size: int = 32,
              device: Optional[str | torch.device] = None, key: Optional[dict] = None,
              state: Optional[dict] = None,
              progress: Optional[Callable[[int, int], None]] = None, keep_maps: bool = False) -> "FeatureCache":
        """One autograd-free pass of ``model`` over ``indices`` (all images by default), in chunks,
        on ``device`` (default: the model's); ``progress(done, total)`` is called between chunks
        and may raise to cancel."""
        from .extract import extract
        if device is None:
            device = next(model.parameters()).device
        indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
        cct, squares, labels, scores, maps = [], [], [], [], []
        for s in range(0, len(indices), CHUNK):
            if progress is not None:
                progress(s, len(indices))
            ex = extract(model, dataset, indices[s:s + CHUNK], batch_size, device, keep_maps=keep_maps)
            cct.append(ex["cct"])
            squares.append(ex["squares"])
            labels.append(ex["labels"])
            scores.append(ex["scores"])
            if keep_maps:
                maps.append(ex["maps"])
        if progress is not None:
            progress(len(indices), len(indices))
        n_br = len(model.branch_names)
        ic = inference_config(state)                   # defaults without a checkpoint
        d = n_br * int(dataset.semantics.shape[1])
        sem = np.asarray(dataset.semantics, dtype=np.float32)
        unit = bool(len(sem)) and bool(np.allclose(np.linalg.norm(sem, axis=1), 1.0, atol=1e-3))
        protos = seen_sem = None
        if state is not None and state.get("prototypes") is not None:
            protos = torch.as_tensor(state["prototypes"]).float().numpy()
            names = list(state["class_names"])
            seen_sem = np.asarray(torch.as_tensor(state["semantics"]).float().numpy())[
                [names.index(n) for n in state["train_classes"]]]
        return cls(np.concatenate(cct) if cct else np.zeros((0, d), np.float32), n_br,
                   np.asarray(indices, dtype=np.int64),
                   np.concatenate(labels) if labels else np.zeros(0, np.int64), key or {},
                   np.concatenate(squares) if squares else None, unit, protos, seen_sem,
                   ic.ridge_lambda, float(state.get("beta", ic.beta)) if state else ic.beta,
                   scores=np.concatenate(scores) if scores else None,
                   maps=np.concatenate(maps) if maps else None)

    @classmethod
    def load_or_build(cls, checkpoint_path: str | os.PathLike, model, dataset: ZSLDataset,
                      indices: Optional[Sequence[int]] = None, batch_size: int = 32,
                      device: Optional[str | torch.device] = None, cache_path: Optional[str | os.PathLike] = None,
                      full_hash: Optional[bool] = None, progress: Optional[Callable[[int, int], None]] = None,
                      save: bool = True, keep_maps: bool = False) -> "FeatureCache":
        """The cache of (checkpoint, dataset, indices): read from ``cache_path`` (default
        ``default_cache_path``) when its key matches, otherwise built with ``model`` (``None``:
        rebuilt from the checkpoint on ``device``, default CPU) and saved atomically. A cache
        that cannot be written (read-only run folder) is still returned. ``keep_maps``: the
        attention maps too (a stored cache without them is rebuilt)."""
        ck = model_path(checkpoint_path)
        indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
        key = cache_key(ck, dataset, indices, full_hash)
        path = Path(cache_path) if cache_path is not None else default_cache_path(ck, dataset)
        cached = cls._load_valid(path, key, keep_maps)
        if cached is not None:
            return cached
        from .checkpoint import load_checkpoint
        state = load_checkpoint(ck)
        if model is None:
            from .checkpoint import model_from_checkpoint
            model = model_from_checkpoint(state, device or "cpu")
        cache = cls.build(model, dataset, indices, batch_size, device, key, state, progress, keep_maps)
        if save:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                cache.save(path)
            except OSError:
                pass        # a read-only run folder: the cache still works in memory
        return cache

    @classmethod
    def stored(cls, checkpoint_path: str | os.PathLike, dataset: ZSLDataset,
               keep_maps: bool = False) -> Optional["FeatureCache"]:
        """The cache of (checkpoint, every image of the dataset) if one is already stored in the
        default place and still valid (with maps when asked), else None; never builds one."""
        ck = model_path(checkpoint_path)
        return cls._load_valid(default_cache_path(ck, dataset), cache_key(ck, dataset, range(len(dataset))), keep_maps)

    @classmethod
    def _load_valid(cls, path: Path, key: dict, keep_maps: bool) -> Optional["FeatureCache"]:
        """The cache stored at ``path`` if it was built from ``key`` (and holds maps when asked)."""
        cached = cls.load(path)
        if cached is None or cached.key != key or (keep_maps and cached.maps is None):
            return None
        return cached

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        meta = {"key": self.key, "n_branches": self.n_branches, "unit_norm_semantics": self.unit_norm_semantics,
                "ridge_lambda": self.ridge_lambda, "beta": self.beta}
        arrays = {"cct": self.cct, "indices": self.indices, "labels": self.labels,
                  "meta": np.array(json.dumps(meta))}
        for name in OPTIONAL_ARRAYS:
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Optional["FeatureCache"]:
        """The cache stored at ``path``, or None when it is absent, unreadable or of another version."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("key", {}).get("version") != CACHE_VERSION:
                    return None
                opt = {n: (z[n] if n in z.files else None) for n in OPTIONAL_ARRAYS}
                return cls(z["cct"], meta["n_branches"], z["indices"], z["labels"], meta["key"],
                           opt["squares"], meta.get("unit_norm_semantics", False), opt["seen_prototypes"],
                           opt["seen_semantics"], meta.get("ridge_lambda", 1.0), meta.get("beta", 1.0), path,
                           opt["scores"], opt["maps"])
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, EOFError):
            return None

    # ------------------------------------------------------------------ scoring
    def prepare(self, class_vectors: np.ndarray, normalize: Optional[bool] = None) -> np.ndarray:
        """(K, A) float32 class vectors; L2-normalised when ``normalize`` (default: when the
        dataset's semantic rows have unit norm, as ``Predictor.with_user_classes`` does)."""
        v = np.asarray(class_vectors, dtype=np.float32).reshape(-1, self.dim)
        if self.unit_norm_semantics if normalize is None else normalize:
            n = np.linalg.norm(v, axis=1, keepdims=True)
            v = v / np.where(n > 0, n, 1.0)
        return v

    def compatibility(self, class_vectors: np.ndarray, rows=None, normalize: Optional[bool] = None) -> np.ndarray:
        """(N, K) fused compatibility of cached images (or ``rows`` of the cache) with class vectors."""
        f = self.fused if rows is None else self.fused[rows]
        return _mm(f, self.prepare(class_vectors, normalize).T)

    def rank(self, semantic_vector: np.ndarray, top: Optional[int] = None, normalize: Optional[bool] = None,
             return_scores: bool = False):
        """Dataset image indices sorted best match first (compatibility, one matrix product);
        ``top`` keeps the best ``top`` only (argpartition, then a sort of those)."""
        s = _mm(self.fused, self.prepare(semantic_vector, normalize)[0])
        if top is not None and top < len(s):
            part = np.argpartition(-s, top)[:top]
            order = part[np.argsort(-s[part], kind="stable")]
        else:
            order = np.argsort(-s, kind="stable")
        return (self.indices[order], s[order]) if return_scores else self.indices[order]

    def prototypes(self, class_vectors: np.ndarray, normalize: Optional[bool] = None) -> np.ndarray:
        """Class-centre prototypes of arbitrary classes (Eq. 12 ridge regression on the seen
        prototypes stored in the checkpoint); a vector equal to a seen class gets that class's own."""
        if self.seen_prototypes is None:
            raise ValueError("this cache has no seen-class prototypes (the checkpoint stores none): "
                             "use mode='compatibility'")
        if self._classes is None:
            self._classes = ClassPrototypes(self.seen_semantics, self.seen_prototypes, self.ridge_lambda)
        return self._classes.of(self.prepare(class_vectors, normalize)).float().numpy()

    def score_classes(self, class_vectors: np.ndarray, rows=None, mode: str = "compatibility",
                      normalize: Optional[bool] = None, beta: Optional[float] = None) -> np.ndarray:
        """(N, K) scores of cached images (or ``rows``) against class vectors under ``mode``
        ("compatibility", "center" or "combined", as ``engine.inference.mode_scores``)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        compat = self.compatibility(class_vectors, rows, normalize)
        if mode == "compatibility":
            return compat
        if self._cct_unit is None:
            n = np.linalg.norm(self.cct, axis=1, keepdims=True)
            self._cct_unit = self.cct / np.maximum(n, 1e-12)
        f = self._cct_unit if rows is None else self._cct_unit[rows]
        p = self.prototypes(class_vectors, normalize)
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        csim = _mm(f, p.T)
        if mode == "center":
            return csim
        return compat + (self.beta if beta is None else beta) * csim

    def extract_rows(self, image_indices: Sequence[int], keep_maps: bool = False) -> dict[str, np.ndarray]:
        """What ``engine.extract.extract`` returns for these dataset images, read from the cache
        (KeyError for an image not in it; ValueError when it lacks the scores, or the maps asked for)."""
        if self.scores is None or self.squares is None or (keep_maps and self.maps is None):
            raise ValueError("this feature cache lacks the scores, squares or maps an evaluation reads")
        rows = self.rows_of(image_indices)
        out = {"scores": self.scores[rows], "cct": self.cct[rows], "squares": self.squares[rows],
               "labels": self.labels[rows], "indices": self.indices[rows]}
        if keep_maps:
            out["maps"] = self.maps[rows]
        return out

    def rows_of(self, image_indices: Sequence[int]) -> np.ndarray:
        """Cache rows of dataset image indices (KeyError for an image not in the cache)."""
        pos = {int(i): r for r, i in enumerate(self.indices)}
        return np.asarray([pos[int(i)] for i in image_indices], dtype=np.int64)
