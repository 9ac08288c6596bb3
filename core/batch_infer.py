"""Batch inference over many clips: sharded over ``torchrun`` ranks, resumable, merged through the export door.

``vpp infer`` uses this for a YTVIS split, for a folder of clips, and for any input under ``torchrun``
(``WORLD_SIZE`` > 1)::

    vpp infer CLIPS/ --out results.json                                    # one process (world size 1)
    torchrun --nproc_per_node 8 -m core.cli infer DATA/valid --out results.json --zip
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank R --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 -m core.cli infer DATA/valid --out /shared/results.json

Public API::

    Clip(video_id, name, path, frames, opener)        # one clip; opener(**source_kwargs) -> FrameSource
    is_clip_folder(path) -> bool                      # a folder of sub-folders of frames and/or video files
    folder_clips(path) -> list[Clip]                  # ids 1..N in natural name order
    split_clips(split) -> list[Clip]                  # a YTVIS split's videos, ids as in instances.json
    assign(clips, world) -> list[list[Clip]]          # balanced by frame count, deterministic
    work_dir(out) -> Path                             # <out>.work/
    videos_path(out) -> Path                          # <out stem>.videos.json: video_id -> clip name and path
    Distributed.from_env(device) -> Distributed       # rank, world, local_rank, device; joins torchrun's group
    run_batch(clips, session, *, outputs, record, categories, inputs, key, dist, ...) -> BatchSummary

Behaviour:

- Sharding: clips sorted by frame count (longest first, ties by video id) go one by one onto the
  least-loaded rank (ties to the lowest rank). Every rank computes the same plan, with no communication.
- Each rank writes one shard per video, atomically, into ``<out>.work/``: ``video-00007.json`` holds the
  video's per-frame instances (compressed RLEs, track ids, classes, scores: everything the YTVIS
  entries, DAVIS PNGs and COCO JSON are built from), its frame names, size and the run ``key``
  (model SHA-256, PKR, mode, skip-corrupt), after a header line with the body's byte count and
  SHA-256. A shard that reads back complete with the same key and the same frames is reused on a
  rerun; one of another run (key) is recomputed silently. A killed rank loses at most the video it was on.
- Every shard is checked before it is reused or merged (:func:`read_shard`), against its own checksum
  and against its clip, opened again (frame list and first frame only): the same frame count and names
  (with ``--skip-corrupt`` an in-order subset), the same width and height (before anything of the
  shard's declared size is allocated), every mask a decodable RLE of that size, scores in [0, 1],
  areas recomputed from the masks. It is read only if it is a regular file (never through a link or
  from a pipe) of at most 1 MiB + 4 MiB per frame. A shard that fails is never merged: on reuse it is
  reported (naming the shard) and the video computed again; at the merge the clip fails with a message
  naming the shard and saying to delete it and rerun.
- A clip that fails (unreadable, zero frames, any error while running it) gets
  ``video-00007.error.json`` with the message; the other clips go on. After all ranks are done
  (``all_reduce`` on the process group: gloo on CPU, NCCL on CUDA with the device from ``LOCAL_RANK``),
  rank 0 reads every shard in video-id order and, only if every clip succeeded, writes the merged
  outputs with :func:`core.export.export_results` (atomic, inputs protected), then
  ``<out stem>.videos.json``. If any clip failed nothing is merged, and the summary lists the failed
  clips and says to rerun the same command (done clips are reused).
- One process is the same code path with world size 1, so the merged file is the same, byte for byte.

This module imports neither Qt nor the CLI; torch only for the process group.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_write_bytes, read_regular
from core.data.imageio import IMAGE_EXTENSIONS
from core.data.rle import counts_problems, to_compressed
from core.data.sources import FrameSource, natural_key, open_source
from core.errors import DataError, VPPError
from core.results import ClipResults, CompactFrame

SHARD_FORMAT = "vpp-batch-shard/2"
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".ts", ".3gp", ".ogv"})


@dataclass(frozen=True)
class Clip:
    """One clip of a batch: ``frames`` is the count used for balancing (0 when it cannot be told cheaply)."""

    video_id: int
    name: str
    path: Path
    frames: int
    opener: Callable[..., FrameSource] = field(compare=False, repr=False)


# -- inputs ---------------------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _entries(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError:
        return []


def _clip_entries(path: Path) -> list[os.DirEntry]:
    return [e for e in _entries(path)
            if e.is_dir() or (e.is_file() and Path(e.name).suffix.lower() in VIDEO_EXTENSIONS)]


def is_clip_folder(path: str | os.PathLike) -> bool:
    """A folder holding no frames itself but sub-folders of frames and/or video files (one clip each)."""
    path = Path(path)
    if not path.is_dir():
        return False
    entries = _entries(path)
    if any(e.is_file() and _is_image(e.name) for e in entries):
        return False  # a folder of frames: one clip
    return bool(_clip_entries(path))


def _count_frames(path: Path) -> int:
    """A cheap frame count, for balancing only: image files of a folder, the container's count of a video."""
    if path.is_dir():
        return sum(1 for e in _entries(path) if e.is_file() and _is_image(e.name))
    try:
        import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if cap.isOpened() else 0
        finally:
            cap.release()
    except Exception:  # a count for balancing only; the clip itself fails later with a message
        return 0


