"""Schema and consistency checks for YouTube-VIS ground truth and results, on the parsed JSON.

Each check returns a list of problems, each starting with a JSON path such as
``annotations[3].segmentations[7]`` (ground truth) or ``[5].score`` (results, a top-level list).
Callers turn a non-empty list into :class:`core.data.errors.YtvisValidationError`.
"""

from __future__ import annotations

from array import array
from itertools import islice
from typing import Any

from core.data.rle import counts_problems, to_compressed
from core.values import is_finite_number, is_int

#: Largest id accepted: integers above this do not survive a trip through a JSON double.
MAX_ID = 2**53 - 1
#: Largest frame side accepted (pixels).
MAX_SIDE = 65535


class _Checker:
    """Collects problems; ``rles`` gathers the compressed RLEs for one batched counts check.

    Where each RLE came from is kept as a reference to its owner's path and a frame number (not one
    string per RLE: a results file may hold millions). ``reuse`` lets RLEs already in the canonical
    form pass through unchanged (callers that own the parsed JSON).
    """

    def __init__(self, *, reuse: bool = False) -> None:
        self.problems: list[str] = []
        self.rles: list[dict] = []
        self.rle_owner: list[str] = []
        self.rle_frame = array("q")
        self.reuse = reuse

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def id_field(self, obj: dict, key: str, path: str) -> int | None:
        if key not in obj:
            self.add(path, f"missing '{key}'")
            return None
        v = obj[key]
        if not is_int(v):
            self.add(f"{path}.{key}", f"must be an integer, got {type(v).__name__} {_short(v)}")
            return None
        if not 0 <= v <= MAX_ID:
            self.add(f"{path}.{key}", f"id {_short(v)} is out of range 0..2**53-1")
            return None
        return v

    def side(self, obj: dict, key: str, path: str) -> int | None:
        v = obj.get(key)
        if not is_int(v) or not 1 <= v <= MAX_SIDE:
            self.add(f"{path}.{key}", f"must be an integer 1..{MAX_SIDE}, got {_short(v)}")
            return None
        return v

    def segmentations(self, obj: dict, path: str, length: int | None, hw: tuple[int, int] | None) -> list | None:
        """Check ``obj['segmentations']``; returns it with RLEs converted to compressed form."""
        segs = obj.get("segmentations")
        if not isinstance(segs, list):
            self.add(f"{path}.segmentations", f"must be a list (one RLE or null per frame), got {_short(segs)}")
            return None
        if length is not None and len(segs) != length:
            self.add(f"{path}.segmentations", f"has {len(segs)} entries but the video has {length} frames")
        out: list = []
        for t, s in enumerate(segs):
            if s is None:
                out.append(None)
                continue
            try:
                rle = to_compressed(s, reuse=self.reuse)
            except ValueError as exc:
                self.add(f"{path}.segmentations[{t}]", f"bad RLE: {exc}")
                out.append(None)
                continue
            if hw is None:
                hw = (rle["size"][0], rle["size"][1])
            elif tuple(rle["size"]) != hw:
                self.add(f"{path}.segmentations[{t}]",
                         f"RLE size {rle['size']} differs from the video's [height, width] {list(hw)}")
                out.append(None)
                continue
            self.rles.append(rle)
            self.rle_owner.append(path)
            self.rle_frame.append(t)
            out.append(rle)
        return out

    def per_frame_numbers(self, obj: dict, key: str, path: str, length: int | None, width: int) -> None:
        values = obj.get(key)
        if values is None:
            return
        if not isinstance(values, list) or (length is not None and len(values) != length):
            n = len(values) if isinstance(values, list) else _short(values)
            self.add(f"{path}.{key}", f"must be a list of {length} entries (null or number), got {n}")
            return
        for t, v in enumerate(values):
            if v is not None and not _good_entry(v, width):
                what = "null or [x, y, w, h] finite numbers (w, h >= 0)" if width == 4 else "null or a number >= 0"
                self.add(f"{path}.{key}[{t}]", f"must be {what}, got {_short(v)}")

    def finish(self) -> list[str]:
        if self.rles:
            for k, why in enumerate(counts_problems(self.rles)):
                if why is not None:
                    self.add(f"{self.rle_owner[k]}.segmentations[{self.rle_frame[k]}]", f"undecodable RLE: {why}")
        self.rles, self.rle_owner, self.rle_frame = [], [], array("q")
        return self.problems


