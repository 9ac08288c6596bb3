"""ROVIS tracking (TrackFormer style) with track queries, as the authors' release does it.

Facts from PatGlan/Video-Patch-Pruning (head bf74be2): ``custom_mmtrack/models/vis/rovis.py`` (``ROVIS.predict``)
and ``custom_mmtrack/models/trackers/rovis_tracker.py`` (``TrackFormerTracker.track``, ``mask_nms``,
``BaseTracker(num_frames_retain=10)``). The query features of the tracks from frame t-1 are appended to the
head's learned queries at frame t (zero position embedding: the release's ``use_query_embed=False``). Then, per
frame:

1. candidates: the top-k (query x class) pairs of the head's output, ``k`` = all queries (learned + track);
   score = class probability x mean mask probability inside the mask (``m2f_postprocess.topk_instances``);
2. a candidate from a learned query (index < ``num_queries``) is kept if its score > 0.3 (``new_score``), one
   from a track query if > 0.25 (``keep_score``); sorted by score, best first;
3. candidates from track queries continue their track (query ``num_queries + t`` is the t-th track handed out by
   :meth:`RovisTracker.track_queries`); mask-NMS among them at IoU 0.7 (``nms_existing``), best first;
4. a continued track whose score is below 0.3 (``query_update_score``) keeps the query it came in with; others
   take the new query feature;
5. candidates from learned queries start new tracks; existing tracks first, then the new ones, go through
   mask-NMS at IoU 0.4 (``nms_all``) in that order, where existing tracks are never suppressed (the release's
   ``white_list``) but do suppress new ones;
6. a track not continued for 10 frames (``max_lost``) is dropped: it is fed as a track query on the 10 frames after
   it was last seen and dropped after the 10th (``frame - last_seen >= 10``).

IoU is that of the binary masks (logits > 0) at the resolution the candidates carry, with the release's
``(intersection + 1e-6) / (union + 1e-6)`` (two empty masks have IoU 1).

Deliberate differences, none of which changes which objects are tracked: ids start at ``first_id`` (1, this
project's convention; the release starts at 0) and are given after the NMS, so they are consecutive (the release
counts every new candidate before the NMS); lost tracks age on frames without any candidate too (the release
skips its update then, so a track could outlive 10 frames by a run of empty frames).

Pure torch state; no ``nn.Module``. :meth:`reset` at every clip start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from core.model.m2f_head import Mask2FormerOutput
from core.model.m2f_postprocess import topk_instances
from core.model.postprocess import Detections

#: The release's thresholds (``ROVIS.predict`` defaults and ``TrackFormerTracker.track``).
NEW_TRACK_SCORE = 0.3
KEEP_TRACK_SCORE = 0.25
NMS_EXISTING_IOU = 0.7
NMS_ALL_IOU = 0.4
QUERY_UPDATE_SCORE = 0.3
MAX_LOST_FRAMES = 10


@dataclass
class _Track:
    track_id: int
    query: torch.Tensor  # [C] the query feature fed at the next frame
    static_query: int  # the learned query that started the track (the release's ``track_static_query_ids``)
    last_frame: int
    label: int
    score: float


def mask_iou_matrix(masks: torch.Tensor) -> torch.Tensor:
    """``[M, M]`` IoU of binary masks ``[M, h, w]`` (bool, or logits: ``> 0``), the release's ``mask_iou``."""
    binary = masks if masks.dtype == torch.bool else masks > 0
    flat = binary.flatten(1).float()
    inter = flat @ flat.T
    area = flat.sum(1)
    union = area[:, None] + area[None, :] - inter
    return (inter + 1e-6) / (union + 1e-6)


