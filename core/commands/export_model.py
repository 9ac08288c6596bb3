"""``vpp export-model SRC DST [--half]``: copy a checkpoint (e.g. a training run's last one) for shipping.

    vpp export-model runs/default_model/last.safetensors resources/default_model.safetensors --half --pkr 0.4

The weights are loaded strictly (a damaged checkpoint fails here, not in a user's app) and written
atomically with their JSON config; ``--half`` stores weight matrices as float16 (half the size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import VPPError


def add_parser(sub) -> None:
    p = sub.add_parser("export-model", help="re-save a checkpoint for shipping (optionally float16)")
    p.add_argument("src", help="checkpoint .safetensors to read")
    p.add_argument("dst", help="checkpoint .safetensors to write (its .json config is written beside it)")
    p.add_argument("--half", action="store_true", help="store weight matrices as float16")
    p.add_argument("--pkr", type=float, default=None, help="the PKR users get when they do not choose one")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    src, dst = Path(args.src), Path(args.dst)
    if dst.suffix != ".safetensors":
        raise VPPError(f"{dst}: the output must end in .safetensors")
    if src.resolve() == dst.resolve():
        raise VPPError(f"{dst}: write to a different file than the source")
    if args.pkr is not None and not 0 < args.pkr <= 1:
        raise VPPError(f"--pkr must be in (0, 1], got {args.pkr}")
    model, cfg = load_checkpoint(src)
    if args.pkr is not None:
        cfg = cfg.replace(pkr=args.pkr)
    save_checkpoint(model, cfg, dst, half=args.half, metadata={"exported_from": src.name})
    print(f"{dst}: {dst.stat().st_size / 2**20:.1f} MB")
    return 0
