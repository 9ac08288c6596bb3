"""YouTube-VIS (YTVIS) ground truth and results: frozen dataclasses, validated reading, atomic writing.

Ground truth: ``{info, licenses, videos, annotations, categories}``; results: a list of
``{video_id, category_id, score, segmentations}``. Segmentations hold one compressed RLE (str
``counts``) or ``null`` per frame; uncompressed RLE is accepted on read and converted. Keys this
module does not know are kept in ``extra`` and written back, so a read -> write round trip keeps them.
Results may be a ``.json`` file or a zip holding ``results.json`` (the evaluation server's format).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_open
from core.data.errors import YtvisReadError, YtvisValidationError, YtvisWriteError
from core.data.rle import RLE, encode_mask, rle_area, rle_bbox, to_compressed
from core.data.validate import check_gt, check_results

__all__ = [
    "YtvisAnnotation", "YtvisCategory", "YtvisGroundTruth", "YtvisReadError", "YtvisResult", "YtvisValidationError",
    "YtvisVideo", "YtvisWriteError", "gt_to_json", "parse_ytvis_gt", "parse_ytvis_results", "read_ytvis_gt",
    "read_ytvis_results", "results_to_json", "write_results", "write_ytvis_gt", "write_ytvis_results",
]

Segmentations = tuple[RLE | None, ...]


def _extra(d: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    known = set(known)
    return {k: v for k, v in d.items() if k not in known}


@dataclass(frozen=True)
class YtvisVideo:
    id: int
    width: int
    height: int
    file_names: tuple[str, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.file_names)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "width": self.width, "height": self.height, "length": self.length,
                "file_names": list(self.file_names), **self.extra}


@dataclass(frozen=True)
class YtvisCategory:
    id: int
    name: str
    supercategory: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.supercategory is not None:
            out["supercategory"] = self.supercategory
        return {**out, **self.extra}


def _masks_to_segmentations(masks: Sequence[np.ndarray | None]) -> Segmentations:
    return tuple(None if m is None else encode_mask(m) for m in masks)


@dataclass(frozen=True)
class YtvisAnnotation:
    """One ground-truth track: a per-frame RLE (or None where the object is absent)."""

    id: int
    video_id: int
    category_id: int
    segmentations: Segmentations
    areas: tuple[float | None, ...]
    bboxes: tuple[tuple[float, float, float, float] | None, ...]
    height: int
    width: int
    iscrowd: int = 0
    length: int = 1  # the official files carry 1 here; kept for round trips
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_segmentations(
        cls, id: int, video_id: int, category_id: int, segmentations: Sequence[RLE | None], *, height: int,
        width: int, iscrowd: int = 0,
    ) -> YtvisAnnotation:
        """Build a track, computing ``areas`` and ``bboxes`` from the RLEs."""
        segs = tuple(None if s is None else to_compressed(s) for s in segmentations)
        return cls(id, video_id, category_id, segs, tuple(None if s is None else rle_area(s) for s in segs),
                   tuple(None if s is None else tuple(rle_bbox(s)) for s in segs), height, width, iscrowd)

    @classmethod
    def from_masks(cls, id: int, video_id: int, category_id: int, masks: Sequence[np.ndarray | None],
                   *, iscrowd: int = 0) -> YtvisAnnotation:
        """Build a track from per-frame bool masks ``[H, W]`` (None where absent)."""
        h, w = next(np.shape(m) for m in masks if m is not None) if any(m is not None for m in masks) else (0, 0)
        return cls.from_segmentations(id, video_id, category_id, _masks_to_segmentations(masks), height=int(h),
                                      width=int(w), iscrowd=iscrowd)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "video_id": self.video_id, "category_id": self.category_id, "iscrowd": self.iscrowd,
                "segmentations": [None if s is None else dict(s) for s in self.segmentations],
                "areas": list(self.areas), "bboxes": [None if b is None else list(b) for b in self.bboxes],
                "height": self.height, "width": self.width, "length": self.length, **self.extra}


@dataclass(frozen=True)
class YtvisResult:
    """One predicted track with a score in [0, 1]."""

    video_id: int
    category_id: int
    score: float
    segmentations: Segmentations
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_masks(cls, video_id: int, category_id: int, score: float,
                   masks: Sequence[np.ndarray | None]) -> YtvisResult:
        return cls(video_id, category_id, float(score), _masks_to_segmentations(masks))

    def to_json(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "category_id": self.category_id, "score": self.score,
                "segmentations": [None if s is None else dict(s) for s in self.segmentations], **self.extra}


@dataclass(frozen=True)
class YtvisGroundTruth:
    videos: tuple[YtvisVideo, ...]
    annotations: tuple[YtvisAnnotation, ...]
    categories: tuple[YtvisCategory, ...]
    info: Mapping[str, Any] = field(default_factory=dict)
    licenses: tuple[Any, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def _video_by_id(self) -> dict[int, YtvisVideo]:
        return {v.id: v for v in self.videos}

    def video(self, video_id: int) -> YtvisVideo:
        try:
            return self._video_by_id[video_id]
        except KeyError:
            raise KeyError(f"no video with id {video_id}") from None

    def tracks(self, video_id: int) -> list[YtvisAnnotation]:
        return [a for a in self.annotations if a.video_id == video_id]

    @property
    def category_ids(self) -> list[int]:
        return sorted(c.id for c in self.categories)

    def video_shapes(self) -> dict[int, tuple[int, int, int]]:
        """video id -> (length, height, width): what results are checked against."""
        return {v.id: (v.length, v.height, v.width) for v in self.videos}


def gt_to_json(gt: YtvisGroundTruth) -> dict[str, Any]:
    return {"info": dict(gt.info), "licenses": list(gt.licenses), "videos": [v.to_json() for v in gt.videos],
            "annotations": [a.to_json() for a in gt.annotations],
            "categories": [c.to_json() for c in gt.categories], **gt.extra}


def results_to_json(results: Iterable[YtvisResult]) -> list[dict[str, Any]]:
    return [r.to_json() for r in results]


def parse_ytvis_gt(data: Any, *, source: str | Path = "<memory>") -> YtvisGroundTruth:
    """Validate parsed JSON and build the dataclasses; raises :class:`YtvisValidationError`."""
    problems, _ = check_gt(data)
    if problems:
        raise YtvisValidationError(source, problems, "YouTube-VIS ground truth")
    videos = tuple(
        YtvisVideo(v["id"], v["width"], v["height"], tuple(v["file_names"]),
                   _extra(v, ("id", "width", "height", "length", "file_names")))
        for v in data["videos"]
    )
    by_id = {v.id: v for v in videos}
    anns = []
    for a in data["annotations"]:
        v = by_id[a["video_id"]]
        segs = tuple(None if s is None else to_compressed(s) for s in a["segmentations"])
        areas = a.get("areas")
        areas = tuple(areas) if areas is not None else tuple(None if s is None else rle_area(s) for s in segs)
        boxes = a.get("bboxes")
        boxes = (tuple(None if b is None else tuple(b) for b in boxes) if boxes is not None
                 else tuple(None if s is None else tuple(rle_bbox(s)) for s in segs))
        known = ("id", "video_id", "category_id", "iscrowd", "segmentations", "areas", "bboxes", "height", "width",
                 "length")
        anns.append(YtvisAnnotation(
            a["id"], a["video_id"], a["category_id"], segs, areas, boxes, a.get("height", v.height),
            a.get("width", v.width), int(a.get("iscrowd", 0)), a.get("length", 1), _extra(a, known)))
    cats = tuple(YtvisCategory(c["id"], c["name"], c.get("supercategory"), _extra(c, ("id", "name", "supercategory")))
                 for c in data["categories"])
    return YtvisGroundTruth(videos, tuple(anns), cats, dict(data.get("info", {})), tuple(data.get("licenses", [])),
                            _extra(data, ("info", "licenses", "videos", "annotations", "categories")))


def parse_ytvis_results(data: Any, gt: YtvisGroundTruth | None = None, *,
                        source: str | Path = "<memory>") -> tuple[YtvisResult, ...]:
    """Validate parsed results JSON (against ``gt`` when given) and build the dataclasses."""
    shapes = gt.video_shapes() if gt is not None else None
    cats = set(gt.category_ids) if gt is not None else None
    problems = check_results(data, shapes, cats)
    if problems:
        raise YtvisValidationError(source, problems, "YouTube-VIS results")
    return tuple(
        YtvisResult(r["video_id"], r["category_id"], float(r["score"]),
                    tuple(None if s is None else to_compressed(s) for s in r["segmentations"]),
                    _extra(r, ("video_id", "category_id", "score", "segmentations")))
        for r in data
    )


def _load_json(path: Path, raw: bytes | None = None) -> Any:
    if raw is None:
        if not path.exists():
            raise YtvisReadError(f"{path}: file does not exist; check the path")
        if path.is_dir():
            raise YtvisReadError(f"{path}: is a folder; pass the JSON file inside it")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise YtvisReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise YtvisReadError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); the file may be truncated"
        ) from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise YtvisReadError(f"{path}: not a UTF-8 JSON file ({exc})") from exc


def _load_results_json(path: Path) -> tuple[Any, str | Path]:
    """(parsed JSON, name for messages): a zip's member is named ``archive.zip [member]``."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        if path.suffix.lower() == ".zip" and path.is_file():
            raise YtvisReadError(f"{path}: not a readable zip archive; re-create it with results.json inside")
        return _load_json(path), path
    try:
        with zipfile.ZipFile(path) as zf:
            members = [n for n in zf.namelist() if n == "results.json" or n.endswith("/results.json")]
            if len(members) != 1:
                found = "none" if not members else ", ".join(members)
                raise YtvisReadError(
                    f"{path}: the zip must hold exactly one results.json (found {found}); the YouTube-VIS server "
                    "expects results.json at the top level of the zip")
            raw = zf.read(members[0])
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise YtvisReadError(f"{path}: not a readable zip archive ({exc})") from exc
    source = f"{path} [{members[0]}]"
    return _load_json(Path(source), raw), source


