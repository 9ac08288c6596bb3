"""``vpp infer INPUT --out results.json``: segment and track a frame folder, a video file or a YTVIS split.

    vpp infer clip.mp4 --pkr 0.4 --out results.json [--zip] [--davis-png masks/] [--coco frames_coco.json]
    vpp infer frames/ --model my.safetensors --device cuda --out results.json
    vpp infer DATA/valid --out results.json          # a YTVIS split: instances.json + JPEGImages/
    vpp infer CLIPS/ --out results.json              # a folder of clips: sub-folders of frames and/or videos
    torchrun --nproc_per_node 8 -m core.cli infer DATA/valid --out results.json --zip   # sharded over ranks

A split, a folder of clips, or any input under ``torchrun`` (WORLD_SIZE > 1) runs through
:mod:`core.batch_infer`: videos are sharded over the ranks by frame count, each video's result is kept
in ``<OUT>.work/`` (reused when the same command is rerun), and rank 0 merges them when every clip
succeeded; ``<OUT stem>.videos.json`` maps each video_id to its clip's name and path.

Outputs go through :func:`core.export.export_results`: their locations are checked before the model
loads, and they are written only when the whole run succeeded, all or nothing: a failed or interrupted
run (even a SIGKILL) leaves no output behind and never overwrites a good one; what a killed run left is
finished or undone at the start of the next run. No output may be, lie inside or contain an input (the
video, the frame folder, the split's annotations and images, the model; symlinks resolved). Each output
gets a run record (model, its SHA-256, PKR, mode): ``<OUT stem>.run.json`` beside the files,
``vpp_run.json`` in the DAVIS folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from core.build import make_session
from core.cli import int_range
from core.clip_loop import input_plan, run_clip
from core.commands.output_options import add_output_options, output_paths
from core.cpu_threads import ThreadGovernor, governed
from core.data.prefetch import AdaptiveReader, Prefetcher
from core.errors import DataError, VPPError
from core.pkr import check_pkr
from core.resources import load_model, loaded_categories
from core.results import ClipResults, CompactFrame
from core.session_base import StageTimer

#: Frames read (and resized) ahead of the model on the reader thread.
PREFETCH_DEPTH = 4
#: The default depth on a CPU torch keeps busy: read inline, start a reader thread only when reading is the bottleneck.
ADAPTIVE = -1


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="segment and track a video, frame folder or YTVIS split")
    p.add_argument("input", help="a video file, a folder of frames, a YTVIS split folder, or a folder of clips "
                                 "(each sub-folder of frames and each video file in it is one clip, video ids 1..N "
                                 "in natural name order)")
    add_output_options(p, "infer")  # --out, --zip, --davis-png, --coco: one per format of core.formats
    p.add_argument("--pkr", type=float, default=None, help="patch keep ratio in (0, 1] (default: the model's)")
    p.add_argument("--model", default=None, help="checkpoint .safetensors (default: the embedded model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--mode", default="vpp", choices=["vpp", "random", "dense"], help="pruning mode")
    p.add_argument("--dist-timeout", type=float, default=7 * 24 * 3600, metavar="SECONDS",
                   help="under torchrun: how long ranks wait for each other (default: 7 days)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="drop unreadable frames of a folder or video (listed on stderr) instead of failing")
    p.add_argument("--threads", type=int_range(1, 1024), default=None,
                   help="torch intra-op threads, 1..1024, fixed for the run (default: on CPU, one per core, lowered "
                        "while other processes keep cores busy and raised again when they stop, re-measured about "
                        "once a second; an exported OMP_NUM_THREADS also fixes the count)")
    p.add_argument("--prefetch", type=int_range(0, 64), default=None, metavar="N",
                   help=f"frames decoded and resized ahead on a reader thread while the model runs; 0 reads on the "
                        f"main thread (default: {PREFETCH_DEPTH} on CUDA or when torch uses fewer threads than there "
                        f"are cores; on a CPU torch already keeps busy, the first frames are read on the main thread "
                        f"and the thread starts only if reading a frame takes as long as the model's work on it, "
                        f"e.g. 4K PNG frames: elsewhere it would only compete with torch). Results are the same "
                        f"either way")
    p.add_argument("--profile", action="store_true",
                   help="print where the time went (start-up, model load, reading, preprocessing, backbone, head, "
                        "post-processing, RLE, writing) on stderr when done, and the same as one JSON line "
                        "starting 'vpp-profile: '")
    p.set_defaults(func=run)


def _resolved_if_dotted(path: Path) -> Path:
    """``.``, ``..`` (and ``a/..``) resolved, so the video gets its folder's real name; other paths as given."""
    return path.resolve() if path.name in ("", ".", "..") else path


def _split(path: Path):
    from core.data.ytvis_dataset import YtvisSplit

    return YtvisSplit.find(path)


