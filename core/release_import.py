"""Importing one of the authors' released ``.pth`` models as a ``.safetensors`` model of the "release" family.

    import_release_checkpoint("vpp_vitSmall_0.4PKR.pth", "vpp_small_0.4.safetensors")   # variant read from tensors

Reads the authors' mmengine checkpoint without executing pickled code (``core.safe_pickle``: a file whose pickle
names anything but tensors, containers and mmengine's log records is refused), maps every tensor to
:class:`~core.model.release.model.ReleaseVPPModel` (``core.model.convert``: widths from the tensors' shapes, any
unmapped tensor is an error naming it), loads it strictly, and writes the safetensors weights with a JSON sidecar
(the family "release", its config, the YouTube-VIS 2021 categories for 40-class models, the source file's sha256
and the conversion report). Prints the report.

``vpp import-checkpoint`` (:mod:`core.commands.import_checkpoint`) and getting a released model
(:func:`core.released_models.get_model`, the CLI's ``vpp models download`` and the app's dialog) both call it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from core.data.categories import ytvis_categories
from core.errors import CheckpointError, VPPError
from core.model.convert import convert_release_state_dict
from core.model.release.checkpoint import empty_release_model, save_release_checkpoint, sidecar_path
from core.model.release.config import release_config
from core.model.weights import load_state_strict
from core.multi_commit import writable_output
from core.safe_pickle import load_mmengine_checkpoint

YTVIS_VERSION = "2021"


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
    cats = ytvis_categories(YTVIS_VERSION)
    if num_classes == len(cats):
        return [(c.id, c.name) for c in cats], None
    return ([(i + 1, f"class {i + 1}") for i in range(num_classes)],
            f"{num_classes} classes is not YouTube-VIS {YTVIS_VERSION}'s {len(cats)}: category names are placeholders")


def import_release_checkpoint(src: str | os.PathLike, out: str | os.PathLike, *, variant: str | None = None) -> Path:
    """Convert the released checkpoint ``src`` into ``out`` (.safetensors, its .json beside it); returns ``out``.

    ``variant``: the expected release variant ("tiny" / "small"; None: read from the tensors, an error if they
    disagree). Refuses, before reading ``src``, an output that is not a .safetensors file, is the source or
    cannot be written.
    """
    src, out = Path(src), Path(out)
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
        state, report = convert_release_state_dict(ckpt["state_dict"], variant=variant)
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
    return out
