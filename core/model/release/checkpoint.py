"""Save and load :class:`~core.model.release.model.ReleaseVPPModel` files: safetensors weights + a JSON sidecar.

``model.safetensors`` holds the weights; its metadata has ``vpp_model_kind = "release"`` and a copy of the JSON, so
a lone file still loads. ``model.json`` (same stem) is::

    {"kind": "release", "format": 1,
     "config": {... ReleaseConfig.to_dict() ..., "selection": "topk" | "release"},
     "categories": [{"id": 1, "name": "airplane"}, ...],       # class index i -> categories[i]
     "source": {...}, "conversion": {...}}                    # provenance, free-form

:func:`model_kind` tells a loader which family a file is of without reading the weights ("release" or "vpp", the
project's own :class:`~core.model.vpp.model.VPPModel` read by :mod:`core.model.vpp.checkpoint`). Loading refuses,
naming the file: a sidecar that is not such a JSON object (or is larger than 1 MiB), a config with unknown keys or a
wrong kind, categories that are not ``{id: int, name: str}`` (one per class), tensors that are missing, unexpected,
of another shape or dtype family, or not finite (:mod:`core.model.weights`, the loader both families share).

``config.selection`` says how the file's model selects tokens by default ("topk": the project's static top-k;
"release": the release's thresholded gates, see ``core.model.backbone``); files written before it existed have
none and mean "topk". A loaded model runs with it unless a call passes ``selection``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from core.atomic import atomic_write_bytes, atomic_write_text
from core.errors import CheckpointError
from core.model.release.builder import build_release_model
from core.model.release.config import ReleaseConfig
from core.model.release.model import ReleaseVPPModel
from core.model.weights import check_fit, load_weights, read_header, read_metadata, require_file, storage_entries

KIND = "release"
KIND_KEY = "vpp_model_kind"
SIDECAR_KEY = "release_model"
FORMAT = 1
MAX_SIDECAR_BYTES = 1 << 20


@dataclass(frozen=True)
class Category:
    id: int
    name: str


@dataclass
class ReleaseFile:
    """What a release model file holds besides its weights."""

    config: ReleaseConfig
    categories: tuple[Category, ...]
    source: dict[str, Any]
    conversion: dict[str, Any]

    @property
    def selection(self) -> str:
        """"topk" or "release": the selection rule the file records ("topk" for files from before it was recorded)."""
        return self.config.selection

    @property
    def names(self) -> dict[int, str]:
        """Class index (0..K-1, the head's output) -> category name."""
        return {i: c.name for i, c in enumerate(self.categories)}


def sidecar_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def _sidecar_dict(model: ReleaseVPPModel, categories: Sequence[Category | tuple[int, str] | dict], *,
                  source: dict | None, conversion: dict | None, selection: str | None = None) -> dict[str, Any]:
    cats = [_category(c, i, "categories") for i, c in enumerate(categories)]
    if len(cats) != model.config.num_classes:
        raise ValueError(f"{len(cats)} categories for a model of {model.config.num_classes} classes")
    config = model.config if selection is None else model.config.replace(selection=selection)  # validated
    return {"kind": KIND, "format": FORMAT, "config": config.to_dict(),
            "categories": [{"id": c.id, "name": c.name} for c in cats],
            "source": dict(source or {}), "conversion": dict(conversion or {})}


def save_release_checkpoint(
    model: ReleaseVPPModel,
    path: str | Path,
    *,
    categories: Sequence[Category | tuple[int, str] | dict],
    source: dict | None = None,
    conversion: dict | None = None,
    selection: str | None = None,
) -> Path:
    """Write ``path`` (.safetensors) and its JSON sidecar atomically; returns the weights path.

    ``selection``: "topk" / "release" to record instead of ``model.config.selection`` (None: the model's).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    side = _sidecar_dict(model, categories, source=source, conversion=conversion, selection=selection)
    text = json.dumps(side, indent=1)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={KIND_KEY: KIND, SIDECAR_KEY: json.dumps(side)}))
    atomic_write_text(sidecar_path(path), text + "\n")
    return path


def _read_sidecar_text(side: Path) -> str | None:
    if not side.is_file():
        return None
    try:
        size = side.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise CheckpointError(f"{side}: {size:,} bytes is too large for a model config (at most "
                                  f"{MAX_SIDECAR_BYTES:,})")
        return side.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CheckpointError(f"{side}: cannot read the model config ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{side}: the model config is not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start})") from None


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{source}: the JSON is nested too deeply to be a model config") from None
    except ValueError as exc:
        raise CheckpointError(f"{source}: not valid JSON ({exc})") from None


def model_kind(path: str | Path) -> str:
    """"release" for a file written by :func:`save_release_checkpoint`, else "vpp" (the project's own model).

    Reads the JSON sidecar's ``kind`` when there is a readable sidecar (a VPPConfig sidecar has none: "vpp"), else
    the weights' metadata; cheap (no tensors are read). A missing or unreadable file is "vpp": its own loader
    reports the problem.
    """
    path = Path(path)
    side = sidecar_path(path)
    try:
        text = _read_sidecar_text(side)
    except CheckpointError:
        text = None
    if text is not None:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):  # the sidecar decides, as it does for loading
            return KIND if data.get("kind") == KIND else "vpp"
    if not path.is_file():
        return "vpp"
    try:
        return KIND if read_metadata(path).get(KIND_KEY) == KIND else "vpp"
    except CheckpointError:
        return "vpp"


def read_release_file(path: str | Path) -> ReleaseFile:
    """The sidecar (or the copy in the weights' metadata) of a release model file, validated."""
    path = Path(path)
    side = sidecar_path(path)
    text = _read_sidecar_text(side)
    source = str(side)
    if text is None:
        meta = read_metadata(path)
        if SIDECAR_KEY not in meta:
            raise CheckpointError(f"{path}: no release model config found (expected {side.name} beside it or a "
                                  f"'{SIDECAR_KEY}' metadata entry)")
        text, source = meta[SIDECAR_KEY], f"{path} (the config in its metadata)"
    data = _parse_json(text, source)
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: the model config must be a JSON object, got {type(data).__name__}")
    if data.get("kind") != KIND:
        raise CheckpointError(f"{source}: kind is {data.get('kind')!r}, not {KIND!r}: not a release model file")
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{source}: format {data.get('format')!r} is not supported (this version reads {FORMAT})")
    raw_config = data.get("config")
    if isinstance(raw_config, dict) and "selection" not in raw_config:
        raw_config = {**raw_config, "selection": "topk"}  # written before the selection was recorded
    try:
        config = ReleaseConfig.from_dict(raw_config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid model config ({exc})") from None
    raw = data.get("categories")
    if not isinstance(raw, list):
        raise CheckpointError(f"{source}: 'categories' must be a list of {{id, name}} objects")
    try:
        cats = tuple(_category(c, i, "categories") for i, c in enumerate(raw))
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if len(cats) != config.num_classes:
        raise CheckpointError(f"{source}: {len(cats)} categories for a model of {config.num_classes} classes")
    if len({c.id for c in cats}) != len(cats):
        raise CheckpointError(f"{source}: category ids are not unique")
    src, conv = data.get("source") or {}, data.get("conversion") or {}
    return ReleaseFile(config, cats, src if isinstance(src, dict) else {}, conv if isinstance(conv, dict) else {})


def _category(c: Any, i: int, where: str) -> Category:
    if isinstance(c, Category):
        return c
    if isinstance(c, dict):
        cid, name = c.get("id"), c.get("name")
    elif hasattr(c, "id") and hasattr(c, "name"):  # e.g. core.data.ytvis.YtvisCategory
        cid, name = c.id, c.name
    elif isinstance(c, (tuple, list)) and len(c) == 2:
        cid, name = c
    else:
        cid = name = None
    if isinstance(cid, bool) or not isinstance(cid, int) or not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}[{i}] must be {{'id': int, 'name': non-empty str}}, got {c!r}")
    return Category(int(cid), name)


def empty_release_model(config: ReleaseConfig, *, header: dict[str, tuple[str, tuple[int, ...]]] | None = None,
                        source: str = "checkpoint") -> ReleaseVPPModel:
    """A model of ``config`` whose weights are uninitialised memory (built on the meta device: fast); every
    persistent tensor must be loaded afterwards. Non-persistent buffers (pixel statistics) are set.

    ``header`` (:func:`core.model.weights.read_header`): checked against the model's keys, shapes and dtype families
    before any memory is allocated, so a config that does not belong to the weights is refused cheaply.
    """
    try:
        with torch.device("meta"):
            model = build_release_model(config)
    except (ValueError, AssertionError) as exc:
        raise CheckpointError(f"{source}: its config does not describe a buildable model ({exc})") from None
    if header is not None:
        check_fit(model, storage_entries(header), source=source)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        model.pixel_mean.copy_(torch.tensor(config.pixel_mean).view(1, 3, 1, 1))
        model.pixel_std.copy_(torch.tensor(config.pixel_std).view(1, 3, 1, 1))
    return model


def load_release_checkpoint(path: str | Path, *, device: str | torch.device = "cpu"
                            ) -> tuple[ReleaseVPPModel, ReleaseFile]:
    """Build the model a release file describes and load its weights strictly onto ``device`` (eval mode)."""
    path = Path(path)
    require_file(path)
    info = read_release_file(path)
    model = empty_release_model(info.config, header=read_header(path), source=str(path))
    load_weights(model, path)
    return model.to(device).eval(), info
