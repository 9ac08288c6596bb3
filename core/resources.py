"""The embedded default model and demo clip shipped in ``resources/`` (works offline on first start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.build import VPPConfig, build_vpp
from core.checkpoint import load_checkpoint, read_config
from core.errors import CheckpointError
from core.model.release_model import ReleaseConfig, ReleaseVPPModel
from core.model.vpp import VPPModel
from core.release_checkpoint import ReleaseFile, load_release_checkpoint, model_kind

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
    """A loaded model and what the callers need besides its weights.

    ``kind``: "vpp" (the project's :class:`VPPModel`, ``config`` a :class:`VPPConfig`) or "release" (the authors'
    :class:`~core.model.release_model.ReleaseVPPModel`, ``config`` its ``ReleaseConfig``, ``release`` the file's
    sidecar). ``categories``: ``(dataset id, name)`` per class index of the model's head, the ids exports write
    (YouTube-VIS 2021's for the released models); filled from the config for a "vpp" model when not given.
    Run one with :func:`core.session.make_session`.
    """

    model: VPPModel | ReleaseVPPModel
    config: VPPConfig | ReleaseConfig
    source: str  # file path, or a description
    trained: bool  # False for the untrained fallback (the app says so)
    kind: str = "vpp"
    categories: tuple[tuple[int, str], ...] = ()
    release: ReleaseFile | None = None  # the release file's sidecar (kind "release")

    def __post_init__(self) -> None:
        if not self.categories and self.kind == "vpp":
            self.categories = config_categories(self.config)
        self.categories = tuple((int(i), str(n)) for i, n in self.categories)


def config_categories(config) -> tuple[tuple[int, str], ...]:
    """``(id, name)`` per class index of a :class:`VPPConfig` (empty for anything without categories)."""
    ids = getattr(config, "class_to_category_id", None)
    names = getattr(config, "category_names", None)
    if ids is None or names is None:
        return ()
    return tuple((int(i), str(n)) for i, n in zip(ids, names))


def loaded_categories(loaded) -> tuple[tuple[int, str], ...]:
    """``loaded.categories``, or its config's for an object without them (a stand-in built by a caller)."""
    return tuple(getattr(loaded, "categories", ()) or ()) or config_categories(getattr(loaded, "config", None))


def load_model(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``path``, or the embedded default model when ``path`` is None.

    A file written by ``vpp import-checkpoint`` (``core.release_checkpoint.model_kind`` says "release") loads as
    the authors' architecture with the categories of its sidecar; any other file as the project's own model.
    If no default model is shipped (a development checkout before one was trained), an untrained Tiny
    model is built so the pipeline still runs; ``trained`` is False then and callers must say so.
    """
    if path is not None:
        if model_kind(path) == "release":
            release_model, info = load_release_checkpoint(path, device=device)
            cats = tuple((c.id, c.name) for c in info.categories)
            return LoadedModel(release_model, info.config, str(path), True, kind="release", categories=cats,
                               release=info)
        model, cfg = load_checkpoint(path, device=device)
        return LoadedModel(model, cfg, str(path), True)
    if DEFAULT_MODEL.is_file():
        model, cfg = load_checkpoint(DEFAULT_MODEL, device=device)
        return LoadedModel(model, cfg, str(DEFAULT_MODEL), True)
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=640)
    return LoadedModel(build_vpp(cfg).to(device).eval(), cfg, "untrained Tiny (no default model shipped)", False)
