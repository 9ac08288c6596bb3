"""Shared builders and verdicts of the project / journal probes (not an area: the runner skips ``_`` files).

Builders: a small document and its saved project, a victim file a link points at, a journal left by a
crash, a project file with one value changed, a journal line. Verdicts: a subprocess (timeout, memory
limit) and the ``vpp`` command line, a clean error or a clear :class:`DataError`, a victim left untouched.
``tests/test_project_safety.py`` builds its inputs with the same functions.
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

from core.app.document import ClipInfo, Document  # noqa: E402
from core.data.rle import encode_mask  # noqa: E402
from core.errors import DataError  # noqa: E402

T, H, W = 4, 24, 32
VICTIM = "root:x:0:0:root:/root:/bin/bash\n" * 20


# -- builders --------------------------------------------------------------------------------------------
def rect(y0, x0, y1, x1, h=H, w=W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def make_doc(clip: str = "/clips/probe") -> Document:
    """A document of a ``T``-frame clip (not on disk) with two imported tracks (1 on every frame, 2 on frame 0)."""
    doc = Document(ClipInfo(clip, T, H, W, tuple(f"{i:05d}.jpg" for i in range(T))), categories={1: "a", 2: "b"})
    doc.add_tracks([(1, 0.9, {f: encode_mask(rect(1, 1, 8, 9 + f)) for f in range(T)}),
                    (2, 0.5, {0: encode_mask(rect(10, 10, 20, 20))})])
    return doc


def project(tmp: Path, name: str = "p.vppproj", clip: str = "/clips/probe") -> Path:
    """:func:`make_doc` saved as ``tmp / name``."""
    return make_doc(clip).save(tmp / name)


def victim(tmp: Path) -> Path:
    """A file holding :data:`VICTIM`, for a link in one of the places we write to point at."""
    v = tmp / "victim.txt"
    v.write_text(VICTIM)
    return v


def crashed_journal(path: Path) -> tuple[Path, bytes]:
    """A journal beside the project ``path`` holding one edit (track 1 accepted), left unlocked (its
    process died); and its bytes."""
    doc = Document.load(path)
    j = doc.start_journal()
    doc.accept([1])
    doc.stop_journal(delete=False)
    return j, j.read_bytes()


def edited_project(tmp: Path, change: Callable[[dict], None], name: str = "p.vppproj",
                   raw: Callable[[str], str] | None = None) -> Path:
    """A :func:`project` whose JSON ``change`` edits (``raw``: then edits its text)."""
    p = project(tmp, name)
    data = json.loads(p.read_text())
    change(data)
    text = json.dumps(data)
    p.write_text(raw(text) if raw else text)
    return p


def line(text: str) -> bytes:
    """``text`` as one journal line (its CRC-32 first)."""
    raw = text.encode()
    return b"%08x " % zlib.crc32(raw) + raw + b"\n"


def track_json(project: Path, tid: int) -> dict:
    """Track ``tid`` as the project file holds it."""
    return next(t for t in json.loads(project.read_text())["tracks"] if t["id"] == tid)


# -- running and verdicts --------------------------------------------------------------------------------
def run(code: str, timeout: float = 60, mem_gb: float | None = None, cwd: Path | None = None,
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


def vpp(*args: str, timeout: float = 60, mem_gb: float | None = None) -> subprocess.CompletedProcess | str:
    """``vpp ARGS`` through the real ``core.cli.main``, with only the command run registered (so torch,
    which only other commands import, is not loaded: the probe stays fast and memory limits tight)."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import core.cli as cli; cli.COMMANDS = ({args[0]!r},); "
            f"sys.exit(cli.main({list(args)!r}))")
    return run(code, timeout=timeout, mem_gb=mem_gb)


def clean_error(proc, *needles: str) -> str | None:
    """None when ``proc`` failed with one ``error:`` line (no traceback) naming every needle."""
    if isinstance(proc, str):
        return proc
    if proc.returncode == 0:
        return f"exit 0 (expected a refusal): {proc.stdout[-500:]}"
    if "Traceback" in proc.stderr:
        return "traceback instead of a clear error:\n" + proc.stderr[-1500:]
    missing = [n for n in needles if n not in proc.stderr]
    return f"the error does not name {missing}: {proc.stderr[-600:]}" if missing else None


def refused(fn: Callable[[], object], *needles: str) -> str | None:
    """None when ``fn`` raises DataError naming every needle."""
    try:
        fn()
    except DataError as exc:
        missing = [n for n in needles if n not in str(exc)]
        return f"refused, but the message does not name {missing}: {exc}" if missing else None
    except Exception as exc:  # any other exception is the failure reported
        return f"{type(exc).__name__} instead of a clear DataError: {exc}"
    return "accepted (expected a clear refusal)"


def loader(project: Path) -> Callable[[], Document]:
    return lambda: Document.load(project)


def untouched(victim: Path) -> str | None:
    return None if victim.read_text() == VICTIM else f"{victim} was written through a link"
