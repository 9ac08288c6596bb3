"""Batch inference over many clips: sharded over ``torchrun`` ranks, resumable, merged through the export door.

``vpp infer`` uses this for a YTVIS split, for a folder of clips, and for any input under ``torchrun``
(``WORLD_SIZE`` > 1)::

    vpp infer CLIPS/ --out results.json                                    # one process (world size 1)
    torchrun --nproc_per_node 8 -m core.cli infer DATA/valid --out results.json --zip
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank R --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 -m core.cli infer DATA/valid --out /shared/results.json

Public API (the clips come from :mod:`core.batch_clips`, the shard format from :mod:`core.batch_shard`;
their names are importable from here too)::

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

- Sharding (:func:`core.batch_clips.assign`): clips sorted by frame count (longest first, ties by video
  id) go one by one onto the least-loaded rank (ties to the lowest rank). Every rank computes the same
  plan, with no communication.
- Each rank writes one shard per video, atomically, into ``<out>.work/``: ``video-00007.json`` holds the
  video's per-frame instances and the run ``key`` (model SHA-256, PKR, mode, skip-corrupt), with a
  checksum (:mod:`core.batch_shard` has the format). A shard that reads back complete with the same key
  and the same frames is reused on a rerun; one of another run (key) is recomputed silently. A killed
  rank loses at most the video it was on.
- Every shard is checked before it is reused or merged (:func:`core.batch_shard.read_shard`), against
  its own checksum and against its clip, opened again. A shard that fails is never merged: on reuse it
  is reported (naming the shard) and the video computed again; at the merge the clip fails with a
  message naming the shard and saying to delete it and rerun.
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
import stat
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.atomic import atomic_write_bytes
from core.batch_clips import VIDEO_EXTENSIONS, Clip, assign, clip_inputs, folder_clips, is_clip_folder, split_clips
from core.batch_shard import (
    SHARD_BASE_BYTES,
    SHARD_BYTES_PER_FRAME,
    SHARD_FORMAT,
    ClipFacts,
    Shard,
    ShardRefused,
    clip_facts,
    error_path,
    read_error,
    read_shard,
    shard_bytes,
    shard_path,
)
from core.clip_loop import run_clip
from core.data.sources import FrameSource
from core.errors import DataError, VPPError
from core.results import ClipResults, CompactFrame

__all__ = [
    "SHARD_BASE_BYTES",
    "SHARD_BYTES_PER_FRAME",
    "SHARD_FORMAT",
    "VIDEO_EXTENSIONS",
    "BatchSummary",
    "Clip",
    "ClipFacts",
    "Distributed",
    "Reader",
    "Shard",
    "ShardRefused",
    "assign",
    "check_batch_paths",
    "clip_facts",
    "clip_inputs",
    "error_path",
    "folder_clips",
    "is_clip_folder",
    "read_error",
    "read_shard",
    "run_batch",
    "run_shard",
    "shard_bytes",
    "shard_path",
    "split_clips",
    "stream_frames",
    "videos_path",
    "work_dir",
]


# -- paths ----------------------------------------------------------------------------------------


def work_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".work")


def videos_path(out: str | os.PathLike) -> Path:
    return Path(out).with_suffix(".videos.json")


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


# -- running --------------------------------------------------------------------------------------


def _remove(path: Path) -> None:
    """Delete a shard or error file of ours: a regular file only (a link or pipe there is left as it is)."""
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()


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
            run_clip(frames, session, lambda index, res: results.add(CompactFrame.from_result(res, index)))
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
            summary.merged = export_results(videos, outputs, categories=categories, record=record, inputs=inputs)
            body = {"input": input_label, "results": str(outputs["ytvis"]),
                    "videos": [{"video_id": c.video_id, "name": c.name, "path": str(c.path),
                                "frames": v.results.num_frames}
                               for c, v in zip(sorted(clips, key=lambda c: c.video_id), videos)]}
            atomic_write_bytes(videos_path(outputs["ytvis"]), (json.dumps(body, indent=2) + "\n").encode())
    finally:
        dist.barrier()
    dist.sum(summary.code)
    return summary
