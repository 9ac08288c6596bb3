"""A batch shard: one video's results in ``<out>.work/``, its file format, and its checks on reading.

``video-00007.json`` holds the video's per-frame instances (compressed RLEs, track ids, classes,
scores: everything the YTVIS entries, DAVIS PNGs and COCO JSON are built from), its frame names, size
and the run ``key`` (model SHA-256, PKR, mode, skip-corrupt), after a header line with the body's byte
count and SHA-256 (:func:`shard_bytes`). A clip that failed has ``video-00007.error.json`` instead
(:func:`read_error`).

Every shard is checked before it is reused or merged (:func:`read_shard`), against its own checksum
and against its clip, opened again (frame list and first frame only, :func:`clip_facts`): the same
frame count and names (with ``--skip-corrupt`` an in-order subset), the same width and height (before
anything of the shard's declared size is allocated), every mask a decodable RLE of that size, scores
in [0, 1], areas recomputed from the masks. It is read only if it is a regular file (never through a
link or from a pipe) of at most 1 MiB + 4 MiB per frame. A shard that fails raises
:class:`ShardRefused`, naming the shard; one of another run (key) or format reads as None.
:mod:`core.batch_infer` writes, reuses and merges shards (and re-exports these names).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.batch_clips import Clip
from core.data.rle import counts_problems, to_compressed
from core.errors import DataError
from core.regular_files import read_regular
from core.results import ClipResults, CompactFrame
from core.values import is_finite_number, is_int

SHARD_FORMAT = "vpp-batch-shard/2"

#: Bytes a shard may take per frame of its clip (plus :data:`SHARD_BASE_BYTES`): far above what the masks of
#: a real frame take as RLE, and a bound on what a damaged or forged shard makes us read and parse.
SHARD_BYTES_PER_FRAME = 4 << 20
SHARD_BASE_BYTES = 1 << 20
_HEADER_LIMIT = 4096


def shard_path(work: Path, video_id: int) -> Path:
    return work / f"video-{video_id:05d}.json"


def error_path(work: Path, video_id: int) -> Path:
    return work / f"video-{video_id:05d}.error.json"


class ShardRefused(DataError):
    """A shard in the work folder is damaged, forged or not of its clip; the message names the shard."""


@dataclass(frozen=True)
class ClipFacts:
    """What a clip's shard must agree with: its frame names (in order), its size, and the skip mode."""

    names: tuple[str, ...]
    width: int
    height: int
    skip: bool  # --skip-corrupt: the shard may hold fewer frames (a subsequence of the names)


def clip_facts(clip: Clip, on_corrupt: str) -> ClipFacts:
    """Open ``clip`` (its frame list and first frame only) for the checks of :func:`read_shard`."""
    with clip.opener(on_corrupt=on_corrupt) as source:
        w, h = source.size
        return ClipFacts(tuple(source.names), int(w), int(h), on_corrupt == "skip")


def _frame_json(f: CompactFrame) -> dict[str, Any]:
    return {"track_ids": f.track_ids.tolist(), "category_ids": f.category_ids.tolist(),
            "scores": [float(s) for s in f.scores.tolist()],
            "rles": [{"size": list(r["size"]), "counts": r["counts"]} for r in f.rles],
            "keep_ratio": f.keep_ratio, "gflops": f.gflops, "ms": f.ms}


def _int_in(v: Any, lo: int, hi: int) -> bool:
    return is_int(v) and lo <= v <= hi


