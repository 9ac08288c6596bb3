"""Hostile batch shards, exports, downloads and evaluation inputs (issue 25, items 8, 9, 10, 13).

Each check builds one hostile input under its temp folder and runs the project's code on it: in this
process where nothing can hang, else in a subprocess with a timeout (and RLIMIT_AS for memory). What is
checked is the README's "Output rules": a shard is merged only when it is ours and fits its clip (its
checksum, frame count, names, size, masks), the error naming the shard; no export drops a track silently
(more than 255 objects, a stored area of 0); a download is cut at its size cap, stopped when the server
stalls or drips, and promoted only when proven complete; a refused import does not stay cached; eval
memory follows the categories that occur.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.data.rle import encode_mask  # noqa: E402
from core.errors import DataError  # noqa: E402

N, H, W = 3, 24, 32
KEY = {"model": "m", "model_sha256": None, "pkr": 0.5, "mode": "vpp", "skip_corrupt": False}
VICTIM = "root:x:0:0:root:/root:/bin/bash\n" * 20
PAYLOAD = bytes(range(256)) * 200


# -- helpers --------------------------------------------------------------------------------------------


def _run(code: str, *args: str, timeout: float = 60, mem_gb: float | None = None) -> subprocess.CompletedProcess | str:
    """``code`` in a fresh Python (argv[1:] = ``args``); a string when it hung."""
    def limit():  # pragma: no cover - in the child
        if mem_gb is not None:
            import resource

            n = int(mem_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (n, n))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit, env=env)
    except subprocess.TimeoutExpired:
        return f"hung: no answer within {timeout} s"


def _child_failed(proc: subprocess.CompletedProcess | str) -> str | None:
    if isinstance(proc, str):
        return proc
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr[-1500:]}"
    return None


def _clip(tmp: Path):
    import cv2

    from core.batch_infer import Clip
    from core.data.sources import open_source

    folder = tmp / "clips" / "c1"
    folder.mkdir(parents=True)
    for t in range(N):
        cv2.imwrite(str(folder / f"{t:05d}.png"), np.full((H, W, 3), 30 * t, np.uint8))
    return Clip(1, "c1", folder, N, lambda **kw: open_source(folder, **kw))


def _results(n: int = N, tracks: int = 1, zero_areas: bool = False):
    from core.results import ClipResults, CompactFrame

    out = ClipResults(n, H, W)
    for t in range(n):
        masks = []
        for k in range(tracks):
            m = np.zeros((H, W), bool)
            m[k // W, k % W] = True
            masks.append(m)
        out.add(CompactFrame(t, H, W, np.arange(1, tracks + 1), np.ones(tracks, np.int64),
                             np.full(tracks, 0.5, np.float32), tuple(encode_mask(m) for m in masks),
                             np.zeros(tracks, np.int64) if zero_areas else None, np.zeros((0, 1, 1), bool), (),
                             0.5, 1.0, 1.0))
    return out


def _names(n: int = N) -> list[str]:
    return [f"{t:05d}.png" for t in range(n)]


def _shard(tmp: Path):
    """A valid shard of a 3-frame clip; returns (clip, shard path)."""
    from core.batch_infer import shard_bytes, shard_path

    clip = _clip(tmp)
    work = tmp / "r.json.work"
    work.mkdir()
    target = shard_path(work, 1)
    target.write_bytes(shard_bytes(clip, _names(), _results(), KEY))
    return clip, target


def _forge(path: Path, change: Callable[[dict], None]) -> None:
    """Rewrite a shard's body and a header with the right checksum (a forger who read the code)."""
    from core.batch_infer import SHARD_FORMAT

    body = json.loads(path.read_bytes().partition(b"\n")[2])
    change(body)
    data = json.dumps(body).encode()
    head = {"format": SHARD_FORMAT, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    path.write_bytes(json.dumps(head).encode() + b"\n" + data)


def _refused(clip, target: Path, expect: str) -> str | None:
    from core.batch_infer import ShardRefused, clip_facts, read_shard

    try:
        shard = read_shard(target, clip, KEY, clip_facts(clip, "raise"))
    except ShardRefused as exc:
        if not str(exc).startswith(f"{target}: ") or expect not in str(exc):
            return f"refused, but the message does not name the shard and {expect!r}: {exc}"
        return None
    return f"accepted: {shard and shard.results.num_frames} frames of {shard and shard.results.width}x" \
           f"{shard and shard.results.height}"


# -- shards ---------------------------------------------------------------------------------------------


def shard_forged_frames_and_size(tmp: Path) -> str | None:
    clip, target = _shard(tmp)
    _forge(target, lambda b: b.update(num_frames=5, height=100, width=100, frame_names=_names(5),
                                      frames=b["frames"] + b["frames"][:2]))
    return _refused(clip, target, "100x100")


def shard_forged_names(tmp: Path) -> str | None:
    clip, target = _shard(tmp)
    _forge(target, lambda b: b.update(frame_names=["x.png", "y.png", "z.png"]))
    return _refused(clip, target, "named 'x.png'")


def shard_forged_mask(tmp: Path) -> str | None:
    clip, target = _shard(tmp)
    _forge(target, lambda b: b["frames"][2]["rles"][0].update(counts="1" + b["frames"][2]["rles"][0]["counts"]))
    return _refused(clip, target, "cannot be decoded")


def shard_edited_without_checksum(tmp: Path) -> str | None:
    clip, target = _shard(tmp)
    target.write_bytes(target.read_bytes().replace(b'"scores":[0.5', b'"scores":[0.6', 1))
    return _refused(clip, target, "checksum")


def shard_symlink_not_followed(tmp: Path) -> str | None:
    clip, target = _shard(tmp)
    victim = tmp / "victim.json"
    victim.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(victim)
    problem = _refused(clip, target, "symbolic link")
    if problem:
        return problem
    from core.batch_infer import run_shard

    class Session:  # one empty result per frame
        def reset(self):
            pass

        def step(self, frame):
            return SimpleNamespace(masks=np.zeros((0, H, W), bool), track_ids=[], category_ids=[], scores=[],
                                   kept=np.zeros((0, 1, 1), bool), stage_names=(), keep_ratio=1.0, gflops=0.0,
                                   ms=0.0, index=0)

    before = victim.read_bytes()
    summary = run_shard([clip], Session(), work=target.parent, key=KEY, log=lambda m: None)
    if victim.read_bytes() != before or not target.is_symlink():
        return "the shard write went through the link"
    if 1 not in summary.failed or str(target) not in summary.failed[1]:
        return f"the clip did not fail naming the link: {summary.failed}"
    return None


_PIPES = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from core.batch_infer import Clip, ShardRefused, clip_facts, read_error, read_shard
from core.data.sources import open_source
folder, work = Path(sys.argv[2]), Path(sys.argv[3])
clip = Clip(1, folder.name, folder, 3, lambda **kw: open_source(folder, **kw))
assert read_error(work, 1) is None
try:
    read_shard(work / "video-00001.json", clip, {}, clip_facts(clip, "raise"))
except ShardRefused as exc:
    assert "named pipe" in str(exc), exc
else:
    raise SystemExit("a FIFO shard was not refused")
"""


def shard_and_error_file_fifos_do_not_hang(tmp: Path) -> str | None:
    clip, target = _shard(tmp)
    target.unlink()
    os.mkfifo(target)
    os.mkfifo(target.with_name("video-00001.error.json"))
    return _child_failed(_run(_PIPES, str(ROOT), str(clip.path), str(target.parent), timeout=60))


_HUGE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from core import batch_infer
from core.batch_infer import BatchSummary, Clip, run_batch
from core.data.sources import open_source
from core.export import RunRecord
folder, out, davis = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
batch_infer.run_shard = lambda *a, **k: BatchSummary(0)  # another rank wrote the shard
clip = Clip(1, folder.name, folder, 3, lambda **kw: open_source(folder, **kw))
s = run_batch([clip], None, outputs={"ytvis": out, "zip": None, "davis": davis, "coco": None},
              record=RunRecord("t", "m"), categories=[], inputs=[folder], key=json.loads(sys.argv[5]), log=print)
print(json.dumps({"code": s.code, "failed": s.failed}))
"""


def shard_forged_40000_square_refused_before_allocating(tmp: Path) -> str | None:
    from pycocotools import mask as mask_utils

    clip, target = _shard(tmp)
    side = 40_000
    counts = mask_utils.frPyObjects({"size": [side, side], "counts": [0, side * side]}, side, side)["counts"]
    frame = {"track_ids": [1], "category_ids": [1], "scores": [0.9], "keep_ratio": 1.0, "gflops": 0.0, "ms": 0.0,
             "rles": [{"size": [side, side], "counts": counts.decode()}]}
    _forge(target, lambda b: b.update(height=side, width=side, frames=[frame] * N, ytvis_tracks=1))
    proc = _run(_HUGE, str(ROOT), str(clip.path), str(tmp / "r.json"), str(tmp / "masks"), json.dumps(KEY),
                mem_gb=2, timeout=120)
    if (problem := _child_failed(proc)) is not None:
        return problem
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    if s["code"] != 1 or str(target) not in s["failed"].get("1", ""):
        return f"the merge did not refuse the shard by name: {s}"
    if (tmp / "r.json").exists() or (tmp / "masks").exists():
        return "something was merged"
    return None


# -- exports --------------------------------------------------------------------------------------------


def export_300_tracks_on_a_frame(tmp: Path) -> str | None:
    from core.data.davis import read_davis_png
    from core.export import RunRecord, VideoExport, export_results, import_tracks

    davis = tmp / "masks"
    export_results([VideoExport(1, "v", tuple(_names()), _results(tracks=300))],
                   {"davis": davis}, record=RunRecord("probe", "m"))
    labels = read_davis_png(davis / "00000.png")
    found = len(np.unique(labels[labels > 0]))
    if found != 300:
        return f"{found} of 300 tracks in the DAVIS PNG"
    back = import_tracks(davis, num_frames=N, height=H, width=W)
    return None if len(back.tracks) == 300 else f"{len(back.tracks)} of 300 tracks import back"


def export_stored_area_zero(tmp: Path) -> str | None:
    from core.data.davis import read_davis_png
    from core.export import RunRecord, VideoExport, export_results

    out, coco, davis = tmp / "r.json", tmp / "c.json", tmp / "masks"
    export_results([VideoExport(1, "v", tuple(_names()), _results(tracks=2, zero_areas=True))],
                   {"ytvis": out, "coco": coco, "davis": davis}, record=RunRecord("probe", "m"))
    counts = (len(json.loads(out.read_text())), len(json.loads(coco.read_text())["annotations"]) // N,
              len(np.unique(read_davis_png(davis / "00000.png"))) - 1)
    return None if counts == (2, 2, 2) else f"tracks in YTVIS / COCO / DAVIS: {counts}, not 2 each"


def export_project_stored_area_zero(tmp: Path) -> str | None:
    from core.app.document import ClipInfo, Document
    from core.cli import main

    doc = Document(ClipInfo(str(tmp / "clip"), N, H, W, tuple(_names())), categories={1: "a"})
    for k in range(2):
        m = np.zeros((H, W), bool)
        m[k, k] = True
        doc.create_track(0, m, 1)
    path = doc.save(tmp / "p.vppproj")
    data = json.loads(path.read_text())
    for t in data["tracks"]:
        for f in t["frames"].values():
            f[2] = 0
    path.write_text(json.dumps(data))
    out = tmp / "r.json"
    import contextlib

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["export", str(path), "--out", str(out)])
    if code != 0:
        return f"vpp export exited {code}: {err.getvalue()[-500:]}"
    n = len(json.loads(out.read_text()))
    return None if n == 2 else f"vpp export wrote {n} of 2 tracks (a stored area of 0 dropped the others)"


