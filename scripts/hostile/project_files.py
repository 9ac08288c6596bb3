"""Hostile places beside a person's project: links, pipes and devices where VPP Studio writes, two
processes on one project, temporary files a killed save left.

Each check builds one hostile input under its temp folder and runs the project's code on it: in this
process where nothing can hang, else in a subprocess with a timeout. The rules checked are the README's
"Projects and recovery" and "Output rules": nothing written through a link or into a pipe / device, a
second opener may not save over the first, a save never overwrites a project changed on disk, only dead
saves' temporary files are cleaned up. Builders and verdicts: ``_project_helpers``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the runner loads this file by path: its helpers lie beside it
    sys.path.insert(0, str(HERE))

import _project_helpers as ph  # noqa: E402

from core.app.document import Document, journal_path_for  # noqa: E402


# -- 1. links, pipes and devices where we write ----------------------------------------------------
def journal_symlink(tmp: Path) -> str | None:
    project, victim = ph.project(tmp), ph.victim(tmp)
    journal = journal_path_for(project)
    journal.symlink_to(victim)
    from core.app.document import find_recoverable

    found = find_recoverable(tmp / "data", projects=[project])  # "cannot recover" first, then open it
    if not found or found[0].problem is None:
        return "a symlink in the journal's place was not reported as a problem"
    doc = Document.load(project)
    problem = ph.refused(doc.start_journal, str(journal), "symbolic link")  # no data folder: refused
    doc.start_journal(tmp / "data")  # with one: journalled there instead
    doc.accept([2])
    doc.stop_journal(delete=True)
    if not journal.is_symlink():
        return "the link in the journal's place was replaced"
    return problem or ph.untouched(victim)


def project_symlink(tmp: Path) -> str | None:
    real = ph.project(tmp, "real.vppproj")
    before = real.read_bytes()
    link = tmp / "p.vppproj"
    link.symlink_to(real)
    doc = Document.load(link)
    doc.accept([1])
    problem = ph.refused(doc.save, "symbolic link")
    if real.read_bytes() != before or not link.is_symlink():
        return "a save went through the project's symlink"
    return problem


def lock_and_temp_symlinks(tmp: Path) -> str | None:
    project, victim = ph.project(tmp), ph.victim(tmp)
    lock = tmp / f".{project.name}.lock"
    lock.symlink_to(victim)
    doc = Document.load(project)
    doc.accept([1])
    problem = ph.refused(doc.save, "symbolic link")
    lock.unlink()
    stale = tmp / f".{project.name}.abcd1234.tmp"
    stale.symlink_to(victim)
    doc.save()  # the clean-up of leftover temporary files must not follow or remove the link
    if not stale.is_symlink():
        return "a symlink named like our temporary file was removed or replaced"
    return problem or ph.untouched(victim)


def run_record_symlink(tmp: Path) -> str | None:
    project, victim = ph.project(tmp), ph.victim(tmp)
    (tmp / "out.run.json").symlink_to(victim)
    problem = ph.clean_error(ph.vpp("export", str(project), "--out", str(tmp / "out.json")), "out.run.json")
    if (tmp / "out.json").exists():
        return "the export was written although its run record's place is a link"
    return problem or ph.untouched(victim)


def fifo_in_output_places(tmp: Path) -> str | None:
    """A named pipe as a run record, a shard-like atomic write target, a project: refused, nothing hangs."""
    project = ph.project(tmp)
    os.mkfifo(tmp / "out.run.json")
    os.mkfifo(tmp / "shard.json")
    os.mkfifo(tmp / "fifo.vppproj")
    code = f"""
import sys; sys.path.insert(0, {str(ph.ROOT)!r})
from pathlib import Path
from core.atomic import atomic_write_bytes
from core.app.document import Document
from core.errors import DataError
tmp = Path({str(tmp)!r})
for what, fn in [("shard", lambda: atomic_write_bytes(tmp / "shard.json", b"{{}}")),
                 ("project save", lambda: Document.load({str(project)!r}).save(tmp / "fifo.vppproj")),
                 ("project load", lambda: Document.load(tmp / "fifo.vppproj"))]:
    try:
        fn()
        print(what, "ACCEPTED")
    except DataError as exc:
        print(what, "refused", "pipe" in str(exc))
"""
    proc = ph.run(code, timeout=60)
    if isinstance(proc, str):
        return proc
    if proc.returncode != 0 or proc.stdout.count("refused True") != 3:
        return f"not refused clearly: {proc.stdout} {proc.stderr[-800:]}"
    return ph.clean_error(ph.vpp("export", str(project), "--out", str(tmp / "out.json")), "out.run.json")


# -- 4. two processes on one project ------------------------------------------------------------------
def second_opener_save_as_only(tmp: Path) -> str | None:
    project = ph.project(tmp)
    code = f"""
import sys; sys.path.insert(0, {str(ph.ROOT)!r})
from core.app.document import Document
doc = Document.load({str(project)!r})
assert doc.claim() is None
doc.start_journal({str(tmp / "data1")!r})
print("ready", flush=True)
sys.stdin.read()
"""
    first = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if first.stdout.readline().strip() != "ready":
            return "the first process did not start"
        doc = Document.load(project)
        if doc.claim() is None or not doc.read_only:
            return "the second opener was not told the project is open elsewhere"
        doc.accept([1])
        before = project.read_bytes()
        problem = ph.refused(doc.save, "another VPP Studio window", "Save As")
        if project.read_bytes() != before:
            return "the second opener saved over the first one's project"
        other = doc.save(tmp / "mine.vppproj")
        if Document.load(other).track(1).review != "accepted":
            return "Save As of the second opener lost its edit"
        return problem
    finally:
        first.stdin.close()
        first.wait(timeout=30)


def save_refuses_a_project_changed_on_disk(tmp: Path) -> str | None:
    project = ph.project(tmp)
    mine = Document.load(project)
    theirs = Document.load(project)
    theirs.reject([2])
    theirs.save()
    changed = project.read_bytes()
    mine.accept([1])
    problem = ph.refused(mine.save, "changed on disk", "Save As")
    return problem or (None if project.read_bytes() == changed else "the other program's save was overwritten")


# -- 14: temporary files a kill left ------------------------------------------------------------------
def leftover_temps_removed(tmp: Path) -> str | None:
    import fcntl

    project = ph.project(tmp)
    stale = [tmp / f".{project.name}.{s}.tmp" for s in ("abcd1234", "zz_9yy8x")]
    for s in stale:
        s.write_text("half a project")
    live = tmp / f".{project.name}.live0000.tmp"
    fd = os.open(live, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a save in progress in another process
    other = tmp / ".notes.txt.abcd1234.tmp"
    other.write_text("someone else's")
    try:
        doc = Document.load(project)
        doc.accept([1])
        doc.save()
    finally:
        os.close(fd)
    if any(s.exists() for s in stale):
        return "temporary files a killed save left are still there"
    if not live.exists() or not other.exists():
        return "a live save's temporary file, or another file's, was removed"
    return None


def cases() -> list[tuple[str, Callable[[Path], str | None]]]:
    return [
        ('1 journal place is a symlink', journal_symlink),
        ('1 project is a symlink', project_symlink),
        ('1 lock and temp names are symlinks', lock_and_temp_symlinks),
        ('1 run record place is a symlink', run_record_symlink),
        ('1 pipes in output places', fifo_in_output_places),
        ('4 second opener is Save As only', second_opener_save_as_only),
        ('4 save refuses a project changed on disk', save_refuses_a_project_changed_on_disk),
        ('14 temporary files of killed saves', leftover_temps_removed),
    ]
