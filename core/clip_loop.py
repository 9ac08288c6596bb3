"""The one loop over a clip's frames: every driver (``vpp infer``, batch inference, the sweep, the model
card, the app's passes, the benchmark) runs a session through :func:`run_clip`.

    count = run_clip(frames, session, lambda index, result: clip.add(CompactFrame.from_result(result, index)))

``frames`` is any iterable of frames (arrays, or what ``session.resize`` made of them on a reader thread);
``session`` anything that satisfies :class:`Session` (:class:`core.session.InferenceSession` for our models,
:class:`core.release_session.ReleaseSession` for the authors' released ones); ``sink`` receives each frame's
result with its index. ``before(index)`` runs before each frame (a thread governor's tick, a preview the
app asked for); ``stop()`` returning True ends the run early, before the next frame is run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Session(Protocol):
    """What every session offers, whatever family its model is of."""

    pkr: float
    input_long_side: int
    patch: int

    @property
    def mode(self) -> str: ...

    def reset(self) -> None: ...

    def set_pkr(self, pkr: float) -> None: ...

    def step(self, frame: Any) -> Any: ...


def run_clip(frames: Iterable[Any], session: Session, sink: Callable[[int, Any], object], *,
             stop: Callable[[], bool] | None = None, before: Callable[[int], object] | None = None,
             reset: bool = True) -> int:
    """Run ``session`` over ``frames`` in order, handing each result to ``sink(index, result)``.

    Returns the number of frames run. ``reset`` (default): start a new clip (no previous frame), else
    continue from the session's state.
    """
    if reset:
        session.reset()
    count = 0
    for index, frame in enumerate(frames):
        if stop is not None and stop():
            break
        if before is not None:
            before(index)
        sink(index, session.step(frame))
        count += 1
    return count
