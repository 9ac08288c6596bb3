"""What the app knows about the open clip's ground truth, Qt-free: the GT, the latest review and evaluation,
what is drawn (GT, predictions or both) and which background result is still wanted.

The app computes the review (:func:`core.app.review.review_tracks`) and the evaluation
(:func:`core.app.review.evaluate_entries`) off the UI thread. Each computation takes a *ticket* when it starts
(:meth:`ReviewState.begin`); when it ends, :meth:`ReviewState.finish` keeps its result only if no newer
computation of that kind started meanwhile and the GT is still the same one: a stale result is discarded::

    state = ReviewState()
    state.set_gt(gt)
    t1 = state.begin("eval"); t2 = state.begin("eval")   # an edit came in: t1 is now stale
    state.finish(t1, old_report, at=time.time())         # False: discarded
    state.finish(t2, report, at=time.time())             # True: state.report is report
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from core.app.review import ClipGroundTruth, EvaluationReport, Review

ViewMode = Literal["both", "gt", "pred"]
#: The order Ctrl+G cycles through.
VIEW_MODES: tuple[ViewMode, ...] = ("both", "gt", "pred")
MODE_TEXT = {"both": "ground truth and predictions", "gt": "ground truth only", "pred": "predictions only"}
JobKind = Literal["review", "eval"]
FrameStatus = Literal["no gt", "not annotated", "annotated"]


@dataclass(frozen=True)
class Ticket:
    """One started computation: its kind, its number and the GT it was started for."""

    kind: JobKind
    number: int
    gt_serial: int


class ReviewState:
    """The ground truth of the open clip and what was computed from it (see the module docstring)."""

    def __init__(self) -> None:
        self.gt: ClipGroundTruth | None = None
        self.review: Review | None = None
        self.report: EvaluationReport | None = None
        self.report_time: float | None = None  # time.time() when the current report was computed
        self.report_seconds: float | None = None  # how long that computation took
        self.mode: ViewMode = "both"
        self.flash_gt: int | None = None  # a GT track to highlight (a miss the user clicked)
        self._gt_serial = 0
        self._numbers = {"review": 0, "eval": 0}
        self._open: dict[str, Ticket | None] = {"review": None, "eval": None}

    # -- the GT ---------------------------------------------------------------------------------------
    @property
    def has_gt(self) -> bool:
        return self.gt is not None

    def set_gt(self, gt: ClipGroundTruth | None) -> None:
        """A new GT (or none): everything computed from the old one is dropped, running jobs become stale."""
        self.gt = gt
        self.review = None
        self.report = None
        self.report_time = self.report_seconds = None
        self.flash_gt = None
        self._gt_serial += 1
        self._open = {"review": None, "eval": None}

    def clear(self) -> None:
        self.set_gt(None)

    def frame_status(self, frame: int) -> FrameStatus:
        if self.gt is None:
            return "no gt"
        return "annotated" if self.gt.is_annotated(frame) else "not annotated"

    def gt_first_frame(self, gt_id: int) -> int | None:
        """The first frame where GT track ``gt_id`` has a mask (None: unknown id or no frames)."""
        if self.gt is None:
            return None
        for t in self.gt.tracks:
            if t.id == gt_id:
                frames = [f for f, rle in t.frames.items() if rle is not None]
                return min(frames) if frames else None
        return None

    def gt_category(self, gt_id: int) -> str:
        if self.gt is None:
            return ""
        for t in self.gt.tracks:
            if t.id == gt_id:
                return self.gt.categories.get(t.category_id, f"class {t.category_id}")
        return ""

    # -- what is drawn --------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> ViewMode:
        if mode not in VIEW_MODES:
            raise ValueError(f"unknown view mode {mode!r}; valid: {', '.join(VIEW_MODES)}")
        self.mode = mode  # type: ignore[assignment]
        return self.mode

    def cycle_mode(self) -> ViewMode:
        """both → GT only → predictions only → both."""
        return self.set_mode(VIEW_MODES[(VIEW_MODES.index(self.mode) + 1) % len(VIEW_MODES)])

    @property
    def shows_gt(self) -> bool:
        return self.gt is not None and self.mode in ("both", "gt")

    @property
    def shows_predictions(self) -> bool:
        """Predictions are always drawn when there is no GT to look at instead."""
        return self.gt is None or self.mode in ("both", "pred")

    # -- background results ---------------------------------------------------------------------------
    def begin(self, kind: JobKind) -> Ticket:
        """A computation of ``kind`` starts: every earlier one of that kind is now stale."""
        self._numbers[kind] += 1
        ticket = Ticket(kind, self._numbers[kind], self._gt_serial)
        self._open[kind] = ticket
        return ticket

    def is_current(self, ticket: Ticket) -> bool:
        return self._open.get(ticket.kind) == ticket and ticket.gt_serial == self._gt_serial

    def computing(self, kind: JobKind) -> bool:
        """A computation of ``kind`` was started and has not ended yet."""
        return self._open[kind] is not None

    def finish(self, ticket: Ticket, result: Any, *, at: float | None = None, seconds: float | None = None) -> bool:
        """Keep ``result`` if ``ticket`` is still the current one; False (and nothing changes) if stale."""
        if not self.is_current(ticket):
            return False
        self._open[ticket.kind] = None
        if ticket.kind == "review":
            self.review = result
        else:
            self.report, self.report_time, self.report_seconds = result, at, seconds
        return True

    def fail(self, ticket: Ticket) -> bool:
        """The computation failed: if it was current, nothing is running any more (the old result stays)."""
        if not self.is_current(ticket):
            return False
        self._open[ticket.kind] = None
        return True
