"""What a document is about: the clip (:class:`ClipInfo`) and how the model runs on it (:class:`RunSettings`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import DataError

MODEL_KINDS = ("default", "tiny", "small", "file")
MODES = ("vpp", "random", "dense")


@dataclass(frozen=True)
class ClipInfo:
    """A clip on disk: a frame folder or a video file, ``num_frames`` frames of ``width`` x ``height``."""

    path: str
    num_frames: int
    height: int
    width: int
    names: tuple[str, ...] = ()  # per-frame names (file names of a folder, 00000.jpg... of a video)
    fps: float = 25.0

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.height < 1 or self.width < 1:
            raise ValueError(f"{self.path}: a clip needs at least one frame of at least 1x1 pixels, got "
                             f"{self.num_frames} frames of {self.width}x{self.height}")
        if self.names and len(self.names) != self.num_frames:
            raise ValueError(f"{self.path}: {len(self.names)} frame names for {self.num_frames} frames")

    @classmethod
    def from_source(cls, source, path: str | Path | None = None) -> ClipInfo:
        """From a :class:`core.data.sources.FrameSource` (only its length, size and names are read)."""
        w, h = source.size
        return cls(str(Path(path if path is not None else source.path).resolve()), len(source), int(h), int(w),
                   tuple(source.names), float(source.fps))

    @classmethod
    def open(cls, path: str | Path) -> ClipInfo:
        """Open ``path`` (frame folder or video) just long enough to learn its shape."""
        from core.data.sources import open_source

        with open_source(path) as source:
            return cls.from_source(source, path)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.num_frames, self.height, self.width)

    @property
    def name(self) -> str:
        return Path(self.path).stem or Path(self.path).name

    def frame_names(self) -> tuple[str, ...]:
        return self.names or tuple(f"{i:05d}.jpg" for i in range(self.num_frames))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "num_frames": self.num_frames, "height": self.height, "width": self.width,
                "fps": self.fps, "names": list(self.names)}


@dataclass(frozen=True)
class RunSettings:
    """How the model runs: which model, device, patch keep ratio, score threshold (None: auto), mode."""

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
        if not (isinstance(self.pkr, (int, float)) and 0.0 < self.pkr <= 1.0):
            raise ValueError(f"PKR must be in (0, 1], got {self.pkr!r}")
        if self.threshold is not None and not (0.0 <= self.threshold <= 1.0 and math.isfinite(self.threshold)):
            raise ValueError(f"score threshold must be in [0, 1] or auto, got {self.threshold!r}")
        if self.mode not in MODES:
            raise ValueError(f"unknown prune mode {self.mode!r}; valid: {', '.join(MODES)}")

    def replace(self, **changes: Any) -> RunSettings:
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