def _videos(path: Path, split, skip_corrupt: bool):
    """Yield (video_id, name, FrameSource) for the input."""
    from core.data.sources import open_source

    if split is not None:
        if skip_corrupt:
            raise VPPError(f"{path}: --skip-corrupt does not apply to a YTVIS split (results must have one "
                           "entry per annotated frame); fix or remove the unreadable frames instead")
        yield from split.sources()
        return
    source = open_source(path, on_corrupt="skip" if skip_corrupt else "raise")
    if skip_corrupt:
        source.scan()
    yield 1, (path.stem if path.is_file() else path.name) or "video", source


def _inputs(path: Path, split, model: str | None) -> list[Path]:
    """Every file or folder the run reads, for the rule that outputs never overwrite inputs."""
    inputs = [path]
    if split is not None:
        inputs += [split.annotation_path, split.image_root]
        parents = {os.path.dirname(f) for v in split.gt.videos for f in v.file_names}
        inputs += [split.image_root / d for d in sorted(parents) if d]  # video folders may be symlinks
    elif path.is_dir():
        try:
            with os.scandir(path) as it:  # frames that are symlinks: their targets are inputs too
                inputs += [Path(e.path) for e in it if e.is_symlink()]
        except OSError:
            pass
    if model:
        inputs.append(Path(model))
    return inputs


def _outputs(args: argparse.Namespace) -> dict[str, Path | str | None]:
    out = Path(args.out)
    if out.name in ("", ".", ".."):
        raise VPPError(f"--out {args.out}: give a file name for the results JSON")
    return output_paths(args, "infer")


def _batch(source_path: Path, split) -> bool:
    from core.batch_infer import is_clip_folder

    return split is not None or int(os.environ.get("WORLD_SIZE", "1")) > 1 or is_clip_folder(source_path)


def _clips(source_path: Path, split):
    from core.batch_infer import Clip, folder_clips, is_clip_folder, split_clips
    from core.data.sources import open_source

    if split is not None:
        return split_clips(split)
    if is_clip_folder(source_path):
        return folder_clips(source_path)
    name = (source_path.stem if source_path.is_file() else source_path.name) or "video"
    return [Clip(1, name, source_path, 1, lambda **kw: open_source(source_path, **kw))]


def run(args: argparse.Namespace) -> int:
    from core.export import RunRecord, VideoExport, check_outputs, export_results, recover_exports
    from core.resources import DEFAULT_MODEL

    inp = Path(args.input)
    if not inp.exists():
        raise DataError(f"{inp}: input not found (expected a video file, a folder of frames or a YTVIS split)")
    if args.pkr is not None:
        check_pkr(args.pkr, source="--pkr")
    outputs = _outputs(args)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone finishes or undoes a killed export
        for note in recover_exports(*(p for p in outputs.values() if p is not None)):
            print(f"note: {note}", file=sys.stderr)
    source_path = _resolved_if_dotted(inp)
    split = _split(source_path)
    inputs = _inputs(source_path, split, args.model)
    check_outputs(outputs, inputs=inputs)  # before the model loads or a frame is read
    t_run = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if _batch(source_path, split):
        return _run_batch(args, inp, source_path, split, outputs, inputs)
    loaded = load_model(args.model, device="cpu")
    if not loaded.trained:
        print("warning: no trained default model is shipped; results come from an untrained model", file=sys.stderr)
    # the model's family picks the session: ours InferenceSession, a released one (vpp import-checkpoint) ROVIS tracking
    session = make_session(loaded, device=args.device, pkr=args.pkr, mode=args.mode)
    timer = _start_profile(session, t_run) if args.profile else None
    device = getattr(session, "device", args.device)
    depth = _prefetch_depth(args.prefetch, device)
    governor = ThreadGovernor.for_run(device, args.threads)
    videos: list[VideoExport] = []
    frames_done = 0
    for vid, name, source in _videos(source_path, split, args.skip_corrupt):
        with source:
            clip = ClipResults(len(source), source.size[1], source.size[0])
            # the bar is closed (its line ended) before any error message is printed
            with tqdm(total=len(source), desc=f"{name} (pkr {session.pkr:.2f})", unit="frame",
                      file=sys.stderr) as bar, _reader(source, depth, session) as frames:
                run_clip(governed(frames, governor), session, _frame_sink(clip, bar, timer))
            if timer is not None and getattr(frames, "busy_seconds", 0.0) > 0.0:  # a reader thread ran
                timer.add("reader thread (decode, resize)", frames.busy_seconds)
            frames_done += len(source)
            _report_skipped(source)
            if source.resized_note:  # frames of another size than the first were resized to it
                print(f"warning: {source.resized_note}", file=sys.stderr)
            videos.append(VideoExport(vid, name, tuple(source.names), clip))
    model = Path(args.model) if args.model else (DEFAULT_MODEL if loaded.trained else loaded.source)
    record = RunRecord.for_model("vpp infer", model, pkr=session.pkr, mode=getattr(session, "mode", args.mode),
                                 extra={"input": str(inp)})
    categories = list(loaded_categories(loaded))  # the model's own ids (YouTube-VIS 2021 for the released models)
    if timer is not None:
        timer.lap("other")
    summary = export_results(videos, outputs, categories=categories, record=record, inputs=inputs)
    if timer is not None:
        timer.lap("write")
        _print_profile(timer, frames_done, device, governor)
    for note in summary.recovered:
        print(f"note: {note}", file=sys.stderr)
    print(json.dumps({"results": str(outputs["ytvis"]), "tracks": sum(summary.tracks.values()),
                      "written": [str(p) for p in summary.paths]}))
    return 0


