"""Keyframe navigation and propagation targets (core.app.document.keyframes), Qt-free."""

from __future__ import annotations

import pytest

from core.app.document.keyframes import next_gap, next_keyframe, previous_keyframe, propagation_stop, runs


def test_runs_group_consecutive_frames():
    assert runs([]) == []
    assert runs({7, 1, 2, 3, 9, 10}) == [(1, 3), (7, 7), (9, 10)]


def test_previous_and_next_keyframe_are_strict():
    keys = frozenset({2, 6, 11})
    assert next_keyframe(keys, 0) == 2
    assert next_keyframe(keys, 2) == 6
    assert next_keyframe(keys, 11) is None
    assert previous_keyframe(keys, 11) == 6
    assert previous_keyframe(keys, 7) == 6
    assert previous_keyframe(keys, 2) is None
    assert next_keyframe(frozenset(), 3) is None


def test_next_gap_skips_covered_frames_and_stops_at_the_clip_end():
    frames = {0, 1, 2, 4, 5}
    assert next_gap(frames, 0, 8) == 3
    assert next_gap(frames, 3, 8) == 6
    assert next_gap(set(range(8)), 2, 8) is None
    assert next_gap(frames, 7, 8) is None


@pytest.mark.parametrize(("frame", "direction", "to", "count", "expected"), [
    (3, 1, "keyframe", 5, 6),  # the next keyframe forward
    (6, 1, "keyframe", 5, 11),  # from a keyframe: the next one, not itself
    (12, 1, "keyframe", 5, 19),  # none ahead: the clip's end
    (8, -1, "keyframe", 5, 6),
    (1, -1, "keyframe", 5, 0),
    (3, 1, "frames", 5, 8),
    (17, 1, "frames", 5, 19),  # clamped to the clip
    (3, -1, "frames", 5, 0),
    (3, 1, "end", 5, 19),
    (3, -1, "end", 5, 0),
])
def test_propagation_stop(frame, direction, to, count, expected):
    assert propagation_stop(frozenset({2, 6, 11}), frame, direction, to, count, 20) == expected


def test_propagation_stop_refuses_bad_requests():
    with pytest.raises(ValueError, match="direction"):
        propagation_stop(frozenset(), 0, 0, "end", 1, 10)
    with pytest.raises(ValueError, match="unknown propagation target"):
        propagation_stop(frozenset(), 0, 1, "somewhere", 1, 10)
    with pytest.raises(ValueError, match="at least 1 frame"):
        propagation_stop(frozenset(), 0, 1, "frames", 0, 10)
