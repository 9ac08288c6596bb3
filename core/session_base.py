"""What every session shares, whatever family its model is of: the frame result, the device, timing, AMP.

- :class:`FrameResult`: one frame's output, all NumPy (masks at the frame's own size);
- :func:`resolve_device`: "auto" / "cpu" / "cuda" / "cuda:N" -> a ``torch.device``, with a clear error;
- :class:`StageTimer`: seconds per stage of a run (``vpp infer --profile``);
- :class:`ClipRunner`: the base of :class:`core.session.InferenceSession` and
  :class:`core.release_session.ReleaseSession` (bfloat16 autocast on CUDA, ``run_clip`` as a generator).

The two sessions import this module, never each other; both satisfy :class:`core.clip_loop.Session`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from core.data.mask_runs import EncodedMasks
from core.errors import VPPError


@dataclass(frozen=True)
class FrameResult:
    """One frame's output, all NumPy. ``M`` instances; masks at the frame's own size."""

    index: int  # frame index in the clip
    track_ids: np.ndarray  # [M] int, persistent within the clip
    category_ids: np.ndarray  # [M] int, 1-based (YTVIS convention)
    scores: np.ndarray  # [M] float32
    masks: np.ndarray | EncodedMasks  # [M, H, W] bool (InferenceSession: EncodedMasks, RLEs acting as the array)
    kept: np.ndarray  # [S, gh, gw] bool: tokens kept after each prune point (Map-SM, then each gate)
    stage_names: tuple[str, ...]  # names of the S prune points
    keep_ratio: float  # measured PKR (mean over blocks of kept / total)
    gflops: float  # analytic: InferenceSession backbone + head; ReleaseSession the pruned ViT only (its docstring)
    ms: float  # wall-clock time of the model and post-processing

    @property
    def num_instances(self) -> int:
        return int(self.track_ids.shape[0])


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto" (CUDA if available), "cpu", "cuda" or "cuda:N"; a clear error if CUDA is missing."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VPPError(f"device {name!r} requested but CUDA is not available on this machine; use 'cpu'")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise VPPError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) found")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise VPPError(f"unknown device {name!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


class StageTimer:
    """Seconds spent per stage of a run, for ``vpp infer --profile``: each :meth:`lap` charges the time since the
    previous lap to one stage. On CUDA a lap first waits for the device, so the split is true (and slower)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str, device: torch.device | None = None) -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + (now - self._last)
        self._last = now

    def add(self, stage: str, seconds: float) -> None:
        """Charge ``seconds`` measured elsewhere (another thread) to ``stage``; the lap clock is not moved."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + float(seconds)


class ClipRunner:
    """What every session shares: AMP on CUDA and running a whole clip through ``step`` (``reset``/``step``
    and ``amp`` come from the session)."""

    amp: bool

    def autocast(self):
        """bfloat16 autocast on CUDA when ``amp`` is on; a no-op context otherwise."""
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run_clip(
        self, frames: Iterable[np.ndarray], *, stop: Callable[[], bool] | None = None, reset: bool = True
    ) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per frame; ``stop()`` returning True ends the run early."""
        if reset:
            self.reset()
        for frame in frames:
            if stop is not None and stop():
                return
            yield self.step(frame)
