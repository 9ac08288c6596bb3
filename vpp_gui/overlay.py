"""Pure NumPy overlay rendering (no Qt): instance masks, contours, labels and the kept/pruned heatmap.

Each layer is an RGBA ``[H, W, 4]`` uint8 image at the frame's size; the view stacks them over the
frame and applies each layer's opacity when it paints, so changing an opacity re-renders nothing.
:func:`composite` blends them on the CPU for screenshots and tests.

Token grid geometry (see ``core.preprocess.prepare_frame``): the model resizes the frame so its long
side is ``long_side`` (``rh = round(h * s)``, ``rw = round(w * s)``, ``s = long_side / max(h, w)``),
pads right and bottom to a multiple of ``patch`` and cuts ``patch x patch`` tokens. Frame pixel
``(y, x)`` therefore belongs to token ``(floor((y + 0.5) * rh / h / patch), floor((x + 0.5) * rw / w / patch))``;
padding-only tokens fall outside the frame and are not drawn.

At the view's resolution (``render_layers(..., size=(h, w))``, a 4K frame shown fitted in a window) every
layer is the full-size layer sampled at ``h x w`` display pixels, nearest neighbour: display pixel
``(j, i)`` shows frame pixel ``(sample_index(H, h)[j], sample_index(W, w)[i])``, the one under its centre.
The masks are sampled from their RLE runs without painting a full-size map (:func:`instance_map_at`), so
a step costs the display's pixels, not the frame's; labels stay in frame pixels. The view stretches
such a layer over the frame's rectangle, so it lines up with the frame at either resolution.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # annotations only: the GUI gets results from core.app's run control
    from core.results import CompactFrame


#: Name of the heatmap choice that shows, per token, how many prune points it survived.
DEPTH_STAGE = "survival depth"


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-spread RGB colour for a track ID (golden-ratio hue steps)."""
    hue = (0.13 + 0.6180339887 * int(track_id)) % 1.0
    sat = 0.65 + 0.25 * ((int(track_id) * 7) % 3) / 2
    r, g, b = colorsys.hsv_to_rgb(hue, sat, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass(frozen=True)
class Label:
    x: float  # top-left corner, frame pixels
    y: float
    text: str
    color: tuple[int, int, int]
    width: float = 0.0  # estimated, frame pixels (see labels())


def rle_runs(counts: bytes | str) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string (alternating background / foreground, column-major).

    The same decoding as pycocotools' ``rleFrString`` (6-bit characters holding 5 data bits, a
    continuation bit and a sign bit; runs from the third on are stored as differences to the run two
    places earlier), vectorised: about three times faster than ``mask_utils.decode`` plus a copy,
    because the runs are painted straight into the instance map.
    """
    c = np.frombuffer(counts.encode("ascii") if isinstance(counts, str) else counts, np.uint8).astype(np.int64) - 48
    ends = np.flatnonzero((c & 0x20) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    shift = 5 * (np.arange(len(c)) - np.repeat(starts, ends - starts + 1))
    x = np.add.reduceat((c & 0x1F) << shift, starts) if len(c) else np.zeros(0, np.int64)
    negative = (c[ends] & 0x10) != 0
    x = x - (negative.astype(np.int64) << (5 * (ends - starts + 1)))
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])  # odd runs: deltas from run 3 on
    runs[2::2] = np.cumsum(x[2::2])  # even runs: deltas from run 4 on (run 0 stays as is)
    return runs


#: Instances one frame's map can hold (uint16 values; a project holds fewer tracks than this).
MAX_MAP_INSTANCES = 65535


def map_dtype(num_instances: int) -> type:
    """uint8 up to 255 instances on a frame (the common case, half the memory), else uint16."""
    return np.uint8 if num_instances <= 255 else np.uint16


def instance_map(frame: CompactFrame) -> np.ndarray:
    """``[H, W]`` uint8 (uint16 past 255 instances): 0 background, ``k + 1`` where instance ``k`` is on
    top (higher score on top).

    RLEs are column-major, so the map is painted as ``[W, H]`` and transposed once at the end
    (``cv2.transpose``: far faster than NumPy's strided copy); every layer below is C-contiguous,
    which the view needs to show an image without copying it again.
    """
    if frame.num_instances > MAX_MAP_INSTANCES:
        raise ValueError(f"{frame.num_instances} instances on one frame are more than the {MAX_MAP_INSTANCES} "
                         "VPP Studio can draw")
    dtype = map_dtype(frame.num_instances)
    ids = np.zeros(frame.width * frame.height, dtype)
    for k in np.argsort(frame.scores, kind="stable"):
        if frame.areas[k] == 0:
            continue
        runs = rle_runs(frame.rles[k]["counts"])
        values = np.zeros(len(runs), dtype)
        values[1::2] = k + 1
        painted = np.repeat(values, runs)
        np.copyto(ids, painted, where=painted.view(bool) if dtype is np.uint8 else painted != 0)
    return cv2.transpose(ids.reshape(frame.width, frame.height))


def sample_index(length: int, size: int) -> np.ndarray:
    """Frame pixel (row or column) under the centre of each of ``size`` display pixels spanning ``length``."""
    if size < 1 or length < 1:
        raise ValueError(f"sizes must be >= 1, got a frame of {length} and a display of {size} pixels")
    return np.minimum(((np.arange(size) + 0.5) * (length / size)).astype(np.int64), length - 1)


def _sampled_before(ends: np.ndarray, height: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """How many sampled pixels (columns ``cols`` x rows ``rows``, column-major) lie before each flat
    column-major frame position in ``ends``."""
    col, row = np.divmod(ends, height)
    c = np.searchsorted(cols, col, side="left")  # sampled columns before this one
    on = np.zeros(len(ends), bool)
    inside = c < len(cols)
    on[inside] = cols[c[inside]] == col[inside]
    return c * len(rows) + np.where(on, np.searchsorted(rows, row, side="left"), 0)


def instance_map_at(frame: CompactFrame, height: int, width: int) -> np.ndarray:
    """:func:`instance_map` sampled at ``height x width`` display pixels (see the module docstring), equal to
    ``instance_map(frame)[rows][:, cols]`` but computed from the RLE runs: each run is cut down to the sampled
    pixels it covers, so only ``height * width`` values are painted per instance."""
    if frame.num_instances > MAX_MAP_INSTANCES:
        raise ValueError(f"{frame.num_instances} instances on one frame are more than the {MAX_MAP_INSTANCES} "
                         "VPP Studio can draw")
    if (height, width) == (frame.height, frame.width):
        return instance_map(frame)
    rows, cols = sample_index(frame.height, height), sample_index(frame.width, width)
    dtype = map_dtype(frame.num_instances)
    ids = np.zeros(width * height, dtype)
    for k in np.argsort(frame.scores, kind="stable"):
        if frame.areas[k] == 0:
            continue
        runs = rle_runs(frame.rles[k]["counts"])
        before = _sampled_before(np.cumsum(runs), frame.height, rows, cols)
        sampled = np.diff(before, prepend=0)
        values = np.zeros(len(runs), dtype)
        values[1::2] = k + 1
        painted = np.repeat(values, sampled)
        np.copyto(ids, painted, where=painted.view(bool) if dtype is np.uint8 else painted != 0)
    return cv2.transpose(ids.reshape(width, height))


def _lut(frame: CompactFrame, *, hollow: frozenset[int] = frozenset(),
         selected: frozenset[int] = frozenset()) -> np.ndarray:
    """Colour per instance-map value; ``hollow`` tracks get no fill, ``selected`` ones white outlines."""
    lut = np.zeros((max(256, frame.num_instances + 1), 4), np.uint8)
    for k, tid in enumerate(frame.track_ids.tolist()):
        lut[k + 1, :3] = (255, 255, 255) if tid in selected else track_color(tid)
        lut[k + 1, 3] = 0 if tid in hollow else 255
    return lut


def render_masks(ids: np.ndarray, frame: CompactFrame, hollow: frozenset[int] = frozenset()) -> np.ndarray:
    """Filled masks in track colours, fully opaque (the view applies the layer's opacity); ``hollow``
    tracks (rejected ones) are left unfilled."""
    lut = _lut(frame, hollow=hollow)
    return np.take(lut, ids, axis=0)


def contour_width(height: int, width: int) -> int:
    """Contour thickness in frame pixels: 2 px at 720p, growing with the frame."""
    return max(1, round(max(height, width) / 640))


def render_contours(ids: np.ndarray, frame: CompactFrame, thickness: int | None = None,
                    selected: frozenset[int] = frozenset()) -> np.ndarray:
    """Instance outlines (inner edges, ``thickness`` px) in track colours (``selected`` ones white)."""
    t = contour_width(*ids.shape) if thickness is None else thickness
    kernel = np.ones((2 * t + 1, 2 * t + 1), np.uint8) if t > 1 else np.ones((3, 3), np.uint8)
    ids = np.ascontiguousarray(ids)
    lo = cv2.erode(ids, kernel, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(ids, kernel, borderType=cv2.BORDER_REPLICATE)
    if ids.dtype == np.uint8:
        np.not_equal(lo, hi, out=lo.view(bool))  # lo != hi exactly where a pixel has another id within t
        near = lo.view(bool)
    else:
        near = lo != hi
    edge = np.where(near, ids, ids.dtype.type(0))
    return np.take(_lut(frame, selected=selected), edge, axis=0)


def token_index(length: int, resized: int, patch: int, cells: int) -> np.ndarray:
    """Token row (or column) of each of ``length`` frame pixels."""
    idx = ((np.arange(length) + 0.5) * (resized / length) / patch).astype(np.int64)
    return np.minimum(idx, cells - 1)


def resized_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """The model's resized (unpadded) frame size, as ``core.preprocess.prepare_frame`` computes it."""
    s = long_side / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def heat_values(kept: np.ndarray, stage: int | str) -> tuple[np.ndarray, int]:
    """(``[gh, gw]`` uint8 levels, number of levels - 1) for one prune point or :data:`DEPTH_STAGE`."""
    if kept.ndim != 3 or kept.shape[0] == 0:
        raise ValueError(f"kept maps must be [S, gh, gw] with S >= 1, got shape {kept.shape}")
    if stage == DEPTH_STAGE:
        return kept.sum(axis=0).astype(np.uint8), kept.shape[0]
    return kept[int(stage)].astype(np.uint8), 1


def heat_lut(levels: int) -> np.ndarray:
    """RGBA per level: 0 = pruned (dark, opaque), ``levels`` = kept to the end (light warm tint)."""
    lut = np.zeros((256, 4), np.uint8)
    for v in range(levels + 1):
        t = v / max(levels, 1)
        # dark blue-violet for early pruning, through magenta, to a faint warm yellow for kept
        r, g, b = colorsys.hsv_to_rgb(0.72 - 0.58 * t, 0.85 - 0.35 * t, 0.18 + 0.8 * t)
        lut[v] = (int(r * 255), int(g * 255), int(b * 255), int(215 - 175 * t))
    return lut


def heat_legend(stage_names: tuple[str, ...], stage: int | str, background: tuple[int, int, int] = (110, 110, 110)
                ) -> list[tuple[str, tuple[int, int, int], str]]:
    """(level, colour, meaning) per heatmap level, for the controls' legend.

    Survival depth: level ``v`` = the token survived ``v`` of the ``S`` prune points ("0", pruned at
    the first, ... "S", kept to the end). One prune point: "pruned" / "kept" there. Colours are the
    heatmap's, blended over ``background`` with their own alpha.
    """
    names = tuple(stage_names)
    if stage == DEPTH_STAGE:
        n = len(names)
        lut = heat_lut(n)
        rows = [(str(v), f"pruned at {names[v]}") for v in range(n)] + [(str(n), "kept to the end")]
    else:
        at = names[int(stage)] if 0 <= int(stage) < len(names) else f"prune point {stage}"
        lut = heat_lut(1)
        rows = [("pruned", f"pruned at {at}"), ("kept", f"kept at {at}")]
    out = []
    for v, (level, meaning) in enumerate(rows):
        a = float(lut[v, 3]) / 255.0
        rgb = tuple(round(c * a + b * (1 - a)) for c, b in zip(lut[v, :3].tolist(), background))
        out.append((level, rgb, meaning))
    return out


def render_heatmap(kept: np.ndarray, stage: int | str, height: int, width: int, *, long_side: int,
                   patch: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Kept/pruned tokens mapped back onto an ``height x width`` frame (see the module docstring); with
    ``size=(h, w)``, sampled at ``h x w`` display pixels."""
    values, levels = heat_values(kept, stage)
    gh, gw = values.shape
    rh, rw = resized_size(height, width, long_side)
    rows = token_index(height, rh, patch, gh)
    cols = token_index(width, rw, patch, gw)
    if size is not None and tuple(size) != (height, width):
        rows, cols = rows[sample_index(height, size[0])], cols[sample_index(width, size[1])]
    small = np.take(heat_lut(levels), values, axis=0)  # [gh, gw, 4]
    return np.take(np.take(small, rows, axis=0), cols, axis=1)


def mask_top(counts: bytes | str, height: int) -> tuple[int, int] | None:
    """(x, y) of the mask's top-most pixel (the left-most one of that row), from its RLE; None if empty."""
    runs = rle_runs(counts)
    starts = np.cumsum(runs) - runs
    fg = np.flatnonzero((np.arange(len(runs)) % 2 == 1) & (runs > 0))
    if not len(fg):
        return None
    p, n = starts[fg], runs[fg]
    col, row = p // height, p % height
    wraps = row + n > height  # the run goes on at the top of the next column
    top_row = np.where(wraps, 0, row)
    top_col = np.where(wraps & (row > 0), col + 1, col)
    y = int(top_row.min())
    return int(top_col[top_row == y].min()), y


#: How far (in label lines) a label may move from its place to avoid an earlier one: down, up, down ...
LABEL_SHIFTS = (0, 1, -1, 2, -2, 3)
LABEL_CHAR_WIDTH = 0.55  # of a line: an estimate of the text's width in frame pixels


def label_line(height: int) -> float:
    """Height of one label in frame pixels (the stacking step)."""
    return max(12.0, height / 40)


def _covers(taken: list[tuple[float, float, float]], x: float, y: float, width: float, line: float) -> bool:
    return any(abs(y - ty) < line and x < tx + tw and tx < x + width for tx, ty, tw in taken)


def labels(frame: CompactFrame, names: dict[int, str] | None = None) -> list[Label]:
    """One label per instance, "category #track score", next to its mask.

    A label sits just above the top-most pixel of its mask (starting at that pixel's column), or on it
    when there is no room above, kept inside the frame (moved left as far as its estimated width
    needs at the right edge). Labels are placed best score first; one that would
    cover an earlier label tries a line down, a line up, two down ... (:data:`LABEL_SHIFTS`) and, if
    every place near its mask is taken, stays at its own place: it never drifts away from its mask.
    """
    out: list[Label] = []
    h, w = frame.height, frame.width
    line = label_line(h)
    taken: list[tuple[float, float, float]] = []  # x, y, width
    for k in np.argsort(-frame.scores, kind="stable"):
        if frame.areas[k] == 0:
            continue
        top = mask_top(frame.rles[k]["counts"], h)
        if top is None:
            continue
        cid = int(frame.category_ids[k])
        name = (names or {}).get(cid, f"class {cid}")
        tid = int(frame.track_ids[k])
        text = f"{name} #{tid} {float(frame.scores[k]):.2f}"
        width = len(text) * LABEL_CHAR_WIDTH * line
        x = float(min(max(0.0, top[0]), max(0.0, w - width)))
        y0 = float(top[1] - line if top[1] >= line else top[1])
        places = [min(max(0.0, y0 + s * line), max(0.0, h - line)) for s in LABEL_SHIFTS]
        y = next((p for p in places if not _covers(taken, x, p, width, line)), places[0])
        taken.append((x, y, width))
        out.append(Label(x, y, text, track_color(tid), width))
    return out


@dataclass
class Layers:
    """Rendered layers of one frame (``None`` where a layer is off or has nothing to show)."""

    masks: np.ndarray | None = None
    contours: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    labels: list[Label] | None = None


def render_layers(frame: CompactFrame, *, masks: bool = True, contours: bool = True, heatmap: bool = True,
                  labels_on: bool = True, stage: int | str = 0, long_side: int = 640, patch: int = 16,
                  names: dict[int, str] | None = None, hollow: frozenset[int] = frozenset(),
                  selected: frozenset[int] = frozenset(), size: tuple[int, int] | None = None) -> Layers:
    """Everything the view needs for one frame; decodes each mask once.

    ``hollow``: tracks drawn as outlines only (rejected ones); ``selected``: tracks outlined in white
    (drawn even when contours are off, so the tools' target is always visible). ``size=(h, w)``: the
    image layers at ``h x w`` display pixels (the view's resolution, see the module docstring), labels in
    frame pixels as always; None: at the frame's size.
    """
    out = Layers()
    h, w = (frame.height, frame.width) if size is None else (int(size[0]), int(size[1]))
    if (masks or contours or selected) and frame.num_instances:
        ids = instance_map_at(frame, h, w)
        if masks:
            out.masks = render_masks(ids, frame, hollow)
        if contours or selected or hollow:
            if not contours:  # only the selected / hollow outlines
                keep = [k + 1 for k, t in enumerate(frame.track_ids.tolist()) if t in selected or t in hollow]
                ids = np.where(np.isin(ids, keep), ids, ids.dtype.type(0))
            out.contours = render_contours(ids, frame, selected=selected)
    if heatmap and frame.kept.shape[0]:
        out.heatmap = render_heatmap(frame.kept, stage, frame.height, frame.width, long_side=long_side, patch=patch,
                                     size=(h, w))
    if labels_on:
        out.labels = labels(frame, names)
    return out


def composite(rgb: np.ndarray, layers: Layers, opacity: dict[str, float] | None = None) -> np.ndarray:
    """Blend layers over an RGB frame, heatmap first, then masks, then contours (labels are not drawn)."""
    opacity = {"heatmap": 0.6, "masks": 0.5, "contours": 1.0, **(opacity or {})}
    out = rgb.astype(np.float32)
    for name in ("heatmap", "masks", "contours"):
        layer = getattr(layers, name)
        if layer is None:
            continue
        a = layer[..., 3:4].astype(np.float32) * (opacity[name] / 255.0)
        out = out * (1.0 - a) + layer[..., :3].astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
