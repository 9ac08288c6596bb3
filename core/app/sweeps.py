"""The app's PKR sweep: the PKRs a person types, one sweep run (model loaded as the app loads it), saving it.

:func:`run_sweep` runs on the sweep panel's worker thread; it is :func:`core.sweep.sweep` (the code of
``vpp sweep``) after loading the model through the app's model factory. Qt-free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from core.pkr import PKR_RANGE, is_pkr


def default_pkrs_text() -> str:
    """The PKRs a sweep starts with (``vpp sweep``'s default), as the panel shows them: "1.0, 0.7, ..."."""
    from core.sweep import DEFAULT_PKRS

    return ", ".join(str(p) for p in DEFAULT_PKRS)


def parse_pkrs(text: str) -> list[float]:
    """"1.0, 0.7 0.4" -> [1.0, 0.7, 0.4]; raises ValueError naming a bad entry."""
    values = []
    for part in text.replace(",", " ").split():
        try:
            v = float(part)
        except ValueError:
            raise ValueError(f"PKR {part!r} is not a number") from None
        if not is_pkr(v):
            raise ValueError(f"PKR {part} is outside {PKR_RANGE}")
        values.append(v)
    if not values:
        raise ValueError("give at least one PKR, e.g. 1.0, 0.4")
    return values


def run_sweep(factory, spec, device: str, clip: str, gt: str, pkrs: list[float], random_baseline: bool,
              threshold: float | None, stop: threading.Event, progress: Callable[[int, int], object],
              done: threading.Event):
    """Load the model (``factory(spec, device)``), then sweep ``clip`` against ``gt``; ``done`` is set at the end
    whatever happens. A ``stop`` set before the sweep starts, or during it, raises :class:`core.sweep.Cancelled`."""
    from core.sweep import Cancelled, sweep

    try:
        model = factory(spec, device)
        if stop.is_set():
            raise Cancelled("sweep cancelled before it started")
        return sweep(clip, gt, model=model, pkrs=pkrs, random_baseline=random_baseline, device=device,
                     progress=progress, stop=stop.is_set, score_threshold=threshold)
    finally:
        done.set()


def was_cancelled(exc: BaseException) -> bool:
    """Whether a sweep ended because it was cancelled (no result, and no error to show)."""
    from core.sweep import Cancelled

    return isinstance(exc, Cancelled)


def save_sweep(result, path: str | Path, kind: str) -> None:
    """Write a :class:`core.sweep.SweepResult` to ``path`` as "csv" or "json" (atomically: all or nothing)."""
    from core.atomic import atomic_write_text

    atomic_write_text(Path(path), result.to_csv() if kind == "csv" else result.to_json())
