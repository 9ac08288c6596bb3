"""A seeded generator of synthetic YouTube-VIS datasets: textured shapes moving over textured backgrounds.

Six categories (circle, square, triangle, star, ring, cross), each with its own colour range and
texture (radial gradient, checkerboard, stripes, dots, speckle, diagonal stripes), so a small model
can tell them apart. Objects move smoothly (drift + sway), pulse in scale and rotate; they occlude
each other by a fixed z-order (masks are the visible parts), cross the frame edges, and some appear
or vanish mid-clip. A frame where an object has no visible pixel gets a null segmentation.
Optional *distractors* are unannotated sprites of other outlines (ellipse, crescent, L, semicircle) wearing
the categories' own textures and moving like objects: a single patch of one looks like a patch of an
object, only the outline (context from several patches) tells them apart, as with the countless
unannotated things in real video.
Everything is drawn with numpy + OpenCV from one ``numpy.random.Generator``: the same seed gives the
same arrays and, through :func:`write_synthetic_dataset`, the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from core.atomic import atomic_write_text
from core.data.errors import YtvisWriteError
from core.data.rle import encode_masks, rle_area, rle_bbox
from core.data.synthetic_scene import draw_outline, mosaic, motion_blur, outline_width

Appearance = Literal["category", "paired", "random"]
Scene = Literal["plain", "camouflage"]
DatasetScene = Literal["plain", "camouflage", "mixed"]  # "mixed": videos alternate plain, camouflage
CATEGORIES = ("circle", "square", "triangle", "star", "ring", "cross")
# Base RGB colour of each category (jittered per object) and its texture.
_COLOURS = ((225, 70, 50), (50, 90, 225), (60, 190, 70), (235, 205, 40), (190, 60, 200), (40, 200, 210))
_TEXTURES = ("radial", "checker", "stripes", "dots", "speckle", "diagonal")
# appearance="paired": two categories share one look, so only the outline separates the members of a
# pair (circle/ring, square/cross, triangle/star).
_PAIRED_STYLE = {1: 1, 5: 1, 2: 2, 6: 2, 3: 3, 4: 3}
DISTRACTOR_SHAPES = ("ellipse", "crescent", "ell", "semicircle")
_DISTRACTOR_LABEL = 255  # label-map value of distractor pixels (objects are 1..max_objects)
MAX_OBJECTS = _DISTRACTOR_LABEL - 1  # objects per clip: the uint8 label map holds 1..254


@dataclass(frozen=True)
class SyntheticInstance:
    """One object: ``category_id`` is 1-based into :data:`CATEGORIES`; ``masks`` ``[T, H, W]`` are visible parts."""

    category_id: int
    masks: np.ndarray

    @property
    def present(self) -> np.ndarray:
        """``[T]`` bool: the object has at least one visible pixel."""
        return self.masks.any(axis=(1, 2))


@dataclass(frozen=True)
class SyntheticClip:
    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    instances: tuple[SyntheticInstance, ...]
    distractors: np.ndarray | None = None  # [T, H, W] bool: visible distractor pixels (None: clip has none)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A muted textured canvas ``[h, w, 3]`` uint8: smooth colour blobs plus faint lines."""
    small = rng.uniform(60, 170, (max(2, h // 24), max(2, w // 24), 3)).astype(np.float32)
    base = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    grey = base.mean(axis=2, keepdims=True)
    base = grey + 0.45 * (base - grey)  # low saturation: objects stand out by colour
    fine = cv2.resize(rng.uniform(-18, 18, (max(2, h // 4), max(2, w // 4))).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    canvas = base + fine[..., None]
    for _ in range(int(rng.integers(4, 10))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        shade = float(rng.uniform(-30, 30))
        cv2.line(canvas, p1, p2, (shade + 110,) * 3, int(rng.integers(1, 4)))
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _shape_mask(category: int, size: int, r: float) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    c = size / 2.0
    sh = 4  # sub-pixel drawing: coordinates in 1/16 px

    def pts(radii: Sequence[float], start: float) -> np.ndarray:
        n = len(radii)
        ang = start + np.arange(n) * 2 * math.pi / n
        xy = np.stack([c + np.asarray(radii) * np.cos(ang), c + np.asarray(radii) * np.sin(ang)], 1)
        return np.round(xy * (1 << sh)).astype(np.int32)

    name = CATEGORIES[category - 1] if category > 0 else DISTRACTOR_SHAPES[-category - 1]
    if name == "ellipse":
        cv2.ellipse(m, (round(c * 16), round(c * 16)), (round(r * 16), round(0.45 * r * 16)), 0, 0, 360, 1, -1,
                    shift=sh)
    elif name == "crescent":
        cv2.circle(m, (round(c * 16), round(c * 16)), round(r * 16), 1, -1, shift=sh)
        cv2.circle(m, (round((c + 0.45 * r) * 16), round(c * 16)), round(0.8 * r * 16), 0, -1, shift=sh)
    elif name == "semicircle":
        cv2.ellipse(m, (round(c * 16), round(c * 16)), (round(r * 16), round(r * 16)), 0, 0, 180, 1, -1, shift=sh)
    elif name == "ell":
        a = 0.3 * r
        for x0, y0, x1, y1 in ((c - r, c - r, c - r + 2 * a, c + r), (c - r, c + r - 2 * a, c + r, c + r)):
            box = np.round(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) * 16).astype(np.int32)
            cv2.fillPoly(m, [box], 1, shift=sh)
    elif name in ("circle", "ring"):
        cv2.circle(m, (round(c * 16), round(c * 16)), round(r * 16), 1, -1, shift=sh)
        if name == "ring":
            cv2.circle(m, (round(c * 16), round(c * 16)), round(0.55 * r * 16), 0, -1, shift=sh)
    elif name == "square":
        cv2.fillPoly(m, [pts([r] * 4, math.pi / 4)], 1, shift=sh)
    elif name == "triangle":
        cv2.fillPoly(m, [pts([r] * 3, -math.pi / 2)], 1, shift=sh)
    elif name == "star":
        cv2.fillPoly(m, [pts([r, 0.45 * r] * 5, -math.pi / 2)], 1, shift=sh)
    else:  # cross
        a = 0.28 * r
        for x0, y0, x1, y1 in ((c - r, c - a, c + r, c + a), (c - a, c - r, c + a, c + r)):
            box = np.round(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) * 16).astype(np.int32)
            cv2.fillPoly(m, [box], 1, shift=sh)
    return m


def _texture(rng: np.random.Generator, style: int, size: int) -> np.ndarray:
    """The sprite's texture in appearance ``style`` (1-based: a colour range and a pattern)."""
    colour = np.clip(np.array(_COLOURS[style - 1], np.float32) + rng.uniform(-25, 25, 3), 0, 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = size / 2.0
    kind = _TEXTURES[style - 1]
    period = float(rng.uniform(5, 9))
    if kind == "radial":
        shade = 1.0 - 0.5 * np.hypot(xx - c, yy - c) / c
    elif kind == "checker":
        shade = np.where((np.floor(xx / period) + np.floor(yy / period)) % 2 == 0, 1.0, 0.55)
    elif kind == "stripes":
        shade = 0.75 + 0.25 * np.sign(np.sin(2 * np.pi * yy / period))
    elif kind == "dots":
        shade = np.where(np.hypot((xx % period) - period / 2, (yy % period) - period / 2) < period / 4, 0.5, 1.0)
    elif kind == "speckle":
        shade = rng.uniform(0.55, 1.0, (size, size)).astype(np.float32)
    else:
        shade = 0.75 + 0.25 * np.sign(np.sin(2 * np.pi * (xx + yy) / (1.4 * period)))
    return np.clip(shade[..., None] * colour, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _Object:
    category: int  # 1-based into CATEGORIES; -1-based into DISTRACTOR_SHAPES for a distractor
    sprite: np.ndarray  # [S, S] uint8 0/1
    texture: np.ndarray  # [S, S, 3]
    path: np.ndarray  # [T, 2] centre (x, y)
    scale: np.ndarray  # [T]
    angle: np.ndarray  # [T] degrees
    alive: np.ndarray  # [T] bool


def _make_object(rng: np.random.Generator, w: int, h: int, frames: int, appearance: Appearance, *,
                 distractor: bool = False) -> _Object:
    if distractor:  # another outline in one of the categories' own looks
        category = -int(rng.integers(1, len(DISTRACTOR_SHAPES) + 1))
        style = int(rng.integers(1, len(_TEXTURES) + 1))
    else:
        category = int(rng.integers(1, len(CATEGORIES) + 1))
        if appearance == "category":
            style = category
        elif appearance == "paired":
            style = _PAIRED_STYLE[category]
        else:
            style = int(rng.integers(1, len(_TEXTURES) + 1))
    r = float(rng.uniform(0.08, 0.2)) * min(w, h)
    size = math.ceil(2 * r) + 4
    t = np.arange(frames, dtype=np.float64)
    start = np.array([rng.uniform(-0.15, 1.15) * w, rng.uniform(-0.15, 1.15) * h])
    speed = rng.uniform(0.4, 2.5) * min(w, h) / 100.0
    heading = rng.uniform(0, 2 * math.pi)
    drift = speed * np.array([math.cos(heading), math.sin(heading)])
    sway_amp, sway_freq, sway_phase = rng.uniform(0, 0.06) * min(w, h), rng.uniform(0.05, 0.3), rng.uniform(0, 6.3)
    path = start + t[:, None] * drift + sway_amp * np.sin(sway_freq * t + sway_phase)[:, None] * drift[::-1] / max(
        speed, 1e-6)
    scale = 1.0 + rng.uniform(0, 0.2) * np.sin(rng.uniform(0.05, 0.25) * t + rng.uniform(0, 6.3))
    angle = rng.uniform(0, 360) + rng.uniform(-4, 4) * t
    alive = np.ones(frames, bool)
    if frames > 3 and rng.random() < 0.35:  # pops in and/or out mid-clip
        a, b = sorted(rng.integers(0, frames + 1, 2))
        if b - a >= 2:
            alive[:] = False
            alive[a:b] = True
    return _Object(category, _shape_mask(category, size, r), _texture(rng, style, size), path, scale, angle, alive)


def _paste(frame: np.ndarray, label: np.ndarray, obj: _Object, t: int, index: int,
           outline: tuple[int, float] | None = None) -> None:
    """Warp the object's sprite for frame ``t`` into its bounding box and paint it over ``frame``.

    ``outline`` (thickness px, shade factor): darken the sprite's inner rim (the camouflage scene)."""
    h, w = label.shape
    s = obj.sprite.shape[0]
    m = cv2.getRotationMatrix2D((s / 2.0, s / 2.0), float(obj.angle[t]), float(obj.scale[t]))
    m[:, 2] += obj.path[t] - s / 2.0
    corners = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], np.float64) @ m.T
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int), (w, h))
    if x1 <= x0 or y1 <= y0:
        return
    m[:, 2] -= (x0, y0)
    box = (int(x1 - x0), int(y1 - y0))
    alpha = cv2.warpAffine(obj.sprite, m, box, flags=cv2.INTER_NEAREST, borderValue=0).astype(bool)
    tex = cv2.warpAffine(obj.texture, m, box, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if outline is not None:
        draw_outline(tex, alpha, *outline)
    frame[y0:y1, x0:x1][alpha] = tex[alpha]
    label[y0:y1, x0:x1][alpha] = index


def generate_clip(seed: int | Sequence[int], width: int = 320, height: int = 240, frames: int = 16, *,
                  min_objects: int = 1, max_objects: int = 4, appearance: Appearance = "category",
                  max_distractors: int = 0, scene: Scene = "plain") -> SyntheticClip:
    """One clip in memory: ``frames [T, H, W, 3]`` uint8 RGB and its instances (visible masks, category).

    ``appearance="category"``: each category has its own colour range and pattern (a single patch
    tells the class). ``"paired"``: circle/ring, square/cross and triangle/star share a look, so a
    patch tells the pair and the outline the member. ``"random"``: colour and pattern are drawn per
    object, independently of the category, so only the outline tells the class and a model needs
    context from several patches.

    ``max_distractors > 0`` adds 1..max_distractors unannotated sprites (outlines outside the six
    categories, textures of the categories) at random places in the z-order; they hide what is
    behind them and are reported in ``distractors``. With 0 the random stream is the one without.

    ``scene="camouflage"`` (:mod:`core.data.synthetic_scene`): the background is a mosaic of regions
    in the categories' looks, objects carry a dark outline, the camera pans faster and some clips are
    motion-blurred, so only context tells an object's interior from a region. ``"plain"`` keeps the
    random stream of earlier versions.

    ``seed`` is anything ``numpy.random.default_rng`` takes (an int or a list of ints).
    Instances never visible in any frame are dropped.
    """
    if width < 8 or height < 8 or frames < 1:
        raise ValueError(f"a clip needs width, height >= 8 and frames >= 1, got {width}x{height}x{frames}")
    if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {min_objects}, {max_objects}")
    if max_distractors < 0:
        raise ValueError(f"max_distractors must be >= 0, got {max_distractors}")
    if scene not in ("plain", "camouflage"):
        raise ValueError(f"scene must be 'plain' or 'camouflage', got {scene!r}")
    rng = np.random.default_rng(seed)
    pad = max(8, int(0.1 * max(width, height)))
    canvas = _background(rng, height + 2 * pad, width + 2 * pad)
    pan0, pan_v = rng.uniform(0, 2 * pad, 2), rng.uniform(-0.4, 0.4, 2)
    outline, blur = None, 1
    if scene == "camouflage":
        canvas = mosaic(rng, canvas, _texture, len(_TEXTURES))
        pan_v = pan_v * 3.0
        outline = (outline_width(width, height), float(rng.uniform(0.15, 0.35)))
        blur = int(rng.integers(3, 8)) if rng.random() < 0.3 else 1
    objects = [_make_object(rng, width, height, frames, appearance)
               for _ in range(int(rng.integers(min_objects, max_objects + 1)))]
    # Paint order is z-order (later in front). Label k + 1 is objects[k]; distractors paint label 255.
    order = [(k + 1, obj) for k, obj in enumerate(objects)]
    if max_distractors > 0:
        for _ in range(int(rng.integers(1, max_distractors + 1))):
            order.insert(int(rng.integers(0, len(order) + 1)),
                         (_DISTRACTOR_LABEL, _make_object(rng, width, height, frames, appearance, distractor=True)))
    out = np.empty((frames, height, width, 3), np.uint8)
    labels = np.zeros((frames, height, width), np.uint8)
    for t in range(frames):
        ox, oy = np.clip(np.round(pan0 + pan_v * t + 2.0 * np.sin(0.2 * t)), 0, 2 * pad).astype(int)
        out[t] = canvas[oy:oy + height, ox:ox + width]
        for label, obj in order:
            if obj.alive[t]:
                _paste(out[t], labels[t], obj, t, label, outline)
        if blur > 1:
            out[t] = motion_blur(out[t], pan_v, blur)
    instances = []
    for k, obj in enumerate(objects):
        masks = labels == k + 1
        if masks.any():
            instances.append(SyntheticInstance(obj.category, masks))
    distractors = labels == _DISTRACTOR_LABEL if max_distractors > 0 else None
    return SyntheticClip(out, tuple(instances), distractors)


def _clip_seed(seed: int, split: int, index: int) -> list[int]:
    return [int(seed), split, index]


def write_synthetic_dataset(out: str | Path, *, train_videos: int = 8, val_videos: int = 2, width: int = 320,
                            height: int = 240, frames: int = 16, seed: int = 0, max_objects: int = 4,
                            jpeg_quality: int = 95, appearance: Appearance = "category",
                            max_distractors: int = 0, scene: DatasetScene = "plain") -> dict[str, Path]:
    """Write ``<out>/<split>/JPEGImages/<video>/00000.jpg ...`` and ``<out>/<split>/instances.json``.

    ``scene="mixed"``: even-numbered videos are plain, odd-numbered ones camouflage (each video's
    ``"scene"`` key says which); a mixed video is the same clip as in the dataset of its own scene.

    Splits ``train`` and ``valid`` use distinct seed streams ([seed, 0, i] and [seed, 1, i]). Images are
    written directly; each ``instances.json`` is written last and atomically, so a split with an
    ``instances.json`` is complete. Returns split -> annotation path.
    """
    if scene not in ("plain", "camouflage", "mixed"):
        raise ValueError(f"scene must be 'plain', 'camouflage' or 'mixed', got {scene!r}")
    out = Path(out)
    written = {}
    for split_index, (split, count) in enumerate((("train", train_videos), ("valid", val_videos))):
        if count <= 0:
            continue
        root = out / split
        videos, annotations = [], []
        for i in range(count):
            clip_scene = video_scene(scene, i)
            clip = generate_clip(_clip_seed(seed, split_index, i), width, height, frames, max_objects=max_objects,
                                appearance=appearance, max_distractors=max_distractors, scene=clip_scene)
            name = f"vid{i:05d}"
            folder = root / "JPEGImages" / name
            try:
                folder.mkdir(parents=True, exist_ok=True)
                for t, frame in enumerate(clip.frames):
                    _, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                           [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                    (folder / f"{t:05d}.jpg").write_bytes(buf.tobytes())
            except OSError as exc:
                raise YtvisWriteError(f"{folder}: cannot write frames ({exc.strerror or exc})") from exc
            videos.append({"id": i + 1, "width": width, "height": height, "length": frames, "scene": clip_scene,
                           "file_names": [f"{name}/{t:05d}.jpg" for t in range(frames)]})
            for inst in clip.instances:
                annotations.append(_annotation(len(annotations) + 1, i + 1, inst, width, height))
        gt = {"info": {"description": "VPP Studio synthetic shapes", "split": split, "seed": seed,
                       "width": width, "height": height, "frames": frames, "max_objects": max_objects,
                       "appearance": appearance, "max_distractors": max_distractors,
                       "scene": scene},
              "licenses": [], "videos": videos, "annotations": annotations,
              "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CATEGORIES)]}
        ann = root / "instances.json"
        try:
            atomic_write_text(ann, json.dumps(gt, separators=(",", ":")))
        except OSError as exc:
            raise YtvisWriteError(f"{ann}: cannot write ({exc})") from exc
        written[split] = ann
    return written


def video_scene(scene: DatasetScene, index: int) -> Scene:
    """The scene of video ``index`` (0-based) in a dataset written with ``scene``."""
    if scene == "mixed":
        return "camouflage" if index % 2 else "plain"
    return scene


def _annotation(ann_id: int, video_id: int, inst: SyntheticInstance, width: int, height: int) -> dict:
    present = inst.present
    rles = iter(encode_masks(inst.masks[present]))
    segs = [next(rles) if p else None for p in present]
    return {"id": ann_id, "video_id": video_id, "category_id": inst.category_id, "iscrowd": 0,
            "segmentations": segs, "areas": [None if s is None else rle_area(s) for s in segs],
            "bboxes": [None if s is None else rle_bbox(s) for s in segs], "height": height, "width": width,
            "length": 1}
