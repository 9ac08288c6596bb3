"""Per-frame COCO mAP_bbox and mAP_segm of video results (the seed's second and third columns).

Every (video, frame) is one COCO image; every non-null, non-empty ground-truth mask of a frame is one
COCO annotation (its ``areas``/``bboxes`` entries when present, else computed from the RLE); every
non-null, non-empty frame of a result track is one detection carrying the track's score. pycocotools'
``COCOeval`` then runs with its defaults (IoU .50:.05:.95, COCO area ranges, maxDets 1/10/100).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core.data.rle import as_coco
from core.data.ytvis import YtvisGroundTruth, YtvisResult

#: The order of pycocotools' ``COCOeval.stats`` (and of the video-AP summary).
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _frame_images(gt: YtvisGroundTruth) -> tuple[list[dict], dict[int, int]]:
    images, first = [], {}
    for v in sorted(gt.videos, key=lambda v: v.id):
        first[v.id] = len(images) + 1
        images += [{"id": first[v.id] + t, "width": v.width, "height": v.height, "video_id": v.id, "frame": t}
                   for t in range(v.length)]
    return images, first


def _gt_coco(gt: YtvisGroundTruth, images: list[dict], first: dict[int, int]) -> COCO:
    anns = []
    for a in gt.annotations:
        idx = [t for t, s in enumerate(a.segmentations) if s is not None]
        if not idx:
            continue
        rles = as_coco([a.segmentations[t] for t in idx])
        areas = mask_utils.area(rles)
        boxes = mask_utils.toBbox(rles)
        for k, t in enumerate(idx):
            area = a.areas[t] if a.areas[t] is not None else float(areas[k])
            if not areas[k]:
                continue
            box = list(a.bboxes[t]) if a.bboxes[t] is not None else [float(x) for x in boxes[k]]
            anns.append({"id": len(anns) + 1, "image_id": first[a.video_id] + t, "category_id": a.category_id,
                         "segmentation": rles[k], "area": float(area), "bbox": box, "iscrowd": int(a.iscrowd)})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": c.id, "name": c.name} for c in gt.categories]}
    coco.createIndex()
    return coco


def _detections(results: Sequence[YtvisResult], first: dict[int, int], cats: set[int]) -> tuple[list, list]:
    segm, bbox = [], []
    for r in results:
        if r.category_id not in cats or r.video_id not in first:
            continue
        idx = [t for t, s in enumerate(r.segmentations) if s is not None]
        if not idx:
            continue
        rles = as_coco([r.segmentations[t] for t in idx])
        areas = mask_utils.area(rles)
        boxes = mask_utils.toBbox(rles)
        for k, t in enumerate(idx):
            if not areas[k]:
                continue
            common = {"image_id": first[r.video_id] + t, "category_id": r.category_id, "score": float(r.score)}
            segm.append({**common, "segmentation": rles[k]})
            bbox.append({**common, "bbox": [float(x) for x in boxes[k]]})
    return segm, bbox


def _run(coco_gt: COCO, dets: list, iou_type: str) -> dict[str, float]:
    if dets:
        coco_dt = coco_gt.loadRes(dets)
    else:  # loadRes refuses an empty list; an empty index scores 0 where there is ground truth
        coco_dt = COCO()
        coco_dt.dataset = {"images": coco_gt.dataset["images"], "annotations": [],
                           "categories": coco_gt.dataset["categories"]}
        coco_dt.createIndex()
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()  # stats: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl
    return {k: float(v) for k, v in zip(SUMMARY_KEYS, ev.stats)}


def evaluate_frames(gt: YtvisGroundTruth, results: Sequence[YtvisResult]) -> dict[str, float]:
    """``bbox_AP``, ``bbox_AP50``, ... and ``segm_AP``, ... (COCO per-frame metrics; -1 where undefined).

    Area sub-ranges follow COCO's (32², 96²) here, as in a per-image COCO evaluation.
    """
    images, first = _frame_images(gt)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = _gt_coco(gt, images, first)
        segm, bbox = _detections(results, first, set(gt.category_ids))
        out = {}
        for iou_type, dets in (("bbox", bbox), ("segm", segm)):
            out.update({f"{iou_type}_{k}": v for k, v in _run(coco_gt, dets, iou_type).items()})
    return out
