"""How the app runs the model: :class:`ModelSpec` (which model) and :class:`RunSettings` (model, device, PKR,
score threshold, prune mode), one frozen object checked once, where it is made.

The run control (:class:`core.app.run_control.RunController`) holds the current :class:`RunSettings`; each pass
gets them in its :class:`core.app.studio.RunRequest`; a document records them and a project saves them
(:meth:`RunSettings.to_json` / :meth:`RunSettings.from_json`). The PKR's rule is :func:`core.pkr.check_pkr`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from core.errors import DataError
from core.pkr import check_pkr

ModelKind = Literal["default", "tiny", "small", "file"]
MODEL_KINDS = ("default", "tiny", "small", "file")
MODES = ("vpp", "random", "dense")


def default_pkr() -> float:
    """The PKR a first start runs at: the one the embedded default model was exported for
    (:func:`core.resources.default_pkr`, read from its config without loading weights)."""
    from core.resources import default_pkr as exported_pkr

    return exported_pkr()


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run: the default one, an untrained variant, or a checkpoint file."""

    kind: ModelKind = "default"
    path: str = ""

    @property
    def label(self) -> str:
        return {"default": "Default model", "tiny": "Tiny (untrained)", "small": "Small (untrained)"}.get(
            self.kind, Path(self.path).name)

    def location(self) -> str:
        """The weights file this choice loads ("" for an untrained variant): what the app shows as the model."""
        if self.kind == "file":
            return self.path
        if self.kind == "default":
            from core.resources import DEFAULT_MODEL

            return str(DEFAULT_MODEL)
        return ""

    def known_untrained(self) -> bool:
        """True when the weights are surely random (no torch needed to tell)."""
        if self.kind in ("tiny", "small"):
            return True
        if self.kind == "default":
            from core.resources import DEFAULT_MODEL

            return not DEFAULT_MODEL.is_file()
        return False

    def cache_id(self) -> str:
        if self.kind != "file":
            return self.kind
        p = Path(self.path)
        try:
            stamp = p.stat().st_mtime_ns
        except OSError:
            stamp = 0
        return f"file:{p.resolve()}:{stamp}"


@dataclass(frozen=True)
class RunSettings:
    """How the model runs: which model, device, patch keep ratio, score threshold (None: auto), mode.

    Checked when made (``ValueError`` naming the bad value); :meth:`replace` makes a checked copy.
    """

    model_kind: str = "default"
    model_path: str = ""
    device: str = "cpu"
    pkr: float = 0.4
    threshold: float | None = None
    mode: str = "vpp"

    def __post_init__(self) -> None:
        if self.model_kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.model_kind!r}; valid: {', '.join(MODEL_KINDS)}")
        if self.model_kind == "file" and not self.model_path:
            raise ValueError("a model of kind 'file' needs a model_path")
        check_pkr(self.pkr, error=ValueError)
        if self.threshold is not None and not (0.0 <= self.threshold <= 1.0 and math.isfinite(self.threshold)):
            raise ValueError(f"score threshold must be in [0, 1] or auto, got {self.threshold!r}")
        if self.mode not in MODES:
            raise ValueError(f"unknown prune mode {self.mode!r}; valid: {', '.join(MODES)}")

    @classmethod
    def for_model(cls, spec: ModelSpec, **rest: Any) -> RunSettings:
        """The settings that run ``spec`` (``rest``: the other fields)."""
        return cls(model_kind=spec.kind, model_path=spec.path, **rest)

    @property
    def spec(self) -> ModelSpec:
        """The model these settings run."""
        return ModelSpec(self.model_kind, self.model_path)  # type: ignore[arg-type]

    def replace(self, **changes: Any) -> RunSettings:
        """A checked copy with ``changes``; ``spec=`` sets the model kind and path together."""
        spec = changes.pop("spec", None)
        if spec is not None:
            changes.update(model_kind=spec.kind, model_path=spec.path)
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str | Path) -> RunSettings:
        if not isinstance(data, dict):
            raise DataError(f"{source}: 'settings' must be an object")
        known = {"model_kind", "model_path", "device", "pkr", "threshold", "mode"}
        for key in ("model_kind", "model_path", "device", "mode"):
            if key in data and not isinstance(data[key], str):
                raise DataError(f"{source}: bad run settings: '{key}' must be a string, got {data[key]!r:.60}")
        for key in ("pkr", "threshold"):
            value = data.get(key)
            if key in data and (isinstance(value, bool) or not isinstance(value, (int, float, type(None)))
                                or (value is None and key == "pkr")):
                raise DataError(f"{source}: bad run settings: '{key}' must be a number, got {value!r:.60}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: bad run settings: {exc}") from exc
