"""core.app.review_state: the app's ground-truth state without Qt (view modes, frame status, stale results)."""

from __future__ import annotations

import pytest

from core.app.review_state import VIEW_MODES, ReviewState


@pytest.fixture(scope="module")
def gt(shared_data):
    from core.app.review import load_ground_truth

    return load_ground_truth(shared_data / "davis_car_shadow/gt_ytvis.json", num_frames=40, height=480, width=854)


def test_modes_cycle_and_what_is_drawn(gt):
    s = ReviewState()
    assert s.mode == "both" and not s.shows_gt and s.shows_predictions  # no GT: predictions only, whatever the mode
    assert s.cycle_mode() == "gt" and s.shows_predictions and not s.shows_gt
    s.set_gt(gt)
    assert (s.shows_gt, s.shows_predictions) == (True, False)
    assert s.cycle_mode() == "pred" and (s.shows_gt, s.shows_predictions) == (False, True)
    assert s.cycle_mode() == "both" and (s.shows_gt, s.shows_predictions) == (True, True)
    assert [s.cycle_mode() for _ in VIEW_MODES] == ["gt", "pred", "both"]
    with pytest.raises(ValueError, match="unknown view mode 'x'"):
        s.set_mode("x")
    assert s.mode == "both"


def test_frame_status_and_gt_lookups(gt):
    s = ReviewState()
    assert s.frame_status(0) == "no gt" and s.gt_first_frame(1) is None
    s.set_gt(gt)
    assert s.frame_status(0) == "annotated" and s.frame_status(39) == "annotated"
    assert s.gt_first_frame(1) == 0 and s.gt_first_frame(99) is None
    assert s.gt_category(1) == "car"


def test_a_newer_computation_makes_the_older_stale(gt):
    s = ReviewState()
    s.set_gt(gt)
    t1 = s.begin("eval")
    assert s.computing("eval") and not s.computing("review")
    t2 = s.begin("eval")
    assert not s.finish(t1, "old", at=1.0) and s.report is None  # stale: discarded
    assert s.computing("eval")
    assert s.finish(t2, "new", at=2.0, seconds=0.5)
    assert (s.report, s.report_time, s.report_seconds) == ("new", 2.0, 0.5) and not s.computing("eval")
    assert not s.finish(t2, "again")  # a ticket is used once
    r = s.begin("review")
    assert s.finish(r, "review") and s.review == "review" and s.report == "new"


def test_a_new_gt_drops_results_and_running_jobs(gt):
    s = ReviewState()
    s.set_gt(gt)
    t = s.begin("eval")
    assert s.finish(t, "report", at=1.0)
    running = s.begin("review")
    s.set_gt(gt)  # loaded again (or another GT): what was computed from the old one goes
    assert s.report is None and s.review is None and not s.computing("eval") and not s.computing("review")
    assert not s.finish(running, "late review")
    assert s.review is None
    failing = s.begin("eval")
    assert s.fail(failing) and not s.computing("eval") and not s.fail(failing)
    s.clear()
    assert not s.has_gt and s.frame_status(3) == "no gt"
