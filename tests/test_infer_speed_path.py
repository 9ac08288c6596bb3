"""The lean ``vpp infer`` path: the reader thread, uncached streaming, resizing ahead, the one-copy RLE, the profile.

Each faster piece must give what the plain path gives, bit for bit, and fail the way it fails.
"""

from __future__ import annotations

import json
import os
import threading
import time

import cv2
import numpy as np
import pytest
import torch

from core.cli import main
from core.data.errors import FrameReadError
from core.data.prefetch import Prefetcher
from core.data.rle import encode_mask
from core.data.sources import FolderSource, VideoSource
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import save_checkpoint
from core.model.vpp.config import VPPConfig
from core.preprocess import prepare_frame, resize_frame, to_input
from core.results import encode_masks
from core.session import InferenceSession

# -- Prefetcher -----------------------------------------------------------------------------------


def test_prefetcher_keeps_the_order_and_applies_the_transform_on_its_thread():
    threads = set()

    def square(x):
        threads.add(threading.current_thread().name)
        return x * x

    with Prefetcher(range(200), depth=3, transform=square) as items:
        assert list(items) == [x * x for x in range(200)]
        assert not items.alive
    assert threads == {"vpp-prefetch"}
    assert list(items) == []  # exhausted stays exhausted


def test_an_error_comes_after_the_items_before_it_as_the_same_exception():
    boom = FrameReadError("clip/00003.jpg", 3, "corrupt data")

    def frames():
        yield from range(3)
        raise boom

    with Prefetcher(frames(), depth=2) as items:
        got = []
        with pytest.raises(FrameReadError) as info:
            for x in items:
                got.append(x)
    assert got == [0, 1, 2]
    assert info.value is boom
    assert "00003.jpg" in str(info.value) and "3" in str(info.value)
    assert not items.alive


def test_the_reader_stays_at_most_depth_plus_one_ahead():
    made = []

    def frames():
        for i in range(100):
            made.append(i)
            yield i

    with Prefetcher(frames(), depth=2) as items:
        assert next(items) == 0
        time.sleep(0.3)  # let the thread run as far as it may
        assert len(made) <= 1 + 2 + 1  # the one handed out, the queue, the one waiting to be put


