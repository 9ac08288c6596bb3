"""``vpp eval``: score YouTube-VIS results against ground truth (video AP_track, per-frame mAP_bbox/segm).

    vpp eval --gt valid/instances.json --results results.zip [--json figures.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core import __version__
from core.atomic import atomic_write_text
from core.data.ytvis import YtvisGroundTruth, YtvisResult, read_ytvis_gt, read_ytvis_results
from core.errors import DataError
from core.evaluation.ytvis_eval import evaluate, format_table


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate YouTube-VIS results (video AP and per-frame COCO mAP)")
    p.add_argument("--gt", required=True, help="YouTube-VIS ground-truth JSON")
    p.add_argument("--results", required=True, help="results JSON, or a zip holding results.json")
    p.add_argument("--json", dest="json_out", default=None, help="also write the figures to this JSON file")
    p.add_argument("--area-ranges", choices=("ytvis", "coco"), default="ytvis",
                   help="small/medium/large limits of the video AP: YouTube-VIS 128²/256² (default) or COCO 32²/96²")
    p.add_argument("--no-frame-metrics", action="store_true", help="skip the per-frame COCO mAP_bbox/mAP_segm")
    p.set_defaults(func=run)


def known_categories(results: tuple[YtvisResult, ...], gt: YtvisGroundTruth, source: str) -> tuple[YtvisResult, ...]:
    """The results whose category the ground truth has; the others are ignored with one warning naming
    their ids (as the official YouTube-VIS evaluator does: it scores the GT's categories only)."""
    known = set(gt.category_ids)
    extra = sorted({r.category_id for r in results} - known)
    if extra:
        n = sum(r.category_id not in known for r in results)
        print(f"warning: {source}: ignored {n} result track(s) of category id(s) {', '.join(map(str, extra))}, "
              "which the ground truth does not have", file=sys.stderr)
    return tuple(r for r in results if r.category_id in known)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    gt = read_ytvis_gt(args.gt)
    results = known_categories(read_ytvis_results(args.results, gt, check_categories=False), gt, args.results)
    figures = evaluate(gt, results, area_ranges=args.area_ranges, frame_metrics=not args.no_frame_metrics,
                       source=f"{args.results} (against {args.gt})")
    seconds = time.perf_counter() - start
    print(format_table(figures))
    print(f"{len(gt.videos)} videos, {len(gt.annotations)} ground-truth tracks, {len(results)} result tracks; "
          f"size ranges: video AP {args.area_ranges}, per-frame mAP coco; {seconds:.2f} s")
    if args.json_out:
        out = Path(args.json_out)
        doc = {"figures": figures, "gt": str(Path(args.gt).resolve()), "results": str(Path(args.results).resolve()),
               "area_ranges": args.area_ranges, "vpp_studio": __version__}
        try:
            atomic_write_text(out, json.dumps(doc, indent=2) + "\n")
        except OSError as exc:
            raise DataError(f"{out}: cannot write the figures ({exc}); check the folder") from exc
    return 0
