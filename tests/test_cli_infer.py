"""``vpp infer``: real frames in, a valid YTVIS file out; failures leave nothing behind and spare good files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.cli import main
from core.data.davis import read_davis_png
from core.data.synthetic import write_synthetic_dataset
from core.data.ytvis import read_ytvis_gt, read_ytvis_results
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import save_checkpoint
from core.model.vpp.config import VPPConfig


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """An untrained Tiny at a small input with a low score threshold's worth of queries."""
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=128, num_queries=8, decoder_layers=2, num_classes=6,
                                categories=("a", "b", "c", "d", "e", "f"))
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_checkpoint(build_vpp(cfg).eval(), cfg, path)
    return path


def _infer(capsys, *argv):
    code = main(["infer", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _frames(shared_data, tmp_path, n=6):
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in sorted((shared_data / "davis_car_shadow/frames").iterdir())[:n]:
        shutil.copy(f, folder / f.name)
    return folder


def test_infer_on_real_frames_writes_valid_results_zip_and_davis_pngs(shared_data, tmp_path, small_model, capsys):
    frames = _frames(shared_data, tmp_path)
    out = tmp_path / "results.json"
    code, stdout, err = _infer(capsys, frames, "--model", small_model, "--pkr", "0.4", "--out", out, "--zip",
                               "--davis-png", tmp_path / "masks", "--coco", tmp_path / "coco.json")
    assert code == 0, err
    results = json.loads(out.read_text())
    assert json.loads(stdout)["tracks"] == len(results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco.json", "coco.run.json", "frames", "masks",
                                                          "results.json", "results.run.json", "results.zip"]
    run = json.loads((tmp_path / "results.run.json").read_text())
    assert run["tool"] == "vpp infer" and run["model"] == str(small_model) and run["mode"] == "vpp"
    assert run["model_sha256"] == hashlib.sha256(small_model.read_bytes()).hexdigest()
    assert run["pkr"] == pytest.approx(0.4) and run["outputs"] == ["results.json", "results.zip"]
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == [f"frames/{p.name}" for p in sorted(frames.iterdir())]
    assert len(coco["annotations"]) == sum(s is not None for r in results for s in r["segmentations"])
    assert coco["info"]["model_sha256"] == run["model_sha256"]
    for r in results:
        assert r["video_id"] == 1 and len(r["segmentations"]) == 6 and 0 <= r["score"] <= 1
        assert any(s is not None for s in r["segmentations"])
        for s in r["segmentations"]:
            assert s is None or s["size"] == [480, 854]
    with zipfile.ZipFile(tmp_path / "results.zip") as zf:
        assert zf.namelist() == ["results.json"]
        assert json.loads(zf.read("results.json")) == results
    pngs = sorted((tmp_path / "masks").glob("*.png"))  # one video: the PNGs go straight into the folder
    assert [p.stem for p in pngs] == sorted(p.stem for p in frames.iterdir())
    labels = read_davis_png(pngs[0])
    assert labels.shape == (480, 854)
    assert int(labels.max()) <= len(results)


def test_infer_on_a_ytvis_split_gives_one_entry_set_per_video(tmp_path, small_model, capsys):
    write_synthetic_dataset(tmp_path / "ds", train_videos=0, val_videos=2, width=96, height=64, frames=4, seed=3)
    split = tmp_path / "ds" / "valid"
    out = tmp_path / "r.json"
    code, _, err = _infer(capsys, split, "--model", small_model, "--out", out, "--pkr", "0.55")
    assert code == 0, err
    gt = read_ytvis_gt(split / "instances.json")
    results = read_ytvis_results(out, gt)  # validated against the ground truth's lengths and ids
    assert {r.video_id for r in results} <= {v.id for v in gt.videos}

    code, _, err = _infer(capsys, split, "--model", small_model, "--out", out, "--davis-png", tmp_path / "d")
    assert code == 0, err
    folders = sorted(p.name for p in (tmp_path / "d").iterdir() if p.is_dir())
    assert len(folders) == len(gt.videos) == 2 and (tmp_path / "d" / "vpp_run.json").is_file()
    for v in gt.videos:  # one sub-folder per video, named like its frame folder, one PNG per frame
        names = [Path(f).stem for f in v.file_names]
        assert sorted(p.stem for p in (tmp_path / "d" / Path(v.file_names[0]).parent).glob("*.png")) == names


def test_corrupt_frame_fails_cleanly_and_keeps_the_good_output(shared_data, tmp_path, small_model, capsys):
    frames = _frames(shared_data, tmp_path, n=4)
    bad = sorted(frames.iterdir())[2]
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "results.json"
    out.write_text("[]\n")  # a good earlier result
    code, _, err = _infer(capsys, frames, "--model", small_model, "--out", out, "--davis-png", tmp_path / "m")
    assert code != 0
    assert bad.name in err and "Traceback" not in err
    assert out.read_text() == "[]\n"
    assert not (tmp_path / "m").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "results.json"]  # no temp files left

    code, _, err = _infer(capsys, frames, "--model", small_model, "--out", out, "--skip-corrupt")
    assert code == 0, err
    assert bad.name in err  # reported as skipped
    assert all(len(r["segmentations"]) == 3 for r in json.loads(out.read_text()))


def test_output_locations_are_checked_before_the_model_loads(tmp_path, capsys):
    frames = tmp_path / "f"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((32, 48, 3), np.uint8))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")  # never read: the folder check comes first
    code, _, err = _infer(capsys, frames, "--model", junk, "--out", tmp_path / "r.json", "--davis-png", mine)
    assert code == 2 and "mine: the folder is not empty" in err and "junk" not in err
    assert (mine / "notes.txt").read_text() == "keep me" and not (tmp_path / "r.json").exists()
    code, _, err = _infer(capsys, frames, "--model", junk, "--out", tmp_path / "r.json", "--coco", tmp_path / "r.json")
    assert code == 2 and "given as both" in err


