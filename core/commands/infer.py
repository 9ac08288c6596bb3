"""``vpp infer INPUT --out results.json``: segment and track a frame folder, a video file or a YTVIS split.

    vpp infer clip.mp4 --pkr 0.4 --out results.json [--zip] [--davis-png masks/] [--coco frames_coco.json]
    vpp infer frames/ --model my.safetensors --device cuda --out results.json
    vpp infer DATA/valid --out results.json          # a YTVIS split: instances.json + JPEGImages/

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
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from core.errors import DataError, VPPError
from core.resources import load_model, loaded_categories
from core.results import ClipResults, CompactFrame
from core.session import InferenceSession, make_session


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="segment and track a video, frame folder or YTVIS split")
    p.add_argument("input", help="a video file, a folder of frames, or a YTVIS split folder")
    p.add_argument("--out", required=True,
                   help="results JSON (YTVIS results format); its run record <OUT stem>.run.json is written beside it")
    p.add_argument("--pkr", type=float, default=None, help="patch keep ratio in (0, 1] (default: the model's)")
    p.add_argument("--model", default=None, help="checkpoint .safetensors (default: the embedded model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--mode", default="vpp", choices=["vpp", "random", "dense"], help="pruning mode")
    p.add_argument("--zip", action="store_true", help="also write OUT.zip with results.json inside")
    p.add_argument("--davis-png", default=None, metavar="DIR",
                   help="also export DAVIS palette PNG masks into DIR (one sub-folder per video for a split), with "
                        "its run record DIR/vpp_run.json. DIR must be a new or empty folder, or an earlier export of "
                        "ours (it holds vpp_run.json and only the masks it lists): DIR is then written, or replaced "
                        "as a whole, only after the new masks are complete. A folder holding any other file is "
                        "refused before inference starts, and so are the input's own folder, a folder inside it "
                        "or one containing it")
    p.add_argument("--coco", default=None, help="also write a COCO per-frame JSON (one image per frame) to this file")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="drop unreadable frames of a folder or video (listed on stderr) instead of failing")
    p.set_defaults(func=run)


def _resolved_if_dotted(path: Path) -> Path:
    """``.``, ``..`` (and ``a/..``) resolved, so the video gets its folder's real name; other paths as given."""
    return path.resolve() if path.name in ("", ".", "..") else path


def _split(path: Path):
    from core.data.sources import YtvisSplit

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


def _outputs(args: argparse.Namespace) -> dict[str, Path | None]:
    out = Path(args.out)
    if out.name in ("", ".", ".."):
        raise VPPError(f"--out {args.out}: give a file name for the results JSON")
    return {"ytvis": out, "zip": out.with_suffix(".zip") if args.zip else None,
            "davis": Path(args.davis_png) if args.davis_png else None,
            "coco": Path(args.coco) if args.coco else None}


def run(args: argparse.Namespace) -> int:
    from core.export import RunRecord, VideoExport, check_outputs, export_results, recover_exports
    from core.resources import DEFAULT_MODEL

    inp = Path(args.input)
    if not inp.exists():
        raise DataError(f"{inp}: input not found (expected a video file, a folder of frames or a YTVIS split)")
    if args.pkr is not None and not 0 < args.pkr <= 1:
        raise VPPError(f"--pkr must be in (0, 1], got {args.pkr}")
    outputs = _outputs(args)
    for note in recover_exports(*(p for p in outputs.values() if p is not None)):
        print(f"note: {note}", file=sys.stderr)
    source_path = _resolved_if_dotted(inp)
    split = _split(source_path)
    inputs = _inputs(source_path, split, args.model)
    check_outputs(**outputs, inputs=inputs)  # before the model loads or a frame is read
    loaded = load_model(args.model, device="cpu")
    if not loaded.trained:
        print("warning: no trained default model is shipped; results come from an untrained model", file=sys.stderr)
    # a released model (vpp import-checkpoint) runs with ROVIS tracking; ours with InferenceSession
    session = make_session(loaded, device=args.device, pkr=args.pkr, mode=args.mode, vpp_session=InferenceSession)
    videos: list[VideoExport] = []
    for vid, name, source in _videos(source_path, split, args.skip_corrupt):
        with source:
            clip = ClipResults(len(source), source.size[1], source.size[0])
            # the bar is closed (its line ended) before any error message is printed
            with tqdm(total=len(source), desc=f"{name} (pkr {session.pkr:.2f})", unit="frame",
                      file=sys.stderr) as bar:
                for index, res in enumerate(session.run_clip(source)):
                    clip.add(CompactFrame.from_result(res, index))
                    bar.update(1)
                    bar.set_postfix(kept=f"{res.keep_ratio:.2f}", ms=f"{res.ms:.0f}")
            _report_skipped(source)
            if source.resized_note:  # frames of another size than the first were resized to it
                print(f"warning: {source.resized_note}", file=sys.stderr)
            videos.append(VideoExport(vid, name, tuple(source.names), clip))
    model = Path(args.model) if args.model else (DEFAULT_MODEL if loaded.trained else loaded.source)
    record = RunRecord.for_model("vpp infer", model, pkr=session.pkr, mode=getattr(session, "mode", args.mode),
                                 extra={"input": str(inp)})
    categories = list(loaded_categories(loaded))  # the model's own ids (YouTube-VIS 2021 for the released models)
    summary = export_results(videos, **outputs, categories=categories, record=record, inputs=inputs)
    for note in summary.recovered:
        print(f"note: {note}", file=sys.stderr)
    print(json.dumps({"results": str(outputs["ytvis"]), "tracks": sum(summary.tracks.values()),
                      "written": [str(p) for p in summary.paths]}))
    return 0


def _report_skipped(source) -> None:
    for name, why in source.skipped:
        print(f"warning: skipped frame {name}: {why}", file=sys.stderr)
