"""The release's instance postprocessing for Mask2Former: top-k over (query, class) pairs.

As mmdet's ``MaskFormerFusionHead.instance_postprocess`` (used by the release's ``QueryAsTrID`` fusion head):

1. class probabilities ``softmax(class_logits)[:, :K]`` (the "no object" column dropped);
2. the ``k`` best (query, class) pairs over all ``Q x K`` of them. The release sets ``k`` to the number of
   queries at inference (learned + track queries; ``rovis.py`` overwrites ``max_per_image`` with it), so one
   query can come back several times with different classes;
3. each pair's mask is its query's mask logits; ``binary = logits > 0``; mask score = mean sigmoid inside the
   binary mask, ``sum(sigmoid * binary) / (sum(binary) + 1e-6)``;
4. score = class probability x mask score. No threshold here: the release's tracker keeps new objects at
   score > 0.3 and tracked ones at > 0.25 afterwards (``score_threshold`` filters here if wanted).

The release scores the masks at the frame's resolution: the stride-4 logits are upsampled bilinearly to the
padded model input, the padding is cropped, and the rest is resized to the original frame (``input_size``,
``valid_size``, ``output_size`` below, in that order). Without them the masks are scored where they are (stride 4),
which is cheaper and close. Results are sorted by score, best first (mmdet's ``topk(sorted=False)`` leaves the
order open; the release sorts by score after thresholding). The YouTube-VIS categories are all "things", so
mmdet's thing/stuff filter is a no-op and is left out.

Returns :class:`core.model.postprocess.Detections`, as ``select_instances`` does, so a session can use either;
``embeddings`` are the selected queries' features (the next frame's track queries) and ``queries`` their indices
(duplicates possible, see 2.).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.model.postprocess import Detections


def _resize(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def topk_instances(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    embeddings: torch.Tensor | None = None,
    *,
    max_per_image: int | None = None,
    score_threshold: float = 0.0,
    input_size: tuple[int, int] | None = None,
    valid_size: tuple[int, int] | None = None,
    output_size: tuple[int, int] | None = None,
) -> Detections:
    """Instances of one frame from ``class_logits [Q, K + 1]``, ``mask_logits [Q, h, w]``, ``embeddings [Q, E]``.

    Args:
        max_per_image: ``k`` of the top-k over the ``Q x K`` pairs; None: ``Q`` (the release at inference).
        score_threshold: drop instances with a lower final score (0: keep all ``k``).
        input_size: upsample the mask logits to the padded model input ``(H, W)`` first.
        valid_size: then crop them to the unpadded image ``(h, w)`` (top-left).
        output_size: then resize them to the original frame ``(H0, W0)``.

    Returns:
        ``Detections`` with ``mask_logits [M, h', w']`` at the resolution the masks were scored at.
    """
    if class_logits.ndim != 2 or class_logits.shape[1] < 2:
        raise ValueError(f"class_logits must be [Q, K + 1] with K >= 1, got {tuple(class_logits.shape)}")
    if mask_logits.ndim != 3 or mask_logits.shape[0] != class_logits.shape[0]:
        raise ValueError(f"mask_logits must be [{class_logits.shape[0]}, h, w], got {tuple(mask_logits.shape)}")
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    if embeddings is None:
        embeddings = class_logits.new_zeros(num_queries, 0)
    elif embeddings.ndim != 2 or embeddings.shape[0] != num_queries:
        raise ValueError(f"embeddings must be [{num_queries}, E], got {tuple(embeddings.shape)}")
    k = num_queries if max_per_image is None else int(max_per_image)
    if k < 1:
        raise ValueError(f"max_per_image must be >= 1, got {max_per_image}")
    k = min(k, num_queries * num_classes)

    probs = class_logits.float().softmax(-1)[:, :num_classes]
    cls_scores, pairs = probs.flatten().topk(k, sorted=True)
    labels = pairs % num_classes
    queries = torch.div(pairs, num_classes, rounding_mode="floor")

    # Resize each selected query's mask once, then score every pair.
    unique, inverse = torch.unique(queries, return_inverse=True)
    masks = mask_logits[unique].float()
    if input_size is not None:
        masks = _resize(masks, input_size)
    if valid_size is not None:
        masks = masks[:, : int(valid_size[0]), : int(valid_size[1])]
    if output_size is not None:
        masks = _resize(masks, output_size)
    binary = (masks > 0).float()
    mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    scores = cls_scores * mask_scores[inverse]

    order = torch.sort(scores, descending=True, stable=True).indices
    if score_threshold > 0:
        order = order[scores[order] >= score_threshold]
    return Detections(
        scores=scores[order],
        labels=labels[order],
        mask_logits=masks[inverse[order]],
        embeddings=embeddings[queries[order]],
        queries=queries[order],
    )
