"""Issue 25, item 9: no silent loss in exports.

- ``--davis-png`` with more than 255 tracks wrote the best 255 and exited 0; now every track is written
  (16-bit PNGs past 255 objects) and reads back whole.
- A track whose stored ``area`` is 0 while its mask is not empty was dropped from every export; areas are
  now always computed from the masks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.app.document import ClipInfo, Document
from core.cli import main
from core.data.davis import read_davis_png
from core.data.rle import encode_mask
from core.export import RunRecord, VideoExport, export_results, import_tracks
from core.results import ClipResults, CompactFrame

N, H, W = 2, 20, 20


def _dots(count: int, frame: int = 0) -> CompactFrame:
    """``count`` one-pixel instances on one frame, every stored area 0 (the masks are not empty)."""
    masks = []
    for k in range(count):
        m = np.zeros((H, W), bool)
        m[k // W, k % W] = True
        masks.append(m)
    return CompactFrame(frame, H, W, np.arange(1, count + 1, dtype=np.int64), np.ones(count, np.int64),
                        np.linspace(0.9, 0.1, count).astype(np.float32), tuple(encode_mask(m) for m in masks),
                        np.zeros(count, np.int64), np.zeros((0, 1, 1), bool), (), 1.0, 0.0, 0.0)


def _clip(count: int) -> ClipResults:
    clip = ClipResults(N, H, W)
    clip.add(_dots(count, 0))
    clip.add(_dots(0, 1))
    return clip


def test_more_than_255_tracks_on_a_frame_are_all_in_the_davis_pngs(tmp_path):
    clip = _clip(300)
    davis = tmp_path / "masks"
    summary = export_results([VideoExport(1, "v", ("a.jpg", "b.jpg"), clip)],
                             {"davis": davis}, record=RunRecord("test", "m"))
    assert "300 objects" in summary.message and "16-bit" in summary.message
    labels = read_davis_png(davis / "a.png")
    assert labels.dtype == np.uint16 and len(np.unique(labels[labels > 0])) == 300
    objects = json.loads((davis / "vpp_run.json").read_text())["videos"][0]["objects"]
    for k, tid in enumerate(objects, 1):  # object k is track objects[k-1], at that track's pixel
        assert labels[(tid - 1) // W, (tid - 1) % W] == k
    back = import_tracks(davis, num_frames=N, height=H, width=W)
    assert len(back.tracks) == 300
    assert read_davis_png(davis / "b.png").dtype == np.uint16  # one format for every frame of the video


def test_255_tracks_stay_palette_pngs(tmp_path):
    davis = tmp_path / "masks"
    export_results([VideoExport(1, "v", ("a.jpg", "b.jpg"), _clip(255))], {"davis": davis}, record=RunRecord("t", "m"))
    labels = read_davis_png(davis / "a.png")
    assert labels.dtype == np.uint8 and labels.max() == 255
    from PIL import Image

    with Image.open(davis / "a.png") as im:
        assert im.mode == "P"


def test_a_stored_area_of_zero_does_not_drop_a_track_from_any_export(tmp_path):
    clip = _clip(3)
    assert clip.get(0).areas.tolist() == [1, 1, 1]  # computed from the masks, not the zeros given
    out, coco, davis = tmp_path / "r.json", tmp_path / "c.json", tmp_path / "masks"
    summary = export_results([VideoExport(1, "v", ("a.jpg", "b.jpg"), clip)],
                             {"ytvis": out, "coco": coco, "davis": davis}, record=RunRecord("t", "m"))
    assert summary.tracks == {1: 3}
    assert len(json.loads(out.read_text())) == 3
    assert len(json.loads(coco.read_text())["annotations"]) == 3
    assert len(np.unique(read_davis_png(davis / "a.png"))) == 4  # background + 3


def _project(tmp_path, tracks: int):
    doc = Document(ClipInfo(str(tmp_path / "clip"), N, H, W, ("a.jpg", "b.jpg")), categories={1: "dot"})
    for k in range(tracks):
        m = np.zeros((H, W), bool)
        m[k // W, k % W] = True
        doc.create_track(0, m, 1)
    return doc.save(tmp_path / "p.vppproj")


def test_vpp_export_of_a_project_with_300_tracks_on_a_frame(tmp_path, capsys):
    path = _project(tmp_path, 300)
    davis = tmp_path / "masks"
    assert main(["export", str(path), "--out", str(tmp_path / "r.json"), "--davis-png", str(davis)]) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == 300
    labels = read_davis_png(davis / "a.png")
    assert len(np.unique(labels[labels > 0])) == 300


@pytest.mark.parametrize("fmt", ["--out", "--coco", "--davis-png"])
def test_vpp_export_keeps_a_track_whose_stored_area_is_zero(tmp_path, capsys, fmt):
    path = _project(tmp_path, 2)
    data = json.loads(path.read_text())
    tracks = data["tracks"]
    for t in tracks:
        for frame in t["frames"].values():
            frame[2] = 0  # [counts, score, area]: the stored area says empty, the mask is not
    path.write_text(json.dumps(data))
    target = tmp_path / ("masks" if fmt == "--davis-png" else "out.json")
    argv = ["export", str(path), "--out", str(tmp_path / "r.json")]
    if fmt != "--out":
        argv += [fmt, str(target)]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    if fmt == "--out":
        assert len(json.loads((tmp_path / "r.json").read_text())) == 2
    elif fmt == "--coco":
        assert len(json.loads(target.read_text())["annotations"]) == 2
    else:
        assert len(np.unique(read_davis_png(target / "a.png"))) == 3
