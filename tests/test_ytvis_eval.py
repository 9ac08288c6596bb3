"""The YouTube-VIS video protocol against the official reference values, hand-made cases and COCOeval."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ytvis_factories import box_mask, rle

from core.data.rle import decode_rle
from core.data.ytvis import (
    YtvisAnnotation,
    YtvisCategory,
    YtvisGroundTruth,
    YtvisResult,
    YtvisVideo,
    read_ytvis_gt,
    read_ytvis_results,
)
from core.evaluation.coco_frame import evaluate_frames
from core.evaluation.ytvis_eval import evaluate, evaluate_tracks, format_table, mean_area, track_iou_matrix

MM = ("mmtracking_demo_vis/gt_ytvis.json", "mmtracking_demo_vis/results.json")
DAVIS = ("davis_car_shadow/gt_ytvis.json", "davis_car_shadow/pred_ytvis_results.json")


def _load(shared_data, names):
    gt = read_ytvis_gt(shared_data / names[0])
    return gt, read_ytvis_results(shared_data / names[1], gt)


def _close(figures, expected):
    for key, value in expected.items():
        assert figures[key] == pytest.approx(value, abs=5e-4), key


def test_mmtracking_reference_values(shared_data):
    gt, res = _load(shared_data, MM)
    f = evaluate_tracks(gt, res)
    _close(f, {"AP": 0.650, "AP50": 1.0, "AP75": 1.0, "AR1": 0.350, "AR10": 0.650, "AR100": 0.650,
               "APs": 0.650, "ARs": 0.650, "APm": -1, "APl": -1})
    assert f["AP"] == pytest.approx(0.650495, abs=1e-6)
    coco = evaluate_tracks(gt, res, area_ranges="coco")
    _close(coco, {"AP": 0.650, "APs": -1, "APm": 0.650, "ARm": 0.650, "APl": -1})


def test_mmtracking_track_iou_matrix(shared_data):
    gt, res = _load(shared_data, MM)
    dets = sorted((r for r in res if r.category_id == 6), key=lambda r: -r.score)
    assert [round(d.score, 4) for d in dets] == [0.8846, 0.8122]
    ious = track_iou_matrix([d.segmentations for d in dets], [a.segmentations for a in gt.annotations])
    np.testing.assert_allclose(ious, [[0.817559, 0.000939], [0.000066, 0.760658]], atol=1e-6)
    assert [round(mean_area(a.areas), 1) for a in gt.annotations] == [3235.4, 2526.5]


def test_davis_reference_values(shared_data):
    gt, res = _load(shared_data, DAVIS)
    iou = track_iou_matrix([res[0].segmentations], [gt.annotations[0].segmentations])
    assert iou[0, 0] == pytest.approx(985229 / 1051539, abs=1e-9)
    assert iou[0, 0] == pytest.approx(0.936940, abs=1e-6)
    f = evaluate_tracks(gt, res)
    _close(f, {"AP": 0.9, "AP50": 1.0, "AP75": 1.0, "AR1": 0.9, "AR10": 0.9, "AR100": 0.9, "APm": 0.9,
               "APs": -1, "APl": -1})
    _close(evaluate_tracks(gt, res, area_ranges="coco"), {"APl": 0.9, "APm": -1})


def test_track_iou_counts_pixels_like_numpy():
    rng = np.random.default_rng(3)
    h, w, frames = 24, 32, 5
    def track(p):
        masks = rng.random((frames, h, w)) > 0.6
        return [rle(m) if rng.random() < p else None for m in masks]
    dets, gts = [track(0.7) for _ in range(3)], [track(0.8) for _ in range(2)]
    got = track_iou_matrix(dets, gts)
    for i, d in enumerate(dets):
        for j, g in enumerate(gts):
            inter = union = 0
            for a, b in zip(d, g):
                ma = decode_rle(a) if a is not None else np.zeros((h, w), bool)
                mb = decode_rle(b) if b is not None else np.zeros((h, w), bool)
                inter += (ma & mb).sum()
                union += (ma | mb).sum()
            assert got[i, j] == pytest.approx(inter / union if union else 0.0, abs=1e-12)


def _gt(tracks, cats=(1, 2), h=40, w=40, crowd=()):
    """tracks: list of (video_id, category, per-frame masks or None)."""
    frames = len(tracks[0][2])
    vids = sorted({t[0] for t in tracks})
    videos = tuple(YtvisVideo(v, w, h, tuple(f"{v}/{k}.jpg" for k in range(frames))) for v in vids)
    anns = tuple(YtvisAnnotation.from_masks(i + 1, v, c, ms, iscrowd=int(i in crowd))
                 for i, (v, c, ms) in enumerate(tracks))
    anns = tuple(type(a)(**{**a.__dict__, "height": h, "width": w}) for a in anns)
    return YtvisGroundTruth(videos, anns, tuple(YtvisCategory(c, f"c{c}") for c in cats))


def test_partial_overlap_gives_the_expected_threshold_count():
    g = box_mask(40, 40, 0, 0, 20, 10)  # 200 px
    d = box_mask(40, 40, 0, 0, 20, 13)  # 260 px -> IoU 200/260 = 0.769: matched at .50 ... .75 (6 of 10)
    gt = _gt([(1, 1, [g, g])])
    f = evaluate_tracks(gt, [YtvisResult.from_masks(1, 1, 0.8, [d, d])])
    _close(f, {"AP": 0.6, "AP50": 1.0, "AP75": 1.0, "AR1": 0.6})


def test_frames_with_one_side_count_in_the_union():
    m = box_mask(40, 40, 5, 5, 15, 15)
    gt = _gt([(1, 1, [m, m, None])])
    det = [None, m, m]  # IoU = 100 / 300
    assert track_iou_matrix([[None if x is None else rle(x) for x in det]],
                            [gt.annotations[0].segmentations])[0, 0] == pytest.approx(1 / 3)
    f = evaluate_tracks(gt, [YtvisResult.from_masks(1, 1, 0.5, det)])
    assert f["AP50"] == 0.0 and f["AP"] == 0.0


def test_categories_without_ground_truth_and_crowd_are_excluded():
    a, b = box_mask(40, 40, 0, 0, 10, 10), box_mask(40, 40, 20, 20, 30, 30)
    gt = _gt([(1, 1, [a]), (1, 1, [b])], cats=(1, 2, 3), crowd=(1,))
    perfect = YtvisResult.from_masks(1, 1, 0.9, [a])
    f = evaluate_tracks(gt, [perfect])
    assert f["AP"] == pytest.approx(1.0)
    # a detection on the crowd region is ignored, not a false positive; one of a GT-less category changes nothing
    on_crowd = YtvisResult.from_masks(1, 1, 0.95, [b])
    other_cat = YtvisResult.from_masks(1, 2, 0.99, [a])
    assert evaluate_tracks(gt, [perfect, on_crowd, other_cat])["AP"] == pytest.approx(1.0)
    # ... whereas a miss in category 1 is a false positive ranked first
    miss = YtvisResult.from_masks(1, 1, 0.95, [box_mask(40, 40, 30, 0, 40, 5)])
    assert evaluate_tracks(gt, [perfect, miss])["AP"] < 0.99


def test_empty_results_score_zero_not_undefined():
    gt = _gt([(1, 1, [box_mask(40, 40, 0, 0, 10, 10)])])
    f = evaluate(gt, [])
    assert f["AP"] == 0.0 and f["AR100"] == 0.0 and f["segm_AP"] == 0.0 and f["APm"] == -1


def _random_single_frame_set(rng, videos=12, h=120, w=160):
    tracks, results = [], []
    for v in range(1, videos + 1):
        for _ in range(int(rng.integers(1, 4))):
            sw, sh = rng.integers(4, 110), rng.integers(4, 110)  # small, medium and large (COCO ranges)
            x, y = rng.integers(0, w - sw), rng.integers(0, h - sh)
            m = box_mask(h, w, x, y, x + sw, y + sh)
            c = int(rng.integers(1, 4))
            tracks.append((v, c, [m]))
            for _ in range(int(rng.integers(0, 3))):
                dx, dy = rng.integers(-6, 7, 2)
                d = np.roll(m, (dy, dx), axis=(0, 1))
                score = float(rng.choice([0.3, 0.5, 0.7, rng.uniform()]))  # some ties on purpose
                cat = c if rng.random() < 0.8 else int(rng.integers(1, 4))
                results.append(YtvisResult.from_masks(v, cat, score, [d]))
        results.append(YtvisResult.from_masks(v, int(rng.integers(1, 4)), float(rng.uniform()),
                                              [box_mask(h, w, 0, 0, int(rng.integers(2, 30)), 3)]))
    big = box_mask(h, w, 2, 2, 112, 112)  # a "large" object, matched at IoU 0.82
    tracks.append((1, 2, [big]))
    results.append(YtvisResult.from_masks(1, 2, 0.6, [np.roll(big, 10, axis=1)]))
    return _gt(tracks, cats=(1, 2, 3, 4), h=h, w=w), results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_frame_videos_agree_with_pycocotools_cocoeval(seed):
    """With one frame per video, the video protocol is COCO's segm protocol: compare with COCOeval."""
    gt, results = _random_single_frame_set(np.random.default_rng(seed))
    ours = evaluate_tracks(gt, results, area_ranges="coco")
    coco = evaluate_frames(gt, results)
    for key, value in ours.items():
        assert value == pytest.approx(coco[f"segm_{key}"], abs=1e-12), key


