"""PNG overlays of attention maps and part boxes (PIL only), for ``sgma predict --save-maps``."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .io import atomic_write_bytes

PART_COLOURS = [(255, 60, 60), (60, 120, 255), (60, 200, 60), (240, 200, 0)]


def colourise(m: np.ndarray) -> np.ndarray:
    """A map in [0, 1] -> (h, w, 3) uint8 with a blue-cyan-yellow-red ramp (jet-like)."""
    m = np.clip(m, 0, 1)
    r = np.clip(1.5 - np.abs(4 * m - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * m - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * m - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay_image(img: Image.Image, maps: np.ndarray, boxes: np.ndarray, gt: dict | None = None,
                  alpha: float = 0.5) -> Image.Image:
    """The image with its boxes, followed by one panel per attention map blended over it."""
    img = img.convert("RGB")
    w, h = img.size
    panels = [img.copy()]
    d = ImageDraw.Draw(panels[0])
    for i, b in enumerate(boxes):
        d.rectangle([float(v) for v in b], outline=PART_COLOURS[i % 4], width=max(2, w // 150))
    for name, b in (gt or {}).items():
        d.rectangle([float(v) for v in b], outline=(255, 255, 255), width=1)
    for m in maps:
        heat = Image.fromarray(colourise(m)).resize((w, h), Image.BILINEAR)
        panels.append(Image.blend(img, heat, alpha))
    out = Image.new("RGB", (w * len(panels), h))
    for k, p in enumerate(panels):
        out.paste(p, (k * w, 0))
    return out


def save_overlay(img: Image.Image, pred, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"overlay_{abs(hash(img.tobytes())) % 10**8}.png")
    buf = io.BytesIO()
    overlay_image(img, pred.maps, pred.boxes).save(buf, "PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
