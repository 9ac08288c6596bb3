"""Small builders of YouTube-VIS JSON for tests (plain dicts, as a file would hold them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.data.rle import encode_mask


def box_mask(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def rle(mask: np.ndarray) -> dict:
    return encode_mask(mask)


def gt_dict(h: int = 20, w: int = 30, frames: int = 3) -> dict:
    """One video, two categories, two tracks (the second absent in frame 0)."""
    segs1 = [rle(box_mask(h, w, 2 + t, 2, 10 + t, 10)) for t in range(frames)]
    segs2 = [None] + [rle(box_mask(h, w, 15, 5, 25, 15)) for _ in range(frames - 1)]
    def track(i, cat, segs):
        return {"id": i, "video_id": 1, "category_id": cat, "iscrowd": 0, "segmentations": segs,
                "areas": [None if s is None else 64 if i == 1 else 100 for s in segs],
                "bboxes": [None if s is None else [0.0, 0.0, 1.0, 1.0] for s in segs],
                "height": h, "width": w, "length": 1}
    return {"info": {"description": "test"}, "licenses": [],
            "videos": [{"id": 1, "width": w, "height": h, "length": frames,
                        "file_names": [f"v1/{t:05d}.jpg" for t in range(frames)]}],
            "annotations": [track(1, 1, segs1), track(2, 2, segs2)],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def results_list(gt: dict) -> list[dict]:
    return [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 0.9 - 0.1 * k,
             "segmentations": a["segmentations"]} for k, a in enumerate(gt["annotations"])]


def dump(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path
