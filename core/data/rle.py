"""COCO run-length encoding helpers (pycocotools), with ``counts`` as an ASCII str on the JSON side.

An RLE here is ``{"size": [height, width], "counts": str}`` (compressed RLE). Uncompressed RLE
(``counts`` a list of ints, as in COCO ``iscrowd`` annotations) is accepted on input and converted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def to_compressed(rle: RLE, *, reuse: bool = False) -> RLE:
    """Any RLE dict (str/bytes/int-list counts) -> compressed RLE with str counts. Raises ValueError if bad.

    With ``reuse``, an RLE already in that form (exactly ``size`` and ``counts``, a list and a str) is
    returned itself rather than copied: for readers that own the parsed JSON (a results file may hold
    millions of RLEs)."""
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
    if reuse and len(rle) == 2 and type(size) is list and counts is rle["counts"]:
        return rle
    return {"size": [h, w], "counts": counts}


#: Characters of RLE ``counts`` decoded in one vectorised pass. The pass keeps about a dozen int64 arrays of
#: this length, so this bounds its memory (about 30 MB) whatever the number or length of the strings.
COUNTS_CHUNK = 1 << 18


def counts_problems(rles: list[RLE]) -> list[str | None]:
    """For compressed RLEs (str counts), why each cannot be decoded to its size (None if it can).

    Strings are decoded in vectorised passes over batches of at most :data:`COUNTS_CHUNK` characters (the
    COCO 6-bit, sign-extended, delta-coded runs); a longer string is decoded piece by piece. A number cut
    off at the end, a negative run, or runs not summing to height*width are reported.
    """
    out: list[str | None] = [None] * len(rles)
    batch: list[int] = []
    size = 0
    for i, r in enumerate(rles):
        n = len(r["counts"])
        if n > COUNTS_CHUNK:
            out[i] = _long_counts_problem(r)
            continue
        if batch and size + n > COUNTS_CHUNK:
            for j, why in zip(batch, _batch_problems([rles[j] for j in batch])):
                out[j] = why
            batch, size = [], 0
        batch.append(i)
        size += n
    if batch:
        for j, why in zip(batch, _batch_problems([rles[j] for j in batch])):
            out[j] = why
    return out


def _expected(rle: RLE) -> int:
    return int(rle["size"][0]) * int(rle["size"][1])


def _batch_problems(rles: list[RLE]) -> list[str | None]:
    """:func:`counts_problems` of strings decoded in one vectorised pass."""
    out: list[str | None] = [None] * len(rles)
    if not rles:
        return out
    blobs = [r["counts"].encode("ascii") for r in rles]
    lengths = np.fromiter((len(b) for b in blobs), np.int64, len(blobs))
    chars = np.frombuffer(b"".join(blobs), np.uint8).astype(np.int64) - 48
    del blobs
    expected = np.array([_expected(r) for r in rles], np.int64)
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
    # runs[m] = x[m] + runs[m-2] for m > 2: a cumulative sum along each (string, parity) chain from m = 1, 2,
    # taken as one running sum per parity over all strings minus its value where each string starts (int64
    # wraps the same way either way, so even absurd runs come out as a per-chain sum would give them)
    runs = x.copy()
    before = first_num - 1  # the number before each string's first (-1: none)
    for parity in (0, 1):
        on = (m >= 1) & ((m & 1) == parity)
        csum = np.cumsum(np.where(on, x, 0))
        base = np.where(before >= 0, csum[np.maximum(before, 0)], 0)
        runs[on] = csum[on] - base[str_of_num[on]]
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


def _long_counts_problem(rle: RLE) -> str | None:
    """:func:`counts_problems` of one string longer than :data:`COUNTS_CHUNK`, decoded piece by piece.

    Pieces end on a number's last character; the two delta chains (odd and even runs) carry over."""
    counts: str = rle["counts"]
    expected = _expected(rle)
    carry = [0, 0]  # running sums of the chains of runs m = 2, 4, ... and m = 1, 3, ...
    m0, total, negative, pos = 0, 0.0, False, 0
    window = max(COUNTS_CHUNK, 64)  # a window with no number's end then holds a number too long (> 13 chars)
    while pos < len(counts):
        chars = np.frombuffer(counts[pos:pos + window].encode("ascii"), np.uint8).astype(np.int64) - 48
        more = (chars & 0x20) != 0
        last = pos + len(chars) >= len(counts)
        if not last:
            closed = np.flatnonzero(~more)
            if not closed.size:
                return "counts hold a number too long to be a run length"
            chars, more = chars[: closed[-1] + 1], more[: closed[-1] + 1]
        pos += len(chars)
        ends = ~more
        cut_off = bool(more[-1])
        ends[-1] = True
        starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
        num_of_char = np.concatenate(([0], np.cumsum(ends)[:-1]))
        k = np.arange(chars.size) - starts[num_of_char]
        if k.max(initial=0) > 12:
            return "counts hold a number too long to be a run length"
        if cut_off:
            return "counts end in the middle of a number"
        x = np.add.reduceat((chars & 0x1F) << (5 * k), starts)
        ends_at = np.flatnonzero(ends)
        x = x - (((chars[ends_at] & 0x10) != 0).astype(np.int64) << (5 * (k[ends_at] + 1)))
        m = m0 + np.arange(len(x))
        runs = x.copy()
        for parity in (0, 1):
            sel = np.flatnonzero((m >= 1) & ((m & 1) == parity))
            if sel.size:
                runs[sel] = carry[parity] + np.cumsum(x[sel])
                carry[parity] = int(runs[sel[-1]])
        total += float(runs.sum(dtype=np.float64))
        negative = negative or bool((runs < 0).any())
        m0 += len(x)
    if negative:
        return "counts decode to a negative run length"
    if total != expected:
        return f"counts cover {int(total)} pixels, not height*width = {expected}"
    return None


def decode_rle(rle: RLE) -> np.ndarray:
    """RLE (any accepted form) -> bool mask ``[H, W]``."""
    return mask_utils.decode(_py(to_compressed(rle))).astype(bool)


def _py(rle: RLE) -> dict:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_area(rle: RLE) -> int:
    return int(mask_utils.area(_py(rle)))


#: pycocotools 2.0.x's ``area`` builds a uint8 array of the list's length: a list of more than 255 RLEs
#: raises OverflowError under NumPy 2, so :func:`rle_areas` calls it on slices of at most this many.
_AREA_BATCH = 255


def rle_areas(rles: Sequence[RLE]) -> np.ndarray:
    """``[N]`` int64 pixel counts of RLEs (str or bytes counts), from the run lengths, any ``N``."""
    out = np.zeros(len(rles), np.int64)
    for start in range(0, len(rles), _AREA_BATCH):
        part = [_py(r) for r in rles[start:start + _AREA_BATCH]]
        out[start:start + len(part)] = np.asarray(mask_utils.area(part), dtype=np.int64).reshape(len(part))
    return out


def rle_bbox(rle: RLE) -> list[float]:
    """``[x, y, w, h]`` floats (COCO convention)."""
    return [float(v) for v in mask_utils.toBbox(_py(rle))]


def as_coco(rles: list[RLE]) -> list[dict]:
    """RLEs with str counts -> the bytes form pycocotools' C functions take."""
    return [_py(r) for r in rles]
