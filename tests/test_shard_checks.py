"""Issue 25, item 8 (and 13's forged 40000² shard): batch shards are checked before they are reused or merged.

A shard in ``OUT.work/`` with the right key but 5 frames of 100x100 for a 3-frame 64x48 clip was merged
with exit 0. Now every shard is checked against its own checksum and against its clip (frame count,
names, size, masks); a bad one is recomputed on reuse, and fails its clip at the merge with a message
naming the shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core import batch_infer
from core.batch_infer import (
    SHARD_FORMAT,
    BatchSummary,
    Clip,
    ShardRefused,
    clip_facts,
    read_shard,
    run_batch,
    shard_bytes,
    shard_path,
    work_dir,
)
from core.data.rle import encode_mask
from core.data.sources import open_source
from core.export import RunRecord
from core.results import ClipResults, CompactFrame

ROOT = Path(__file__).resolve().parents[1]
N, H, W = 3, 48, 64
KEY = {"model": "m", "model_sha256": None, "pkr": 0.5, "mode": "vpp", "skip_corrupt": False}


def _frames(folder: Path, n: int = N) -> Path:
    folder.mkdir(parents=True)
    for t in range(n):
        cv2.imwrite(str(folder / f"{t:05d}.png"), np.full((H, W, 3), 40 * t, np.uint8))
    return folder


def _clip(folder: Path, video_id: int = 1) -> Clip:
    return Clip(video_id, folder.name, folder, N, lambda **kw: open_source(folder, **kw))


def _results(n: int = N, h: int = H, w: int = W) -> ClipResults:
    out = ClipResults(n, h, w)
    for t in range(n):
        m = np.zeros((h, w), bool)
        m[5:20, 5 + t:25 + t] = True
        out.add(CompactFrame(t, h, w, np.array([7]), np.array([1]), np.array([0.8], np.float32), (encode_mask(m),),
                             None, np.zeros((0, 1, 1), bool), (), 0.5, 1.0, 2.0))
    return out


def _names(n: int = N) -> list[str]:
    return [f"{t:05d}.png" for t in range(n)]


def _forge(path: Path, body: dict) -> None:
    """What a forger who read this module writes: a body and a header with its correct checksum."""
    data = json.dumps(body, separators=(",", ":")).encode()
    header = {"format": SHARD_FORMAT, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    path.write_bytes(json.dumps(header).encode() + b"\n" + data)


def _body(path: Path) -> dict:
    return json.loads(path.read_bytes().partition(b"\n")[2])


@pytest.fixture
def setup(tmp_path):
    clip = _clip(_frames(tmp_path / "clips" / "c1"))
    work = tmp_path / "r.json.work"
    work.mkdir()
    target = shard_path(work, 1)
    target.write_bytes(shard_bytes(clip, _names(), _results(), KEY))
    return clip, work, target


def _read(clip, target):
    return read_shard(target, clip, KEY, clip_facts(clip, "raise"))


def test_a_shard_we_wrote_reads_back(setup):
    clip, _work, target = setup
    shard = _read(clip, target)
    assert shard is not None and shard.frame_names == tuple(_names()) and shard.results.num_frames == N
    assert read_shard(target, clip, {**KEY, "pkr": 0.3}, clip_facts(clip, "raise")) is None  # another run's


@pytest.mark.parametrize("forgery, expected", [
    (lambda b: b.update(num_frames=5, height=100, width=100, frame_names=_names(5),
                        frames=b["frames"] + b["frames"][:2]), "100x100"),
    (lambda b: b.update(num_frames=2, frame_names=_names(2), frames=b["frames"][:2]), "2 frames, the clip has 3"),
    (lambda b: b.update(frame_names=["a.png", "b.png", "c.png"]), "named 'a.png'"),
    (lambda b: b["frames"][1]["rles"][0].update(size=[10, 10]), "[10, 10]"),
    (lambda b: b["frames"][1]["rles"][0].update(counts="0" + b["frames"][1]["rles"][0]["counts"]), "cannot be decoded"),
    (lambda b: b["frames"][0].update(scores=[7.0]), "scores"),
    (lambda b: b["frames"][0].update(track_ids=[1, 1], category_ids=[1, 1], scores=[0.5, 0.5],
                                     rles=b["frames"][0]["rles"] * 2), "distinct"),
    (lambda b: b.update(ytvis_tracks=4), "track count"),
])
def test_a_forged_shard_with_a_valid_checksum_is_refused_naming_it(setup, forgery, expected):
    clip, _work, target = setup
    body = _body(target)
    forgery(body)
    _forge(target, body)
    with pytest.raises(ShardRefused) as info:
        _read(clip, target)
    assert str(info.value).startswith(f"{target}: ") and expected in str(info.value)
    assert "delete it and rerun" in str(info.value)


def test_an_edited_or_truncated_shard_fails_its_checksum(setup):
    clip, _work, target = setup
    raw = target.read_bytes()
    target.write_bytes(raw.replace(b'"scores":[0.8', b'"scores":[0.9', 1))
    with pytest.raises(ShardRefused, match="does not match its checksum"):
        _read(clip, target)
    target.write_bytes(raw[:-10])
    with pytest.raises(ShardRefused, match="truncated"):
        _read(clip, target)
    target.write_bytes(b'{"format":"vpp-batch-shard/1"}')  # the old format, no header line
    with pytest.raises(ShardRefused, match="no header line"):
        _read(clip, target)


def test_a_link_or_a_pipe_in_the_shard_place_is_refused_unread(setup, tmp_path):
    clip, _work, target = setup
    secret = tmp_path / "secret.json"
    secret.write_bytes(target.read_bytes())  # even a valid shard: a link is never followed
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(ShardRefused, match="symbolic link"):
        _read(clip, target)
    target.unlink()
    os.mkfifo(target)  # read without the check, this would block forever
    with pytest.raises(ShardRefused, match="named pipe"):
        _read(clip, target)


def _merge_only(monkeypatch):
    """run_batch with this rank's work replaced by nothing: the merge reads what another rank left."""
    monkeypatch.setattr(batch_infer, "run_shard", lambda *a, **k: BatchSummary(0))


