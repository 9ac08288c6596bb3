"""Batch ``vpp infer`` over a folder of clips: merged output, 2 gloo ranks = 1 process, resume, one bad clip."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.batch_infer import Clip, assign, folder_clips, shard_path, work_dir
from core.cli import main
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import save_checkpoint
from core.model.vpp.config import VPPConfig

REPO = Path(__file__).resolve().parents[1]
FRAMES = {"clip1": 3, "clip2": 4, "clip10": 3}  # natural order: clip1, clip2, clip10


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=64, num_queries=8, decoder_layers=2, num_classes=6,
                                categories=("a", "b", "c", "d", "e", "f"))
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_checkpoint(build_vpp(cfg).eval(), cfg, path)
    return path


def _clips(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, n in FRAMES.items():
        (root / name).mkdir(parents=True)
        for t in range(n):
            img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            cv2.imwrite(str(root / name / f"{t:05d}.{'png' if name == 'clip2' else 'jpg'}"), img)
    return root


def _infer(capsys, *argv):
    code = main(["infer", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_assign_balances_by_frames_and_is_deterministic():
    clips = [Clip(i, f"c{i}", Path(f"c{i}"), n, lambda **k: None) for i, n in enumerate([10, 3, 7, 7, 2, 1], 1)]
    plan = assign(clips, 2)
    assert [[c.video_id for c in r] for r in plan] == [[1, 2, 5], [3, 4, 6]]
    loads = sorted(sum(c.frames for c in r) for r in plan)
    assert loads == [15, 15]
    assert assign(clips, 2) == plan and assign(list(reversed(clips)), 2) == plan
    assert [c.video_id for c in assign(clips, 1)[0]] == [1, 2, 3, 4, 5, 6]
    assert assign(clips, 8)[7] == [] and sum(len(r) for r in assign(clips, 8)) == 6


def test_single_process_merges_a_folder_of_clips(tmp_path, small_model, capsys):
    clips = _clips(tmp_path / "clips")
    out = tmp_path / "out" / "r.json"
    out.parent.mkdir()
    code, stdout, err = _infer(capsys, clips, "--model", small_model, "--out", out, "--zip")
    assert code == 0, err
    assert [c.name for c in folder_clips(clips)] == ["clip1", "clip2", "clip10"]
    results = json.loads(out.read_text())
    lengths = {1: 3, 2: 4, 3: 3}
    for r in results:
        assert len(r["segmentations"]) == lengths[r["video_id"]]
    names = json.loads((tmp_path / "out" / "r.videos.json").read_text())
    assert [(v["video_id"], v["name"], v["frames"]) for v in names["videos"]] == [
        (1, "clip1", 3), (2, "clip2", 4), (3, "clip10", 3)]
    assert names["videos"][2]["path"] == str(clips / "clip10")
    assert sorted(p.name for p in work_dir(out).iterdir()) == [f"video-{i:05d}.json" for i in (1, 2, 3)]
    assert err.count("): computed") == 3 and json.loads(stdout)["videos"] == 3
    assert (tmp_path / "out" / "r.zip").is_file() and (tmp_path / "out" / "r.run.json").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_give_the_same_file_as_one_process_and_resume(tmp_path, small_model, capsys):
    clips = _clips(tmp_path / "clips")
    one = tmp_path / "one.json"
    code, _, err = _infer(capsys, clips, "--model", small_model, "--out", one)
    assert code == 0, err

    two = tmp_path / "two.json"
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1",
               "CUDA_VISIBLE_DEVICES": "", "QT_QPA_PLATFORM": "offscreen"}
        procs.append(subprocess.Popen([sys.executable, "-m", "core.cli", "infer", str(clips), "--model",
                                       str(small_model), "--out", str(two), "--device", "cpu"], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    # each rank ran only its own share: clip2 (4 frames) on rank 0, clip1 + clip10 on rank 1
    assert outs[0][1].count("): computed") == 1 and "video 2 (clip2): computed" in outs[0][1]
    assert "video 1 (clip1): computed" in outs[1][1] and "video 3 (clip10): computed" in outs[1][1]
    assert two.read_bytes() == one.read_bytes()  # byte for byte, so also after sorting
    key = lambda r: (r["video_id"], r["score"])  # noqa: E731
    assert sorted(json.loads(two.read_text()), key=key) == sorted(json.loads(one.read_text()), key=key)

    # resume: drop one shard, rerun, only that video is recomputed and the merged file is the same
    shard = shard_path(work_dir(one), 3)
    before = {i: shard_path(work_dir(one), i).stat().st_mtime_ns for i in (1, 2)}
    shard.unlink()
    code, _, err = _infer(capsys, clips, "--model", small_model, "--out", one)
    assert code == 0, err
    assert err.count("): computed") == 1 and "video 3 (clip10): computed" in err and err.count("): reused") == 2
    assert {i: shard_path(work_dir(one), i).stat().st_mtime_ns for i in (1, 2)} == before
    assert one.read_bytes() == two.read_bytes()

    # another PKR is another run: nothing is reused
    code, _, err = _infer(capsys, clips, "--model", small_model, "--out", one, "--pkr", "0.3")
    assert code == 0, err
    assert err.count("): computed") == 3 and "): reused" not in err


def test_a_bad_clip_fails_alone_and_nothing_is_merged(tmp_path, small_model, capsys):
    clips = _clips(tmp_path / "clips")
    (clips / "clip3").mkdir()  # zero frames
    (clips / "clip4.mp4").write_text("not a video\n")  # unreadable
    out = tmp_path / "r.json"
    out.write_text("[]\n")  # a good earlier result stays
    code, stdout, err = _infer(capsys, clips, "--model", small_model, "--out", out)
    assert code == 1
    assert "Traceback" not in err
    assert "2 of 5 clips failed; nothing was merged" in err
    assert "video 3 (clip3" in err and "video 4 (clip4" in err
    assert json.loads(stdout)["failed"] == [3, 4]
    assert out.read_text() == "[]\n" and not (tmp_path / "r.videos.json").exists()
    work = work_dir(out)
    assert sorted(p.name for p in work.iterdir()) == ["video-00001.json", "video-00002.json", "video-00003.error.json",
                                                      "video-00004.error.json", "video-00005.json"]
    assert "clip3" in json.loads((work / "video-00003.error.json").read_text())["path"]

    # fix the input: the finished clips are reused, only the two bad ones are run again, then all is merged
    cv2.imwrite(str(clips / "clip3" / "00000.jpg"), np.full((48, 64, 3), 90, np.uint8))
    writer = cv2.VideoWriter(str(clips / "clip4.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for t in range(2):
        writer.write(np.full((48, 64, 3), 40 * t + 20, np.uint8))
    writer.release()
    code, _, err = _infer(capsys, clips, "--model", small_model, "--out", out)
    assert code == 0, err
    assert err.count("): computed") == 2 and err.count("): reused") == 3
    assert "video 3 (clip3): computed" in err and "video 4 (clip4): computed" in err
    assert sorted(p.name for p in work.iterdir()) == [f"video-{i:05d}.json" for i in range(1, 6)]
    assert {r["video_id"] for r in json.loads(out.read_text())} <= {1, 2, 3, 4, 5}
    assert [v["name"] for v in json.loads((tmp_path / "r.videos.json").read_text())["videos"]] == [
        "clip1", "clip2", "clip3", "clip4", "clip10"]


def test_batch_clips_are_streamed_not_cached_and_read_ahead_changes_nothing(tmp_path, small_model, capsys,
                                                                              monkeypatch):
    """A batch run reads each clip in one uncached pass (a long 4K clip is not held in memory), optionally
    on a read-ahead thread (--prefetch), with the same merged file either way; --threads applies too."""
    from core.data.sources import FrameSource

    def cached_iteration(self):
        raise AssertionError(f"{self.path}: iterated with caching (the whole clip would stay decoded)")

    monkeypatch.setattr(FrameSource, "__iter__", cached_iteration)
    clips = _clips(tmp_path / "clips")
    threads = torch.get_num_threads()
    outs = []
    try:
        for depth in (0, 3):
            out = tmp_path / f"out{depth}" / "r.json"
            out.parent.mkdir()
            code, _, err = _infer(capsys, clips, "--model", small_model, "--out", out, "--prefetch", depth,
                                  "--threads", 1)
            assert code == 0, err
            assert torch.get_num_threads() == 1
            outs.append(out.read_bytes())
    finally:
        torch.set_num_threads(threads)
    assert outs[0] == outs[1] and len(json.loads(outs[0])) > 0
