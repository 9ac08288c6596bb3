"""Hostile and crash journals: a crash journal never destroyed by opening its project, foreign journals
refused whole, ids in a journal checked, a pipe in the journal's place.

Each check builds one hostile input under its temp folder and runs the project's code on it: in this
process where nothing can hang, else in a subprocess with a timeout. The rules checked are the README's
"Projects and recovery": a journal holding edits is never truncated or replaced, what a recovered
journal saves opens again, a journal of another clip or project (or a damaged one) is refused whole,
nothing hangs on a pipe. Builders and verdicts: ``_project_helpers``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the runner loads this file by path: its helpers lie beside it
    sys.path.insert(0, str(HERE))

import _project_helpers as ph  # noqa: E402
import numpy as np  # noqa: E402

from core.app.document import ClipInfo, Document, journal_path_for  # noqa: E402
from core.data.rle import encode_mask  # noqa: E402
from core.errors import DataError  # noqa: E402


# -- 3. a crash journal is never destroyed by opening its project ------------------------------------
def journal_kept_when_opened(tmp: Path) -> str | None:
    project = ph.project(tmp)
    journal, before = ph.crashed_journal(project)
    doc = Document.load(project)  # settings that do not list it: the app opens it and starts journalling
    doc.start_journal(tmp / "data")
    doc.reject([2])
    doc.stop_journal(delete=True)  # closing without saving
    if journal.read_bytes() != before:
        return "opening the project truncated or replaced its crash journal"
    rec = Document.recover(journal, project=project)
    return None if rec.track(1).review == "accepted" else "the journal's edit did not survive"


def snapshot_and_label_journals_kept(tmp: Path) -> str | None:
    """Journals whose unsaved work is in the header (snapshot) or in label records only are not 'idle'."""
    from core.app.document import find_recoverable

    project = ph.project(tmp)
    doc = Document.load(project)
    doc.accept([1])
    journal = doc.start_journal()  # dirty: the header holds every track
    doc.stop_journal(delete=False)
    before = journal.read_bytes()
    if not find_recoverable(projects=[project]) or journal.read_bytes() != before:
        return "a journal holding a snapshot of unsaved edits was removed as idle"
    journal.unlink()
    doc = Document.load(project)
    doc.start_journal()
    doc.add_category("chair")
    doc.stop_journal(delete=False)
    before = journal.read_bytes()
    if not find_recoverable(projects=[project]) or journal.read_bytes() != before:
        return "a journal holding a label a person added was removed as idle"
    return None


def gui_project_offers_recovery(tmp: Path) -> str | None:
    """``vpp-gui --project P`` with settings that do not list P: recovery is offered; "No" keeps it."""
    import cv2

    clip = tmp / "clip"
    clip.mkdir()
    for i in range(ph.T):
        cv2.imwrite(str(clip / f"{i:05d}.jpg"), np.full((ph.H, ph.W, 3), 40 * i, np.uint8))
    doc = Document(ClipInfo.open(clip), categories={1: "a"})
    doc.add_tracks([(1, 0.9, {0: encode_mask(ph.rect(1, 1, 8, 9))})])
    project = doc.save(tmp / "p.vppproj")
    journal, before = ph.crashed_journal(project)
    code = f"""
import sys, json; sys.path.insert(0, {str(ph.ROOT)!r})
from pathlib import Path
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox
from vpp_gui.app import create_window
from vpp_gui.project_io import ProjectIO
from vpp_gui.settings import Settings
app = QApplication([])
asked = []
QMessageBox.warning = lambda *a, **k: None
answers = iter([QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes])
ProjectIO.ask_recover = lambda self, c: asked.append(str(c.path)) or next(answers)
settings = Settings(QSettings({str(tmp / "s.ini")!r}, QSettings.Format.IniFormat))
out = {{}}
for run in ("no", "yes"):
    w = create_window(project={str(project)!r}, settings=settings, data_dir={str(tmp / "data")!r}, demo=False,
                      model_factory=lambda *a: None)
    doc = w.bridge.doc
    out[run] = {{"asked": len(asked), "review": doc.track(1).review if doc else None,
                "journal": Path({str(journal)!r}).read_bytes() == {before!r}}}
    doc.mark_clean()
    w.close()