# -- downloads ------------------------------------------------------------------------------------------


class _Server(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False

    def do_GET(self):
        mode, rng = self.server.mode, self.headers.get("Range")
        self.server.ranges.append(rng)
        if mode == "header-drip":
            self._send(b"HTTP/1.1 200 OK\r\n")
            for _ in range(100):
                if not self._send(b"X"):
                    return
                time.sleep(0.05)
            return
        if mode == "lie-416" and rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{start}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if mode in ("plain", "lie-416"):
            self.send_header("Content-Length", str(len(PAYLOAD)))
        self.close_connection = True
        self.end_headers()
        if mode == "endless":
            for _ in range(500):
                if not self._send(b"\0" * 65536):
                    return
        elif mode == "drip":
            for _ in range(100):
                if not self._send(b"x"):
                    return
                time.sleep(0.02)
        elif mode in ("cut", "lie-416"):
            self._send(PAYLOAD[:5000] if mode == "cut" else PAYLOAD)
        else:
            self._send(PAYLOAD)


def _serve(mode: str):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    srv.daemon_threads, srv.mode, srv.ranges = True, mode, []
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/m.pth"


def _download(mode: str, tmp: Path, expect: str, **kw) -> str | None:
    """Download from a server in ``mode``: a DownloadError matching ``expect`` and no final file, else what went
    wrong."""
    from core import model_zoo

    os.environ["no_proxy"] = "127.0.0.1,localhost"
    srv, url = _serve(mode)
    try:
        entry = kw.pop("entry", None)
        model_zoo.download(entry(url) if entry else url, tmp / "dl", progress=False, **kw)
    except model_zoo.DownloadError as exc:
        if not re.search(expect, str(exc)):
            return f"refused, but not saying {expect!r}: {exc}"
    else:
        return "the download was accepted"
    finally:
        srv.shutdown()
        srv.server_close()
    if (tmp / "dl" / "m.pth").exists():
        return "a final file was written"
    return None


def _entry(size: int | None):
    from core.model_zoo import ZooEntry

    return lambda url: ZooEntry(name="m", variant="tiny", kind="vpp", pkr=0.5, url=url, sha256=None, size=size,
                                config=None, notes="")


def download_endless_body_cut_at_the_entry_size(tmp: Path) -> str | None:
    problem = _download("endless", tmp, r"more than the \d+ bytes this file may have", entry=_entry(100_000))
    if problem is None and (tmp / "dl" / "m.pth.part").exists():
        return "the oversized partial file was kept"
    return problem


def download_one_byte_at_a_time(tmp: Path) -> str | None:
    return _download("drip", tmp, "too slow", min_rate=(1000, 0.3))


def download_headers_one_byte_at_a_time(tmp: Path) -> str | None:
    return _download("header-drip", tmp, "did not answer within", timeout=0.5)


def download_truncated_without_length(tmp: Path) -> str | None:
    problem = _download("cut", tmp, "did not say how long the file is")
    if problem:
        return problem
    from core import released_models

    state = released_models.local_model(_entry(None)("http://x/m.pth"), tmp / "dl").state
    return None if state == "absent" else f"`vpp models list` says {state}"


def download_416_to_a_resume_not_promoted(tmp: Path) -> str | None:
    from core import model_zoo

    (tmp / "dl").mkdir()
    (tmp / "dl" / "m.pth.part").write_bytes(PAYLOAD[:3000])
    os.environ["no_proxy"] = "127.0.0.1,localhost"
    srv, url = _serve("lie-416")
    try:
        path = model_zoo.download(url, tmp / "dl", progress=False, timeout=5)
    finally:
        srv.shutdown()
        srv.server_close()
    return None if path.read_bytes() == PAYLOAD else f"promoted {path.stat().st_size} bytes of {len(PAYLOAD)}"


def download_part_link_not_written_through(tmp: Path) -> str | None:
    from core.atomic import NotOurFile

    (tmp / "dl").mkdir()
    victim = tmp / "victim.txt"
    victim.write_text(VICTIM)
    (tmp / "dl" / "m.pth.part").symlink_to(victim)
    os.environ["no_proxy"] = "127.0.0.1,localhost"
    srv, url = _serve("plain")
    try:
        from core import model_zoo

        model_zoo.download(url, tmp / "dl", progress=False, timeout=5)
    except NotOurFile:
        pass
    else:
        return "downloaded through a link in place of the partial file"
    finally:
        srv.shutdown()
        srv.server_close()
    return None if victim.read_text() == VICTIM else "the link's target was changed"


def download_refused_import_not_cached(tmp: Path) -> str | None:
    from core import release_import, released_models
    from core.errors import CheckpointError

    def refuse(src, out, *, variant):
        raise CheckpointError(f"{src}: refused by the probe")

    os.environ["no_proxy"] = "127.0.0.1,localhost"
    srv, url = _serve("plain")
    saved = release_import.import_release_checkpoint
    release_import.import_release_checkpoint = refuse
    try:
        entry = _entry(None)(url)
        try:
            released_models.get_model(entry, tmp, progress=False)
        except CheckpointError as exc:
            if "moved to" not in str(exc):
                return f"the refusal does not say where the file went: {exc}"
        else:
            return "the refused import succeeded"
    finally:
        release_import.import_release_checkpoint = saved
        srv.shutdown()
        srv.server_close()
    state = released_models.local_model(entry, tmp).state
    return None if state == "absent" and not (tmp / "m.pth").exists() else f"the refused file stays as {state}"


# -- evaluation memory ----------------------------------------------------------------------------------

_EVAL = """
import argparse, json, sys
sys.path.insert(0, sys.argv[1])
from core.commands import eval as ev
from core.evaluation.ground_truth import load_ground_truth, restricted_gt_json, restricted_results, score
ev.run(argparse.Namespace(gt=sys.argv[2], results=sys.argv[3], json_out=None, area_ranges="ytvis",
                          no_frame_metrics=False))
gt = load_ground_truth(sys.argv[2], num_frames=2, height=8, width=8, names=["0.jpg", "1.jpg"])
entries = restricted_results(json.load(open(sys.argv[3])), gt.annotated)
print(json.dumps(score(restricted_gt_json([gt], {e["category_id"] for e in entries}), entries)))
"""


def eval_and_sweep_with_100000_categories(tmp: Path) -> str | None:
    m = np.zeros((8, 8), bool)
    m[2:5, 2:5] = True
    rle = encode_mask(m)
    gt = {"videos": [{"id": 1, "width": 8, "height": 8, "length": 2, "file_names": ["a/0.jpg", "a/1.jpg"]}],
          "categories": [{"id": i, "name": f"c{i}"} for i in range(1, 100_001)],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 99_999, "iscrowd": 0, "segmentations": [rle, rle]}]}
    (tmp / "gt.json").write_text(json.dumps(gt))
    (tmp / "r.json").write_text(json.dumps([{"video_id": 1, "category_id": 99_999, "score": 0.9,
                                             "segmentations": [rle, rle]}]))
    proc = _run(_EVAL, str(ROOT), str(tmp / "gt.json"), str(tmp / "r.json"), mem_gb=1, timeout=120)
    if (problem := _child_failed(proc)) is not None:
        return problem
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return None if abs(figures["AP"] - 1) < 1e-9 else f"sweep scoring gave AP {figures['AP']}"


