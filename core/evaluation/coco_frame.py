"""Per-frame COCO mAP_bbox and mAP_segm of video results (the seed's second and third columns).

Every (video, frame) is one COCO image; every non-null, non-empty ground-truth mask of a frame is one
COCO annotation (its ``areas``/``bboxes`` entries when present, else computed from the RLE); every
non-null, non-empty frame of a result track is one detection carrying the track's score. pycocotools'
``COCOeval`` then runs with its defaults (IoU .50:.05:.95, COCO area ranges, maxDets 1/10/100).

To bound memory, ``COCOeval`` runs once per category (with only that category's annotations, detections
and images) and its ``summarize`` runs on the per-category ``precision``/``recall`` put side by side. COCO
evaluates categories independently (matching, maxDets and accumulation are all per category), so the
figures are exactly those of one ``COCOeval`` over everything (to rounding); the peak memory is one
category's (its COCO indexes, IoUs and per-image records) instead of all of them at once, and categories
without ground truth cost nothing (:mod:`core.evaluation.means`).
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core.data.rle import as_coco, rle_areas
from core.data.ytvis import YtvisAnnotation, YtvisGroundTruth, YtvisResult
from core.evaluation.means import SUMMARY_KEYS, SummaryMeans


def _frame_images(gt: YtvisGroundTruth) -> tuple[list[dict], dict[int, int]]:
    images, first = [], {}
    for v in sorted(gt.videos, key=lambda v: v.id):
        first[v.id] = len(images) + 1
        images += [{"id": first[v.id] + t, "width": v.width, "height": v.height, "video_id": v.id, "frame": t}
                   for t in range(v.length)]
    return images, first


def _gt_anns(tracks: Sequence[YtvisAnnotation], first: dict[int, int]) -> list[dict]:
    anns = []
    for a in tracks:
        idx = [t for t, s in enumerate(a.segmentations) if s is not None]
        if not idx:
            continue
        rles = as_coco([a.segmentations[t] for t in idx])
        areas = rle_areas(rles)
        boxes = mask_utils.toBbox(rles)
        for k, t in enumerate(idx):
            area = a.areas[t] if a.areas[t] is not None else float(areas[k])
            if not areas[k]:
                continue
            box = list(a.bboxes[t]) if a.bboxes[t] is not None else [float(x) for x in boxes[k]]
            anns.append({"id": len(anns) + 1, "image_id": first[a.video_id] + t, "category_id": a.category_id,
                         "segmentation": rles[k], "area": float(area), "bbox": box, "iscrowd": int(a.iscrowd)})
    return anns


def _coco(images: list[dict], anns: list[dict], categories: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": categories}
    coco.createIndex()
    return coco


def _gt_coco(gt: YtvisGroundTruth, images: list[dict], first: dict[int, int]) -> COCO:
    """All ground truth as one COCO index (the single-``COCOeval`` reference the tests compare with)."""
    return _coco(images, _gt_anns(gt.annotations, first), [{"id": c.id, "name": c.name} for c in gt.categories])


def _detections(results: Sequence[YtvisResult], first: dict[int, int], cats: set[int],
                iou_type: str = "") -> tuple[list, list]:
    """(segm, bbox) detections; with ``iou_type`` "segm" or "bbox", only that list is filled."""
    segm, bbox = [], []
    for r in results:
        if r.category_id not in cats or r.video_id not in first:
            continue
        idx = [t for t, s in enumerate(r.segmentations) if s is not None]
        if not idx:
            continue
        rles = as_coco([r.segmentations[t] for t in idx])
        areas = rle_areas(rles)
        boxes = mask_utils.toBbox(rles) if iou_type != "segm" else None
        for k, t in enumerate(idx):
            if not areas[k]:
                continue
            common = {"image_id": first[r.video_id] + t, "category_id": r.category_id, "score": float(r.score)}
            if iou_type != "bbox":
                segm.append({**common, "segmentation": rles[k]})
            if boxes is not None:
                bbox.append({**common, "bbox": [float(x) for x in boxes[k]]})
    return segm, bbox


def _cocoeval(coco_gt: COCO, dets: list, iou_type: str, img_ids: list[int] | None = None,
              cat_ids: list[int] | None = None) -> COCOeval:
    """``COCOeval`` evaluated and accumulated (optionally on some images and categories only)."""
    # loadRes refuses an empty list; an empty index scores 0 where there is ground truth
    coco_dt = coco_gt.loadRes(dets) if dets else _coco(coco_gt.dataset["images"], [], coco_gt.dataset["categories"])
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    if img_ids is not None:
        ev.params.imgIds = img_ids
    if cat_ids is not None:
        ev.params.catIds = cat_ids
    ev.evaluate()
    ev.accumulate()
    return ev


def _stats(ev: COCOeval) -> dict[str, float]:
    ev.summarize()  # stats: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl
    return {k: float(v) for k, v in zip(SUMMARY_KEYS, ev.stats)}


def _run_by_category(gt: YtvisGroundTruth, results: Sequence[YtvisResult], images: list[dict],
                     first: dict[int, int], iou_type: str) -> dict[str, float]:
    """One ``COCOeval`` per category with ground truth, on that category's images only; the figures are
    ``summarize``'s means, kept as running sums (:class:`~core.evaluation.means.SummaryMeans`), so memory
    and time follow the categories that occur, not the length of the file's category list."""
    names = {c.id: c.name for c in gt.categories}
    gt_by_cat: dict[int, list[YtvisAnnotation]] = defaultdict(list)
    for a in gt.annotations:
        if a.category_id in names:
            gt_by_cat[a.category_id].append(a)
    res_by_cat: dict[int, list[YtvisResult]] = defaultdict(list)
    for r in results:
        if r.category_id in gt_by_cat:
            res_by_cat[r.category_id].append(r)
    p = COCOeval(iouType=iou_type).params
    t50 = np.where(p.iouThrs == 0.5)[0].tolist()  # as COCOeval.summarize selects them
    t75 = np.where(p.iouThrs == 0.75)[0].tolist()
    means = SummaryMeans(t50, t75, len(p.maxDets))
    for c in sorted(gt_by_cat):
        anns = _gt_anns(gt_by_cat[c], first)
        if not anns:  # no ground truth: COCOeval leaves the category at -1 (undefined)
            continue
        segm, bbox = _detections(res_by_cat.get(c, []), first, {c}, iou_type)
        dets = segm if iou_type == "segm" else bbox
        img_ids = sorted({a["image_id"] for a in anns} | {d["image_id"] for d in dets})
        ev = _cocoeval(_coco([images[i - 1] for i in img_ids], anns, [{"id": c, "name": names[c]}]), dets,
                       iou_type, img_ids, [c])
        means.add(ev.eval["precision"][:, :, 0], ev.eval["recall"][:, 0])
        del ev, anns, segm, bbox, dets
    return means.figures()


def evaluate_frames(gt: YtvisGroundTruth, results: Sequence[YtvisResult]) -> dict[str, float]:
    """``bbox_AP``, ``bbox_AP50``, ... and ``segm_AP``, ... (COCO per-frame metrics; -1 where undefined).

    Area sub-ranges follow COCO's (32², 96²) here, as in a per-image COCO evaluation.
    """
    images, first = _frame_images(gt)
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        for iou_type in ("bbox", "segm"):
            figures = _run_by_category(gt, results, images, first, iou_type)
            out.update({f"{iou_type}_{k}": v for k, v in figures.items()})
    return out
