"""Save and load models as safetensors weights + a JSON config next to them.

``model.safetensors`` holds the weights (the config is also copied into its metadata, so a lone file
still loads); ``model.json`` holds the :class:`VPPConfig`. Loading checks every key and shape and
fails with a message that lists what does not fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from core.atomic import atomic_write_bytes, atomic_write_text
from core.build import VPPConfig, build_vpp
from core.errors import CheckpointError
from core.model.vpp import VPPModel

CONFIG_KEY = "vpp_config"


def config_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_checkpoint(model: VPPModel, config: VPPConfig, path: str | Path, *, metadata: dict | None = None,
                    half: bool = False) -> Path:
    """Write ``path`` (.safetensors) and its JSON config atomically; returns the weights path.

    ``half`` stores floating-point weight matrices and kernels (2+ dims, nearly all the bytes) as
    float16; vectors (biases, norms, pixel statistics) stay float32. Loading casts back to the model's
    float32, so evaluate the half file itself if its figures matter.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() and v.ndim >= 2 else v for k, v in state.items()}
    meta = {CONFIG_KEY: config.to_json(), **{k: str(v) for k, v in (metadata or {}).items()}}
    atomic_write_bytes(path, save(state, metadata=meta))
    atomic_write_text(config_path(path), config.to_json() + "\n")
    return path


def read_config(path: str | Path) -> VPPConfig:
    """The config of a checkpoint: the JSON file beside it, else the copy in the weights' metadata."""
    path = Path(path)
    side = config_path(path)
    try:
        if side.is_file():
            return VPPConfig.from_dict(json.loads(side.read_text(encoding="utf-8")))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if CONFIG_KEY not in meta:
            raise CheckpointError(f"{path}: no config found (expected {side.name} beside it or a '{CONFIG_KEY}' entry)")
        return VPPConfig.from_dict(json.loads(meta[CONFIG_KEY]))
    except (ValueError, TypeError, OSError, SafetensorError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot read the model config: {exc}") from exc


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", config: VPPConfig | None = None
) -> tuple[VPPModel, VPPConfig]:
    """Build the model described by the checkpoint's config and load its weights onto ``device``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    cfg = config or read_config(path)
    model = build_vpp(cfg)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    load_state_strict(model, state, source=str(path))
    return model.to(device).eval(), cfg


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model``; on any missing, unexpected or mis-shaped key raise one clear error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]  # in model order, so the first ones shown are the earliest
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
                parts.append(f"{len(items)} {title}: {shown}")
        raise CheckpointError(f"{source} does not fit this model ({'; '.join(parts)}). "
                              "Is it a checkpoint of another variant or version? Check the JSON config beside it.")
    model.load_state_dict(state, strict=True)
