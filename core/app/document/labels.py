"""The project's labels: an ordered list of (id, name, colour); a track refers to its label by id.

Three namespaces meet in a document, and they are joined by **name** (case-insensitive, spaces
around it ignored), never by id:

- the project's labels (:class:`LabelSet`): saved in the project, offered by the label picker,
  written as the categories of every export;
- the model's categories (:meth:`Document.set_categories`): its ids are the model's own;
- an imported file's categories (:meth:`Document.import_file`): a ground-truth file names them, a
  results file gives ids only.

:func:`join_categories` maps the ids of a model or a file to label ids: a named category joins the
label of that name (a missing one is created, keeping the outside id when it is free, so a label
set loaded from a ground truth keeps the ground truth's ids); a file that names none of its ids
maps by id only when every id is already a label (a results file exported from this project),
otherwise each id ``k`` joins (or creates) the label "class k". Existing labels are never renamed.

A deleted label is *retired*, not forgotten: its id is never given to a new label, and when undo
brings back a track that used it, the label comes back too (:meth:`LabelSet.revive`).

:func:`read_label_file` reads a label set from a YouTube-VIS / COCO JSON (its ``categories``) or
from a text file with one name per line.
"""

from __future__ import annotations

import colorsys
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import DataError
from core.values import is_int

MAX_NAME_CHARS = 100
MAX_LABEL_FILE_BYTES = 4 * 2**20  # a label list; a whole YTVIS ground truth may be larger (see below)
MAX_GT_FILE_BYTES = 2 * 2**30
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Label:
    """One label of the project: ``color`` is ``"#rrggbb"``."""

    id: int
    name: str
    color: str


def default_color(label_id: int) -> str:
    """A stable, well-spread colour for a new label (golden-ratio hue steps by id)."""
    hue = (0.02 + 0.6180339887 * int(label_id)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.7, 0.95)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def clean_name(name: str) -> str:
    """``name`` stripped, or a ValueError saying why it cannot be a label's name."""
    if not isinstance(name, str):
        raise ValueError(f"a label name must be text, got {type(name).__name__}")
    text = name.strip()
    if not text:
        raise ValueError("a label needs a name (it is empty)")
    if len(text) > MAX_NAME_CHARS:
        raise ValueError(f"label name {text[:40]!r}… is longer than {MAX_NAME_CHARS} characters")
    if any(not c.isprintable() for c in text):
        raise ValueError(f"label name {text!r} holds a control character (a tab or a line break)")
    return text


def clean_color(color: Any) -> str:
    """``color`` as ``"#rrggbb"`` (accepts that form or an (r, g, b) of 0..255), else a ValueError."""
    if isinstance(color, str) and _COLOR.match(color.strip()):
        return color.strip().lower()
    if (isinstance(color, (tuple, list)) and len(color) == 3
            and all(is_int(v) and 0 <= v <= 255 for v in color)):
        return "#{:02x}{:02x}{:02x}".format(*color)
    raise ValueError(f"bad label colour {color!r}: give \"#rrggbb\" or (r, g, b) with values 0..255")


def _key(name: str) -> str:
    return name.strip().casefold()


