"""``vpp make-synthetic``: write a seeded synthetic YouTube-VIS dataset (shapes over textured backgrounds).

    vpp make-synthetic --out data/shapes --train-videos 200 --val-videos 20 --frames 16 --seed 0
"""

from __future__ import annotations

import argparse
import time

from core.cli import int_range
from core.data.synthetic import CATEGORIES, MAX_OBJECTS, write_synthetic_dataset
from core.errors import VPPError

MAX_VIDEOS = 100_000
MAX_SIDE = 4096
MAX_FRAMES = 10_000


def add_parser(sub) -> None:
    p = sub.add_parser("make-synthetic", help="write a seeded synthetic YouTube-VIS dataset for training/tests")
    p.add_argument("--out", required=True,
                   help="dataset root: writes <out>/<split>/JPEGImages/ and <out>/<split>/instances.json")
    p.add_argument("--train-videos", type=int_range(0, MAX_VIDEOS), default=8)
    p.add_argument("--val-videos", type=int_range(0, MAX_VIDEOS), default=2)
    p.add_argument("--width", type=int_range(8, MAX_SIDE), default=320)
    p.add_argument("--height", type=int_range(8, MAX_SIDE), default=240)
    p.add_argument("--frames", type=int_range(1, MAX_FRAMES), default=16, help="frames per video")
    p.add_argument("--max-objects", type=int_range(1, MAX_OBJECTS), default=4,
                   help=f"at most this many objects per video (1..{MAX_OBJECTS})")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0)
    p.add_argument("--appearance", choices=("category", "paired", "random"), default="category",
                   help="category: colour/pattern tell the class; random: drawn per object, only the outline does")
    p.add_argument("--max-distractors", type=int_range(0, MAX_OBJECTS), default=0,
                   help="add 1..N unannotated sprites per video: other outlines in the categories' looks "
                        "(0: none)")
    p.add_argument("--scene", choices=("plain", "camouflage", "mixed"), default="plain",
                   help="camouflage: the background is a mosaic of regions in the categories' looks and objects "
                        "carry a dark outline, so only context tells an object from a region; "
                        "mixed: videos alternate plain and camouflage")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.train_videos < 0 or args.val_videos < 0 or args.train_videos + args.val_videos == 0:
        raise VPPError("--train-videos and --val-videos must be >= 0 and not both 0")
    start = time.perf_counter()
    written = write_synthetic_dataset(args.out, train_videos=args.train_videos, val_videos=args.val_videos,
                                      width=args.width, height=args.height, frames=args.frames, seed=args.seed,
                                      max_objects=args.max_objects, appearance=args.appearance,
                                      max_distractors=args.max_distractors, scene=args.scene)
    for split, ann in written.items():
        print(f"{split}: {ann}")
    print(f"categories: {', '.join(f'{i + 1}={n}' for i, n in enumerate(CATEGORIES))}; "
          f"{time.perf_counter() - start:.1f} s")
    return 0
