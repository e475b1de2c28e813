"""The dataset contract every loader fulfils (synthetic, CUB, AwA2, FLO, user folders).

A ``ZSLDataset`` is a list of images with one class label each, a class-by-attribute semantic
matrix with named rows and columns, optional ground-truth part boxes per image, and a ``Split``
that says which classes are seen, unseen and held out for validation.

Conventions (used by the model, the evaluator and the GUI alike):
- boxes are ``(x0, y0, x1, y1)`` in pixels of the *original* image, floats, x1/y1 exclusive;
- ``part_boxes[i]`` maps a part name (``"head"``, ``"tail"``) to a box, or is empty;
- class indices index ``class_names`` and the rows of ``semantics``;
- image indices index ``items``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import SGMAError

Box = tuple[float, float, float, float]
FLOAT32_MAX = float(np.finfo(np.float32).max)   # larger numbers would become inf in the model


# what PIL raises for an image file it cannot decode (SyntaxError: some malformed PNG/GIF chunks);
# every reader of image files catches these and names the file
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DatasetError(SGMAError, ValueError):
    """A dataset file is missing or malformed. The message names the file, line or field."""


@dataclass
class ImageItem:
    label: int
    path: Optional[str] = None                      # on-disk image, read with PIL
    render: Optional[Callable[[], Image.Image]] = None  # procedural image (synthetic data)
    part_boxes: dict[str, Box] = field(default_factory=dict)
    image_id: str = ""                              # the dataset's own id (CUB image id, file name)


@dataclass
class Split:
    """Class and image partitions. Image lists hold indices into ``ZSLDataset.items``.

    ``seen``/``unseen`` are the zero-shot classes (xlsa17 trainval/test classes).
    ``train_classes``/``val_classes`` are a validation fold *inside* the seen classes, used for
    model selection; unseen test classes are never used for tuning.
    """
    name: str                       # "ps", "ss", "fold1", "synthetic", ...
    seen: list[int]
    unseen: list[int]
    trainval: list[int]             # training images (seen classes)
    test_seen: list[int]            # held-out images of seen classes (GZSL A_S)
    test_unseen: list[int]          # images of unseen classes
    train_classes: list[int] = field(default_factory=list)
    val_classes: list[int] = field(default_factory=list)

    def fold_train_images(self, labels: Sequence[int]) -> list[int]:
        keep = set(self.train_classes)
        return [i for i in self.trainval if labels[i] in keep]

    def fold_val_images(self, labels: Sequence[int]) -> list[int]:
        keep = set(self.val_classes)
        return [i for i in self.trainval if labels[i] in keep]


@dataclass
class ZSLDataset:
    name: str                       # "synthetic", "cub", "awa2", "flo", "folder"
    root: Optional[str]
    class_names: list[str]
    attribute_names: list[str]
    semantics: np.ndarray           # (n_classes, n_attributes) float32
    items: list[ImageItem]
    split: Split
    part_names: list[str] = field(default_factory=list)  # parts with ground truth, e.g. ["head", "tail"]
    attribute_groups: dict[str, list[int]] = field(default_factory=dict)  # e.g. "has_bill_shape" -> columns

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> np.ndarray:
        return np.array([it.label for it in self.items], dtype=np.int64)

    def load_image(self, index: int) -> Image.Image:
        """The image as 8-bit RGB, whatever its mode on disk."""
        item = self.items[index]
        if item.render is not None:
            return item.render().convert("RGB")
        if item.path is None:
            raise DatasetError(f"{self.name}: image {index} has neither a path nor a renderer")
        return read_image(item.path)

    def identity(self) -> dict:
        """What identifies this dataset in a run folder or a feature cache."""
        h = hashlib.sha256()
        h.update("\n".join(self.class_names).encode())
        h.update("\n".join(self.attribute_names).encode())
        h.update(np.ascontiguousarray(self.semantics, dtype=np.float32).tobytes())
        for it in self.items:
            h.update(f"{it.image_id}|{it.path}|{it.label}\n".encode())
        return {"name": self.name, "root": self.root, "n_images": len(self.items),
                "n_classes": len(self.class_names), "n_attributes": len(self.attribute_names),
                "split": self.split.name, "sha256": h.hexdigest()}


LINK_STAND_IN_MAX_BYTES = 1024


def link_stand_in_target(path: str | os.PathLike) -> Optional[str]:
    """Where a *symbolic link stand-in* points, or None when ``path`` is not one.

    A copy that cannot make symbolic links (``git`` with ``core.symlinks = false``, some archive
    tools and file shares) writes each link as a small text file holding the link's target, e.g.
    ``../../../../cub50/CUB_200_2011/images/001.Black_footed_Albatross/x.jpg``. Such a file is
    taken to be a link when it is at most 1 KiB, is one line of UTF-8 text without NUL, and names
    a file that exists (relative targets resolve from the stand-in's folder, as a link's do).
    Anything else (an unreadable or truncated image included) is not a stand-in."""
    text = _one_line_text(path)
    if text is None:
        return None
    target = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), text))
    return target if os.path.isfile(target) else None


def _one_line_text(path: str | os.PathLike) -> Optional[str]:
    """The text of a file of at most 1 KiB that is one line of UTF-8 without NUL, else None."""
    try:
        if os.path.getsize(path) > LINK_STAND_IN_MAX_BYTES:
            return None
        with open(path, "rb") as f:
            text = f.read().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text and "\n" not in text and "\0" not in text else None


def _broken_stand_in_hint(path: str | os.PathLike) -> str:
    """For an error message: "" unless ``path`` is a small one-line text file (a link stand-in
    whose target is missing), then what it holds and what that means."""
    text = _one_line_text(path)
    if text is None:
        return ""
    return (f" (the file is text holding {text!r}: a symbolic link flattened into a file by a copy,"
            " whose target does not exist; restore the link or copy the image there)")


def resolve_image_path(path: str | os.PathLike) -> str:
    """``path``, or for a symbolic link stand-in the image it names (stand-ins pointing at
    stand-ins are followed, at most 8 deep, as the system follows links)."""
    current = str(path)
    for _ in range(8):
        target = link_stand_in_target(current)
        if target is None:
            return current
        current = target
    return current


def open_image(path: str | os.PathLike) -> Image.Image:
    """``Image.open`` for users' image files, following symbolic link stand-ins. Every reader of
    user image files opens them through it. A stand-in whose target is missing raises PIL's
    ``UnidentifiedImageError`` with what the file holds and what that means appended."""
    resolved = resolve_image_path(path)
    try:
        return Image.open(resolved)
    except UnidentifiedImageError as e:
        hint = _broken_stand_in_hint(resolved)
        if not hint:
            raise
        raise UnidentifiedImageError(f"{e}{hint}") from None


def image_header_sizes(paths: Sequence[str]) -> list[tuple[int, int]]:
    """(width, height) of each image from its header only (no pixel is decoded), so that a
    missing, empty, corrupt or non-image file is named at load, before training or evaluation
    starts. All unreadable files are found; the error names the first five and the count.
    A JPEG truncated after its header passes here and is named when it is read."""
    sizes, bad = [], []
    for p in paths:
        try:
            with open_image(p) as im:
                sizes.append(im.size)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            bad.append(f"{p} ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
            sizes.append((0, 0))
    if bad:
        raise DatasetError(f"cannot read image {bad[0]}" + (f"; {len(bad)} unreadable images in all: "
                           + "; ".join(bad[1:5]) + (" ..." if len(bad) > 5 else "") if len(bad) > 1 else ""))
    return sizes


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert grayscale, palette, CMYK, 16-bit and RGBA images to 8-bit RGB."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        # 16-bit data spans 0..65535; a 32-bit "I" image has no fixed range, so it uses its maximum
        hi = 65535.0 if im.mode.startswith("I;16") or (a.size and a.max() <= 65535) else float(a.max())
        a = (a / hi * 255.0).clip(0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")


def read_image(path: str | os.PathLike) -> Image.Image:
    """An image file as 8-bit RGB; a DatasetError naming the file when it is missing or cannot
    be decoded. Every reader of user image files goes through it."""
    try:
        with open_image(path) as im:
            im.load()
            return to_rgb(im)
    except FileNotFoundError:
        raise DatasetError(f"image file is missing: {path}") from None
    except IMAGE_ERRORS as e:
        raise DatasetError(f"cannot read image {path}: {e}") from None
