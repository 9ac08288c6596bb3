"""Paired bootstrap of AP_track differences: agrees with the protocol, zero for equal inputs, sure of real gaps."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.rle import decode_rle, encode_mask
from core.data.synthetic import write_synthetic_dataset
from core.data.ytvis import YtvisResult, read_ytvis_gt
from core.evaluation.bootstrap import _entries, paired_bootstrap, video_ap
from core.evaluation.ytvis_eval import evaluate_tracks


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    root = tmp_path_factory.mktemp("boot")
    ann = write_synthetic_dataset(root, train_videos=0, val_videos=16, width=64, height=48, frames=3, seed=7)["valid"]
    return read_ytvis_gt(ann)


def _results(gt, *, miss_every: int = 0, shift: int = 0, seed: int = 0) -> list[YtvisResult]:
    """The ground truth as detections, with every ``miss_every``-th track missing and masks shifted."""
    rng = np.random.default_rng(seed)
    out = []
    for k, a in enumerate(gt.annotations):
        if miss_every and k % miss_every == 0:
            continue
        segs = []
        for s in a.segmentations:
            if s is None:
                segs.append(None)
                continue
            m = np.roll(decode_rle(s), shift, axis=1)
            segs.append(encode_mask(m) if m.any() else None)
        out.append(YtvisResult(a.video_id, a.category_id, float(rng.uniform(0.5, 1.0)), tuple(segs)))
    return out


def test_full_draw_equals_the_protocol(gt):
    videos = sorted(v.id for v in gt.videos)
    for res in (_results(gt), _results(gt, miss_every=3, shift=2), _results(gt, shift=4, seed=1)):
        assert video_ap(_entries(gt, res), videos, gt.category_ids) == pytest.approx(evaluate_tracks(gt, res)["AP"])


def test_equal_results_give_zero_and_a_real_gap_is_sure(gt):
    good, bad = _results(gt, shift=1), _results(gt, miss_every=2, shift=3)
    same = paired_bootstrap(gt, good, good, resamples=200)
    assert same.observed == 0 and same.low == 0 and same.high == 0 and same.share_positive == 0
    d = paired_bootstrap(gt, good, bad, resamples=200, seed=3)
    expected = evaluate_tracks(gt, good)["AP"] - evaluate_tracks(gt, bad)["AP"]
    assert d.observed == pytest.approx(expected) and expected > 0.2
    assert 0 < d.low <= d.observed <= d.high and d.share_positive == 1.0
    assert paired_bootstrap(gt, good, bad, resamples=200, seed=3) == d  # seeded
    flipped = paired_bootstrap(gt, bad, good, resamples=200, seed=3)
    assert flipped.observed == pytest.approx(-d.observed) and flipped.high == pytest.approx(-d.low)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(gt, good, bad, resamples=0)
