"""The embedded default model and demo clip shipped in ``resources/`` (works offline on first start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.build import VPPConfig, build_vpp
from core.checkpoint import load_checkpoint, read_config
from core.errors import CheckpointError
from core.model.vpp import VPPModel

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
DEFAULT_MODEL = RESOURCES / "default_model.safetensors"
DEMO_CLIP = RESOURCES / "demo_clip"


FALLBACK_PKR = 0.5


def default_pkr() -> float:
    """The PKR the embedded default model was exported for (its JSON config), without loading weights.

    This is where a first start puts the PKR slider; ``FALLBACK_PKR`` when no default model is
    shipped, its config cannot be read, or it says dense (1.0 would hide what the app is for).
    """
    try:
        pkr = float(read_config(DEFAULT_MODEL).pkr)
    except CheckpointError:  # a missing/corrupt file is reported when the model is loaded, not here
        return FALLBACK_PKR
    return pkr if 0.0 < pkr < 1.0 else FALLBACK_PKR


@dataclass
class LoadedModel:
    model: VPPModel
    config: VPPConfig
    source: str  # file path, or a description
    trained: bool  # False for the untrained fallback (the app says so)


def load_model(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``path``, or the embedded default model when ``path`` is None.

    If no default model is shipped (a development checkout before one was trained), an untrained Tiny
    model is built so the pipeline still runs; ``trained`` is False then and callers must say so.
    """
    if path is not None:
        model, cfg = load_checkpoint(path, device=device)
        return LoadedModel(model, cfg, str(path), True)
    if DEFAULT_MODEL.is_file():
        model, cfg = load_checkpoint(DEFAULT_MODEL, device=device)
        return LoadedModel(model, cfg, str(DEFAULT_MODEL), True)
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=640)
    return LoadedModel(build_vpp(cfg).to(device).eval(), cfg, "untrained Tiny (no default model shipped)", False)