def eval_track_longer_than_255_frames(tmp: Path) -> str | None:
    from core.data.ytvis import parse_ytvis_gt, parse_ytvis_results
    from core.evaluation.ytvis_eval import evaluate

    m = np.zeros((8, 8), bool)
    m[1:4, 1:4] = True
    rle, n = encode_mask(m), 400
    gt = parse_ytvis_gt({"videos": [{"id": 1, "width": 8, "height": 8, "length": n,
                                     "file_names": [f"a/{i}.jpg" for i in range(n)]}],
                         "categories": [{"id": 1, "name": "a"}],
                         "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                                          "segmentations": [rle] * n}]})
    res = parse_ytvis_results([{"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": [rle] * n}], gt)
    try:
        figures = evaluate(gt, res)
    except (DataError, OverflowError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if abs(figures["segm_AP"] - 1) < 1e-9 else f"segm_AP {figures['segm_AP']}"


def cases() -> list[tuple[str, Callable[[Path], str | None]]]:
    return [(f.__name__.replace("_", " "), f) for f in (
        shard_forged_frames_and_size, shard_forged_names, shard_forged_mask, shard_edited_without_checksum,
        shard_symlink_not_followed, shard_and_error_file_fifos_do_not_hang,
        shard_forged_40000_square_refused_before_allocating,
        export_300_tracks_on_a_frame, export_stored_area_zero, export_project_stored_area_zero,
        download_endless_body_cut_at_the_entry_size, download_one_byte_at_a_time,
        download_headers_one_byte_at_a_time, download_truncated_without_length,
        download_416_to_a_resume_not_promoted, download_part_link_not_written_through,
        download_refused_import_not_cached,
        eval_and_sweep_with_100000_categories, eval_track_longer_than_255_frames,
    )]
