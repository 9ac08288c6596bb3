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
  (model SHA-256, PKR, mode, skip-corrupt). A shard that reads back complete with the same key and
  the same frames is reused on a rerun; otherwise the video is recomputed. A killed rank loses at most
  the video it was on.
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
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_write_bytes
from core.data.imageio import IMAGE_EXTENSIONS
from core.data.sources import FrameSource, natural_key, open_source
from core.errors import DataError, VPPError
from core.results import ClipResults, CompactFrame

SHARD_FORMAT = "vpp-batch-shard/1"
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


def _frame_json(f: CompactFrame) -> dict[str, Any]:
    return {"track_ids": f.track_ids.tolist(), "category_ids": f.category_ids.tolist(),
            "scores": [float(s) for s in f.scores.tolist()], "areas": f.areas.tolist(),
            "rles": [{"size": list(r["size"]), "counts": r["counts"]} for r in f.rles],
            "keep_ratio": f.keep_ratio, "gflops": f.gflops, "ms": f.ms}


def _frame_from_json(d: dict[str, Any], index: int, height: int, width: int) -> CompactFrame:
    def arr(key, dtype):
        a = np.asarray(d[key], dtype=dtype).reshape(-1)
        a.flags.writeable = False
        return a

    rles = tuple({"size": [int(r["size"][0]), int(r["size"][1])], "counts": str(r["counts"])} for r in d["rles"])
    kept = np.zeros((0, 1, 1), bool)
    kept.flags.writeable = False
    frame = CompactFrame(index, height, width, arr("track_ids", np.int64), arr("category_ids", np.int64),
                         arr("scores", np.float32), rles, arr("areas", np.int64), kept, (),
                         float(d["keep_ratio"]), float(d["gflops"]), float(d["ms"]))
    if not (len(frame.track_ids) == len(frame.category_ids) == len(frame.scores) == len(frame.areas) == len(rles)):
        raise ValueError("instance arrays of different lengths")
    return frame


def shard_bytes(clip: Clip, frame_names: Sequence[str], results: ClipResults, key: dict[str, Any]) -> bytes:
    body = {"format": SHARD_FORMAT, "key": key, "video_id": clip.video_id, "name": clip.name, "path": str(clip.path),
            "num_frames": results.num_frames, "height": results.height, "width": results.width,
            "frame_names": list(frame_names), "frames": [_frame_json(f) for f in results],
            "ytvis_tracks": len(results.to_ytvis(clip.video_id))}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Shard:
    video_id: int
    name: str
    path: str
    frame_names: tuple[str, ...]
    results: ClipResults


def read_shard(path: Path, clip: Clip, key: dict[str, Any]) -> Shard | None:
    """The shard at ``path`` if it is complete, for this clip and this key; else None (recompute it)."""
    try:
        d = json.loads(path.read_bytes())
        if d.get("format") != SHARD_FORMAT or d.get("key") != key or d.get("video_id") != clip.video_id:
            return None
        if d.get("name") != clip.name or d.get("path") != str(clip.path):
            return None
        n, h, w = int(d["num_frames"]), int(d["height"]), int(d["width"])
        names = tuple(str(x) for x in d["frame_names"])
        if n < 1 or len(names) != n or len(d["frames"]) != n:
            return None
        results = ClipResults(n, h, w)
        for i, f in enumerate(d["frames"]):
            results.add(_frame_from_json(f, i, h, w))
        if not results.is_complete or len(results.to_ytvis(clip.video_id)) != d["ytvis_tracks"]:
            return None
        return Shard(clip.video_id, clip.name, str(clip.path), names, results)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def read_error(work: Path, video_id: int) -> str | None:
    try:
        return str(json.loads(error_path(work, video_id).read_bytes())["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
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
        if read_shard(target, clip, key) is not None:
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
            shard = read_shard(shard_path(work, c.video_id), c, key)
            if shard is None:
                failed[c.video_id] = read_error(work, c.video_id) or "no complete shard (its rank stopped early?)"
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
