"""``vpp export PROJECT``: a project's corrected results written headless, through the one export door."""

from __future__ import annotations

import json

import numpy as np

from core.app.document import ClipInfo, Document
from core.cli import main
from core.data.ytvis import read_ytvis_results

N, H, W = 5, 30, 40


def _project(tmp_path):
    doc = Document(ClipInfo(str(tmp_path / "gone_clip"), N, H, W, tuple(f"{i:05d}.jpg" for i in range(N))),
                   categories={1: "person", 2: "dog"})
    m = np.zeros((H, W), bool)
    m[5:15, 5:15] = True
    a = doc.create_track(0, m, 1)
    for i in range(1, N):
        doc.paint(a, i, np.roll(m, i, axis=1))
    b = doc.create_track(2, np.roll(m, 15, axis=0), 2)
    c = doc.create_track(3, np.roll(m, 20, axis=1), 2)
    doc.reject([c])
    path = doc.save(tmp_path / "review.vppproj")
    return doc, path, (a, b, c)


def test_export_writes_the_corrected_tracks_in_every_format(tmp_path, capsys):
    from core.export import import_tracks

    doc, path, (a, _b, _c) = _project(tmp_path)
    out, davis, coco = tmp_path / "results.json", tmp_path / "masks", tmp_path / "coco.json"
    assert main(["export", str(path), "--out", str(out), "--davis-png", str(davis), "--coco", str(coco)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tracks"] == 2  # the rejected track is left out
    results = read_ytvis_results(out)
    assert sorted(r.category_id for r in results) == [1, 2]
    for r in results:
        assert len(r.segmentations) == N and all(s is None or list(s["size"]) == [H, W] for s in r.segmentations)
    back = import_tracks(out, num_frames=N, height=H, width=W)
    person = next(t for t in back.tracks if t.category_id == 1)
    for i in range(N):
        assert np.array_equal(person.mask(i), doc.mask(a, i))
    assert len(list(davis.glob("*.png"))) == N and (davis / "vpp_run.json").is_file()
    coco_data = json.loads(coco.read_text())
    assert len(coco_data["images"]) == N and len(coco_data["annotations"]) == N + 1
    record = json.loads((tmp_path / "results.run.json").read_text())
    assert record["tool"] == "vpp export"


def test_export_include_rejected_and_recover(tmp_path, capsys):
    doc, path, (a, _b, _c) = _project(tmp_path)
    out = tmp_path / "all.json"
    assert main(["export", str(path), "--out", str(out), "--include-rejected"]) == 0
    assert len(read_ytvis_results(out)) == 3
    # edits after the save live only in the journal: --recover applies them
    doc.start_journal()
    doc.delete([a])
    doc._journal.close(delete=False)  # as after a crash
    capsys.readouterr()
    out2 = tmp_path / "plain.json"
    assert main(["export", str(path), "--out", str(out2)]) == 0
    assert "journal" in json.loads(capsys.readouterr().out)["warning"]
    assert len(read_ytvis_results(out2)) == 2
    out3 = tmp_path / "recovered.json"
    assert main(["export", str(path), "--out", str(out3), "--recover"]) == 0
    assert [r.category_id for r in read_ytvis_results(out3)] == [2]


def test_export_errors_name_the_problem(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.vppproj"), "--out", str(tmp_path / "x.json")]) == 2
    assert "missing.vppproj" in capsys.readouterr().err
    _doc, path, _ = _project(tmp_path)
    assert main(["export", str(path)]) == 2
    assert "nothing to write" in capsys.readouterr().err
    assert main(["export", str(path), "--out", str(tmp_path / "no_dir" / "x.json")]) == 2
    assert "no_dir" in capsys.readouterr().err
    bad = tmp_path / "bad.vppproj"
    bad.write_text('{"format": "vpp-studio-project", "version": 99}')
    assert main(["export", str(bad), "--out", str(tmp_path / "y.json")]) == 2
    assert "newer" in capsys.readouterr().err


def test_export_never_overwrites_the_project(tmp_path, capsys):
    _doc, path, _ = _project(tmp_path)
    before = path.read_bytes()
    assert main(["export", str(path), "--out", str(path)]) == 2
    assert "review.vppproj" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_no_journal_warning_right_after_a_save(tmp_path, capsys):
    """The app keeps a journal open beside a saved project; with only its header (nothing unsaved), no warning."""
    doc, path, (a, _b, _c) = _project(tmp_path)
    doc.start_journal()
    doc.save()  # as the app does: the journal restarts with its header only
    assert doc.journal_path.is_file()
    assert main(["export", str(path), "--out", str(tmp_path / "r.json")]) == 0
    assert "warning" not in json.loads(capsys.readouterr().out)
    doc.delete([a])  # one edit after the save: now the journal holds something the project lacks
    assert main(["export", str(path), "--out", str(tmp_path / "r2.json")]) == 0
    assert "1 edit(s) not saved" in json.loads(capsys.readouterr().out)["warning"]
    doc.stop_journal(delete=True)
