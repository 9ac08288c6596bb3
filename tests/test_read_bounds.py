"""Bounded reading of YouTube-VIS files and bounded memory of ``vpp eval`` (issue 12, "Memory and size").

Zip bombs, oversized and deeply nested JSON are refused with one message naming the file; running out of
memory anywhere in the readers or the evaluator is one ``error:`` line, never a traceback; and the
evaluation's memory grows with the results file, not a hundred times faster (checked under RLIMIT_AS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from ytvis_factories import dump, gt_dict, results_list

import core.data.ytvis as ytvis
from core.cli import main
from core.data import rle
from core.data.errors import YtvisReadError
from core.data.ytvis import read_ytvis_gt, read_ytvis_results

MiB = 2**20
REPO = Path(__file__).resolve().parents[1]
LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A real zip bomb: 300 MiB of spaces deflated to about 300 KiB, in a results zip."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    chunk = b" " * (4 * MiB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("results.json", "w") as fh:
        for _ in range(75):
            fh.write(chunk)
    assert path.stat().st_size < MiB
    return path


@pytest.fixture()
def inflated(monkeypatch) -> list[int]:
    """Counts the bytes zipfile hands out while inflating a member."""
    counted = [0]
    read = zipfile.ZipExtFile.read

    def counting(self, n=-1):
        data = read(self, n)
        counted[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting)
    return counted


def _gt(tmp_path):
    return read_ytvis_gt(dump(tmp_path / "gt.json", gt_dict()))


def test_zip_bomb_is_refused_by_its_declared_size_before_inflating(bomb, monkeypatch, inflated, tmp_path):
    monkeypatch.setattr(ytvis, "MAX_ZIP_MEMBER_BYTES", 64 * MiB)
    with pytest.raises(YtvisReadError) as info:
        read_ytvis_results(bomb, _gt(tmp_path))
    msg = str(info.value)
    assert msg.startswith(f"{bomb} [results.json]: declares 300.0 MiB ({300 * MiB} bytes) uncompressed")
    assert "over the 64.0 MiB" in msg and "refusing to unpack it" in msg
    assert inflated[0] == 0


def test_zip_bomb_is_refused_by_its_ratio_at_the_default_limits(bomb, inflated, tmp_path):
    with pytest.raises(YtvisReadError, match=r"bomb\.zip \[results\.json\]: declares 300\.0 MiB .* zip \(\d{3,4}:1, "
                                             r"over the 500:1 limit\); refusing to unpack what looks like a zip bomb"):
        read_ytvis_results(bomb, _gt(tmp_path))
    assert inflated[0] == 0


def test_inflated_bytes_are_counted_not_the_declared_size(bomb, monkeypatch, inflated, tmp_path):
    """With the declared-size check out of the way, counting while inflating stops the read at the limit."""
    monkeypatch.setattr(ytvis, "_check_member_size", lambda *a: None)
    monkeypatch.setattr(ytvis, "MAX_ZIP_MEMBER_BYTES", 32 * MiB)
    with pytest.raises(YtvisReadError) as info:
        read_ytvis_results(bomb, _gt(tmp_path))
    msg = str(info.value)
    assert msg.startswith(f"{bomb} [results.json]: inflates to more than") and "declared 300.0 MiB" in msg
    assert "limits 32.0 MiB" in msg
    assert 32 * MiB < inflated[0] <= 32 * MiB + ytvis._READ_CHUNK


def test_an_honest_zip_still_reads(tmp_path):
    gt = _gt(tmp_path)
    with zipfile.ZipFile(tmp_path / "ok.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("results.json", json.dumps(results_list(gt_dict())))
    assert len(read_ytvis_results(tmp_path / "ok.zip", gt)) == 2


def test_json_above_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    big = dump(tmp_path / "big.json", results_list(gt_dict()) * 4000)
    assert 1 * MiB < big.stat().st_size < 2 * MiB
    monkeypatch.setattr(ytvis, "MAX_JSON_BYTES", 1 * MiB)
    monkeypatch.setattr(ytvis, "_read_capped", lambda *a: pytest.fail("read although over the limit"))
    with pytest.raises(YtvisReadError, match=r"big\.json: the file is 1\.\d MiB \(\d+ bytes\), over the 1\.0 MiB "
                                             r"\(1048576 bytes\) limit for a JSON file; refusing to read it"):
        read_ytvis_results(big)
    with pytest.raises(YtvisReadError, match=r"big\.json: the file is .* over the 1\.0 MiB \(1048576 bytes\) limit"):
        read_ytvis_gt(big)


@LINUX
def test_a_pipe_is_counted_while_read(tmp_path, monkeypatch):
    """A FIFO has no size to check first: the bytes read are counted and the read stops at the limit."""
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    payload = json.dumps(results_list(gt_dict()) * 6000).encode()
    assert len(payload) > 2 * MiB

    def writer():
        try:
            with open(fifo, "wb") as fh:
                fh.write(payload)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    monkeypatch.setattr(ytvis, "MAX_JSON_BYTES", 1 * MiB)
    monkeypatch.setattr(ytvis, "_READ_CHUNK", 64 * 1024)
    with pytest.raises(YtvisReadError, match=r"results\.json: holds more than 1\.0 MiB .* refusing to read further"):
        read_ytvis_results(fifo)
    thread.join(5)


@LINUX
def test_a_device_is_refused_without_reading_it():
    """``--results /dev/zero`` used to read until memory ran out; run in a capped child, to be safe."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.RLIM_INFINITY))\n"
            "from core.data.ytvis import read_ytvis_results\n"
            "from core.errors import VPPError\n"
            "try:\n    read_ytvis_results('/dev/zero')\nexcept VPPError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "/dev/zero: is a device, not a JSON file; check the path"


