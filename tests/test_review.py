"""``core.app.review``: GT loading (dense, sparse, YTVIS, DAVIS), track matching, panel figures equal ``vpp eval``.

Real data: the DAVIS car-shadow clip (frames, GT masks, its YTVIS GT and an OSVOS prediction; track IoU
0.936940 and video AP 0.900 per ``shared/data/README.md``). Synthetic clips are built here with known IoUs.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import cli
from core.app.document import Document, FrameMask, Track
from core.app.review import (
    ClipGroundTruth,
    GroundTruthTrack,
    document_entries,
    evaluate_entries,
    load_ground_truth,
    review_tracks,
)
from core.data.davis import read_davis_png, write_davis_png
from core.data.rle import decode_rle, encode_mask
from core.errors import DataError
from core.evaluation.ytvis_eval import track_iou_matrix
from tests.ytvis_factories import box_mask, dump, gt_dict, results_list, rle

CAR = "davis_car_shadow"
N, H, W = 40, 480, 854
NAMES = tuple(f"{t:05d}.jpg" for t in range(N))


@pytest.fixture()
def car(shared_data) -> Path:
    return shared_data / CAR


def _eval_cli(tmp_path: Path, gt_path: Path, results, tag: str, capsys) -> dict:
    """``vpp eval`` on a GT file and results (a file, or entries written to one): its figures."""
    res = results if isinstance(results, Path) else dump(tmp_path / f"res_{tag}.json", results)
    out = tmp_path / f"eval_{tag}.json"
    assert cli.main(["eval", "--gt", str(gt_path), "--results", str(res), "--json", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())["figures"]


def _same(report, figures: dict) -> None:
    assert set(report.figures) == set(figures)
    for k, v in figures.items():
        assert report.figures[k] == pytest.approx(v, abs=1e-9), k
    for ours, theirs in (("AP_track", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("AR1", "AR1"), ("AR10", "AR10"),
                         ("mAP_bbox", "bbox_AP"), ("mAP_segm", "segm_AP")):
        assert report.overall[ours] == pytest.approx(figures[theirs], abs=1e-9), ours


# -- loading ---------------------------------------------------------------------------------------------
def test_real_gt_json_and_davis_masks_load(car):
    gt = load_ground_truth(car / "gt_ytvis.json", num_frames=N, height=H, width=W, names=NAMES)
    assert (gt.format, gt.class_agnostic, gt.video_id, gt.num_frames) == ("ytvis-gt", False, 1, N)
    assert gt.categories[5] == "car" and len(gt.categories) == 40
    assert gt.annotated == list(range(N)) and gt.is_annotated(39) and not gt.is_annotated(40)
    assert [(t.id, t.category_id, len(t.frames)) for t in gt.tracks] == [(1, 5, N)]
    png = read_davis_png(car / "masks" / "00007.png") > 0
    [(gid, cat, mask)] = gt.masks_at(7)
    assert (gid, cat) == (1, 5) and mask.shape == (H, W) and np.array_equal(mask, png)

    davis = load_ground_truth(car / "masks", num_frames=N, height=H, width=W, names=NAMES)
    assert (davis.format, davis.class_agnostic, davis.categories) == ("davis", True, {1: "object"})
    assert davis.annotated == list(range(N))
    [(gid, cat, mask)] = davis.masks_at(7)
    assert cat == 1 and np.array_equal(mask, png)
    assert json.loads(json.dumps(davis.to_gt_json()))["videos"][0]["length"] == N


def _sparse_davis(folder: Path, frames=(0, 2, 4), empty=(2,), stem=lambda t: f"{t:05d}") -> None:
    folder.mkdir()
    for t in frames:
        labels = np.zeros((20, 30), np.uint8)
        if t not in empty:
            labels[2:8, 3 + t:12 + t] = 1
            labels[10:18, 15:25] = 2
        write_davis_png(folder / f"{stem(t)}.png", labels)


def test_sparse_davis_folder_not_annotated_vs_empty(tmp_path):
    folder = tmp_path / "masks"
    _sparse_davis(folder)
    names = [f"{t:05d}.jpg" for t in range(5)]
    gt = load_ground_truth(folder, num_frames=5, height=20, width=30, names=names)
    assert gt.annotated == [0, 2, 4]
    assert gt.masks_at(1) is None and gt.masks_at(3) is None  # no PNG: not annotated
    assert gt.masks_at(2) == []  # an all-background PNG: annotated and empty
    got = gt.masks_at(4)
    assert [(g, c) for g, c, _ in got] == [(1, 1), (2, 1)]
    assert np.array_equal(got[0][2], box_mask(20, 30, 7, 2, 16, 8))
    assert [sorted(t.frames) for t in gt.tracks] == [[0, 4], [0, 4]]
    js = gt.to_gt_json()
    assert js["videos"] == [{"id": 1, "width": 30, "height": 20, "length": 3,
                             "file_names": ["00000.jpg", "00002.jpg", "00004.jpg"]}]
    assert [a["segmentations"][1] for a in js["annotations"]] == [None, None]  # frame 2: annotated, empty

    plain = tmp_path / "numbers"  # no frame names: PNGs named by frame number
    _sparse_davis(plain, stem=str)
    assert load_ground_truth(plain, num_frames=5, height=20, width=30).annotated == [0, 2, 4]
    with pytest.raises(DataError, match=rf"^{plain}: holds 3 PNG masks.*5 frames.*not named after a frame"):
        load_ground_truth(plain, num_frames=5, height=20, width=30, names=[f"f{t}.jpg" for t in range(5)])


def _sparse_ytvis(frames: int = 5) -> dict:
    gt = gt_dict(frames=frames)
    empty = encode_mask(np.zeros((20, 30), bool))
    for a in gt["annotations"]:
        for t in (1, 3):
            a["segmentations"][t] = a["areas"][t] = a["bboxes"][t] = None
        a["segmentations"][2], a["areas"][2], a["bboxes"][2] = empty, 0, None
    return gt


def test_sparse_ytvis_gt_not_annotated_vs_empty_and_scored_as_vpp_eval_on_cut_files(tmp_path, capsys):
    data = _sparse_ytvis()
    path = dump(tmp_path / "sparse.json", data)
    gt = load_ground_truth(path, num_frames=5, height=20, width=30)
    assert gt.annotated == [0, 2, 4]
    assert gt.masks_at(1) is None and gt.masks_at(3) is None
    assert gt.masks_at(2) == []  # every track has an (empty) RLE there: annotated, nothing present
    assert [(g, c) for g, c, _ in gt.masks_at(4)] == [(1, 1), (2, 2)]
    assert [(g, c) for g, c, _ in gt.masks_at(0)] == [(1, 1)]  # track 2 is None on frame 0 (absent)
    assert [sorted(t.frames) for t in gt.tracks] == [[0, 4], [4]]

    entries = results_list(gt_dict(frames=5))  # dense predictions: frames 1 and 3 must not count
    entries[1]["segmentations"][3] = rle(box_mask(20, 30, 0, 0, 30, 20))  # a wild mask on a frame not annotated
    report = evaluate_entries(gt, entries)
    keep = [0, 2, 4]
    cut = json.loads(json.dumps(data))
    v = cut["videos"][0]
    v["file_names"], v["length"] = [v["file_names"][t] for t in keep], len(keep)
    for a in cut["annotations"]:
        for k in ("segmentations", "areas", "bboxes"):
            a[k] = [a[k][t] for t in keep]
    cut_entries = [{**e, "segmentations": [e["segmentations"][t] for t in keep]} for e in entries]
    _same(report, _eval_cli(tmp_path, dump(tmp_path / "cut.json", cut), cut_entries, "cut", capsys))
    assert report.annotated_frames == 3
    # had frames 1-3 counted as empty, the dense predictions there would be false positives
    assert _eval_cli(tmp_path, path, entries, "as_is", capsys)["segm_AP"] < report.figures["segm_AP"]


# -- matching --------------------------------------------------------------------------------------------
FR, HH, WW = 4, 40, 60


def _geometry():
    """GT boxes (id -> category, box, frames present) and predictions (id -> category, score, box, frames)."""
    gts = {1: (1, (2, 2, 12, 12), (0, 1, 2)), 2: (2, (20, 5, 30, 15), (0, 1, 2, 3)),
           3: (1, (40, 20, 50, 30), (0, 1, 2, 3))}
    preds = {1: (1, 0.9, (2, 2, 12, 12), (0, 1, 2)),     # = GT 1: IoU 1
             2: (2, 0.8, (22, 5, 32, 15), (0, 1, 2)),    # GT 2 shifted 2 px, absent on frame 3
             3: (1, 0.7, (0, 30, 5, 38), (0, 1, 2, 3)),  # nowhere near anything: a false track
             4: (2, 0.6, (40, 20, 50, 30), (0, 1, 2, 3))}  # = GT 3 but category 2
    return gts, preds


def _tracks(preds, rejected=None) -> dict[int, Track]:
    out = {pid: Track(pid, cat, "import", frames={t: FrameMask.from_mask(box_mask(HH, WW, *box), score)
                                                  for t in frames})
           for pid, (cat, score, box, frames) in preds.items()}
    if rejected is not None:  # a rejected perfect copy of GT 3, with the best score
        out[9] = Track(9, 1, "import", "rejected", frames={t: FrameMask.from_mask(box_mask(HH, WW, *rejected), 1.0)
                                                           for t in range(FR)})
    return out


def _ytvis_case(tmp_path) -> ClipGroundTruth:
    gts, _ = _geometry()
    anns = [{"id": gid, "video_id": 3, "category_id": cat, "iscrowd": 0, "height": HH, "width": WW, "length": 1,
             "segmentations": [rle(box_mask(HH, WW, *box)) if t in frames else None for t in range(FR)]}
            for gid, (cat, box, frames) in gts.items()]
    video = {"id": 3, "width": WW, "height": HH, "length": FR, "file_names": [f"{t}.jpg" for t in range(FR)]}
    data = {"videos": [video],
            "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    return load_ground_truth(dump(tmp_path / "gt.json", data), num_frames=FR, height=HH, width=WW)


def _davis_case(tmp_path) -> ClipGroundTruth:
    gts, _ = _geometry()
    folder = tmp_path / "davis"
    folder.mkdir()
    for t in range(FR):
        labels = np.zeros((HH, WW), np.uint8)
        for gid, (_, (x0, y0, x1, y1), frames) in gts.items():
            if t in frames:
                labels[y0:y1, x0:x1] = gid
        write_davis_png(folder / f"{t}.png", labels)
    return load_ground_truth(folder, num_frames=FR, height=HH, width=WW)


def test_review_tracks_known_ious_miss_false_track_and_categories(tmp_path):
    gts, preds = _geometry()
    tracks = _tracks(preds, rejected=gts[3][1])
    shifted = (80 * 3) / (120 * 3 + 100)  # 8x10 overlap of two 10x10 boxes on 3 frames; GT alone on frame 3
    nan = np.nan

    gt = _ytvis_case(tmp_path)
    r = review_tracks(gt, tracks)
    assert [(m.pred_id, m.gt_id) for m in r.matches] == [(1, 1), (2, 2)]
    assert r.by_pred[1].iou == pytest.approx(1.0) and r.by_gt[2].iou == pytest.approx(shifted)
    assert r.misses == [3] and r.false_tracks == [3, 4]  # 4: right mask, wrong category
    np.testing.assert_allclose(r.by_pred[1].per_frame, [1, 1, 1, nan])  # neither has a mask on frame 3
    np.testing.assert_allclose(r.by_pred[2].per_frame, [2 / 3, 2 / 3, 2 / 3, 0])
    # per frame: matched pairs and the missed GT 3 (as 0)
    np.testing.assert_allclose(r.frame_iou, [5 / 9, 5 / 9, 5 / 9, 0.0])
    # the track IoUs are core.evaluation's (the YouTube-VIS definition)
    def segs(box, frames):
        return [rle(box_mask(HH, WW, *box)) if t in frames else None for t in range(FR)]
    ref = track_iou_matrix([segs(p[2], p[3]) for p in preds.values()], [segs(g[1], g[2]) for g in gts.values()])
    np.testing.assert_allclose(r.ious, ref, atol=1e-12)
    assert r.pred_ids == [1, 2, 3, 4] and r.gt_ids == [1, 2, 3]

    with_rejected = review_tracks(gt, tracks, include_rejected=True)
    assert with_rejected.by_gt[3].pred_id == 9 and with_rejected.misses == []

    davis = review_tracks(_davis_case(tmp_path), tracks)  # class-agnostic: track 4 takes GT 3
    assert [(m.pred_id, m.gt_id) for m in davis.matches] == [(1, 1), (2, 2), (4, 3)]
    assert davis.misses == [] and davis.false_tracks == [3]
    np.testing.assert_allclose(davis.frame_iou, [8 / 9, 8 / 9, 8 / 9, 0.5])


def test_review_threshold_and_greedy_by_score(tmp_path):
    gt = _ytvis_case(tmp_path)
    gts, preds = _geometry()
    strict = review_tracks(gt, _tracks(preds), threshold=0.7)  # the shifted track (IoU 0.52) no longer matches
    assert [(m.pred_id, m.gt_id) for m in strict.matches] == [(1, 1)] and strict.misses == [2, 3]
    # two copies of GT 1: the higher score takes it, the other is a false track
    twin = {1: (1, 0.3, gts[1][1], gts[1][2]), 5: (1, 0.95, gts[1][1], gts[1][2])}
    r = review_tracks(gt, _tracks(twin))
    assert [(m.pred_id, m.gt_id) for m in r.matches] == [(5, 1)] and r.false_tracks == [1]


def test_review_is_fast_on_300_frames_30_tracks_1080p():
    n, h, w, k = 300, 1080, 1920, 30
    rles = [encode_mask(box_mask(h, w, 60 * i, 30 * i, 60 * i + 120, 30 * i + 200)) for i in range(k)]
    shifted = [encode_mask(box_mask(h, w, 60 * i + 5, 30 * i, 60 * i + 125, 30 * i + 200)) for i in range(k)]
    gt_tracks = [GroundTruthTrack(i + 1, 1, {t: rles[i] for t in range(n)}) for i in range(k)]
    records = [{"id": g.id, "category_id": 1, "iscrowd": 0, "segmentations": [g.frames[t] for t in range(n)]}
               for g in gt_tracks]
    gt = ClipGroundTruth(Path("synthetic"), "ytvis-gt", 1, n, h, w, tuple(f"{t}.jpg" for t in range(n)),
                         {1: "a"}, gt_tracks, list(range(n)), records, [{"id": 1, "name": "a"}])
    areas = [int(decode_rle(r).sum()) for r in shifted]
    tracks = {i + 1: Track(i + 1, 1, frames={t: FrameMask(shifted[i], 0.5, areas[i]) for t in range(n)})
              for i in range(k)}
    start = time.perf_counter()
    r = review_tracks(gt, tracks)
    seconds = time.perf_counter() - start
    assert len(r.matches) == k and r.by_pred[3].iou == pytest.approx(115 / 125)
    assert seconds < 2.0, f"review_tracks took {seconds:.2f} s"


# -- the panel's figures ---------------------------------------------------------------------------------
def _car_document(car) -> Document:
    doc = Document.open_clip(car / "frames")
    [tid] = doc.import_file(car / "pred_ytvis_results.json")
    car_frames = doc.track(tid).frames
    moved = {t: encode_mask(np.roll(f.decode(), 40, axis=1)) for t, f in car_frames.items() if t % 3}
    doc.add_tracks([(5, 0.6, moved)], note="a worse second guess")
    [bad] = doc.add_tracks([(5, 0.99, {t: car_frames[t].rle for t in range(10)})], note="rejected")
    doc.reject([bad])
    return doc


def test_panel_figures_equal_vpp_eval_ytvis_gt(car, tmp_path, capsys):
    doc = _car_document(car)
    results = tmp_path / "results.json"
    doc.export({"ytvis": results})
    entries = document_entries(doc)
    assert entries == json.loads(results.read_text()) and len(entries) == 2  # the rejected track is left out
    gt = load_ground_truth(car / "gt_ytvis.json", num_frames=N, height=H, width=W, names=doc.clip.frame_names())
    report = evaluate_entries(gt, entries)
    _same(report, _eval_cli(tmp_path, car / "gt_ytvis.json", results, "ytvis", capsys))
    assert report.overall["AP_track"] == pytest.approx(0.9, abs=1e-9)  # the README's reference value
    assert report.class_agnostic is False and report.categories[5] == "car"
    assert list(report.per_category) == [5] and report.per_category[5] == pytest.approx(report.overall, abs=1e-12)


def test_panel_figures_equal_vpp_eval_davis_gt(car, tmp_path, capsys):
    doc = _car_document(car)
    gt = load_ground_truth(car / "masks", num_frames=N, height=H, width=W, names=doc.clip.frame_names())
    report = evaluate_entries(gt, document_entries(doc))
    # vpp eval takes YTVIS files: the same masks as a one-class GT, and the results as category 1
    data = json.loads((car / "gt_ytvis.json").read_text())
    for a in data["annotations"]:
        a["category_id"] = 1
        del a["areas"], a["bboxes"]
    data["categories"] = [{"id": 1, "name": "object"}]
    results = tmp_path / "results.json"
    doc.export({"ytvis": results})
    agnostic = [{**e, "category_id": 1} for e in json.loads(results.read_text())]
    figures = _eval_cli(tmp_path, dump(tmp_path / "gt1.json", data), agnostic, "davis", capsys)
    _same(report, figures)
    assert report.class_agnostic is True and list(report.per_category) == [1]


def test_per_category_figures(tmp_path):
    data = gt_dict(frames=3)
    data["categories"].append({"id": 3, "name": "c"})  # no ground truth: no figures of its own
    entries = results_list(data)
    entries[1]["segmentations"] = [None, *entries[0]["segmentations"][1:]]  # category 2: a poor track
    gt = load_ground_truth(dump(tmp_path / "gt.json", data), num_frames=3, height=20, width=30)
    report = evaluate_entries(gt, entries)
    assert sorted(report.per_category) == [1, 2] and report.categories == {1: "a", 2: "b", 3: "c"}
    assert report.per_category[1]["AP_track"] == pytest.approx(1.0)
    assert report.per_category[2]["AP_track"] < 1.0
    for key in ("AP_track", "AP50", "AR10", "mAP_segm"):  # the overall figure is the mean over categories
        assert report.overall[key] == pytest.approx(np.mean([c[key] for c in report.per_category.values()]))


# -- errors ----------------------------------------------------------------------------------------------
def test_gt_problems_raise_data_errors_starting_with_the_path(car, tmp_path):
    def fails(path, pattern, **clip):
        with pytest.raises(DataError, match=rf"^{path}: {pattern}"):
            load_ground_truth(path, **{"num_frames": N, "height": H, "width": W, **clip})

    fails(tmp_path / "absent.json", "does not exist")
    fails(car / "pred_ytvis_results.json", "is a YouTube-VIS results file.*not ground truth")
    fails(car / "gt_ytvis.json", "video 1 has 40 frames, but the open clip has 5", num_frames=5)
    fails(car / "gt_ytvis.json", r"video 1 is 854x480.*the open clip is 427x240", height=240, width=427)
    fails(car / "masks", "holds 40 PNG masks, but the open clip has 5 frames", num_frames=5, names=NAMES[:5])
    first = car / "masks" / "00000.png"
    with pytest.raises(DataError, match=rf"^{first}: mask is 854x480, but the open clip is 427x240"):
        load_ground_truth(car / "masks", num_frames=N, height=240, width=427)  # the folder's first PNG
    zipped = tmp_path / "results.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(car / "pred_ytvis_results.json", "results.json")
    fails(zipped, "is a zip.*not ground truth")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "no PNG masks found")
    fails(dump(tmp_path / "odd.json", {"foo": 1}), "not YouTube-VIS ground truth")


def test_video_of_a_multi_video_gt(tmp_path):
    one = gt_dict(frames=3)
    two = json.loads(json.dumps(one))
    two["videos"][0].update(id=2, file_names=[f"v2/frame{t}.jpg" for t in range(3)])
    for a in two["annotations"]:
        a.update(id=a["id"] + 10, video_id=2)
    data = {**one, "videos": one["videos"] + two["videos"], "annotations": one["annotations"] + two["annotations"]}
    path = dump(tmp_path / "two.json", data)
    clip = {"num_frames": 3, "height": 20, "width": 30}
    gt = load_ground_truth(path, **clip, names=[f"clip/{t:05d}.jpg" for t in range(3)])
    assert gt.video_id == 1 and [t.id for t in gt.tracks] == [1, 2]  # matched by the frames' basenames
    gt = load_ground_truth(path, **clip, names=[f"frame{t}.jpg" for t in range(3)])
    assert gt.video_id == 2 and [t.id for t in gt.tracks] == [11, 12]
    assert load_ground_truth(path, **clip, video_id=2).video_id == 2
    with pytest.raises(DataError, match=rf"^{path}: holds videos 1, 2 and 2 of them match the open clip"):
        load_ground_truth(path, **clip, names=[f"other{t}.jpg" for t in range(3)])
    with pytest.raises(DataError, match=rf"^{path}: holds videos 1, 2 and none of them matches"):
        load_ground_truth(path, num_frames=4, height=20, width=30)
