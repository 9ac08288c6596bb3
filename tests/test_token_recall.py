"""Object-token recall: the geometry of object tokens and the per-stage counting."""

from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.token_recall import RecallCounter, object_tokens


def test_object_tokens_follow_the_model_input_geometry():
    objects = np.zeros((240, 320), bool)
    objects[:, :160] = True  # left half
    tok = object_tokens(objects, (12, 16), long_side=256, patch=16)
    assert tok.shape == (12, 16)
    assert tok[:, :8].all() and not tok[:, 8:].any()
    # a non-multiple size: 250x330 -> 194x256 resized, padded to 208x256 (13x16 tokens); the padded
    # bottom row has at most 2 of 16 object pixel rows, so it never counts
    objects = np.ones((250, 330), bool)
    tok = object_tokens(objects, (13, 16), long_side=256, patch=16)
    assert tok[:12].all() and not tok[12].any()
    # a small object covering under half of every patch it touches is not an object token
    objects = np.zeros((256, 256), bool)
    objects[4:10, 4:10] = True
    assert not object_tokens(objects, (16, 16), long_side=256, patch=16).any()


def test_recall_counter_micro_averages_per_stage():
    c = RecallCounter()
    assert c.figures() == {}
    objects = np.zeros((2, 4), bool)
    objects[0, :2] = True  # 2 object tokens of 8
    kept = np.zeros((2, 2, 4), bool)
    kept[0] = True  # stage A keeps everything
    kept[1, 0, 0] = kept[1, 1, 3] = True  # stage B keeps 1 object token, 1 background token
    c.add(kept, objects, ("A", "B"))
    objects2 = np.ones((2, 4), bool)  # 8 object tokens
    kept2 = np.zeros((2, 2, 4), bool)
    kept2[0, 0] = True  # stage A keeps 4, stage B none
    c.add(kept2, objects2, ("A", "B"))
    f = c.figures()
    assert f["object_recall@A"] == pytest.approx((2 + 4) / 10)
    assert f["object_recall@B"] == pytest.approx(1 / 10)
    assert f["kept@A"] == pytest.approx((8 + 4) / 16) and f["kept@B"] == pytest.approx(2 / 16)