def read_ytvis_gt(path: str | Path) -> YtvisGroundTruth:
    """Read and validate a YTVIS ground-truth JSON. Raises YtvisReadError / YtvisValidationError."""
    path = Path(path)
    return parse_ytvis_gt(_load_json(path), source=path)


def read_ytvis_results(path: str | Path, gt: YtvisGroundTruth | None = None) -> tuple[YtvisResult, ...]:
    """Read a results ``.json`` or a zip holding ``results.json``; with ``gt``, check ids, lengths, sizes."""
    data, source = _load_results_json(Path(path))
    return parse_ytvis_results(data, gt, source=source)


def _dump(obj: Any, path: Path) -> str:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise YtvisWriteError(f"{path}: cannot serialise to JSON ({exc})") from exc


def _write(path: Path, text: str, *, zip_member: str | None = None) -> None:
    try:
        if zip_member is None:
            with atomic_open(path, "w") as fh:
                fh.write(text)
        else:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(zip_member, text)
            with atomic_open(path, "wb") as fh:
                fh.write(buf.getvalue())
    except OSError as exc:
        raise YtvisWriteError(f"{path}: cannot write the file ({exc.strerror or exc}); check the folder") from exc


def write_ytvis_gt(path: str | Path, gt: YtvisGroundTruth) -> None:
    """Validate and write ground truth atomically; raises YtvisWriteError."""
    path = Path(path)
    data = gt_to_json(gt)
    problems, _ = check_gt(data)
    if problems:
        raise YtvisWriteError(f"{path}: refusing to write invalid ground truth: {'; '.join(problems[:8])}")
    _write(path, _dump(data, path))


