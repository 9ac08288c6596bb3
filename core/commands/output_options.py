"""The output options of ``vpp infer`` and ``vpp export``, made from the format registry (:mod:`core.formats`).

Each codec gives its option (``--out``, ``--zip``, ``--davis-png``, ``--coco``, ...), metavar and help;
``vpp infer`` uses a codec's ``infer_help`` and turns a codec with ``infer_suffix`` (the zip) into a flag
that writes ``--out`` with that suffix. ``vpp infer`` always writes the YTVIS results (``--out``, required:
a batch run keeps its work beside it); ``vpp export`` writes any subset. :func:`output_paths` turns the
parsed options into the ``outputs`` mapping :func:`core.export.export_results` takes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.formats import Codec, codecs

#: The format ``vpp infer`` always writes (``--out``), and whose path a flag's suffix replaces.
INFER_PRIMARY = "ytvis"


def _dest(c: Codec) -> str:
    return c.option.lstrip("-").replace("-", "_")


def add_output_options(parser: argparse.ArgumentParser, command: str) -> None:
    """One option per format for ``command`` ("infer" or "export")."""
    for c in codecs():
        extra = {} if c.metavar is None else {"metavar": c.metavar}
        if command == "export":
            parser.add_argument(c.option, default=None, help=c.help, **extra)
        elif c.name == INFER_PRIMARY:
            parser.add_argument(c.option, required=True, help=c.infer_help or c.help, **extra)
        elif c.infer_suffix:
            parser.add_argument(c.option, action="store_true", help=c.infer_help or c.help)
        else:
            parser.add_argument(c.option, default=None, help=c.infer_help or f"also write {c.help}", **extra)


def output_paths(args: argparse.Namespace, command: str) -> dict[str, Path | str | None]:
    """Format name -> the path given (None where not given); for ``vpp infer`` a flag gives ``--out`` with
    its codec's suffix, and every path is a :class:`Path`."""
    if command == "export":
        return {c.name: getattr(args, _dest(c)) for c in codecs()}
    primary = Path(getattr(args, _dest(next(c for c in codecs() if c.name == INFER_PRIMARY))))
    out: dict[str, Path | str | None] = {}
    for c in codecs():
        value = getattr(args, _dest(c))
        if c.name == INFER_PRIMARY:
            out[c.name] = primary
        elif c.infer_suffix:
            out[c.name] = primary.with_suffix(c.infer_suffix) if value else None
        else:
            out[c.name] = Path(value) if value else None
    return out


def options_phrase(joiner: str = "and/or") -> str:
    """Every output option, for messages: "--out, --zip, --davis-png and/or --coco"."""
    options = [c.option for c in codecs()]
    return f"{', '.join(options[:-1])} {joiner} {options[-1]}" if len(options) > 1 else options[0]


def formats_summary() -> str:
    """What the formats are, for a command's help: "YTVIS JSON/zip, DAVIS PNGs, COCO JSON"."""
    return ", ".join(c.summary for c in codecs() if c.summary)
