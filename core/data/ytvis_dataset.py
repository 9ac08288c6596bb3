"""YouTube-VIS splits on disk: the annotation file and ``JPEGImages``, one lazy frame source per video.

Every ``file_names`` entry must stay inside the split's image folder: names with ``..``, absolute paths,
drive letters or backslashes are refused when the split is loaded (one :class:`DataError` naming the
annotation file, each video and name), so an annotation file can never make us read outside the
folder. Symlinks inside the folder are the user's own layout and are followed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from core.data.errors import format_problems
from core.data.ytvis import YtvisGroundTruth, read_ytvis_gt
from core.errors import DataError

if TYPE_CHECKING:
    from core.data.sources import FolderSource

_DRIVE = re.compile(r"^[A-Za-z]:")


def frame_name_problem(name: object) -> str | None:
    """Why a YTVIS ``file_names`` entry is not a plain relative path inside the image folder, or None.

    Only the spelling is judged here (``..``, absolute, drive letter, backslash, empty, a folder);
    :func:`resolve_frame_name` also follows symlinks."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL character"
    if "\\" in name:
        return "contains a backslash (YTVIS file names separate folders with '/')"
    if _DRIVE.match(name):
        return "starts with a drive letter (file names must be relative to the image folder)"
    if name.startswith("/"):
        return "is an absolute path (file names must be relative to the image folder)"
    if ".." in name.split("/"):
        return "goes up a folder with '..'"
    if name.split("/")[-1] in ("", ".") or not PurePosixPath(name).parts:
        return "names a folder, not a frame"
    return None


def resolve_frame_name(root: Path, name: str, parents: dict[str, Path] | None = None) -> Path:
    """``name`` under the resolved folder ``root``, symlinks followed; ValueError(reason) if its spelling escapes.

    ``parents`` caches resolved sub-folders between calls (a video's frames share one)."""
    why = frame_name_problem(name)
    if why is not None:
        raise ValueError(why)
    rel = PurePosixPath(name)
    key = str(rel.parent)
    parent = parents.get(key) if parents is not None else None
    try:
        if parent is None:
            parent = (root / rel.parent).resolve()
            if parents is not None:
                parents[key] = parent
        path = parent / rel.name
        if path.is_symlink():
            path = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a path too long
        raise ValueError(f"cannot be resolved ({exc})") from None
    return path


def find_ytvis_split(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, ``JPEGImages`` folder) of ``split`` under ``root``; DataError listing what was tried.

    Layouts: ``<root>/<split>/instances.json`` (YTVIS 2021, our synthetic sets);
    ``<root>/annotations/<split>.json``, ``annotations/instances_<split>.json`` or the one
    ``annotations/*<split>*.json`` (YTVIS 2019 style); ``<root>/<split>.json``. Frames are always in
    ``<root>/<split>/JPEGImages/`` and a video's ``file_names`` are relative to it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist; check the path")
    image_root = root / split / "JPEGImages"
    tried = [root / split / "instances.json", root / "annotations" / f"{split}.json",
             root / "annotations" / f"instances_{split}.json", root / f"{split}.json"]
    candidates = [p for p in tried if p.is_file()]
    if not candidates and (root / "annotations").is_dir():
        matches = sorted(p for p in (root / "annotations").glob(f"*{split}*.json") if p.is_file())
        if len(matches) > 1:
            raise DataError(f"{root / 'annotations'}: several annotation files match split {split!r} "
                            f"({', '.join(p.name for p in matches)}); rename or remove the extra ones")
        candidates = matches
    if not candidates:
        raise DataError(f"{root}: no annotation file for split {split!r}; looked for "
                        + ", ".join(str(p.relative_to(root)) for p in tried))
    if not image_root.is_dir():
        raise DataError(f"{image_root}: frame folder of split {split!r} does not exist")
    return candidates[0], image_root


@dataclass(frozen=True)
class YtvisDatasetSource:
    """A YTVIS split: validated ground truth plus a lazy :class:`FolderSource` per video."""

    root: Path
    split: str
    annotation_path: Path
    image_root: Path
    gt: YtvisGroundTruth

    def __post_init__(self) -> None:
        """Resolve every frame under the image folder; one DataError lists every name that escapes it."""
        try:
            root = Path(self.image_root).resolve()
        except (OSError, RuntimeError) as exc:
            raise DataError(f"{self.image_root}: the frame folder cannot be resolved ({exc})") from None
        parents: dict[str, Path] = {}
        paths: dict[int, tuple[Path, ...]] = {}
        problems: list[str] = []
        for v in self.gt.videos:
            resolved = []
            for k, name in enumerate(v.file_names):
                try:
                    resolved.append(resolve_frame_name(root, name, parents))
                except ValueError as why:
                    problems.append(f"video {v.id} file_names[{k}] {name!r} {why}")
            paths[v.id] = tuple(resolved)
        if problems:
            raise DataError(f"{self.annotation_path}: frame paths must stay inside the split's image folder "
                            f"{self.image_root} ({len(problems)} refused): {format_problems(problems)}")
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_paths", paths)

    @classmethod
    def find(cls, path: str | Path) -> YtvisDatasetSource | None:
        """``path`` as a split folder (``instances.json`` + ``JPEGImages/``) -> the split, else None."""
        path = Path(path)
        if not ((path / "instances.json").is_file() and (path / "JPEGImages").is_dir()):
            return None
        return load_ytvis_dataset(path.parent, path.name)

    @property
    def video_ids(self) -> list[int]:
        return [v.id for v in self.gt.videos]

    def frame_paths(self, video_id: int) -> list[Path]:
        """The video's frames, resolved (symlinks followed) and checked to lie inside the image folder."""
        self.gt.video(video_id)  # unknown ids raise as before
        return list(self._paths[video_id])

    def video_name(self, video_id: int) -> str:
        names = self.gt.video(video_id).file_names
        parent = Path(names[0]).parent.name if names else ""
        return parent or f"video{video_id}"

    def video_source(self, video_id: int, **kwargs) -> FolderSource:
        """Frames of the video, listed by its ``file_names`` (which are also the frame names).

        Keyword options (``cache_bytes``, ``on_corrupt``, ``fps``) pass through.
        """
        video = self.gt.video(video_id)
        if not video.file_names:
            raise DataError(f"{self.annotation_path}: video {video_id} lists no frames")
        from core.data.sources import FolderSource

        return FolderSource.from_files(self.frame_paths(video_id), root=self.image_root,
                                       names=list(video.file_names), **kwargs)

    def sources(self, **kwargs) -> Iterator[tuple[int, str, FolderSource]]:
        """(video id, video name, source) for every video, opened one at a time."""
        for vid in self.video_ids:
            yield vid, self.video_name(vid), self.video_source(vid, **kwargs)


#: Alias used by ``vpp infer``.
YtvisSplit = YtvisDatasetSource


def load_ytvis_dataset(root: str | Path, split: str = "train") -> YtvisDatasetSource:
    """Find, read and validate a split's annotations; frames are opened lazily per video."""
    ann, image_root = find_ytvis_split(root, split)
    return YtvisDatasetSource(Path(root), split, ann, image_root, read_ytvis_gt(ann))
