"""core.export: one door for YTVIS / zip / COCO / DAVIS exports (all or nothing) and for importing tracks."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from pycocotools.coco import COCO

import core.export as export_mod
import core.formats.davis as davis_format
from core.data.davis import read_davis_png, write_davis_png
from core.data.rle import decode_rle, encode_mask
from core.errors import DataError
from core.export import RunRecord, VideoExport, check_outputs, export_results, import_tracks
from core.regular_files import file_sha256
from core.results import ClipResults, CompactFrame

T, H, W = 3, 30, 40  # a 3-frame 40x30 clip
CAR = "davis_car_shadow"


def _frame(index, tracks, h=H, w=W):
    """``tracks``: list of (track_id, category_id, score, mask)."""
    masks = np.stack([m for *_, m in tracks]) if tracks else np.zeros((0, h, w), bool)
    return CompactFrame.from_result(SimpleNamespace(
        index=index, track_ids=np.array([t[0] for t in tracks], np.int64),
        category_ids=np.array([t[1] for t in tracks], np.int64),
        scores=np.array([t[2] for t in tracks], np.float32), masks=masks, kept=np.ones((1, 2, 2), bool),
        stage_names=("Map-SM",), keep_ratio=0.5, gflops=1.0, ms=1.0))


def random_clip(seed=0, *, disjoint=False, frames=T, h=H, w=W):
    """A complete ClipResults of random masks; returns (clip, {track id: {frame: mask}}, {track id: category}).

    Track 5 is absent from frame 1 and track 9 has an empty mask there (empty = absent). With
    ``disjoint`` the masks come from one label map per frame, so no pixel belongs to two tracks.
    """
    rng = np.random.default_rng(seed)
    cats = {2: 1, 5: 3, 9: 2}
    scores = {2: 0.9, 5: 0.6, 9: 0.3}
    clip = ClipResults(frames, h, w)
    truth: dict[int, dict[int, np.ndarray]] = {tid: {} for tid in cats}
    for t in range(frames):
        labels = rng.integers(0, 4, (h, w))
        tracks = []
        for k, tid in enumerate(cats, 1):
            if tid == 5 and t == 1:
                continue
            mask = labels == k if disjoint else rng.random((h, w)) < 0.3
            if tid == 9 and t == 1:
                mask = np.zeros((h, w), bool)
            tracks.append((tid, cats[tid], scores[tid], mask))
            if mask.any():
                truth[tid][t] = mask
        clip.add(_frame(t, tracks, h, w))
    return clip, truth, cats


def video(clip, video_id=1, name="clip"):
    return VideoExport(video_id, name, tuple(f"{name}/{t:05d}.jpg" for t in range(clip.num_frames)), clip)


@pytest.fixture
def record(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(os.urandom(3000))
    return RunRecord.for_model("vpp export", model, pkr=0.4, mode="vpp", extra={"note": "test"})


def _masks_of(imported):
    return {tr.source_id: {t: decode_rle(r) for t, r in tr.frames.items()} for tr in imported.tracks}


def _assert_same(got: dict[int, dict[int, np.ndarray]], want: list[dict[int, np.ndarray]]):
    assert len(got) == len(want)
    for g, w in zip(got.values(), want):
        assert sorted(g) == sorted(w)
        for t in w:
            np.testing.assert_array_equal(g[t], w[t])


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ytvis", "zip", "coco"])
def test_file_formats_round_trip_every_mask(tmp_path, record, kind):
    clip, truth, cats = random_clip(1)
    path = tmp_path / ("r.zip" if kind == "zip" else "r.json")
    summary = export_results([video(clip)], {kind: path}, record=record)
    assert summary.tracks == {1: 3} and path in summary.paths and str(path) in summary.message
    back = import_tracks(path, num_frames=T, height=H, width=W)
    assert back.video_id == 1 and back.format == ("coco" if kind == "coco" else "ytvis-results")
    assert [tr.category_id for tr in back.tracks] == [cats[2], cats[5], cats[9]]
    assert [tr.score for tr in back.tracks] == pytest.approx([0.9, 0.6, 0.3])
    assert sorted(back.tracks[1].frames) == [0, 2] and sorted(back.tracks[2].frames) == [0, 2]
    _assert_same(_masks_of(back), [truth[2], truth[5], truth[9]])
    if kind == "zip":
        with zipfile.ZipFile(path) as zf:
            assert zf.namelist() == ["results.json"]


def test_davis_round_trip_and_objects_by_score(tmp_path, record):
    clip, truth, _ = random_clip(2, disjoint=True)
    export_results([video(clip)], {"davis": tmp_path / "masks"}, record=record)
    assert _listing(tmp_path / "masks") == ["00000.png", "00001.png", "00002.png", "vpp_run.json"]
    back = import_tracks(tmp_path / "masks", num_frames=T, height=H, width=W, category_id=7)
    assert back.format == "davis" and [tr.source_id for tr in back.tracks] == [1, 2, 3]
    assert {tr.category_id for tr in back.tracks} == {7} and {tr.score for tr in back.tracks} == {1.0}
    _assert_same(_masks_of(back), [truth[2], truth[5], truth[9]])  # objects 1..K in summed-score order
    run = json.loads((tmp_path / "masks" / "vpp_run.json").read_text())
    assert run["videos"][0]["objects"] == [2, 5, 9] and run["tool"] == "vpp export"


def test_coco_json_loads_with_pycocotools(tmp_path, record):
    clip, truth, _ = random_clip(3)
    path = tmp_path / "frames_coco.json"
    export_results([video(clip)], {"coco": path}, categories=[(1, "person"), (2, "dog")], record=record)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == T
    assert len(coco.getAnnIds()) == sum(len(fr) for fr in truth.values()) == 7  # absent / empty frames: none
    img = coco.loadImgs(1)[0]
    assert (img["file_name"], img["width"], img["height"], img["frame_index"]) == ("clip/00000.jpg", W, H, 0)
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == {1: "person", 2: "dog", 3: "category 3"}
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[3]))
    by_track = {a["track_id"]: a for a in ann}
    assert sorted(by_track) == [2, 5, 9] and all(isinstance(a["segmentation"]["counts"], str) for a in ann)
    np.testing.assert_array_equal(coco.annToMask(by_track[5]).astype(bool), truth[5][2])
    assert by_track[5]["area"] == truth[5][2].sum() and by_track[5]["iscrowd"] == 0
    assert coco.dataset["info"]["model_sha256"] == record.model_sha256


def test_run_records_beside_every_output(tmp_path, record):
    clip, *_ = random_clip(4)
    model_sha = hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    assert record.model_sha256 == model_sha == file_sha256(tmp_path / "model.safetensors", chunk_size=7)
    summary = export_results([video(clip)],
                             {"ytvis": tmp_path / "r.json", "zip": tmp_path / "r.zip", "coco": tmp_path / "c.json",
                              "davis": tmp_path / "d"}, record=record)
    assert _listing(tmp_path) == ["c.json", "c.run.json", "d", "d/00000.png", "d/00001.png", "d/00002.png",
                                  "d/vpp_run.json", "model.safetensors", "r.json", "r.run.json", "r.zip"]
    assert set(summary.paths) == {tmp_path / n for n in ("r.json", "r.zip", "c.json", "d", "r.run.json",
                                                         "c.run.json")}
    for side, outputs in (("r.run.json", ["r.json", "r.zip"]), ("c.run.json", ["c.json"]), ("d/vpp_run.json", ["."])):
        run = json.loads((tmp_path / side).read_text())
        assert run["model_sha256"] == model_sha and run["pkr"] == 0.4 and run["mode"] == "vpp"
        assert run["outputs"] == outputs and run["extra"] == {"note": "test"} and run["created"].endswith("+00:00")
        assert run["videos"] == [{"video_id": 1, "name": "clip", "frames": T, "tracks": 3,
                                  **({"folder": "", "objects": run["videos"][0]["objects"]} if "d/" in side else {})}]
    assert RunRecord("x", "m").version == export_mod.package_version() != ""


def test_several_videos_go_to_sub_folders_and_the_matching_video_is_imported(tmp_path, record):
    a, truth_a, _ = random_clip(5, disjoint=True)
    b, truth_b, _ = random_clip(6, disjoint=True, frames=2)
    c, *_ = random_clip(7, disjoint=True)
    videos = [video(a, 1, "same"), video(b, 2, "same"), video(c, 3, "other")]
    export_results(videos, {"ytvis": tmp_path / "r.json", "davis": tmp_path / "d"}, record=record)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["other", "same-1", "same-2", "vpp_run.json"]
    back = import_tracks(tmp_path / "d" / "same-2", num_frames=2, height=H, width=W)
    _assert_same(_masks_of(back), [truth_b[2], truth_b[5], truth_b[9]])
    with pytest.raises(DataError, match=r"no PNG masks found.*other, same-1, same-2"):
        import_tracks(tmp_path / "d", num_frames=2, height=H, width=W)
    # the results file holds three videos: the unique one of 2 frames is chosen, or one by id
    assert import_tracks(tmp_path / "r.json", num_frames=2, height=H, width=W).video_id == 2
    assert import_tracks(tmp_path / "r.json", num_frames=3, height=H, width=W, video_id=3).video_id == 3
    with pytest.raises(DataError, match=r"r\.json: holds videos 1, 2, 3 and 2 of them match"):
        import_tracks(tmp_path / "r.json", num_frames=3, height=H, width=W)
    with pytest.raises(DataError, match=r"has no video 4 \(its videos: 1, 2, 3\)"):
        import_tracks(tmp_path / "r.json", num_frames=3, height=H, width=W, video_id=4)
    _assert_same(_masks_of(import_tracks(tmp_path / "r.json", num_frames=3, height=H, width=W, video_id=1)),
                 [truth_a[2], truth_a[5], truth_a[9]])


# -- all or nothing -------------------------------------------------------------------------------


def test_a_failure_in_the_last_format_leaves_nothing_new(tmp_path, record, monkeypatch):
    clip, *_ = random_clip(8)
    (tmp_path / "results.json").write_text("[]\n")
    before = _listing(tmp_path)
    calls = []

    def broken(path, labels):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        write_davis_png(path, labels)

    monkeypatch.setattr(davis_format, "write_davis_png", broken)
    with pytest.raises(OSError, match="disk full"):
        export_results([video(clip)],
                       {"ytvis": tmp_path / "results.json", "zip": tmp_path / "results.zip",
                        "coco": tmp_path / "coco.json", "davis": tmp_path / "masks"}, record=record)
    assert len(calls) == 2  # it failed in the middle of the DAVIS folder, after the other formats were staged
    assert _listing(tmp_path) == before  # no new file, no staging left
    assert (tmp_path / "results.json").read_text() == "[]\n"


def test_a_failed_commit_restores_every_old_output(tmp_path, record, monkeypatch):
    old, *_ = random_clip(9, disjoint=True)
    new, *_ = random_clip(10, disjoint=True)
    export_results([video(old)], {"ytvis": tmp_path / "r.json", "davis": tmp_path / "d"}, record=record)
    saved = {p: (tmp_path / p).read_bytes() for p in _listing(tmp_path) if (tmp_path / p).is_file()}
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("r.zip"):
            raise OSError("no space left")
        return real_replace(src, dst)

    monkeypatch.setattr(export_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="no space left"):
        export_results([video(new)],
                       {"ytvis": tmp_path / "r.json", "zip": tmp_path / "r.zip", "davis": tmp_path / "d"},
                       record=record)
    assert {p: (tmp_path / p).read_bytes() for p in _listing(tmp_path) if (tmp_path / p).is_file()} == saved


def test_an_earlier_export_folder_is_replaced_but_a_foreign_one_is_refused(tmp_path, record):
    clip, *_ = random_clip(11, disjoint=True)
    short, *_ = random_clip(12, disjoint=True, frames=2)
    export_results([video(clip)], {"davis": tmp_path / "d"}, record=record)
    export_results([video(short)], {"davis": tmp_path / "d"}, record=record)  # ours: replaced as a whole
    assert _listing(tmp_path) == ["d", "d/00000.png", "d/00001.png", "d/vpp_run.json", "model.safetensors"]
    (tmp_path / "empty").mkdir()
    export_results([video(short)], {"davis": tmp_path / "empty"}, record=record)  # an empty folder is fine
    assert len(list((tmp_path / "empty").glob("*.png"))) == 2

    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match=r"photos: the folder is not empty.*choose an empty or new folder"):
        export_results([video(clip)], {"ytvis": tmp_path / "r.json", "davis": user}, record=record)
    assert _listing(user) == ["holiday.jpg"] and (user / "holiday.jpg").read_bytes() == b"precious"
    assert not (tmp_path / "r.json").exists()  # checked before anything was written


def test_an_earlier_export_with_a_users_files_added_is_refused_whole(tmp_path, record):
    """Only our own export is replaced: a notes file or another run's folder inside it stops the export."""
    clip, *_ = random_clip(15, disjoint=True)
    a, *_ = random_clip(16, disjoint=True)
    exports = tmp_path / "exports"
    export_results([video(clip)], {"davis": exports}, record=record)
    (exports / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"exports: holds notes\.txt besides an earlier export.*move them out"):
        export_results([video(clip)], {"ytvis": tmp_path / "r.json", "davis": exports}, record=record)
    (exports / "notes.txt").unlink()
    (exports / "other_run").mkdir()
    (exports / "other_run" / "00000.png").write_bytes(b"not ours")
    with pytest.raises(DataError, match=r"holds other_run besides an earlier export"):
        check_outputs({"davis": exports})
    assert (exports / "other_run" / "00000.png").read_bytes() == b"not ours"
    assert not (tmp_path / "r.json").exists()
    (exports / "other_run" / "00000.png").unlink()
    (exports / "other_run").rmdir()
    several = tmp_path / "several"  # an export of several videos: its listed sub-folders are ours
    export_results([video(clip, 1, "a"), video(a, 2, "b")], {"davis": several}, record=record)
    (several / "a" / "extra.txt").write_text("mine")
    with pytest.raises(DataError, match=r"holds a besides an earlier export"):
        check_outputs({"davis": several})
    (several / "a" / "extra.txt").unlink()
    export_results([video(clip)], {"davis": several}, record=record)  # now ours alone: replaced as a whole
    assert _listing(several) == ["00000.png", "00001.png", "00002.png", "vpp_run.json"]


