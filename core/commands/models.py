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
from pathlib import Path

from core import model_zoo


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


def _pkr(entry: model_zoo.ZooEntry) -> str:
    if entry.pkr is None:
        return "-"
    return "100% (dense)" if entry.pkr == 1.0 else f"{entry.pkr * 100:.1f}%"


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def list_table(dest_dir=None) -> str:
    """The ``vpp models list`` table as text."""
    folder = dest_dir if dest_dir is not None else model_zoo.cache_dir()
    header = ("name", "variant", "kind", "PKR", "size", "cached", "checksum")
    rows = []
    for e in model_zoo.ZOO:
        cached = model_zoo.cached_path(e, folder)
        size = e.size if e.size is not None else (cached.stat().st_size if cached else None)
        rows.append((e.name, e.variant, e.kind, _pkr(e), _size(size), "yes" if cached else "no",
                     "published" if e.sha256 else "not published"))
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


def imported_path(entry: model_zoo.ZooEntry, folder) -> Path:
    """Where ``vpp models download`` puts the imported model of ``entry``."""
    return Path(folder) / f"{entry.name}.safetensors"


def imported_models(folder=None) -> list[tuple[str, Path]]:
    """(name, path) of the released models already downloaded and imported into ``folder`` (default: the cache),
    in the release's order: what the app's Model list offers."""
    folder = folder if folder is not None else model_zoo.cache_dir()
    out = []
    for e in model_zoo.ZOO:
        p = imported_path(e, folder)
        if p.is_file():
            out.append((e.name, p))
    return out


def run(args: argparse.Namespace) -> int:
    folder = getattr(args, "dir", None)
    if args.models_command == "list":
        print(list_table(folder))
        return 0
    if args.models_command == "download":
        entry = model_zoo.get_entry(args.name)
        dest = folder if folder is not None else model_zoo.cache_dir()
        path = model_zoo.download(entry, dest, progress=not getattr(args, "no_progress", False))
        recorded = model_zoo.read_sidecar(path)
        status = "verified" if entry.sha256 else "unverified (the release publishes no checksum)"
        print(f"sha256 {recorded or '?'}: {status}", file=sys.stderr)
        if getattr(args, "no_import", False):
            print(path)
            print(f"to use it: vpp import-checkpoint {path} --out {entry.name}.safetensors --variant {entry.variant}",
                  file=sys.stderr)
            return 0
        from core.commands import import_checkpoint

        out = imported_path(entry, dest)
        import_checkpoint.run(argparse.Namespace(src=str(path), out=str(out), variant=entry.variant))
        print(out)
        print(f"to use it: vpp infer CLIP --model {out}, or choose it in the app's Model list", file=sys.stderr)
        return 0
    raise AssertionError(f"unknown models action {args.models_command!r}")  # argparse prevents this