def test_evaluate_and_table(shared_data):
    gt, res = _load(shared_data, MM)
    f = evaluate(gt, res)
    assert {"AP", "bbox_AP", "segm_AP", "segm_AR100"} <= set(f)
    assert 0 <= f["bbox_AP"] <= 1 and 0 <= f["segm_AP"] <= 1
    assert "bbox_AP" not in evaluate(gt, res, frame_metrics=False)
    table = format_table(f)
    lines = table.splitlines()
    assert lines[2].startswith("video AP (AP_track)") and " 0.650  1.000  1.000  0.650      -" in lines[2]
    assert len(lines) == 5


def test_evaluation_speed_on_a_synthetic_set():
    from core.data.rle import encode_masks
    from core.data.synthetic import CATEGORIES, generate_clip

    videos, anns, results = [], [], []
    for v in range(1, 21):
        clip = generate_clip([5, v], 160, 120, 8)
        videos.append(YtvisVideo(v, 160, 120, tuple(f"{v}/{t}.jpg" for t in range(8))))
        for inst in clip.instances:
            it = iter(encode_masks(inst.masks[inst.present]))
            segs = [next(it) if p else None for p in inst.present]
            anns.append(YtvisAnnotation.from_segmentations(len(anns) + 1, v, inst.category_id, segs, height=120,
                                                           width=160))
            results.append(YtvisResult(v, inst.category_id, 0.5, tuple(segs)))
    gt = YtvisGroundTruth(tuple(videos), tuple(anns), tuple(YtvisCategory(i + 1, n) for i, n in enumerate(CATEGORIES)))
    start = time.perf_counter()
    f = evaluate_tracks(gt, results)
    assert time.perf_counter() - start < 2.0
    assert len(anns) >= 20
    _close(f, {"AP": 1.0, "AP50": 1.0, "AR100": 1.0})