def folder_clips(path: str | os.PathLike) -> list[Clip]:
    """The clips of a folder: each sub-folder (of frames) and each video file in it; ids 1..N by natural name."""
    path = Path(path)
    entries = sorted(_clip_entries(path), key=lambda e: natural_key(e.name))
    clips = []
    for vid, e in enumerate(entries, 1):
        p = path / e.name
        name = e.name if p.is_dir() else (Path(e.name).stem or e.name)
        clips.append(Clip(vid, name, p, _count_frames(p), lambda p=p, **kw: open_source(p, **kw)))
    return clips


def split_clips(split) -> list[Clip]:
    """The videos of a YTVIS split, with their ids and names as ``vpp infer`` gives them."""
    out = []
    for v in split.gt.videos:
        first = split.frame_paths(v.id)
        where = first[0].parent if first else split.image_root
        out.append(Clip(v.id, split.video_name(v.id), where, len(v.file_names),
                        lambda vid=v.id, **kw: split.video_source(vid, **kw)))
    return out


def clip_inputs(clips: Sequence[Clip]) -> list[Path]:
    """Symlinked clips and frames of a folder of clips (their targets are inputs too)."""
    out: list[Path] = []
    for c in clips:
        if c.path.is_symlink():
            out.append(c.path)
        if c.path.is_dir():
            out += [Path(e.path) for e in _entries(c.path) if e.is_symlink()]
    return out


def assign(clips: Sequence[Clip], world: int) -> list[list[Clip]]:
    """Greedy longest-first onto the least-loaded rank; each rank's clips in video-id order."""
    if world < 1:
        raise ValueError(f"world size must be at least 1, got {world}")
    loads = [0] * world
    ranks: list[list[Clip]] = [[] for _ in range(world)]
    for c in sorted(clips, key=lambda c: (-c.frames, c.video_id)):
        r = min(range(world), key=lambda i: (loads[i], i))
        ranks[r].append(c)
        loads[r] += max(c.frames, 1)
    return [sorted(r, key=lambda c: c.video_id) for r in ranks]


# -- paths ----------------------------------------------------------------------------------------


def work_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".work")


def videos_path(out: str | os.PathLike) -> Path:
    return Path(out).with_suffix(".videos.json")


def shard_path(work: Path, video_id: int) -> Path:
    return work / f"video-{video_id:05d}.json"


def error_path(work: Path, video_id: int) -> Path:
    return work / f"video-{video_id:05d}.error.json"