@pytest.mark.parametrize("case", ["missing_input", "bad_pkr", "wrong_model", "no_out_folder", "not_a_video"])
def test_bad_arguments_give_one_line_errors(tmp_path, small_model, capsys, case):
    frames = tmp_path / "f"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((32, 48, 3), np.uint8))
    out = tmp_path / "r.json"
    args = {
        "missing_input": [tmp_path / "nope", "--out", out],
        "bad_pkr": [frames, "--out", out, "--pkr", "1.5", "--model", small_model],
        "wrong_model": [frames, "--out", out, "--model", tmp_path / "junk.safetensors"],
        "no_out_folder": [frames, "--out", tmp_path / "no" / "r.json", "--model", small_model],
        "not_a_video": [tmp_path / "notes.txt", "--out", out, "--model", small_model],
    }[case]
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = _infer(capsys, *args)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert not out.exists()


def test_help_says_what_happens_to_the_davis_folder(capsys):
    with contextlib.suppress(SystemExit):  # argparse's own exit, where main does not return a code
        main(["infer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--davis-png DIR", "must be a new or empty folder, or an earlier export of ours (it holds "
                   "vpp_run.json and only the masks it lists)", "replaced as a whole, only after the new masks are "
                   "complete", "A folder holding any other file is refused before inference starts",
                   "the input's own folder"):
        assert phrase in text, phrase


def test_an_earlier_export_with_a_users_files_in_it_is_refused_before_the_model_loads(tmp_path, capsys):
    from core.export import RunRecord, VideoExport, export_results
    from core.results import ClipResults

    frames = tmp_path / "f"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((32, 48, 3), np.uint8))
    clip = ClipResults(1, 32, 48)
    clip.add(_empty_frame(0, 32, 48))
    exports = tmp_path / "exports"
    export_results([VideoExport(1, "f", ("0.png",), clip)], {"davis": exports}, record=RunRecord("t", "m"))
    (exports / "notes.txt").write_text("keep me")
    (exports / "other_run").mkdir()
    (exports / "other_run" / "a.png").write_bytes(b"keep me too")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    code, _, err = _infer(capsys, frames, "--model", junk, "--out", tmp_path / "r.json", "--davis-png", exports)
    assert code == 2 and "junk" not in err and "Traceback" not in err
    assert "exports: holds notes.txt, other_run besides an earlier export" in err
    assert (exports / "notes.txt").read_text() == "keep me"
    assert (exports / "other_run" / "a.png").read_bytes() == b"keep me too"
    assert not (tmp_path / "r.json").exists()


def _empty_frame(index, h, w):
    """A frame with no instances."""
    from types import SimpleNamespace

    from core.results import CompactFrame

    return CompactFrame.from_result(SimpleNamespace(
        index=index, track_ids=np.zeros(0, np.int64), category_ids=np.zeros(0, np.int64),
        scores=np.zeros(0, np.float32), masks=np.zeros((0, h, w), bool), kept=np.ones((1, 2, 2), bool),
        stage_names=("Map-SM",), keep_ratio=1.0, gflops=0.0, ms=0.0))


KILLED_EXPORT = r"""
import os, signal, sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from core.export import RunRecord, VideoExport, export_results
from core.results import ClipResults, CompactFrame

out = Path(sys.argv[1])


def clip(seed):
    m = np.zeros((1, 32, 48), bool)
    m[0, seed: seed + 9, 4:20] = True
    c = ClipResults(1, 32, 48)
    c.add(CompactFrame.from_result(SimpleNamespace(
        index=0, track_ids=np.array([1]), category_ids=np.array([1]), scores=np.array([0.8], np.float32),
        masks=m, kept=np.ones((1, 2, 2), bool), stage_names=("Map-SM",), keep_ratio=1.0, gflops=0.0, ms=0.0)))
    return c


real_rename = os.rename


def rename(src, dst):  # SIGKILL right before the new masks folder is renamed in
    if Path(dst) == out / "masks":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst)


for gen, seed in (("old", 2), ("new", 9)):
    if gen == "new":
        os.rename = rename
    export_results([VideoExport(1, "f", ("0.png",), clip(seed))], {"ytvis": out / "r.json", "davis": out / "masks"},
                   record=RunRecord("t", "m", extra={"gen": gen}))
"""


def test_vpp_infer_first_finishes_an_export_killed_mid_commit(tmp_path, capsys):
    """SIGKILL after the new JSON went in and the old masks folder was moved aside: the next vpp infer into
    the folder completes the new set before anything else (here it then stops at a junk model)."""
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(out)], cwd=Path(__file__).resolve().parents[1],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    assert not (out / "masks").exists()  # the state a kill leaves: the new masks are still staged
    frames = tmp_path / "f"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((32, 48, 3), np.uint8))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    code, _, err = _infer(capsys, frames, "--model", junk, "--out", out / "r.json", "--davis-png", out / "masks")
    assert "note: finished an interrupted export" in err and code == 2  # then the junk model stops the run
    assert sorted(p.name for p in out.iterdir()) == ["masks", "r.json", "r.run.json"]
    for record in (out / "r.run.json", out / "masks" / "vpp_run.json"):
        assert json.loads(record.read_text())["extra"] == {"gen": "new"}
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["0.png", "vpp_run.json"]
