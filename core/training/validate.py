"""Score a model on a YTVIS-format split: inference clip by clip, then the official video protocol.

    split = open_split("data/shapes/valid/instances.json", "data/shapes/valid/JPEGImages")
    figures = evaluate_model(model, config, split, pkr=0.4)      # AP (AP_track), bbox_AP, segm_AP, ...
    validate = make_validator(ann, images)                        # the trainer's periodic validation hook

Each video runs from its first frame with a fresh clip state (pruning state and tracker), exactly as
``vpp infer`` does, so the figures are those a user gets. The PKR and prune mode are the session's
(passed per call; the model stores neither), and the model's train/eval flag is restored afterwards,
so a trainer can call this between steps.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from core.clip_loop import run_clip
from core.data.rle import decode_rle
from core.data.ytvis import YtvisGroundTruth, YtvisResult, parse_ytvis_results, read_ytvis_gt
from core.data.ytvis_dataset import YtvisDatasetSource
from core.errors import DataError
from core.evaluation.token_recall import RecallCounter, object_tokens
from core.evaluation.ytvis_eval import evaluate
from core.model.backbone import PruneMode
from core.model.vpp.config import VPPConfig
from core.model.vpp.model import VPPModel
from core.results import ClipResults, CompactFrame
from core.session import InferenceSession


def open_split(ann: str | Path, images: str | Path) -> YtvisDatasetSource:
    """A split from its annotation file and ``JPEGImages`` folder (any layout)."""
    ann, images = Path(ann), Path(images)
    if not images.is_dir():
        raise DataError(f"{images}: frame folder does not exist")
    return YtvisDatasetSource(images.parent, images.parent.name, ann, images, read_ytvis_gt(ann))


def predict_split(
    model: VPPModel,
    config: VPPConfig,
    split: YtvisDatasetSource,
    *,
    pkr: float,
    mode: PruneMode = "vpp",
    device: str | torch.device = "cpu",
    max_videos: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], dict[str, float]]:
    """YTVIS results for the split's videos, and per-frame means: ``keep_ratio``, ``gflops``, ``ms``; plus
    ``object_recall@<stage>`` / ``kept@<stage>`` (see :mod:`core.evaluation.token_recall`) over the
    frames after each clip's first (where Map-SM prunes) that show a ground-truth object."""
    was_training = model.training
    session = InferenceSession(model, config, device=str(device), pkr=pkr, mode=mode)
    results: list[dict] = []
    keep, gflops, ms = [], [], []
    recall = RecallCounter()
    ids = split.video_ids[:max_videos] if max_videos else split.video_ids
    try:
        for n, vid in enumerate(ids):
            tracks = [a.segmentations for a in split.gt.annotations if a.video_id == vid]
            with split.video_source(vid) as source:
                clip = ClipResults(len(source), source.size[1], source.size[0])

                def add(index: int, res, clip=clip, tracks=tracks) -> None:
                    clip.add(CompactFrame.from_result(res, index))
                    keep.append(res.keep_ratio)
                    gflops.append(res.gflops)
                    if index > 0:  # the first frame runs denser by design; steady state is what users feel
                        ms.append(res.ms)
                        _count_recall(recall, res, tracks, index, config)

                run_clip(source, session, add)
            results.extend(clip.to_ytvis(vid))
            if progress is not None:
                progress(n + 1, len(ids))
    finally:
        model.train(was_training)
    stats = {
        "keep_ratio": statistics.fmean(keep) if keep else float("nan"),
        "gflops": statistics.fmean(gflops) if gflops else float("nan"),
        "ms": statistics.median(ms) if ms else float("nan"),
        **recall.figures(),
    }
    return results, stats


def _count_recall(counter: RecallCounter, res, tracks: list, index: int, config: VPPConfig) -> None:
    segs = [t[index] for t in tracks if index < len(t) and t[index] is not None]
    if not segs or res.kept.size == 0:
        return
    union = decode_rle(segs[0]).astype(bool)
    for seg in segs[1:]:
        union |= decode_rle(seg).astype(bool)
    objects = object_tokens(union, res.kept.shape[1:], config.input_long_side, config.patch)
    if objects.any():
        counter.add(res.kept, objects, res.stage_names)


@dataclass(frozen=True)
class ModelScore:
    """The figures of one run over a split, with the ground truth and the detections they came from."""

    figures: dict[str, float]
    gt: YtvisGroundTruth
    results: tuple[YtvisResult, ...]


def score_model(
    model: VPPModel,
    config: VPPConfig,
    split: YtvisDatasetSource,
    *,
    pkr: float,
    mode: PruneMode = "vpp",
    device: str | torch.device = "cpu",
    max_videos: int | None = None,
    frame_metrics: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ModelScore:
    """Video AP (``AP`` = AP_track) and, with ``frame_metrics``, per-frame ``bbox_AP``/``segm_AP``; plus
    the run's mean ``keep_ratio``, ``gflops`` and median ``ms`` per frame."""
    results, stats = predict_split(model, config, split, pkr=pkr, mode=mode, device=device,
                                   max_videos=max_videos, progress=progress)
    gt = split.gt
    if max_videos:
        keep = set(split.video_ids[:max_videos])
        gt = type(gt)(tuple(v for v in gt.videos if v.id in keep),
                      tuple(a for a in gt.annotations if a.video_id in keep), gt.categories, gt.info,
                      gt.licenses, gt.extra)
    parsed = parse_ytvis_results(results, gt, source=f"predictions on {split.annotation_path}")
    figures = evaluate(gt, parsed, frame_metrics=frame_metrics)
    figures.update(stats)
    return ModelScore(figures, gt, tuple(parsed))


def evaluate_model(model: VPPModel, config: VPPConfig, split: YtvisDatasetSource, **kwargs) -> dict[str, float]:
    """The figures of :func:`score_model` (same arguments)."""
    return score_model(model, config, split, **kwargs).figures


def make_validator(
    ann: str | Path,
    images: str | Path,
    *,
    pkrs: Sequence[float] = (1.0, 0.4),
    max_videos: int | None = 20,
) -> Callable[[VPPModel, VPPConfig, int], dict]:
    """The trainer's hook: AP_track (video AP) at each PKR (1.0 runs dense) on the first ``max_videos``."""
    split = open_split(ann, images)

    def validate(model: VPPModel, config: VPPConfig, step: int) -> dict:
        device = next(model.parameters()).device
        out = {}
        for p in pkrs:
            mode: PruneMode = "dense" if p >= 1.0 else "vpp"
            fig = evaluate_model(model, config, split, pkr=p, mode=mode, device=device, max_videos=max_videos,
                                 frame_metrics=False)
            out[f"AP@{p:g}"] = round(fig["AP"], 4)
            out[f"keep@{p:g}"] = round(fig["keep_ratio"], 3)
        return out

    return validate
