"""Embedding tracker: IDs persist, new objects get new IDs, short gaps keep the ID."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.model.tracker import EmbeddingTracker


def emb(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_ids_follow_embeddings_not_order():
    t = EmbeddingTracker(match_threshold=0.5)
    a, b = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    ids0 = t.update(emb(a, b), 0)
    ids1 = t.update(emb(b, a), 1)  # detections come in the other order
    assert ids0 == [1, 2] and ids1 == [2, 1]


def test_new_object_gets_a_new_id_and_gap_is_bridged():
    t = EmbeddingTracker(match_threshold=0.5, max_age=3)
    a, c = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    assert t.update(emb(a), 0) == [1]
    assert t.update(emb(a, c), 1) == [1, 2]
    assert t.update(emb(c), 2) == [2]
    assert t.update(emb(a), 4) == [1]  # unseen for 3 frames: still the same track
    assert t.update(emb(c), 9) == [3]  # gone too long: a new track
    t.reset()
    assert t.update(emb(a), 0) == [1]
