"""Write the speed-test clip for ``scripts/bench_infer.py``: 240 frames of 960x540 synthetic video (mp4v).

    .venv/bin/python scripts/make_bench_clip.py [OUT.mp4] [--frames 240] [--size 960x540] [--seed 14]

A clip from :func:`core.data.synthetic.generate_clip` (up to 6 moving shapes over a textured,
panning background), written with OpenCV's ``mp4v`` encoder. The same arguments give the same
frames (the generator is seeded); the file is for timing only and is never committed (``data/`` is
git-ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from core.data.synthetic import generate_clip

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "bench_clip_960x540.mp4"
SEED = [2026, 14, 1]  # the training/validation sets use [seed, 0 or 1, i]: no overlap


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help=f"output .mp4 (default {DEFAULT_OUT})")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--size", type=_size, default=(960, 540), help="WIDTHxHEIGHT (default 960x540)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=SEED[1], help="second element of the clip's seed")
    args = parser.parse_args(argv)
    width, height = args.size
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clip = generate_clip([SEED[0], args.seed, SEED[2]], width, height, args.frames, max_objects=6)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, (width, height))
    if not writer.isOpened():
        print(f"error: OpenCV cannot write {out} with the mp4v codec", file=sys.stderr)
        return 1
    try:
        for frame in clip.frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    print(f"{out}: {args.frames} frames {width}x{height}, {len(clip.instances)} objects, "
          f"{out.stat().st_size / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
