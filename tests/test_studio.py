"""core.app.studio without Qt: the worker's generator, the preview rule, the cache."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from core.app.settings import ModelSpec, RunSettings
from core.app.studio import (
    FrameMessage,
    ModelInfo,
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
from core.model.vpp.builder import build_vpp
from core.model.vpp.config import VPPConfig
from core.resources import LoadedModel
from core.results import ClipResults, CompactFrame
from core.session import InferenceSession


class ListSource:
    def __init__(self, frames):
        self.frames = frames
        self.closed = False

    def __len__(self):
        return len(self.frames)

    @property
    def size(self):
        h, w = self.frames[0].shape[:2]
        return w, h

    def frame(self, i, fit=None):
        f = self.frames[i]
        return f if fit is None or fit == (f.shape[1], f.shape[0]) else cv2.resize(f, fit, interpolation=cv2.INTER_AREA)

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
    req = RunRequest(7, "clip", RunSettings("tiny", pkr=0.5, threshold=0.0))
    msgs: list = []
    guarded_pass(req, ModelStore(tiny), channel, lambda _p: source, msgs.append)
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

    req = RunRequest(1, "clip", RunSettings("tiny", pkr=0.5, threshold=0.0))
    msgs: list = []
    guarded_pass(req, ModelStore(tiny), PreviewChannel(), broken, msgs.append)
    assert isinstance(msgs[-1], PassError) and "disk on fire" in msgs[-1].message and msgs[-1].request_id == 1


def test_keys_thresholds_and_cache():
    assert resolve_threshold(None, trained=False) == 0.03
    assert resolve_threshold(None, trained=True) == 0.25
    assert resolve_threshold(0.4, trained=False) == 0.4
    assert RunKey.make("c", RunSettings("tiny", pkr=0.5, threshold=None)).threshold is None
    assert RunKey.make("c", RunSettings("tiny", pkr=0.5000001, threshold=0.03)) == RunKey.make(
        "c", RunSettings("tiny", pkr=0.5, threshold=0.03))
    cache = ResultCache(max_bytes=1)
    keys = [RunKey.make("c", RunSettings("tiny", pkr=p, threshold=0.03)) for p in (0.3, 0.4)]
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


# -- model-load failures name the file (issue 12: "ZeroDivisionError" without the file) --------------------
def test_model_load_failures_name_the_checkpoint(tmp_path):
    from core.errors import CheckpointError

    path = tmp_path / "weird.safetensors"

    def zero_division(spec, device):
        return 1 // 0

    def named(spec, device):
        raise CheckpointError(f"{path}: tensor 'x' holds NaN")

    req = RunRequest(3, "clip", RunSettings("file", str(path), pkr=0.5, threshold=None))
    msgs: list = []
    guarded_pass(req, ModelStore(zero_division), PreviewChannel(), lambda _p: ListSource([]), msgs.append)
    assert len(msgs) == 1 and isinstance(msgs[0], PassError)
    assert msgs[0].message.startswith(f"{path}: cannot load the model: ZeroDivisionError"), msgs[0].message
    assert "ZeroDivisionError" in msgs[0].detail  # the traceback is kept for the debug log only
    msgs = []
    guarded_pass(req, ModelStore(named), PreviewChannel(), lambda _p: ListSource([]), msgs.append)
    assert msgs[0].message == f"{path}: tensor 'x' holds NaN" and msgs[0].detail == ""  # named already: as is
    built = RunRequest(4, "clip", RunSettings("tiny", pkr=0.5, threshold=None))
    msgs = []
    guarded_pass(built, ModelStore(zero_division), PreviewChannel(), lambda _p: ListSource([]), msgs.append)
    assert msgs[0].message.startswith("the Tiny (untrained) model: cannot load the model: ZeroDivisionError")


def test_data_errors_carry_no_traceback(frames):
    from core.data.errors import FrameReadError

    class Corrupt(ListSource):
        def frame(self, i, fit=None):
            if i == 1:
                raise FrameReadError("clip/00001.jpg", 1, "not a decodable image") from ValueError("inner")
            return super().frame(i, fit)

    req = RunRequest(5, "clip", RunSettings("tiny", pkr=0.5, threshold=0.0))
    msgs: list = []
    guarded_pass(req, ModelStore(tiny), PreviewChannel(), lambda _p: Corrupt(frames), msgs.append)
    assert isinstance(msgs[-1], PassError) and "00001.jpg" in msgs[-1].message and msgs[-1].detail == ""


# -- instance selection: one instance per object (issue 12: duplicate low-score tracks at "auto") ----------
def _query_logits(masks, scores, grid=(12, 16)):
    """Decoder-like inputs: class logits giving ``scores`` (class 0 of 2), mask logits of ``masks``."""
    k = len(masks)
    probs = torch.tensor(scores, dtype=torch.float32)
    cls = torch.stack([torch.log(probs), torch.log((1 - probs) / 2), torch.log((1 - probs) / 2)], dim=1)
    logits = torch.full((k, *grid), -8.0)
    for i, (y0, y1, x0, x1) in enumerate(masks):
        logits[i, y0:y1, x0:x1] = 8.0
    return cls, logits, torch.randn(k, 4)


def _old_select(class_logits, mask_logits, embeddings, score_threshold=0.25, nms_iou=0.7, max_instances=20):
    """The selection before the containment rule (mask-NMS on the stride-8 grid), for comparison."""
    probs = class_logits.float().softmax(-1)[:, :-1]
    cls_score, _ = probs.max(-1)
    mask_prob = mask_logits.float().sigmoid()
    binary = mask_prob > 0.5
    area = binary.flatten(1).sum(-1)
    scores = cls_score * (mask_prob * binary).flatten(1).sum(-1) / area.clamp(min=1)
    order = torch.nonzero((scores >= score_threshold) & (area > 0)).flatten()
    order = order[scores[order].argsort(descending=True)]
    chosen, flat = [], binary.flatten(1).float()
    for q in order.tolist():
        if len(chosen) >= max_instances:
            break
        if chosen:
            inter = flat[chosen] @ flat[q]
            if (inter / (area[chosen] + area[q] - inter).clamp(min=1)).max() > nms_iou:
                continue
        chosen.append(q)
    return chosen


def test_select_instances_drops_parts_and_wholes_found_twice():
    from core.model.postprocess import select_instances

    boxes = [(2, 10, 2, 10),  # an object (64 cells)
             (3, 7, 3, 7),  # a part of it, lower score: IoU 0.25 passed mask-NMS before
             (0, 12, 0, 12),  # the object around it, lower score: IoU 0.44
             (2, 10, 11, 15),  # another object beside it (touching nothing)
             (8, 12, 8, 13)]  # another one across the corners of both (8 of its 20 cells)
    cls, logits, emb = _query_logits(boxes, [0.9, 0.5, 0.4, 0.8, 0.6])
    assert sorted(_old_select(cls, logits, emb)) == [0, 1, 2, 3, 4]  # the duplicates were shown before
    det = select_instances(cls, logits, emb)
    assert sorted(det.queries.tolist()) == [0, 3, 4]
    assert det.scores.tolist() == sorted(det.scores.tolist(), reverse=True)


def test_select_instances_without_the_new_rules_is_the_old_mask_nms():
    from core.model.postprocess import select_instances

    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        cls = torch.randn(20, 4, generator=gen) * 2
        logits = torch.randn(20, 9, 13, generator=gen) * 4
        emb = torch.randn(20, 8, generator=gen)
        det = select_instances(cls, logits, emb, score_threshold=0.05, containment=2.0, overlap_upsample=1)
        assert det.queries.tolist() == _old_select(cls, logits, emb, score_threshold=0.05)


def test_the_apps_pass_reads_frames_as_vpp_infer_does(tmp_path, monkeypatch):
    """At 8x the model's input a JPEG is decoded reduced (DCT scaling) for the model: the app's pass feeds the
    model exactly what ``vpp infer`` feeds it, and gives the same results; a full decode would differ."""
    from core.clip_loop import run_clip
    from core.commands.infer import _reader
    from core.data.sources import open_source
    from core.preprocess import resize_frame, to_input

    rng = np.random.default_rng(3)
    base = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (512, 384), interpolation=cv2.INTER_CUBIC)
    for i in range(3):
        img = np.roll(base, 8 * i, axis=1)
        assert cv2.imwrite(str(tmp_path / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])

    inputs: list[torch.Tensor] = []
    step = InferenceSession.step

    def recording_step(self, frame):
        inputs.append(to_input(frame) if not isinstance(frame, np.ndarray) else None)
        return step(self, frame)

    monkeypatch.setattr(InferenceSession, "step", recording_step)
    req = RunRequest(3, str(tmp_path), RunSettings("tiny", pkr=0.5, threshold=0.0))
    msgs: list = []
    guarded_pass(req, ModelStore(tiny), PreviewChannel(), lambda p: open_source(p), msgs.append)
    assert isinstance(msgs[-1], PassDone)
    app = [m.frame for m in msgs if isinstance(m, FrameMessage) and not m.preview]
    app_inputs, inputs[:] = list(inputs), []

    loaded = tiny(None, "cpu")
    session = InferenceSession(loaded.model, loaded.config, pkr=0.5, score_threshold=0.0)
    cli: list[CompactFrame] = []
    with open_source(tmp_path) as source, _reader(source, 0, session) as frames:
        run_clip(frames, session, lambda i, r: cli.append(CompactFrame.from_result(r, i)))
        full = [resize_frame(source.frame(i), session.input_long_side, session.patch) for i in range(3)]
    assert len(app_inputs) == len(inputs) == 3 and all(a is not None for a in app_inputs)
    assert all(torch.equal(a, b) for a, b in zip(app_inputs, inputs))
    assert not all(torch.equal(a, to_input(f)) for a, f in zip(app_inputs, full))  # the reduced decode was used
    for a, b in zip(app, cli):
        assert a.index == b.index and a.track_ids.tolist() == b.track_ids.tolist() and a.rles == b.rles
