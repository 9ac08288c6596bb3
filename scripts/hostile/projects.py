"""Hostile projects, journals and files in the places VPP Studio writes beside a person's files.

Each check builds one hostile input under its temp folder and runs the project's code on it: in this
process where nothing can hang, else in a subprocess with a timeout (and RLIMIT_AS for memory). The
rules checked are the README's "Projects and recovery" and "Output rules": nothing written through a
link or into a pipe / device, a journal holding edits never truncated, a second opener may not save
over the first, what is saved reopens, foreign journals refused whole, numbers finite, sizes bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.data.rle import encode_mask  # noqa: E402
from core.document import ClipInfo, Document, journal_path_for  # noqa: E402
from core.errors import DataError  # noqa: E402

T, H, W = 4, 24, 32
VICTIM = "root:x:0:0:root:/root:/bin/bash\n" * 20


def _rect(y0, x0, y1, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _doc(path: str = "/clips/probe") -> Document:
    doc = Document(ClipInfo(path, T, H, W, tuple(f"{i:05d}.jpg" for i in range(T))), categories={1: "a", 2: "b"})
    doc.add_tracks([(1, 0.9, {f: encode_mask(_rect(1, 1, 8, 9 + f)) for f in range(T)}),
                    (2, 0.5, {0: encode_mask(_rect(10, 10, 20, 20))})])
    return doc


def _project(tmp: Path, name: str = "p.vppproj", clip: str = "/clips/probe") -> Path:
    doc = _doc(clip)
    return doc.save(tmp / name)


def _victim(tmp: Path) -> Path:
    v = tmp / "victim.txt"
    v.write_text(VICTIM)
    return v


def _crashed_journal(project: Path) -> tuple[Path, bytes]:
    """A journal beside ``project`` holding one edit, left unlocked (its process died)."""
    doc = Document.load(project)
    path = doc.start_journal()
    doc.accept([1])
    doc.stop_journal(delete=False)
    return path, path.read_bytes()


def _run(code: str, timeout: float = 60, mem_gb: float | None = None, cwd: Path | None = None,
         env: dict | None = None) -> subprocess.CompletedProcess | str:
    """Run ``code`` in a fresh Python; a string when it hung or was killed."""
    def limit():  # pragma: no cover - in the child
        if mem_gb is not None:
            import resource

            n = int(mem_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (n, n))

    if mem_gb is not None:  # thread pools reserve address space per thread: one thread each
        env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    try:
        return subprocess.run([sys.executable, "-c", code], cwd=cwd or ROOT, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return f"hung: no answer within {timeout} s"


def _vpp(*args: str, timeout: float = 60, mem_gb: float | None = None) -> subprocess.CompletedProcess | str:
    """``vpp ARGS`` through the real ``core.cli.main``, with only the command run registered (so torch,
    which only other commands import, is not loaded: the probe stays fast and memory limits tight)."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import core.cli as cli; cli.COMMANDS = ({args[0]!r},); "
            f"sys.exit(cli.main({list(args)!r}))")
    return _run(code, timeout=timeout, mem_gb=mem_gb)


def _clean_error(proc, *needles: str) -> str | None:
    """None when ``proc`` failed with one ``error:`` line (no traceback) naming every needle."""
    if isinstance(proc, str):
        return proc
    if proc.returncode == 0:
        return f"exit 0 (expected a refusal): {proc.stdout[-500:]}"
    if "Traceback" in proc.stderr:
        return "traceback instead of a clear error:\n" + proc.stderr[-1500:]
    missing = [n for n in needles if n not in proc.stderr]
    return f"the error does not name {missing}: {proc.stderr[-600:]}" if missing else None


def _refused(fn: Callable[[], object], *needles: str) -> str | None:
    """None when ``fn`` raises DataError naming every needle."""
    try:
        fn()
    except DataError as exc:
        missing = [n for n in needles if n not in str(exc)]
        return f"refused, but the message does not name {missing}: {exc}" if missing else None
    except Exception as exc:  # any other exception is the failure reported
        return f"{type(exc).__name__} instead of a clear DataError: {exc}"
    return "accepted (expected a clear refusal)"


def _loader(project: Path) -> Callable[[], Document]:
    return lambda: Document.load(project)


def _untouched(victim: Path) -> str | None:
    return None if victim.read_text() == VICTIM else f"{victim} was written through a link"


