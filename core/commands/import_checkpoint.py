"""``vpp import-checkpoint FILE.pth --out model.safetensors [--variant tiny|small]``: a released model -> ours.

    vpp import-checkpoint vpp_vitSmall_0.4PKR.pth --out vpp_small_0.4.safetensors

Reads the authors' mmengine checkpoint without executing pickled code (``core.safe_pickle``: a file whose pickle
names anything but tensors, containers and mmengine's log records is refused), maps every tensor to
:class:`~core.model.release_model.ReleaseVPPModel` (``core.model.convert``: widths from the tensors' shapes, any
unmapped tensor is an error naming it), loads it strictly, and writes the safetensors weights with a JSON sidecar
(the model kind "release", its config, the YouTube-VIS 2021 categories for 40-class models, the source file's
sha256 and the conversion report). Prints the report.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from core.cli import writable_output
from core.errors import CheckpointError, VPPError
from core.model.convert import convert_release_state_dict
from core.model.release_model import VARIANTS, release_config
from core.release_checkpoint import empty_release_model, save_release_checkpoint, sidecar_path

YTVIS_VERSION = "2021"


def add_parser(sub) -> None:
    p = sub.add_parser("import-checkpoint", help="convert one of the authors' released .pth models to a .safetensors "
                                                 "model (no pickled code is run)")
    p.add_argument("src", metavar="FILE.pth", help="the released mmengine checkpoint")
    p.add_argument("--out", required=True, help="the .safetensors model to write (its .json is written beside it)")
    p.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                   help="expected variant; default: read from the tensors (an error if they disagree)")
    p.set_defaults(func=run)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _small_meta(meta: dict) -> dict:
    """The scalar entries of mmengine's ``meta`` (epoch, iter, versions, ...), without the config text."""
    out = {}
    for k, v in meta.items():
        if k == "cfg" or not isinstance(k, str):
            continue
        if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 200):
            out[k] = v
    return out


def categories_for(num_classes: int) -> tuple[list[tuple[int, str]], str | None]:
    """The categories a model of ``num_classes`` gets, and a note when they are placeholders."""
    from core.data.categories import ytvis_categories

    cats = ytvis_categories(YTVIS_VERSION)
    if num_classes == len(cats):
        return [(c.id, c.name) for c in cats], None
    return ([(i + 1, f"class {i + 1}") for i in range(num_classes)],
            f"{num_classes} classes is not YouTube-VIS {YTVIS_VERSION}'s {len(cats)}: category names are placeholders")


def run(args: argparse.Namespace) -> int:
    from core.checkpoint import load_state_strict
    from core.safe_pickle import load_mmengine_checkpoint

    src, out = Path(args.src), Path(args.out)
    if out.suffix != ".safetensors":
        raise VPPError(f"{out}: the output must end in .safetensors")
    if not src.is_file():
        raise VPPError(f"{src}: checkpoint file not found" if not src.exists() else f"{src}: not a file")
    if src.resolve() == out.resolve() or src.resolve() == sidecar_path(out).resolve():
        raise VPPError(f"{out}: write to a different file than the source")
    writable_output(out, "the imported model")
    writable_output(sidecar_path(out), "the imported model's config")

    ckpt = load_mmengine_checkpoint(src)
    try:
        state, report = convert_release_state_dict(ckpt["state_dict"], variant=args.variant)
    except CheckpointError as exc:
        raise CheckpointError(f"{src}: {exc}") from None
    cfg = release_config(report.variant, **report.widths, pruning_trained=report.pruning_trained,
                         extra={"imported_from": src.name})
    model = empty_release_model(cfg)
    load_state_strict(model, state, source=str(src))
    categories, note = categories_for(cfg.num_classes)
    if note:
        report.notes.append(note)
    source = {"file": src.name, "sha256": _sha256(src), "format": ckpt["format"],
              "meta": _small_meta(ckpt.get("meta") or {}), "other_keys": list(ckpt.get("other_keys") or [])}
    try:
        save_release_checkpoint(model, out, categories=categories, source=source, conversion=report.to_dict())
    except OSError as exc:
        raise VPPError(f"{out}: cannot write the imported model ({exc.strerror or exc})") from exc
    print(f"{src}: {ckpt['format']} checkpoint, {len(ckpt['state_dict'])} tensors")
    for line in report.lines():
        print(f"  {line}")
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MB, kind release, "
          f"{len(categories)} categories{'' if note else f' (YouTube-VIS {YTVIS_VERSION})'}")
    return 0