def _reference_frames(gt, results):
    """The per-frame figures from one pycocotools COCOeval over every category at once (the old way)."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    from core.evaluation.coco_frame import SUMMARY_KEYS, _detections, _frame_images, _gt_coco

    images, first = _frame_images(gt)
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _gt_coco(gt, images, first)
        segm, bbox = _detections(results, first, set(gt.category_ids))
        for iou_type, dets in (("bbox", bbox), ("segm", segm)):
            ev = COCOeval(coco_gt, coco_gt.loadRes(dets), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out.update({f"{iou_type}_{k}": float(v) for k, v in zip(SUMMARY_KEYS, ev.stats)})
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_per_category_frame_metrics_equal_one_cocoeval(seed):
    """evaluate_frames runs COCOeval one category at a time (bounded memory): the figures are identical."""
    rng = np.random.default_rng(seed)
    h, w, frames = 60, 80, 4
    def track():
        out = []
        for _ in range(frames):
            if rng.random() < 0.2:
                out.append(None)
                continue
            sw, sh = int(rng.integers(3, 60)), int(rng.integers(3, 50))
            x, y = int(rng.integers(0, w - sw)), int(rng.integers(0, h - sh))
            out.append(box_mask(h, w, x, y, x + sw, y + sh))
        return out
    tracks = [(v, int(rng.integers(1, 5)), track()) for v in range(1, 7) for _ in range(int(rng.integers(1, 4)))]
    gt = _gt(tracks, cats=(1, 2, 3, 4, 5, 6), h=h, w=w, crowd=(2,))  # 5: detections only, 6: nothing
    results = []
    for v, c, masks in tracks:
        for _ in range(int(rng.integers(0, 3))):
            moved = [None if m is None or rng.random() < 0.1 else np.roll(m, tuple(rng.integers(-4, 5, 2)), (0, 1))
                     for m in masks]
            results.append(YtvisResult.from_masks(v, c if rng.random() < 0.8 else 5, float(rng.uniform()), moved))
    results.append(YtvisResult.from_masks(1, 1, 0.5, track()))
    got, want = evaluate_frames(gt, results), _reference_frames(gt, results)
    # the same means, summed one category at a time (core.evaluation.means): equal to rounding (~1e-16)
    assert got == pytest.approx(want, abs=1e-12, rel=0)
    assert 0 < got["segm_AP"] < 1 and got["segm_APs"] != -1