def _frame_sink(clip: ClipResults, bar, timer: StageTimer | None):
    """What ``vpp infer`` does with each frame's result: keep it as RLEs, then move the progress bar."""

    def add(index: int, res) -> None:
        clip.add(CompactFrame.from_result(res, index))
        if timer is not None:
            timer.lap("rle")
        bar.update(1)
        bar.set_postfix(kept=f"{res.keep_ratio:.2f}", ms=f"{res.ms:.0f}")
        if timer is not None:
            timer.lap("progress bar")

    return add


def _check_one_video_outputs(outputs, inp: Path, clips: int) -> None:
    """Refuse, before any frame is read, an output whose format holds one video when the input has several."""
    from core.formats import codec

    for name, path in outputs.items():
        c = codec(name)
        if path is not None and c.one_video and clips > 1:
            raise VPPError(f"{path}: {c.summary} holds one video, but {inp} has {clips} clips; run vpp infer on each "
                           f"clip with its own {c.option} file, or write YouTube-VIS JSON or COCO for all of them")


def _run_batch(args, inp: Path, source_path: Path, split, outputs, inputs) -> int:
    from core import batch_infer
    from core.export import RunRecord
    from core.resources import DEFAULT_MODEL

    if split is not None and args.skip_corrupt:
        raise VPPError(f"{source_path}: --skip-corrupt does not apply to a YTVIS split (results must have one "
                       "entry per annotated frame); fix or remove the unreadable frames instead")
    clips = _clips(source_path, split)
    _check_one_video_outputs(outputs, inp, len(clips))
    if split is None:  # symlinked clips and frames of a folder of clips are inputs too
        from core.export import check_outputs

        inputs = [*inputs, *batch_infer.clip_inputs(clips)]
        check_outputs(outputs, inputs=inputs)
    batch_infer.check_batch_paths(outputs["ytvis"], inputs)
    dist = batch_infer.Distributed.from_env(args.device, timeout_s=args.dist_timeout)
    try:
        loaded = load_model(args.model, device="cpu")
        if not loaded.trained and dist.rank == 0:
            print("warning: no trained default model is shipped; results come from an untrained model",
                  file=sys.stderr)
        session = make_session(loaded, device=dist.device, pkr=args.pkr, mode=args.mode)
        model = Path(args.model) if args.model else (DEFAULT_MODEL if loaded.trained else loaded.source)
        mode = getattr(session, "mode", args.mode)
        record = RunRecord.for_model("vpp infer", model, pkr=session.pkr, mode=mode, extra={"input": str(inp)})
        key = {"model": record.model, "model_sha256": record.model_sha256, "pkr": record.pkr, "mode": mode,
               "skip_corrupt": bool(args.skip_corrupt)}
        device = getattr(session, "device", dist.device)
        depth = _prefetch_depth(args.prefetch, device)
        governor = ThreadGovernor.for_run(device, args.threads)
        summary = batch_infer.run_batch(
            clips, session, outputs=outputs, record=record, categories=list(loaded_categories(loaded)),
            inputs=inputs, key=key, dist=dist, on_corrupt="skip" if args.skip_corrupt else "raise",
            input_label=str(inp), reader=lambda source: _governed_reader(_reader(source, depth, session), governor))
    finally:
        dist.close()
    done = len(summary.computed) + len(summary.reused)
    rate = (f"{len(summary.computed) / summary.seconds:.3f} videos/s, {summary.frames / summary.seconds:.2f} "
            f"frames/s" if summary.seconds > 0 and summary.computed else "nothing computed")
    print(f"rank {dist.rank}: {done} videos done ({len(summary.computed)} computed, {len(summary.reused)} reused, "
          f"{summary.frames} frames in {summary.seconds:.1f} s: {rate})", file=sys.stderr)
    if dist.rank == 0 and summary.merged is not None:
        for note in summary.merged.recovered:
            print(f"note: {note}", file=sys.stderr)
        print(json.dumps({"results": str(outputs["ytvis"]), "tracks": sum(summary.merged.tracks.values()),
                          "videos": len(clips), "failed": [],
                          "written": [str(p) for p in summary.merged.paths]
                          + [str(batch_infer.videos_path(outputs["ytvis"]))]}))
    elif dist.rank == 0:
        print(json.dumps({"results": None, "videos": len(clips), "failed": sorted(summary.failed),
                          "written": []}))
    return summary.code


