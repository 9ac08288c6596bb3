"""A few-frame YTVIS dataset on disk for training/inference tests (two moving shapes per video)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def make_tiny_ytvis(root: Path, *, videos: int = 2, frames: int = 4, size=(64, 48), seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/JPEGImages/<video>/*.jpg`` and ``root/instances.json``; returns (ann, image root)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img_root = root / "JPEGImages"
    vids, anns = [], []
    for v in range(videos):
        name = f"vid{v:02d}"
        (img_root / name).mkdir(parents=True, exist_ok=True)
        files = []
        segs = {1: [], 2: []}
        for t in range(frames):
            img = np.full((h, w, 3), 40, np.uint8)
            m1 = np.zeros((h, w), np.uint8)
            m2 = np.zeros((h, w), np.uint8)
            cx = 8 + 3 * t + v
            cv2.rectangle(m1, (cx, 6), (cx + 14, 20), 1, -1)
            cv2.circle(m2, (w - 14 - 2 * t, h - 14), 8, 1, -1)
            img[m1 > 0] = (220, 40, 40)
            img[m2 > 0] = (40, 220, 40)
            img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
            f = f"{name}/{t:05d}.jpg"
            cv2.imwrite(str(img_root / f), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            files.append(f)
            for k, m in ((1, m1), (2, m2)):
                rle = mask_utils.encode(np.asfortranarray(m))
                rle["counts"] = rle["counts"].decode("ascii")
                segs[k].append(rle)
        vids.append({"id": v + 1, "width": w, "height": h, "length": frames, "file_names": files})
        for k in (1, 2):
            areas = [float(mask_utils.area(r)) for r in segs[k]]
            bboxes = [list(map(float, mask_utils.toBbox(r))) for r in segs[k]]
            anns.append({"id": len(anns) + 1, "video_id": v + 1, "category_id": k, "iscrowd": 0,
                         "segmentations": segs[k], "areas": areas, "bboxes": bboxes,
                         "height": h, "width": w, "length": 1})
    gt = {"info": {}, "licenses": [], "videos": vids, "annotations": anns,
          "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "disc"}]}
    ann = root / "instances.json"
    ann.write_text(json.dumps(gt))
    return ann, img_root
