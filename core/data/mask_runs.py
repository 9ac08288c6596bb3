"""Instance masks at a frame's size as COCO RLEs, made from runs without building the full frame.

A 4K frame is 8.3 M pixels. ``vpp infer`` hands masks to the RLE writer as run lengths (COCO's uncompressed
``counts``: zeros first, alternating, down each column), computed from the model's low-resolution logits
(:meth:`core.preprocess.Resized.encoded_masks`); :func:`counts_to_rle` turns them into the compressed string
with pycocotools' own ``frPyObjects`` (the C function ``encode`` ends with), so the bytes are those of
``pycocotools.mask.encode`` of the full mask. :class:`EncodedMasks` holds a frame's RLEs and acts as the
``[M, H, W]`` bool array they stand for, decoding where a caller wants pixels.

:func:`encode_box_mask` does the same for a mask given as the crop of its box (False outside it): the runs of
such a mask are those of the crop's columns, shifted by the column's place in the frame, and joined across
columns when the box spans the frame's height (the tests check the bytes against pycocotools on random crops
and boxes at every edge). NumPy and pycocotools only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict


def mask_runs(crop: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """COCO's uncompressed run lengths (zeros first, alternating; uint32) of the ``height x width`` mask that is
    ``crop`` at rows ``top..`` and columns ``left..`` and False elsewhere, as ``pycocotools.mask.encode`` counts
    them. The crop must lie inside the frame."""
    crop = np.asarray(crop)
    if crop.ndim != 2:
        raise ValueError(f"expected a 2-D crop, got shape {crop.shape}")
    bh, bw = crop.shape
    if top < 0 or left < 0 or top + bh > height or left + bw > width:
        raise ValueError(f"a {bw}x{bh} crop at ({left}, {top}) does not fit in a {width}x{height} frame")
    total = height * width
    if bh == 0 or bw == 0 or not crop.any():
        return np.array([total], np.uint32)
    # the crop column by column, each followed by one False: a run never crosses from one column into the next
    padded = np.zeros((bw, bh + 1), np.int8)
    padded[:, :bh] = crop.T != 0
    flat = padded.ravel()
    edges = np.diff(flat, prepend=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive; the False after each column closes every run
    per = bh + 1

    def full(i: np.ndarray) -> np.ndarray:  # index in the padded crop -> column-major index in the frame
        return (left + i // per).astype(np.int64) * height + top + i % per

    starts, ends = full(starts), full(ends)
    # a run that reaches the bottom of a column and one at the top of the next are one run when the box spans
    # the frame's height (end of one == start of the next)
    joined = ends[:-1] == starts[1:]
    if joined.any():
        starts = starts[np.concatenate(([True], ~joined))]
        ends = ends[np.concatenate((~joined, [True]))]
    bounds = np.empty(2 * len(starts) + 2, np.int64)
    bounds[0] = 0
    bounds[1:-1:2] = starts
    bounds[2:-1:2] = ends
    bounds[-1] = total
    counts = np.diff(bounds)
    if ends[-1] == total:  # the mask ends inside a run of ones: no zero run after it
        counts = counts[:-1]
    return counts.astype(np.uint32)


def encode_box_mask(crop: np.ndarray, top: int, left: int, height: int, width: int) -> RLE:
    """The compressed RLE (str ``counts``) of the ``height x width`` mask that is ``crop`` at (``top``, ``left``)
    and False elsewhere: the same bytes as :func:`core.data.rle.encode_mask` of the full mask."""
    return counts_to_rle(mask_runs(crop, top, left, height, width), height, width)


def counts_to_rle(counts: np.ndarray, height: int, width: int) -> RLE:
    """COCO uncompressed run lengths -> compressed RLE with str ``counts`` (pycocotools' own string coder)."""
    rle = mask_utils.frPyObjects({"size": [int(height), int(width)], "counts": np.asarray(counts, np.uint32)},
                                 int(height), int(width))
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}


class EncodedMasks:
    """``M`` bool masks of a ``height x width`` frame held as compressed RLEs (str ``counts``).

    Acts as the ``[M, H, W]`` bool array it stands for (``shape``, ``dtype``, ``len``, ``m[k]`` -> ``[H, W]``,
    ``np.asarray(m)``: decoded on each call); :meth:`rles` hands the RLEs over as they are."""

    dtype = np.dtype(bool)
    ndim = 3

    def __init__(self, height: int, width: int, rles: Sequence[RLE]):
        self.height, self.width = int(height), int(width)
        self._rles = tuple(rles)
        for r in self._rles:
            if list(r["size"]) != [self.height, self.width]:
                raise ValueError(f"an RLE of size {r['size']} in masks of {self.width}x{self.height}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self._rles), self.height, self.width)

    def __len__(self) -> int:
        return len(self._rles)

    def __getitem__(self, k: int) -> np.ndarray:
        """Mask ``k``, ``[H, W]`` bool (decoded on each call)."""
        r = self._rles[k]
        return mask_utils.decode({"size": r["size"], "counts": r["counts"].encode("ascii")}).astype(bool)

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        for k in range(len(self)):
            out[k] = self[k]
        return out if dtype is None else out.astype(dtype)

    def rles(self) -> tuple[RLE, ...]:
        """The compressed RLEs, as held (byte for byte pycocotools' encoding of the full masks)."""
        return self._rles
