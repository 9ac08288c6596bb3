"""Outputs never overwrite inputs, every output location is refused before inference when it cannot be
written, and the input's spelling (``.``, ``..``, a trailing slash) never moves the outputs.

CLI cases go through ``core.cli.main`` with a stand-in model and session (``fake_model``, which records
each model load), so the CLI, sources and export door are real, a refusal is shown to come before the
model loads, and the tests stay fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import core.commands.infer as infer_mod
from core.build import FAMILIES
from core.cli import main
from core.errors import DataError
from core.export import RunRecord, VideoExport, check_outputs, export_results
from core.results import ClipResults, CompactFrame

FW, FH = 48, 32


def _write_frames(folder: Path, n: int = 3, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names or [f"{i:05d}.jpg" for i in range(n)]):
        cv2.imwrite(str(folder / name), np.full((FH, FW, 3), 30 * i + 20, np.uint8))
    return folder


def _write_video(path: Path, n: int = 3) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (FW, FH))
    for i in range(n):
        w.write(np.full((FH, FW, 3), 30 * i + 20, np.uint8))
    w.release()
    assert path.stat().st_size > 0
    return path


def _write_split(root: Path, folders: list[str]) -> Path:
    """A YTVIS split (instances.json + JPEGImages/) with one 2-frame video per entry of ``folders``."""
    videos = []
    for vid, sub in enumerate(folders, 1):
        _write_frames(root / "JPEGImages" / sub, 2)
        videos.append({"id": vid, "width": FW, "height": FH, "length": 2,
                       "file_names": [f"{sub}/{t:05d}.jpg" for t in range(2)]})
    (root / "instances.json").write_text(json.dumps({"videos": videos, "annotations": [],
                                                     "categories": [{"id": 1, "name": "thing"}]}))
    return root


def _snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 (files), "dir" / "link -> target" for the rest: every name under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = f"link -> {os.readlink(p)}"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _infer(capsys, *argv):
    code = main(["infer", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def fake_model(monkeypatch):
    """Stand-ins for the model and session: one track per clip, a box moving one pixel per frame.

    Returns the list of model loads, to show that a refusal came before the model was loaded."""
    loads: list[str] = []

    class Session:  # a core.clip_loop.Session: vpp infer runs it through run_clip (any iterable, maybe prefetched)
        def __init__(self, model, config, *, device, pkr, mode):
            self.pkr, self.mode = pkr or 0.5, mode
            self.index = 0

        def reset(self):
            self.index = 0

        def step(self, frame):  # the frames are really read
            i, self.index = self.index, self.index + 1
            h, w = frame.shape[:2]
            m = np.zeros((h, w), bool)
            m[2:10, 3 + i: 12 + i] = True
            return SimpleNamespace(index=i, track_ids=np.array([1]), category_ids=np.array([1]),
                                   scores=np.array([0.9], np.float32), masks=m[None], kept=np.ones((1, 2, 2), bool),
                                   stage_names=("Map-SM",), keep_ratio=1.0, gflops=0.0, ms=0.0)

    family = dataclasses.replace(FAMILIES["vpp"], session=lambda loaded, *, device, pkr, mode, **_: Session(
        loaded.model, loaded.config, device=device, pkr=pkr, mode=mode))
    loaded = SimpleNamespace(trained=True, model=None, source="fake", family=family,
                             config=SimpleNamespace(class_to_category_id=(1,), category_names=("thing",)))
    monkeypatch.setattr(infer_mod, "load_model", lambda model, **k: loads.append(str(model)) or loaded)
    return loads


# -- outputs never overwrite inputs -------------------------------------------------------------------


def _refusal_case(tmp_path: Path, case: str) -> tuple[list, str, str]:
    """(argv after "infer", the output named in the error, the input named in the error)."""
    frames = _write_frames(tmp_path / "frames")
    video = _write_video(tmp_path / "v.mp4")
    split = _write_split(tmp_path / "ds" / "valid", ["a", "b"])
    (tmp_path / "store").mkdir()  # video b's frames live elsewhere, linked into the split
    (split / "JPEGImages" / "b").rename(tmp_path / "store" / "b")
    (split / "JPEGImages" / "b").symlink_to(tmp_path / "store" / "b")
    (tmp_path / "frames_link").symlink_to("frames")
    (tmp_path / "video_link.json").symlink_to("v.mp4")
    out = tmp_path / "r.json"
    return {
        "video_as_out": ([video, "--out", video], str(video), str(video)),
        "video_as_coco": ([video, "--out", out, "--coco", video], str(video), str(video)),
        "frame_as_out": ([frames, "--out", frames / "00000.jpg"], str(frames / "00000.jpg"), str(frames)),
        "davis_is_frames": ([frames, "--out", out, "--davis-png", frames], str(frames), str(frames)),
        "davis_in_frames": ([frames, "--out", out, "--davis-png", frames / "masks"], str(frames / "masks"),
                            str(frames)),
        "davis_holds_frames": ([frames, "--out", out, "--davis-png", tmp_path], str(tmp_path), str(frames)),
        "davis_via_symlink": ([frames, "--out", out, "--davis-png", tmp_path / "frames_link"],
                              str(tmp_path / "frames_link"), str(frames)),
        "input_via_symlink": ([tmp_path / "frames_link", "--out", out, "--davis-png", frames], str(frames),
                              str(tmp_path / "frames_link")),
        "out_via_symlink": ([video, "--out", tmp_path / "video_link.json"], str(tmp_path / "video_link.json"),
                            str(video)),
        "split_images": ([split, "--out", out, "--davis-png", split / "JPEGImages"], str(split / "JPEGImages"),
                         str(split)),
        "split_annotations": ([split, "--out", split / "instances.json"], str(split / "instances.json"), str(split)),
        "split_linked_video": ([split, "--out", out, "--davis-png", tmp_path / "store" / "b"],
                               str(tmp_path / "store" / "b"), str(split / "JPEGImages" / "b")),
        "trailing_slash": ([f"{frames}/", "--out", out, "--davis-png", f"{frames}/."], str(frames), str(frames)),
        "model_as_out": ([frames, "--out", tmp_path / "junk.safetensors"], str(tmp_path / "junk.safetensors"),
                         str(tmp_path / "junk.safetensors")),
    }[case]


@pytest.mark.parametrize("case", ["video_as_out", "video_as_coco", "frame_as_out", "davis_is_frames",
                                  "davis_in_frames", "davis_holds_frames", "davis_via_symlink", "input_via_symlink",
                                  "out_via_symlink", "split_images", "split_annotations", "split_linked_video",
                                  "trailing_slash", "model_as_out"])
def test_an_output_that_is_inside_or_around_an_input_is_refused_before_inference(tmp_path, capsys, case,
                                                                                   fake_model):
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    argv, output, given_input = _refusal_case(tmp_path, case)
    before = _snapshot(tmp_path)
    code, _, err = _infer(capsys, *argv, "--model", tmp_path / "junk.safetensors")
    assert fake_model == []  # refused before the model loaded
    line = _one_error(err)
    assert code == 2
    assert "outputs never overwrite inputs" in line, line
    assert line.startswith(f"error: {output}: ") and f"the input {given_input}" in line, line
    assert _snapshot(tmp_path) == before  # inputs untouched, nothing written, no temp files


def test_the_door_and_the_app_writers_refuse_outputs_over_inputs(tmp_path):
    frames = _write_frames(tmp_path / "frames")
    before = _snapshot(tmp_path)
    clip = ClipResults(3, FH, FW)
    for t in range(3):
        clip.add(CompactFrame.from_result(SimpleNamespace(
            index=t, track_ids=np.array([1]), category_ids=np.array([1]), scores=np.array([0.5], np.float32),
            masks=np.ones((1, FH, FW), bool), kept=np.ones((1, 2, 2), bool), stage_names=("Map-SM",),
            keep_ratio=1.0, gflops=0.0, ms=0.0)))
    names = tuple(p.name for p in sorted(frames.iterdir()))
    video = VideoExport(1, "frames", names, clip)
    with pytest.raises(DataError, match=r"frames: the DAVIS folder is the input .*frames"):
        check_outputs({"davis": frames}, inputs=[frames])
    with pytest.raises(DataError, match=r"00001\.jpg: the COCO JSON output lies inside the input"):
        export_results([video], {"coco": frames / "00001.jpg"}, record=RunRecord("t", "m"), inputs=[frames])
    (tmp_path / "r.run.json").write_text("{}")
    with pytest.raises(DataError, match=r"r\.run\.json: the run record of the YTVIS results output is the input"):
        check_outputs({"ytvis": tmp_path / "r.json"}, inputs=[tmp_path / "r.run.json"])
    (tmp_path / "r.run.json").unlink()
    assert check_outputs({"ytvis": tmp_path / "r.json"}, inputs=[frames]) == {"ytvis": tmp_path / "r.json"}

    qt = pytest.importorskip("vpp_gui.export")  # the app's writers pass inputs through to the door
    with pytest.raises(DataError, match="the DAVIS folder is the input"):
        qt.write_export("davis", clip, frames, names, inputs=[frames])
    with pytest.raises(DataError, match="the YTVIS results output lies inside the input"):
        qt.write_export("ytvis", clip, frames / "r.json", inputs=[frames])
    with pytest.raises(DataError, match="the COCO JSON output is the input"):
        qt.write_export("coco", clip, frames / "00000.jpg", names, inputs=[frames / "00000.jpg"])
    assert _snapshot(tmp_path) == before


# -- every output location checked before inference ---------------------------------------------------


def _read_only(folder: Path):
    """A folder this process cannot create entries in, and how to undo it; None if it cannot be made."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    # root ignores permission bits: an immutable folder (ext4, xfs, btrfs) is read-only even for root
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        return None
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=False)


