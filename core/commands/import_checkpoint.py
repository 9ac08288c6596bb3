"""``vpp import-checkpoint FILE.pth --out model.safetensors [--variant tiny|small]``: a released model -> ours.

    vpp import-checkpoint vpp_vitSmall_0.4PKR.pth --out vpp_small_0.4.safetensors

Reads the authors' mmengine checkpoint without executing pickled code and writes a model of the "release" family
(safetensors weights + JSON sidecar); prints the conversion report. The work is
:func:`core.release_import.import_release_checkpoint`'s (also what getting a released model runs).
"""

from __future__ import annotations

import argparse

from core.build import FAMILIES
from core.release_import import import_release_checkpoint


def add_parser(sub) -> None:
    p = sub.add_parser("import-checkpoint", help="convert one of the authors' released .pth models to a .safetensors "
                                                 "model (no pickled code is run)")
    p.add_argument("src", metavar="FILE.pth", help="the released mmengine checkpoint")
    p.add_argument("--out", required=True, help="the .safetensors model to write (its .json is written beside it)")
    p.add_argument("--variant", choices=sorted(FAMILIES["release"].variants), default=None,
                   help="expected variant; default: read from the tensors (an error if they disagree)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import_release_checkpoint(args.src, args.out, variant=args.variant)
    return 0