def mask_nms(masks: torch.Tensor, threshold: float, *, protected: int = 0) -> torch.Tensor:
    """Greedy mask-NMS in the given order (the release's ``mask_nms``): bool ``[M]`` of the survivors.

    Candidate ``i`` (if it survives) suppresses every later ``j`` with IoU > ``threshold``, except the first
    ``protected`` candidates, which are never suppressed.
    """
    m = masks.shape[0]
    keep = torch.ones(m, dtype=torch.bool, device=masks.device)
    if m < 2:
        return keep
    iou = mask_iou_matrix(masks)
    later = torch.arange(m, device=masks.device)
    for i in range(m - 1):
        if keep[i]:
            hit = (iou[i] > threshold) & (later > i) & (later >= protected)
            keep &= ~hit
    return keep


@dataclass
class RovisUpdate:
    """What :meth:`RovisTracker.update` returns (also unpacks as ``ids, kept``).

    ``ids`` ``[M]`` long: track id of each instance of this frame; ``kept`` ``[M]`` long: the rows of
    ``detections`` (the candidates) they are, in output order (continued tracks first, then new ones);
    ``detections``: all candidates of the frame (``detections.queries[kept]`` are the query indices).
    """

    ids: torch.Tensor
    kept: torch.Tensor
    detections: Detections

    def __iter__(self):
        return iter((self.ids, self.kept))

    @property
    def scores(self) -> torch.Tensor:
        return self.detections.scores[self.kept]

    @property
    def labels(self) -> torch.Tensor:
        return self.detections.labels[self.kept]

    @property
    def mask_logits(self) -> torch.Tensor:
        return self.detections.mask_logits[self.kept]