@pytest.mark.parametrize("case", ["missing_parent", "proc", "sys", "read_only", "out_is_davis", "davis_is_out_zip",
                                  "davis_is_run_record"])
def test_unwritable_or_clashing_outputs_are_refused_before_inference(tmp_path, capsys, case, fake_model):
    frames = _write_frames(tmp_path / "frames")
    out = tmp_path / "r.json"
    undo = None
    if case == "read_only":
        undo = _read_only(tmp_path / "ro")
        if undo is None:
            pytest.skip("cannot make a read-only folder here (root without chattr support)")
    args = {
        "missing_parent": ["--out", out, "--davis-png", tmp_path / "nope" / "masks"],
        "proc": ["--out", out, "--davis-png", "/proc/vpp-masks"],
        "sys": ["--out", out, "--davis-png", "/sys/vpp-masks"],
        "read_only": ["--out", out, "--davis-png", tmp_path / "ro" / "masks"],
        "out_is_davis": ["--out", out, "--davis-png", out],
        "davis_is_out_zip": ["--out", out, "--zip", "--davis-png", tmp_path / "r.zip"],
        "davis_is_run_record": ["--out", out, "--davis-png", tmp_path / "r.run.json"],
    }[case]
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    before = _snapshot(tmp_path)
    try:
        code, _, err = _infer(capsys, frames, *args, "--model", tmp_path / "junk.safetensors")
    finally:
        if undo is not None:
            undo()
    line = _one_error(err)
    assert code == 2 and fake_model == []  # refused before the model loaded
    expect = {"missing_parent": "output folder .*nope does not exist", "proc": "cannot create files in .*/proc",
              "sys": "cannot create files in .*/sys", "read_only": r"ro(/masks: output folder .* is not writable"
              r"|/masks: cannot create files in)", "out_is_davis": "given as both",
              "davis_is_out_zip": "given as both", "davis_is_run_record": "would overwrite the DAVIS folder"}[case]
    assert re.search(expect, line), line
    assert _snapshot(tmp_path) == before
    assert not Path("/proc/vpp-masks").exists() and not Path("/sys/vpp-masks").exists()


