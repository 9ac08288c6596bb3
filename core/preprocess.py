"""Frame preprocessing: resize so the long side is the model's input size, pad to a patch multiple.

Masks come back through :meth:`Resized.unpad_masks`, which crops the padding and resizes to the
original frame size, so exported masks align pixel for pixel with the input frames, or through
:meth:`Resized.encoded_masks`, which gives the same masks (see there) as COCO RLEs, computed run by run on
each instance's box, never pixel by pixel (:class:`core.data.mask_runs.EncodedMasks`).

A frame may come decoded smaller than it is (a JPEG at a DCT reduction, a video frame resized once on the
reader thread: :meth:`core.data.sources.FrameSource.stream` with ``fit``): :func:`resize_frame` with
``frame_hw`` then takes the frame's real size for the geometry, so the masks still come back at full size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from core.data.mask_runs import EncodedMasks, counts_to_rle


@dataclass(frozen=True)
class Resized:
    orig_hw: tuple[int, int]  # input frame (H, W)
    resized_hw: tuple[int, int]  # after resize, before padding
    padded_hw: tuple[int, int]  # model input

    def unpad_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """``[M, h, w]`` mask logits on the padded model grid -> ``[M, H, W]`` bool at frame size."""
        if logits.shape[0] == 0:
            return torch.zeros(0, *self.orig_hw, dtype=torch.bool, device=logits.device)
        ph, pw = self.padded_hw
        h, w = logits.shape[-2:]
        # crop the padding on the low-resolution grid (in fractional cells), then resize once
        crop_h = max(1, round(h * self.resized_hw[0] / ph))
        crop_w = max(1, round(w * self.resized_hw[1] / pw))
        x = logits[:, :crop_h, :crop_w].float().unsqueeze(0)
        x = F.interpolate(x, size=self.orig_hw, mode="bilinear", align_corners=False)
        return x[0] > 0

    def encoded_masks(self, logits: torch.Tensor) -> EncodedMasks:
        """The masks of :meth:`unpad_masks` as COCO RLEs, computed run by run instead of pixel by pixel.

        Bilinear upsampling (``align_corners=False``) first interpolates along the width, then, for each output row,
        between two source rows with weights that grow along the rows that share them (a *row group*, 60 rows at
        4K). So down one output column inside one row group the upsampled logit moves linearly from one value to
        another: its sign is one value, or changes once. For each instance only the row groups and column groups
        of its box (those whose source cells reach its positive cells) are visited. A block (row group x column
        group) shares four source cells: all above 0 makes it all True, all at or below 0 all False (every output
        is a weighted sum of them). In the other blocks each column's values at the group's two source rows are
        computed, and where the sign changes down the column the row is found by bisection on the exact values.
        The runs of each column follow (:func:`_runs`): the work grows with the box's width times its row groups
        (boolean arrays) and with the columns of the blocks its edge crosses, not with its pixels, and no
        full-size array is made.

        The source cells and weights are PyTorch's own (:func:`_linear_taps`) and each value is the same weighted
        sum, rounded in a fixed order: values may differ from ``F.interpolate``'s in their last bits, so a pixel
        can differ from :meth:`unpad_masks` only where the upsampled logit is within a few float32 ulps of 0
        (none in 200 million pixels of random logits at 4K, 960x540, 854x480 and odd sizes; none on the shared
        fixtures).
        """
        H, W = self.orig_hw
        if logits.shape[0] == 0:
            return EncodedMasks(H, W, ())
        ph, pw = self.padded_hw
        h, w = logits.shape[-2:]
        crop_h = max(1, round(h * self.resized_hw[0] / ph))
        crop_w = max(1, round(w * self.resized_hw[1] / pw))
        x = logits[:, :crop_h, :crop_w].float().cpu().numpy()
        rows = _linear_taps(crop_h, H), _tap_groups(crop_h, H)
        cols = _linear_taps(crop_w, W), _tap_groups(crop_w, W)
        return EncodedMasks(H, W, [counts_to_rle(_mask_counts(cells, rows, cols, H, W), H, W) for cells in x])


#: Values above this (not merely above 0) make a row group all True: a weighted sum of them cannot underflow to 0.
_SURELY_POSITIVE = 1e-30


@lru_cache(maxsize=64)
def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source cells and weights of bilinear resizing ``n_in -> n_out`` (``align_corners=False``) along one axis,
    as PyTorch's CPU kernel computes them: ``src = max(scale * (i + 0.5) - 0.5, 0)`` in float32 with one
    rounding (a fused multiply-add), ``scale = n_in / n_out`` in float32, first cell ``floor(src)``, the second
    the next one (the same at the last cell), weights ``1 - l`` and ``l = src - floor(src)``. Returns
    ``(i0, i1, w0, w1)``, read-only, ``i0``/``i1`` non-decreasing."""
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    centre = np.arange(n_out, dtype=np.float64) + 0.5
    src = np.maximum((scale * centre - 0.5).astype(np.float32), np.float32(0))  # exact in float64, rounded once
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    w0 = (np.float32(1) - w1).astype(np.float32)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    for a in (i0, i1, w0, w1):
        a.flags.writeable = False
    return i0, i1, w0, w1