def test_close_stops_the_thread_of_an_endless_reader_and_runs_its_cleanup():
    finished = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            finished.set()

    items = Prefetcher(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert not items.alive
    assert finished.wait(2.0)
    with pytest.raises(StopIteration):
        next(items)


def test_leaving_the_with_block_early_stops_the_thread():
    with Prefetcher(iter(range(10**9)), depth=4) as items:
        for x in items:
            if x == 5:
                break
    assert not items.alive


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        Prefetcher([], depth=0)


# -- sources --------------------------------------------------------------------------------------


def _folder(tmp_path, n=5, bad=None):
    rng = np.random.default_rng(1)
    for i in range(n):
        path = tmp_path / f"{i:05d}.png"
        if i == bad:
            path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        else:
            cv2.imwrite(str(path), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return tmp_path


def test_stream_gives_the_frames_iteration_gives_without_caching_them(tmp_path):
    with FolderSource(_folder(tmp_path)) as a, FolderSource(tmp_path) as b:
        plain = list(a)
        streamed = list(b.stream())
        assert len(streamed) == 5 and all(np.array_equal(x, y) for x, y in zip(plain, streamed))
        assert all(not f.flags.writeable for f in streamed)
        assert len(b._cache) == 1  # only the first frame, decoded at open to learn the size
        assert len(a._cache) == 5


def test_a_corrupt_frame_read_ahead_is_named_with_its_index(tmp_path):
    with FolderSource(_folder(tmp_path, bad=3)) as source, Prefetcher(source.stream(), depth=2) as frames:
        got = []
        with pytest.raises(FrameReadError) as info:
            got.extend(frames)
    assert len(got) == 3
    assert "00003.png" in str(info.value) and info.value.index == 3


def test_video_frames_are_rgb_as_before(tmp_path):
    path = tmp_path / "clip.mp4"
    rng = np.random.default_rng(2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(4):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    cap = cv2.VideoCapture(str(path))
    expected = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        expected.append(np.ascontiguousarray(img[..., ::-1]))
    cap.release()
    with VideoSource(path) as source:
        got = list(source.stream())
    assert len(got) == len(expected) == 4
    assert all(g.flags.c_contiguous and np.array_equal(g, e) for g, e in zip(got, expected))


# -- preprocessing, RLE -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(540, 960), (100, 128), (60, 40), (33, 257)])
def test_planes_made_ahead_are_the_tensor_prepare_frame_makes(shape):
    frame = np.random.default_rng(4).integers(0, 256, (*shape, 3), dtype=np.uint8)
    frame.flags.writeable = False  # as sources hand them out
    ref, geom = prepare_frame(frame, 128, 16)
    ahead = resize_frame(frame, 128, 16, planes=True)
    plain = resize_frame(frame, 128, 16)
    assert ahead.geometry == plain.geometry == geom
    assert torch.equal(to_input(ahead), ref) and torch.equal(to_input(plain), ref)
    assert ref.dtype == torch.float32 and ref.shape[-2] % 16 == 0 and ref.shape[-1] % 16 == 0


def test_bool_masks_encode_as_encode_mask_does():
    rng = np.random.default_rng(5)
    masks = rng.random((4, 37, 53)) > 0.6
    masks[1] = False
    masks[2] = True
    assert encode_masks(masks) == tuple(encode_mask(m) for m in masks)
    assert encode_masks(masks.astype(np.uint8)) == tuple(encode_mask(m) for m in masks)


# -- session ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_and_config():
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=128, decoder_dim=32, num_queries=6, decoder_layers=1,
                                decoder_ffn=64, pkr=0.4)
    return build_vpp(cfg).eval(), cfg


def test_a_frame_resized_ahead_gives_the_same_results(model_and_config):
    model, cfg = model_and_config
    rng = np.random.default_rng(6)
    frames = [rng.integers(0, 256, (96, 160, 3), dtype=np.uint8) for _ in range(3)]
    a = InferenceSession(model, cfg, score_threshold=0.0)
    b = InferenceSession(model, cfg, score_threshold=0.0)
    with Prefetcher(frames, transform=b.resize) as ahead:
        got = list(b.run_clip(ahead))
    for x, y in zip(a.run_clip(frames), got, strict=True):
        for name in ("track_ids", "category_ids", "scores", "masks", "kept"):
            assert np.array_equal(getattr(x, name), getattr(y, name)), name
        assert x.keep_ratio == y.keep_ratio


def test_timing_charges_each_stage_and_comes_off_again(model_and_config):
    model, cfg = model_and_config
    session = InferenceSession(model, cfg)
    timer = session.enable_timing()
    session.step(np.zeros((64, 64, 3), np.uint8))
    assert {"read", "preprocess", "backbone", "head", "postprocess"} <= set(timer.seconds)
    assert all(v >= 0 for v in timer.seconds.values())
    session.disable_timing()
    before = dict(timer.seconds)
    session.step(np.zeros((64, 64, 3), np.uint8))
    assert timer.seconds == before and session.timer is None
    assert not model.backbone._forward_hooks and not model.backbone._forward_pre_hooks


# -- the command ---------------------------------------------------------------------------------------


def _tiny_model_and_frames(tmp_path, *, seed: int, n: int):
    """A small random checkpoint and a folder of ``n`` random frames under ``tmp_path``."""
    torch.manual_seed(seed)
    cfg = VPPConfig.for_variant("tiny", input_long_side=64, num_queries=4, decoder_layers=1, num_classes=2,
                                categories=("a", "b"))
    model = tmp_path / "m.safetensors"
    save_checkpoint(build_vpp(cfg).eval(), cfg, model)
    (tmp_path / "frames").mkdir()
    return model, _folder(tmp_path / "frames", n=n)


def test_infer_profile_and_threads(tmp_path, capsys):
    model, frames = _tiny_model_and_frames(tmp_path, seed=0, n=3)
    before = torch.get_num_threads()
    try:
        code = main(["infer", str(frames), "--model", str(model), "--out", str(tmp_path / "r.json"), "--profile",
                     "--threads", "1"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    line = next(x for x in err.splitlines() if x.startswith("vpp-profile: "))
    profile = json.loads(line[len("vpp-profile: "):])
    assert profile["frames"] == 3 and profile["threads"] == 1
    for stage in ("model load", "read", "preprocess", "backbone", "head", "postprocess", "rle", "write"):
        assert stage in profile["seconds"], stage
    if (os.cpu_count() or 1) > 1:  # a core beside torch's one thread: the reader thread runs by default
        assert "reader thread (decode, resize)" in profile["beside"]
    assert "profile: 3 frames" in err


def test_infer_lowers_torch_threads_while_other_processes_keep_the_cores_busy(tmp_path, capsys, monkeypatch):
    """Without --threads the run follows the cores left free (core.cpu_threads); the profile lists the changes."""
    from core.commands import infer as infer_cmd
    from core.cpu_threads import CpuSample, ThreadGovernor

    class BusyMachine:  # two cores, others keep 1.5 of them busy: every sample a second later
        cpu_count = 2

        def __init__(self):
            self.n = 0

        def clock(self):  # time moves a second per frame: the next sample's
            return float(self.n + 1)

        def sample(self):
            self.n += 1
            return CpuSample(float(self.n), 1.5 * self.n, 0.0)

    made = []

    def for_run(device, threads=None):
        assert threads is None and str(device) == "cpu"
        made.append(ThreadGovernor(2, sampler=BusyMachine(), interval_s=0.5))
        return made[-1]

    monkeypatch.setattr(infer_cmd.ThreadGovernor, "for_run", staticmethod(for_run))
    model, frames = _tiny_model_and_frames(tmp_path, seed=0, n=3)
    before = torch.get_num_threads()
    try:
        code = main(["infer", str(frames), "--model", str(model), "--out", str(tmp_path / "r.json"), "--profile"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    profile = json.loads(next(x for x in err.splitlines() if x.startswith("vpp-profile: "))[len("vpp-profile: "):])
    assert len(made) == 1 and profile["threads"] == 1
    assert [c[1:] for c in profile["thread_changes"]] == [[1, 1.5]]
    assert "threads: started with 2 (auto), then 1 at" in err


def test_infer_reads_the_same_with_and_without_the_reader_thread(tmp_path, capsys):
    model, frames = _tiny_model_and_frames(tmp_path, seed=1, n=4)
    outs = []
    for depth in ("0", "1", "4", None):
        out = tmp_path / f"r{depth}.json"
        code = main(["infer", str(frames), "--model", str(model), "--out", str(out),
                     *(["--prefetch", depth] if depth else [])])
        assert code == 0, capsys.readouterr().err
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2] == outs[3]


def test_importing_core_makes_openmp_threads_spin_briefly_unless_the_user_chose():
    """core sets a short OpenMP spin before torch loads (sleeping workers eat a pruned pass's gain; the thread
    governor keeps spinning workers off cores that other processes need); a wait policy the user set wins."""
    import os
    import subprocess
    import sys

    code = ("import os, core, torch; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), "
            "os.environ.get('KMP_BLOCKTIME'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}

    def run(**extra):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                             check=True)
        return out.stdout.split()

    assert run() == ["None", "10000", "1"]
    assert run(OMP_WAIT_POLICY="PASSIVE") == ["PASSIVE", "None", "None"]
    assert run(GOMP_SPINCOUNT="300000") == ["None", "300000", "None"]