def test_symlinked_outputs_are_refused(tmp_path, record):
    clip, *_ = random_clip(17, disjoint=True)
    export_results([video(clip)], {"davis": tmp_path / "real", "ytvis": tmp_path / "real.json"}, record=record)
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "link.json").symlink_to("real.json")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    with pytest.raises(DataError, match=r"link: is a symbolic link \(to .*real\); give the folder itself"):
        export_results([video(clip)], {"davis": tmp_path / "link"}, record=record)
    with pytest.raises(DataError, match=r"link\.json: is a symbolic link"):
        export_results([video(clip)], {"ytvis": tmp_path / "link.json"}, record=record)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "link.json", "model.safetensors", "real",
                                                          "real.json", "real.run.json"]


def test_videos_whose_names_collide_each_get_their_own_davis_folder(tmp_path, record):
    made = [random_clip(20 + i, disjoint=True) for i in range(4)]
    clips = [c for c, *_ in made]
    videos = [video(clips[0], 1, "x"), video(clips[1], 2, "X"), video(clips[2], 3, "x-1"), video(clips[3], 4, "..")]
    export_results(videos, {"davis": tmp_path / "d"}, record=record)
    run = json.loads((tmp_path / "d" / "vpp_run.json").read_text())
    folders = [v["folder"] for v in run["videos"]]
    assert folders[2] == "x-1" and len({f.lower() for f in folders}) == 4 and ".." not in folders
    for (_, truth, _), f in zip(made, folders):  # each folder holds its own video's masks
        back = import_tracks(tmp_path / "d" / f, num_frames=T, height=H, width=W)
        _assert_same(_masks_of(back), [truth[2], truth[5], truth[9]])
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted([*folders, "vpp_run.json"])


