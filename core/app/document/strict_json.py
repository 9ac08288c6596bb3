"""JSON as the project file and the journal read it: finite numbers only, the bad key named.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``1e999`` (an infinite float) without complaint, but
writes them back only as bare ``NaN`` / ``Infinity``, which no JSON reader accepts (and ours refuses to
write). A project or journal holding one anywhere (a track, ``run``, an unknown key kept for later) could
be opened and edited but never saved, so :func:`loads` refuses it at once, naming the file and the key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from core.errors import DataError


class _NotFinite:
    """Stands in for a NaN / infinite number while the document is parsed (then reported by its key)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def loads(data: str | bytes, source: str | Path, what: str = "") -> Any:
    """``json.loads`` that raises :class:`DataError` (``source: <what>key.path is NaN ...``) for a
    non-finite number anywhere. Invalid JSON still raises ValueError / RecursionError as ``json`` does."""
    seen: list[str] = []

    def constant(text: str) -> _NotFinite:
        seen.append(text)
        return _NotFinite(text)

    def number(text: str) -> float | _NotFinite:
        value = float(text)
        return value if math.isfinite(value) else constant(text)

    doc = json.loads(data, parse_constant=constant, parse_float=number)
    if seen:
        where, text = _find(doc)
        raise DataError(f"{source}: {what}{where or 'the document'} is {text}; every number must be finite "
                        "(not NaN or Infinity). The file is damaged or was not written by VPP Studio: fix or "
                        "remove that value")
    return doc


def _find(doc: Any) -> tuple[str, str]:
    """(key path such as ``run.pkr`` or ``tracks[3].frames.5[1]``, its text) of the first non-finite number."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, _NotFinite):
            return where, value.text
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
    return "", "not finite"


def find_not_finite(doc: Any) -> str:
    """The key path of the first NaN or infinite float in ``doc`` (what ``json.dumps(allow_nan=False)``
    refuses), for a message; "a value" when there is none."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where or "the document"
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in reversed(value.items()))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
    return "a value"
