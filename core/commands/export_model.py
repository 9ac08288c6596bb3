"""``vpp export-model SRC DST [--half]``: copy a checkpoint (e.g. a training run's last one) for shipping.

    vpp export-model runs/default_model/last.safetensors resources/default_model.safetensors --half --pkr 0.4

The weights are loaded strictly (a damaged checkpoint fails here, not in a user's app: wrong keys,
shapes or dtypes, NaN/Inf, an invalid config) and written atomically with their JSON config; ``--half``
stores weight matrices as float16 (half the size). The destination folder must exist and be writable;
that is checked before the source is read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import pkr_value
from core.errors import VPPError
from core.model.vpp.checkpoint import config_path, load_checkpoint, save_checkpoint
from core.multi_commit import writable_output


def add_parser(sub) -> None:
    p = sub.add_parser("export-model", help="re-save a checkpoint for shipping (optionally float16)")
    p.add_argument("src", help="checkpoint .safetensors to read")
    p.add_argument("dst", help="checkpoint .safetensors to write (its .json config is written beside it)")
    p.add_argument("--half", action="store_true", help="store weight matrices as float16")
    p.add_argument("--pkr", type=pkr_value, default=None,
                   help="the PKR in (0, 1] users get when they do not choose one")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    src, dst = Path(args.src), Path(args.dst)
    if dst.suffix != ".safetensors":
        raise VPPError(f"{dst}: the output must end in .safetensors")
    if not src.is_file():
        raise VPPError(f"{src}: checkpoint file not found" if not src.exists() else f"{src}: not a file")
    if src.resolve() == dst.resolve() or config_path(src).resolve() == config_path(dst).resolve():
        raise VPPError(f"{dst}: write to a different file than the source")
    writable_output(dst, "the exported model")
    writable_output(config_path(dst), "the exported model's config")
    model, cfg = load_checkpoint(src)
    if args.pkr is not None:
        cfg = cfg.replace(pkr=args.pkr)
    try:
        save_checkpoint(model, cfg, dst, half=args.half, metadata={"exported_from": src.name})
    except OSError as exc:  # e.g. the disk filled up; the atomic writes leave no partial file behind
        raise VPPError(f"{dst}: cannot write the exported model ({exc.strerror or exc})") from exc
    print(f"{dst}: {dst.stat().st_size / 2**20:.1f} MB")
    return 0