# -- 1. links, pipes and devices where we write ----------------------------------------------------
def journal_symlink(tmp: Path) -> str | None:
    project, victim = _project(tmp), _victim(tmp)
    journal = journal_path_for(project)
    journal.symlink_to(victim)
    from core.document import find_recoverable

    found = find_recoverable(tmp / "data", projects=[project])  # "cannot recover" first, then open it
    if not found or found[0].problem is None:
        return "a symlink in the journal's place was not reported as a problem"
    doc = Document.load(project)
    problem = _refused(doc.start_journal, str(journal), "symbolic link")  # no data folder: refused
    doc.start_journal(tmp / "data")  # with one: journalled there instead
    doc.accept([2])
    doc.stop_journal(delete=True)
    if not journal.is_symlink():
        return "the link in the journal's place was replaced"
    return problem or _untouched(victim)


def project_symlink(tmp: Path) -> str | None:
    real = _project(tmp, "real.vppproj")
    before = real.read_bytes()
    link = tmp / "p.vppproj"
    link.symlink_to(real)
    doc = Document.load(link)
    doc.accept([1])
    problem = _refused(doc.save, "symbolic link")
    if real.read_bytes() != before or not link.is_symlink():
        return "a save went through the project's symlink"
    return problem


def lock_and_temp_symlinks(tmp: Path) -> str | None:
    project, victim = _project(tmp), _victim(tmp)
    lock = tmp / f".{project.name}.lock"
    lock.symlink_to(victim)
    doc = Document.load(project)
    doc.accept([1])
    problem = _refused(doc.save, "symbolic link")
    lock.unlink()
    stale = tmp / f".{project.name}.abcd1234.tmp"
    stale.symlink_to(victim)
    doc.save()  # the clean-up of leftover temporary files must not follow or remove the link
    if not stale.is_symlink():
        return "a symlink named like our temporary file was removed or replaced"
    return problem or _untouched(victim)


def run_record_symlink(tmp: Path) -> str | None:
    project, victim = _project(tmp), _victim(tmp)
    (tmp / "out.run.json").symlink_to(victim)
    problem = _clean_error(_vpp("export", str(project), "--out", str(tmp / "out.json")), "out.run.json")
    if (tmp / "out.json").exists():
        return "the export was written although its run record's place is a link"
    return problem or _untouched(victim)


def fifo_in_output_places(tmp: Path) -> str | None:
    """A named pipe as a run record, a shard-like atomic write target, a project: refused, nothing hangs."""
    project = _project(tmp)
    os.mkfifo(tmp / "out.run.json")
    os.mkfifo(tmp / "shard.json")
    os.mkfifo(tmp / "fifo.vppproj")
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from core.atomic import atomic_write_bytes
from core.document import Document
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
    proc = _run(code, timeout=60)
    if isinstance(proc, str):
        return proc
    if proc.returncode != 0 or proc.stdout.count("refused True") != 3:
        return f"not refused clearly: {proc.stdout} {proc.stderr[-800:]}"
    return _clean_error(_vpp("export", str(project), "--out", str(tmp / "out.json")), "out.run.json")


