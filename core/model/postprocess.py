"""Turn one frame's decoder output into scored instances: class x mask score, threshold, mask-NMS.

Score of a query = max class probability x mean sigmoid of its mask inside the mask (as the authors'
release does). Works at the decoder's stride-8 resolution; upsampling to the image happens once, for
the survivors only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Detections:
    """Instances of one frame (all tensors on the model's device)."""

    scores: torch.Tensor  # [M]
    labels: torch.Tensor  # [M] category index 0..K-1
    mask_logits: torch.Tensor  # [M, h8, w8]
    embeddings: torch.Tensor  # [M, E]
    queries: torch.Tensor  # [M] query index


def select_instances(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    embeddings: torch.Tensor,
    *,
    score_threshold: float = 0.25,
    nms_iou: float = 0.7,
    max_instances: int = 20,
) -> Detections:
    """``class_logits [Q, K+1]``, ``mask_logits [Q, h, w]``, ``embeddings [Q, E]`` of one frame."""
    probs = class_logits.float().softmax(-1)[:, :-1]
    cls_score, labels = probs.max(-1)
    mask_prob = mask_logits.float().sigmoid()
    binary = mask_prob > 0.5
    area = binary.flatten(1).sum(-1)
    mask_score = (mask_prob * binary).flatten(1).sum(-1) / area.clamp(min=1)
    scores = cls_score * mask_score
    keep = (scores >= score_threshold) & (area > 0)
    order = torch.nonzero(keep).flatten()
    order = order[scores[order].argsort(descending=True)]
    chosen: list[int] = []
    flat = binary.flatten(1).float()
    for q in order.tolist():
        if len(chosen) >= max_instances:
            break
        if chosen:
            inter = flat[chosen] @ flat[q]
            union = area[chosen] + area[q] - inter
            if (inter / union.clamp(min=1)).max() > nms_iou:
                continue
        chosen.append(q)
    idx = torch.tensor(chosen, dtype=torch.long, device=class_logits.device)
    return Detections(scores[idx], labels[idx], mask_logits[idx], embeddings[idx], idx)
