"""``vpp model-card``: the accuracy/speed table of a model on a held-out YTVIS split, in one command.

    vpp model-card --split data/shapes/valid [--model PATH] [--markdown table.md] [--json figures.json]

For each configuration (dense = PKR 1.0, VPP at 0.7/0.55/0.4, the random-drop baseline at the lowest
PKR) every video of the split runs from its first frame as ``vpp infer`` would, and the results are
scored with the official YouTube-VIS protocol (AP_track) and per-frame COCO mAP_bbox/mAP_segm; a paired
bootstrap over videos gives the interval of the AP_track gap between VPP and random drop. The
speed columns come from :func:`core.bench.bench_model`: the same configurations timed interleaved in
one process at the split's frame size, so the ratios are comparable even on a busy machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from core import __version__
from core.atomic import atomic_write_text
from core.bench import bench_model
from core.cli import float_range, int_range
from core.errors import VPPError
from core.evaluation.bootstrap import BootstrapDelta, paired_bootstrap
from core.multi_commit import writable_output
from core.resources import load_model
from core.session_base import resolve_device
from core.training.validate import open_split, score_model


def add_parser(sub) -> None:
    p = sub.add_parser("model-card", help="accuracy and speed of a model at several PKRs on a YTVIS split")
    p.add_argument("--split", required=True, help="split folder with instances.json and JPEGImages/")
    p.add_argument("--model", default=None, help="checkpoint (default: the embedded default model)")
    p.add_argument("--pkr", nargs="+", type=float_range(0.0, 1.0, lo_open=True, hi_open=True),
                   default=[0.7, 0.55, 0.4], help="PKRs in (0, 1) besides dense (which is always included)")
    p.add_argument("--max-videos", type=int_range(1), default=None, help="only the first N videos")
    p.add_argument("--repeats", type=int_range(1, 100_000), default=15, help="timed rounds of the speed measurement")
    p.add_argument("--bootstrap", type=int_range(1, 1_000_000), default=1000,
                   help="video resamples for the interval of AP_track(vpp) - AP_track(random) at the lowest PKR")
    p.add_argument("--device", default="cpu")
    p.add_argument("--markdown", default=None, help="write the table as Markdown to this file")
    p.add_argument("--json", dest="json_out", default=None, help="write all figures to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    resolve_device(args.device)  # checked before the split is read and the model loaded
    for path, option in ((args.markdown, "--markdown"), (args.json_out, "--json")):
        if path:
            writable_output(path, option)  # before the minutes of scoring, not after
    split_dir = Path(args.split)
    if not (split_dir / "instances.json").is_file():
        raise VPPError(f"{split_dir}: not a YTVIS split folder (expected {split_dir / 'instances.json'} "
                       "and JPEGImages/ inside it)")
    split = open_split(split_dir / "instances.json", split_dir / "JPEGImages")
    loaded = load_model(args.model, device="cpu")
    if not loaded.trained:
        print("warning: no trained default model is shipped; measuring an untrained model", file=sys.stderr)
    model, cfg = loaded.model, loaded.config
    pkrs = sorted(set(args.pkr), reverse=True)
    configs = [("dense", "dense", 1.0), *((f"vpp@{p:g}", "vpp", p) for p in pkrs), (f"random@{pkrs[-1]:g}",
                                                                                     "random", pkrs[-1])]
    rows, scores = [], {}
    for name, mode, pkr in configs:
        t0 = time.perf_counter()
        score = scores[name] = score_model(
            model, cfg, split, pkr=pkr, mode=mode, device=args.device, max_videos=args.max_videos,
            progress=lambda n, total, name=name: print(f"\r{name}: {n}/{total} videos", end="", file=sys.stderr))
        print(f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        rows.append({"config": name, "mode": mode, "pkr": pkr, **score.figures})
    vpp_name, random_name = configs[-2][0], configs[-1][0]
    delta = paired_bootstrap(scores[vpp_name].gt, scores[vpp_name].results, scores[random_name].results,
                             resamples=args.bootstrap)
    first = split.gt.videos[0]
    size = (first.width, first.height)
    speed = bench_model(model, cfg, "model", pkrs, size=size, repeats=args.repeats, warmup=2, device=args.device,
                        log=lambda m: print(m, file=sys.stderr))
    by_name = {r.name: r for r in speed}
    for row in rows:
        b = by_name[row["config"]]
        row.update(backbone_speedup=b.backbone_speedup, e2e_speedup=b.e2e_speedup, backbone_ms=b.backbone_ms,
                   e2e_ms=b.e2e_ms, backbone_gflops=b.backbone_gflops)
    table = format_table(rows, size) + "\n\n" + format_delta(delta, vpp_name, random_name)
    print(table)
    if args.markdown:
        atomic_write_text(args.markdown, table + "\n")
    if args.json_out:
        meta = {"vpp_studio": __version__, "model": loaded.source, "split": str(split_dir.resolve()),
                "videos": args.max_videos or len(split.video_ids), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "device": args.device, "machine": platform.machine()}
        boot = {"a": vpp_name, "b": random_name, **dataclasses.asdict(delta)}
        atomic_write_text(args.json_out, json.dumps({"meta": meta, "rows": rows, "ap_track_delta": boot}, indent=2)
                          + "\n")
    return 0


def format_table(rows: list[dict], size: tuple[int, int]) -> str:
    """Markdown: one row per configuration; AP in points (x100), speed relative to dense."""
    stages = [k.split("@", 1)[1] for k in rows[-1] if k.startswith("object_recall@")] if rows else []
    lines = [
        "| config | measured PKR | AP_track | mAP_bbox | mAP_segm | backbone GFLOPs "
        f"| backbone speedup | end-to-end speedup ({size[0]}x{size[1]}) "
        f"| object-token recall ({' / '.join(stages) or 'per stage'}) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        recall = " / ".join(f"{r[f'object_recall@{s}']:.2f}" for s in stages if f"object_recall@{s}" in r)
        lines.append(
            f"| {r['config']} | {r['keep_ratio']:.3f} | {100 * r['AP']:.1f} | {100 * r['bbox_AP']:.1f} "
            f"| {100 * r['segm_AP']:.1f} | {r['backbone_gflops']:.2f} | {r['backbone_speedup']:.2f}x "
            f"| {r['e2e_speedup']:.2f}x | {recall or '—'} |"
        )
    return "\n".join(lines)


def format_delta(delta: BootstrapDelta, a: str, b: str) -> str:
    """One sentence: the AP_track difference of ``a`` over ``b`` with its bootstrap interval, in points."""
    return (f"AP_track {a} − {b}: {100 * delta.observed:+.1f} points, {100 * delta.level:.0f} % interval "
            f"[{100 * delta.low:+.1f}, {100 * delta.high:+.1f}] (paired bootstrap over videos, {delta.resamples} "
            f"resamples; {a} ahead in {100 * delta.share_positive:.0f} % of them)")