class LabelSet:
    """The ordered labels of a project, plus the retired (deleted) ones. Changed through its methods only."""

    def __init__(self, labels: Iterable[Label] = (), retired: Iterable[Label] = ()) -> None:
        self._labels: dict[int, Label] = {}
        self._retired: dict[int, Label] = {r.id: r for r in retired}
        for label in labels:
            if label.id in self._labels or self.find(label.name) is not None:
                raise ValueError(f"two labels share the id {label.id} or the name {label.name!r}")
            self._labels[label.id] = label
            self._retired.pop(label.id, None)

    @classmethod
    def from_names(cls, names: Mapping[int, str], colors: Mapping[int, str] | None = None) -> LabelSet:
        """Labels in the order of ``names`` (id -> name); a name seen twice keeps its first id."""
        out = cls()
        for k, name in names.items():
            color = (colors or {}).get(int(k))
            if out.find(name) is None and int(k) not in out:
                out._labels[int(k)] = Label(int(k), str(name).strip() or f"class {k}",
                                            clean_color(color) if color else default_color(int(k)))
        return out

    # -- reading -----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Label]:
        return iter(self._labels.values())

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label_id: object) -> bool:
        return label_id in self._labels

    def __getitem__(self, label_id: int) -> Label:
        try:
            return self._labels[int(label_id)]
        except KeyError:
            raise ValueError(f"unknown label {label_id}; labels: {self.describe()}") from None

    def names(self) -> dict[int, str]:
        """id -> name, in the labels' order."""
        return {k: v.name for k, v in self._labels.items()}

    def name(self, label_id: int) -> str:
        """The label's name (a retired one's too); "class N" for an id that was never a label."""
        label = self._labels.get(label_id) or self._retired.get(label_id)
        return label.name if label is not None else f"class {label_id}"

    def color(self, label_id: int) -> str:
        label = self._labels.get(label_id) or self._retired.get(label_id)
        return label.color if label is not None else default_color(label_id)

    def find(self, name: str) -> int | None:
        """The id of the label called ``name`` (case-insensitive), or None."""
        key = _key(name)
        return next((k for k, v in self._labels.items() if v.name.casefold() == key), None)

    def describe(self) -> str:
        return ", ".join(f"{k} {v.name}" for k, v in self._labels.items()) or "none yet"

    def next_id(self) -> int:
        return max([0, *self._labels, *self._retired]) + 1

    # -- changing ----------------------------------------------------------------------------------
    def add(self, name: str, *, color: Any = None, prefer_id: int | None = None) -> tuple[int, bool]:
        """The id of the label called ``name``, created (last) if missing: (id, created).

        A new label takes ``prefer_id`` when no label, current or retired, has it; else the next id.
        """
        text = clean_name(name)
        found = self.find(text)
        if found is not None:
            return found, False
        free = (prefer_id is not None and not isinstance(prefer_id, bool) and int(prefer_id) > 0
                and int(prefer_id) not in self._labels and int(prefer_id) not in self._retired)
        new_id = int(prefer_id) if free else self.next_id()  # type: ignore[arg-type]
        self._labels[new_id] = Label(new_id, text, clean_color(color) if color is not None else default_color(new_id))
        return new_id, True

    def rename(self, label_id: int, name: str) -> bool:
        """Give the label another name (refused when another label has it); False when nothing changed."""
        label, text = self[label_id], clean_name(name)
        other = self.find(text)
        if other is not None and other != label.id:
            raise ValueError(f"a label called {self._labels[other].name!r} exists already (id {other}); "
                             "relabel its tracks (R) instead of giving two labels one name")
        if text == label.name:
            return False
        self._labels[label.id] = replace(label, name=text)
        return True

    def recolor(self, label_id: int, color: Any) -> bool:
        label, value = self[label_id], clean_color(color)
        if value == label.color:
            return False
        self._labels[label.id] = replace(label, color=value)
        return True

    def remove(self, label_id: int) -> Label:
        """Retire the label (the caller checks that no track uses it)."""
        label = self[label_id]
        del self._labels[label.id]
        self._retired[label.id] = label
        return label

    def reorder(self, order: Sequence[int]) -> bool:
        """Put the labels in ``order`` (every label id exactly once); False when it is the current order."""
        ids = [int(k) for k in order]
        if sorted(ids) != sorted(self._labels):
            raise ValueError(f"a new order must list every label once: got {ids}, labels are {list(self._labels)}")
        if ids == list(self._labels):
            return False
        self._labels = {k: self._labels[k] for k in ids}
        return True

    def revive(self, label_ids: Iterable[int]) -> bool:
        """Bring back the retired labels among ``label_ids`` (undo restored a track of theirs)."""
        back = [k for k in dict.fromkeys(label_ids) if k not in self._labels and k in self._retired]
        for k in back:
            label = self._retired.pop(k)
            if self.find(label.name) is not None:  # the name was given to a new label since: keep both apart
                label = replace(label, name=f"{label.name} ({k})")
            self._labels[k] = label
        return bool(back)

    # -- files -------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, list]:
        """The record of a journal and the project's keys: names (in order), colours and retired labels."""
        return {"categories": [[k, v.name] for k, v in self._labels.items()],
                "label_colors": [[k, v.color] for k, v in self._labels.items()],
                "retired_labels": [[k, v.name, v.color] for k, v in self._retired.items()]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str | os.PathLike) -> LabelSet:
        """The inverse of :meth:`to_json`; files without colours or retired labels (older ones) read too."""
        names = _pairs(data.get("categories", []), str, source, "categories", "[id, name]")
        colors = _pairs(data.get("label_colors", []), str, source, "label_colors", "[id, \"#rrggbb\"]")
        retired = data.get("retired_labels", [])
        if not isinstance(retired, list) or not all(
                isinstance(r, list) and len(r) == 3 and is_int(r[0]) and isinstance(r[1], str) for r in retired):
            raise DataError(f"{source}: 'retired_labels' must be a list of [id, name, colour]")
        try:
            out = cls.from_names(dict(names), dict(colors))
            out._retired = {int(r[0]): Label(int(r[0]), r[1], clean_color(r[2])) for r in retired
                            if int(r[0]) not in out}
        except ValueError as exc:
            raise DataError(f"{source}: bad label: {exc}") from exc
        return out


