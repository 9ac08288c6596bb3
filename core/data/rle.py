"""COCO run-length encoding helpers (pycocotools), with ``counts`` as an ASCII str on the JSON side.

An RLE here is ``{"size": [height, width], "counts": str}`` (compressed RLE). Uncompressed RLE
(``counts`` a list of ints, as in COCO ``iscrowd`` annotations) is accepted on input and converted.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]
_COUNTS_ALPHABET = re.compile(r"[0-o]*")  # the 64 characters chr(48)..chr(111) of COCO's string RLE


def encode_mask(mask: np.ndarray) -> RLE:
    """Bool/0-1 mask ``[H, W]`` -> compressed RLE with str counts."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"encode_mask needs an HxW mask, got shape {m.shape}")
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8, copy=False) != 0, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_masks(masks: np.ndarray) -> list[RLE]:
    """Masks ``[N, H, W]`` -> N RLEs (one pycocotools call)."""
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"encode_masks needs N x H x W masks, got shape {m.shape}")
    if len(m) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(np.moveaxis(m != 0, 0, -1).astype(np.uint8)))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles]


def to_compressed(rle: RLE) -> RLE:
    """Any RLE dict (str/bytes/int-list counts) -> compressed RLE with str counts. Raises ValueError if bad."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be an object with 'size' and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in size)
    ):
        raise ValueError(f"RLE size must be [height, width] non-negative ints, got {size!r}")
    h, w = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**31 for c in counts):
            raise ValueError("uncompressed RLE counts must be non-negative ints")
        if sum(counts) != h * w:
            raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, not height*width = {h * w}")
        out = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        return {"size": [h, w], "counts": out["counts"].decode("ascii")}
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not isinstance(counts, str):
        raise ValueError(f"RLE counts must be a string or a list of ints, not {type(counts).__name__}")
    if not _COUNTS_ALPHABET.fullmatch(counts):
        raise ValueError("RLE counts hold characters outside the COCO alphabet")
    return {"size": [h, w], "counts": counts}


def counts_problems(rles: list[RLE]) -> list[str | None]:
    """For compressed RLEs (str counts), why each cannot be decoded to its size (None if it can).

    All strings are decoded in one vectorised pass (the COCO 6-bit, sign-extended, delta-coded runs):
    a number cut off at the end, a negative run, or runs not summing to height*width are reported.
    """
    out: list[str | None] = [None] * len(rles)
    if not rles:
        return out
    blobs = [r["counts"].encode("ascii") for r in rles]
    lengths = np.fromiter((len(b) for b in blobs), np.int64, len(blobs))
    chars = np.frombuffer(b"".join(blobs), np.uint8).astype(np.int64) - 48
    expected = np.array([int(r["size"][0]) * int(r["size"][1]) for r in rles], np.int64)
    if chars.size == 0:
        return [None if e == 0 else f"counts are empty, height*width = {e}" for e in expected]
    str_of_char = np.repeat(np.arange(len(rles)), lengths)
    more = (chars & 0x20) != 0
    last_char = np.cumsum(lengths) - 1
    ends_inside = np.ones(len(rles), bool)
    nonempty = lengths > 0
    ends_inside[nonempty] = ~more[last_char[nonempty]]
    ends = ~more
    ends[last_char[nonempty]] = True  # close a cut-off number at its string's end (reported below)
    num_of_char = np.concatenate(([0], np.cumsum(ends)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    k = np.arange(chars.size) - starts[num_of_char]
    if k.max(initial=0) > 12:
        bad = np.unique(str_of_char[k > 12])
        for i in bad:
            out[i] = "counts hold a number too long to be a run length"
        k = np.minimum(k, 12)
    x = np.add.reduceat((chars & 0x1F) << (5 * k), starts)
    ends_at = np.flatnonzero(ends)
    sign = (chars[ends_at] & 0x10) != 0
    x = x - (sign.astype(np.int64) << (5 * (k[ends_at] + 1)))
    str_of_num = str_of_char[ends_at]
    first_num = np.searchsorted(str_of_num, np.arange(len(rles)))
    m = np.arange(len(x)) - first_num[str_of_num]
    # runs[m] = x[m] + runs[m-2] for m > 2: a cumulative sum along each (string, parity) chain from m = 1, 2
    key = str_of_num * 2 + (m & 1)
    chain = m >= 1
    runs = x.copy()
    idx = np.flatnonzero(chain)
    order = idx[np.argsort(key[idx], kind="stable")]
    csum = np.cumsum(x[order])
    kk = key[order]
    group_start = np.concatenate(([True], kk[1:] != kk[:-1]))
    base = np.maximum.accumulate(np.where(group_start, np.arange(len(order)), 0))
    offset = np.concatenate(([0], csum))[base]
    runs[order] = csum - offset
    total = np.bincount(str_of_num, weights=runs, minlength=len(rles))  # float64: exact below 2**53
    negative = np.bincount(str_of_num, weights=runs < 0, minlength=len(rles)) > 0
    for i in range(len(rles)):
        if out[i] is not None:
            continue
        if not ends_inside[i]:
            out[i] = "counts end in the middle of a number"
        elif negative[i]:
            out[i] = "counts decode to a negative run length"
        elif total[i] != expected[i]:
            out[i] = f"counts cover {int(total[i])} pixels, not height*width = {int(expected[i])}"
    return out


def decode_rle(rle: RLE) -> np.ndarray:
    """RLE (any accepted form) -> bool mask ``[H, W]``."""
    return mask_utils.decode(_py(to_compressed(rle))).astype(bool)


def _py(rle: RLE) -> dict:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_area(rle: RLE) -> int:
    return int(mask_utils.area(_py(rle)))


def rle_bbox(rle: RLE) -> list[float]:
    """``[x, y, w, h]`` floats (COCO convention)."""
    return [float(v) for v in mask_utils.toBbox(_py(rle))]


def as_coco(rles: list[RLE]) -> list[dict]:
    """RLEs with str counts -> the bytes form pycocotools' C functions take."""
    return [_py(r) for r in rles]