def _prefetch_depth(asked: int | None, device) -> int:
    """``--prefetch``; by default :data:`PREFETCH_DEPTH` where a core is free for the reader (the model on CUDA,
    or torch on fewer threads than cores), -1 (:data:`ADAPTIVE`: read ahead only if reading proves the bottleneck,
    see :class:`~core.data.prefetch.AdaptiveReader`) on a CPU with more than one core that torch keeps busy, else 0."""
    if asked is not None:
        return asked
    import torch

    if str(device).startswith("cuda"):
        return PREFETCH_DEPTH
    cores = os.cpu_count() or 1
    if cores > torch.get_num_threads():
        return PREFETCH_DEPTH
    return ADAPTIVE if cores > 1 else 0


@contextlib.contextmanager
def _governed_reader(reader, governor: ThreadGovernor | None):
    """``reader``'s frames with the thread governor ticked before each."""
    with reader as frames:
        yield governed(frames, governor)


def _reader(source, depth: int, session):
    """The clip's frames for one pass, read ``depth`` ahead on a thread (on this one for 0; :data:`ADAPTIVE`: on
    this one until reading proves the bottleneck, see :class:`~core.data.prefetch.AdaptiveReader`).

    A session that says its input size (InferenceSession: ``input_size`` and ``resize``) gets each frame decoded
    at that size (``source.stream(fit=...)``: a JPEG at its largest DCT reduction that still covers it, a video
    frame resized once) and made into its input (:meth:`InferenceSession.resize` with the frame's full size,
    so masks come back at full size) on the reading thread; another session (a released model's) full frames."""
    plan = input_plan(source, session)
    if plan is not None:
        fit, transform = plan
        frames = source.stream(fit=fit)
    else:
        frames, transform = source.stream(), getattr(session, "resize", None)
    if depth == ADAPTIVE:
        return AdaptiveReader(frames, depth=PREFETCH_DEPTH, transform=transform)
    if depth > 0:
        return Prefetcher(frames, depth=depth, transform=transform)
    return contextlib.nullcontext(frames if plan is None else map(transform, frames))


def _process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), or None."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _start_profile(session, t_run: float):
    timer = StageTimer()
    age = _process_age()
    if age is not None:  # interpreter start and imports, up to run()
        timer.add("start-up", max(0.0, age - (time.perf_counter() - t_run)))
    timer.add("model load", time.perf_counter() - t_run)
    if hasattr(session, "enable_timing"):
        session.enable_timing(timer)
    return timer


#: Stages in the order a frame meets them; "reader thread" runs beside the others (not part of the sum).
_STAGE_ORDER = ("start-up", "model load", "read", "preprocess", "backbone", "head", "postprocess", "rle",
                "progress bar", "other", "write")


def _print_profile(timer, frames: int, device, governor: ThreadGovernor | None = None) -> None:
    import torch

    seconds = dict(timer.seconds)
    beside = {k: v for k, v in seconds.items() if k.startswith("reader thread")}
    main = {k: seconds[k] for k in (*_STAGE_ORDER, *sorted(set(seconds) - set(_STAGE_ORDER) - set(beside)))
            if k in seconds}
    total = sum(main.values())
    n = max(frames, 1)
    lines = [f"profile: {frames} frames, {total:.2f} s in all (device {device}, {torch.get_num_threads()} torch "
             f"threads)", f"  {'stage':32s} {'seconds':>8s} {'ms/frame':>9s} {'share':>6s}"]
    for k, v in [*main.items(), *beside.items()]:
        share = f"{100 * v / total:5.1f}%" if k in main and total > 0 else "  beside"
        lines.append(f"  {k:32s} {v:8.2f} {1000 * v / n:9.1f} {share}")
    if governor is not None:
        lines.append("  " + governor.summary())
    print("\n".join(lines), file=sys.stderr)
    print("vpp-profile: " + json.dumps({"frames": frames, "total_s": total, "threads": torch.get_num_threads(),
                                        "device": str(device), "seconds": main, "beside": beside,
                                        "thread_changes": [] if governor is None else
                                        [[c.after_s, c.threads, c.others] for c in governor.changes]}),
          file=sys.stderr)


def _report_skipped(source) -> None:
    for name, why in source.skipped:
        print(f"warning: skipped frame {name}: {why}", file=sys.stderr)
