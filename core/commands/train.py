"""``vpp train``: dense stage then sparse fine-tune on a YTVIS-format dataset (resumable, torchrun-ready).

    vpp train --train-ann DATA/train/instances.json --train-images DATA/train/JPEGImages --out runs/x
    vpp train --config recipe.json [--out runs/y]      # flags override the file
    torchrun --nproc_per_node 8 -m core.cli train --config recipe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.errors import VPPError
from core.training.trainer import TrainConfig, Trainer

_FLAGS = {
    "train_ann": str, "train_images": str, "out_dir": str, "variant": str, "init": str,
    "dense_steps": int, "sparse_steps": int, "batch_size": int, "clip_len": int, "lr": float,
    "num_points": int, "seed": int, "checkpoint_every": int, "log_every": int, "val_every": int,
    "val_ann": str, "val_images": str, "device": str,
}


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a VPP model (dense, then sparse fine-tune)")
    p.add_argument("--config", help="JSON file with TrainConfig fields (flags override it)")
    for name, typ in _FLAGS.items():
        flag = "--out" if name == "out_dir" else "--" + name.replace("_", "-")
        p.add_argument(flag, dest=name, type=typ, default=None)
    p.add_argument("--sparse-pkrs", dest="sparse_pkrs", type=float, nargs="+", default=None)
    p.add_argument("--model", dest="model_json", default=None,
                   help='VPPConfig overrides as JSON, e.g. \'{"input_long_side": 256}\'')
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    data: dict = {}
    if args.config:
        path = Path(args.config)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise VPPError(f"{path}: cannot read the training config ({exc})") from exc
        if not isinstance(data, dict):
            raise VPPError(f"{path}: the training config must be a JSON object")
    for name in (*_FLAGS, "sparse_pkrs"):
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.model_json:
        try:
            data["model"] = {**data.get("model", {}), **json.loads(args.model_json)}
        except ValueError as exc:
            raise VPPError(f"--model is not valid JSON: {exc}") from exc
    missing = [k for k in ("train_ann", "train_images", "out_dir") if k not in data]
    if missing:
        raise VPPError(f"missing {', '.join('--' + m.replace('_', '-') for m in missing)} (or put them in --config)")
    for key in ("train_ann", "train_images"):
        if not Path(data[key]).exists():
            raise VPPError(f"{data[key]}: not found (given as {key})")
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise VPPError(f"bad training config: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    trainer = Trainer(cfg)
    validate = None
    if cfg.val_every and cfg.val_ann and cfg.val_images:
        from core.training.validate import make_validator

        validate = make_validator(cfg.val_ann, cfg.val_images)
    trainer.train(validate)
    if trainer.rank == 0:
        print(f"done: {Path(cfg.out_dir) / 'last.safetensors'}")
    return 0