def _frame_from_json(d: Any, index: int, height: int, width: int, rles_out: list[tuple[int, dict]]) -> CompactFrame:
    """One frame of a shard, every value checked (ValueError saying which); its RLEs are also appended
    to ``rles_out`` (for one vectorised check of their run lengths). Areas come from the RLEs."""
    if not isinstance(d, dict):
        raise ValueError(f"frame {index} is not an object")
    lists = {k: d.get(k) for k in ("track_ids", "category_ids", "scores", "rles")}
    if not all(isinstance(v, list) for v in lists.values()) or len({len(v) for v in lists.values()}) != 1:
        raise ValueError(f"frame {index}: track_ids, category_ids, scores and rles must be lists of one length")
    ids = lists["track_ids"]
    if not all(_int_in(v, -(2**63), 2**63 - 1) for v in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"frame {index}: track ids must be distinct integers")
    if not all(_int_in(v, 0, 2**31 - 1) for v in lists["category_ids"]):
        raise ValueError(f"frame {index}: category ids must be integers >= 0")
    if not all(is_finite_number(v) and 0 <= v <= 1 for v in lists["scores"]):
        raise ValueError(f"frame {index}: scores must be numbers in [0, 1]")
    for key in ("keep_ratio", "gflops", "ms"):
        if not is_finite_number(d.get(key)):
            raise ValueError(f"frame {index}: {key} must be a finite number")
    rles = []
    for r in lists["rles"]:
        if not isinstance(r, dict) or set(r) != {"size", "counts"} or not isinstance(r["counts"], str):
            raise ValueError(f"frame {index}: a mask is not a compressed RLE {{size, counts}}")
        if r["size"] != [height, width]:
            raise ValueError(f"frame {index}: a mask of [height, width] {r['size']!r}, not the clip's "
                             f"[{height}, {width}]")
        rle = to_compressed(r)
        rles.append(rle)
        rles_out.append((index, rle))

    def arr(values, dtype):
        a = np.asarray(values, dtype=dtype).reshape(-1)
        a.flags.writeable = False
        return a

    kept = np.zeros((0, 1, 1), bool)
    kept.flags.writeable = False
    return CompactFrame(index, height, width, arr(lists["track_ids"], np.int64), arr(lists["category_ids"], np.int64),
                        arr(lists["scores"], np.float32), tuple(rles), None, kept, (),
                        float(d["keep_ratio"]), float(d["gflops"]), float(d["ms"]))