def test_output_locations_are_checked_before_writing(tmp_path):
    with pytest.raises(ValueError, match="at least one output"):
        check_outputs({})
    with pytest.raises(DataError, match=r"given as both the YTVIS results and the zipped results output"):
        check_outputs({"ytvis": tmp_path / "r.json", "zip": tmp_path / "sub" / ".." / "r.json"})
    with pytest.raises(DataError, match=r"its run record .*r\.run\.json would overwrite the COCO JSON output"):
        check_outputs({"ytvis": tmp_path / "r.json", "coco": tmp_path / "r.run.json"})
    with pytest.raises(DataError, match=r"output folder .*nope does not exist"):
        check_outputs({"coco": tmp_path / "nope" / "c.json"})
    with pytest.raises(DataError, match=r"lies inside the DAVIS folder"):
        check_outputs({"ytvis": tmp_path / "d" / "r.json", "davis": tmp_path / "d"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"file: is a file, not a folder"):
        check_outputs({"davis": tmp_path / "file"})
    assert check_outputs({"ytvis": tmp_path / "r.json", "zip": tmp_path / "r.zip"}) == {
        "ytvis": tmp_path / "r.json", "zip": tmp_path / "r.zip"}
    assert _listing(tmp_path) == ["file"]


def test_incomplete_or_inconsistent_videos_are_refused(tmp_path, record):
    clip = ClipResults(3, H, W)
    clip.add(_frame(0, []))
    with pytest.raises(DataError, match="results for 1 of 3 frames"):
        export_results([video(clip)], {"ytvis": tmp_path / "r.json"}, record=record)
    full, *_ = random_clip(13)
    with pytest.raises(DataError, match="video ids are not unique"):
        export_results([video(full), video(full)], {"ytvis": tmp_path / "r.json"}, record=record)
    same_stems = VideoExport(1, "x", ("a.jpg", "a.png", "b.jpg"), full)
    with pytest.raises(DataError, match=r"video 1 \(x\): the frame names do not have distinct, non-empty stems"):
        export_results([same_stems], {"ytvis": tmp_path / "r.json", "davis": tmp_path / "d"}, record=record)
    with pytest.raises(ValueError, match="2 frame names for 3 frames"):
        export_results([VideoExport(1, "x", ("a.jpg", "b.jpg"), full)], {"ytvis": tmp_path / "r.json"}, record=record)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


# -- imports --------------------------------------------------------------------------------------


def test_mismatched_frames_or_size_name_the_file(tmp_path, record):
    clip, *_ = random_clip(14, disjoint=True)
    export_results([video(clip)], {"ytvis": tmp_path / "r.json", "davis": tmp_path / "d"}, record=record)
    with pytest.raises(DataError, match=r"r\.json: video 1 has 3 frames, but the open clip has 4"):
        import_tracks(tmp_path / "r.json", num_frames=4, height=H, width=W)
    with pytest.raises(DataError, match=r"r\.json: video 1 is 40x30 .* but the open clip is 40x31"):
        import_tracks(tmp_path / "r.json", num_frames=3, height=31, width=W)
    with pytest.raises(DataError, match=r"d: holds 3 PNG masks, but the open clip has 2 frames"):
        import_tracks(tmp_path / "d", num_frames=2, height=H, width=W)
    with pytest.raises(DataError, match=r"00000\.png: mask is 40x30, but the open clip is 41x30"):
        import_tracks(tmp_path / "d", num_frames=3, height=H, width=41)
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(DataError, match=r"x\.json: not a YouTube-VIS results list"):
        import_tracks(tmp_path / "x.json", num_frames=3, height=H, width=W)


def _gt(videos):
    """A YTVIS ground truth: ``videos`` = list of (id, frames, height, width); one track per video."""
    vids, anns = [], []
    for vid, n, h, w in videos:
        vids.append({"id": vid, "width": w, "height": h, "length": n,
                     "file_names": [f"v{vid}/{t:05d}.jpg" for t in range(n)]})
        mask = np.zeros((h, w), bool)
        mask[vid: vid + 5, 2:9] = True
        anns.append({"id": 10 + vid, "video_id": vid, "category_id": vid, "iscrowd": 0,
                     "segmentations": [encode_mask(mask)] + [None] * (n - 1), "height": h, "width": w})
    return {"videos": vids, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def test_ground_truth_with_two_videos_picks_the_one_matching_the_clip(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_gt([(1, 5, H, W), (2, 3, H, W)])))
    back = import_tracks(path, num_frames=3, height=H, width=W)
    assert back.format == "ytvis-gt" and back.video_id == 2 and back.categories == ((1, "a"), (2, "b"))
    (track,) = back.tracks
    assert (track.source_id, track.category_id, track.score, sorted(track.frames)) == (12, 2, 1.0, [0])
    assert track.mask(0)[2:7, 2:9].all() and track.mask(0).sum() == 35 and track.mask(1) is None
    assert import_tracks(path, num_frames=5, height=H, width=W).video_id == 1
    with pytest.raises(DataError, match=r"gt\.json: holds videos 1, 2 and none of them matches the open clip"):
        import_tracks(path, num_frames=4, height=H, width=W)
    with pytest.raises(DataError, match=r"gt\.json: video 1 has 5 frames, but the open clip has 3"):
        import_tracks(path, num_frames=3, height=H, width=W, video_id=1)


def test_real_davis_fixtures_import_as_one_track_of_40_frames(shared_data):
    car = shared_data / CAR
    clip = {"num_frames": 40, "height": 480, "width": 854}
    got = {name: import_tracks(car / name, **clip)
           for name in ("gt_ytvis.json", "pred_ytvis_results.json", "pred_masks", "masks")}
    for name, back in got.items():
        assert len(back.tracks) == 1, name
        assert sorted(back.tracks[0].frames) == list(range(40)), name
    assert got["gt_ytvis.json"].tracks[0].category_id == 5 and len(got["gt_ytvis.json"].categories) == 40
    assert (5, "car") in got["gt_ytvis.json"].categories
    assert got["pred_ytvis_results.json"].tracks[0].category_id == 5
    # masks/ is greyscale 0/255: read_davis_png maps 255 to object 1, the same mask as the YTVIS ground truth
    assert read_davis_png(car / "masks" / "00000.png").max() == 1
    for t in (0, 21, 39):
        np.testing.assert_array_equal(got["masks"].tracks[0].mask(t), got["gt_ytvis.json"].tracks[0].mask(t))
        np.testing.assert_array_equal(got["pred_masks"].tracks[0].mask(t),
                                      got["pred_ytvis_results.json"].tracks[0].mask(t))
    with pytest.raises(DataError, match=r"pred_ytvis_results\.json: video 1 is 854x480 .* the open clip is 640x480"):
        import_tracks(car / "pred_ytvis_results.json", num_frames=40, height=480, width=640)
    with pytest.raises(DataError, match=r"gt_ytvis\.json: video 1 has 40 frames, but the open clip has 39"):
        import_tracks(car / "gt_ytvis.json", num_frames=39, height=480, width=854)
