"""``vpp models``: the authors' released model files (list, download into the user's cache).

    vpp models list [--dir DIR]
    vpp models download NAME [--dir DIR] [--no-progress]

The files are the eight linked from the release README (see :mod:`core.model_zoo`); downloading needs
internet access. The release publishes no checksums, so downloads are reported as unverified and their
sha256 is recorded beside the file. Turning a downloaded ``.pth`` into a ``.safetensors`` model is
``vpp import-checkpoint``.
"""

from __future__ import annotations

import argparse
import sys

from core import model_zoo, released_models
from core.released_models import imported_models, imported_path  # noqa: F401 - the names the app used to import


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list / download the authors' released model files")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    ls = msub.add_parser("list", help="the released models, and which are in the cache")
    ls.add_argument("--dir", default=None, help="look in this folder instead of the user's cache folder")
    dl = msub.add_parser("download", help="download one released model (resumable; needs internet access)")
    dl.add_argument("name", help="model name, as `vpp models list` shows it")
    dl.add_argument("--dir", default=None, help="download into this folder (default: the user's cache folder)")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    dl.add_argument("--no-import", action="store_true",
                    help="only download the .pth (default: also import it as NAME.safetensors beside it)")
    p.set_defaults(func=run)


def list_table(dest_dir=None) -> str:
    """The ``vpp models list`` table as text (the app's dialog shows the same rows)."""
    folder = released_models.folder_or_cache(dest_dir)
    header = ("name", "variant", "kind", "PKR", "size", "state", "checksum")
    rows = [(m.entry.name, m.entry.variant, m.entry.kind, released_models.pkr_text(m.entry), m.size_text,
             m.state_text, "published" if m.entry.sha256 else "not published")
            for m in released_models.local_models(folder)]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [
        "",
        f"cache folder: {folder}",
        f"source: the release README of github.com/{model_zoo.RELEASE_REPO} ({model_zoo.RELEASE_COMMIT}); "
        f"all files: {model_zoo.RELEASE_FILES_PAGE}",
        "the release publishes no checksums or sizes: downloads are unverified (their sha256 is recorded)",
        "downloading needs internet access: vpp models download NAME",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    folder = getattr(args, "dir", None)
    if args.models_command == "list":
        print(list_table(folder))
        return 0
    if args.models_command == "download":
        entry = model_zoo.get_entry(args.name)
        dest = released_models.folder_or_cache(folder)
        progress = not getattr(args, "no_progress", False)
        no_import = getattr(args, "no_import", False)
        try:
            out = released_models.get_model(entry, dest, do_import=not no_import, progress=progress)
        except model_zoo.DownloadError as exc:
            raise model_zoo.DownloadError(f"{exc}\n{released_models.offline_help(entry, dest)}") from None
        path = dest / entry.filename
        recorded = model_zoo.read_sidecar(path)
        status = "verified" if entry.sha256 else "unverified (the release publishes no checksum)"
        print(f"sha256 {recorded or '?'}: {status}", file=sys.stderr)
        if no_import:
            print(path)
            print(f"to use it: vpp import-checkpoint {path} --out {entry.name}.safetensors --variant {entry.variant}",
                  file=sys.stderr)
            return 0
        print(out)
        print(f"to use it: vpp infer CLIP --model {out}, or choose it in the app's Model list", file=sys.stderr)
        return 0
    raise AssertionError(f"unknown models action {args.models_command!r}")  # argparse prevents this
