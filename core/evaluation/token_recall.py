"""Object-token recall: which share of the tokens that cover ground-truth objects a prune stage kept.

A pruning method is only as good as what it keeps. Recall of object tokens per stage (after Map-SM,
after the gates at blocks 3/6/9), next to the share of all tokens kept, tells at a glance whether the
learned selection prefers the objects (recall well above the keep share) or not (recall ≈ keep share,
as random drop gives). A token counts as an object token when at least half its pixels, on the model's
resized and padded input, belong to a ground-truth mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def object_tokens(objects: np.ndarray, grid: tuple[int, int], long_side: int, patch: int) -> np.ndarray:
    """``[H, W]`` bool union of object masks at frame size -> ``[gh, gw]`` bool object tokens.

    Uses the geometry of :func:`core.preprocess.prepare_frame` (resize the long side to ``long_side``,
    pad right/bottom to a multiple of the patch).
    """
    h, w = objects.shape
    gh, gw = grid
    scale = long_side / max(h, w)
    rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
    share = cv2.resize(objects.astype(np.float32), (rw, rh), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((gh * patch, gw * patch), np.float32)
    canvas[: min(rh, gh * patch), : min(rw, gw * patch)] = share[: gh * patch, : gw * patch]
    return canvas.reshape(gh, patch, gw, patch).mean(axis=(1, 3)) >= 0.5


class RecallCounter:
    """Accumulates kept object tokens per stage over frames (a micro-average over all object tokens)."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.kept_objects: np.ndarray | None = None
        self.objects = 0
        self.kept_all: np.ndarray | None = None
        self.tokens = 0

    def add(self, kept: np.ndarray, objects: np.ndarray, names: Sequence[str]) -> None:
        """``kept`` ``[S, gh, gw]`` bool per stage; ``objects`` ``[gh, gw]`` bool."""
        if self.kept_objects is None:
            self.names = tuple(names)
            self.kept_objects = np.zeros(len(names), np.int64)
            self.kept_all = np.zeros(len(names), np.int64)
        self.kept_objects += kept[:, objects].sum(axis=1)
        self.kept_all += kept.reshape(kept.shape[0], -1).sum(axis=1)
        self.objects += int(objects.sum())
        self.tokens += int(objects.size)

    def figures(self) -> dict[str, float]:
        """``object_recall@<stage>`` and ``kept@<stage>`` (shares in 0..1); empty if nothing was added."""
        if self.kept_objects is None or self.objects == 0:
            return {}
        out = {}
        for name, ko, ka in zip(self.names, self.kept_objects, self.kept_all):
            out[f"object_recall@{name}"] = float(ko / self.objects)
            out[f"kept@{name}"] = float(ka / self.tokens)
        return out