def shard_bytes(clip: Clip, frame_names: Sequence[str], results: ClipResults, key: dict[str, Any]) -> bytes:
    """A shard: one header line (format, the body's byte count and sha256), then the body JSON."""
    body = {"format": SHARD_FORMAT, "key": key, "video_id": clip.video_id, "name": clip.name, "path": str(clip.path),
            "num_frames": results.num_frames, "height": results.height, "width": results.width,
            "frame_names": list(frame_names), "frames": [_frame_json(f) for f in results],
            "ytvis_tracks": len(results.to_ytvis(clip.video_id))}
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    header = {"format": SHARD_FORMAT, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + data


@dataclass(frozen=True)
class Shard:
    video_id: int
    name: str
    path: str
    frame_names: tuple[str, ...]
    results: ClipResults


def _subsequence(part: Sequence[str], whole: Sequence[str]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def _check_against_clip(d: dict, clip: Clip, facts: ClipFacts) -> tuple[int, int, int, tuple[str, ...]]:
    """The shard's frame count, height, width and names, checked against the clip (ValueError saying how
    they differ) before anything of the shard's size is allocated."""
    n, h, w = d.get("num_frames"), d.get("height"), d.get("width")
    if not (_int_in(n, 1, 2**31) and _int_in(h, 1, 2**31) and _int_in(w, 1, 2**31)):
        raise ValueError("num_frames, height and width must be positive integers")
    if (w, h) != (facts.width, facts.height):
        raise ValueError(f"its frames are {w}x{h}, the clip's are {facts.width}x{facts.height}")
    names = d.get("frame_names")
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names) or len(names) != n:
        raise ValueError(f"frame_names must be {n} strings")
    frames = d.get("frames")
    if not isinstance(frames, list) or len(frames) != n:
        raise ValueError(f"it holds {len(frames) if isinstance(frames, list) else 'no list of'} frames for "
                         f"num_frames {n}")
    clip_n = len(facts.names)
    if facts.skip:
        if n > clip_n or not _subsequence(names, facts.names):
            raise ValueError(f"its {n} frame names are not frames of the clip ({clip_n} frames) in order")
    elif n != clip_n:
        raise ValueError(f"it holds {n} frames, the clip has {clip_n}")
    elif tuple(names) != facts.names:
        k = next(i for i, (a, b) in enumerate(zip(names, facts.names)) if a != b)
        raise ValueError(f"its frame {k} is named {names[k]!r}, the clip's is {facts.names[k]!r}")
    return n, h, w, tuple(names)


def read_shard(path: Path, clip: Clip, key: dict[str, Any], facts: ClipFacts) -> Shard | None:
    """The shard at ``path`` for ``clip`` and the run ``key``.

    None when there is none, or it is another run's (another format, key, video, name or path: rerunning
    with other settings recomputes the video). :class:`ShardRefused`, naming ``path``, when it cannot be
    read, its checksum does not match its content, or its content does not fit the clip (frame count,
    names, size, masks): damaged or forged, never merged. The file is read only if it is a regular file
    (never through a link or from a pipe) of at most :data:`SHARD_BASE_BYTES` + :data:`SHARD_BYTES_PER_FRAME`
    per frame of the clip."""
    limit = SHARD_BASE_BYTES + SHARD_BYTES_PER_FRAME * max(len(facts.names), 1)
    if not os.path.lexists(path):
        return None
    try:
        raw = read_regular(path, limit, what="batch shard", follow=False)
    except (OSError, DataError) as exc:
        raise ShardRefused(_refusal(path, clip, str(exc).removeprefix(f"{path}: "))) from None
    try:
        return _parse_shard(raw, clip, key, facts)
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise ShardRefused(_refusal(path, clip, str(exc))) from None


def _refusal(path: Path, clip: Clip, why: str) -> str:
    return (f"{path}: not a shard VPP Studio wrote for video {clip.video_id} ({clip.name}): {why}. It is not "
            "merged; delete it and rerun the same command (the video is computed again)")


def _parse_shard(raw: bytes, clip: Clip, key: dict[str, Any], facts: ClipFacts) -> Shard | None:
    head, sep, data = raw.partition(b"\n")
    if not sep or len(head) > _HEADER_LIMIT:
        raise ValueError("no header line (an old or foreign file)")
    header = json.loads(head)
    if not isinstance(header, dict) or header.get("format") != SHARD_FORMAT:
        return None  # another version's shard: recomputed
    if header.get("bytes") != len(data):
        raise ValueError(f"its header says {header.get('bytes')!r} bytes, the body has {len(data)} (truncated?)")
    if header.get("sha256") != hashlib.sha256(data).hexdigest():
        raise ValueError("its content does not match its checksum (edited or damaged)")
    d = json.loads(data)
    if not isinstance(d, dict) or d.get("format") != SHARD_FORMAT:
        raise ValueError("its body is not a shard")
    if d.get("key") != key or d.get("video_id") != clip.video_id or d.get("name") != clip.name \
            or d.get("path") != str(clip.path):
        return None  # another run's (model, PKR, mode) or another clip list's: recomputed
    n, h, w, names = _check_against_clip(d, clip, facts)
    results = ClipResults(n, h, w)
    rles: list[tuple[int, dict]] = []
    for i, f in enumerate(d["frames"]):
        results.add(_frame_from_json(f, i, h, w, rles))
    for (index, _), why in zip(rles, counts_problems([r for _, r in rles])):
        if why is not None:
            raise ValueError(f"frame {index}: a mask cannot be decoded ({why})")
    if not results.is_complete or len(results.to_ytvis(clip.video_id)) != d.get("ytvis_tracks"):
        raise ValueError("its track count does not match its frames")
    return Shard(clip.video_id, clip.name, str(clip.path), names, results)


def read_error(work: Path, video_id: int) -> str | None:
    try:
        return str(json.loads(read_regular(error_path(work, video_id), 1 << 20, follow=False))["error"])
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return None

