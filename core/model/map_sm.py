"""Mapping-Selective Module (Map-SM): decide which tokens of the current frame to keep before block 1.

Each current token (query, after block 0) is associated with exactly one *kept* token of the previous
frame (key, after block 0); the previous frame's deep feature (after block 5) at that token tells
whether the region is foreground. That aligned value goes through LayerNorm -> MLP -> log-softmax to
keep/drop log-probabilities, and the keep map is dilated (9x9 average, replicate padding) so the
neighbourhood of foreground is kept too.

Association score (as in the paper and the authors' release):
    Phi = q . k^T * qk_scale + log10(10 * (2 - d) / 2 + 1e-6),
d = L1 distance of the two patch positions on a grid normalised to [0, 1]^2 (d in [0, 2]); the prior
penalises far matches. The prior table is computed once per grid size and cached.

Association is hard: straight-through Gumbel-softmax (hard=True) in training, plain argmax at
inference (the release also samples Gumbel noise at test time, which makes results
non-deterministic; we deliberately do not).

Two keep scores (``PrunedViT.forward(selection=...)`` picks one):

- :meth:`MapSM.forward` ("topk", the project's): the keep log-probability alone is dilated;
- :meth:`MapSM.release_scores` ("release", PatGlan/Video-Patch-Pruning ``map_selective_module.py``): *both*
  log-probabilities (keep, drop) are dilated, then softmaxed, so tokens rank by sigmoid of the window's mean
  logit (keep - drop). The release adds Gumbel noise of scale 1 / ``tau_selector`` = 0.1 before that softmax,
  at test time too; we deliberately do not (deterministic).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def distance_prior(grid: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """``[N, N]`` table of log10(10 * (2 - d) / 2 + 1e-6) for every pair of patches on ``grid``."""
    gh, gw = grid
    ys = torch.linspace(0.0, 1.0, gh, dtype=torch.float64) if gh > 1 else torch.zeros(1, dtype=torch.float64)
    xs = torch.linspace(0.0, 1.0, gw, dtype=torch.float64) if gw > 1 else torch.zeros(1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], dim=-1)  # [N, 2]
    d = torch.cdist(pos, pos, p=1)  # L1, in [0, 2]
    return torch.log10(10.0 * (2.0 - d) / 2.0 + 1e-6).to(device=device, dtype=torch.float32)


class MapSM(nn.Module):
    """Score every current token for keeping, from the previous frame's kept deep features.

    Args:
        dim: token channels C.
        hidden_ratio: MLP hidden width as a fraction of C (the paper: C/2).
        dilation: side of the square average window applied to the keep map (the paper: 9).
        qk_scale: factor on q . k^T (1.0 reproduces the formula; exposed for experiments).
        tau: Gumbel-softmax temperature used in training.
    """

    def __init__(
        self, dim: int, *, hidden_ratio: float = 0.5, dilation: int = 9, qk_scale: float = 1.0, tau: float = 1.0
    ) -> None:
        super().__init__()
        if dilation % 2 != 1:
            raise ValueError(f"dilation must be odd, got {dilation}")
        hidden = max(1, int(dim * hidden_ratio))
        self.dim = dim
        self.dilation = dilation
        self.qk_scale = qk_scale
        self.tau = tau
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, 2)  # [keep, drop]
        self._prior_cache: dict[tuple, torch.Tensor] = {}

    def prior(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        key = (tuple(grid), str(device))
        table = self._prior_cache.get(key)
        if table is None:
            self._prior_cache.clear()
            table = self._prior_cache[key] = distance_prior(grid, device)
        return table

    def forward(
        self,
        query: torch.Tensor,
        prev_keys: torch.Tensor,
        prev_values: torch.Tensor,
        prev_kept: torch.Tensor,
        grid: tuple[int, int],
    ) -> torch.Tensor:
        """Keep log-probabilities of the current tokens, dilated.

        Args:
            query: ``[B, N, C]`` current frame after block 0.
            prev_keys: ``[B, N, C]`` previous frame after block 0 (dense map).
            prev_values: ``[B, N, C]`` previous frame after the deep block (dense-restored map).
            prev_kept: ``[B, K]`` indices of the previous frame's kept tokens at the deep block.
            grid: ``(gh, gw)`` token grid, ``gh * gw == N``.

        Returns:
            ``[B, N]`` dilated keep log-probability (higher = keep), differentiable in training.
        """
        logp = self.log_probs(query, prev_keys, prev_values, prev_kept, grid)
        return self.dilate(logp[..., 0], grid)

    def release_scores(
        self,
        query: torch.Tensor,
        prev_keys: torch.Tensor,
        prev_values: torch.Tensor,
        prev_kept: torch.Tensor,
        grid: tuple[int, int],
    ) -> torch.Tensor:
        """The release's keep score: ``[B, N]`` log of softmax(dilated keep, dilated drop log-probability)[keep].

        Same arguments as :meth:`forward`. As ``map_selective_module.py`` (lines 58-65): the log-softmax pair is
        replicate-padded and 9x9-averaged channel by channel, then softmaxed; the tokens are ranked by that keep
        probability, i.e. by the mean of (keep - drop) logits over the window. Returned as a log-probability (a
        monotone map of the release's probability, finer in float32). No Gumbel noise (the release's test time has
        noise of scale 0.1): deterministic.
        """
        logp = self.log_probs(query, prev_keys, prev_values, prev_kept, grid)  # [B, N, 2]
        b = logp.shape[0]
        pooled = self._pool(logp.permute(0, 2, 1).reshape(b, 2, *grid))  # [B, 2, gh, gw]
        return pooled.reshape(b, 2, -1).log_softmax(dim=1)[:, 0]

    def log_probs(
        self,
        query: torch.Tensor,
        prev_keys: torch.Tensor,
        prev_values: torch.Tensor,
        prev_kept: torch.Tensor,
        grid: tuple[int, int],
    ) -> torch.Tensor:
        """``[B, N, 2]`` undilated (keep, drop) log-probabilities of the current tokens (float32)."""
        b, n, c = query.shape
        idx = prev_kept.unsqueeze(-1).expand(-1, -1, c)
        keys = prev_keys.gather(1, idx)  # [B, K, C]
        values = prev_values.gather(1, idx)  # [B, K, C]
        prior = self.prior(grid, query.device)  # [N, N]
        prior = prior.unsqueeze(0).expand(b, -1, -1).gather(2, prev_kept.unsqueeze(1).expand(-1, n, -1))
        scores = torch.baddbmm(prior.to(query.dtype), query, keys.transpose(1, 2), alpha=self.qk_scale)  # [B, N, K]
        if self.training:
            assign = F.gumbel_softmax(scores.float(), tau=self.tau, hard=True, dim=-1).to(values.dtype)
            aligned = assign @ values  # straight-through: forward one-hot, backward soft
        else:
            best = scores.argmax(dim=-1)  # [B, N]
            aligned = values.gather(1, best.unsqueeze(-1).expand(-1, -1, c))
        return self.fc2(self.act(self.fc1(self.norm(aligned)))).float().log_softmax(dim=-1)

    def dilate(self, keep: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """9x9 (``dilation``) average of the ``[B, N]`` keep map with replicate padding."""
        b = keep.shape[0]
        return self._pool(keep.reshape(b, 1, *grid)).reshape(b, -1)

    def _pool(self, maps: torch.Tensor) -> torch.Tensor:
        """``[B, K, gh, gw]`` -> same shape: replicate pad ``dilation // 2``, ``dilation`` x ``dilation`` average."""
        pad = self.dilation // 2
        m = F.pad(maps, (pad, pad, pad, pad), mode="replicate")
        return F.avg_pool2d(m, self.dilation, stride=1)

    def flops(self, n: int, k_prev: int) -> int:
        """Counted FLOPs at inference for ``n`` current and ``k_prev`` previous kept tokens."""
        hidden = self.fc1.out_features
        return 2 * n * k_prev * self.dim + 2 * n * (self.dim * hidden + hidden * 2)


