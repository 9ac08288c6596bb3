"""The embedded default model and demo clip shipped in ``resources/`` (works offline on first start)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.build import FAMILIES, Family, family_of_file
from core.errors import CheckpointError
from core.model.release.checkpoint import ReleaseFile
from core.model.release.config import ReleaseConfig
from core.model.release.model import ReleaseVPPModel
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import load_checkpoint, read_config
from core.model.vpp.config import VPPConfig
from core.model.vpp.model import VPPModel

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

    ``family``: :data:`core.build.FAMILIES` ``["vpp"]`` (the project's :class:`VPPModel`, ``config`` a
    :class:`VPPConfig`) or ``["release"]`` (the authors' :class:`~core.model.release.model.ReleaseVPPModel`,
    ``config`` its ``ReleaseConfig``, ``release`` the file's sidecar). ``categories``: ``(dataset id, name)`` per
    class index of the model's head, the ids exports write (YouTube-VIS 2021's for the released models); filled
    from the config when not given (a ``ReleaseConfig`` names none). Run one with :func:`core.build.make_session`.
    """

    model: VPPModel | ReleaseVPPModel
    config: VPPConfig | ReleaseConfig
    source: str  # file path, or a description
    trained: bool  # False for the untrained fallback (the app says so)
    family: Family = field(default_factory=lambda: FAMILIES["vpp"])
    categories: tuple[tuple[int, str], ...] = ()
    release: ReleaseFile | None = None  # the release file's sidecar (family "release")

    def __post_init__(self) -> None:
        if not self.categories:
            self.categories = config_categories(self.config)
        self.categories = tuple((int(i), str(n)) for i, n in self.categories)

    @property
    def kind(self) -> str:
        """The family's name: "vpp" or "release" (what a sweep's JSON records as the model's kind)."""
        return self.family.name


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

    The file's family (:func:`core.build.family_of_file`) reads it: a file written by ``vpp import-checkpoint``
    loads as the authors' architecture with the categories of its sidecar, any other as the project's own model.
    If no default model is shipped (a development checkout before one was trained), an untrained Tiny
    model is built so the pipeline still runs; ``trained`` is False then and callers must say so.
    """
    if path is not None:
        family = family_of_file(path)
        read = family.read_checkpoint(path, device=device)
        return LoadedModel(read.model, read.config, str(path), True, family=family, categories=read.categories,
                           release=read.info)
    if DEFAULT_MODEL.is_file():
        model, cfg = load_checkpoint(DEFAULT_MODEL, device=device)
        return LoadedModel(model, cfg, str(DEFAULT_MODEL), True)
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=640)
    return LoadedModel(build_vpp(cfg).to(device).eval(), cfg, "untrained Tiny (no default model shipped)", False)
