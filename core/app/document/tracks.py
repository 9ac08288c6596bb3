"""Tracks of a document: one object over the frames of a clip, its label, its review state, its masks.

A :class:`Track` is treated as immutable: every edit builds a new one (the undo stack keeps the old
one). The only exception is a *live* model track, which the running pass extends frame by frame
until a person touches it (see :mod:`core.app.document.document`).

Masks are compressed COCO RLEs with str ``counts`` at the clip's full frame size, so a 4K clip with
many tracks stays small in memory. The helpers at the bottom do the pixel work of the mask tools
(paint, erase, polygon, hole filling) on NumPy bool masks.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from core.data.rle import RLE, decode_rle, encode_mask

Review = Literal["unreviewed", "accepted", "rejected"]
Origin = Literal["model", "user", "import"]
REVIEW_STATES: tuple[Review, ...] = ("unreviewed", "accepted", "rejected")
ORIGINS: tuple[Origin, ...] = ("model", "user", "import")


@dataclass(frozen=True, slots=True)
class FrameMask:
    """One frame of a track: the mask as compressed RLE, its score and area (pixels)."""

    rle: RLE
    score: float
    area: int

    @classmethod
    def from_mask(cls, mask: np.ndarray, score: float) -> FrameMask:
        rle = encode_mask(mask)
        return cls(rle, float(score), int(mask_utils.area(_coco(rle))))

    @classmethod
    def from_rle(cls, rle: RLE, score: float, area: int | None = None) -> FrameMask:
        rle = {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}
        if area is None:
            area = int(mask_utils.area(_coco(rle)))
        return cls(rle, float(score), int(area))

    def decode(self) -> np.ndarray:
        """``[H, W]`` bool."""
        return decode_rle(self.rle)

    def same(self, other: FrameMask | None) -> bool:
        return other is not None and self.rle["counts"] == other.rle["counts"] and self.score == other.score


@dataclass(frozen=True)
class Track:
    """One object through the clip.

    ``origin``: "model" (from an inference pass), "user" (drawn by a person) or "import" (read from a
    file). ``edited``: a person changed its masks or frames. A track is *protected* (kept exactly
    as it is when the model runs again) when a person created, imported, edited or reviewed it.
    ``keyframes``: the frames whose mask a person drew, edited or imported; its other frames come from
    the model or from propagation (:mod:`core.app.document.propagation`), which never overwrites a keyframe.
    Always a subset of ``frames``.
    """

    id: int
    category_id: int
    origin: Origin = "model"
    review: Review = "unreviewed"
    edited: bool = False
    frames: Mapping[int, FrameMask] = field(default_factory=dict)
    note: str = ""  # where it came from (file name, run), shown as a tooltip
    keyframes: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.keyframes, frozenset):
            object.__setattr__(self, "keyframes", frozenset(self.keyframes))
        if not self.keyframes <= self.frames.keys():
            object.__setattr__(self, "keyframes", frozenset(k for k in self.keyframes if k in self.frames))
        if self.origin not in ORIGINS:
            raise ValueError(f"track {self.id}: unknown origin {self.origin!r}; valid: {', '.join(ORIGINS)}")
        if self.review not in REVIEW_STATES:
            raise ValueError(f"track {self.id}: unknown review state {self.review!r}; "
                             f"valid: {', '.join(REVIEW_STATES)}")

    @property
    def protected(self) -> bool:
        return self.origin != "model" or self.edited or self.review != "unreviewed"

    @property
    def score(self) -> float:
        """Mean per-frame score (what the YTVIS export writes); 0 for a track without frames."""
        if not self.frames:
            return 0.0
        return float(np.mean([f.score for f in self.frames.values()]))

    @property
    def first(self) -> int | None:
        return min(self.frames) if self.frames else None

    @property
    def last(self) -> int | None:
        return max(self.frames) if self.frames else None

    def nearest_frame(self, frame: int) -> int | None:
        """``frame`` when the track has a mask there, else its frame closest to it (the earlier one on a
        tie), None without frames: where to show the track without leaving the frame a person is on."""
        if frame in self.frames or not self.frames:
            return frame if self.frames else None
        return min(self.frames, key=lambda i: (abs(i - frame), i))

    def with_(self, **changes) -> Track:
        """A copy with ``changes`` (``frames`` is copied so the two never share a dict; keyframes whose
        frame is gone are dropped)."""
        frames = changes.pop("frames", self.frames)
        return replace(self, frames=dict(frames), **changes)

    def keyed(self, frames) -> Track:
        """A copy whose keyframes also hold ``frames`` (those the track has a mask on)."""
        add = {int(f) for f in frames} & self.frames.keys()
        if add <= self.keyframes:
            return self
        return replace(self, frames=dict(self.frames), keyframes=self.keyframes | add)


# -- pixel helpers of the mask tools ----------------------------------------------------------------


def _coco(rle: RLE) -> dict:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def check_mask(mask: np.ndarray, height: int, width: int, what: str = "mask") -> np.ndarray:
    """``mask`` as ``[H, W]`` bool at the clip's size, or a ValueError saying what is wrong."""
    m = np.asarray(mask)
    if m.shape != (height, width):
        raise ValueError(f"{what} has shape {m.shape}; the clip's frames are {height}x{width} (height x width)")
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number) or not np.isfinite(m).all():
            raise ValueError(f"{what} must be boolean (or 0/1 numbers), got dtype {m.dtype}")
        m = m != 0
    return m


