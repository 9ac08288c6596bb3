"""Write the demo clip shipped in resources/demo_clip/ (made by this project, no third-party footage).

    .venv/bin/python scripts/make_demo_clip.py [--out resources/demo_clip]

A synthetic clip from ``core.data.synthetic`` with its own seed (never used for training or
validation): textured shapes moving over a textured, panning background, some entering or leaving
mid-clip. Frames are JPEGs named 00000.jpg ...; ``gt_ytvis.json`` beside them holds the true masks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from core.data.synthetic import CATEGORIES, generate_clip
from core.data.ytvis import YtvisAnnotation, YtvisCategory, YtvisGroundTruth, YtvisVideo, write_ytvis_gt

SEED = [2026, 7, 25]  # the training/validation sets use [seed, 0 or 1, i]: no overlap
WIDTH, HEIGHT, FRAMES = 640, 360, 48


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "resources" / "demo_clip"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip = generate_clip(SEED, WIDTH, HEIGHT, FRAMES, min_objects=4, max_objects=6)
    names = [f"{t:05d}.jpg" for t in range(FRAMES)]
    for name, frame in zip(names, clip.frames):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
        if not ok:
            raise SystemExit(f"cannot encode {name}")
        (out / name).write_bytes(buf.tobytes())
    video = YtvisVideo(1, WIDTH, HEIGHT, tuple(names))
    anns = tuple(YtvisAnnotation.from_masks(k + 1, 1, inst.category_id, [m if m.any() else None for m in inst.masks])
                 for k, inst in enumerate(clip.instances))
    cats = tuple(YtvisCategory(i + 1, n) for i, n in enumerate(CATEGORIES))
    write_ytvis_gt(out.parent / "demo_clip_gt.json", YtvisGroundTruth((video,), anns, cats))
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {FRAMES} frames {WIDTH}x{HEIGHT}, {len(anns)} objects, {size / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
