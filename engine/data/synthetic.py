"""Procedural "synthetic birds": a small, deterministic zero-shot dataset that ships with the code.

It is the default dataset (the ``demo`` preset trains on it on two CPU cores in minutes) and it
exercises everything SGMA is about: the class semantics live in *small head and tail details*,
so a model that recognises unseen classes from attributes has to find the head and the tail,
and it must do so without part annotations. Only numpy and PIL are used (no torch, no files,
no downloads).

Attributes (the class semantics)
--------------------------------
Six attribute groups, one value each per class; the attribute vector is the concatenation of
the one-hot groups, column names ``"group::value"``, in this order (18 columns)::

    head_color  red, blue, yellow, green     the head disc and the crest
    crest       no, yes                      two spikes on top of the head
    beak        short, long                  dark grey beak, 0.06 or 0.13 bird lengths
    tail_shape  fan, pointed, forked
    tail_color  red, blue, yellow, green     same palette as the head (see below)
    body_color  brown, grey, buff            muted, large: a deliberately weak cue

Head and tail colours share one palette, so a global colour histogram cannot tell "red head,
blue tail" from "blue head, red tail": the model has to look at the right place. The body is
big and easy to see, so its colour is kept a weak cue: it never counts towards the class
separation below, and it takes only muted values that are not in the palette.

``ZSLDataset.semantics`` holds these one-hot vectors with **rows L2-normalised** (each row has
six ones, so every non-zero entry is 1/sqrt(6)), like the ``att`` matrices of xlsa17.
``attribute_groups`` maps each group name to its column indices.

Classes
-------
Classes are attribute combinations picked by a seeded RNG (``seed``): a random greedy pass over
all 576 combinations keeps a combination when it differs from every kept one in at least two of
the five *non-body* groups (so any two classes differ in >= 2 groups even ignoring the body).
The classes are then randomly cast as unseen / validation / train classes until

1. (preferred) every attribute value occurs in at least two train classes; else
2. every value used by a validation or unseen class occurs in some train class; else
3. every value used by an unseen class occurs in some seen class (the minimum we guarantee;
   ``ValueError`` if even that is impossible for the requested sizes).

Unseen classes are thus new *combinations* of attribute values that all occur among the seen
classes. Class names are ``synth_<index>_<head colour>_<crest|plain>_<tail shape>``, e.g.
``synth_007_red_crest_fan``. Defaults: 24 classes = 12 train + 4 validation (16 seen) + 8 unseen.

Images and split
----------------
Seen classes get ``n_train_per_class`` (40) images in ``trainval`` and ``n_test_seen_per_class``
(8) in ``test_seen``; unseen classes get ``n_unseen_per_class`` (24) images, all in
``test_unseen`` (960 images by default). Items are ordered class by class; within a seen class
the first images are trainval and the last ones test_seen. Image ``i`` is rendered from a
``numpy.random.Generator`` seeded with ``(seed, i)``, lazily by ``ImageItem.render`` (the
dataset object builds in a few tens of milliseconds; only the pose is sampled up front, to give
the part boxes). ``load_image`` gives the same bytes every time and in every process.

One image (``render_bird``)
---------------------------
The bird is drawn in a bird frame measured in "bird lengths" ``u`` (tail tip at x=0, beak tip
at x~0.93 or 1.00, y down), then flipped (facing left or right, 50/50), tilted by up to +-12
degrees, scaled so that ``u`` is 0.58-0.72 of the image side (the bird spans ~54-72% of the
image width) and placed at a random position (horizontally anywhere it fits, vertically within
+-0.16 of the image side around the centre), with the whole bird and both part boxes inside the
image. Parts, in drawing order:

- tail (x 0..0.30): fan (a wedge of a circle), pointed (a narrow spear) or forked (swallow
  tail), in the tail colour with a darker outline; its root is hidden under the body;
- body: ellipse centred (0.46, 0.02), semi-axes (0.25, 0.15), body colour, with a darker wing
  ellipse and two short legs;
- head: disc centred (0.74, -0.10), radius 0.13, head colour with a darker outline; a white eye
  with a black pupil; a dark grey beak; optionally a crest of two spikes in a darker shade of the
  head colour reaching y=-0.33.

Every part colour gets a small random brightness (x0.88-1.08) and per-channel (+-8) jitter.
The background is cluttered but holds nothing head- or tail-like: a soft two-colour gradient
with large soft blobs (drawn at 24x24, blurred and upscaled bicubically; a third of the blobs use a
palette colour half-mixed with grey, so colour alone is ambiguous), 2-5 thin straight "twigs"
(dark, or now and then a desaturated palette colour) behind the bird, and uniform pixel noise
(+-10). Nothing in the clutter is small, round and sharp like a head, or a sharp wedge.

Anti-aliasing: the background and the bird are drawn at twice the size and box-reduced
(``Image.reduce(2)``); the noise is added after. One 128-px image takes ~1-2 ms.

Part boxes
----------
``"head"`` and ``"tail"`` boxes, ``(x0, y0, x1, y1)`` float pixels, are squares centred on the
tight extent of the part's polygons in the image (head: disc + beak + crest; tail: the tail
polygon including its hidden root) with side ``max(w, h, 0.36 u)``: always containing the part
and at least 0.36 bird lengths. Sides are 0.21-0.30 of the image side (typically ~0.25 for
the head, ~0.23 for the tail), so a predicted square of a quarter of the image side, centred
well, reaches IoU ~0.6-0.8.

Determinism: the same ``seed`` gives byte-identical images in one installation. Only
``Generator.random`` (uniform doubles from PCG64, stable across numpy releases) is drawn from;
pixels can still change with the Pillow version (rasteriser, resampling filters).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .base import Box, ImageItem, Split, ZSLDataset

# ---------------------------------------------------------------------------------------------
# attributes

ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "head_color": ("red", "blue", "yellow", "green"),
    "crest": ("no", "yes"),
    "beak": ("short", "long"),
    "tail_shape": ("fan", "pointed", "forked"),
    "tail_color": ("orange", "purple", "cyan", "magenta"),
    "body_color": ("brown", "grey", "buff"),
}
GROUP_NAMES: tuple[str, ...] = tuple(ATTRIBUTE_GROUPS)
ATTRIBUTE_NAMES: list[str] = [f"{g}::{v}" for g, vals in ATTRIBUTE_GROUPS.items() for v in vals]
# groups that separate classes (the body colour is a weak cue and does not count)
SEPARATING_GROUPS: tuple[str, ...] = ("head_color", "crest", "beak", "tail_shape", "tail_color")

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (210, 45, 40),
    "blue": (45, 85, 215),
    "yellow": (235, 205, 45),
    "green": (50, 165, 70),
}
# The tail has its own palette, disjoint from the head's, so a colour-selective channel is also
# part-selective: a small CNN trained from scratch can then discover head and tail (section 4.1's
# k-means over channel peaks needs channels that peak on one part).
TAIL_PALETTE: dict[str, tuple[int, int, int]] = {
    "orange": (240, 130, 20),
    "purple": (130, 50, 170),
    "cyan": (40, 200, 210),
    "magenta": (225, 60, 170),
}
BODY_COLORS: dict[str, tuple[int, int, int]] = {
    "brown": (125, 88, 58),
    "grey": (128, 128, 134),
    "buff": (196, 170, 126),
}
BEAK_COLOR = (55, 52, 50)

PART_NAMES = ["head", "tail"]

_SS = 2                      # supersampling factor
_U_RANGE = (0.58, 0.72)      # bird length u, fraction of the image side
_TILT_DEG = 12.0
_Y_JITTER = 0.16             # vertical placement of the bird centre, +- fraction of the side
_BOX_MIN_SIDE = 0.36         # part box side floor, in bird lengths
_BEAK_LEN = {"short": 0.06, "long": 0.13}


def attribute_vector(attrs: Mapping[str, str], normalise: bool = True) -> np.ndarray:
    """The (18,) float32 attribute vector of one attribute dict (L2-normalised by default,
    as in ``ZSLDataset.semantics``)."""
    _check_attrs(attrs)
    v = np.zeros(len(ATTRIBUTE_NAMES), dtype=np.float32)
    for g in GROUP_NAMES:
        v[ATTRIBUTE_NAMES.index(f"{g}::{attrs[g]}")] = 1.0
    if normalise:
        v /= np.float32(np.linalg.norm(v))
    return v


def attributes_from_vector(vec: np.ndarray) -> dict[str, str]:
    """Inverse of ``attribute_vector``: the arg-max value of every group."""
    vec = np.asarray(vec, dtype=np.float64).reshape(-1)
    if vec.shape[0] != len(ATTRIBUTE_NAMES):
        raise ValueError(f"expected {len(ATTRIBUTE_NAMES)} attributes, got {vec.shape[0]}")
    out, col = {}, 0
    for g, vals in ATTRIBUTE_GROUPS.items():
        out[g] = vals[int(np.argmax(vec[col:col + len(vals)]))]
        col += len(vals)
    return out


def class_attributes(dataset: ZSLDataset, class_index: int) -> dict[str, str]:
    """The attribute dict of one class of a synthetic dataset (usable with ``render_bird``)."""
    return attributes_from_vector(dataset.semantics[class_index])


def _check_attrs(attrs: Mapping[str, str]) -> None:
    missing = [g for g in GROUP_NAMES if g not in attrs]
    if missing:
        raise ValueError(f"synthetic bird attributes: missing group(s) {missing}; "
                         f"need one value for each of {list(GROUP_NAMES)}")
    extra = [g for g in attrs if g not in ATTRIBUTE_GROUPS]
    if extra:
        raise ValueError(f"synthetic bird attributes: unknown group(s) {extra}")
    for g in GROUP_NAMES:
        if attrs[g] not in ATTRIBUTE_GROUPS[g]:
            raise ValueError(f"synthetic bird attributes: {g}={attrs[g]!r} is not one of "
                             f"{list(ATTRIBUTE_GROUPS[g])}")


# ---------------------------------------------------------------------------------------------
# bird geometry in the bird frame (units of bird length u, tail tip at x=0, y down)

def _arc(cx: float, cy: float, rx: float, ry: float, n: int,
         a0: float = 0.0, a1: float = 2 * math.pi) -> np.ndarray:
    t = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-9)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


_BODY = _arc(0.46, 0.02, 0.25, 0.15, 36)
_WING = _arc(0.43, 0.00, 0.15, 0.075, 20)
_HEAD = _arc(0.74, -0.10, 0.13, 0.13, 28)
_HEAD_C, _HEAD_R = (0.74, -0.10), 0.13
_EYE_C = (0.785, -0.13)
_EYE_R, _PUPIL_R = 0.030, 0.017
_LEGS = [np.array([[0.44, 0.16], [0.41, 0.25]]), np.array([[0.52, 0.16], [0.53, 0.25]])]
_CREST = np.array([[0.66, -0.19], [0.69, -0.33], [0.73, -0.22], [0.78, -0.31], [0.80, -0.20]])


def _tail(shape: str) -> np.ndarray:
    if shape == "fan":   # wedge of a circle around (0.36, 0), radius 0.34, +-24 degrees
        a = np.deg2rad(np.linspace(-24, 24, 9))
        arc = np.stack([0.36 - 0.34 * np.cos(a), 0.34 * np.sin(a)], axis=1)
        return np.vstack([[[0.30, 0.045]], arc[::-1], [[0.30, -0.045]]])
    if shape == "pointed":
        return np.array([[0.30, -0.06], [0.14, -0.05], [0.0, 0.0], [0.14, 0.05], [0.30, 0.06]])
    if shape == "forked":
        return np.array([[0.30, -0.05], [0.0, -0.15], [0.11, 0.0], [0.0, 0.15], [0.30, 0.05]])
    raise ValueError(shape)


_TAILS = {s: _tail(s) for s in ATTRIBUTE_GROUPS["tail_shape"]}


def _beak(length: str) -> np.ndarray:
    L = _BEAK_LEN[length]
    return np.array([[0.845, -0.135], [0.87 + L, -0.095], [0.845, -0.060]])


_BEAKS = {b: _beak(b) for b in ATTRIBUTE_GROUPS["beak"]}


# ---------------------------------------------------------------------------------------------
# pose: everything that fixes the part boxes; drawn first from the image's generator

class _Pose:
    __slots__ = ("u", "flip", "angle", "tx", "ty", "boxes")

    def transform(self, pts: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Bird frame -> image pixels (times ``scale``). Rotation about the bird frame origin,
        then translation by (tx, ty)."""
        x = pts[:, 0] - 0.5
        if self.flip:
            x = -x
        y = pts[:, 1]
        c, s = math.cos(self.angle), math.sin(self.angle)
        X = (c * x - s * y) * self.u + self.tx
        Y = (s * x + c * y) * self.u + self.ty
        return np.stack([X, Y], axis=1) * scale