@lru_cache(maxsize=64)
def _tap_groups(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Outputs along one axis that share their two source cells (:func:`_linear_taps`): ``(first, end, cell0,
    cell1)`` per group, in order; groups cover every output, ``cell0``/``cell1`` non-decreasing."""
    i0, i1, _, _ = _linear_taps(n_in, n_out)
    first = np.flatnonzero(np.diff(i0, prepend=-1))
    end = np.append(first[1:], n_out)
    out = (first, end, i0[first], i1[first])
    for a in out:
        a.flags.writeable = False
    return out


def _mask_counts(cells: np.ndarray, rows: tuple, cols: tuple, H: int, W: int) -> np.ndarray:
    """One instance's ``[h, w]`` float32 logits -> COCO run lengths of its mask upsampled to ``H x W`` with the taps
    and tap groups ``rows``/``cols`` (``(taps, groups)`` each) and thresholded at 0 (see
    :meth:`Resized.encoded_masks`)."""
    positive = cells > 0
    ri = np.flatnonzero(positive.any(1))
    if ri.size == 0:  # every output is a weighted sum of values <= 0
        return np.array([H * W], np.uint32)
    ci = np.flatnonzero(positive.any(0))
    (_, _, h0, h1), (first, end, g0, g1) = rows
    (b0, b1, w0, w1), (cfirst, cend, c0, c1) = cols
    # the box: row and column groups with a source cell in the positive cells' rows / columns
    ga, gb = int(np.searchsorted(g1, ri[0], "left")), int(np.searchsorted(g0, ri[-1], "right"))
    ca, cb = int(np.searchsorted(c1, ci[0], "left")), int(np.searchsorted(c0, ci[-1], "right"))
    x0 = int(cfirst[ca])
    # blocks (row group x column group) share four source cells: all above 0 -> all True, all <= 0 -> all False
    r0, r1, k0, k1 = g0[ga:gb], g1[ga:gb], c0[ca:cb], c1[ca:cb]
    sure, none = cells > 4 * _SURELY_POSITIVE, cells <= 0
    all_true = sure[np.ix_(r0, k0)] & sure[np.ix_(r0, k1)] & sure[np.ix_(r1, k0)] & sure[np.ix_(r1, k1)]
    all_false = none[np.ix_(r0, k0)] & none[np.ix_(r0, k1)] & none[np.ix_(r1, k0)] & none[np.ix_(r1, k1)]
    widths = cend[ca:cb] - cfirst[ca:cb]
    top = np.repeat(all_true, widths, axis=1)  # [row groups, box columns]: the value at each group's first row
    bottom = top.copy()  # the value from the split row on
    split_row = np.zeros(top.shape, np.int64)  # where the bottom value starts (read only where it differs)
    bg, bc = np.nonzero(~(all_true | all_false))
    if bg.size:
        # every column of the other blocks, one by one: along the width at the group's two source rows
        n = widths[bc]
        gi = np.repeat(bg, n)
        x = np.repeat(cfirst[ca + bc], n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        u = cells[r0[gi], b0[x]] * w0[x] + cells[r0[gi], b1[x]] * w1[x]
        v = cells[r1[gi], b0[x]] * w0[x] + cells[r1[gi], b1[x]] * w1[x]
        xi = x - x0
        top[gi, xi] = bottom[gi, xi] = (u > _SURELY_POSITIVE) & (v > _SURELY_POSITIVE)
        mixed = ~top[gi, xi] & ((u > 0) | (v > 0))
        gi, xi, uu, vv = gi[mixed], xi[mixed], u[mixed], v[mixed]

        def positive_at(y: np.ndarray) -> np.ndarray:
            return h0[y] * uu + h1[y] * vv > 0  # float32, the same sum as everywhere else

        a, b = first[ga + gi], end[ga + gi] - 1
        s, e = positive_at(a), positive_at(b)
        flips = s != e
        hi = b.copy()
        while True:  # bisect (a, b] for the first row with the bottom value; a holds the top value
            open_ = flips & (hi - a > 1)
            if not open_.any():
                break
            mid = (a + hi) // 2
            at_e = positive_at(mid) == e
            hi = np.where(open_ & at_e, mid, hi)
            a = np.where(open_ & ~at_e, mid, a)
        top[gi, xi] = s
        bottom[gi, xi] = np.where(flips, e, s)
        split_row[gi, xi] = hi
    return _runs(top, bottom, split_row, first[ga:gb], int(end[gb - 1]), x0, H, W)


def _runs(top: np.ndarray, bottom: np.ndarray, split_row: np.ndarray, first: np.ndarray, tail: int, x0: int,
          H: int, W: int) -> np.ndarray:
    """COCO run lengths (uint32) of an ``H x W`` mask given by row groups over the box columns ``x0 ..``: in column
    ``x0 + x`` group ``g`` starts at row ``first[g]`` with ``top[g, x]`` and has ``bottom[g, x]`` from row
    ``split_row[g, x]`` on (where they differ); rows above ``first[0]`` and from ``tail`` on, and every other
    column, are False. Only the places where the value changes are visited (column-major, as COCO counts)."""
    n_g, n_x = top.shape
    total = H * W
    t, b = np.ascontiguousarray(top.T), np.ascontiguousarray(bottom.T)  # [columns, groups]: column-major order
    change = np.zeros((n_x, 2 * n_g + 1), bool)  # per column: each group's start, its split, the tail
    change[:, 2:-1:2] = t[:, 1:] != b[:, :-1]
    change[:, 1:-1:2] = t != b
    spans_column = first[0] == 0 and tail == H
    if spans_column:  # the column's first value follows the previous column's last
        change[1:, 0] = t[1:, 0] != b[:-1, -1]
        change[0, 0] = t[0, 0]
        last = bool(b[-1, -1])  # the last box column ends True: False from the next column on
    else:  # False above the first group and from the tail on
        change[:, 0] = t[:, 0]
        change[:, -1] = b[:, -1]
        last = False
    xi, ji = np.nonzero(change)
    g = ji // 2
    rows = np.where(ji % 2 == 0, first[np.minimum(g, n_g - 1)], split_row.T[xi, np.minimum(g, n_g - 1)])
    rows = np.where(ji == 2 * n_g, tail, rows)
    pos = (x0 + xi).astype(np.int64) * H + rows
    if last:
        pos = np.append(pos, (x0 + n_x) * H)
    pos = pos[pos < total]
    return np.diff(np.concatenate(([0], pos, [total]))).astype(np.uint32)


@dataclass(frozen=True)
class ResizedFrame:
    """A frame resized for the model (:func:`resize_frame`), not yet a tensor: uint8 pixels and their geometry.

    Made with NumPy and OpenCV only, so a reader thread can make it while the model runs on the main
    thread (torch ops there would start a second OpenMP team on the same cores)."""

    pixels: np.ndarray  # [rh, rw, 3] uint8 RGB (may be the caller's read-only frame when no resize was needed)
    geometry: Resized
    planes: np.ndarray | None = None  # [3, Hp, Wp] float32, zero-padded: the model input, made ahead (``planes=True``)


def model_input_hw(height: int, width: int, long_side: int) -> tuple[int, int]:
    """``(rh, rw)``: the size a ``height x width`` frame is resized to so its long side is ``long_side``."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_interpolation(from_hw: tuple[int, int], to_hw: tuple[int, int]) -> int:
    """OpenCV interpolation from one size to another: area when shrinking, linear when enlarging."""
    return cv2.INTER_AREA if max(to_hw) < max(from_hw) else cv2.INTER_LINEAR


def resize_frame(frame: np.ndarray, long_side: int, multiple: int, *, planes: bool = False,
                 frame_hw: tuple[int, int] | None = None) -> ResizedFrame:
    """RGB uint8 ``[H, W, 3]`` -> the frame resized so its long side is ``long_side`` (area interpolation
    when shrinking, linear when enlarging) and the geometry of the padding to a multiple of ``multiple``.
    ``planes``: also make the padded float planes :func:`to_input` wraps (the same values, made here).
    ``frame_hw``: the frame's real ``(H, W)`` when ``frame`` was decoded smaller (or already resized for the
    model): the model size and the geometry come from ``frame_hw``, the pixels are resized to that size."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame [H, W, 3], got {frame.dtype} {frame.shape}")
    h, w = frame.shape[:2] if frame_hw is None else (int(frame_hw[0]), int(frame_hw[1]))
    rh, rw = model_input_hw(h, w, long_side)
    if (rh, rw) != frame.shape[:2]:
        frame = cv2.resize(frame, (rw, rh), interpolation=resize_interpolation(frame.shape[:2], (rh, rw)))
    ph, pw = -(-rh // multiple) * multiple, -(-rw // multiple) * multiple
    chw = None
    if planes:
        chw = np.zeros((3, ph, pw), np.float32)
        chw[:, :rh, :rw] = frame.transpose(2, 0, 1)  # uint8 -> float32 is exact: the values torch would make
    return ResizedFrame(frame, Resized((h, w), (rh, rw), (ph, pw)), chw)


def to_input(resized: ResizedFrame) -> torch.Tensor:
    """A :class:`ResizedFrame` -> float ``[1, 3, Hp, Wp]`` in 0..255, zero-padded at the bottom and right."""
    if resized.planes is not None:
        return torch.from_numpy(resized.planes).unsqueeze(0)
    frame = resized.pixels
    (rh, rw), (ph, pw) = resized.geometry.resized_hw, resized.geometry.padded_hw
    if not frame.flags.writeable:  # sources hand out read-only cached frames; torch wants to own writable memory
        frame = frame.copy()
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float()
    x = F.pad(x, (0, pw - rw, 0, ph - rh))
    return x.unsqueeze(0)


def prepare_frame(frame: np.ndarray, long_side: int, multiple: int) -> tuple[torch.Tensor, Resized]:
    """RGB uint8 ``[H, W, 3]`` -> float ``[1, 3, Hp, Wp]`` in 0..255 and the geometry to undo it
    (:func:`resize_frame` then :func:`to_input`)."""
    resized = resize_frame(frame, long_side, multiple)
    return to_input(resized), resized.geometry
