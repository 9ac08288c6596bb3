"""Write the speed-test clip for ``scripts/bench_infer.py``: 240 frames of 960x540 synthetic video (mp4v).

    .venv/bin/python scripts/make_bench_clip.py [OUT.mp4] [--frames 240] [--size 960x540] [--seed 14]

A clip from :func:`core.data.synthetic.generate_clip` (up to 6 moving shapes over a textured,
panning background), written with OpenCV's ``mp4v`` encoder. The same arguments give the same
frames (the generator is seeded); the file is for timing only and is never committed (``data/`` is
git-ignored).

With ``--from-frames FOLDER`` the clip is a real one instead: the folder's frames (in natural order,
repeated when ``--frames`` asks for more) resized to ``--size`` (cubic when enlarging, area when
shrinking) and written as JPEG files (``--quality``, default 90) into the folder OUT, e.g. the 4K clip of
the speed tables:

    .venv/bin/python scripts/make_bench_clip.py data/car_shadow_4k \
        --from-frames ../shared/data/davis_car_shadow/frames --size 3840x2160 --frames 40
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from core.data.synthetic import generate_clip
from core.errors import VPPError

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
    parser.add_argument("--from-frames", metavar="FOLDER",
                        help="resize this folder's frames (a real clip) to --size and write JPEG files into OUT")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality with --from-frames (default 90)")
    args = parser.parse_args(argv)
    width, height = args.size
    out = Path(args.out)
    if args.from_frames:
        return _from_frames(Path(args.from_frames), out, args.frames, width, height, args.quality)
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


def _from_frames(folder: Path, out: Path, frames: int, width: int, height: int, quality: int) -> int:
    """Write ``frames`` JPEG files of ``width x height`` into ``out`` from the frames of ``folder``."""
    from core.data.sources import FolderSource

    if out.suffix.lower() in (".mp4", ".avi", ".mkv", ".mov"):
        print(f"error: {out}: with --from-frames, OUT is a folder of JPEG files; name a folder", file=sys.stderr)
        return 2
    if not 1 <= quality <= 100:
        print(f"error: --quality must be 1..100, got {quality}", file=sys.stderr)
        return 2
    try:
        source = FolderSource(folder, cache_bytes=0)
    except VPPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    with source:
        w0, h0 = source.size
        interp = cv2.INTER_CUBIC if width * height > w0 * h0 else cv2.INTER_AREA
        for i in range(frames):
            rgb = cv2.resize(source.frame(i % len(source)), (width, height), interpolation=interp)
            path = out / f"{i:05d}.jpg"
            if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
                print(f"error: OpenCV cannot write {path}; check that the folder is writable", file=sys.stderr)
                return 1
    size = sum(p.stat().st_size for p in out.glob("*.jpg"))
    print(f"{out}: {frames} frames {width}x{height} from {folder} ({w0}x{h0}), JPEG quality {quality}, "
          f"{size / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
