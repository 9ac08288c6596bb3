"""core.app.run_control without Qt: the run state the app's controller adapts (passes, cache, stale messages)."""

from __future__ import annotations

import numpy as np

from core.app.run_control import RunController
from core.app.settings import ModelSpec
from core.app.studio import FrameMessage, ModelInfo, PassDone, PassError
from core.results import CompactFrame


class FakeRunner:
    def __init__(self):
        self.started, self.cancelled, self.previews = [], 0, []

    def start(self, request, preview=None):
        self.started.append((request, preview))

    def cancel(self):
        self.cancelled += 1

    def preview(self, index):
        self.previews.append(index)


def _frame(i, h=6, w=8):
    return CompactFrame(i, h, w, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), (),
                        np.zeros(0, np.int64), np.zeros((0, 1, 1), bool), (), 1.0, 0.0, 0.0)


def _controller():
    events = []
    runner = FakeRunner()
    c = RunController(runner, emit=lambda name, *args: events.append((name, args)), pkr=0.5)
    c.set_clip("/clip", 3, 6, 8)
    return c, runner, events


def test_a_pass_fills_one_store_and_ends_done():
    c, runner, events = _controller()
    c.configure(pkr=0.4, preview=2)
    request, preview = runner.started[-1]
    assert c.state == "running" and c.running and preview == 2 and request.settings.pkr == 0.4
    c.on_message(ModelInfo(request.id, "src", False, ("a",), (1,), 64, 16))
    for i in range(3):
        c.on_message(FrameMessage(request.id, _frame(i), False))
    c.on_message(PassDone(request.id))
    assert c.state == "done" and c.results.is_complete and not c.running
    assert ("frameArrived", (2, False)) in events and ("stateChanged", ("done",)) in events
    assert c.last_good == (ModelSpec("default"), "cpu")


def test_stale_messages_are_dropped_and_the_cache_answers_a_known_key():
    c, runner, _ = _controller()
    c.configure(pkr=0.4)
    first = runner.started[-1][0]
    for i in range(3):
        c.on_message(FrameMessage(first.id, _frame(i), False))
    c.on_message(PassDone(first.id))
    done = c.results
    c.configure(pkr=0.7)
    second = runner.started[-1][0]
    c.on_message(FrameMessage(first.id, _frame(0), False))  # the old pass: ignored
    assert c.results.count == 0 and second.id != first.id
    c.configure(pkr=0.4)  # back: from the cache, no new pass
    assert c.results is done and c.state == "done" and len(runner.started) == 2 and runner.cancelled >= 1


def test_errors_previews_adopt():
    c, runner, events = _controller()
    c.configure()
    rid = runner.started[-1][0].id
    c.want_preview(2)
    assert runner.previews == [2]
    c.on_message(FrameMessage(rid, _frame(2), True))
    assert c.frame(2)[1] is True and c.results.count == 0
    c.on_message(PassError(rid, "boom", "tb"))
    assert c.state == "error" and events[-1] == ("failed", ("boom", "tb", True))
    c.adopt()
    assert c.state == "done" and c.results is None and c.key == c.current_key()
    c.restart()  # same key, done: nothing starts
    assert len(runner.started) == 1