@pytest.mark.parametrize("kind", ["results", "gt"])
def test_a_nesting_bomb_is_refused_in_one_message(tmp_path, kind):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    reader = read_ytvis_results if kind == "results" else read_ytvis_gt
    with pytest.raises(YtvisReadError) as info:
        reader(path)
    assert str(info.value) == (f"{path}: JSON nested more than 100 levels deep (a YouTube-VIS file needs about 6); "
                               "refusing it")
    assert info.value.__cause__ is None


def test_nesting_the_parser_accepts_is_still_bounded(tmp_path):
    """150 levels parse, but would be kept in ``extra`` and written back: refused at load."""
    res = results_list(gt_dict())
    deep: list = []
    for _ in range(150):
        deep = [deep]
    res[0]["note"] = deep
    with pytest.raises(YtvisReadError, match="nested more than 100 levels deep"):
        read_ytvis_results(dump(tmp_path / "r.json", res))
    res[0]["note"] = [[[[{"a": [1]}]]]]  # shallow extras are fine
    assert read_ytvis_results(dump(tmp_path / "ok.json", res))[0].extra == {"note": [[[[{"a": [1]}]]]]}


def _cli(capsys, *argv):
    code = main(["eval", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(code, out, err, *needles):
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert "Traceback" not in err and "MemoryError" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def _oom(*a, **k):
    raise MemoryError


@pytest.mark.parametrize("where", ["gt", "results", "zip", "evaluation"])
def test_memory_errors_are_one_line_naming_the_file(tmp_path, monkeypatch, capsys, where):
    gt_path = dump(tmp_path / "gt.json", gt_dict())
    res_path = dump(tmp_path / "res.json", results_list(gt_dict()))
    if where == "gt":
        monkeypatch.setattr(ytvis, "check_gt", _oom)
        needles = [f"{gt_path}: not enough memory to check and load this ground truth"]
    elif where == "results":
        monkeypatch.setattr(ytvis, "check_results", _oom)
        needles = [f"{res_path}: not enough memory to check and load these results"]
    elif where == "zip":
        with zipfile.ZipFile(tmp_path / "res.zip", "w") as zf:
            zf.write(res_path, "results.json")
        res_path = tmp_path / "res.zip"
        monkeypatch.setattr(zipfile.ZipExtFile, "read", _oom)
        needles = [f"{res_path} [results.json]: not enough memory to unpack results.json"]
    else:
        monkeypatch.setattr("core.evaluation.ytvis_eval.evaluate_tracks", _oom)
        needles = [f"{res_path} (against {gt_path}): not enough memory to evaluate 2 result tracks on 1 videos"]
    _one_line(*_cli(capsys, "--gt", gt_path, "--results", res_path), *needles)


def test_memory_error_while_parsing_json_is_one_line(tmp_path, monkeypatch, capsys):
    gt_path = dump(tmp_path / "gt.json", gt_dict())
    res_path = dump(tmp_path / "res.json", results_list(gt_dict()))
    real_loads = json.loads
    def loads(s, *a, **k):
        text = s if isinstance(s, str) else bytes(s).decode()
        return _oom() if "score" in text else real_loads(s, *a, **k)

    monkeypatch.setattr(json, "loads", loads)
    _one_line(*_cli(capsys, "--gt", gt_path, "--results", res_path), f"{res_path}: not enough memory to read")


def test_counts_check_gives_the_same_answers_in_chunks(monkeypatch):
    """The counts check runs in bounded batches, and long strings piece by piece: same answers."""
    rng = np.random.default_rng(5)
    good = rle.encode_masks(rng.random((20, 41, 37)) > 0.5) + rle.encode_masks(rng.random((5, 6, 4)) > 0.9)
    cases = list(good)
    for g in good[:6]:
        c = g["counts"]
        cases += [dict(g, counts=c[:-1]), dict(g, counts=c + "1"), dict(g, size=[41, 36]),
                  dict(g, counts=c[:3] + "o" * 14 + c[3:]), dict(g, counts=c[:5] + "P"),
                  dict(g, counts=c.replace("1", ">", 3)), dict(g, counts="1" * 70 + "o" * 11 + "0")]
    cases += [{"size": [2, 2], "counts": "0"}, {"size": [2, 2], "counts": "P"}, {"size": [0, 0], "counts": ""}]
    whole = rle.counts_problems(cases)
    assert whole[: len(good)] == [None] * len(good) and sum(p is None for p in whole) < len(cases) - 30
    for chunk in (1, 7, 64, 500, 4000):
        monkeypatch.setattr(rle, "COUNTS_CHUNK", chunk)
        assert rle.counts_problems(cases) == whole, chunk


# --- memory of a whole `vpp eval`, in a child process under RLIMIT_AS ---------------------------------------

_RUNNER = r"""
import argparse, resource, sys
from core.commands import eval as ev
from core.errors import VPPError

def vm_size():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))

if len(sys.argv) > 4:  # cap only what follows reading the ground truth
    gt = ev.read_ytvis_gt(sys.argv[1])
    ev.read_ytvis_gt = lambda path: gt
limit = vm_size() + int(sys.argv[3])  # what this process already maps (interpreter, numpy) + the allowance
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
parser = argparse.ArgumentParser()
ev.add_parser(parser.add_subparsers())
args = parser.parse_args(["eval", "--gt", sys.argv[1], "--results", sys.argv[2]])
try:
    code = args.func(args)
except VPPError as exc:
    print(f"error: {exc}", file=sys.stderr)
    code = 2
sys.exit(code)
"""


def _write_big_set(folder: Path, videos: int, tracks: int, frames: int = 36) -> tuple[Path, Path]:
    """Ground truth (2 tracks a video) and results (``tracks`` a video): random rectangles on 1280x720."""
    rng = np.random.default_rng(0)
    h, w = 720, 1280

    def segs():
        x, y = rng.integers(0, w - 400, frames), rng.integers(0, h - 300, frames)
        boxes = np.stack([x, y, rng.integers(50, 400, frames), rng.integers(50, 300, frames)], 1).astype(float)
        return [{"size": [h, w], "counts": r["counts"].decode()} for r in mask_utils.frPyObjects(boxes, h, w)]

    gt = {"videos": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 11)]}
    results = []
    for v in range(1, videos + 1):
        gt["videos"].append({"id": v, "width": w, "height": h, "length": frames,
                             "file_names": [f"{v}/{t:05d}.jpg" for t in range(frames)]})
        for _ in range(2):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "video_id": v, "iscrowd": 0,
                                      "category_id": int(rng.integers(1, 11)), "segmentations": segs()})
        results += [{"video_id": v, "category_id": int(rng.integers(1, 11)), "score": float(rng.random()),
                     "segmentations": segs()} for _ in range(tracks)]
    return dump(folder / "gt.json", gt), dump(folder / "results.json", results)


@pytest.fixture(scope="module")
def big_set(tmp_path_factory) -> tuple[Path, Path]:
    return _write_big_set(tmp_path_factory.mktemp("big"), videos=12, tracks=30)


def _run_capped(gt: Path, res: Path, allowance: int, *after_gt: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", _RUNNER, str(gt), str(res), str(allowance), *after_gt], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


@LINUX
def test_eval_memory_is_a_small_multiple_of_the_results_file(big_set):
    """`vpp eval` of a ~6 MB results file within 10x its size (+64 MiB) of address space beyond the
    interpreter's; the old reader needed over 100x (200 MB -> 24 GB)."""
    gt, res = big_set
    size = res.stat().st_size
    assert 5 * MiB < size < 8 * MiB
    out = _run_capped(gt, res, 64 * MiB + 10 * size)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "video AP (AP_track)" in out.stdout and "frame mAP_segm" in out.stdout


@LINUX
def test_eval_out_of_memory_is_one_line(big_set):
    """Too little memory for the same results: one `error:` line naming the file, no traceback."""
    gt, res = big_set
    out = _run_capped(gt, res, res.stat().st_size, "after-gt")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"error: {res}") and "not enough memory" in out.stderr
