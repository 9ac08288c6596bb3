"""A compact per-clip store of inference results, and its conversion to YouTube-VIS / DAVIS output.

A :class:`core.session_base.FrameResult` holds ``[M, H, W]`` bool masks: 20 instances of a 4K frame are
166 MB. :meth:`CompactFrame.from_result` keeps each mask as a compressed COCO RLE instead (a few
kilobytes), plus the small per-frame arrays (track IDs, classes, scores, the ``[S, gh, gw]`` kept
maps) and the measured numbers. :class:`ClipResults` holds one ``CompactFrame`` (or nothing yet)
per frame of a clip, all from **one** pass of a session, so track IDs are consistent.

:meth:`ClipResults.to_ytvis` gives the YTVIS results list: one entry per track with
``video_id``, ``category_id`` (score-weighted majority of the track's per-frame classes, ties to
the smaller id), ``score`` (mean of its per-frame scores) and ``segmentations`` (one RLE with str
``counts`` per frame, ``None`` where the track is absent). Instances whose mask is empty at frame
size are treated as absent. This module imports neither torch nor Qt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pycocotools import mask as mask_utils

from core.data.mask_runs import EncodedMasks
from core.data.rle import encode_mask, rle_areas

if TYPE_CHECKING:
    from core.session_base import FrameResult

#: Objects a DAVIS palette PNG can hold (more are written as 16-bit PNGs, see core.data.davis).
MAX_DAVIS_OBJECTS = 255


def encode_masks(masks: np.ndarray) -> tuple[dict, ...]:
    """``[M, H, W]`` bool -> M compressed RLEs (str ``counts``), one mask at a time.

    Encoding one mask per call keeps peak memory at one Fortran-ordered copy of a single mask (a
    batched call would copy all M) and lets other threads run between calls. A bool mask is copied once
    (to Fortran order, viewed as 0/1 bytes); other dtypes go through :func:`core.data.rle.encode_mask`.
    """
    return tuple(_encode_bool(m) if m.dtype == np.bool_ else encode_mask(m) for m in masks)


def _encode_bool(mask: np.ndarray) -> dict:
    """``[H, W]`` bool -> compressed RLE, the same as :func:`core.data.rle.encode_mask` with one copy fewer."""
    if mask.ndim != 2:
        return encode_mask(mask)
    rle = mask_utils.encode(np.asfortranarray(mask).view(np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


@dataclass(frozen=True)
class CompactFrame:
    """One frame's result with masks as RLE. ``M`` instances; arrays are read-only NumPy."""

    index: int
    height: int
    width: int
    track_ids: np.ndarray  # [M] int64
    category_ids: np.ndarray  # [M] int64, dataset ids (1-based)
    scores: np.ndarray  # [M] float32
    rles: tuple[dict, ...]  # M compressed RLEs, counts as str
    areas: np.ndarray | None  # [M] int64 mask areas in pixels: always recomputed from ``rles`` (see below)
    kept: np.ndarray  # [S, gh, gw] bool
    stage_names: tuple[str, ...]
    keep_ratio: float
    gflops: float
    ms: float

    def __post_init__(self) -> None:
        # The areas decide whether an instance is exported, drawn or kept: they are always those of the
        # masks themselves, never a stored number (a shard, a project or a caller saying 0 for a mask
        # that is not empty would silently drop the track from every export).
        object.__setattr__(self, "areas", _frozen(rle_areas(self.rles)))

    @classmethod
    def from_result(cls, result: FrameResult, index: int | None = None) -> CompactFrame:
        """Compress a session's :class:`FrameResult` (``index`` overrides ``result.index``). Masks given as a
        :class:`core.data.mask_runs.EncodedMasks` (InferenceSession's) are taken as they are: already encoded."""
        masks = result.masks if isinstance(result.masks, EncodedMasks) else np.asarray(result.masks)
        if masks.ndim != 3:
            raise ValueError(f"expected [M, H, W] masks, got shape {masks.shape}")
        m = masks.shape[0]
        for name in ("track_ids", "category_ids", "scores"):
            if len(getattr(result, name)) != m:
                raise ValueError(f"{name} has {len(getattr(result, name))} entries for {m} masks")
        rles = masks.rles() if isinstance(masks, EncodedMasks) else encode_masks(masks)
        return cls(
            index=int(result.index if index is None else index),
            height=int(masks.shape[1]),
            width=int(masks.shape[2]),
            track_ids=_frozen(np.asarray(result.track_ids, dtype=np.int64)),
            category_ids=_frozen(np.asarray(result.category_ids, dtype=np.int64)),
            scores=_frozen(np.asarray(result.scores, dtype=np.float32)),
            rles=rles,
            areas=None,  # computed from the RLEs
            kept=_frozen(np.asarray(result.kept, dtype=bool)),
            stage_names=tuple(result.stage_names),
            keep_ratio=float(result.keep_ratio),
            gflops=float(result.gflops),
            ms=float(result.ms),
        )

    @property
    def num_instances(self) -> int:
        return len(self.rles)

    def mask(self, k: int) -> np.ndarray:
        """Instance ``k``'s mask ``[H, W]`` bool (Fortran-ordered view of the decoded uint8)."""
        return mask_utils.decode(self.rles[k]).view(bool)

    def bboxes(self) -> np.ndarray:
        """``[M, 4]`` float boxes ``x, y, w, h`` (COCO convention), computed from the RLEs without decoding."""
        if not self.rles:
            return np.zeros((0, 4), np.float64)
        return np.asarray(mask_utils.toBbox(list(self.rles)), dtype=np.float64).reshape(-1, 4)

    @property
    def nbytes(self) -> int:
        """Approximate memory held (RLE strings and arrays)."""
        arrays = (self.track_ids, self.category_ids, self.scores, self.areas, self.kept)
        return sum(len(r["counts"]) + 64 for r in self.rles) + sum(a.nbytes for a in arrays) + 256


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class ClipResults:
    """Per-frame :class:`CompactFrame` objects of one pass over a clip of ``num_frames`` frames."""

    def __init__(self, num_frames: int, height: int, width: int) -> None:
        if num_frames < 0 or height <= 0 or width <= 0:
            raise ValueError(f"bad clip shape: {num_frames} frames of {width}x{height}")
        self.num_frames = int(num_frames)
        self.height = int(height)
        self.width = int(width)
        self._frames: list[CompactFrame | None] = [None] * self.num_frames
        self._count = 0
        self._nbytes = 0

    def add(self, frame: CompactFrame) -> None:
        if not 0 <= frame.index < self.num_frames:
            raise ValueError(f"frame index {frame.index} outside the clip of {self.num_frames} frames")
        if (frame.height, frame.width) != (self.height, self.width):
            raise ValueError(f"a {frame.width}x{frame.height} result in a {self.width}x{self.height} clip")
        old = self._frames[frame.index]
        if old is None:
            self._count += 1
        else:
            self._nbytes -= old.nbytes
        self._frames[frame.index] = frame
        self._nbytes += frame.nbytes

    def get(self, index: int) -> CompactFrame | None:
        return self._frames[index] if 0 <= index < self.num_frames else None

    def __contains__(self, index: int) -> bool:
        return self.get(index) is not None

    def __iter__(self) -> Iterator[CompactFrame]:
        return (f for f in self._frames if f is not None)

    @property
    def count(self) -> int:
        """Frames that have a result."""
        return self._count

    @property
    def is_complete(self) -> bool:
        return self._count == self.num_frames

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def series(self) -> dict[str, np.ndarray]:
        """Per-frame ``keep_ratio``, ``gflops``, ``ms`` and ``instances`` as float arrays (NaN where missing)."""
        out = {k: np.full(self.num_frames, np.nan) for k in ("keep_ratio", "gflops", "ms", "instances")}
        for f in self:
            out["keep_ratio"][f.index] = f.keep_ratio
            out["gflops"][f.index] = f.gflops
            out["ms"][f.index] = f.ms
            out["instances"][f.index] = f.num_instances
        return out

    def track_scores(self, max_tracks: int | None = None) -> dict[int, np.ndarray]:
        """Track ID -> ``[T]`` per-frame score (NaN where absent); with ``max_tracks``, the tracks
        with the largest summed score."""
        scores: dict[int, np.ndarray] = {}
        for f in self:
            for tid, s in zip(f.track_ids.tolist(), f.scores.tolist()):
                if tid not in scores:
                    scores[tid] = np.full(self.num_frames, np.nan)
                scores[tid][f.index] = s
        if max_tracks is not None and len(scores) > max_tracks:
            best = sorted(scores, key=lambda t: -np.nansum(scores[t]))[:max_tracks]
            scores = {t: scores[t] for t in sorted(best)}
        return scores

    def to_ytvis(self, video_id: int) -> list[dict]:
        """YTVIS results: one entry per track (ascending track ID); see the module docstring."""
        segs: dict[int, list] = {}
        score_lists: dict[int, list[float]] = defaultdict(list)
        votes: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for f in self:
            for k in range(f.num_instances):
                if f.areas[k] == 0:
                    continue
                tid = int(f.track_ids[k])
                if tid not in segs:
                    segs[tid] = [None] * self.num_frames
                segs[tid][f.index] = dict(f.rles[k])
                score = float(f.scores[k])
                score_lists[tid].append(score)
                votes[tid][int(f.category_ids[k])] += score
        out = []
        for tid in sorted(segs):
            category = max(votes[tid].items(), key=lambda kv: (kv[1], -kv[0]))[0]
            out.append({"video_id": int(video_id), "category_id": int(category),
                        "score": float(np.mean(score_lists[tid])), "segmentations": segs[tid]})
        return out

    def davis_objects(self, max_objects: int | None = None) -> list[int]:
        """Track IDs written as DAVIS objects 1..K: by summed score, best first; every track unless
        ``max_objects`` is given (the export writes them all: 16-bit PNGs past 255 objects)."""
        total: dict[int, float] = defaultdict(float)
        for f in self:
            for k in range(f.num_instances):
                if f.areas[k] > 0:
                    total[int(f.track_ids[k])] += float(f.scores[k])
        order = sorted(total, key=lambda t: (-total[t], t))
        return order if max_objects is None else order[:max_objects]

    def davis_label_map(self, index: int, objects: list[int]) -> np.ndarray:
        """Frame ``index`` as a ``[H, W]`` label map: object k (1-based) = ``objects[k-1]``; uint8 for up to
        255 objects, else uint16. Where instances overlap the higher-scored one keeps the pixel. A missing
        frame is all 0."""
        dtype = np.uint8 if len(objects) <= MAX_DAVIS_OBJECTS else np.uint16
        labels = np.zeros((self.width, self.height), dtype)  # transposed: RLEs decode column-major
        f = self.get(index)
        if f is None:
            return labels.T
        label_of = {tid: k + 1 for k, tid in enumerate(objects)}
        for k in np.argsort(f.scores, kind="stable"):  # low scores first, so high scores end on top
            lab = label_of.get(int(f.track_ids[k]))
            if lab is not None and f.areas[k] > 0:
                np.putmask(labels, f.mask(int(k)).T, lab)
        return np.ascontiguousarray(labels.T)
