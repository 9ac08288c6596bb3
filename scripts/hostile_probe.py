#!/usr/bin/env python
"""Run the hostile-input probe: every case in ``scripts/hostile/*.py`` against this checkout.

    python scripts/hostile_probe.py            # all areas
    python scripts/hostile_probe.py journals   # one area (a module name in scripts/hostile/)

Each module of ``scripts/hostile/`` defines ``cases()``: a list of ``(name, check)`` where
``check(tmp: pathlib.Path) -> str | None`` builds one hostile input under ``tmp``, feeds it to the
project's code (in-process or as a subprocess) and returns what went wrong (a traceback instead of a
clear error, a file written where it must not be, a hang, memory use out of bounds...) or None when the
input was handled as the README's "Output rules" and "Projects and recovery" say. Exit status 1 when
any case fails; ``tests/test_hostile_probe.py`` runs this in the suite.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent / "hostile"
sys.path.insert(0, str(HERE.parent.parent))


def load(area: str):
    spec = importlib.util.spec_from_file_location(f"hostile_{area}", HERE / f"{area}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    areas = argv or sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))
    failed = total = 0
    for area in areas:
        for name, check in load(area).cases():
            total += 1
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix=f"probe-{area}-") as tmp:
                try:
                    problem = check(Path(tmp))
                except Exception:  # a check that raises is a failed case, not a crashed probe
                    problem = "the check raised:\n" + traceback.format_exc(limit=6)
            verdict = "ok" if problem is None else "FAIL"
            print(f"[{verdict}] {area}: {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
            if problem is not None:
                failed += 1
                print("    " + str(problem).replace("\n", "\n    "), flush=True)
    print(f"{total - failed} of {total} hostile cases handled", flush=True)
    return 1 if failed or not total else 0


if __name__ == "__main__":
    raise SystemExit(main())
