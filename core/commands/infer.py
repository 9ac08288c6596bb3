"""``vpp infer INPUT --out results.json``: segment and track a frame folder, a video file or a YTVIS split.

    vpp infer clip.mp4 --pkr 0.4 --out results.json [--zip] [--davis-png masks/]
    vpp infer frames/ --model my.safetensors --device cuda --out results.json
    vpp infer DATA/valid --out results.json          # a YTVIS split: instances.json + JPEGImages/

Outputs are written only when the whole run succeeded, atomically: a failed or interrupted run leaves
no output behind and never overwrites a good one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from core.errors import DataError, VPPError
from core.resources import load_model
from core.results import ClipResults, CompactFrame
from core.session import InferenceSession


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="segment and track a video, frame folder or YTVIS split")
    p.add_argument("input", help="a video file, a folder of frames, or a YTVIS split folder")
    p.add_argument("--out", required=True, help="results JSON (YTVIS results format)")
    p.add_argument("--pkr", type=float, default=None, help="patch keep ratio in (0, 1] (default: the model's)")
    p.add_argument("--model", default=None, help="checkpoint .safetensors (default: the embedded model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--mode", default="vpp", choices=["vpp", "random", "dense"], help="pruning mode")
    p.add_argument("--zip", action="store_true", help="also write OUT.zip with results.json inside")
    p.add_argument("--davis-png", default=None, help="also export DAVIS indexed PNG masks into this folder")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="drop unreadable frames of a folder or video (listed on stderr) instead of failing")
    p.set_defaults(func=run)


def _videos(path: Path, skip_corrupt: bool):
    """Yield (video_id, name, FrameSource) for the input."""
    from core.data.sources import YtvisSplit, open_source

    split = YtvisSplit.find(path)
    if split is not None:
        if skip_corrupt:
            raise VPPError(f"{path}: --skip-corrupt does not apply to a YTVIS split (results must have one "
                           "entry per annotated frame); fix or remove the unreadable frames instead")
        yield from split.sources()
        return
    source = open_source(path, on_corrupt="skip" if skip_corrupt else "raise")
    if skip_corrupt:
        source.scan()
    yield 1, path.stem or path.name, source


def run(args: argparse.Namespace) -> int:
    from core.data.davis import write_davis_pngs
    from core.data.ytvis import write_results

    inp = Path(args.input)
    if not inp.exists():
        raise DataError(f"{inp}: input not found (expected a video file, a folder of frames or a YTVIS split)")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise VPPError(f"{out}: output folder {out.parent} does not exist")
    if args.pkr is not None and not 0 < args.pkr <= 1:
        raise VPPError(f"--pkr must be in (0, 1], got {args.pkr}")
    loaded = load_model(args.model, device="cpu")
    if not loaded.trained:
        print("warning: no trained default model is shipped; results come from an untrained model", file=sys.stderr)
    session = InferenceSession(loaded.model, loaded.config, device=args.device, pkr=args.pkr, mode=args.mode)
    results: list[dict] = []
    staging = None
    if args.davis_png:
        davis_dir = Path(args.davis_png)
        staging = Path(tempfile.mkdtemp(prefix=f".{davis_dir.name}.", dir=davis_dir.parent if davis_dir.parent.is_dir()
                                        else Path.cwd()))
    try:
        for vid, name, source in _videos(inp, args.skip_corrupt):
            with source:
                clip = ClipResults(len(source), source.size[1], source.size[0])
                bar = tqdm(total=len(source), desc=f"{name} (pkr {session.pkr:.2f})", unit="frame", file=sys.stderr)
                for index, res in enumerate(session.run_clip(source)):
                    clip.add(CompactFrame.from_result(res, index))
                    bar.update(1)
                    bar.set_postfix(kept=f"{res.keep_ratio:.2f}", ms=f"{res.ms:.0f}")
                bar.close()
                _report_skipped(source)
                results.extend(clip.to_ytvis(vid))
                if staging is not None:
                    objects = clip.davis_objects()
                    labels = [clip.davis_label_map(t, objects) for t in range(clip.num_frames)]
                    write_davis_pngs(staging / name, labels, source.names)
        write_results(out, results, zip_path=out.with_suffix(".zip") if args.zip else None)
        if staging is not None:
            _replace_dir(staging, Path(args.davis_png))
            staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    print(json.dumps({"results": str(out), "tracks": len(results)}))
    return 0


def _report_skipped(source) -> None:
    for name, why in source.skipped:
        print(f"warning: skipped frame {name}: {why}", file=sys.stderr)


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` into place of ``target``; an existing ``target`` is replaced only after success."""
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old")
        if backup.exists():
            shutil.rmtree(backup)
        target.rename(backup)
    new.rename(target)
    if backup is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(backup)
