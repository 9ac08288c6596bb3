"""core.app.document: dirty state, project files, export and import (helpers from test_document.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_document import CATS, H, T, W, clip_info, model_doc, random_pass, rect, run_pass, snapshot

from core.app.document import ClipInfo, Document
from core.app.document.project import read_project
from core.data.rle import decode_rle
from core.errors import DataError

# -- dirty ------------------------------------------------------------------------------------------------


def test_dirty_follows_the_saved_state(tmp_path):
    doc, _, _ = model_doc()
    a = min(doc.tracks)
    assert not doc.dirty  # a model pass alone is not a person's work (it can be run again)
    doc.paint(a, 0, rect(0, 0, 3, 3))
    assert doc.dirty
    doc.undo()
    assert not doc.dirty  # back at the start
    doc.redo()
    assert doc.dirty
    events = []
    doc.subscribe(events.append)
    path = doc.save(tmp_path / "p.vppproj")
    assert not doc.dirty and [e.kind for e in events] == ["path", "clean"]
    doc.paint(a, 1, rect(0, 0, 3, 3))
    assert doc.dirty
    doc.undo()
    assert not doc.dirty  # back at the saved state
    doc.undo()
    assert doc.dirty  # before the saved state
    doc.redo()
    assert not doc.dirty
    doc.redo()
    doc.save()
    loaded = Document.load(path)
    assert not loaded.dirty
    loaded.accept([a])
    assert loaded.dirty
    loaded.mark_clean()
    assert not loaded.dirty


def test_dirty_after_a_pass_settings_categories_and_view(tmp_path):
    doc = Document(clip_info(), categories=CATS)
    doc.set_settings(doc.settings.replace(pkr=0.3))
    assert not doc.dirty  # settings count only for a saved project
    doc.save(tmp_path / "p.vppproj")
    doc.set_settings(doc.settings.replace(pkr=0.2))
    assert doc.dirty
    doc.save()
    assert not doc.dirty
    _, _, frames = random_pass(0)
    run_pass(doc, frames)
    assert not doc.dirty  # the project still holds the previous pass's tracks, but a pass can be run again
    doc.set_hidden([min(doc.tracks)])
    doc.set_solo(min(doc.tracks))
    assert not doc.dirty  # view state is saved with the project but is not a change to save for
    doc.set_categories({4: "bird"})
    assert not doc.dirty  # documented as is: category names alone do not ask for a save
    assert Document.load(doc.save()).categories[4] == "bird"


def test_dirty_when_the_saved_state_fell_off_the_undo_stack(tmp_path):
    doc = Document(clip_info(), categories=CATS, undo_limit=2)
    doc.save(tmp_path / "p.vppproj")
    tid = doc.create_track(0, rect(0, 0, 2, 2), 1)
    doc.paint(tid, 0, rect(4, 4, 5, 5))
    doc.paint(tid, 0, rect(6, 6, 7, 7))
    while doc.undo() is not None:
        pass
    assert tid in doc.tracks  # the track's creation cannot be undone any more
    assert doc.dirty


# -- project ----------------------------------------------------------------------------------------------


def _rich_doc():
    doc, _, _ = model_doc(seed=11)
    a, b, c = sorted(doc.tracks)
    doc.accept([a])
    doc.reject([b])
    doc.paint(c, 2, rect(0, 0, 4, 4))
    u = doc.create_track(1, rect(20, 1, 29, 9), 2)
    doc.delete_frames(a, [3])
    doc.set_hidden([b])
    doc.set_solo(u)
    doc.set_settings(doc.settings.replace(pkr=0.25, threshold=0.3, mode="random"))
    doc.run = {"model": "m.safetensors", "pkr": 0.25}
    return doc


def test_project_round_trip(tmp_path):
    doc = _rich_doc()
    path = doc.save(tmp_path / "p.vppproj")
    assert path == (tmp_path / "p.vppproj").resolve()
    raw = json.loads(path.read_text())
    assert raw["format"] == "vpp-studio-project" and raw["version"] == 1
    loaded = Document.load(path)
    assert loaded.rows() == doc.rows()
    assert snapshot(loaded) == snapshot(doc)
    for tid in doc.tracks:
        for f in doc.track(tid).frames:
            assert np.array_equal(loaded.mask(tid, f), doc.mask(tid, f))
    assert loaded.categories == doc.categories
    assert loaded.hidden == doc.hidden and loaded.solo == doc.solo
    assert loaded._next_id == doc._next_id
    assert loaded.settings == doc.settings and loaded.run == doc.run
    assert loaded.clip.shape == doc.clip.shape and loaded.path == path
    assert not loaded.history.can_undo and not loaded.dirty
    assert loaded.create_track(0, rect(0, 0, 1, 1), 1) == doc.create_track(0, rect(0, 0, 1, 1), 1)


def test_save_without_a_path_or_onto_a_folder(tmp_path):
    doc = Document(clip_info())
    with pytest.raises(ValueError, match="give a path"):
        doc.save()
    with pytest.raises(DataError, match="folder"):
        doc.save(tmp_path)


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("damage", ["newer", "bad_json", "frame_outside", "bad_rle", "duplicate_ids", "not_project",
                                    "negative_frame", "bad_score", "bad_review", "non_ascii_rle", "unicode_digit"])
def test_bad_project_files_raise_data_error_naming_the_file(tmp_path, damage):
    doc = _rich_doc()
    good = doc.save(tmp_path / "good.vppproj")
    data = json.loads(good.read_text())
    bad = tmp_path / "bad.vppproj"
    t0 = data["tracks"][0]
    first = next(iter(t0["frames"]))
    if damage == "newer":
        data["version"] = 2
    elif damage == "frame_outside":
        t0["frames"][str(T)] = t0["frames"][first]
    elif damage == "bad_rle":
        t0["frames"][first][0] = t0["frames"][first][0][:-2]
    elif damage == "duplicate_ids":
        data["tracks"][1]["id"] = t0["id"]
    elif damage == "not_project":
        data["format"] = "something-else"
    elif damage == "negative_frame":
        t0["frames"]["-1"] = t0["frames"][first]
    elif damage == "bad_score":
        t0["frames"][first][1] = "high"
    elif damage == "bad_review":
        t0["review"] = "maybe"
    elif damage == "non_ascii_rle":
        t0["frames"][first][0] = "é" + t0["frames"][first][0]
    elif damage == "unicode_digit":
        t0["frames"]["²"] = t0["frames"][first]
    if damage == "bad_json":
        bad.write_text(good.read_text()[:-10])
    else:
        _write(bad, data)
    with pytest.raises(DataError, match=r"bad\.vppproj") as info:
        Document.load(bad)
    if damage == "newer":
        assert "newer" in str(info.value)


def test_save_into_a_missing_folder(tmp_path):
    doc = _rich_doc()
    target = tmp_path / "nope" / "p.vppproj"
    with pytest.raises(DataError, match=r"p\.vppproj"):
        doc.save(target)
    assert not target.exists() and not target.parent.exists()
    assert doc.path is None and doc.dirty


def test_a_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    doc = _rich_doc()
    path = doc.save(tmp_path / "p.vppproj")
    before = path.read_bytes()
    doc.accept([max(doc.tracks)])
    import contextlib

    import core.app.document.project as project

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

    real_open = project.atomic_open

    @contextlib.contextmanager
    def full_disk(*a, **k):  # the temporary file is made, then writing it fails
        with real_open(*a, **k):
            yield Full()

    monkeypatch.setattr(project, "atomic_open", full_disk)
    with pytest.raises(DataError, match="No space left"):
        doc.save()
    assert path.read_bytes() == before and doc.dirty
    assert [p.name for p in tmp_path.iterdir()] == ["p.vppproj"]


def test_unknown_top_level_keys_survive(tmp_path):
    doc = _rich_doc()
    path = doc.save(tmp_path / "p.vppproj")
    data = json.loads(path.read_text())
    data["future_thing"] = {"a": [1, 2, 3]}
    data["comment"] = "hello"
    _write(path, data)
    loaded = Document.load(path)
    loaded.accept([max(loaded.tracks)])
    loaded.save()
    again = json.loads(path.read_text())
    assert again["future_thing"] == {"a": [1, 2, 3]} and again["comment"] == "hello"
    assert again["format"] == "vpp-studio-project"
    assert read_project(path).extra == {"future_thing": {"a": [1, 2, 3]}, "comment": "hello"}


# -- export / import --------------------------------------------------------------------------------------


def test_to_clip_results_leaves_out_rejected_tracks_and_keeps_every_frame():
    doc = _rich_doc()
    rejected = {t.id for t in doc.tracks.values() if t.review == "rejected"}
    assert rejected
    res = doc.to_clip_results()
    assert res.is_complete and res.num_frames == T and (res.height, res.width) == (H, W)
    seen: dict[int, set[int]] = {}
    for f in res:
        for k, tid in enumerate(f.track_ids.tolist()):
            seen.setdefault(tid, set()).add(f.index)
            assert np.array_equal(f.mask(k), doc.mask(tid, f.index))
            assert f.category_ids[k] == doc.track(tid).category_id
    assert set(seen) == set(doc.tracks) - rejected
    for tid, frames in seen.items():
        assert frames == set(doc.track(tid).frames)
    entries = res.to_ytvis(1)
    assert len(entries) == len(doc.tracks) - len(rejected)
    assert all(len(e["segmentations"]) == T for e in entries)
    with_rejected = doc.to_clip_results(include_rejected=True)
    assert {t for f in with_rejected for t in f.track_ids.tolist()} == set(doc.tracks)
    assert any(f.keep_ratio == 0.5 for f in res)  # the model's diagnostics ride along


def test_export_writes_files_that_import_back(tmp_path):
    from core.export import import_tracks

    doc, ids, _ = model_doc(seed=12)  # 3 objects in 3 column bands of 13 px: no two exported tracks overlap
    a, b, c = (ids[p] for p in sorted(ids))
    doc.accept([a])
    doc.reject([b])
    doc.paint(c, 2, rect(0, 27, 3, 30))
    doc.delete_frames(c, [4])
    u = doc.create_track(1, rect(2, 14, 9, 25), 2)  # in the rejected track's band
    doc.paint(u, 3, rect(20, 15, 24, 20))
    keep = [a, c, u]
    out = {"ytvis": tmp_path / "r.json", "davis": tmp_path / "masks", "coco": tmp_path / "coco.json"}
    doc.export(out)
    assert all(p.exists() for p in out.values())
    for kind, p in out.items():
        back = import_tracks(p, num_frames=T, height=H, width=W)
        assert len(back.tracks) == len(keep), kind
        unmatched = set(keep)
        for it in back.tracks:
            match = [tid for tid in unmatched
                     if set(it.frames) == set(doc.track(tid).frames)
                     and all(np.array_equal(decode_rle(r), doc.mask(tid, f)) for f, r in it.frames.items())]
            assert len(match) == 1, (kind, it.source_id)
            unmatched -= set(match)
            if kind != "davis":
                assert it.category_id == doc.track(match[0]).category_id
                assert it.score == pytest.approx(doc.track(match[0]).score, abs=1e-6)
        assert not unmatched


def test_export_refuses_a_missing_folder_and_writes_nothing(tmp_path):
    doc = _rich_doc()
    with pytest.raises((DataError, ValueError)):
        doc.export({"ytvis": tmp_path / "r.json", "coco": tmp_path / "missing" / "c.json"})
    assert not (tmp_path / "r.json").exists()


def test_import_file_fixture(shared_data):
    results = shared_data / "davis_car_shadow" / "pred_ytvis_results.json"
    doc = Document(ClipInfo("/clips/car-shadow", 40, 480, 854))
    doc.set_categories({5: "car"})
    ids = doc.import_file(results)
    assert len(ids) == 1
    (row,) = doc.rows()
    assert row.num_frames == 40 and row.first == 0 and row.last == 39 and row.origin == "import"
    assert doc.track(ids[0]).protected
    assert doc.categories[5] == "car"  # a file without category names does not rename them
    raw = json.loads(results.read_text())
    assert np.array_equal(doc.mask(ids[0], 7), decode_rle(raw[0]["segmentations"][7]))
    doc.undo()
    assert not doc.tracks
    fresh = Document(ClipInfo("/clips/car-shadow", 40, 480, 854))
    fresh.import_file(results)
    assert fresh.rows()[0].category != "None"
    short = Document(ClipInfo("/clips/car-shadow", 39, 480, 854))
    with pytest.raises(DataError, match=r"pred_ytvis_results\.json"):
        short.import_file(results)
    assert not short.tracks
