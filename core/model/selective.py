"""Image selective module (SViT-style gate): a per-token MLP that scores tokens for keeping.

Placed before blocks 3, 6 and 9. It only sees the tokens still kept, so it can only drop more: a token
dropped earlier is never reactivated.

Two ways to decide (``PrunedViT.forward(selection=...)``): "topk" ranks the tokens by :meth:`SelectiveModule.forward`
and keeps a fixed count; "release" keeps each token on its own by :func:`release_keep` (the release's hard gate,
PatGlan/Video-Patch-Pruning ``selective_module.py``: ``gumbel_softmax(f * tau, tau, hard=True)[..., 0]`` on the
log-softmax pair ``f``, i.e. keep where keep log-probability + noise >= drop log-probability + noise, noise of scale
1 / tau = 0.1, at test time too). We deliberately drop the noise: keep where p(keep) >= 0.5, deterministic.
"""

from __future__ import annotations

import torch
from torch import nn


class SelectiveModule(nn.Module):
    """``[B, n, C]`` kept tokens -> ``[B, n]`` keep log-probability.

    Args:
        dim: token channels C.
        hidden: MLP hidden width (the paper: 48).
    """

    def __init__(self, dim: int, *, hidden: int = 48) -> None:
        super().__init__()
        self.dim = dim
        self.hidden = hidden
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, 2)  # [keep, drop]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.log_probs(tokens)[..., 0]

    def log_probs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, n, C]`` -> ``[B, n, 2]`` (keep, drop) log-probabilities (float32)."""
        return self.fc2(self.act(self.fc1(self.norm(tokens)))).float().log_softmax(dim=-1)

    def release_keep(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, n]`` bool: the release's gate without its noise (keep log-probability >= drop log-probability)."""
        return release_keep(self.log_probs(tokens))

    def flops(self, n: int) -> int:
        return 2 * n * (self.dim * self.hidden + self.hidden * 2)


def release_keep(log_probs: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` (keep, drop) log-probabilities -> ``[...]`` bool, keep where keep >= drop (p(keep) >= 0.5).

    The release's hard Gumbel gate with the noise left out; a tie goes to keep, as argmax picks the first index.
    """
    return log_probs[..., 0] >= log_probs[..., 1]