def test_the_merge_refuses_a_forged_shard_and_names_it(setup, monkeypatch, tmp_path):
    clip, _work, target = setup
    body = _body(target)
    body.update(num_frames=5, height=100, width=100, frame_names=_names(5), frames=body["frames"] + body["frames"][:2])
    _forge(target, body)
    _merge_only(monkeypatch)
    logs = []
    out = tmp_path / "r.json"
    summary = run_batch([clip], None, outputs={"ytvis": out, "zip": None, "davis": None, "coco": None},
                        record=RunRecord("t", "m"), categories=[], inputs=[clip.path], key=KEY, log=logs.append)
    assert summary.code == 1 and list(summary.failed) == [1]
    assert summary.failed[1].startswith(f"{target}: ") and "100x100" in summary.failed[1]
    assert str(target) in logs[-1] and not out.exists() and not (tmp_path / "r.videos.json").exists()


def test_the_merge_takes_a_good_shard(setup, monkeypatch, tmp_path):
    clip, _work, _target = setup
    _merge_only(monkeypatch)
    out = tmp_path / "r.json"
    summary = run_batch([clip], None, outputs={"ytvis": out, "zip": None, "davis": None, "coco": None},
                        record=RunRecord("t", "m"), categories=[], inputs=[clip.path], key=KEY, log=lambda m: None)
    assert summary.code == 0 and len(json.loads(out.read_text())) == 1
    assert json.loads((tmp_path / "r.videos.json").read_text())["videos"][0]["frames"] == N