def background_positions(
    grid: tuple[int, int], count: int, frame_index: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``count`` token indices spread evenly over the grid, shifted from frame to frame.

    A regular lattice with stride s (about sqrt(N / count)) is offset by one of its s*s phases; the
    phase walks with ``frame_index`` in a scrambled order so every patch is visited within s*s frames
    and consecutive frames sample far-apart phases. Deterministic for a given frame index.
    """
    gh, gw = grid
    n = gh * gw
    if count <= 0:
        return torch.empty(0, dtype=torch.long, device=device)
    count = min(count, n)
    stride = max(1, math.floor(math.sqrt(n / count)))
    phases = stride * stride
    step = _coprime_step(phases)
    phase = (frame_index * step) % phases
    oy, ox = divmod(phase, stride)
    ys = torch.arange(oy, gh, stride, device=device)
    xs = torch.arange(ox, gw, stride, device=device)
    lattice = (ys[:, None] * gw + xs[None, :]).flatten()
    if lattice.numel() > count:  # thin out evenly
        pick = torch.linspace(0, lattice.numel() - 1, count, device=device).round().long()
        lattice = lattice[pick]
    return lattice


def _coprime_step(m: int) -> int:
    """A step close to m * 0.618 that is coprime with m, so (i * step) % m visits every phase."""
    if m <= 2:
        return 1
    step = max(1, round(m * 0.6180339887))
    while math.gcd(step, m) != 1:
        step += 1
    return step
