"""Ground truth beside predictions: load a clip's GT, match a document's tracks to it, score them as ``vpp eval``.

Qt-free; the app's evaluation panel and GT overlay call it::

    from core.app.review import document_entries, evaluate_entries, load_ground_truth, review_tracks

    doc = Document.open_clip("car-shadow/frames")
    gt = load_ground_truth("car-shadow/gt_ytvis.json", num_frames=doc.clip.num_frames,
                           height=doc.clip.height, width=doc.clip.width, names=doc.clip.frame_names())
    gt.masks_at(10)          # [(gt id, category, HxW bool)], [] = annotated and empty, None = not annotated
    review = review_tracks(gt, doc.tracks)            # rejected tracks left out
    review.by_pred[7].iou, review.misses, review.false_tracks, review.frame_iou
    report = evaluate_entries(gt, document_entries(doc))
    report.overall["AP_track"], report.per_category[5]["AP50"]   # the figures vpp eval prints

* :mod:`core.evaluation.ground_truth`: :func:`load_ground_truth` (a YouTube-VIS GT JSON or a folder of DAVIS PNG
  masks, dense or sparse) -> :class:`ClipGroundTruth`; the restriction to the annotated frames and the scoring
  that :mod:`core.sweep` uses too (one code path).
* :mod:`core.app.review.matching`: :func:`review_tracks` -> :class:`Review` of :class:`TrackMatch` (one-to-one,
  greedy by score, track IoU of the YouTube-VIS protocol over the annotated frames, per-frame IoU).
* :mod:`core.app.review.report`: :func:`document_entries` (what the export writes) and :func:`evaluate_entries`
  -> :class:`EvaluationReport` (overall and per category).

Every problem with a GT file raises :class:`~core.errors.DataError` starting with the path.
"""

from core.app.review.matching import MATCH_IOU, Review, TrackMatch, review_tracks
from core.app.review.report import SUMMARY_KEYS, EvaluationReport, document_entries, evaluate_entries
from core.evaluation.ground_truth import ClipGroundTruth, GroundTruthTrack, load_ground_truth

__all__ = [
    "MATCH_IOU",
    "SUMMARY_KEYS",
    "ClipGroundTruth",
    "EvaluationReport",
    "GroundTruthTrack",
    "Review",
    "TrackMatch",
    "document_entries",
    "evaluate_entries",
    "load_ground_truth",
    "review_tracks",
]
