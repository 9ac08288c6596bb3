"""``vpp make-synthetic``: write a seeded synthetic YouTube-VIS dataset (shapes over textured backgrounds).

    vpp make-synthetic --out data/shapes --train-videos 200 --val-videos 20 --frames 16 --seed 0
"""

from __future__ import annotations

import argparse
import time

from core.data.synthetic import CATEGORIES, MAX_OBJECTS, write_synthetic_dataset
from core.errors import VPPError


def add_parser(sub) -> None:
    p = sub.add_parser("make-synthetic", help="write a seeded synthetic YouTube-VIS dataset for training/tests")
    p.add_argument("--out", required=True,
                   help="dataset root: writes <out>/<split>/JPEGImages/ and <out>/<split>/instances.json")
    p.add_argument("--train-videos", type=int, default=8)
    p.add_argument("--val-videos", type=int, default=2)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--frames", type=int, default=16, help="frames per video")
    p.add_argument("--max-objects", type=int, default=4, help="at most this many objects per video")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--appearance", choices=("category", "paired", "random"), default="category",
                   help="category: colour/pattern tell the class; random: drawn per object, only the outline does")
    p.add_argument("--max-distractors", type=int, default=0,
                   help="add 1..N unannotated sprites per video: other outlines in the categories' looks "
                        "(0: none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.train_videos < 0 or args.val_videos < 0 or args.train_videos + args.val_videos == 0:
        raise VPPError("--train-videos and --val-videos must be >= 0 and not both 0")
    if args.width < 8 or args.height < 8 or args.frames < 1 or not 1 <= args.max_objects <= MAX_OBJECTS \
            or args.max_distractors < 0:
        raise VPPError(f"need --width/--height >= 8, --frames >= 1, --max-objects in 1..{MAX_OBJECTS} and "
                       "--max-distractors >= 0")
    start = time.perf_counter()
    written = write_synthetic_dataset(args.out, train_videos=args.train_videos, val_videos=args.val_videos,
                                      width=args.width, height=args.height, frames=args.frames, seed=args.seed,
                                      max_objects=args.max_objects, appearance=args.appearance,
                                      max_distractors=args.max_distractors)
    for split, ann in written.items():
        print(f"{split}: {ann}")
    print(f"categories: {', '.join(f'{i + 1}={n}' for i, n in enumerate(CATEGORIES))}; "
          f"{time.perf_counter() - start:.1f} s")
    return 0