def _pairs(data: Any, kind: type, source: str | os.PathLike, key: str, shape: str) -> list[tuple[int, Any]]:
    if not isinstance(data, list):
        raise DataError(f"{source}: '{key}' must be a list of {shape}")
    for item in data:
        if not isinstance(item, list) or len(item) != 2 or not is_int(item[0]) or not isinstance(item[1], kind):
            raise DataError(f"{source}: '{key}' entry {item!r} must be {shape}")
    return [(int(k), v) for k, v in data]


# -- joining namespaces by name --------------------------------------------------------------------
def join_categories(labels: LabelSet, categories: Sequence[tuple[int, str | None]]) -> tuple[dict[int, int], bool]:
    """Map outside category ids (a model's, a file's) to label ids, creating the missing labels.

    ``categories``: (id, name or None). Returns (outside id -> label id, whether a label was created).
    See the module docstring for the rules; no existing label is renamed.
    """
    named = [(int(k), n) for k, n in categories if isinstance(n, str) and n.strip()]
    unnamed = [int(k) for k, n in categories if not (isinstance(n, str) and n.strip())]
    by_id = bool(unnamed) and all(k in labels for k in unnamed)  # decided before the named ones are added
    out: dict[int, int] = {}
    created = False
    for k, name in named:
        out[k], new = labels.add(name[:MAX_NAME_CHARS], prefer_id=k)
        created |= new
    for k in unnamed:
        if by_id:
            out[k] = k
        else:
            out[k], new = labels.add(f"class {k}", prefer_id=k)
            created |= new
    return out, created


# -- label files -----------------------------------------------------------------------------------
def read_label_file(path: str | os.PathLike) -> list[tuple[int | None, str]]:
    """The labels of a YouTube-VIS / COCO JSON (its ``categories``: (id, name)) or of a text file with
    one name per line ((None, name); blank lines are skipped). Names seen twice (case-insensitive) are
    merged. :class:`DataError` naming the file (and the line) for anything unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise DataError(f"{path}: is a folder; choose a label file (a YouTube-VIS JSON or a text file)")
        is_json = path.suffix.lower() == ".json"
        limit = MAX_GT_FILE_BYTES if is_json else MAX_LABEL_FILE_BYTES
        if size > limit:
            raise DataError(f"{path}: {size / 2**20:.1f} MiB is too large for a label file "
                            f"(at most {limit / 2**20:.0f} MiB); choose a text file with one name per line")
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the label file ({exc.strerror or exc})") from exc
    json_like = is_json or raw.lstrip()[:1] == b"{"  # a ground truth is a JSON object
    entries = _json_labels(raw, path) if json_like else _text_labels(raw, path)
    out: list[tuple[int | None, str]] = []
    seen: set[str] = set()
    for k, name in entries:
        if _key(name) not in seen:
            seen.add(_key(name))
            out.append((k, name))
    return out


def _text_labels(raw: bytes, path: Path) -> list[tuple[int | None, str]]:
    if b"\0" in raw:
        at = raw.index(b"\0")
        raise DataError(f"{path}: is not a text file (it holds binary data at byte {at}); give one "
                        "label name per line, or a YouTube-VIS JSON")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not UTF-8 text (byte {exc.start}); save the file as UTF-8") from exc
    out: list[tuple[int | None, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((None, clean_name(line)))
        except ValueError as exc:
            raise DataError(f"{path}: line {number}: {exc}") from exc
    if not out:
        raise DataError(f"{path}: holds no label names; write one name per line")
    return out


def _json_labels(raw: bytes, path: Path) -> list[tuple[int | None, str]]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); give a YouTube-VIS ground truth or a text file "
                        "with one name per line") from exc
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, list):
        raise DataError(f"{path}: has no 'categories' list; give a YouTube-VIS (or COCO) ground-truth JSON")
    out: list[tuple[int | None, str]] = []
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or not is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise DataError(f"{path}: categories[{i}] must be an object with an integer 'id' and a 'name'")
        try:
            out.append((int(c["id"]), clean_name(c["name"])))
        except ValueError as exc:
            raise DataError(f"{path}: categories[{i}]: {exc}") from exc
    if not out:
        raise DataError(f"{path}: its 'categories' list is empty; there are no labels to load")
    return out
