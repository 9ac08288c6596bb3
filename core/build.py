"""The model families and their variants in one registry (as segment-anything's ``sam_model_registry`` maps
names to builders), and the one way to make a session for a loaded model.

    family = FAMILIES["vpp"]                          # or family_of_file(path): the family that wrote a model file
    model = family.build(config)                      # config: a family.config; family.variants: each variant's numbers
    read = family.read_checkpoint(path, device="cpu") # ModelFile: model, config, categories, the file's own info
    session = make_session(loaded, pkr=0.4)           # loaded.family.session(loaded, ...): a core.clip_loop.Session

Families:

- ``"vpp"``: the project's model (:mod:`core.model.vpp`), run by :class:`core.session.InferenceSession`;
- ``"release"``: the authors' released architecture (:mod:`core.model.release`), files written by
  ``vpp import-checkpoint``, run by :class:`core.release_session.ReleaseSession` (ROVIS tracking).

A new family is one more entry here, with its package under ``core/model/`` and its session; no caller
dispatches on a family's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.clip_loop import Session
from core.model.backbone import PruneMode
from core.model.release.builder import build_release_model
from core.model.release.checkpoint import load_release_checkpoint, model_kind
from core.model.release.config import VARIANTS as RELEASE_VARIANTS
from core.model.release.config import ReleaseConfig
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import load_checkpoint
from core.model.vpp.config import VARIANTS as VPP_VARIANTS
from core.model.vpp.config import VPPConfig
from core.release_session import ReleaseSession
from core.session import InferenceSession


@dataclass(frozen=True)
class ModelFile:
    """What a family's checkpoint reader returns: the model (eval mode, on the device asked for), its config, the
    ``(dataset id, name)`` of each class the file names (empty: the config's own) and the file's other facts
    (the release's sidecar; None for the "vpp" family)."""

    model: torch.nn.Module
    config: Any
    categories: tuple[tuple[int, str], ...] = ()
    info: Any = None


@dataclass(frozen=True)
class Family:
    """One model family: its config class, builder, checkpoint reader, variants and session.

    ``build(config) -> model``; ``read_checkpoint(path, *, device) -> ModelFile``; ``session(loaded, *, device,
    pkr, mode, score_threshold, amp) -> Session`` (a classmethod ``from_loaded`` of the family's session)."""

    name: str
    config: type
    build: Callable[[Any], torch.nn.Module]
    read_checkpoint: Callable[..., ModelFile]
    variants: Mapping[str, Mapping[str, Any]]
    session: Callable[..., Session]


def _read_vpp(path: str | Path, *, device: str | torch.device = "cpu") -> ModelFile:
    model, config = load_checkpoint(path, device=device)
    return ModelFile(model, config)


def _read_release(path: str | Path, *, device: str | torch.device = "cpu") -> ModelFile:
    model, info = load_release_checkpoint(path, device=device)
    return ModelFile(model, info.config, tuple((c.id, c.name) for c in info.categories), info)


FAMILIES: dict[str, Family] = {
    "vpp": Family("vpp", VPPConfig, build_vpp, _read_vpp, VPP_VARIANTS, InferenceSession.from_loaded),
    "release": Family("release", ReleaseConfig, build_release_model, _read_release, RELEASE_VARIANTS,
                      ReleaseSession.from_loaded),
}


def family_of_file(path: str | Path) -> Family:
    """The family that wrote the model file ``path``, read from its sidecar or metadata (no tensor is read): a
    file of ``vpp import-checkpoint`` is "release", any other "vpp" (a missing or unreadable file too: its
    reader reports the problem)."""
    return FAMILIES[model_kind(path)]


def make_session(loaded, *, device: str = "cpu", pkr: float | None = None, mode: PruneMode = "vpp",
                 score_threshold: float | None = None, amp: bool = True) -> Session:
    """The session for a :class:`core.resources.LoadedModel`, made by its family: an
    :class:`~core.session.InferenceSession` or a :class:`~core.release_session.ReleaseSession` (both
    :class:`core.clip_loop.Session`; also ``set_mode``, ``run_clip``, ``stage_names``, ``state``).

    ``pkr`` None: the model's own (a VPPConfig's ``pkr``; for a released model the schedule its file name says it
    was trained for, else dense). ``score_threshold`` None: each session's default (0.25 for "vpp"; the ROVIS
    tracker's own thresholds for "release").
    """
    return loaded.family.session(loaded, device=device, pkr=pkr, mode=mode, score_threshold=score_threshold,
                                 amp=amp)