def write_ytvis_results(path: str | Path, results: Iterable[YtvisResult], *, gt: YtvisGroundTruth | None = None,
                        zip: bool | None = None) -> None:
    """Validate (against ``gt`` if given) and write results atomically.

    ``zip`` (default: the path ends in ``.zip``) writes a zip holding ``results.json``, as the YouTube-VIS
    evaluation server expects.
    """
    path = Path(path)
    data = results_to_json(results)
    problems = check_results(data, gt.video_shapes() if gt else None, set(gt.category_ids) if gt else None)
    if problems:
        raise YtvisWriteError(f"{path}: refusing to write invalid results: {'; '.join(problems[:8])}")
    as_zip = path.suffix.lower() == ".zip" if zip is None else zip
    _write(path, _dump(data, path), zip_member="results.json" if as_zip else None)


def write_results(path: str | Path, results: Iterable[YtvisResult | Mapping[str, Any]], *,
                  zip_path: str | Path | None = None, gt: YtvisGroundTruth | None = None) -> None:
    """Write results given as dataclasses or plain YTVIS dicts to ``path`` (JSON) and, optionally, to
    ``zip_path`` (a zip holding ``results.json``); both validated first, each written atomically."""
    data = [r.to_json() if isinstance(r, YtvisResult) else dict(r) for r in results]
    try:
        as_results = parse_ytvis_results(data, gt, source=path)
    except YtvisValidationError as exc:
        raise YtvisWriteError(f"{path}: refusing to write invalid results: {'; '.join(exc.problems[:8])}") from exc
    write_ytvis_results(path, as_results, gt=gt, zip=False)
    if zip_path is not None:
        write_ytvis_results(zip_path, as_results, gt=gt, zip=True)
