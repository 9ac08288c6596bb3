"""The one loop over a clip's frames: every driver (``vpp infer``, batch inference, the sweep, the model
card, the app's passes, the benchmark) runs a session through :func:`run_clip`.

    count = run_clip(frames, session, lambda index, result: clip.add(CompactFrame.from_result(result, index)))

``frames`` is any iterable of frames (arrays, or what ``session.resize`` made of them on a reader thread);
``session`` anything that satisfies :class:`Session` (:class:`core.session.InferenceSession` for our models,
:class:`core.release_session.ReleaseSession` for the authors' released ones); ``sink`` receives each frame's
result with its index. ``before(index)`` runs before each frame (a thread governor's tick, a preview the
app asked for); ``stop()`` returning True ends the run early, before the next frame is run.

Several sessions over the same frames (the sweep's and the benchmark's configurations) run as one
:class:`Lockstep`: each frame goes through every session before the next frame is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Stepper(Protocol):
    """What :func:`run_clip` needs: ``reset()`` starts a new clip, ``step(frame)`` runs its next frame."""

    def reset(self) -> None: ...

    def step(self, frame: Any) -> Any: ...


@runtime_checkable
class Session(Stepper, Protocol):
    """What every session offers, whatever family its model is of."""

    pkr: float
    input_long_side: int
    patch: int

    @property
    def mode(self) -> str: ...

    def set_pkr(self, pkr: float) -> None: ...


class Lockstep:
    """Several steppers run as one over the same frames: :meth:`step` runs the frame through every one of them
    before the next frame is read and returns their results in list order.

    ``rotate``: the order starts one later at each frame (frame t starts with stepper ``t % n``), so no stepper
    always runs first. ``before(k)`` runs before stepper ``k`` steps (a stop check that raises), ``after(k,
    result)`` right after it (a progress count).
    """

    def __init__(self, steppers: Sequence[Stepper], *, rotate: bool = False,
                 before: Callable[[int], object] | None = None,
                 after: Callable[[int, Any], object] | None = None) -> None:
        self.steppers = list(steppers)
        self.rotate = rotate
        self.before = before
        self.after = after
        self._frame = 0

    def reset(self) -> None:
        """A new clip for every stepper, in list order."""
        for stepper in self.steppers:
            stepper.reset()
        self._frame = 0

    def step(self, frame: Any) -> list[Any]:
        n = len(self.steppers)
        results: list[Any] = [None] * n
        for j in range(n):
            k = (j + self._frame) % n if self.rotate else j
            if self.before is not None:
                self.before(k)
            results[k] = self.steppers[k].step(frame)
            if self.after is not None:
                self.after(k, results[k])
        self._frame += 1
        return results


def run_clip(frames: Iterable[Any], session: Stepper, sink: Callable[[int, Any], object], *,
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


def input_plan(source: Any, session: Any) -> tuple[tuple[int, int], Callable[[Any], Any]] | None:
    """How to read the frames of ``source`` (a :class:`core.data.sources.FrameSource`) for ``session``:
    ``(fit, prepare)``, or None.

    A session that says its input size (``input_size(width, height)`` and ``resize(frame, frame_hw=...)``: our
    models) wants each frame decoded at ``fit`` (``FrameSource.stream(fit=fit)`` or ``frame(i, fit=fit)``: a
    JPEG at its largest DCT reduction that still covers it) and made into its input by ``prepare`` (which
    keeps the frame's full size, so masks come back at full size). None: the session takes full frames (a
    released model's). ``vpp infer`` and the app's passes read through this, so they give the same results.
    """
    resize = getattr(session, "resize", None)
    input_size = getattr(session, "input_size", None)
    if resize is None or input_size is None:
        return None
    width, height = source.size
    fit = input_size(width, height)

    def prepare(frame: Any) -> Any:
        return resize(frame, frame_hw=(height, width))

    return fit, prepare
