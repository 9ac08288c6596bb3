"""Image selective module (SViT-style gate): a per-token MLP that scores tokens for keeping.

Placed before blocks 3, 6 and 9. It only sees the tokens still kept, so it can only drop more: a token
dropped earlier is never reactivated.
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
        logp = self.fc2(self.act(self.fc1(self.norm(tokens)))).float().log_softmax(dim=-1)
        return logp[..., 0]

    def flops(self, n: int) -> int:
        return 2 * n * (self.dim * self.hidden + self.hidden * 2)
