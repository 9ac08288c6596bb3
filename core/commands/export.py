"""``vpp export PROJECT --out results.json``: write a project's corrected results, headless.

    vpp export review.vppproj --out results.json [--zip results.zip] [--davis-png masks/] [--coco frames.json]

One option per format of :mod:`core.formats` (made by :mod:`core.commands.output_options`).

What is written is what the app shows: every track of the project after a person's edits, rejected
tracks left out. All outputs are written together through :mod:`core.export` (all or none, each with a
run record). The clip itself need not be on this machine: the project holds the masks and frame names.
With ``--recover``, a journal left beside the project by a crash is applied first; a journal of another
clip, of another project or of another version of this one is refused whole.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from core.commands.output_options import add_output_options, formats_summary, options_phrase, output_paths
from core.errors import DataError, VPPError


def add_parser(sub) -> None:
    p = sub.add_parser("export", help=f"write a project's corrected results ({formats_summary()})")
    p.add_argument("project", help="a VPP Studio project file (*.vppproj)")
    add_output_options(p, "export")  # one option per format of core.formats
    p.add_argument("--include-rejected", action="store_true", help="also export tracks marked rejected")
    p.add_argument("--recover", action="store_true",
                   help="apply the crash journal beside the project (.<name>.journal) before exporting")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.app.document import Document, journal_path_for
    from core.app.document.journal import unsaved_edits
    from core.export import VideoExport, check_outputs, export_results

    project = Path(args.project)
    if not project.is_file():
        raise DataError(f"{project}: project file not found")
    outputs = output_paths(args, "export")
    if not any(outputs.values()):
        raise VPPError(f"nothing to write: give {options_phrase()}")
    check_outputs(outputs, inputs=(project,))  # a clear error before reading a large project
    journal = journal_path_for(project)
    if args.recover:
        if not os.path.lexists(journal):
            raise DataError(f"{journal}: no journal to recover beside {project}")
        doc = Document.recover(journal, project=project)  # a journal of another clip or project: refused whole
    else:
        doc = Document.load(project)
    clip = doc.to_clip_results(include_rejected=args.include_rejected)
    video = VideoExport(1, doc.clip.name, doc.clip.frame_names(), clip)
    inputs = (project, *([doc.clip.path] if Path(doc.clip.path).exists() else []))
    summary = export_results([video], outputs, categories=tuple(sorted(doc.categories.items())),
                             record=doc.run_record("vpp export"), inputs=inputs)
    report = {"project": str(project), "tracks": summary.tracks.get(1, 0), "written": [str(p) for p in summary.paths]}
    pending = 0 if args.recover else unsaved_edits(journal)
    if pending is None:
        report["warning"] = (f"{journal} cannot be read; it may hold edits not saved in the project: open the "
                             "project in the app to see them")
    elif pending:
        report["warning"] = (f"{journal} holds {pending} edit(s) not saved in the project (a crash, or unsaved "
                             "edits in an open app); save or recover them in the app, or pass --recover")
    print(json.dumps(report))
    return 0
