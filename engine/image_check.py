"""Find unreadable images before long work starts (issue 16): a truncated JPEG passes the
loaders' header check and would otherwise fail minutes into an evaluation.

Each on-disk image is decoded in full, as the loader will decode it, so a cut file fails here.
About 2.5 ms per CUB image on the 2-core development machine, seconds for a whole test split. Procedural images (synthetic
data) have no file and are not checked.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from .data.base import IMAGE_ERRORS, ZSLDataset, open_image


def image_problem(path: str) -> Optional[str]:
    """Why the image at ``path`` cannot be decoded, or None when it can."""
    try:
        with open_image(path) as im:
            im.load()
    except FileNotFoundError:
        return "file is missing"
    except IMAGE_ERRORS as e:
        return str(e) or type(e).__name__
    return None


def find_unreadable(dataset: ZSLDataset, indices: Sequence[int],
                    progress: Optional[Callable[[int], None]] = None) -> list[tuple[int, str, str]]:
    """(index, path, reason) for every image among ``indices`` that cannot be decoded.
    ``progress(n)`` is called with the number of images checked since the last call."""
    bad = []
    for k, i in enumerate(indices):
        path = dataset.items[i].path
        if path is not None:
            reason = image_problem(path)
            if reason is not None:
                bad.append((int(i), path, reason))
        if progress is not None and (k + 1) % 64 == 0:
            progress(64)
    if progress is not None and len(indices) % 64:
        progress(len(indices) % 64)
    return bad


def describe(bad: list[tuple[int, str, str]], limit: int = 5) -> str:
    """One line naming the first ``limit`` bad files and how many more there are."""
    shown = "; ".join(f"{path} ({reason})" for _, path, reason in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{len(bad)} image(s) cannot be read: {shown}{more}"
