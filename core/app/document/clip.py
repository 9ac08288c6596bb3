"""What a document is about: the clip (:class:`ClipInfo`); how the model runs on it is
:class:`core.app.settings.RunSettings`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
