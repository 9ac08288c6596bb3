"""``Track.nearest_frame``: where the app shows a track when a person picks it (issue 24: stay on the frame)."""

from __future__ import annotations

import numpy as np

from core.app.document import FrameMask, Track


def _track(frames):
    mask = np.ones((4, 4), bool)
    return Track(1, 1, frames={i: FrameMask.from_mask(mask, 1.0) for i in frames})


def test_nearest_frame():
    t = _track([10, 20, 40])
    assert t.nearest_frame(20) == 20  # on it: stay
    assert t.nearest_frame(17) == 20 and t.nearest_frame(12) == 10
    assert t.nearest_frame(15) == 10 and t.nearest_frame(30) == 20  # a tie: the earlier frame
    assert t.nearest_frame(0) == 10 and t.nearest_frame(99) == 40
    assert _track([]).nearest_frame(5) is None
