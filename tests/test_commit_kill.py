"""A multi-file export killed (SIGKILL) before any file operation of its commit: after one recovery the
folder holds the complete old outputs or the complete new ones, and none of our temporary names.

A child process (``subprocess.Popen([sys.executable, "-c", SERVER])``, run from the repository root)
imports the export door once, then for each request forks a worker that counts every file operation on
one of our ``.vpp-commit.`` names (os.open, mkdir, chmod, link, rename, replace, unlink, rmdir,
shutil.rmtree) and SIGKILLs itself right before the k-th one. The test recovers in this process with
:func:`core.export.recover_exports` (what ``export_results`` and ``vpp infer`` do first) and compares
every file with a reference export of each set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.export import recover_exports

REPO = Path(__file__).resolve().parents[1]

EXPORT_SRC = r'''
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from core.export import RunRecord, VideoExport, export_results
from core.results import ClipResults, CompactFrame

N, H, W = 3, 16, 24


def make_clip(gen):
    rng = np.random.default_rng(sum(map(ord, gen)))
    clip = ClipResults(N, H, W)
    for t in range(N):
        masks = rng.random((2, H, W)) < 0.3
        clip.add(CompactFrame.from_result(SimpleNamespace(
            index=t, track_ids=np.array([1, 2]), category_ids=np.array([1, 2]),
            scores=np.array([0.9, 0.4], np.float32), masks=masks, kept=np.ones((1, 2, 2), bool),
            stage_names=("Map-SM",), keep_ratio=1.0, gflops=0.0, ms=0.0)))
    return clip


def outputs(folder, layout):
    folder = Path(folder)
    files, masks = (folder, folder) if layout == "one" else (folder / "a", folder / "b")
    return {"ytvis": files / "r.json", "zip": files / "r.zip", "davis": masks / "masks"}


def export(folder, gen, layout):
    for p in outputs(folder, layout).values():
        p.parent.mkdir(parents=True, exist_ok=True)
    video = VideoExport(1, "clip", tuple(f"{t:05d}.jpg" for t in range(N)), make_clip(gen))
    record = RunRecord("kill test", "model", created="2000-01-01T00:00:00+00:00", extra={"gen": gen})
    return export_results([video], outputs(folder, layout), record=record)
'''

SERVER = EXPORT_SRC + r'''
import shutil
import signal
import sys

OPS = (os, "open"), (os, "mkdir"), (os, "chmod"), (os, "link"), (os, "rename"), (os, "replace"), \
      (os, "unlink"), (os, "rmdir"), (shutil, "rmtree")


def arm(kill_at, fail_zip):
    count = [0]

    def ours(a):
        return isinstance(a, (str, os.PathLike)) and os.path.basename(os.fspath(a)).startswith(".vpp-commit.")

    def wrap(mod, name):
        real = getattr(mod, name)

        def op(*args, **kwargs):
            if any(ours(a) for a in args[:2]):
                count[0] += 1
                if count[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                if fail_zip and name == "replace" and os.fspath(args[1]).endswith("r.zip"):
                    raise OSError(28, "No space left on device (injected)")
            return real(*args, **kwargs)

        setattr(mod, name, op)

    for mod, name in OPS:
        wrap(mod, name)
    return count


for line in sys.stdin:
    folder, gen, layout, kill_at, fail_zip = line.split()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        count = arm(int(kill_at), fail_zip == "1")
        try:
            export(folder, gen, layout)
            result = "ok"
        except OSError as exc:
            result = "error"
        sys.stdout.write(f"count {count[0]} {result}\n")
        sys.stdout.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    sys.stdout.write("killed\n" if killed else f"exited {os.waitstatus_to_exitcode(status)}\n")
    sys.stdout.flush()
'''

ns: dict = {}
exec(compile(EXPORT_SRC, "<export helpers>", "exec"), ns)  # the same helpers as the child's


@pytest.fixture(scope="module")
def server():
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, bufsize=1)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def _child(server, folder: Path, gen: str, layout: str, kill_at: int, fail_zip: bool = False):
    """Run the export in a forked child; returns (killed, operations counted, "ok"/"error"/None)."""
    server.stdin.write(f"{folder} {gen} {layout} {kill_at} {int(fail_zip)}\n")
    count = result = None
    while True:
        line = server.stdout.readline()
        assert line, "the child process died"
        if line.startswith("count "):
            _, n, result = line.split()
            count = int(n)
        elif line == "killed\n":
            return True, count, result
        else:
            assert line == "exited 0\n", line
            return False, count, result


BYSTANDERS = {"notes.txt": b"the user's notes", ".masks.old/keep.txt": b"a user's folder named like an old backup",
              ".r.json.old": b"a user's file named like an old backup"}
PLANTED = ".vpp-commit.0123456789abcdef.0.old"  # our pattern, but no manifest records it: not ours


def _folders(work: Path, layout: str) -> list[Path]:
    return sorted({p.parent for p in ns["outputs"](work, layout).values()})


def _add_bystanders(folder: Path) -> None:
    for rel, data in BYSTANDERS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / PLANTED).symlink_to("notes.txt")


def _check_bystanders(folder: Path) -> None:
    for rel, data in BYSTANDERS.items():
        assert (folder / rel).read_bytes() == data, rel
    assert os.readlink(folder / PLANTED) == "notes.txt"


def _bystander(p: Path) -> bool:
    return p.name in {"notes.txt", ".r.json.old", PLANTED} or ".masks.old" in p.parts


def _signature(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the bystanders -> its content (a zip: its results.json member)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if _bystander(p) or (p.is_dir() and not p.is_symlink()):
            continue
        rel = str(p.relative_to(folder))
        if p.suffix == ".zip":
            with zipfile.ZipFile(p) as zf:
                out[rel] = zf.read("results.json")
        else:
            out[rel] = p.read_bytes()
    return out


def _leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".vpp-commit.*") if p.name != PLANTED]


def _references(tmp_path: Path, layout: str) -> tuple[dict, dict]:
    sigs = []
    for gen in ("old", "new"):
        ref = tmp_path / f"ref_{gen}"
        ns["export"](ref, gen, layout)
        sigs.append(_signature(ref))
    old, new = sigs
    assert set(old) == set(new) and len(old) == 7  # r.json, r.zip, r.run.json, 3 PNGs, vpp_run.json
    assert all(old[k] != new[k] for k in old)
    return old, new


@pytest.mark.parametrize("layout", ["one", "two"])  # all outputs in one folder / files and masks in two folders
def test_a_kill_before_any_commit_operation_leaves_the_old_or_the_new_set(tmp_path, server, layout):
    old, new = _references(tmp_path, layout)
    probe = tmp_path / "full"
    ns["export"](probe, "old", layout)
    killed, n, result = _child(server, probe, "new", layout, 0)
    assert not killed and result == "ok" and _signature(probe) == new
    assert n >= 12, n  # manifest, staging, commit marker, link/rename per output, backups and manifest removed
    outcomes = []
    for k in range(1, n + 1):
        work = tmp_path / f"k{k}"
        shutil.copytree(tmp_path / "ref_old", work, symlinks=True)  # an older export, as ns["export"] wrote it
        for folder in _folders(work, layout):
            _add_bystanders(folder)
        killed, _, _ = _child(server, work, "new", layout, k)
        assert killed, k
        recover_exports(*ns["outputs"](work, layout).values())
        got = _signature(work)
        assert got in (old, new), (k, sorted(got))
        assert not _leftovers(work), k
        for folder in _folders(work, layout):
            _check_bystanders(folder)
        outcomes.append("new" if got == new else "old")
    first_new = outcomes.index("new")
    assert "old" in outcomes and outcomes == ["old"] * first_new + ["new"] * (n - first_new), outcomes


def test_a_kill_while_a_failed_commit_rolls_back_leaves_a_complete_set(tmp_path, server):
    """The zip cannot be renamed in (an injected ENOSPC): the commit rolls back. Killed before its rollback
    marker is down, recovery may still roll forward (every new output is staged); after it, always back."""
    old, new = _references(tmp_path, "one")
    probe = tmp_path / "full"
    ns["export"](probe, "old", "one")
    killed, n, result = _child(server, probe, "new", "one", 0, fail_zip=True)
    assert not killed and result == "error" and _signature(probe) == old  # the injected failure is rolled back
    assert not _leftovers(probe)
    outcomes = []
    for k in range(1, n + 1):
        work = tmp_path / f"k{k}"
        shutil.copytree(tmp_path / "ref_old", work, symlinks=True)
        killed, _, _ = _child(server, work, "new", "one", k, fail_zip=True)
        assert killed, k
        recover_exports(*ns["outputs"](work, "one").values())
        got = _signature(work)
        assert got in (old, new), k
        assert not _leftovers(work), k
        outcomes.append("new" if got == new else "old")
    a = outcomes.index("new")  # killed before the commit marker: old; between it and the rollback marker: new
    b = a + outcomes[a:].index("old")  # once the rollback marker is down: old
    assert outcomes == ["old"] * a + ["new"] * (b - a) + ["old"] * (n - b) and n - b >= 5, outcomes


def test_the_next_export_and_a_recovery_from_the_other_folder_finish_a_killed_commit(tmp_path, server):
    _, new = _references(tmp_path, "two")
    probe = tmp_path / "full"
    ns["export"](probe, "old", "two")
    _, n, _ = _child(server, probe, "new", "two", 0)
    # killed in the middle of the commit: the manifest copy beside the masks is enough to finish it
    work = tmp_path / "mid"
    ns["export"](work, "old", "two")
    assert _child(server, work, "new", "two", n - 6)[0]
    assert list((work / "a").glob(".vpp-commit.*.commit"))  # the commit marker is down
    notes = recover_exports(work / "b" / "masks")
    assert len(notes) == 1 and "finished an interrupted export" in notes[0]
    assert _signature(work) == new and not list(work.rglob(".vpp-commit.*"))
    # the next export into the folder recovers first, then writes its own set
    again = tmp_path / "again"
    ns["export"](again, "old", "one")
    assert _child(server, again, "new", "one", 8)[0]
    summary = ns["export"](again, "third", "one")
    assert not list(again.rglob(".vpp-commit.*"))
    assert json.loads((again / "r.run.json").read_text())["extra"] == {"gen": "third"}
    assert json.loads((again / "masks" / "vpp_run.json").read_text())["extra"] == {"gen": "third"}
    assert isinstance(summary.recovered, tuple)


def test_a_live_commit_is_left_alone_by_a_concurrent_recovery(tmp_path, monkeypatch):
    """The manifest stays locked while its process lives: another export's recovery does not touch it."""
    from core.multi_commit import MultiCommit

    seen = []
    real_commit = MultiCommit.commit

    def commit_after_a_recovery(self, replaceable=None):
        seen.append(recover_exports(tmp_path / "r.json"))  # as another process (or thread) would, mid-export
        assert list(tmp_path.glob(".vpp-commit.*.json")) and list(tmp_path.glob(".vpp-commit.*.new"))
        return real_commit(self, replaceable)

    monkeypatch.setattr(MultiCommit, "commit", commit_after_a_recovery)
    ns["export"](tmp_path, "old", "one")
    assert seen == [[]] and not list(tmp_path.glob(".vpp-commit.*"))
    assert json.loads((tmp_path / "r.run.json").read_text())["extra"] == {"gen": "old"}