HUGE = """
import json, resource, sys
from pathlib import Path
limit = 2 << 30  # cv2 and numpy alone need about 1 GiB of address space
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.path.insert(0, sys.argv[1])
from core import batch_infer
from core.batch_infer import BatchSummary, Clip, run_batch
from core.data.sources import open_source
from core.export import RunRecord
folder, out = Path(sys.argv[2]), Path(sys.argv[3])
batch_infer.run_shard = lambda *a, **k: BatchSummary(0)
clip = Clip(1, folder.name, folder, 3, lambda **kw: open_source(folder, **kw))
summary = run_batch([clip], None, outputs={"ytvis": out, "zip": None, "davis": "DAVIS", "coco": None},
                    record=RunRecord("t", "m"), categories=[], inputs=[folder], key=json.loads(sys.argv[4]),
                    log=lambda m: None)
print(json.dumps({"code": summary.code, "failed": summary.failed}))
"""


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS")
def test_a_forged_40000_square_shard_is_refused_before_allocating(setup, tmp_path):
    clip, _work, target = setup
    side = 40_000
    from pycocotools import mask as mask_utils

    # one run covering every pixel: a valid RLE of a 40000x40000 mask (1.6e9 pixels) in a few bytes
    full = {"size": [side, side], "counts": mask_utils.frPyObjects(
        {"size": [side, side], "counts": [0, side * side]}, side, side)["counts"].decode()}
    body = _body(target)
    frame = {"track_ids": [1], "category_ids": [1], "scores": [0.9], "rles": [full], "keep_ratio": 1.0,
             "gflops": 0.0, "ms": 0.0}
    body.update(height=side, width=side, frames=[frame] * N, ytvis_tracks=1)
    _forge(target, body)
    davis = tmp_path / "masks"
    code = HUGE.replace('"DAVIS"', repr(str(davis)))
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(clip.path), str(tmp_path / "r.json"),
                           json.dumps(KEY)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["code"] == 1 and str(target) in summary["failed"]["1"] and "40000x40000" in summary["failed"]["1"]
    assert not davis.exists()


def test_vpp_infer_recomputes_a_forged_shard_and_says_which(tmp_path, capsys):
    """End to end: the forged shard is reported by name, the video computed again, the merge is right."""
    torch = pytest.importorskip("torch")
    from core.cli import main
    from core.model.vpp.builder import build_vpp
    from core.model.vpp.checkpoint import save_checkpoint
    from core.model.vpp.config import VPPConfig

    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=64, num_queries=8, decoder_layers=2, num_classes=2,
                                categories=("a", "b"))
    model = tmp_path / "m.safetensors"
    save_checkpoint(build_vpp(cfg).eval(), cfg, model)
    clips = tmp_path / "clips"
    _frames(clips / "c1")
    _frames(clips / "c2")
    out = tmp_path / "r.json"
    assert main(["infer", str(clips), "--model", str(model), "--out", str(out)]) == 0
    first = out.read_bytes()
    target = shard_path(work_dir(out), 1)
    body = _body(target)
    body.update(num_frames=5, height=100, width=100, frame_names=_names(5), frames=body["frames"] + body["frames"][:2])
    _forge(target, body)
    capsys.readouterr()
    assert main(["infer", str(clips), "--model", str(model), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {target}: not a shard VPP Studio wrote" in err and "video 1 (c1): computed" in err
    assert "video 2 (c2): reused" in err
    assert out.read_bytes() == first
    frames = [v["frames"] for v in json.loads((tmp_path / "r.videos.json").read_text())["videos"]]
    assert frames == [N, N]


def test_with_skip_corrupt_a_shard_may_hold_an_in_order_subset_of_the_frames(tmp_path):
    folder = _frames(tmp_path / "clips" / "c1")
    (folder / "00001.png").write_bytes(b"not a png")  # skipped by --skip-corrupt
    clip = _clip(folder)
    key = {**KEY, "skip_corrupt": True}
    facts = clip_facts(clip, "skip")
    target = tmp_path / "video-00001.json"
    target.write_bytes(shard_bytes(clip, ["00000.png", "00002.png"], _results(2), key))
    shard = read_shard(target, clip, key, facts)
    assert shard is not None and shard.frame_names == ("00000.png", "00002.png")
    target.write_bytes(shard_bytes(clip, ["00002.png", "00000.png"], _results(2), key))
    with pytest.raises(ShardRefused, match="not frames of the clip"):
        read_shard(target, clip, key, facts)