def check_batch_paths(out: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> None:
    """The work folder and the videos file must not be, lie inside or contain an input, nor be a link;
    the work folder must be a folder (or new), the videos file a file (or new)."""
    work, names = work_dir(out), videos_path(out)
    for p, what, folder in ((work, "work folder", True), (names, "clip list", False)):
        if os.path.islink(p):
            raise DataError(f"{p}: the {what} is a symbolic link; remove it or choose another --out")
        if p.exists() and p.is_dir() != folder:
            raise DataError(f"{p}: the {what} name is taken by a {'file' if folder else 'folder'}; "
                            "remove it or choose another --out")
        w = p.resolve()
        for i in inputs:
            r = Path(i).resolve()
            if w == r or r in w.parents or w in r.parents:
                raise DataError(f"{p}: the {what} would overlap the input {i}; choose another --out")


# -- distributed ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: rank, world size, local rank, and the device its session runs on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    joined: bool = False  # this process initialised the group (and destroys it in close())

    @classmethod
    def from_env(cls, device: str = "auto", timeout_s: float = 7 * 24 * 3600) -> Distributed:
        """Read torchrun's RANK, WORLD_SIZE, LOCAL_RANK; join the group when WORLD_SIZE > 1.

        The device: ``cuda``/``auto`` with CUDA -> ``cuda:LOCAL_RANK`` under torchrun (NCCL); CPU -> gloo.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if world <= 1:
            return cls(0, 1, 0, device)
        import torch
        import torch.distributed as dist

        dev = device
        if device in ("auto", "cuda") and torch.cuda.is_available():
            dev = f"cuda:{local}"
        elif device == "auto":
            dev = "cpu"
        cuda = dev.startswith("cuda")
        if cuda:
            torch.cuda.set_device(torch.device(dev))
        joined = False
        if not dist.is_initialized():
            timeout = timedelta(seconds=float(timeout_s))
            dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timeout)
            joined = True
        return cls(dist.get_rank(), dist.get_world_size(), local, dev, joined)

    def sum(self, value: int) -> int:
        """All-reduce a count over the ranks; also the barrier that waits for every rank."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=self.device if self.device.startswith("cuda") else "cpu")
        dist.all_reduce(t)
        return int(t.item())

    def barrier(self) -> None:
        self.sum(0)

    def close(self) -> None:
        if self.joined:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


# -- shards ---------------------------------------------------------------------------------------

#: Bytes a shard may take per frame of its clip (plus :data:`SHARD_BASE_BYTES`): far above what the masks of
#: a real frame take as RLE, and a bound on what a damaged or forged shard makes us read and parse.
SHARD_BYTES_PER_FRAME = 4 << 20
SHARD_BASE_BYTES = 1 << 20
_HEADER_LIMIT = 4096


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


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _frame_from_json(d: Any, index: int, height: int, width: int, rles_out: list[tuple[int, dict]]) -> CompactFrame:
    """One frame of a shard, every value checked (ValueError saying which); its RLEs are also appended
    to ``rles_out`` (for one vectorised check of their run lengths). Areas come from the RLEs."""
    if not isinstance(d, dict):
        raise ValueError(f"frame {index} is not an object")
    lists = {k: d.get(k) for k in ("track_ids", "category_ids", "scores", "rles")}
    if not all(isinstance(v, list) for v in lists.values()) or len({len(v) for v in lists.values()}) != 1:
        raise ValueError(f"frame {index}: track_ids, category_ids, scores and rles must be lists of one length")
    ids = lists["track_ids"]
    if not all(_is_int(v, -(2**63), 2**63 - 1) for v in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"frame {index}: track ids must be distinct integers")
    if not all(_is_int(v, 0, 2**31 - 1) for v in lists["category_ids"]):
        raise ValueError(f"frame {index}: category ids must be integers >= 0")
    if not all(_is_num(v) and 0 <= v <= 1 for v in lists["scores"]):
        raise ValueError(f"frame {index}: scores must be numbers in [0, 1]")
    for key in ("keep_ratio", "gflops", "ms"):
        if not _is_num(d.get(key)):
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
    if not (_is_int(n, 1, 2**31) and _is_int(h, 1, 2**31) and _is_int(w, 1, 2**31)):
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


def _remove(path: Path) -> None:
    """Delete a shard or error file of ours: a regular file only (a link or pipe there is left as it is)."""
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()


# -- running --------------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    code: int  # 0: every clip done (and merged on rank 0); 1: some clips failed, nothing merged
    computed: list[int] = field(default_factory=list)  # video ids this rank ran
    reused: list[int] = field(default_factory=list)  # video ids this rank took from their shard
    failed: dict[int, str] = field(default_factory=dict)  # rank 0: every failed clip; others: their own
    merged: Any = None  # rank 0: the ExportSummary
    seconds: float = 0.0
    frames: int = 0  # frames this rank ran


def _message(exc: BaseException) -> str:
    if isinstance(exc, VPPError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


Reader = Callable[[FrameSource], contextlib.AbstractContextManager[Iterable]]


def stream_frames(source: FrameSource) -> contextlib.AbstractContextManager[Iterable]:
    """The default :data:`Reader`: one pass over the clip on this thread, no frame kept after use."""
    return contextlib.nullcontext(source.stream())


def _run_clip(clip: Clip, session, on_corrupt: str, log: Callable[[str], None],
              reader: Reader = stream_frames) -> tuple[tuple[str, ...], ClipResults]:
    with clip.opener(on_corrupt=on_corrupt) as source:
        if on_corrupt == "skip":
            source.scan()
        if len(source) == 0:
            raise DataError(f"{clip.path}: no frames (an empty folder or a video with no readable frame)")
        w, h = source.size
        results = ClipResults(len(source), h, w)
        with reader(source) as frames:
            for index, res in enumerate(session.run_clip(frames)):
                results.add(CompactFrame.from_result(res, index))
        for name, why in source.skipped:
            log(f"warning: video {clip.video_id} ({clip.name}): skipped frame {name}: {why}")
        if source.resized_note:
            log(f"warning: video {clip.video_id} ({clip.name}): {source.resized_note}")
        if not results.is_complete:
            raise DataError(f"{clip.path}: the session gave results for {results.count} of {len(source)} frames")
        return tuple(source.names), results


def _reusable(target: Path, clip: Clip, key: dict[str, Any], on_corrupt: str, log: Callable[[str], None],
              rank: int) -> bool:
    """Whether the shard at ``target`` is this run's result for ``clip`` (checked against the clip itself);
    a damaged or forged one is reported and computed again (its file is then replaced)."""
    if not os.path.lexists(target):
        return False
    try:
        return read_shard(target, clip, key, clip_facts(clip, on_corrupt)) is not None
    except ShardRefused as exc:
        log(f"rank {rank}: warning: {exc}; computing video {clip.video_id} again")
    except Exception:  # the clip cannot be opened: running it fails with the message
        pass
    return False


def run_shard(clips: Sequence[Clip], session, *, work: Path, key: dict[str, Any], rank: int = 0,
              on_corrupt: str = "raise", log: Callable[[str], None] = print,
              reader: Reader = stream_frames) -> BatchSummary:
    """Run this rank's clips: reuse valid shards, write the others (or their error file).

    ``reader(source)`` gives a clip's frames for its one pass (default: streamed, not cached, so a long
    clip holds one decoded frame at a time; ``vpp infer`` passes a read-ahead thread)."""
    summary = BatchSummary(0)
    t0 = time.perf_counter()
    for clip in clips:
        target = shard_path(work, clip.video_id)
        if _reusable(target, clip, key, on_corrupt, log, rank):
            _remove(error_path(work, clip.video_id))
            summary.reused.append(clip.video_id)
            log(f"rank {rank}: video {clip.video_id} ({clip.name}): reused {target.name}")
            continue
        start = time.perf_counter()
        try:
            names, results = _run_clip(clip, session, on_corrupt, log, reader)
            atomic_write_bytes(target, shard_bytes(clip, names, results, key))
        except Exception as exc:  # one bad clip fails alone; the message goes into its error file
            msg = _message(exc)
            if not isinstance(exc, VPPError):
                msg += "\n" + "".join(traceback.format_exception(exc)[-3:])
            _remove(target)
            failure = {"video_id": clip.video_id, "name": clip.name, "path": str(clip.path), "error": msg}
            atomic_write_bytes(error_path(work, clip.video_id), json.dumps(failure, indent=2).encode())
            summary.failed[clip.video_id] = msg
            log(f"rank {rank}: video {clip.video_id} ({clip.name}): FAILED: {msg.splitlines()[0]}")
            continue
        _remove(error_path(work, clip.video_id))
        summary.computed.append(clip.video_id)
        summary.frames += results.num_frames
        log(f"rank {rank}: video {clip.video_id} ({clip.name}): computed {results.num_frames} frames "
            f"in {time.perf_counter() - start:.1f} s")
    summary.seconds = time.perf_counter() - t0
    return summary


def _merge_shard(work: Path, clip: Clip, key: dict[str, Any], on_corrupt: str) -> tuple[Shard | None, str]:
    """The checked shard of ``clip`` for the merge, or None and why (naming the shard or the clip)."""
    target = shard_path(work, clip.video_id)
    if not os.path.lexists(target):
        return None, read_error(work, clip.video_id) or f"{target}: no complete shard (its rank stopped early?)"
    try:
        facts = clip_facts(clip, on_corrupt)
    except Exception as exc:  # the clip changed or went away since its shard was written
        return None, f"{target}: cannot check the shard against its clip {clip.path}: {_message(exc)}"
    try:
        shard = read_shard(target, clip, key, facts)
    except ShardRefused as exc:
        return None, str(exc)
    if shard is None:
        return None, f"{target}: written by another run (another model, PKR, mode or clip list); rerun the command"
    return shard, ""


def run_batch(clips: Sequence[Clip], session, *, outputs: dict[str, Path | None], record, categories,
              inputs: Sequence[str | os.PathLike], key: dict[str, Any], dist: Distributed | None = None,
              on_corrupt: str = "raise", input_label: str = "",
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
              reader: Reader = stream_frames) -> BatchSummary:
    """Shard ``clips`` over the ranks, run this rank's share, and on rank 0 merge when all succeeded."""
    from core.export import VideoExport, export_results

    dist = dist or Distributed()
    if not clips:
        raise DataError(f"{input_label or 'input'}: no clips found (sub-folders of frames or video files)")
    ids = [c.video_id for c in clips]
    if len(set(ids)) != len(ids):
        raise DataError(f"{input_label or 'input'}: video ids are not unique")
    check_batch_paths(outputs["ytvis"], inputs)  # the work folder: never a link, never overlapping an input
    work = work_dir(outputs["ytvis"])
    work.mkdir(exist_ok=True)
    mine = assign(clips, dist.world)[dist.rank]
    frames = sum(c.frames for c in mine)
    log(f"rank {dist.rank}/{dist.world}: {len(mine)} of {len(clips)} videos (~{frames} frames) -> {work}")
    summary = run_shard(mine, session, work=work, key=key, rank=dist.rank, on_corrupt=on_corrupt, log=log,
                        reader=reader)
    dist.sum(len(summary.failed))  # waits for every rank
    if dist.rank != 0:
        dist.barrier()  # stay until rank 0 has merged, so torchrun does not stop it on our exit
        summary.code = 1 if dist.sum(0) else 0
        return summary
    try:
        videos, failed = [], {}
        for c in sorted(clips, key=lambda c: c.video_id):
            shard, why = _merge_shard(work, c, key, on_corrupt)
            if shard is None:
                failed[c.video_id] = why
            else:
                videos.append(VideoExport(c.video_id, c.name, shard.frame_names, shard.results))
        summary.failed = failed
        if failed:
            summary.code = 1
            lines = [f"error: {len(failed)} of {len(clips)} clips failed; nothing was merged (no {outputs['ytvis']} "
                     f"written or replaced). Completed clips are kept in {work} and reused when you rerun the same "
                     "command after fixing or removing the failed clips:"]
            for vid, msg in failed.items():
                c = next(c for c in clips if c.video_id == vid)
                lines.append(f"  video {vid} ({c.name}, {c.path}): {msg.splitlines()[0]}")
            log("\n".join(lines))
        else:
            summary.merged = export_results(videos, **outputs, categories=categories, record=record, inputs=inputs)
            body = {"input": input_label, "results": str(outputs["ytvis"]),
                    "videos": [{"video_id": c.video_id, "name": c.name, "path": str(c.path),
                                "frames": v.results.num_frames}
                               for c, v in zip(sorted(clips, key=lambda c: c.video_id), videos)]}
            atomic_write_bytes(videos_path(outputs["ytvis"]), (json.dumps(body, indent=2) + "\n").encode())
    finally:
        dist.barrier()
    dist.sum(summary.code)
    return summary
