"""PKR and prune mode are per-call arguments: the model holds no run settings, sessions share one model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core.bench
from core.bench import bench_model
from core.errors import VPPError
from core.model.vpp.builder import build_vpp, keep_for
from core.model.vpp.config import VPPConfig
from core.session import InferenceSession
from core.session_base import FrameResult


@pytest.fixture(scope="module")
def model_and_config():
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=128, decoder_dim=32, num_queries=6, decoder_layers=1,
                                decoder_ffn=64, pkr=0.4)
    return build_vpp(cfg).eval(), cfg


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(4)]


def _same(a: FrameResult, b: FrameResult) -> None:
    assert a.index == b.index
    for name in ("track_ids", "category_ids", "scores", "masks", "kept"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    assert a.keep_ratio == b.keep_ratio and a.gflops == b.gflops


def _alone(model, cfg, frames, **run) -> list[FrameResult]:
    session = InferenceSession(model, cfg, score_threshold=0.0, **run)
    return [session.step(f) for f in frames]


@pytest.mark.parametrize(
    "other", [dict(pkr=1.0, mode="vpp"), dict(pkr=0.4, mode="dense"), dict(pkr=0.7, mode="random")]
)
def test_two_sessions_over_one_model_do_not_interfere(model_and_config, frames, other):
    model, cfg = model_and_config
    ref_a = _alone(model, cfg, frames, pkr=0.4, mode="vpp")
    ref_b = _alone(model, cfg, frames, **other)
    a = InferenceSession(model, cfg, pkr=0.4, mode="vpp", score_threshold=0.0)
    b = InferenceSession(model, cfg, score_threshold=0.0, **other)  # made after a: must not retarget a
    assert a.model is b.model
    got_a, got_b = [], []
    for f in frames:  # alternate frame by frame
        got_a.append(a.step(f))
        got_b.append(b.step(f))
    for x, y in zip(got_a, ref_a):
        _same(x, y)
    for x, y in zip(got_b, ref_b):
        _same(x, y)
    # the comparison means something: the two runs really differ in budget
    assert got_a[-1].keep_ratio == pytest.approx(0.4, abs=0.03)
    assert got_b[-1].keep_ratio != got_a[-1].keep_ratio or not np.array_equal(got_b[-1].kept, got_a[-1].kept)
    assert (a.pkr, a.mode) == (0.4, "vpp") and (b.pkr, b.mode) == (other["pkr"], other["mode"])


def test_set_pkr_and_set_mode_change_only_their_session(model_and_config, frames):
    model, cfg = model_and_config
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = InferenceSession(model, cfg, pkr=0.4, score_threshold=0.0)
    b = InferenceSession(model, cfg, pkr=0.4, score_threshold=0.0)
    b.set_pkr(0.9)
    b.set_mode("random")
    assert (a.pkr, a.keep, a.mode) == (0.4, keep_for(cfg, 0.4), "vpp")
    assert (b.pkr, b.keep, b.mode) == (0.9, keep_for(cfg, 0.9), "random")
    for f in frames[:2]:
        b.step(f)
    ra = [a.step(f) for f in frames[:2]]
    for x, y in zip(ra, _alone(model, cfg, frames[:2], pkr=0.4)):
        _same(x, y)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_session_rejects_bad_run_settings(model_and_config):
    model, cfg = model_and_config
    s = InferenceSession(model, cfg, pkr=0.4)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(VPPError, match=r"PKR must be in \(0, 1\]"):
            s.set_pkr(bad)
    with pytest.raises(VPPError, match="unknown prune mode 'fast'"):
        s.set_mode("fast")
    with pytest.raises(VPPError, match="unknown prune mode"):
        InferenceSession(model, cfg, mode="fast")
    assert (s.pkr, s.mode) == (0.4, "vpp")  # a rejected setting leaves the session as it was


def test_model_holds_no_run_settings(model_and_config):
    model, _ = model_and_config
    for obj in (model, model.backbone):
        for name in ("keep", "mode", "set_keep", "set_mode"):
            assert not hasattr(obj, name), f"{type(obj).__name__}.{name}"
    import core.build
    import core.model.vpp.builder

    assert not hasattr(core.build, "set_pkr") and not hasattr(core.model.vpp.builder, "set_pkr")


def test_random_mode_keeps_the_same_budget_as_vpp(model_and_config):
    model, cfg = model_and_config
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1)) * 255
    keep = keep_for(cfg, 0.4)
    with torch.no_grad():
        st = model(x, keep=keep).backbone.state
        vpp = model(x, st, keep=keep, mode="vpp").backbone
        rnd = model(x, st, keep=keep, mode="random").backbone
        dense = model(x, st, keep=keep, mode="dense").backbone
    n = vpp.grid[0] * vpp.grid[1]
    assert vpp.tokens_per_block == rnd.tokens_per_block and vpp.tokens_per_block[-1] < n
    assert [int(m.sum()) for m in vpp.kept_masks] == [int(m.sum()) for m in rnd.kept_masks]
    assert [int(m.sum()) for m in rnd.kept_masks] == [int(n * k) for k in keep]
    assert not all(torch.equal(a, b) for a, b in zip(vpp.kept_masks, rnd.kept_masks))  # other tokens
    assert dense.tokens_per_block == [n] * len(dense.tokens_per_block)  # dense ignores keep


def test_bench_sessions_share_the_one_model(model_and_config, monkeypatch):
    model, cfg = model_and_config
    seen = []

    class Recording(InferenceSession):
        def __init__(self, m, *args, **kwargs):
            seen.append(m)
            super().__init__(m, *args, **kwargs)

    monkeypatch.setattr(core.bench, "InferenceSession", Recording)
    rows = bench_model(model, cfg, "t", [0.4], size=(128, 96), repeats=1, warmup=0, log=lambda m: None)
    assert [r.name for r in rows] == ["dense", "vpp@0.4", "random@0.4"]
    assert len(seen) == 3 and all(m is model for m in seen)
    assert rows[0].keep_ratio == 1.0 and rows[1].keep_ratio == pytest.approx(rows[2].keep_ratio)