print(json.dumps(out))
"""
    proc = ph.run(code, timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp)})
    if isinstance(proc, str):
        return proc
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"the GUI run failed: {proc.stderr[-1500:]}"
    if out["no"]["asked"] != 1:
        return "no recovery was offered for the journal beside the project"
    if not out["no"]["journal"]:
        return "answering 'No: ask again next time' did not keep the journal"
    if out["yes"]["asked"] != 2 or out["yes"]["review"] != "accepted":
        return f"the second start did not offer or recover the journal: {out}"
    return None


# -- 5. what a recovered journal saves opens again ----------------------------------------------------
def journal_next_id_and_foreign_track_id(tmp: Path) -> str | None:
    from core.app.document.journal import encode_line

    project = ph.project(tmp)
    journal, _ = ph.crashed_journal(project)
    lines = journal.read_bytes().split(b"\n")[:-1]
    edit = json.loads(lines[1].partition(b" ")[2])
    big = dict(edit, next_id=2**31 + 5)
    journal.write_bytes(b"\n".join(lines) + b"\n" + encode_line(big))
    doc = Document.recover(journal)
    doc.create_track(0, ph.rect(0, 0, 3, 3), 1)
    doc.create_track(0, ph.rect(5, 5, 8, 8), 2)
    out = doc.save(tmp / "after.vppproj")
    try:
        Document.load(out)
    except DataError as exc:
        return f"a journal next_id past 2**31-1: the saved project does not open again: {exc}"
    # an edit whose change names track 1 but holds track 2: refused, not saved into a broken project
    full = json.loads(lines[1].partition(b" ")[2])
    full["changes"][0]["after"] = {"full": {**json.loads(json.dumps(ph.track_json(project, 2))), "review": "accepted"}}
    journal.write_bytes(lines[0] + b"\n" + encode_line(full))
    try:
        rec = Document.recover(journal)
    except DataError:
        return None
    try:
        Document.load(rec.save(tmp / "mixed.vppproj"))
    except DataError as exc:
        return f"a journal edit whose id differs from its track's: recovered, saved, and now unreadable: {exc}"
    return None


# -- 6. foreign journals --------------------------------------------------------------------------------
def foreign_journals_refused_by_export(tmp: Path) -> str | None:
    project = ph.project(tmp)
    journal = journal_path_for(project)
    other = ph.make_doc("/clips/another")  # a journal of another clip, never saved
    j = other.start_journal(tmp / "data")
    other.accept([1])
    other.stop_journal(delete=False)
    os.replace(j, journal)
    problem = ph.clean_error(ph.vpp("export", str(project), "--recover", "--out", str(tmp / "a.json")), journal.name)
    if problem or (tmp / "a.json").exists():
        return f"a journal of another clip: {problem or 'exported'}"
    q = ph.project(tmp, "q.vppproj")  # a journal whose base is another project
    qj, _ = ph.crashed_journal(q)
    os.replace(qj, journal)
    problem = ph.clean_error(ph.vpp("export", str(project), "--recover", "--out", str(tmp / "b.json")), "q.vppproj")
    if problem or (tmp / "b.json").exists():
        return f"a journal of another project: {problem or 'exported'}"
    return None


# -- 12: ids a journal reader must refuse ---------------------------------------------------------------
def journal_infinite_ids(tmp: Path) -> str | None:
    project = ph.project(tmp)
    journal, _ = ph.crashed_journal(project)
    header, edit = (x.partition(b" ")[2].decode() for x in journal.read_bytes().split(b"\n")[:2])
    h, e = json.loads(header), json.loads(edit)
    variants = []
    for bad in ("Infinity", "-Infinity", "NaN", "1e400", "1.5", '"7"', "true", "-1", "[]"):
        variants.append(("next_id", header, json.dumps(dict(e, next_id="@@")).replace('"@@"', bad)))
    for bad in ("Infinity", "1e400", "NaN", "1.5", '"7"', "true", "-1", "2147483648", "{}"):
        ch = json.loads(edit)
        ch["changes"][0]["id"] = "@@"
        variants.append(("change id", header, json.dumps(ch).replace('"@@"', bad)))
    for bad in ("Infinity", "-Infinity", "1e999"):
        hh = json.loads(header)
        hh["categories"][0][0] = "@@"
        variants.append(("category id", json.dumps(hh).replace('"@@"', bad), edit))
        variants.append(("header next_id", json.dumps(dict(h, next_id="@@")).replace('"@@"', bad), edit))
    for what, head, body in variants:
        journal.write_bytes(ph.line(head) + ph.line(body))
        problem = ph.refused(lambda: Document.recover(journal), journal.name)
        if problem:
            return f"{what} {body[-60:] if what != 'category id' else head[:80]}: {problem}"
    return None


# -- 11: a pipe in the journal's place ------------------------------------------------------------------
def fifo_journal_at_open(tmp: Path) -> str | None:
    project = ph.project(tmp)
    os.mkfifo(journal_path_for(project))
    code = f"""
import sys; sys.path.insert(0, {str(ph.ROOT)!r})
from core.app.document import Document, find_recoverable
from core.app.document.journal import unsaved_edits, recovery_candidate, journal_path_for
p = {str(project)!r}
c = recovery_candidate(journal_path_for(p))
assert c is not None and c.problem and "pipe" in c.problem, c
assert find_recoverable(projects=[p])[0].problem
assert unsaved_edits(journal_path_for(p)) is None
doc = Document.load(p)
doc.start_journal({str(tmp / "data")!r})
doc.accept([1])
doc.save()
print("ok")
"""
    proc = ph.run(code, timeout=60)
    if isinstance(proc, str):
        return proc
    if proc.stdout.strip() != "ok":
        return f"failed: {proc.stderr[-1000:]}"
    if not os.path.exists(journal_path_for(project)) or not __import__("stat").S_ISFIFO(
            os.lstat(journal_path_for(project)).st_mode):
        return "the pipe in the journal's place was replaced"
    for args in (["export", str(project), "--out", str(tmp / "o.json")],):
        proc = ph.vpp(*args, timeout=60)
        if isinstance(proc, str):
            return f"vpp export: {proc}"
        if proc.returncode != 0:
            return f"vpp export failed: {proc.stderr[-600:]}"
    return ph.clean_error(ph.vpp("export", str(project), "--recover", "--out", str(tmp / "r.json")), "pipe")


def cases() -> list[tuple[str, Callable[[Path], str | None]]]:
    return [
        ('3 crash journal kept when the project opens', journal_kept_when_opened),
        ('3 snapshot / label journals are not idle', snapshot_and_label_journals_kept),
        ('3 vpp-gui --project offers recovery, No keeps it', gui_project_offers_recovery),
        ('5 journal next_id and a change naming another track', journal_next_id_and_foreign_track_id),
        ('6 export --recover refuses foreign journals', foreign_journals_refused_by_export),
        ('12 journal ids / category ids Infinity', journal_infinite_ids),
        ('11 FIFO journal at open', fifo_journal_at_open),
    ]
