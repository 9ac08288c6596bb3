"""``vpp train``: dense stage then sparse fine-tune on a YTVIS-format dataset (resumable, torchrun-ready).

    vpp train --train-ann DATA/train/instances.json --train-images DATA/train/JPEGImages --out runs/x
    vpp train --config recipe.json [--out runs/y]      # flags override the file
    torchrun --nproc_per_node 8 -m core.cli train --config recipe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.cli import float_range, int_range, pkr_value
from core.errors import VPPError
from core.training.trainer import TrainConfig, Trainer

MAX_CONFIG_BYTES = 1 << 20

_FLAGS = {
    "train_ann": str, "train_images": str, "out_dir": str, "variant": str, "init": str, "init_backbone": str,
    "dense_steps": int_range(0), "sparse_steps": int_range(0), "batch_size": int_range(1, 4096),
    "clip_len": int_range(1, 1000), "lr": float_range(0.0, 10.0, lo_open=True), "num_points": int_range(1, 10**6),
    "seed": int_range(0, 2**32 - 1), "checkpoint_every": int_range(1), "log_every": int_range(1),
    "val_every": int_range(0), "val_ann": str, "val_images": str, "device": str,
}


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a VPP model (dense, then sparse fine-tune)")
    p.add_argument("--config", help="JSON file with TrainConfig fields (flags override it)")
    for name, typ in _FLAGS.items():
        flag = "--out" if name == "out_dir" else "--" + name.replace("_", "-")
        p.add_argument(flag, dest=name, type=typ, default=None)
    p.add_argument("--sparse-pkrs", dest="sparse_pkrs", type=pkr_value, nargs="+", default=None,
                   help="PKRs in (0, 1] the sparse stage samples from")
    p.add_argument("--model", dest="model_json", default=None,
                   help='VPPConfig overrides as JSON, e.g. \'{"input_long_side": 256}\'')
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    data: dict = {}
    source = "training config (command line)"
    if args.config:
        path = Path(args.config)
        source = f"{path} (with the command line's flags)"
        try:
            size = path.stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise VPPError(f"{path}: {size:,} bytes is too large for a training config (at most "
                               f"{MAX_CONFIG_BYTES:,})")
            data = json.loads(path.read_text(encoding="utf-8"))
        except RecursionError:
            raise VPPError(f"{path}: the JSON is nested too deeply to be a training config") from None
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise VPPError(f"{path}: cannot read the training config ({reason})") from exc
        if not isinstance(data, dict):
            raise VPPError(f"{path}: the training config must be a JSON object")
    for name in (*_FLAGS, "sparse_pkrs"):
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.model_json:
        try:
            overrides = json.loads(args.model_json)
        except RecursionError:
            raise VPPError("--model: the JSON is nested too deeply") from None
        except ValueError as exc:
            raise VPPError(f"--model is not valid JSON: {exc}") from exc
        base = data.get("model", {})
        if not isinstance(overrides, dict) or not isinstance(base, dict):
            raise VPPError("--model must be a JSON object of model config keys, e.g. '{\"input_long_side\": 256}'"
                           if not isinstance(overrides, dict) else f"{source}: 'model' must be a JSON object")
        data["model"] = {**base, **overrides}
    missing = [k for k in ("train_ann", "train_images", "out_dir") if k not in data]
    if missing:
        raise VPPError(f"missing {', '.join('--' + m.replace('_', '-') for m in missing)} (or put them in --config)")
    cfg = TrainConfig.from_dict(data, source=source)  # a ConfigError (one line) names the key and its range
    for key in ("train_ann", "train_images"):
        if not Path(data[key]).exists():
            raise VPPError(f"{data[key]}: not found (given as {key})")
    for key in ("init", "init_backbone", "val_ann", "val_images"):
        if data.get(key) is not None and not Path(data[key]).exists():
            raise VPPError(f"{data[key]}: not found (given as {key})")
    return cfg


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