def brush_mask(points: Sequence[tuple[float, float]], radius: float, height: int, width: int) -> np.ndarray:
    """A stroke through ``points`` (x, y in pixels) with round ends, ``radius`` pixels: ``[H, W]`` bool."""
    canvas = np.zeros((height, width), np.uint8)
    draw_stroke(canvas, points, radius)
    return canvas.view(bool)


def draw_stroke(canvas: np.ndarray, points: Sequence[tuple[float, float]], radius: float, value: int = 1) -> None:
    """Draw a round brush stroke into a ``[H, W]`` uint8 ``canvas`` in place (cheap: only the stroke's pixels)."""
    r = max(1, round(radius))
    pts = [(round(x), round(y)) for x, y in points]
    if not pts:
        return
    if len(pts) == 1:
        cv2.circle(canvas, pts[0], r, value, thickness=-1, lineType=cv2.LINE_8)
        return
    for a, b in itertools.pairwise(pts):
        cv2.line(canvas, a, b, value, thickness=2 * r + 1, lineType=cv2.LINE_8)
        cv2.circle(canvas, b, r, value, thickness=-1, lineType=cv2.LINE_8)
    cv2.circle(canvas, pts[0], r, value, thickness=-1, lineType=cv2.LINE_8)


def polygon_mask(points: Sequence[tuple[float, float]], height: int, width: int) -> np.ndarray:
    """The filled polygon through ``points`` (x, y; at least 3): ``[H, W]`` bool."""
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
    canvas = np.zeros((height, width), np.uint8)
    pts = np.round(np.asarray(points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8)
    return canvas.view(bool)


def fill_holes(mask: np.ndarray, point: tuple[int, int] | None = None) -> np.ndarray:
    """``mask`` with its holes filled: all of them, or only the one containing ``point`` (x, y).

    A hole is a background region that does not touch the frame's border. A ``point`` on the mask or
    outside any hole changes nothing.
    """
    background = (~mask).astype(np.uint8)
    count, labels = cv2.connectedComponents(background, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = np.setdiff1d(np.arange(1, count), border)
    if point is not None:
        x, y = int(point[0]), int(point[1])
        if not (0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]):
            return mask.copy()
        holes = holes[holes == labels[y, x]]
    if holes.size == 0:
        return mask.copy()
    return mask | np.isin(labels, holes)


def rle_iou(a: Sequence[RLE], b: Sequence[RLE]) -> np.ndarray:
    """``[len(a), len(b)]`` mask IoU, computed on the RLEs (no decoding)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou([_coco(r) for r in a], [_coco(r) for r in b], [0] * len(b)))
