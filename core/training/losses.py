"""Training losses: Mask2Former set loss (Hungarian matching, class CE, mask BCE + Dice on sampled
points), a contrastive tracking loss on consecutive frames, and the VPP sparsity loss.

Weights follow the authors' release: class 2 (no-object class weight 0.1), mask BCE 5, Dice 5.
Points: the release samples 12,544 points with importance sampling; we sample ``num_points`` points,
a share of them at the most uncertain predicted locations (|logit| small), the rest uniformly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


@dataclass
class FrameTargets:
    """Ground truth of one frame: ``M`` instances."""

    labels: torch.Tensor  # [M] long, 0..K-1
    masks: torch.Tensor  # [M, H, W] float {0, 1} at the model's input (padded) resolution
    instance_ids: torch.Tensor  # [M] long, stable across the frames of a clip


@dataclass(frozen=True)
class LossWeights:
    cls: float = 2.0
    mask_bce: float = 5.0
    dice: float = 5.0
    no_object: float = 0.1
    track: float = 1.0
    sparsity: float = 1.0
    objectness: float = 0.0  # off = the paper's losses; see objectness_loss


def point_sample(masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``masks [N, H, W]`` at ``points [N, P, 2]`` (x, y in [0, 1]) -> ``[N, P]`` (bilinear)."""
    grid = points.unsqueeze(1) * 2.0 - 1.0  # [N, 1, P, 2]
    return F.grid_sample(masks.unsqueeze(1), grid, align_corners=False).squeeze(1).squeeze(1)


def _uncertain_points(logits: torch.Tensor, num: int, *, oversample: int = 3, importance: float = 0.75):
    """``[N, num, 2]`` points: ``importance`` of them where ``logits [N, h, w]`` is least certain."""
    n = logits.shape[0]
    cand = torch.rand(n, num * oversample, 2, device=logits.device)
    unc = -point_sample(logits.detach(), cand).abs()
    k = int(num * importance)
    top = unc.topk(k, dim=1).indices
    picked = cand.gather(1, top.unsqueeze(-1).expand(-1, -1, 2))
    rest = torch.rand(n, num - k, 2, device=logits.device)
    return torch.cat([picked, rest], dim=1)


def dice_cost(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Pairwise Dice loss ``pred [Q, P]`` logits vs ``gt [M, P]`` -> ``[Q, M]``."""
    p = pred.sigmoid()
    num = 2 * p @ gt.T
    den = p.sum(-1)[:, None] + gt.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def bce_cost(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Pairwise mean BCE ``pred [Q, P]`` logits vs ``gt [M, P]`` -> ``[Q, M]``."""
    pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none")
    neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction="none")
    return (pos @ gt.T + neg @ (1 - gt).T) / pred.shape[1]