def _square(pts: np.ndarray, min_side: float) -> Box:
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    side = max(x1 - x0, y1 - y0, min_side)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (float(cx - side / 2), float(cy - side / 2), float(cx + side / 2), float(cy + side / 2))


def _sample_pose(attrs: Mapping[str, str], rng: np.random.Generator, size: int) -> _Pose:
    r = rng.random(6)
    p = _Pose()
    p.u = (_U_RANGE[0] + (_U_RANGE[1] - _U_RANGE[0]) * r[0]) * size
    p.flip = bool(r[1] < 0.5)
    p.angle = math.radians((2 * r[2] - 1) * _TILT_DEG)
    p.tx = p.ty = 0.0
    head_pts = np.vstack([_HEAD, _BEAKS[attrs["beak"]]]
                         + ([_CREST] if attrs["crest"] == "yes" else []))
    tail_pts = _TAILS[attrs["tail_shape"]]
    head = p.transform(head_pts)
    tail = p.transform(tail_pts)
    body = p.transform(np.vstack([_BODY, _LEGS[0], _LEGS[1]]))
    hb = _square(head, _BOX_MIN_SIDE * p.u)
    tb = _square(tail, _BOX_MIN_SIDE * p.u)
    allx = np.concatenate([head[:, 0], tail[:, 0], body[:, 0], [hb[0], hb[2], tb[0], tb[2]]])
    ally = np.concatenate([head[:, 1], tail[:, 1], body[:, 1], [hb[1], hb[3], tb[1], tb[3]]])
    margin = 2.0
    lo_x, hi_x = margin - allx.min(), size - margin - allx.max()
    lo_y, hi_y = margin - ally.min(), size - margin - ally.max()
    cy_mid = size / 2 - (ally.min() + ally.max()) / 2
    lo_y = max(lo_y, cy_mid - _Y_JITTER * size)
    hi_y = min(hi_y, cy_mid + _Y_JITTER * size)
    if hi_x < lo_x:        # cannot happen with the constants above; centre it then
        lo_x = hi_x = (lo_x + hi_x) / 2
    if hi_y < lo_y:
        lo_y = hi_y = (lo_y + hi_y) / 2
    p.tx = lo_x + (hi_x - lo_x) * r[3]
    p.ty = lo_y + (hi_y - lo_y) * r[4]
    p.boxes = {
        "head": (hb[0] + p.tx, hb[1] + p.ty, hb[2] + p.tx, hb[3] + p.ty),
        "tail": (tb[0] + p.tx, tb[1] + p.ty, tb[2] + p.tx, tb[3] + p.ty),
    }
    return p