# -- 3. a crash journal is never destroyed by opening its project ------------------------------------
def journal_kept_when_opened(tmp: Path) -> str | None:
    project = _project(tmp)
    journal, before = _crashed_journal(project)
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
    from core.document import find_recoverable

    project = _project(tmp)
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
    for i in range(T):
        cv2.imwrite(str(clip / f"{i:05d}.jpg"), np.full((H, W, 3), 40 * i, np.uint8))
    doc = Document(ClipInfo.open(clip), categories={1: "a"})
    doc.add_tracks([(1, 0.9, {0: encode_mask(_rect(1, 1, 8, 9))})])
    project = doc.save(tmp / "p.vppproj")
    journal, before = _crashed_journal(project)
    code = f"""
import sys, json; sys.path.insert(0, {str(ROOT)!r})
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
    proc = _run(code, timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp)})
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


# -- 4. two processes on one project ------------------------------------------------------------------
def second_opener_save_as_only(tmp: Path) -> str | None:
    project = _project(tmp)
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from core.document import Document
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
        problem = _refused(doc.save, "another VPP Studio window", "Save As")
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
    project = _project(tmp)
    mine = Document.load(project)
    theirs = Document.load(project)
    theirs.reject([2])
    theirs.save()
    changed = project.read_bytes()
    mine.accept([1])
    problem = _refused(mine.save, "changed on disk", "Save As")
    return problem or (None if project.read_bytes() == changed else "the other program's save was overwritten")


# -- 5. what is saved opens again ----------------------------------------------------------------------
def ids_at_the_limit(tmp: Path) -> str | None:
    for declared in (2**31 - 1, 2**31, 2**40):
        project = _project(tmp, f"ids{declared}.vppproj")
        data = json.loads(project.read_text())
        data["next_track_id"] = declared
        project.write_text(json.dumps(data))
        try:
            doc = Document.load(project)
        except DataError:
            continue  # refused at load with a clear error: fine
        doc.create_track(0, _rect(0, 0, 3, 3), 1)
        doc.create_track(1, _rect(0, 0, 3, 3), 1)
        doc.split(1, 2)
        doc.save()
        try:
            Document.load(project)
        except DataError as exc:
            return f"next_track_id {declared}: the saved project does not open again: {exc}"
    return None


def journal_next_id_and_foreign_track_id(tmp: Path) -> str | None:
    from core.document.journal import encode_line

    project = _project(tmp)
    journal, _ = _crashed_journal(project)
    lines = journal.read_bytes().split(b"\n")[:-1]
    edit = json.loads(lines[1].partition(b" ")[2])
    big = dict(edit, next_id=2**31 + 5)
    journal.write_bytes(b"\n".join(lines) + b"\n" + encode_line(big))
    doc = Document.recover(journal)
    doc.create_track(0, _rect(0, 0, 3, 3), 1)
    doc.create_track(0, _rect(5, 5, 8, 8), 2)
    out = doc.save(tmp / "after.vppproj")
    try:
        Document.load(out)
    except DataError as exc:
        return f"a journal next_id past 2**31-1: the saved project does not open again: {exc}"
    # an edit whose change names track 1 but holds track 2: refused, not saved into a broken project
    full = json.loads(lines[1].partition(b" ")[2])
    full["changes"][0]["after"] = {"full": {**json.loads(json.dumps(_track_json(project, 2))), "review": "accepted"}}
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


def _track_json(project: Path, tid: int) -> dict:
    return next(t for t in json.loads(project.read_text())["tracks"] if t["id"] == tid)


# -- 6. foreign journals --------------------------------------------------------------------------------
def foreign_journals_refused_by_export(tmp: Path) -> str | None:
    project = _project(tmp)
    journal = journal_path_for(project)
    other = _doc("/clips/another")  # a journal of another clip, never saved
    j = other.start_journal(tmp / "data")
    other.accept([1])
    other.stop_journal(delete=False)
    os.replace(j, journal)
    problem = _clean_error(_vpp("export", str(project), "--recover", "--out", str(tmp / "a.json")), journal.name)
    if problem or (tmp / "a.json").exists():
        return f"a journal of another clip: {problem or 'exported'}"
    q = _project(tmp, "q.vppproj")  # a journal whose base is another project
    qj, _ = _crashed_journal(q)
    os.replace(qj, journal)
    problem = _clean_error(_vpp("export", str(project), "--recover", "--out", str(tmp / "b.json")), "q.vppproj")
    if problem or (tmp / "b.json").exists():
        return f"a journal of another project: {problem or 'exported'}"
    return None


# -- 7, 12, 14: values a reader must refuse ------------------------------------------------------------
def _edited(tmp: Path, name: str, change: Callable[[dict], None], raw: Callable[[str], str] | None = None) -> Path:
    project = _project(tmp, name)
    data = json.loads(project.read_text())
    change(data)
    text = json.dumps(data)
    project.write_text(raw(text) if raw else text)
    return project


def non_finite_anywhere(tmp: Path) -> str | None:
    cases = {
        "extra": (lambda d: d.update(extra_key={"deep": [1, "NAN_HERE"]}), "extra_key.deep[1]"),
        "run": (lambda d: d.update(run={"model": "m", "pkr": "NAN_HERE"}), "run.pkr"),
        "score": (lambda d: d["tracks"][0]["frames"]["0"].__setitem__(1, "NAN_HERE"), "tracks[0].frames.0[1]"),
        "category": (lambda d: d["categories"][0].__setitem__(0, "NAN_HERE"), "categories[0][0]"),
    }
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        for name, (change, key) in cases.items():
            project = _edited(tmp, f"{name}.vppproj", change, lambda t, x=token: t.replace('"NAN_HERE"', x))
            problem = _refused(_loader(project), project.name, key)
            if problem:
                return f"{token} in {name}: {problem}"
    return None


def _line(text: str) -> bytes:
    raw = text.encode()
    return b"%08x " % zlib.crc32(raw) + raw + b"\n"


def journal_infinite_ids(tmp: Path) -> str | None:
    project = _project(tmp)
    journal, _ = _crashed_journal(project)
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
        journal.write_bytes(_line(head) + _line(body))
        problem = _refused(lambda: Document.recover(journal), journal.name)
        if problem:
            return f"{what} {body[-60:] if what != 'category id' else head[:80]}: {problem}"
    return None


def view_of_the_wrong_type(tmp: Path) -> str | None:
    for i, view in enumerate([{"hidden": 5}, {"hidden": "12"}, {"hidden": {"1": 2}}, {"hidden": [[1]]},
                              {"solo": [1]}, {"solo": {"a": 1}}, {"solo": "1"}, {"solo": 1.5}, [1, 2], "x"]):
        project = _edited(tmp, f"v{i}.vppproj", lambda d, v=view: d.update(view=v))
        problem = _refused(_loader(project), project.name, "view")
        if problem:
            return f"view {view!r}: {problem}"
        if i < 2:
            problem = _clean_error(_vpp("export", str(project), "--out", str(tmp / f"v{i}.json")), "view")
        if problem:
            return f"export of view {view!r}: {problem}"
    return None


def run_values_and_scores(tmp: Path) -> str | None:
    bad = [("run", {"model_sha256": 42}), ("run", {"pkr": "0.4"}), ("run", {"model": ["x"]}), ("run", [1]),
           ("run", {"threshold": 7}), ("version", True)]
    for i, (key, value) in enumerate(bad):
        project = _edited(tmp, f"r{i}.vppproj", lambda d, k=key, v=value: d.update({k: v}))
        problem = _refused(_loader(project), project.name)
        if problem:
            return f"{key}: {value!r}: {problem}"
    for i, score in enumerate((-5, 1e308, 1.5)):
        project = _edited(tmp, f"s{i}.vppproj", lambda d, s=score: d["tracks"][0]["frames"]["0"].__setitem__(1, s))
        problem = _refused(_loader(project), project.name, "score")
        if problem:
            return f"score {score}: {problem}"
    return None


def run_record_never_nan_nor_a_foreign_hash(tmp: Path) -> str | None:
    """A NaN PKR in memory is written as null; settings / run naming /etc/shadow, a pipe or a plain file
    are recorded without being read (a subprocess: reading the pipe would hang)."""
    secret = tmp / "secret.txt"
    secret.write_text("not a model")
    fifo = tmp / "model.safetensors"
    os.mkfifo(fifo)
    for i, model in enumerate(["/etc/shadow", str(secret), str(fifo)]):
        out = tmp / f"o{i}.json"
        code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
import projects
doc = projects._doc()
doc.settings = doc.settings.replace(model_kind="file", model_path={model!r})
doc.run = {{"model": {model!r}, "pkr": float("nan")}} if {i} else None
doc.export(ytvis={str(out)!r})
"""
        proc = _run(code, timeout=30)
        if isinstance(proc, str):
            return f"export with model {model}: {proc}"
        if proc.returncode != 0:
            return f"export with model {model} failed: {proc.stderr[-800:]}"
        text = (tmp / f"o{i}.run.json").read_text()
        if "NaN" in text:
            return "a bare NaN was written into the run record"
        if json.loads(text).get("model_sha256"):
            return f"the export hashed {model} into its run record"
    return None


