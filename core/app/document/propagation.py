"""Carry a track's mask through the clip with dense optical flow: no learned weights, works offline.

One step moves a soft mask from frame ``a`` to the next frame ``b``:

1. OpenCV's DIS flow from ``b`` back to ``a`` on a reduced grey copy (long side
   :attr:`PropagationOptions.flow_long_side`), so every pixel of ``b`` knows where it came from.
2. Per-pixel flow bleeds at object edges (DIS smooths over them): background revealed behind a moving
   object inherits the object's motion and the mask grows a tail that never leaves. So the motions of
   the object's *interior* are fitted as affine maps (RANSAC: the dominant one, then up to
   :attr:`PropagationOptions.parts` - 1 more for parts moving on their own, such as a swinging arm),
   and the mask's edge band moves with the fitted motion closest to each point's own flow, while the
   interior keeps the per-pixel flow. On ``davis_car_shadow`` this takes one keyframe propagated
   over 39 frames from J 0.61 (plain per-pixel warping) to about 0.85; on an articulated synthetic
   object it keeps the limb that a single fitted motion loses (``tests/test_propagation.py``).
3. The soft mask is resampled only inside the object's box plus the largest motion, at the frame's
   full size: masks are never reduced, and a 4K frame costs what its object costs.

A step is *unreliable* when too few interior points agree on the motion (RANSAC inlier share below
:attr:`PropagationOptions.min_inliers`) and the mask *vanishes* when its area falls below
:attr:`PropagationOptions.min_area` pixels or a tenth of the seed's; propagation stops there and says
which frame and why (:class:`Stop`).

Between two keyframes both sides are carried toward each other and blended by distance (the weight of
a side falls linearly from 1 at its keyframe to 0 at the other), so each frame leans on its nearer
keyframe. Where one side stopped early, the other side alone fills the frame.

This module is pure computation over immutable inputs (a :class:`~core.app.document.tracks.Track` and a
frame reader) so it can run on a worker thread; :meth:`core.app.document.Document.commit_propagation`
applies its result as one undoable command. :func:`plan` decides which frames a request fills.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from core.app.document.tracks import FrameMask, Track

FrameReader = Callable[[int], np.ndarray]  # frame index -> [H, W, 3] RGB uint8
Progress = Callable[[int, int], None]  # (frames done, frames planned)
Snap = Callable[[int, np.ndarray], np.ndarray]  # (frame, propagated mask) -> mask to keep

_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclass(frozen=True)
class PropagationOptions:
    """How masks are carried. The defaults were chosen on ``davis_car_shadow`` (see the README table)."""

    flow_long_side: int = 400  # flow runs on a grey copy this long (masks stay at full size)
    preset: str = "ultrafast"  # DIS preset: ultrafast, fast, medium
    finest_scale: int | None = 1  # DIS's finest pyramid level (None: the preset's; 1 = half the flow copy)
    object_motion: bool = True  # move the edge band with the object's fitted affine motion
    interior: float = 0.05  # interior = mask eroded by this share of sqrt(area)
    band: float = 0.3  # edge band width (share of sqrt(area)) that follows the fitted motion
    parts: int = 3  # at most this many motions (a body and its limbs) are fitted to the interior
    min_inliers: float = 0.25  # below this RANSAC inlier share the motion is unreliable: stop
    max_mismatch: float = 0.3  # moved-mask appearance error over the object's own contrast above which: stop
    mismatch_floor: float = 6.0  # ... unless the error is below this many grey levels (flat objects)
    min_area: int = 16  # a mask smaller than this (pixels) has vanished: stop
    min_area_ratio: float = 0.1  # ... or smaller than this share of the seed's area

    def __post_init__(self) -> None:
        if self.preset not in _PRESETS:
            raise ValueError(f"unknown DIS preset {self.preset!r}; valid: {', '.join(_PRESETS)}")
        if self.flow_long_side < 32:
            raise ValueError(f"flow_long_side must be at least 32 pixels, got {self.flow_long_side}")
        for name in ("interior", "band", "min_inliers", "min_area_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Stop:
    """Propagation from ``seed`` stopped before ``frame``: ``reason`` says why (shown to the person)."""

    seed: int
    frame: int
    reason: str

    def __str__(self) -> str:
        return f"stopped at frame {self.frame} (from frame {self.seed}): {self.reason}"


@dataclass(frozen=True)
class PropagationResult:
    """What a run computed: new masks for ``frames`` of track ``track_id`` (never one of its keyframes)."""

    track_id: int
    start: int
    stop: int
    masks: dict[int, FrameMask] = field(default_factory=dict)
    stops: tuple[Stop, ...] = ()
    cancelled: bool = False
    planned: int = 0  # frames the request covered (filled or not)

    @property
    def frames(self) -> list[int]:
        return sorted(self.masks)

    def summary(self) -> str:
        """One line for the status bar: what was filled, where and why it stopped."""
        if self.masks:
            done = f"filled {len(self.masks)} of {self.planned} frame(s) ({min(self.masks)}–{max(self.masks)})"
        else:
            done = f"filled none of {self.planned} frame(s)"
        parts = [f"track {self.track_id}: {done}"]
        if self.cancelled:
            parts.append("cancelled; the finished frames are kept")
        parts += [str(s) for s in self.stops]
        return "; ".join(parts)


@dataclass(frozen=True)
class Segment:
    """Frames strictly between ``left`` and ``right`` (either may be None: one-sided), walked ``from_``."""

    left: int | None
    right: int | None
    frames: tuple[int, ...]


def plan(track: Track, start: int, stop: int, num_frames: int) -> list[Segment]:
    """The segments that propagating ``track`` from ``start`` toward ``stop`` (inclusive) fills.

    Anchors are the track's keyframes plus ``start`` (which must hold a mask). Frames between two
    anchors inside the range are filled from both; frames after the last anchor (toward ``stop``) from
    that anchor alone. Keyframes are anchors, never targets.
    """
    if not (0 <= start < num_frames and 0 <= stop < num_frames):
        raise ValueError(f"frames {start}..{stop} are outside the clip (0..{num_frames - 1})")
    if start not in track.frames:
        raise ValueError(f"track {track.id} has no mask on frame {start}; draw or select one there first")
    if start == stop:
        return []
    step = 1 if stop > start else -1
    lo, hi = min(start, stop), max(start, stop)
    anchors = sorted({start} | {k for k in track.keyframes if lo <= k <= hi}, reverse=step < 0)
    segments = []
    for a, b in itertools.pairwise(anchors):
        inner = tuple(range(a + step, b, step))
        if inner:
            segments.append(Segment(a, b, inner))
    last = anchors[-1]
    if last != stop:
        segments.append(Segment(last, None, tuple(range(last + step, stop + step, step))))
    return segments


def plan_fill(track: Track, frame: int) -> list[Segment]:
    """Fill between the keyframes around ``frame``: both gaps when ``frame`` is itself a keyframe."""
    keys = sorted(track.keyframes)
    if not keys:
        raise ValueError(f"track {track.id} has no keyframes: draw or correct its mask on a frame first")
    before = [k for k in keys if k < frame]
    after = [k for k in keys if k > frame]
    if frame in track.keyframes:
        pairs = [(before[-1], frame)] if before else []
        pairs += [(frame, after[0])] if after else []
    else:
        pairs = [(before[-1], after[0])] if before and after else []
    if not pairs:
        raise ValueError(f"frame {frame} of track {track.id} is not between two keyframes "
                         f"(keyframes: {_short(keys)}); propagate forward or backward instead")
    return [Segment(a, b, tuple(range(a + 1, b))) for a, b in pairs if b - a > 1]


class FlowCache:
    """DIS flow between neighbouring frames on reduced grey copies (few kept: a run walks in order)."""

    def __init__(self, frames: FrameReader, height: int, width: int, options: PropagationOptions) -> None:
        self.frames = frames
        self.height, self.width = height, width
        self.scale = min(1.0, options.flow_long_side / max(height, width))
        self.small_size = (max(8, round(width * self.scale)), max(8, round(height * self.scale)))
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[options.preset])
        if options.finest_scale is not None:
            self._dis.setFinestScale(options.finest_scale)
        self._grey: OrderedDict[int, np.ndarray] = OrderedDict()
        self._full: OrderedDict[int, np.ndarray] = OrderedDict()

    def image(self, index: int) -> np.ndarray:
        img = self._full.get(index)
        if img is None:
            img = np.asarray(self.frames(index))
            if img.shape[:2] != (self.height, self.width) or img.ndim != 3:
                raise ValueError(f"frame {index} is {img.shape[1]}x{img.shape[0]}, the clip's frames are "
                                 f"{self.width}x{self.height}")
            self._full[index] = img
            while len(self._full) > 3:
                self._full.popitem(last=False)
        return img

    def grey(self, index: int) -> np.ndarray:
        g = self._grey.get(index)
        if g is None:
            g = cv2.cvtColor(self.image(index), cv2.COLOR_RGB2GRAY)
            if self.scale < 1:
                g = cv2.resize(g, self.small_size, interpolation=cv2.INTER_AREA)
            self._grey[index] = g
            while len(self._grey) > 4:
                self._grey.popitem(last=False)
        return g

    def backward(self, b: int, a: int) -> np.ndarray:
        """Flow from frame ``b`` to frame ``a`` on the reduced grid, in reduced pixels: ``[h, w, 2]``."""
        return self._dis.calc(self.grey(b), self.grey(a), None)


@dataclass(frozen=True)
class Soft:
    """A soft mask (float32 in [0, 1]) held only on the box ``(x0, y0)`` + ``patch.shape``: a 4K frame
    costs what its object costs."""

    patch: np.ndarray
    x0: int
    y0: int

    @classmethod
    def of(cls, mask: np.ndarray) -> Soft:
        x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask, np.uint8))
        return cls(mask[y:y + h, x:x + w].astype(np.float32), x, y)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1)."""
        return self.x0, self.y0, self.x0 + self.patch.shape[1], self.y0 + self.patch.shape[0]

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.patch > 0.5))

    def on(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """The mask on ``box`` (zeros outside this one's box)."""
        x0, y0, x1, y1 = box
        out = np.zeros((y1 - y0, x1 - x0), np.float32)
        ax0, ay0, ax1, ay1 = max(x0, self.x0), max(y0, self.y0), *(min(u, v) for u, v in zip(box[2:], self.box[2:]))
        if ax1 > ax0 and ay1 > ay0:
            out[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = self.patch[ay0 - self.y0:ay1 - self.y0,
                                                                   ax0 - self.x0:ax1 - self.x0]
        return out

    def full(self, height: int, width: int) -> np.ndarray:
        """``[H, W]`` bool at the frame's full size."""
        out = np.zeros((height, width), bool)
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = self.patch > 0.5
        return out


def blend(a: Soft, b: Soft, w: float) -> Soft:
    """``(1 - w) * a + w * b`` on the union of their boxes."""
    box = (min(a.x0, b.x0), min(a.y0, b.y0), max(a.box[2], b.box[2]), max(a.box[3], b.box[3]))
    return Soft((1 - w) * a.on(box) + w * b.on(box), box[0], box[1])


class Carrier:
    """Moves soft masks from frame to frame (see the module docstring for the method).

    The motion map (where each pixel of the next frame comes from) is built on a work grid at the
    flow's resolution over the object's box, then brought to full size in one resize; only the final
    resampling of the mask runs at the frame's full size.
    """

    def __init__(self, flows: FlowCache, options: PropagationOptions) -> None:
        self.flows = flows
        self.options = options
        self._rng = np.random.default_rng(0)
        self.last_mismatch = 0.0  # the last step's appearance error ratio (for benchmarks and tuning)

    def step(self, soft: Soft, a: int, b: int) -> tuple[Soft, str | None]:
        """``soft`` on frame ``a`` moved to frame ``b``; and why the step is unreliable (None: it is not)."""
        opt, fl = self.options, self.flows
        area = soft.area
        if area == 0:
            return soft, "the mask is empty"
        flow = fl.backward(b, a)
        s = fl.scale
        x, y, x1, y1 = soft.box
        # the largest motion near the object bounds how far its pixels can have moved
        sx0, sy0 = int(x * s), int(y * s)
        sx1, sy1 = min(flow.shape[1], math.ceil(x1 * s) + 1), min(flow.shape[0], math.ceil(y1 * s) + 1)
        reach = float(np.abs(flow[sy0:sy1, sx0:sx1]).max()) / s if sx1 > sx0 and sy1 > sy0 else 0.0
        margin = int(reach) + 8
        box = (max(0, x - margin), max(0, y - margin), min(fl.width, x1 + margin), min(fl.height, y1 + margin))
        bw, bh = box[2] - box[0], box[3] - box[1]
        ww, wh = max(2, round(bw * s)), max(2, round(bh * s))  # the work grid
        gx = (box[0] + (np.arange(ww, dtype=np.float32) + 0.5) * (bw / ww) - 0.5)[None, :].repeat(wh, 0)
        gy = (box[1] + (np.arange(wh, dtype=np.float32) + 0.5) * (bh / wh) - 0.5)[:, None].repeat(ww, 1)
        fx = cv2.remap(flow, (gx + 0.5) * s - 0.5, (gy + 0.5) * s - 0.5, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE) / s
        px, py = gx + fx[..., 0], gy + fx[..., 1]  # where each work-grid point of b comes from in a
        src = soft.on(box)

        def sample(mx, my, interp=cv2.INTER_LINEAR):
            return cv2.remap(src, mx - box[0], my - box[1], interp, borderMode=cv2.BORDER_CONSTANT)

        unreliable = None
        if opt.object_motion:
            fitted = self._fit(sample(gx, gy) > 0.5, area, px, py, gx, gy, bw / ww)
            if not fitted:
                unreliable = "too few points inside the object agree on its motion"
            else:
                inliers = sum(share for _, share in fitted)
                if inliers < opt.min_inliers:
                    unreliable = (f"the motion estimate is unreliable (only {inliers:.0%} of the object's "
                                  "flow agrees on its motions)")
                maps = [(m[0, 0] * gx + m[0, 1] * gy + m[0, 2], m[1, 0] * gx + m[1, 1] * gy + m[1, 2])
                        for m, _ in fitted]
                ax, ay = maps[0]
                if len(maps) > 1:  # each point moves with the part whose motion its own flow is closest to
                    near = np.argmin([(px - mx) ** 2 + (py - my) ** 2 for mx, my in maps], axis=0)
                    ax = np.choose(near, [mx for mx, _ in maps])
                    ay = np.choose(near, [my for _, my in maps])
                moved = (sample(ax, ay) > 0.5).view(np.uint8)
                depth = cv2.distanceTransform(moved, cv2.DIST_L2, 3) * (bw / ww)  # in full-size pixels
                wgt = np.clip(depth / max(1.0, opt.band * math.sqrt(area)), 0.0, 1.0)
                px = wgt * px + (1 - wgt) * ax
                py = wgt * py + (1 - wgt) * ay
        px, py = px.astype(np.float32), py.astype(np.float32)
        if unreliable is None:
            unreliable = self._mismatch(sample(px, py) > 0.5, px, py, gx, gy, a, b)
        mx = cv2.resize(px, (bw, bh), interpolation=cv2.INTER_LINEAR) - box[0]
        my = cv2.resize(py, (bw, bh), interpolation=cv2.INTER_LINEAR) - box[1]
        out = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return Soft(out, box[0], box[1]), unreliable

    def _mismatch(self, inside: np.ndarray, px, py, gx, gy, a: int, b: int) -> str | None:
        """Why the moved mask does not look like the object it came from (None: it does).

        Compares frame ``b`` under the moved mask with frame ``a`` where the motion says those pixels
        came from, against the same comparison with the sources shuffled (the object's own contrast).
        A motion the flow missed (too fast, an occlusion) leaves the mask on something else.
        """
        ys, xs = np.nonzero(inside)
        if len(xs) < 12:
            return None
        if len(xs) > 4000:
            pick = self._rng.choice(len(xs), 4000, replace=False)
            ys, xs = ys[pick], xs[pick]
        s = self.flows.scale
        gb = _sample(self.flows.grey(b), (gx[ys, xs] + 0.5) * s - 0.5, (gy[ys, xs] + 0.5) * s - 0.5)
        ga = _sample(self.flows.grey(a), (px[ys, xs] + 0.5) * s - 0.5, (py[ys, xs] + 0.5) * s - 0.5)
        err = float(np.median(np.abs(gb - ga)))
        contrast = float(np.median(np.abs(gb - self._rng.permutation(ga))))
        ratio = err / max(contrast, 1e-6)
        self.last_mismatch = ratio
        if err > self.options.mismatch_floor and ratio > self.options.max_mismatch:
            return ("the motion estimate is unreliable: the moved mask no longer looks like the object "
                    "(it moved too fast, left the frame or was covered)")
        return None

    def _fit(self, inside: np.ndarray, area: int, px, py, gx, gy, cell: float) -> list[tuple[np.ndarray, float]]:
        """The affine maps (b -> a) that the flow of the object's interior agrees on (the dominant
        motion first, then the motions of parts moving on their own), each with its share of the points.

        ``inside``: the mask on frame ``a`` sampled on the work grid (``cell`` full-size pixels apart).
        """
        r = self.options.interior * math.sqrt(area) / cell
        depth = cv2.distanceTransform(inside.view(np.uint8), cv2.DIST_L2, 3)
        inner = (depth > r) if (depth > r).any() else inside
        # work-grid points of b whose source (in a) lies in the interior
        gh, gw = inner.shape
        cx = np.clip(np.rint((px - gx[0, 0]) / cell).astype(np.int32), 0, gw - 1)
        cy = np.clip(np.rint((py - gy[0, 0]) / cell).astype(np.int32), 0, gh - 1)
        lands = inner[cy, cx]
        # flow at the frame's border is unreliable (nothing to match beyond it): fit on points off it
        edge = 2.0 / self.flows.scale + 2
        w_, h_ = self.flows.width - 1 - edge, self.flows.height - 1 - edge
        lands &= (gx > edge) & (gx < w_) & (gy > edge) & (gy < h_) & (px > edge) & (px < w_) & (py > edge) & (py < h_)
        ys, xs = np.nonzero(lands)
        if len(xs) < 12:
            return []
        if len(xs) > 3000:
            pick = self._rng.choice(len(xs), 3000, replace=False)
            ys, xs = ys[pick], xs[pick]
        src = np.stack([gx[ys, xs], gy[ys, xs]], 1)
        dst = np.stack([px[ys, xs], py[ys, xs]], 1)
        total = len(src)
        fitted = []
        while len(fitted) < self.options.parts and len(src) >= max(12, 0.08 * total):
            affine, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.5,
                                                maxIters=500, confidence=0.99)
            if affine is None or mask is None:
                break
            keep = mask.ravel().astype(bool)
            if fitted and keep.sum() < max(12, 0.08 * total):  # too small to be a part of its own
                break
            stretch = np.linalg.svd(affine[:, :2], compute_uv=False)
            if stretch.max() > 1.5 or stretch.min() < 0.67:  # no object grows, shrinks or shears that fast
                break
            fitted.append((affine.astype(np.float32), float(keep.sum()) / total))
            src, dst = src[~keep], dst[~keep]
        return fitted


def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of a grey image at points (x, y) (arrays of one shape) as float32 of that shape."""
    shape = np.shape(x)
    if len(shape) == 1:  # remap wants fewer than 32767 columns: fold a long list of points into rows
        n = shape[0]
        cols = min(max(n, 1), 4096)
        rows = -(-n // cols)
        pad = rows * cols - n
        x = np.concatenate([np.asarray(x, np.float32), np.zeros(pad, np.float32)]).reshape(rows, cols)
        y = np.concatenate([np.asarray(y, np.float32), np.zeros(pad, np.float32)]).reshape(rows, cols)
    out = cv2.remap(image, np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    return out.ravel()[: shape[0]] if len(shape) == 1 else out


def propagate(track: Track, segments: Sequence[Segment], frames: FrameReader, height: int, width: int, *,
              start: int | None = None, stop: int | None = None, options: PropagationOptions | None = None,
              snap: Snap | None = None, cancel: threading.Event | None = None,
              progress: Progress | None = None) -> PropagationResult:
    """Fill ``segments`` (from :func:`plan` / :func:`plan_fill`) of ``track``; frames come from ``frames``.

    ``cancel``: when set, the run ends after the frame in hand and returns what it finished (with
    ``cancelled``). ``progress(done, planned)`` is called after every frame. ``snap``: a function that
    may replace each propagated mask (e.g. with the model instance that overlaps it best).
    """
    options = options or PropagationOptions()
    carrier = Carrier(FlowCache(frames, height, width, options), options)
    planned = sum(len(s.frames) for s in segments)
    masks: dict[int, FrameMask] = {}
    stops: list[Stop] = []
    done = 0
    cancelled = False
    frame_of = track.frames

    def tick() -> bool:
        nonlocal done, cancelled
        done += 1
        if progress is not None:
            progress(done, planned)
        if cancel is not None and cancel.is_set():
            cancelled = True
        return cancelled

    for seg in segments:
        if cancelled:
            break
        if seg.right is None or seg.left is None:
            seed = seg.left if seg.left is not None else seg.right
            cancelled = _one_side(carrier, seed, frame_of[seed], seg.frames, options, snap, masks, stops, tick)
        else:
            cancelled = _two_sides(carrier, seg, frame_of[seg.left], frame_of[seg.right], options, snap, masks,
                                   stops, tick)
    first = segments[0].left if segments else (start if start is not None else 0)
    last = segments[-1].frames[-1] if segments else first
    return PropagationResult(track.id, start if start is not None else first, stop if stop is not None else last,
                             masks, tuple(stops), cancelled, planned)


def _score(seed: FrameMask) -> float:
    return min(1.0, max(0.0, seed.score))


def _keep(carrier: Carrier, frame: int, soft: Soft, seed_score: float, snap: Snap | None,
          masks: dict[int, FrameMask]) -> None:
    hard = soft.full(carrier.flows.height, carrier.flows.width)
    if snap is not None:
        hard = np.asarray(snap(frame, hard), bool)
    if hard.any():
        masks[frame] = FrameMask.from_mask(hard, seed_score)


def _vanished(soft: Soft, seed_area: int, options: PropagationOptions) -> str | None:
    area = soft.area
    if area < max(options.min_area, options.min_area_ratio * seed_area):
        return f"the mask vanished ({area} pixels left of {seed_area})"
    return None


def _one_side(carrier: Carrier, seed: int, seed_mask: FrameMask, targets: Sequence[int],
              options: PropagationOptions, snap: Snap | None, masks: dict[int, FrameMask], stops: list[Stop],
              tick: Callable[[], bool]) -> bool:
    soft = Soft.of(seed_mask.decode())
    prev = seed
    for f in targets:
        soft, unreliable = carrier.step(soft, prev, f)
        why = unreliable or _vanished(soft, seed_mask.area, options)
        if why:
            stops.append(Stop(seed, f, why))
            return False
        _keep(carrier, f, soft, _score(seed_mask), snap, masks)
        prev = f
        if tick():
            return True
    return False


def _two_sides(carrier: Carrier, seg: Segment, left: FrameMask, right: FrameMask, options: PropagationOptions,
               snap: Snap | None, masks: dict[int, FrameMask], stops: list[Stop], tick: Callable[[], bool]) -> bool:
    """Carry ``left`` forward and ``right`` backward over the segment; blend by distance."""
    a, b, inner = seg.left, seg.right, seg.frames
    assert a is not None and b is not None
    back: dict[int, Soft] = {}  # frames reached from the right keyframe (walked first, right to left)
    soft = Soft.of(right.decode())
    prev = b
    for f in reversed(inner):
        soft, unreliable = carrier.step(soft, prev, f)
        why = unreliable or _vanished(soft, right.area, options)
        if why:
            stops.append(Stop(b, f, why))
            break
        back[f] = soft
        prev = f
    soft = Soft.of(left.decode())
    prev = a
    forward_ok = True
    score = 0.5 * (_score(left) + _score(right))
    for f in inner:
        fwd = None
        if forward_ok:
            soft, unreliable = carrier.step(soft, prev, f)
            why = unreliable or _vanished(soft, left.area, options)
            if why:
                stops.append(Stop(a, f, why))
                forward_ok = False
            else:
                fwd = soft
                prev = f
        bwd = back.pop(f, None)
        if fwd is not None and bwd is not None:
            _keep(carrier, f, blend(fwd, bwd, (f - a) / (b - a)), score, snap, masks)  # 0 at left, 1 at right
        elif fwd is not None or bwd is not None:
            _keep(carrier, f, fwd if fwd is not None else bwd, score, snap, masks)
        if tick():
            return True
    return False


def snap_to_instances(candidates: Callable[[int], Sequence[np.ndarray]], min_iou: float = 0.5) -> Snap:
    """A ``snap`` that swaps each propagated mask for the candidate (e.g. a model instance) overlapping it
    best, when their mask IoU is at least ``min_iou``; otherwise the propagated mask stays."""

    def snap(frame: int, mask: np.ndarray) -> np.ndarray:
        best, best_iou = None, min_iou
        area = int(mask.sum())
        for cand in candidates(frame):
            inter = int(np.logical_and(cand, mask).sum())
            union = area + int(cand.sum()) - inter
            iou = inter / union if union else 0.0
            if iou >= best_iou:
                best, best_iou = cand, iou
        return mask if best is None else best

    return snap


def _short(keys: Sequence[int], limit: int = 8) -> str:
    text = ", ".join(str(k) for k in keys[:limit])
    return text + (f", … ({len(keys)} in all)" if len(keys) > limit else "")
