"""YouTube-VIS (YTVIS) ground truth and results: frozen dataclasses, validated reading, atomic writing.

Ground truth: ``{info, licenses, videos, annotations, categories}``; results: a list of
``{video_id, category_id, score, segmentations}``. Segmentations hold one compressed RLE (str
``counts``) or ``null`` per frame; uncompressed RLE is accepted on read and converted. Keys this
module does not know are kept in ``extra`` and written back, so a read -> write round trip keeps them.
Results may be a ``.json`` file or a zip holding ``results.json`` (the evaluation server's format).

Reading is bounded: a JSON file above :data:`MAX_JSON_BYTES`, a zip member that declares or inflates to
more than :data:`MAX_ZIP_MEMBER_BYTES` (or a suspicious ratio, :data:`MAX_ZIP_RATIO`), JSON nested deeper
than :data:`MAX_JSON_DEPTH` and running out of memory are each refused with one message naming the file.
Bytes are read in chunks and counted (a zip member while it inflates); parsing needs about two to three
times the file's size in memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import stat
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

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

#: Largest JSON file read (ground truth or results), in bytes.
MAX_JSON_BYTES = 4 * 2**30
#: Largest ``results.json`` unpacked from a zip, in bytes (declared or counted while inflating).
MAX_ZIP_MEMBER_BYTES = 2 * 2**30
#: Largest uncompressed : zip-file size ratio accepted for a member above :data:`ZIP_RATIO_FLOOR` bytes.
#: YouTube-VIS results compress 3-40x; deflate tops out near 1032x, which is what zip bombs use.
MAX_ZIP_RATIO = 500
ZIP_RATIO_FLOOR = 64 * 2**20
#: Deepest JSON nesting accepted (a YouTube-VIS file needs 5 or 6 levels).
MAX_JSON_DEPTH = 100
_READ_CHUNK = 1 << 24


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
    return _parse_gt(data, source, owned=False)


def _parse_gt(data: Any, source: str | Path, *, owned: bool) -> YtvisGroundTruth:
    """``owned``: ``data`` is ours (just parsed), so its RLE dicts may be kept rather than copied."""
    converted: list = []
    problems, _ = check_gt(data, segmentations_out=converted, reuse=owned)
    if problems:
        raise YtvisValidationError(source, problems, "YouTube-VIS ground truth")
    videos = tuple(
        YtvisVideo(v["id"], v["width"], v["height"], tuple(v["file_names"]),
                   _extra(v, ("id", "width", "height", "length", "file_names")))
        for v in data["videos"]
    )
    by_id = {v.id: v for v in videos}
    anns = []
    for a, converted_segs in zip(data["annotations"], converted):
        v = by_id[a["video_id"]]
        segs = tuple(converted_segs)
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
    return _parse_results(data, gt, source, owned=False)


def _parse_results(data: Any, gt: YtvisGroundTruth | None, source: str | Path, *,
                   owned: bool, check_categories: bool = True) -> tuple[YtvisResult, ...]:
    shapes = gt.video_shapes() if gt is not None else None
    cats = set(gt.category_ids) if gt is not None and check_categories else None
    converted: list = []
    problems = check_results(data, shapes, cats, segmentations_out=converted, reuse=owned)
    if problems:
        raise YtvisValidationError(source, problems, "YouTube-VIS results")
    return tuple(
        YtvisResult(r["video_id"], r["category_id"], float(r["score"]), tuple(segs),
                    _extra(r, ("video_id", "category_id", "score", "segmentations")))
        for r, segs in zip(data, converted)
    )


def _size(n: int) -> str:
    """``3.0 GiB (3221225472 bytes)``: a size for messages."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def _read_capped(fh: IO[bytes], size_hint: int, check: Any) -> bytearray:
    """Read ``fh`` to its end in chunks into one buffer; ``check(bytes_so_far)`` raises to stop early.

    The buffer starts at ``size_hint`` + 1 bytes (the caller caps the hint), so an honest size costs
    no copy; data beyond it grows the buffer chunk by chunk, each chunk checked first."""
    buf = bytearray(size_hint + 1)
    n = 0
    while True:
        if n == len(buf):
            buf.extend(bytes(min(max(len(buf) // 2, 1 << 16), _READ_CHUNK)))
        with memoryview(buf)[n:n + _READ_CHUNK] as view:
            got = fh.readinto(view)
        if not got:
            break
        n += got
        check(n)
    del buf[n:]
    return buf


def _read_file(path: Path) -> bytearray:
    if not path.exists():
        raise YtvisReadError(f"{path}: file does not exist; check the path")
    if path.is_dir():
        raise YtvisReadError(f"{path}: is a folder; pass the JSON file inside it")
    try:
        st = path.stat()
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            raise YtvisReadError(f"{path}: is a device, not a JSON file; check the path")
        limit = MAX_JSON_BYTES
        if st.st_size > limit:
            raise YtvisReadError(f"{path}: the file is {_size(st.st_size)}, over the {_size(limit)} limit for a "
                                 "JSON file; refusing to read it (check the path, or split the results)")

        def check(n: int) -> None:  # a file that grows while read, or a pipe
            if n > limit:
                raise YtvisReadError(f"{path}: holds more than {_size(limit)}, the limit for a JSON file; "
                                     "refusing to read further (check the path, or split the results)")

        with path.open("rb") as fh:
            return _read_capped(fh, min(st.st_size, limit), check)
    except OSError as exc:
        raise YtvisReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def _too_deep(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests lists/objects more than ``limit`` levels (breadth first, no recursion)."""
    level = [obj] if isinstance(obj, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        deeper = []
        for o in level:
            deeper += [v for v in (o.values() if isinstance(o, dict) else o) if isinstance(v, (dict, list))]
        level = deeper
    return False


def _parse_json(path: str | Path, raw: bytearray) -> Any:
    """Decode and parse ``raw`` (emptied as soon as it is decoded, to halve the peak memory)."""
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except (UnicodeDecodeError, LookupError) as exc:
        raise YtvisReadError(f"{path}: not a UTF-8 JSON file ({exc})") from exc
    finally:
        raw.clear()
    deep = (f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep (a YouTube-VIS file needs about 6); "
            "refusing it")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise YtvisReadError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); the file may be truncated"
        ) from exc
    except RecursionError:
        raise YtvisReadError(deep) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise YtvisReadError(f"{path}: not a UTF-8 JSON file ({exc})") from exc
    del text
    if _too_deep(data, MAX_JSON_DEPTH):
        raise YtvisReadError(deep)
    return data


def _out_of_memory(path: str | Path, what: str) -> YtvisReadError:
    """The error for a MemoryError. Callers raise it after their ``except MemoryError`` block has ended, so
    the new error holds no traceback (and no frame holding what was read): the memory is free again."""
    return YtvisReadError(f"{path}: not enough memory to {what}; close other programs, or split the file")


def _load_json(path: Path) -> Any:
    try:
        return _parse_json(path, _read_file(path))
    except MemoryError:
        pass
    raise _out_of_memory(path, "read this JSON file")


def _check_member_size(path: Path, member: str, declared: int, archive_size: int) -> None:
    """Refuse a member by the sizes its zip declares, before inflating anything."""
    limit = MAX_ZIP_MEMBER_BYTES
    if declared > limit:
        raise YtvisReadError(f"{path} [{member}]: declares {_size(declared)} uncompressed, over the {_size(limit)} "
                             "limit for results.json in a zip; refusing to unpack it")
    if declared > ZIP_RATIO_FLOOR and declared > MAX_ZIP_RATIO * archive_size:
        raise YtvisReadError(
            f"{path} [{member}]: declares {_size(declared)} uncompressed from a {_size(archive_size)} zip "
            f"({declared / max(archive_size, 1):.0f}:1, over the {MAX_ZIP_RATIO}:1 limit); refusing to unpack "
            "what looks like a zip bomb")


def _read_member(path: Path, zf: zipfile.ZipFile, member: str) -> bytearray:
    """Inflate ``member`` chunk by chunk, counting bytes: the declared size is checked but not trusted."""
    info = zf.getinfo(member)
    archive_size = path.stat().st_size
    _check_member_size(path, member, info.file_size, archive_size)
    limit = MAX_ZIP_MEMBER_BYTES

    def check(n: int) -> None:
        if n > limit or (n > ZIP_RATIO_FLOOR and n > MAX_ZIP_RATIO * archive_size):
            raise YtvisReadError(
                f"{path} [{member}]: inflates to more than {_size(n)} (declared {_size(info.file_size)}; limits "
                f"{_size(limit)} and {MAX_ZIP_RATIO}:1 for a {_size(archive_size)} zip); refusing to unpack it")

    with zf.open(info) as fh:
        return _read_capped(fh, min(info.file_size, limit), check)


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
                found = "none" if not members else ", ".join(members[:8]) + (" ..." if len(members) > 8 else "")
                raise YtvisReadError(
                    f"{path}: the zip must hold exactly one results.json (found {found}); the YouTube-VIS server "
                    "expects results.json at the top level of the zip")
            source = f"{path} [{members[0]}]"
            raw = None
            with contextlib.suppress(MemoryError):
                raw = _read_member(path, zf, members[0])
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise YtvisReadError(f"{path}: not a readable zip archive ({exc})") from exc
    if raw is None:
        raise _out_of_memory(source, "unpack results.json")
    try:
        return _parse_json(source, raw), source
    except MemoryError:
        pass
    del raw
    raise _out_of_memory(source, "parse results.json")


def read_ytvis_gt(path: str | Path) -> YtvisGroundTruth:
    """Read and validate a YTVIS ground-truth JSON. Raises YtvisReadError / YtvisValidationError."""
    path = Path(path)
    data = _load_json(path)
    try:
        return _parse_gt(data, path, owned=True)
    except MemoryError:
        pass
    del data
    raise _out_of_memory(path, "check and load this ground truth")


def read_ytvis_results(path: str | Path, gt: YtvisGroundTruth | None = None, *,
                       check_categories: bool = True) -> tuple[YtvisResult, ...]:
    """Read a results ``.json`` or a zip holding ``results.json``; with ``gt``, check ids, lengths, sizes.

    ``check_categories=False``: a category id the ground truth lacks is let through (``vpp eval``
    ignores those results, as the official evaluator does); every other check stays."""
    data, source = _load_results_json(Path(path))
    try:
        return _parse_results(data, gt, source, owned=True, check_categories=check_categories)
    except MemoryError:
        pass
    del data
    raise _out_of_memory(source, "check and load these results")


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