def version_true(tmp: Path) -> str | None:
    project = _edited(tmp, "v.vppproj", lambda d: d.update(version=True))
    return _refused(_loader(project), "version")


# -- 11, 13: hangs and memory --------------------------------------------------------------------------
def fifo_journal_at_open(tmp: Path) -> str | None:
    project = _project(tmp)
    os.mkfifo(journal_path_for(project))
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from core.document import Document, find_recoverable
from core.document.journal import unsaved_edits, recovery_candidate, journal_path_for
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
    proc = _run(code, timeout=60)
    if isinstance(proc, str):
        return proc
    if proc.stdout.strip() != "ok":
        return f"failed: {proc.stderr[-1000:]}"
    if not os.path.exists(journal_path_for(project)) or not __import__("stat").S_ISFIFO(
            os.lstat(journal_path_for(project)).st_mode):
        return "the pipe in the journal's place was replaced"
    for args in (["export", str(project), "--out", str(tmp / "o.json")],):
        proc = _vpp(*args, timeout=60)
        if isinstance(proc, str):
            return f"vpp export: {proc}"
        if proc.returncode != 0:
            return f"vpp export failed: {proc.stderr[-600:]}"
    return _clean_error(_vpp("export", str(project), "--recover", "--out", str(tmp / "r.json")), "pipe")


