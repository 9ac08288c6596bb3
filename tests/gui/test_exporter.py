"""The exporter runs one export at a time and is free again as soon as it reports; the writers it runs
are thin wrappers over core.export."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from core.data.davis import read_davis_png
from core.errors import DataError
from core.export import RunRecord, import_tracks
from core.results import ClipResults, CompactFrame
from vpp_gui.export import Exporter, write_export


def _write(tag: str) -> str:
    return f"wrote {tag}"


def _fail() -> str:
    raise OSError("disk full")


def test_a_second_export_can_start_from_the_finished_slot(qtbot):
    exporter = Exporter()
    seen: list[str] = []
    started_again: list[bool] = []

    def on_finished(summary: str) -> None:
        seen.append(summary)
        if len(seen) == 1:
            started_again.append(exporter.start(_write, "second"))

    exporter.finished.connect(on_finished)
    assert exporter.start(_write, "first")
    assert exporter.busy and not exporter.start(_write, "refused while busy")
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=10_000)
    assert seen == ["wrote first", "wrote second"] and started_again == [True]
    qtbot.waitUntil(lambda: not exporter._workers, timeout=10_000)
    assert not exporter.busy


def test_a_failed_export_reports_and_frees_the_exporter(qtbot):
    exporter = Exporter()
    with qtbot.waitSignal(exporter.failed, timeout=10_000) as blocker:
        assert exporter.start(_fail)
    assert "disk full" in blocker.args[0]
    assert not exporter.busy
    with qtbot.waitSignal(exporter.finished, timeout=10_000) as blocker:
        assert exporter.start(_write, "after")
    assert blocker.args == ["wrote after"]


def _clip():
    clip = ClipResults(2, 12, 16)
    for t in range(2):
        m = np.zeros((12, 16), bool)
        m[2 + t: 8, 3:10] = True
        clip.add(CompactFrame.from_result(SimpleNamespace(
            index=t, track_ids=np.array([4]), category_ids=np.array([2]), scores=np.array([0.8], np.float32),
            masks=m[None], kept=np.ones((1, 2, 2), bool), stage_names=("Map-SM",), keep_ratio=1.0, gflops=0.0,
            ms=0.0)))
    return clip, m


def test_writers_go_through_core_export_and_leave_run_records(tmp_path):
    clip, last = _clip()
    record = RunRecord("vpp-gui", "m.safetensors", pkr=0.5, mode="vpp")
    summary = write_export("ytvis", clip, tmp_path / "r.json", record=record)
    assert summary == f"exported 1 track of 1 video to {tmp_path / 'r.json'}"
    assert "r.zip" in write_export("zip", clip, tmp_path / "r.zip")  # default record
    assert json.loads((tmp_path / "r.run.json").read_text())["tool"] == "vpp-gui"
    summary = write_export("davis", clip, tmp_path / "d", ["a/00000.jpg", "a/00001.jpg"], record=record)
    assert summary.endswith("(DAVIS: 1 object)")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["00000.png", "00001.png", "vpp_run.json"]
    np.testing.assert_array_equal(read_davis_png(tmp_path / "d" / "00001.png") == 1, last)
    write_export("coco", clip, tmp_path / "c.json", ["00000.jpg", "00001.jpg"], categories=[(2, "cat")],
                 video_name="clip")
    coco = json.loads((tmp_path / "c.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["clip/00000.jpg", "clip/00001.jpg"]
    assert coco["categories"] == [{"id": 2, "name": "cat"}] and len(coco["annotations"]) == 2
    for name in ("r.json", "r.zip", "d", "c.json"):
        (track,) = import_tracks(tmp_path / name, num_frames=2, height=12, width=16).tracks
        np.testing.assert_array_equal(track.mask(1), last)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="choose an empty or new folder"):
        write_export("davis", clip, tmp_path / "user", ["0.jpg", "1.jpg"])
    assert [p.name for p in (tmp_path / "user").iterdir()] == ["keep.txt"]