def check_gt(data: Any, *, segmentations_out: list | None = None,
             reuse: bool = False) -> tuple[list[str], dict[int, tuple[int, int, int]]]:
    """Problems of a ground-truth object; also returns video id -> (length, height, width).

    With ``segmentations_out`` (a list), each annotation's segmentations, converted to compressed RLE,
    are appended to it (None for an annotation that is not an object); ``reuse`` keeps RLE dicts that
    are already compressed instead of copying them (for callers that own ``data``).
    """
    c = _Checker(reuse=reuse)
    videos: dict[int, tuple[int, int, int]] = {}
    if not isinstance(data, dict):
        return [f"top level: must be an object with videos/annotations/categories, got {type(data).__name__}"], {}
    for key in ("videos", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            c.add(key, "missing" if key not in data else f"must be a list, got {type(data[key]).__name__}")
    if "info" in data and not isinstance(data["info"], dict):
        c.add("info", "must be an object")
    if "licenses" in data and not isinstance(data["licenses"], list):
        c.add("licenses", "must be a list")
    if c.problems:
        return c.problems, {}
    for i, v in enumerate(data["videos"]):
        p = f"videos[{i}]"
        if not isinstance(v, dict):
            c.add(p, "must be an object")
            continue
        vid, h, w = c.id_field(v, "id", p), c.side(v, "height", p), c.side(v, "width", p)
        names = v.get("file_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            c.add(f"{p}.file_names", "must be a list of strings")
            names = None
        length = v.get("length", len(names) if names is not None else None)
        if not is_int(length) or length < 0:
            c.add(f"{p}.length", f"must be a non-negative integer, got {_short(length)}")
            length = None
        elif names is not None and len(names) != length:
            c.add(f"{p}.length", f"is {length} but file_names lists {len(names)} frames")
        if vid is not None:
            if vid in videos:
                c.add(f"{p}.id", f"duplicate video id {vid}")
            elif None not in (h, w, length):
                videos[vid] = (length, h, w)
            else:
                videos[vid] = (-1, -1, -1)
    cats = _check_categories(c, data["categories"], "categories")
    ann_ids: set[int] = set()
    for i, a in enumerate(data["annotations"]):
        p = f"annotations[{i}]"
        if not isinstance(a, dict):
            c.add(p, "must be an object")
            if segmentations_out is not None:
                segmentations_out.append(None)
            continue
        aid = c.id_field(a, "id", p)
        if aid is not None:
            if aid in ann_ids:
                c.add(f"{p}.id", f"duplicate annotation id {aid}")
            ann_ids.add(aid)
        length, hw = _video_ref(c, a, p, videos)
        _category_ref(c, a, p, cats)
        if a.get("iscrowd", 0) not in (0, 1) or isinstance(a.get("iscrowd"), float):
            c.add(f"{p}.iscrowd", f"must be 0 or 1, got {_short(a.get('iscrowd'))}")
        segs = c.segmentations(a, p, length, hw)
        if segmentations_out is not None:
            segmentations_out.append(segs)
        c.per_frame_numbers(a, "areas", p, length, 1)
        c.per_frame_numbers(a, "bboxes", p, length, 4)
    return c.finish(), {k: v for k, v in videos.items() if v[0] >= 0}


def _check_categories(c: _Checker, cats: list, path: str) -> set[int]:
    ids: set[int] = set()
    for i, cat in enumerate(cats):
        p = f"{path}[{i}]"
        if not isinstance(cat, dict):
            c.add(p, "must be an object")
            continue
        cid = c.id_field(cat, "id", p)
        if not isinstance(cat.get("name"), str):
            c.add(f"{p}.name", f"must be a string, got {_short(cat.get('name'))}")
        if cid is not None:
            if cid in ids:
                c.add(f"{p}.id", f"duplicate category id {cid}")
            ids.add(cid)
    return ids


def _video_ref(c: _Checker, obj: dict, p: str, videos: dict | None) -> tuple[int | None, tuple[int, int] | None]:
    vid = c.id_field(obj, "video_id", p)
    if vid is None or videos is None:
        return None, None
    if vid not in videos:
        c.add(f"{p}.video_id", f"unknown video id {vid} (not in the ground truth's videos)")
        return None, None
    length, h, w = videos[vid]
    return length, (h, w)


def _category_ref(c: _Checker, obj: dict, p: str, cats: set[int] | None) -> None:
    cid = c.id_field(obj, "category_id", p)
    if cid is not None and cats is not None and cid not in cats:
        c.add(f"{p}.category_id", f"unknown category id {cid} (not in the ground truth's categories)")


def check_results(
    data: Any, videos: dict[int, tuple[int, int, int]] | None = None, categories: set[int] | None = None, *,
    segmentations_out: list | None = None, reuse: bool = False,
) -> list[str]:
    """Problems of a results list; with ``videos`` (id -> (length, height, width)) and ``categories``
    from the ground truth, ids, lengths and mask sizes are checked against it.

    ``segmentations_out`` and ``reuse`` work as in :func:`check_gt` (one entry per result)."""
    if not isinstance(data, list):
        return [f"top level: must be a list of results, got {type(data).__name__}"]
    c = _Checker(reuse=reuse)
    for i, r in enumerate(data):
        p = f"[{i}]"
        if not isinstance(r, dict):
            c.add(p, f"must be an object, got {type(r).__name__}")
            if segmentations_out is not None:
                segmentations_out.append(None)
            continue
        length, hw = _video_ref(c, r, p, videos)
        _category_ref(c, r, p, categories)
        score = r.get("score")
        if not is_finite_number(score) or not 0.0 <= score <= 1.0:
            c.add(f"{p}.score", f"must be a finite number in [0, 1], got {_short(score)}")
        segs = c.segmentations(r, p, length, hw)
        if segmentations_out is not None:
            segmentations_out.append(segs)
    return c.finish()


def _good_entry(v: Any, width: int) -> bool:
    if width == 1:
        return is_finite_number(v) and v >= 0
    return isinstance(v, list) and len(v) == 4 and all(map(is_finite_number, v)) and v[2] >= 0 and v[3] >= 0


def _short(v: Any) -> str:
    if isinstance(v, (str, bytes)) and len(v) > 60:  # no full repr of a huge value just to cut it
        v = v[:60]
    elif isinstance(v, (list, dict)) and len(v) > 20:
        v = v[:20] if isinstance(v, list) else dict(islice(v.items(), 20))
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