def a_million_empty_tracks(tmp: Path) -> str | None:
    project = _project(tmp)
    data = json.loads(project.read_text())
    tracks = ",".join(f'{{"id":{i},"category_id":1,"frames":{{}}}}' for i in range(1, 10**6 + 1))
    text = json.dumps({**data, "tracks": []}).replace('"tracks": []', f'"tracks": [{tracks}]')
    project.write_text(text)
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from core.document import Document
from core.errors import DataError
try:
    Document.load({str(project)!r})
    print("ACCEPTED")
except DataError as exc:
    print("refused", exc)
"""
    proc = _run(code, timeout=60, mem_gb=1.5)
    if isinstance(proc, str):
        return proc
    return None if proc.stdout.startswith("refused") and "tracks" in proc.stdout else \
        f"not refused: {proc.stdout[-300:]} {proc.stderr[-600:]}"


def tiny_project_declaring_a_million_frames(tmp: Path) -> str | None:
    for n in (2**20 - 1,):
        project = tmp / f"big{n}.vppproj"
        clip = {"path": "/nonexistent/clip", "num_frames": n, "height": 480, "width": 854}
        project.write_text(json.dumps({"format": "vpp-studio-project", "version": 1, "clip": clip, "settings": {},
                                       "categories": [[1, "a"]], "tracks": []}))
        # the export command maps 0.4 GB; the code before issue 25 needed 2 GB more for this file
        proc = _vpp("export", str(project), "--out", str(tmp / f"o{n}.json"), timeout=60, mem_gb=1.0)
        problem = _clean_error(proc, project.name, "frame")
        if problem:
            return f"{project.stat().st_size}-byte project declaring {n} frames: {problem}"
    return None


# -- 12: many tracks on the frame shown ----------------------------------------------------------------
def many_instances_on_one_frame(tmp: Path) -> str | None:
    from vpp_gui import overlay

    h, w = 60, 75
    doc = Document(ClipInfo("/clips/many", 1, h, w, ("0.jpg",)), categories={1: "a"})
    tracks = []
    for k in range(300):  # 300 small squares side by side, none overlapping
        m = np.zeros((h, w), bool)
        m[3 * (k // 25):3 * (k // 25) + 2, 3 * (k % 25):3 * (k % 25) + 2] = True
        tracks.append((1, (k % 97) / 97, {0: encode_mask(m)}))
    doc.add_tracks(tracks)
    frame = doc.view_frame(0)
    layers = overlay.render_layers(frame, heatmap=False)
    if layers.masks is None or layers.contours is None:
        return "no masks drawn"
    shown = {tuple(c) for c in layers.masks.reshape(-1, 4)[:, :3].tolist()}
    return None if len(shown) > 200 else f"only {len(shown)} colours drawn for 300 tracks"


# -- 14: temporary files a kill left ------------------------------------------------------------------
def leftover_temps_removed(tmp: Path) -> str | None:
    import fcntl

    project = _project(tmp)
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
        ("1 journal place is a symlink", journal_symlink),
        ("1 project is a symlink", project_symlink),
        ("1 lock and temp names are symlinks", lock_and_temp_symlinks),
        ("1 run record place is a symlink", run_record_symlink),
        ("1 pipes in output places", fifo_in_output_places),
        ("3 crash journal kept when the project opens", journal_kept_when_opened),
        ("3 snapshot / label journals are not idle", snapshot_and_label_journals_kept),
        ("3 vpp-gui --project offers recovery, No keeps it", gui_project_offers_recovery),
        ("4 second opener is Save As only", second_opener_save_as_only),
        ("4 save refuses a project changed on disk", save_refuses_a_project_changed_on_disk),
        ("5 track ids at 2**31-1", ids_at_the_limit),
        ("5 journal next_id and a change naming another track", journal_next_id_and_foreign_track_id),
        ("6 export --recover refuses foreign journals", foreign_journals_refused_by_export),
        ("7 NaN / Infinity anywhere in a project", non_finite_anywhere),
        ("12 journal ids / category ids Infinity", journal_infinite_ids),
        ("12 view of the wrong type", view_of_the_wrong_type),
        ("12 300 tracks on one frame draw", many_instances_on_one_frame),
        ("14 run values and scores checked", run_values_and_scores),
        ("14 version true", version_true),
        ("14 run record: no NaN, no foreign hash", run_record_never_nan_nor_a_foreign_hash),
        ("14 temporary files of killed saves", leftover_temps_removed),
        ("11 FIFO journal at open", fifo_journal_at_open),
        ("11 a million empty tracks", a_million_empty_tracks),
        ("13 a tiny project declaring 2**20 frames", tiny_project_declaring_a_million_frames),
    ]