# -- the input's spelling never moves the outputs ------------------------------------------------------


def _listing_and_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dot_dotdot_and_trailing_slash_inputs_write_the_same_outputs(tmp_path, capsys, fake_model, monkeypatch):
    frames = _write_frames(tmp_path / "frames")
    (frames / "sub").mkdir()
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    runs = {}
    for spelling, cwd in (("frames", tmp_path), ("frames/", tmp_path), ("./frames/.", tmp_path), (".", frames),
                          ("..", frames / "sub"), ("sub/..", frames)):
        monkeypatch.chdir(cwd)
        out = tmp_path / f"out{len(runs)}"
        out.mkdir()
        code, _, err = _infer(capsys, spelling, "--model", tmp_path / "junk.safetensors", "--out", out / "r.json",
                              "--davis-png", out / "masks", "--coco", out / "coco.json")
        assert code == 0, (spelling, err)
        coco = json.loads((out / "coco.json").read_text())
        runs[spelling] = ([im["file_name"] for im in coco["images"]], _listing_and_bytes(out / "masks"),
                          (out / "r.json").read_bytes())
    want = runs["frames"]
    assert want[0] == ["frames/00000.jpg", "frames/00001.jpg", "frames/00002.jpg"]
    assert sorted(want[1]) == ["00000.png", "00001.png", "00002.png", "vpp_run.json"]
    for spelling, got in runs.items():
        assert got[0] == want[0] and got[2] == want[2], spelling
        assert sorted(got[1]) == sorted(want[1]), spelling  # vpp_run.json differs only in its time stamp
        assert all(got[1][k] == want[1][k] for k in got[1] if k.endswith(".png")), spelling


def test_split_videos_whose_folders_share_a_name_get_their_own_davis_folders(tmp_path, capsys, fake_model,
                                                                                 monkeypatch):
    split = _write_split(tmp_path / "ds" / "valid", ["a/x", "b/x", "c/X", "x-1"])
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    outs = []
    for spelling, cwd in ((split, tmp_path), (f"{split}/", tmp_path), (".", split)):
        monkeypatch.chdir(cwd)
        out = tmp_path / f"out{len(outs)}"
        out.mkdir()
        code, _, err = _infer(capsys, spelling, "--model", tmp_path / "junk.safetensors", "--out", out / "r.json",
                              "--davis-png", out / "d")
        assert code == 0, err
        outs.append(out)
    record = json.loads((outs[0] / "d" / "vpp_run.json").read_text())
    folders = {v["video_id"]: v["folder"] for v in record["videos"]}
    assert len(set(map(str.lower, folders.values()))) == 4  # four videos, four folders
    assert folders[4] == "x-1" and all(f.lower().startswith("x-") for f in folders.values())
    for out in outs:
        assert sorted(p.name for p in (out / "d").iterdir()) == sorted([*folders.values(), "vpp_run.json"])
        for f in folders.values():
            assert sorted(p.name for p in (out / "d" / f).iterdir()) == ["00000.png", "00001.png"]
    assert not any(p.name.startswith(".vpp-commit.") for p in tmp_path.rglob("*"))
