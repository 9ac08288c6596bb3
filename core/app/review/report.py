"""The evaluation panel's figures: a document's results scored against a clip's ground truth, as ``vpp eval`` does.

:func:`document_entries` gives the YouTube-VIS result entries a document's export writes; :func:`evaluate_entries`
scores entries of the clip against a :class:`~core.evaluation.ground_truth.ClipGroundTruth`, overall and per
category, through :func:`core.evaluation.ground_truth.score` (the parser and evaluator of ``vpp eval``, the code
path of :mod:`core.sweep`): on a GT with every frame annotated the figures equal ``vpp eval`` on the GT file
and the exported results file; on a sparse GT they equal ``vpp eval`` on both cut to the annotated frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.data.ytvis import parse_ytvis_results, results_to_json
from core.errors import DataError
from core.evaluation.ground_truth import ClipGroundTruth, restricted_gt_json, restricted_results, score
from core.formats.ytvis import ytvis_entries, ytvis_reference

if TYPE_CHECKING:
    from core.app.document.document import Document

#: The panel's figures and the keys of :func:`core.evaluation.ytvis_eval.evaluate` they are.
SUMMARY_KEYS: tuple[tuple[str, str], ...] = (
    ("AP_track", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("AR1", "AR1"), ("AR10", "AR10"), ("AR100", "AR100"),
    ("mAP_bbox", "bbox_AP"), ("mAP_segm", "segm_AP"))


@dataclass(frozen=True)
class EvaluationReport:
    """Figures in [0, 1]; -1 means undefined (no ground truth), as in ``vpp eval``.

    ``overall`` and every ``per_category[c]`` hold the :data:`SUMMARY_KEYS` (``AP_track``, ``AP50``, ``AP75``,
    ``AR1``, ``AR10``, ``AR100``, ``mAP_bbox``, ``mAP_segm``); ``figures`` is everything the evaluator
    returned overall (``AP``, ``APs`` ..., ``bbox_*``, ``segm_*``). ``per_category`` has the categories with
    ground truth on the annotated frames (each scored on the GT and results of that category alone).
    ``categories``: id -> name of the GT's categories and of those only the results use.
    ``class_agnostic``: DAVIS ground truth; every result was scored as category 1.
    """

    overall: dict[str, float]
    per_category: dict[int, dict[str, float]]
    categories: dict[int, str]
    class_agnostic: bool
    figures: dict[str, float] = field(repr=False)
    annotated_frames: int = 0
    gt_tracks: int = 0
    result_tracks: int = 0


def summary(figures: Mapping[str, float]) -> dict[str, float]:
    """The panel's keys (:data:`SUMMARY_KEYS`) of an evaluator's figures (-1 where a figure is missing)."""
    return {ours: float(figures.get(theirs, -1.0)) for ours, theirs in SUMMARY_KEYS}


def document_entries(doc: Document) -> list[dict]:
    """The YTVIS result entries ``doc.export({"ytvis": ...})`` writes: the same conversion, checked the same way
    (video id 1, rejected tracks left out)."""
    from core.app.document.views import export_video

    video = export_video(doc)
    cats = dict(doc.categories)
    for f in video.results:
        for c in f.category_ids.tolist():
            cats.setdefault(int(c), f"category {c}")
    reference = ytvis_reference([video], sorted(cats.items()))
    return results_to_json(parse_ytvis_results(ytvis_entries([video]), reference, source=doc.clip.path))


def evaluate_entries(gt: ClipGroundTruth, entries: Sequence[Mapping], *, per_category: bool = True,
                     source: str = "results") -> EvaluationReport:
    """Score YTVIS result ``entries`` of the clip (every entry is taken as the clip's: its ``video_id`` is
    replaced by the GT's) against ``gt``, on its annotated frames. ``source`` names the results in messages.

    Raises :class:`DataError` when no frame is annotated or an entry has another number of frames than the clip.
    """
    if not gt.annotated:
        raise DataError(f"{gt.path}: no frame of the clip is annotated (no track has a segmentation); "
                        "give ground truth with annotations")
    clip_entries = []
    for k, e in enumerate(entries):
        n = len(e["segmentations"])
        if n != gt.num_frames:
            raise DataError(f"{source}: result {k} has {n} frames, but the clip and {gt.path} have {gt.num_frames}")
        clip_entries.append({**e, "video_id": gt.video_id})
    results = restricted_results(clip_entries, gt.annotated, class_agnostic=gt.class_agnostic)
    gt_json = restricted_gt_json([gt], {e["category_id"] for e in results})
    where = f"{source} (against {gt.path})"
    figures = score(gt_json, results, source=where)
    by_cat: dict[int, dict[str, float]] = {}
    if per_category:
        by_id = {x["id"]: x for x in gt_json["categories"]}  # one look-up per category that occurs
        for c in sorted({a["category_id"] for a in gt_json["annotations"]}):
            one = {**gt_json, "annotations": [a for a in gt_json["annotations"] if a["category_id"] == c],
                   "categories": [by_id[c]] if c in by_id else []}
            by_cat[c] = summary(score(one, [e for e in results if e["category_id"] == c], source=where))
    return EvaluationReport(
        overall=summary(figures), per_category=by_cat,
        categories={int(x["id"]): str(x["name"]) for x in gt_json["categories"]}, class_agnostic=gt.class_agnostic,
        figures=dict(figures), annotated_frames=len(gt.annotated), gt_tracks=len(gt_json["annotations"]),
        result_tracks=len(results))