def test_recovery_never_follows_a_symlink_or_touches_a_name_it_did_not_record(tmp_path):
    """A planted manifest naming a user's file, with a symlink as its 'staged' output, is left alone."""
    token = "fedcba9876543210"
    user = tmp_path / "precious.json"
    user.write_text("keep")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret").write_text("keep too")
    manifest = {"format": "vpp-commit", "version": 1, "token": token, "pid": 1, "folders": [str(tmp_path)],
                "entries": [{"final": str(user), "dir": False, "had_old": True},
                            {"final": str(tmp_path / "masks"), "dir": True, "had_old": False}]}
    (tmp_path / f".vpp-commit.{token}.json").write_text(json.dumps(manifest))
    (tmp_path / f".vpp-commit.{token}.commit").write_text("")
    (tmp_path / f".vpp-commit.{token}.0.new").symlink_to(elsewhere / "secret")
    (tmp_path / f".vpp-commit.{token}.1.new").symlink_to(elsewhere)
    notes = recover_exports(user)
    assert len(notes) == 1 and "symbolic link" in notes[0] and "left alone" in notes[0]
    assert user.read_text() == "keep" and (elsewhere / "secret").read_text() == "keep too"
    assert (tmp_path / f".vpp-commit.{token}.0.new").is_symlink() and not (tmp_path / "masks").exists()
    # a later export still works beside the leftover, and leaves it as it is
    summary = ns["export"](tmp_path / "out", "old", "one")
    assert summary.recovered == () and (tmp_path / f".vpp-commit.{token}.json").exists()
    if os.geteuid() == 0:  # a manifest planted by another user (here: nobody) is never acted on
        other = tmp_path / "shared"
        other.mkdir()
        victim = other / "victim.json"
        victim.write_text("keep")
        planted = dict(manifest, folders=[str(other)], entries=[{"final": str(victim), "dir": False,
                                                                 "had_old": False}])
        for name, text in ((f".vpp-commit.{token}.json", json.dumps(planted)), (f".vpp-commit.{token}.rollback", "")):
            (other / name).write_text(text)
            os.chown(other / name, 65534, 65534)
        assert recover_exports(victim) == [] and victim.read_text() == "keep"


def test_no_fixed_names_and_no_leftovers_after_replacing_an_export(tmp_path):
    ns["export"](tmp_path, "old", "one")
    _add_bystanders(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    ns["export"](tmp_path, "new", "one")
    assert {p.name for p in tmp_path.iterdir()} == before
    _check_bystanders(tmp_path)
    assert json.loads((tmp_path / "r.run.json").read_text())["extra"] == {"gen": "new"}
