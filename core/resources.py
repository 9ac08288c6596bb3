"""The embedded default model and demo clip shipped in ``resources/`` (works offline on first start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.build import VPPConfig, build_vpp
from core.checkpoint import load_checkpoint
from core.model.vpp import VPPModel

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
DEFAULT_MODEL = RESOURCES / "default_model.safetensors"
DEMO_CLIP = RESOURCES / "demo_clip"


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