# ---------------------------------------------------------------------------------------------
# drawing

def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    r = rng.random(4)
    k = 0.88 + 0.20 * r[0]
    return tuple(int(min(255, max(0, round(c * k + (16 * r[i + 1] - 8)))))
                 for i, c in enumerate(rgb))


def _shade(rgb: tuple[int, ...], k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(c * k)))) for c in rgb)


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def _flat(pts: np.ndarray) -> list[float]:
    return pts.reshape(-1).tolist()


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Soft clutter at ``_SS`` x the image size."""
    n = 24
    r = rng.random(8)
    c0 = 70 + 130 * rng.random(3)
    c1 = 70 + 130 * rng.random(3)
    ang = 2 * math.pi * r[0]
    g = np.linspace(-1, 1, n)
    t = (math.cos(ang) * g[None, :] + math.sin(ang) * g[:, None]) * 0.5 + 0.5
    small = (c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None])
    im = Image.fromarray(small.clip(0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    names = list(PALETTE)
    for _ in range(3 + int(r[1] * 5)):            # 3-7 blobs
        b = rng.random(7)
        if b[0] < 0.33:
            col = _mix(PALETTE[names[int(b[1] * 4) % 4]], (128, 128, 128), 0.75)
        else:
            col = tuple(int(60 + 150 * x) for x in rng.random(3))
        cx, cy = b[2] * n, b[3] * n
        rx, ry = 2 + 5 * b[4], 2 + 5 * b[5]
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=col)
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    return im.resize((size * _SS, size * _SS), Image.BICUBIC)


def _twigs(d: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    S = size * _SS
    names = list(PALETTE)
    for _ in range(2 + int(rng.random() * 4)):    # 2-5 thin straight lines
        b = rng.random(8)
        if b[0] < 0.25:
            col = _mix(PALETTE[names[int(b[1] * 4) % 4]], (110, 110, 110), 0.45)
        else:
            v = 40 + 60 * b[1]
            col = (int(v * 1.1), int(v * 0.95), int(v * 0.8))
        a = math.pi * b[2]
        cx, cy = b[3] * S, b[4] * S
        half = (0.3 + 0.5 * b[5]) * S
        dx, dy = math.cos(a) * half, math.sin(a) * half
        width = max(1, int(round((1 + 2 * b[6]) * _SS * size / 128)))
        d.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=col, width=width)


def _draw(attrs: Mapping[str, str], pose: _Pose, rng: np.random.Generator,
          size: int) -> Image.Image:
    im = _background(rng, size)
    d = ImageDraw.Draw(im)
    _twigs(d, rng, size)
    ss = float(_SS)
    lw = max(1, int(round(_SS * size / 128)))        # ~1 output pixel at 128 px
    head_c = _jitter(PALETTE[attrs["head_color"]], rng)
    tail_c = _jitter(TAIL_PALETTE[attrs["tail_color"]], rng)
    body_c = _jitter(BODY_COLORS[attrs["body_color"]], rng)
    beak_c = _jitter(BEAK_COLOR, rng)
    T = lambda pts: _flat(pose.transform(pts, ss))  # noqa: E731

    # legs, tail, body, wing
    for leg in _LEGS:
        d.line(T(leg), fill=(60, 50, 40), width=2 * lw)
    d.polygon(T(_TAILS[attrs["tail_shape"]]), fill=tail_c, outline=_shade(tail_c, 0.55), width=lw)
    d.polygon(T(_BODY), fill=body_c, outline=_shade(body_c, 0.6), width=lw)
    d.polygon(T(_WING), fill=_shade(body_c, 0.78), outline=_shade(body_c, 0.55), width=lw)
    # crest behind the head, then head, beak, eye
    if attrs["crest"] == "yes":
        d.polygon(T(_CREST), fill=_shade(head_c, 0.8), outline=_shade(head_c, 0.5), width=lw)
    d.polygon(T(_HEAD), fill=head_c, outline=_shade(head_c, 0.55), width=lw)
    d.polygon(T(_BEAKS[attrs["beak"]]), fill=beak_c)
    (ex, ey), = pose.transform(np.array([_EYE_C]), ss)
    er, pr = _EYE_R * pose.u * ss, _PUPIL_R * pose.u * ss
    d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(245, 245, 240))
    d.ellipse([ex - pr, ey - pr, ex + pr, ey + pr], fill=(15, 15, 15))

    im = im.reduce(_SS)
    noise = (rng.random((size, size, 3)) * 21.0 - 10.0)
    a = np.asarray(im, dtype=np.float32) + noise
    return Image.fromarray(np.rint(a).clip(0, 255).astype(np.uint8), "RGB")


def render_bird(attrs: Mapping[str, str], rng: np.random.Generator,
                image_size: int = 128) -> tuple[Image.Image, dict[str, Box]]:
    """Draw one bird with the given attributes (a dict group -> value, see ``ATTRIBUTE_GROUPS``)
    on a cluttered background. Returns the RGB image and ``{"head": box, "tail": box}``.

    Consumes only ``rng.random``; the same generator state gives the same image and boxes.
    """
    _check_attrs(attrs)
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    pose = _sample_pose(attrs, rng, image_size)
    return _draw(attrs, pose, rng, image_size), dict(pose.boxes)


def _image_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([1, seed, index])))


class _Renderer:
    """Picklable lazy renderer of dataset image ``index`` (for DataLoader workers)."""
    __slots__ = ("attrs", "seed", "index", "size")

    def __init__(self, attrs: dict[str, str], seed: int, index: int, size: int):
        self.attrs, self.seed, self.index, self.size = attrs, seed, index, size

    def __call__(self) -> Image.Image:
        return render_bird(self.attrs, _image_rng(self.seed, self.index), self.size)[0]


# ---------------------------------------------------------------------------------------------
# classes

def _n_diff(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum(x != y for x, y in zip(a, b))


def _choose_classes(seed: int, n_classes: int, n_unseen: int, n_val: int
                    ) -> tuple[list[tuple[int, ...]], list[int], list[int], list[int]]:
    """(combos as value indices per group, train, val, unseen class indices)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([0, seed])))
    sizes = [len(v) for v in ATTRIBUTE_GROUPS.values()]
    sep = [GROUP_NAMES.index(g) for g in SEPARATING_GROUPS]
    all_combos = [tuple(int(x) for x in c) for c in np.ndindex(*sizes)]
    # tier 1 needs every value in >= 2 train classes: impossible with fewer than 8 train classes
    want = 1 if n_classes - n_unseen - n_val >= 2 * max(sizes) else 2
    best: Optional[tuple[int, Any]] = None
    for attempt in range(200):
        if best is not None and (best[0] <= want or attempt >= 20):
            break
        order = np.argsort(rng.random(len(all_combos)), kind="stable")
        picked: list[tuple[int, ...]] = []
        for k in order:
            c = all_combos[k]
            if all(sum(c[j] != p[j] for j in sep) >= 2 for p in picked):
                picked.append(c)
                if len(picked) == n_classes:
                    break
        if len(picked) < n_classes:
            continue
        for _ in range(50):
            perm = [int(i) for i in np.argsort(rng.random(n_classes), kind="stable")]
            unseen = sorted(perm[:n_unseen])
            val = sorted(perm[n_unseen:n_unseen + n_val])
            train = sorted(perm[n_unseen + n_val:])
            tier = _tier(picked, train, val, unseen, sizes)
            if tier is not None and (best is None or tier < best[0]):
                best = (tier, (picked, train, val, unseen))
                if tier <= want:
                    return best[1]
    if best is None:
        raise ValueError(
            f"cannot pick {n_classes} synthetic classes ({n_unseen} unseen, {n_val} val) that "
            "differ pairwise in >= 2 attribute groups with every unseen attribute value seen; "
            "use fewer classes or fewer unseen classes")
    return best[1]


