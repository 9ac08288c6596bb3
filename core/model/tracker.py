"""Frame-to-frame instance tracking by embedding matching.

Choice: embedding matching (MinVIS-style) rather than TrackFormer track queries (the authors' release).
Each detection carries an L2-normalised embedding from the query decoder; detections are matched to
live tracks by Hungarian assignment on cosine similarity, a track's embedding is a running average of
its matches, and a track missing for up to ``max_age`` frames can still be picked up again (short
occlusions keep their ID). Why: the decoder stays per-frame (no state beyond the pruning state), the
matching works with any head that emits embeddings, query-to-query similarity of a Mask2Former
decoder is already temporally stable, and a contrastive loss on consecutive frames trains it. The
tracker holds only small tensors and is reset per clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


@dataclass
class _Track:
    track_id: int
    embedding: torch.Tensor  # [E], normalised
    last_frame: int
    hits: int = 1


@dataclass
class EmbeddingTracker:
    """Assign persistent track IDs to per-frame detections.

    Args:
        match_threshold: minimum cosine similarity for a detection to continue a track.
        max_age: frames a track may go unseen before it ends.
        momentum: weight of the old embedding in the running average.
    """

    match_threshold: float = 0.5
    max_age: int = 10
    momentum: float = 0.7
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 1

    def reset(self) -> None:
        self._tracks = []
        self._next_id = 1

    @property
    def live_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def update(self, embeddings: torch.Tensor, frame_index: int) -> list[int]:
        """Match ``[M, E]`` detection embeddings of frame ``frame_index``; returns M track IDs."""
        self._tracks = [t for t in self._tracks if frame_index - t.last_frame <= self.max_age]
        m = embeddings.shape[0]
        ids = [0] * m
        matched: set[int] = set()
        if m and self._tracks:
            bank = torch.stack([t.embedding for t in self._tracks]).to(embeddings)
            sim = (embeddings.float() @ bank.float().T).cpu().numpy()  # [M, T]
            cost = np.where(sim >= self.match_threshold, -sim, 1e3)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if sim[r, c] < self.match_threshold:
                    continue
                track = self._tracks[c]
                emb = self.momentum * track.embedding.to(embeddings) + (1 - self.momentum) * embeddings[r]
                track.embedding = torch.nn.functional.normalize(emb, dim=0).detach()
                track.last_frame = frame_index
                track.hits += 1
                ids[r] = track.track_id
                matched.add(r)
        for r in range(m):
            if r not in matched:
                track = _Track(self._next_id, embeddings[r].detach().clone(), frame_index)
                self._tracks.append(track)
                ids[r] = track.track_id
                self._next_id += 1
        return ids
