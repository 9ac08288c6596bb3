"""The YouTube-VIS 2019 and 2021 category lists (40 classes each), shipped as package data.

Source and cross-checks are recorded under ``provenance`` in ``core/data/ytvis_categories.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Literal

from core.data.ytvis import YtvisCategory

Version = Literal["2019", "2021"]


def _load() -> dict:
    return json.loads(resources.files("core.data").joinpath("ytvis_categories.json").read_text(encoding="utf-8"))


def ytvis_categories(version: Version | int = "2021") -> tuple[YtvisCategory, ...]:
    """The categories of YouTube-VIS ``version`` ("2019" or "2021"), in id order."""
    key = f"ytvis{version}"
    data = _load()
    if key not in data:
        raise ValueError(f"unknown YouTube-VIS version {version!r}; valid: 2019, 2021")
    return tuple(YtvisCategory(int(c["id"]), str(c["name"])) for c in data[key])


def category_names(version: Version | int = "2021") -> dict[int, str]:
    """id -> name for YouTube-VIS ``version``."""
    return {c.id: c.name for c in ytvis_categories(version)}