@dataclass
class RovisTracker:
    """Track ids and track queries across the frames of one clip.

    Use per frame::

        feats, embeds = tracker.track_queries()
        out = model(frame, state, keep=keep, track_queries=(feats, embeds))
        ids, kept = tracker.update(out.head)            # or update(detections, num_queries=...)
    """

    new_score: float = NEW_TRACK_SCORE
    keep_score: float = KEEP_TRACK_SCORE
    nms_existing: float = NMS_EXISTING_IOU
    nms_all: float = NMS_ALL_IOU
    query_update_score: float = QUERY_UPDATE_SCORE
    max_lost: int = MAX_LOST_FRAMES
    first_id: int = 1
    _tracks: list[_Track] = field(default_factory=list)
    _issued: list[int] = field(default_factory=list)  # track ids in the order track_queries() handed them out
    _next_id: int = 1
    _frame: int = -1

    def __post_init__(self) -> None:
        self._next_id = self.first_id

    def reset(self) -> None:
        """Forget every track (a new clip)."""
        self._tracks = []
        self._issued = []
        self._next_id = self.first_id
        self._frame = -1

    @property
    def live_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    @property
    def frame_index(self) -> int:
        """Index of the last frame :meth:`update` saw (-1 before the first)."""
        return self._frame

    def track_queries(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(features [T, C], position embeddings [T, C])`` of the live tracks for the next frame's head.

        ``(None, None)`` when there are none. The embeddings are zeros (the release's ``use_query_embed=False``).
        The order is remembered: query ``num_queries + t`` of the next frame belongs to the t-th track here.
        """
        self._issued = [t.track_id for t in self._tracks]
        if not self._tracks:
            return None, None
        feats = torch.stack([t.query for t in self._tracks])
        return feats, torch.zeros_like(feats)

    @property
    def static_query_ids(self) -> list[int]:
        """The learned query each live track started from (the release's ``track_static_query_ids``)."""
        return [t.static_query for t in self._tracks]

    def candidates(self, outputs: Mask2FormerOutput, *, input_size: tuple[int, int] | None = None,
                   valid_size: tuple[int, int] | None = None,
                   output_size: tuple[int, int] | None = None) -> Detections:
        """The release's candidates of one frame: top-k over (query, class) pairs with k = all queries.

        Without sizes the masks are scored (and later compared) at stride 4; with them, as the release does, at
        the frame's resolution (see :func:`~core.model.m2f_postprocess.topk_instances`; slower).
        """
        cls, masks, emb = outputs.class_logits, outputs.mask_logits, outputs.embeddings
        if cls.ndim == 3:
            if cls.shape[0] != 1:
                raise ValueError(f"one frame at a time: batch {cls.shape[0]} given")
            cls, masks, emb = cls[0], masks[0], emb[0]
        return topk_instances(cls, masks, emb, input_size=input_size, valid_size=valid_size,
                              output_size=output_size)

    def update(
        self,
        outputs: Mask2FormerOutput | Detections,
        *,
        num_queries: int | None = None,
        frame_index: int | None = None,
        **sizes: tuple[int, int] | None,
    ) -> RovisUpdate:
        """Assign track ids to one frame's instances and prepare the next frame's track queries.

        Args:
            outputs: the head's output of this frame (batch 1; the candidates are made with
                :meth:`candidates`), or candidates already made (``Detections`` with ``queries`` and
                ``embeddings``; then ``num_queries`` is needed).
            num_queries: learned queries of the head (query indices from there on are track queries).
            frame_index: this frame's index in the clip (default: the previous one + 1).
            sizes: ``input_size`` / ``valid_size`` / ``output_size`` for :meth:`candidates` (head outputs only).

        Returns:
            :class:`RovisUpdate` (``ids, kept = tracker.update(...)``).
        """
        if isinstance(outputs, Mask2FormerOutput):
            det = self.candidates(outputs, **sizes)
            nq = outputs.num_queries if num_queries is None else int(num_queries)
        else:
            if num_queries is None:
                raise ValueError("num_queries is needed with Detections")
            if any(v is not None for v in sizes.values()):
                raise ValueError("sizes apply to head outputs; Detections are already scored")
            det, nq = outputs, int(num_queries)
        frame = self._frame + 1 if frame_index is None else int(frame_index)
        self._frame = frame
        queries = det.queries.long().cpu()
        scores = det.scores.float().cpu()
        n_issued = len(self._issued)
        bad = queries[(queries >= nq + n_issued) | (queries < 0)]
        if bad.numel():
            raise ValueError(f"query index {int(bad[0])} is neither one of the {nq} learned queries nor one of the "
                             f"{n_issued} track queries handed out by track_queries()")

        is_track = queries >= nq
        passed = torch.where(is_track, scores > self.keep_score, scores > self.new_score)
        rows = passed.nonzero().flatten()
        rows = rows[torch.sort(scores[rows], descending=True, stable=True).indices]

        by_id = {t.track_id: t for t in self._tracks}
        old_rows = rows[is_track[rows]]
        new_rows = rows[~is_track[rows]]
        if old_rows.numel():
            old_rows = old_rows[mask_nms(det.mask_logits[old_rows.to(det.mask_logits.device)].cpu(),
                                         self.nms_existing)]
        merged = torch.cat([old_rows, new_rows])
        if merged.numel():
            merged = merged[mask_nms(det.mask_logits[merged.to(det.mask_logits.device)].cpu(), self.nms_all,
                                     protected=old_rows.numel())]
        ids: list[int] = []
        for r in merged.tolist():
            q, score = int(queries[r]), float(scores[r])
            emb = det.embeddings[r].detach()
            label = int(det.labels[r])
            if q >= nq:
                track = by_id[self._issued[q - nq]]
                if score >= self.query_update_score:  # below it, the track keeps the query it came in with
                    track.query = emb.clone()
                track.last_frame, track.label, track.score = frame, label, score
            else:
                track = _Track(self._next_id, emb.clone(), q, frame, label, score)
                self._next_id += 1
                self._tracks.append(track)
                by_id[track.track_id] = track
            ids.append(track.track_id)
        self._tracks = [t for t in self._tracks if frame - t.last_frame < self.max_lost]
        self._issued = []
        return RovisUpdate(torch.tensor(ids, dtype=torch.long), merged.long(), det)
