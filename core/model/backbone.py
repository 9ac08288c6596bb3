"""The pruned ViT backbone: ViT blocks + Map-SM + image selective modules, gather -> blocks -> scatter.

Stages (with the default prune points 1, 3, 6, 9 on 12 blocks):

    block 0                dense, always; its output is the next frame's Map-SM key
    Map-SM  -> blocks 1-2  keep k1 = int(N * keep[0]) tokens (first frame of a clip: all tokens)
    select3 -> blocks 3-5  keep k3 = int(N * keep[1]) of those; block 5 = the deep features (values)
    select6 -> blocks 6-8  keep k6
    select9 -> blocks 9-11 keep k9

The keep fractions and the prune mode are arguments of each call (``forward(images, state, keep=...,
mode=...)``), not settings stored on the module: one module serves any number of callers at different
PKRs at once. ``keep=None`` is the dense budget (all ones).

Pruning gathers a static number of tokens once per stage and runs the stage's blocks on that dense,
shorter sequence (so fused attention keeps its fastest kernel), then scatters the results back into
the full token map once. Pruned tokens keep the features they had when they were dropped, so the
head always sees a dense map. Keep fractions are absolute (relative to N), and each stage can only
drop more.

In training the ranking adds logistic (Gumbel-difference) noise of scale ``selection_noise`` (default 0.1, the
release's 1 / tau: ``gumbel_softmax(f * tau, tau)`` adds Gumbel noise of scale 1 / tau = 0.1 to the
log-probabilities) and the kept tokens are multiplied by a straight-through factor 1 + p - stop_grad(p)
(p = soft keep probability), so forward values are those of hard top-k while gradients reach Map-SM and the
selective modules. The scale matters: the keep log-probabilities of a model span well under one unit, so
noise of scale 1 (standard logistic, std 1.8) makes the training selection indistinguishable from random
drop, and the head never learns the deterministic selection it gets at inference. At inference the ranking is a
plain top-k: the same input gives the same output, bit for bit.

Two selection rules, a per-call argument like the keep fractions (``forward(..., selection=...)``):

- "topk" (the default, this project's): every stage keeps exactly ``int(N * keep[i])`` tokens (static counts, real
  speed); Map-SM ranks by its dilated keep log-probability and keeps ``background_share`` of its budget on a
  shifting lattice (:func:`~core.model.map_sm.background_positions`).
- "release" (the authors' release, PatGlan/Video-Patch-Pruning head bf74be2, ``custom_mmdet/models/backbones/``):
  Map-SM still keeps exactly ``int(N * keep[0])`` tokens (``map_selective_module.py``: sort, first
  ``int(num_p * quantile)``), ranked as released (:meth:`~core.model.map_sm.MapSM.release_scores`: both
  log-probabilities pooled, then softmaxed), with no background lattice; the selective modules are hard per-token
  gates, keep where p(keep) >= 0.5 (:func:`~core.model.selective.release_keep`; ``selective_module.py``), so the
  kept count varies from frame to frame and the measured PKR is what the gates make of the input. A token dropped
  earlier stays dropped (the gate only sees the kept tokens; the release multiplies by the previous mask); a gate
  that would keep no token keeps the one with the highest keep probability. The keep fractions of the selective
  stages are not counts here: a fraction of 1.0 (``keep=None``: all) turns that stage off, any other value lets
  its gate decide. Deliberate differences from the release: no Gumbel noise at inference (the release samples it
  at test time, scale 0.1, in both modules): the same input gives the same kept set, bit for bit; inference only
  (the gradient path of training is the top-k one) and one frame at a time (batch 1, as the release's test mode,
  which asserts it). Modes "random" and "dense" ignore ``selection``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from core.model.map_sm import MapSM, background_positions
from core.model.selective import SelectiveModule, release_keep
from core.model.vit import VisionTransformer

PruneMode = Literal["vpp", "random", "dense"]
#: How "vpp" picks tokens (see the module docstring): static top-k per stage, or the release's thresholded gates.
Selection = Literal["topk", "release"]
SELECTIONS: tuple[str, ...] = ("topk", "release")

# ``hooks[i]`` gets the dense ``[B, N, C]`` token map before block ``i`` (``i == depth``: after the last
# block) and returns the map to continue with, same shape; kept tokens are re-gathered from it, dropped
# tokens keep the hook's values. The ViT-Adapter's injector/extractor interactions run here.
BlockHooks = Mapping[int, Callable[[torch.Tensor], torch.Tensor]]


@dataclass
class PruneState:
    """What frame t+1 needs from frame t of the same clip (tensors ``[B, N, C]`` / ``[B, K]``)."""

    tokens0: torch.Tensor  # after block 0, dense: Map-SM keys
    deep: torch.Tensor  # after the deep block, dense-restored: Map-SM values
    kept: torch.Tensor  # indices kept at the deep block
    grid: tuple[int, int]
    frame_index: int  # frames seen so far in this clip (drives the background sampling phase)


@dataclass
class BackboneOutput:
    features: list[torch.Tensor]  # dense ``[B, N, C]`` maps after each of ``out_indices``
    grid: tuple[int, int]
    kept_masks: list[torch.Tensor]  # per prune point, ``[B, N]`` bool: kept for the blocks that follow
    tokens_per_block: list[int]  # tokens processed by each block (block 0 = N)
    keep_probs: list[torch.Tensor] = field(default_factory=list)  # soft keep probabilities (training)
    # masked training only, per stage that pruned: keep log-probabilities over all N tokens, and which
    # tokens entered the stage (``[B, N]`` each), for supervision of the decisions at token positions
    keep_logp_full: list[torch.Tensor] = field(default_factory=list)
    entering: list[torch.Tensor] = field(default_factory=list)
    flops: int = 0
    state: PruneState | None = None

    @property
    def keep_ratio(self) -> float:
        """Reported PKR: mean over blocks of kept / total tokens."""
        n = self.tokens_per_block[0]
        return sum(self.tokens_per_block) / (len(self.tokens_per_block) * n)


class PrunedViT(nn.Module):
    """ViT with Video Patch Pruning.

    Args:
        vit: the plain transformer (patch embedding, position embedding, blocks).
        map_sm: the Mapping-Selective Module used before ``map_block``.
        selective: one gate per later prune point, keyed by the block index it precedes.
        map_block: block index Map-SM precedes (the paper: 1).
        deep_block: block whose output gives Map-SM's values (the paper: 5).
        out_indices: blocks whose dense-restored outputs go to the head.
        background_share: share of Map-SM's budget kept on a sparse, shifting background lattice.
        masked_training: train "vpp" with masks over the full sequence (see :meth:`forward_masked`).
        selection_noise: scale of the logistic noise on the keep ranking in training (0: plain top-k).

    The keep fractions and the prune mode are per-call arguments of :meth:`forward`; the module holds
    only weights and its fixed structure.
    """

    def __init__(
        self,
        vit: VisionTransformer,
        map_sm: MapSM,
        selective: dict[int, SelectiveModule],
        *,
        map_block: int = 1,
        deep_block: int = 5,
        out_indices: tuple[int, ...] = (2, 5, 8, 11),
        background_share: float = 0.1,
        masked_training: bool = True,
        selection_noise: float = 0.1,
    ) -> None:
        super().__init__()
        depth = len(vit.blocks)
        points = [map_block, *sorted(selective)]
        if not 0 < map_block < min(points[1:] or [depth]) or points[-1] >= depth:
            raise ValueError(f"prune points {points} must be increasing and inside 1..{depth - 1}")
        if not map_block <= deep_block < depth:
            raise ValueError(f"deep_block {deep_block} must be in {map_block}..{depth - 1}")
        if not 0.0 <= selection_noise <= 10.0:
            raise ValueError(f"selection_noise {selection_noise} must be in 0..10")
        if any(not 0 <= i < depth for i in out_indices):
            raise ValueError(f"out_indices {out_indices} must be block indices in 0..{depth - 1}")
        self.vit = vit
        self.map_sm = map_sm
        self.selective = nn.ModuleDict({str(b): m for b, m in sorted(selective.items())})
        self.map_block = map_block
        self.deep_block = deep_block
        self.out_indices = tuple(out_indices)
        self.prune_points = tuple(points)
        self.background_share = background_share
        self.masked_training = masked_training
        self.selection_noise = float(selection_noise)
        # Outputs after these blocks are written back into the full map: head taps, the deep block,
        # and the last block of every stage (so dropped tokens keep their latest features).
        self._scatter_after = set(self.out_indices) | {deep_block} | {p - 1 for p in self.prune_points}

    @property
    def embed_dim(self) -> int:
        return self.vit.embed_dim

    def _resolve_keep(self, keep: tuple[float, ...] | None, mode: PruneMode) -> tuple[float, ...]:
        """Validated keep fractions for one call (``None``: all ones) after checking ``mode``."""
        if mode not in ("vpp", "random", "dense"):
            raise ValueError(f"unknown prune mode {mode!r}; choose vpp, random or dense")
        if keep is None:
            return (1.0,) * len(self.prune_points)
        if len(keep) != len(self.prune_points):
            raise ValueError(f"need {len(self.prune_points)} keep fractions (one per prune point), got {len(keep)}")
        if any(not 0.0 < r <= 1.0 for r in keep):
            raise ValueError(f"keep fractions must be in (0, 1], got {keep}")
        return tuple(float(r) for r in keep)

    def forward(
        self,
        images: torch.Tensor,
        state: PruneState | None = None,
        *,
        keep: tuple[float, ...] | None = None,
        mode: PruneMode = "vpp",
        hooks: BlockHooks | None = None,
        selection: Selection = "topk",
    ) -> BackboneOutput:
        """Run one frame ``[B, 3, H, W]``; ``state`` is the previous frame's (None: first frame).

        ``keep``: absolute keep fraction per prune point, in order (Map-SM first); None keeps all tokens.
        ``mode``: "vpp" (learned), "random" (random drop at the same k: a baseline) or "dense".
        ``hooks``: optional, see ``BlockHooks`` (None: the plain backbone).
        ``selection``: "topk" (static counts) or "release" (the release's thresholded gates: inference, batch 1;
        see the module docstring). Only "vpp" uses it.
        """
        keep = self._resolve_keep(keep, mode)
        hooks = self._resolve_hooks(hooks)
        release = self._resolve_selection(selection, mode, images)
        if self.training and self.masked_training and mode == "vpp":
            return self.forward_masked(images, state, keep=keep, mode=mode, hooks=hooks)
        vit = self.vit
        x, grid, flops, state = self._block0(images, state, hooks.get(0))
        b, n_all, _c = x.shape
        frame_index = 0 if state is None else state.frame_index
        tokens0 = x
        full = x
        cur = x
        idx: torch.Tensor | None = None  # None = all tokens, in order
        counts = [n_all]
        kept_masks: list[torch.Tensor] = []
        keep_probs: list[torch.Tensor] = []
        taps: dict[int, torch.Tensor] = {}
        deep_kept: torch.Tensor | None = None
        if 0 in self._scatter_after:
            taps[0] = x
        keep_of = dict(zip(self.prune_points, keep))
        scatter_after = self._scatter_after | {j - 1 for j in hooks}
        for i in range(1, len(vit.blocks)):
            if i in hooks:  # the full map is current: the previous block scattered into it
                full = hooks[i](full)
                cur = full if idx is None else _gather(full, idx)
            if i in keep_of and release:
                n = cur.shape[1]
                local, scored = self._release_select(i, cur, state, grid, n_all, keep_of[i])
                if scored:
                    flops += self._scoring_flops(i, n, n_all, state, mode=mode)
                if local is not None:
                    cur = _gather(cur, local)
                    idx = local if idx is None else idx.gather(1, local)
                kept_masks.append(_mask(idx, b, n_all, x.device))
            elif i in keep_of:
                k = max(1, int(n_all * keep_of[i]))
                n = cur.shape[1]
                if mode != "dense" and k < n and (i != self.map_block or state is not None):
                    scores, forced = self._scores(i, cur, state, grid, frame_index, n_all, keep=keep, mode=mode)
                    flops += self._scoring_flops(i, n, n_all, state, mode=mode)
                    local, factor = _select(scores, k, forced, training=self.training,
                                            noise=self.selection_noise)
                    cur = _gather(cur, local)
                    if factor is not None:
                        cur = cur * factor.unsqueeze(-1).to(cur.dtype)
                        keep_probs.append(scores.exp())
                    idx = local if idx is None else idx.gather(1, local)
                kept_masks.append(_mask(idx, b, n_all, x.device))
            cur = vit.blocks[i](cur)
            n = cur.shape[1]
            counts.append(n)
            flops += vit.blocks[i].flops(n)
            if i in scatter_after:
                full = cur if idx is None else _scatter(full, idx, cur)
                taps[i] = full
                if i == self.deep_block:
                    deep_kept = idx if idx is not None else torch.arange(n_all, device=x.device).expand(b, -1)
        if len(vit.blocks) in hooks:
            hooks[len(vit.blocks)](full)
        return self._output(tokens0, taps, deep_kept, grid, frame_index, kept_masks=kept_masks,
                            tokens_per_block=counts, keep_probs=keep_probs, flops=flops)

    def forward_masked(
        self,
        images: torch.Tensor,
        state: PruneState | None = None,
        *,
        keep: tuple[float, ...] | None = None,
        mode: PruneMode = "vpp",
        hooks: BlockHooks | None = None,
    ) -> BackboneOutput:
        """The training path: same selection rule and outputs as :meth:`forward`, decisions as masks.

        Every block runs on all N tokens; attention reads only the kept ones and only kept tokens take
        the block's update. Costs a dense forward; exact top-k per stage as at inference. ``keep``,
        ``mode`` and ``hooks`` as in :meth:`forward`.
        """
        keep = self._resolve_keep(keep, mode)
        hooks = self._resolve_hooks(hooks)
        vit = self.vit
        x, grid, flops, state = self._block0(images, state, hooks.get(0))
        b, n_all, _c = x.shape
        frame_index = 0 if state is None else state.frame_index
        tokens0 = x
        alive = torch.ones(b, n_all, device=x.device, dtype=torch.bool)  # hard running mask
        gate = torch.ones(b, n_all, 1, device=x.device, dtype=x.dtype)  # same values, carries gradients
        n = n_all
        counts = [n_all]
        kept_masks: list[torch.Tensor] = []
        keep_probs: list[torch.Tensor] = []
        keep_logp_full: list[torch.Tensor] = []
        entering: list[torch.Tensor] = []
        taps: dict[int, torch.Tensor] = {0: x}
        deep_kept: torch.Tensor | None = None
        keep_of = dict(zip(self.prune_points, keep))
        for i in range(1, len(vit.blocks)):
            if i in hooks:
                x = hooks[i](x)
            if i in keep_of:
                k = max(1, int(n_all * keep_of[i]))
                if mode != "dense" and k < n and (i != self.map_block or state is not None):
                    scores, forced = self._scores(i, x, state, grid, frame_index, n_all, keep=keep, mode=mode)
                    flops += self._scoring_flops(i, n, n_all, state, mode=mode)
                    masked = scores.masked_fill(~alive, float("-inf"))  # dropped tokens stay dropped
                    local, _ = _select(masked, k, forced, training=self.training, noise=self.selection_noise)
                    hard = torch.zeros_like(alive).scatter_(1, local, True)
                    p = scores.exp()
                    keep_probs.append(p[alive].view(b, n))  # soft keep of the tokens entering the stage
                    keep_logp_full.append(scores)
                    entering.append(alive)
                    gate = gate * (hard.to(p.dtype) + p - p.detach()).unsqueeze(-1).to(x.dtype)
                    alive, n = hard, k
                kept_masks.append(alive.clone())
            full = alive.all()
            y = vit.blocks[i](x, None if full else alive)
            x = x + gate * (y - x)
            counts.append(n)
            flops += vit.blocks[i].flops(n)
            taps[i] = x
            if i == self.deep_block:
                deep_kept = alive.nonzero()[:, 1].view(b, n)  # ascending per row, like the gather path
        if len(vit.blocks) in hooks:
            hooks[len(vit.blocks)](x)
        return self._output(tokens0, taps, deep_kept, grid, frame_index, kept_masks=kept_masks,
                            tokens_per_block=counts, keep_probs=keep_probs, keep_logp_full=keep_logp_full,
                            entering=entering, flops=flops)

    def _output(self, tokens0: torch.Tensor, taps: dict[int, torch.Tensor], deep_kept: torch.Tensor | None,
                grid: tuple[int, int], frame_index: int, **fields) -> BackboneOutput:
        """Both paths' result: the head's taps and the state the next frame's Map-SM reads."""
        state = PruneState(tokens0, taps[self.deep_block], deep_kept, grid, frame_index + 1)
        return BackboneOutput(features=[taps[j] for j in self.out_indices], grid=grid, state=state, **fields)

    def _resolve_selection(self, selection: Selection, mode: PruneMode, images: torch.Tensor) -> bool:
        """Whether this call uses the release's selection; refuses what that rule cannot do."""
        if selection not in SELECTIONS:
            raise ValueError(f"unknown selection {selection!r}; choose topk or release")
        if selection != "release" or mode != "vpp":
            return False
        if self.training:
            raise ValueError("selection 'release' is an inference rule (thresholded gates, no gradient path); "
                             "train with selection 'topk' or call .eval() first")
        if images.shape[0] != 1:
            raise ValueError(f"selection 'release' keeps a different number of tokens in every frame, so it runs "
                             f"one frame at a time (batch 1, as the release's test mode); got a batch of "
                             f"{images.shape[0]}: split the batch or use selection 'topk'")
        return True

    def _release_select(
        self,
        block: int,
        cur: torch.Tensor,
        state: PruneState | None,
        grid: tuple[int, int],
        n_all: int,
        keep: float,
    ) -> tuple[torch.Tensor | None, bool]:
        """The release's decision before ``block`` (batch 1): local indices ``[1, m]`` ascending (None: keep all),
        and whether a module scored the tokens (for the FLOP count)."""
        n = cur.shape[1]
        if keep >= 1.0:
            return None, False  # stage off (keep=None: the dense budget)
        if block == self.map_block:
            if state is None:
                return None, False  # first frame of a clip: no previous frame to map from
            k = max(1, int(n_all * keep))  # the release: sort, keep the first int(N * keep_ratio)
            if k >= n:
                return None, False
            scores = self.map_sm.release_scores(cur, state.tokens0, state.deep, state.kept, grid)
            return _select(scores, k, None, training=False)[0], True
        logp = self.selective[str(block)].log_probs(cur)  # [1, n, 2]
        kept = release_keep(logp)[0]
        if bool(kept.all()):
            return None, True
        if not bool(kept.any()):  # never an empty stage: the most confident token stays
            return logp[0, :, 0].argmax().view(1, 1), True
        return kept.nonzero().view(1, -1), True

    def _resolve_hooks(self, hooks: BlockHooks | None) -> BlockHooks:
        if not hooks:
            return {}
        depth = len(self.vit.blocks)
        if any(not 0 <= i <= depth for i in hooks):
            raise ValueError(f"hook positions {sorted(hooks)} must be in 0..{depth} (before block i)")
        return hooks

    def _block0(
        self,
        images: torch.Tensor,
        state: PruneState | None,
        hook: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[int, int], int, PruneState | None]:
        """Embed and run the dense block 0: tokens, grid, FLOPs so far, and ``state`` if still usable."""
        x, grid = self.vit.embed(images)
        if hook is not None:
            x = hook(x)
        n_all = x.shape[1]
        x = self.vit.blocks[0](x)
        flops = self.vit.patch_embed.flops(n_all) + self.vit.blocks[0].flops(n_all)
        if state is not None and (state.grid != grid or state.tokens0.shape[0] != x.shape[0]):
            state = None  # a new size or batch cannot reuse the old frame: treat as a clip start
        return x, grid, flops, state

    def _scoring_flops(self, block: int, n: int, n_all: int, state: PruneState | None, *, mode: PruneMode) -> int:
        """FLOPs of scoring ``n`` tokens before ``block`` (random drop scores for free)."""
        if mode != "vpp":
            return 0
        if block == self.map_block:
            return self.map_sm.flops(n_all, state.kept.shape[1])
        return self.selective[str(block)].flops(n)

    def _scores(
        self,
        block: int,
        cur: torch.Tensor,
        state: PruneState | None,
        grid,
        frame_index: int,
        n_all: int,
        *,
        keep: tuple[float, ...],
        mode: PruneMode,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Keep scores ``[B, n]`` for the current tokens, and indices that must be kept (or None)."""
        b, n, _ = cur.shape
        if mode == "random":
            gen = torch.Generator(device="cpu").manual_seed(frame_index * 1009 + block)
            return torch.rand(b, n, generator=gen).to(cur.device).log(), None
        if block != self.map_block:
            return self.selective[str(block)](cur), None
        scores = self.map_sm(cur, state.tokens0, state.deep, state.kept, grid)
        k = max(1, int(n_all * keep[0]))
        n_bg = int(k * self.background_share)
        forced = background_positions(grid, n_bg, frame_index, cur.device) if n_bg > 0 else None
        return scores, forced

    def flops_dense(self, n: int) -> int:
        """FLOPs of the unpruned backbone for ``n`` tokens (the reference for FLOP ratios)."""
        return self.vit.patch_embed.flops(n) + sum(blk.flops(n) for blk in self.vit.blocks)


def _select(
    scores: torch.Tensor, k: int, forced: torch.Tensor | None, *, training: bool, noise: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Indices ``[B, k]`` (ascending) of the top-k scores, ``forced`` indices always included.

    In training, logistic noise of scale ``noise`` (the caller's ``selection_noise``; 0: none) perturbs the ranking
    and the straight-through factor is returned.
    """
    rank = scores.detach().float()
    if training and noise > 0:
        u = torch.rand_like(rank).clamp_(1e-6, 1 - 1e-6)
        rank = rank + noise * (torch.log(u) - torch.log1p(-u))
    if forced is not None and forced.numel():
        rank = rank.index_fill(1, forced, float("inf"))
    local = rank.topk(k, dim=1, sorted=False).indices.sort(dim=1).values
    if not training:
        return local, None
    p = scores.gather(1, local).exp()
    return local, 1.0 + p - p.detach()


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if x.shape[0] == 1:
        return x.index_select(1, idx[0])
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _scatter(full: torch.Tensor, idx: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """Out-of-place: a copy of ``full`` with rows ``idx`` replaced by ``part``."""
    if full.shape[0] == 1:
        return full.index_copy(1, idx[0], part)
    return full.scatter(1, idx.unsqueeze(-1).expand(-1, -1, full.shape[-1]), part)


def _mask(idx: torch.Tensor | None, b: int, n: int, device) -> torch.Tensor:
    if idx is None:
        return torch.ones(b, n, dtype=torch.bool, device=device)
    return torch.zeros(b, n, dtype=torch.bool, device=device).scatter_(1, idx, True)
