"""``vpp bench``: time dense vs VPP (and a random-drop baseline) for the backbone and end to end.

    vpp bench                                          # this project's Tiny and Small at PKR 0.7 / 0.55 / 0.4
    vpp bench --variants adapter-tiny adapter-small    # the authors' architecture at the release's PKRs
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

from core import __version__
from core.atomic import atomic_write_text
from core.bench import ADAPTER_VARIANTS, format_table, rows_to_json, run_bench
from core.cli import int_range, pkr_value
from core.multi_commit import writable_output
from core.session_base import resolve_device

DEFAULT_PKRS = [0.7, 0.55, 0.4]
MAX_SIDE = 4096  # the model's input_long_side is the frame's long side; the config allows 256 tokens of 16 px


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 960x540, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size {text} is too small (at least 16x16)")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"size {text} is too large (at most {MAX_SIDE} pixels per side)")
    return w, h


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time dense vs pruned inference (backbone and end to end)")
    p.add_argument("--variants", nargs="+", default=["tiny", "small"], choices=["tiny", "small", *ADAPTER_VARIANTS],
                   help="tiny / small: this project's model; adapter-tiny / adapter-small: the authors' released "
                        "architecture (ViT-Adapter + Mask2Former + ROVIS), random weights (default: tiny small)")
    p.add_argument("--pkr", nargs="+", type=pkr_value, default=None,
                   help="PKRs in (0, 1] to time besides dense (default: 0.7 0.55 0.4; the adapter variants: the "
                        "release's two keep schedules, nominal PKR 0.5415 and 0.4133, rows vpp@0.55 and vpp@0.4)")
    p.add_argument("--size", type=_size, default=(960, 540), help="frame size WxH (default 960x540)")
    p.add_argument("--repeats", type=int_range(1, 100_000), default=7, help="timed rounds (medians are reported)")
    p.add_argument("--warmup", type=int_range(0, 100_000), default=2, help="untimed rounds first")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int_range(1, 1024), default=None,
                   help="torch intra-op threads, 1..1024 (default: torch's)")
    p.add_argument("--no-random", action="store_true", help="skip the random-drop baseline")
    p.add_argument("--json", dest="json_out", default=None, help="write the figures to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    resolve_device(args.device)  # an unknown or missing device is refused before minutes of timing
    if args.json_out:
        writable_output(args.json_out, "--json")
    if args.threads:
        torch.set_num_threads(args.threads)
    pkrs = sorted(set(args.pkr), reverse=True) if args.pkr else None
    rows = run_bench(
        args.variants,
        pkrs or DEFAULT_PKRS,
        size=args.size,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        random_baseline=not args.no_random,
        adapter_pkrs=pkrs,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(format_table(rows))
    if args.json_out:
        meta = {
            "vpp_studio": __version__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "size": list(args.size),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "machine": platform.machine(),
            "processor": platform.processor(),
        }
        atomic_write_text(args.json_out, json.dumps(rows_to_json(rows, meta), indent=2) + "\n")
        print(f"wrote {args.json_out}", file=sys.stderr)
    return 0
