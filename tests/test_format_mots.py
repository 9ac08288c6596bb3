"""KITTI-MOTS text (core/formats/mots.py): written by the one export door, `vpp infer --mots`, `vpp export --mots`
and the app's export menu, all found through the format registry; masks equal the YTVIS export's once overlaps
are resolved as the DAVIS export resolves them."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from core.cli import main
from core.data.davis import read_davis_png
from core.data.rle import decode_rle
from core.data.ytvis import read_ytvis_results
from core.errors import DataError
from core.export import RunRecord, VideoExport, export_results, import_tracks
from core.formats import codec, codecs
from core.formats.mots import MAX_PER_CLASS
from core.results import ClipResults, CompactFrame

T, H, W = 3, 20, 24


def _clip(instances, frames=T, h=H, w=W) -> ClipResults:
    """``instances``: per frame, a list of (track id, category, score, (y0, y1, x0, x1)) boxes as masks."""
    clip = ClipResults(frames, h, w)
    for t in range(frames):
        found = instances[t]
        masks = np.zeros((len(found), h, w), bool)
        for k, (*_, (y0, y1, x0, x1)) in enumerate(found):
            masks[k, y0:y1, x0:x1] = True
        clip.add(CompactFrame.from_result(SimpleNamespace(
            index=t, track_ids=np.array([i[0] for i in found], np.int64),
            category_ids=np.array([i[1] for i in found], np.int64),
            scores=np.array([i[2] for i in found], np.float32), masks=masks, kept=np.ones((1, 2, 2), bool),
            stage_names=("Map-SM",), keep_ratio=1.0, gflops=0.0, ms=0.0)))
    return clip


OVERLAP = [  # tracks 5 (class 2) and 7 (class 2) overlap on frames 0 and 2; track 9 (class 1) stands apart
    [(5, 2, 0.9, (2, 10, 2, 12)), (7, 2, 0.6, (6, 14, 8, 18)), (9, 1, 0.8, (15, 19, 0, 5))],
    [(5, 2, 0.9, (2, 6, 2, 6)), (9, 1, 0.8, (15, 19, 0, 5))],
    [(5, 2, 0.3, (2, 10, 2, 12)), (7, 2, 0.7, (6, 14, 8, 18))],  # here track 7 scores higher: it keeps the pixels
]
APART = [[(1, 3, 0.5, (0, 5, 0, 5)), (2, 3, 0.9, (10, 15, 10, 15))], [(2, 3, 0.9, (10, 15, 10, 20))], []]


def _lines(path):
    return [line.split(" ") for line in path.read_text().splitlines()]


def _mots_masks(path):
    """(frame, obj_id) -> (class_id, mask) of a MOTS file."""
    out = {}
    for t, obj, cls, h, w, counts in _lines(path):
        out[int(t), int(obj)] = (int(cls), decode_rle({"size": [int(h), int(w)], "counts": counts}))
    return out


def _export(tmp_path, clip):
    outputs = {"ytvis": tmp_path / "r.json", "davis": tmp_path / "d", "mots": tmp_path / "m.txt"}
    summary = export_results([VideoExport(1, "v", tuple(f"{t:05d}.jpg" for t in range(clip.num_frames)), clip)],
                             outputs, categories=[(1, "car"), (2, "person"), (3, "dog")],
                             record=RunRecord("t", "m"))
    return summary, outputs


def _ytvis_masks(path):
    """Track index (ascending track id) -> (class, per-frame masks or None) of the YTVIS export."""
    return [(r.category_id, [None if s is None else decode_rle(s) for s in r.segmentations])
            for r in read_ytvis_results(path)]


def _object_ids(ytvis):
    """The documented mapping: the k-th track of a class (ascending track id) is class_id * 1000 + k."""
    seen: dict[int, int] = {}
    ids = []
    for cls, _ in ytvis:
        seen[cls] = seen.get(cls, 0) + 1
        ids.append(cls * 1000 + seen[cls])
    return ids


@pytest.mark.parametrize("case", ["apart", "overlap"])
def test_masks_equal_the_ytvis_exports_after_the_davis_overlap_rule(tmp_path, case):
    instances = APART if case == "apart" else OVERLAP
    clip = _clip(instances)
    summary, out = _export(tmp_path, clip)
    assert out["mots"] in summary.paths and str(out["mots"]) in summary.message
    ytvis = _ytvis_masks(out["ytvis"])
    ids = _object_ids(ytvis)
    mots = _mots_masks(out["mots"])
    rows = [(int(t), int(o)) for t, o, *_ in _lines(out["mots"])]
    assert rows == sorted(rows)  # by frame, then object id
    expected = set()
    for t in range(T):
        by_score = sorted(instances[t], key=lambda i: -i[2])  # the DAVIS rule: the higher-scored keeps the pixel
        claimed = np.zeros((H, W), bool)
        truth = {}
        for tid, *_ in by_score:
            k = sorted({i[0] for f in instances for i in f}).index(tid)
            own = ytvis[k][1][t] & ~claimed
            claimed |= ytvis[k][1][t]
            truth[ids[k]] = (ytvis[k][0], own)
        davis = read_davis_png(out["davis"] / f"{t:05d}.png")
        for obj, (cls, mask) in truth.items():
            if mask.any():
                expected.add((t, obj))
                assert mots[t, obj][0] == cls
                np.testing.assert_array_equal(mots[t, obj][1], mask)
                assert len(np.unique(davis[mask])) == 1  # the same pixels as one DAVIS object
        if case == "apart":  # no overlap: exactly the YTVIS masks
            for obj in truth:
                k = ids.index(obj)
                if ytvis[k][1][t] is not None:
                    np.testing.assert_array_equal(mots[t, obj][1], ytvis[k][1][t])
    assert set(mots) == expected
    if case == "overlap":
        assert ids == [2001, 2002, 1001]  # tracks 5, 7 (class 2), 9 (class 1)
        both = mots[0, 2001][1] & mots[0, 2002][1]
        assert not both.any() and (ytvis[0][1][0] & ytvis[1][1][0]).any()  # the overlap was resolved


def test_round_trip_read_back_and_import(tmp_path):
    clip = _clip(OVERLAP)
    _, out = _export(tmp_path, clip)
    back = import_tracks(out["mots"], num_frames=T, height=H, width=W)
    assert back.format == "kitti-mots" and [t.source_id for t in back.tracks] == [1001, 2001, 2002]
    assert back.categories == ((1, None), (2, None))
    mots = _mots_masks(out["mots"])
    for track in back.tracks:
        for t in range(T):
            got = track.mask(t)
            assert (got is None) == ((t, track.source_id) not in mots)
            if got is not None:
                np.testing.assert_array_equal(got, mots[t, track.source_id][1])
    run = json.loads((tmp_path / "m.run.json").read_text())
    assert run["outputs"] == ["m.txt"] and run["videos"][0]["tracks"] == 3
    bad = tmp_path / "bad.txt"
    bad.write_text("0 2001 2 20 24 0\n")  # runs that do not cover 20x24
    with pytest.raises(DataError, match=r"bad\.txt"):
        import_tracks(bad, num_frames=T, height=H, width=W)


def test_more_than_999_tracks_of_a_class_is_refused_naming_the_file(tmp_path):
    n = MAX_PER_CLASS + 1
    clip = _clip([[(i + 1, 4, 0.5, (i // 40, i // 40 + 1, i % 40, i % 40 + 1)) for i in range(n)]], frames=1, h=30,
                 w=40)
    video = VideoExport(1, "v", ("a.jpg",), clip)
    with pytest.raises(DataError, match=r"m\.txt: video 1 \(v\) has 1000 tracks of class 4, more than the 999"):
        export_results([video], {"ytvis": tmp_path / "r.json", "mots": tmp_path / "m.txt"}, record=RunRecord("t", "m"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # all or nothing: no output, no staging left
    clip999 = _clip([[(i + 1, 4, 0.5, (i // 40, i // 40 + 1, i % 40, i % 40 + 1)) for i in range(n - 1)]
                     + [(5000, 1, 0.5, (29, 30, 39, 40))]], frames=1, h=30, w=40)
    export_results([VideoExport(1, "v", ("a.jpg",), clip999)], {"mots": tmp_path / "m.txt"},
                   record=RunRecord("t", "m"))
    assert {int(o) for _t, o, *_ in _lines(tmp_path / "m.txt")} == {1001, *range(4001, 4001 + MAX_PER_CLASS)}


def test_the_registry_gives_the_cli_options_and_the_menu_entry(tmp_path, capsys):
    mots = codec("mots")
    assert mots in codecs() and mots.option == "--mots" and not mots.folder
    assert mots.menu_label and mots.menu_joins is None  # the File menu is built from these
    assert main(["infer", "--help"]) == 0
    assert "--mots FILE" in capsys.readouterr().out
    assert main(["export", "--help"]) == 0
    assert "--mots FILE" in capsys.readouterr().out


def test_vpp_export_writes_mots_like_its_ytvis(tmp_path, capsys):
    from core.app.document import ClipInfo, Document

    doc = Document(ClipInfo(str(tmp_path / "gone_clip"), T, H, W, tuple(f"{i:05d}.jpg" for i in range(T))),
                   categories={1: "person", 2: "dog"})
    m = np.zeros((H, W), bool)
    m[2:8, 2:8] = True
    doc.create_track(0, m, 1)
    doc.create_track(1, np.roll(m, 10, axis=1), 2)
    project = doc.save(tmp_path / "p.vppproj")
    out, mots = tmp_path / "r.json", tmp_path / "m.txt"
    assert main(["export", str(project), "--out", str(out), "--mots", str(mots)]) == 0
    assert str(mots) in json.loads(capsys.readouterr().out)["written"]
    ytvis = _ytvis_masks(out)
    got = _mots_masks(mots)
    for k, obj in enumerate(_object_ids(ytvis)):
        for t, mask in enumerate(ytvis[k][1]):
            if mask is not None:
                np.testing.assert_array_equal(got[t, obj][1], mask)


def test_vpp_infer_writes_mots_whose_masks_are_the_davis_objects(shared_data, tmp_path, capsys):
    import torch

    from core.model.vpp.builder import build_vpp
    from core.model.vpp.checkpoint import save_checkpoint
    from core.model.vpp.config import VPPConfig

    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=128, num_queries=8, decoder_layers=2, num_classes=6,
                                categories=("a", "b", "c", "d", "e", "f"))
    model = tmp_path / "m.safetensors"
    save_checkpoint(build_vpp(cfg).eval(), cfg, model)
    frames = tmp_path / "frames"
    frames.mkdir()
    for f in sorted((shared_data / "davis_car_shadow/frames").iterdir())[:3]:
        shutil.copy(f, frames / f.name)
    out, davis, mots = tmp_path / "r.json", tmp_path / "d", tmp_path / "m.txt"
    code = main(["infer", str(frames), "--model", str(model), "--out", str(out), "--davis-png", str(davis),
                 "--mots", str(mots), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    ytvis = _ytvis_masks(out)
    ids = _object_ids(ytvis)
    got = _mots_masks(mots)
    assert {o for _t, o in got} <= set(ids)
    names = sorted(p.stem for p in frames.iterdir())
    for t, name in enumerate(names):
        labels = read_davis_png(davis / f"{name}.png")
        claimed = np.zeros_like(labels, bool)
        for (ft, obj), (_cls, mask) in got.items():
            if ft == t:
                k = ids.index(obj)
                assert not (mask & claimed).any() and not (mask & ~ytvis[k][1][t]).any()  # inside its YTVIS mask
                assert len(np.unique(labels[mask])) == 1 and labels[mask][0] > 0  # one DAVIS object's pixels
                claimed |= mask
        assert np.array_equal(claimed, labels > 0)  # every labelled pixel is in some MOTS mask


def test_vpp_infer_refuses_mots_for_several_clips_before_reading_a_frame(shared_data, tmp_path, capsys,
                                                                          monkeypatch):
    from core.commands import infer

    clips = tmp_path / "clips"
    for name in ("a", "b"):
        (clips / name).mkdir(parents=True)
        for f in sorted((shared_data / "davis_car_shadow/frames").iterdir())[:2]:
            shutil.copy(f, clips / name / f.name)

    def no_model(*_a, **_k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(infer, "load_model", no_model)
    mots = tmp_path / "m.txt"
    code = main(["infer", str(clips), "--out", str(tmp_path / "r.json"), "--mots", str(mots)])
    err = capsys.readouterr().err
    assert code != 0 and "holds one video" in err and "2 clips" in err and str(mots) in err
    assert not mots.exists() and not (tmp_path / "r.json").exists()


def test_the_app_menu_offers_mots(qtbot):
    from PySide6.QtWidgets import QMainWindow

    from vpp_gui.actions import Actions

    window = QMainWindow()
    qtbot.addWidget(window)
    a = Actions(window)
    assert a.exports["mots"] is a.export_mots and a.export_mots.text() == codec("mots").menu_label
    a.build_menus(window, [])
    assert a.export_mots in window.menuBar().actions()[0].menu().actions()