@torch.no_grad()
def hungarian_match(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, target: FrameTargets, *, num_points: int, w: LossWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match the ``Q`` queries of one frame to its ``M`` instances; returns (query idx, target idx)."""
    m = target.labels.numel()
    if m == 0:
        empty = torch.empty(0, dtype=torch.long, device=class_logits.device)
        return empty, empty
    prob = class_logits.float().softmax(-1)
    cost_cls = -prob[:, target.labels]  # [Q, M]
    pts = torch.rand(1, num_points, 2, device=mask_logits.device)
    pred = point_sample(mask_logits.float(), pts.expand(mask_logits.shape[0], -1, -1))
    gt = point_sample(target.masks.float(), pts.expand(m, -1, -1))
    cost = w.cls * cost_cls + w.mask_bce * bce_cost(pred, gt) + w.dice * dice_cost(pred, gt)
    q, t = linear_sum_assignment(cost.float().cpu().numpy())  # float: bf16 under autocast
    dev = class_logits.device
    return torch.as_tensor(q, dtype=torch.long, device=dev), torch.as_tensor(t, dtype=torch.long, device=dev)


def set_loss(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    target: FrameTargets,
    match: tuple[torch.Tensor, torch.Tensor],
    *,
    num_points: int,
    w: LossWeights,
) -> torch.Tensor:
    """Mask2Former loss of one frame's prediction (``[Q, K+1]``, ``[Q, h, w]``) given a matching."""
    q_idx, t_idx = match
    num_classes = class_logits.shape[-1] - 1
    cls_target = torch.full((class_logits.shape[0],), num_classes, dtype=torch.long, device=class_logits.device)
    cls_target[q_idx] = target.labels[t_idx]
    weight = torch.ones(num_classes + 1, device=class_logits.device)
    weight[-1] = w.no_object
    loss = w.cls * F.cross_entropy(class_logits.float(), cls_target, weight=weight)
    if q_idx.numel() == 0:
        return loss + 0.0 * mask_logits.sum()
    pred_masks = mask_logits[q_idx].float()
    gt_masks = target.masks[t_idx].float()
    pts = _uncertain_points(pred_masks, num_points)
    pred = point_sample(pred_masks, pts)
    gt = point_sample(gt_masks, pts)
    bce = F.binary_cross_entropy_with_logits(pred, gt)
    p = pred.sigmoid()
    dice = (1 - (2 * (p * gt).sum(-1) + 1) / (p.sum(-1) + gt.sum(-1) + 1)).mean()
    return loss + w.mask_bce * bce + w.dice * dice


def tracking_loss(
    emb_prev: torch.Tensor,
    emb_cur: torch.Tensor,
    ids_prev: dict[int, int],
    ids_cur: dict[int, int],
    *,
    temperature: float = 0.1,
) -> torch.Tensor | None:
    """Contrastive loss: a query matched to instance i at frame t must be most similar to the query
    matched to i at frame t-1, among all queries of frame t-1. ``ids_*`` map instance id -> query."""
    common = [i for i in ids_cur if i in ids_prev]
    if not common:
        return None
    cur = emb_cur[[ids_cur[i] for i in common]]  # [n, E]
    logits = cur @ emb_prev.T / temperature  # [n, Q]
    target = torch.tensor([ids_prev[i] for i in common], device=emb_cur.device)
    return F.cross_entropy(logits.float(), target)


def sparsity_loss(
    keep_probs: list[torch.Tensor], tokens_per_block: list[int], keep: tuple[float, ...], prune_points: tuple[int, ...]
) -> torch.Tensor | None:
    """40 * [sum_stages (mean keep - target)^2 + 10 * (mean soft Map-SM keep - 0.5)^2] / 13 (the release).

    With a static k per stage the hard keep rate is fixed; the loss pulls the gates' soft keep
    probabilities toward the stage targets, so their ranking stays calibrated. ``keep_probs`` holds the
    soft probabilities of the stages that pruned this frame (on a clip's first frame Map-SM does not).
    """
    if not keep_probs:
        return None
    n = tokens_per_block[0]
    # targets relative to the tokens entering each stage that pruned (the last len(keep_probs) points)
    entering = [tokens_per_block[p - 1] for p in prune_points][-len(keep_probs):]
    targets = list(keep)[-len(keep_probs):]
    total = 0.0
    for probs, n_in, tgt in zip(keep_probs, entering, targets):
        rel_target = min(1.0, tgt * n / n_in)
        total = total + (probs.float().mean() - rel_target) ** 2
    if len(keep_probs) == len(prune_points):  # Map-SM pruned this frame
        total = total + 10 * (keep_probs[0].float().mean() - 0.5) ** 2
    return 40 * total / 13


def object_token_targets(masks: torch.Tensor, grid: tuple[int, int], *, dilate: int = 1) -> torch.Tensor:
    """``[M, H, W]`` masks at the padded input size -> ``[N]`` float {0, 1}: tokens on an object (half
    their pixels or more), grown by ``dilate`` tokens so the object's border context counts too."""
    gh, gw = grid
    if masks.shape[0] == 0:
        return masks.new_zeros(gh * gw)
    union = masks.amax(dim=0)[None, None]
    share = F.adaptive_avg_pool2d(union.float(), (gh, gw))
    tok = (share >= 0.5).float()
    if dilate > 0:
        tok = F.max_pool2d(tok, 2 * dilate + 1, stride=1, padding=dilate)
    return tok.flatten()


def objectness_loss(
    keep_logp: list[torch.Tensor], entering: list[torch.Tensor], targets: torch.Tensor
) -> torch.Tensor | None:
    """Supervise the prune decisions with the ground truth: BCE of each stage's keep probability against
    "this token is on or next to an object", over the tokens entering the stage.

    Not in the paper (its decisions learn only from the task and sparsity losses). We add it because the
    task gradient alone, here, taught the gates to drop exactly the object tokens (see
    ``core.model.backbone``); with it they keep the objects and the sparsity loss still sets the rates.
    ``keep_logp`` / ``entering``: ``[B, N]`` per stage; ``targets``: ``[B, N]``.
    """
    if not keep_logp:
        return None
    total = 0.0
    for logp, alive in zip(keep_logp, entering):
        logp = logp.float().clamp(max=-1e-6)
        log_drop = torch.log1p(-logp.exp())
        bce = -(targets * logp + (1 - targets) * log_drop)
        total = total + bce[alive].mean()
    return total / len(keep_logp)
