"""core.studio without Qt: the worker's generator, the preview rule, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.build import VPPConfig, build_vpp
from core.resources import LoadedModel
from core.results import ClipResults, CompactFrame
from core.session import InferenceSession
from core.studio import (
    FrameMessage,
    ModelInfo,
    ModelSpec,
    ModelStore,
    PassDone,
    PassError,
    PreviewChannel,
    ResultCache,
    RunKey,
    RunRequest,
    guarded_pass,
    resolve_threshold,
)


class ListSource:
    def __init__(self, frames):
        self.frames = frames
        self.closed = False

    def __len__(self):
        return len(self.frames)

    def frame(self, i):
        return self.frames[i]

    def close(self):
        self.closed = True


def tiny(spec, device):
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=64)
    return LoadedModel(build_vpp(cfg).eval(), cfg, "tiny 64", False)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(4)]


def test_preview_runs_first_and_does_not_disturb_the_pass(frames):
    source = ListSource(frames)
    channel = PreviewChannel()
    channel.want(3)
    req = RunRequest(7, "clip", ModelSpec("tiny"), "cpu", 0.5, 0.0)
    msgs = list(guarded_pass(req, ModelStore(tiny), channel, lambda _p: source))
    assert isinstance(msgs[0], ModelInfo) and msgs[0].request_id == 7 and not msgs[0].trained
    assert isinstance(msgs[1], FrameMessage) and msgs[1].preview and msgs[1].frame.index == 3
    passed = [m.frame for m in msgs if isinstance(m, FrameMessage) and not m.preview]
    assert [f.index for f in passed] == [0, 1, 2, 3]
    assert isinstance(msgs[-1], PassDone) and source.closed

    # the same pass without a preview gives the same results: the preview's state was kept apart
    loaded = tiny(None, "cpu")
    session = InferenceSession(loaded.model, loaded.config, pkr=0.5, score_threshold=0.0)
    plain = [CompactFrame.from_result(r) for r in session.run_clip(frames)]
    for a, b in zip(passed, plain):
        assert a.track_ids.tolist() == b.track_ids.tolist() and a.rles == b.rles
        assert np.array_equal(a.kept, b.kept)
    # and the preview equals frame 3 run as the first frame of a clip
    session.reset()
    alone = CompactFrame.from_result(session.step(frames[3]), index=3)
    assert msgs[1].frame.rles == alone.rles and msgs[1].frame.track_ids.tolist() == alone.track_ids.tolist()


def test_errors_become_messages(frames):
    def broken(_path):
        raise OSError("disk on fire")

    req = RunRequest(1, "clip", ModelSpec("tiny"), "cpu", 0.5, 0.0)
    msgs = list(guarded_pass(req, ModelStore(tiny), PreviewChannel(), broken))
    assert isinstance(msgs[-1], PassError) and "disk on fire" in msgs[-1].message and msgs[-1].request_id == 1


def test_keys_thresholds_and_cache():
    assert resolve_threshold(None, trained=False) == 0.03
    assert resolve_threshold(None, trained=True) == 0.25
    assert resolve_threshold(0.4, trained=False) == 0.4
    assert RunKey.make("c", ModelSpec("tiny"), "cpu", 0.5, None).threshold is None
    assert RunKey.make("c", ModelSpec("tiny"), "cpu", 0.5000001, 0.03) == RunKey.make("c", ModelSpec("tiny"), "cpu",
                                                                                       0.5, 0.03)
    cache = ResultCache(max_bytes=1)
    keys = [RunKey.make("c", ModelSpec("tiny"), "cpu", p, 0.03) for p in (0.3, 0.4)]
    stores = [ClipResults(1, 4, 4) for _ in keys]
    r = np.zeros((1, 4, 4), bool)
    for k, s in zip(keys, stores):
        from types import SimpleNamespace

        s.add(CompactFrame.from_result(SimpleNamespace(index=0, track_ids=[1], category_ids=[1], scores=[0.5],
                                                       masks=r, kept=np.ones((1, 1, 1), bool), stage_names=("a",),
                                                       keep_ratio=1.0, gflops=1.0, ms=1.0)))
        cache.put(k, s)
    assert len(cache) == 1 and cache.get(keys[1]) is stores[1] and cache.get(keys[0]) is None


def test_model_store_keeps_the_last_models():
    calls = []

    def factory(spec, device):
        calls.append(spec.kind)
        return spec.kind

    store = ModelStore(factory, keep=2)
    for kind in ("tiny", "small", "tiny", "default", "small"):
        store.get(ModelSpec(kind), "cpu")
    assert calls == ["tiny", "small", "default", "small"]