def _tier(combos, train, val, unseen, sizes) -> Optional[int]:
    seen = train + val

    def counts(classes):
        cnt = [np.zeros(s, dtype=int) for s in sizes]
        for c in classes:
            for g, v in enumerate(combos[c]):
                cnt[g][v] += 1
        return cnt

    tr = counts(train)
    if all((c >= 2).all() for c in tr):
        return 1
    used = counts(val + unseen)
    if all(((u == 0) | (t > 0)).all() for u, t in zip(used, tr)):
        return 2
    se, un = counts(seen), counts(unseen)
    if all(((u == 0) | (s > 0)).all() for u, s in zip(un, se)):
        return 3
    return None


def _class_name(index: int, attrs: Mapping[str, str]) -> str:
    crest = "crest" if attrs["crest"] == "yes" else "plain"
    return f"synth_{index:03d}_{attrs['head_color']}_{crest}_{attrs['tail_shape']}"


# ---------------------------------------------------------------------------------------------
# dataset

def make_synthetic(seed: int = 0, image_size: int = 128, n_classes: int = 24, n_unseen: int = 8,
                   n_val: int = 4, n_train_per_class: int = 40, n_test_seen_per_class: int = 8,
                   n_unseen_per_class: int = 24) -> ZSLDataset:
    """The synthetic birds zero-shot dataset (see the module docstring for every choice).

    Builds instantly: images are rendered on demand by ``ImageItem.render``; part boxes are
    known up front. The same arguments give the same dataset, byte for byte.
    """
    seed = int(seed)
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    if n_unseen < 1 or n_val < 0 or n_classes - n_unseen - n_val < 1:
        raise ValueError(f"need n_unseen >= 1, n_val >= 0 and at least one train class; got "
                         f"n_classes={n_classes}, n_unseen={n_unseen}, n_val={n_val}")
    if n_classes > 48:   # a code with min distance 2 over groups of sizes 4,2,2,3,4 has <= 192/4
        raise ValueError(f"at most 48 synthetic classes differ pairwise in >= 2 head/tail "
                         f"attribute groups; got n_classes={n_classes}")
    if min(n_train_per_class, n_unseen_per_class) < 1 or n_test_seen_per_class < 0:
        raise ValueError("need n_train_per_class >= 1, n_unseen_per_class >= 1 and "
                         "n_test_seen_per_class >= 0")

    combos, train, val, unseen = _choose_classes(seed, n_classes, n_unseen, n_val)
    class_attrs = [{g: ATTRIBUTE_GROUPS[g][v] for g, v in zip(GROUP_NAMES, c)} for c in combos]
    class_names = [_class_name(i, a) for i, a in enumerate(class_attrs)]
    semantics = np.stack([attribute_vector(a) for a in class_attrs]).astype(np.float32)
    groups, col = {}, 0
    for g, vals in ATTRIBUTE_GROUPS.items():
        groups[g] = list(range(col, col + len(vals)))
        col += len(vals)

    unseen_set = set(unseen)
    items: list[ImageItem] = []
    trainval: list[int] = []
    test_seen: list[int] = []
    test_unseen: list[int] = []
    for c, attrs in enumerate(class_attrs):
        if c in unseen_set:
            kinds = [test_unseen] * n_unseen_per_class
        else:
            kinds = [trainval] * n_train_per_class + [test_seen] * n_test_seen_per_class
        for k, dest in enumerate(kinds):
            i = len(items)
            pose = _sample_pose(attrs, _image_rng(seed, i), image_size)
            items.append(ImageItem(label=c, render=_Renderer(attrs, seed, i, image_size),
                                   part_boxes=dict(pose.boxes),
                                   image_id=f"synthetic_s{seed}_{i:05d}"))
            dest.append(i)

    split = Split(name="synthetic", seen=sorted(train + val), unseen=sorted(unseen),
                  trainval=trainval, test_seen=test_seen, test_unseen=test_unseen,
                  train_classes=sorted(train), val_classes=sorted(val))
    return ZSLDataset(name="synthetic", root=None, class_names=class_names,
                      attribute_names=list(ATTRIBUTE_NAMES), semantics=semantics, items=items,
                      split=split, part_names=list(PART_NAMES), attribute_groups=groups)


__all__ = ["ATTRIBUTE_GROUPS", "ATTRIBUTE_NAMES", "PALETTE", "TAIL_PALETTE", "BODY_COLORS", "PART_NAMES",
           "attribute_vector", "attributes_from_vector", "class_attributes", "make_synthetic",
           "render_bird"]
