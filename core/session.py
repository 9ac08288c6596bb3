"""InferenceSession: the stateful facade over a VPP model for one clip at a time.

    session = InferenceSession(model, config, device="cpu", pkr=0.4)   # or make_session(load_model(path), pkr=0.4)
    for result in session.run_clip(frames):      # or session.step(frame) per frame
        ...                                      # FrameResult: NumPy masks, track IDs, kept maps, PKR, GFLOPs
    session.reset()                              # before the next clip
    session.step(session.resize(frame))          # the same, resized ahead (a reader thread can do this part)
    W, H = source.size                           # or decode at the model's size (a JPEG at a DCT reduction):
    for small in source.stream(fit=session.input_size(W, H)):
        session.step(session.resize(small, frame_hw=(H, W)))   # masks still at the frame's full size

Masks come back at the frame's full size, already as COCO RLEs: a :class:`core.data.mask_runs.EncodedMasks`
(computed run by run down each column of the instance's box, never pixel by pixel:
:meth:`core.preprocess.Resized.encoded_masks`), which acts as the ``[M, H, W]`` bool array where one is wanted.

All per-clip state (the previous frame's pruning state and the tracker) lives in one
:class:`ClipState`, which :meth:`reset` replaces whole. The run settings (PKR, its keep fractions, the
prune mode) belong to the session and are passed to the model on every call, so several sessions can
share one model object at different PKRs without touching it. Results are NumPy and plain dataclasses so a
GUI or a writer never touches torch.

:func:`make_session` picks the session for a loaded model: this one for the project's model, or
:class:`core.release_session.ReleaseSession` (same surface, ROVIS tracking) for the authors' released one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from core.build import VPPConfig, keep_for
from core.data.mask_runs import EncodedMasks
from core.errors import VPPError
from core.model.backbone import PruneMode, PruneState
from core.model.postprocess import select_instances
from core.model.tracker import EmbeddingTracker
from core.model.vpp import VPPModel
from core.preprocess import ResizedFrame, model_input_hw, resize_frame, to_input


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


@dataclass
class ClipState:
    prune: PruneState | None = None
    tracker: EmbeddingTracker = field(default_factory=EmbeddingTracker)
    frame_index: int = 0


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


class InferenceSession(ClipRunner):
    """Runs a model frame by frame over a clip, chaining the pruning state and the track IDs.

    Args:
        model: a built (and usually loaded) :class:`VPPModel`.
        config: its config (input size, categories, keep schedule).
        device: "auto", "cpu", "cuda" or "cuda:N".
        pkr: patch keep ratio in (0, 1].
        mode: "vpp", "random" (random-drop baseline at the same k) or "dense".
        amp: autocast (bfloat16) on CUDA; ignored on CPU.
        score_threshold / nms_iou / max_instances: instance selection.
    """

    timer: StageTimer | None = None  # set by enable_timing
    _timer_hooks: tuple = ()

    def __init__(
        self,
        model: VPPModel,
        config: VPPConfig,
        *,
        device: str = "cpu",
        pkr: float | None = None,
        mode: PruneMode = "vpp",
        amp: bool = True,
        score_threshold: float = 0.25,
        nms_iou: float = 0.7,
        max_instances: int = 20,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.amp = amp and self.device.type == "cuda"
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_instances = max_instances
        self.stage_names = ("Map-SM", *(f"block {b}" for b in config.selective_blocks))
        self._category_ids = np.asarray(config.class_to_category_id, dtype=np.int64)
        self.pkr = 1.0
        self.keep: tuple[float, ...] = keep_for(config, 1.0)
        self._mode: PruneMode = "vpp"
        self.set_pkr(config.pkr if pkr is None else pkr)
        self.set_mode(mode)
        self.state = ClipState()

    @property
    def mode(self) -> PruneMode:
        """This session's prune mode (the model stores none)."""
        return self._mode

    def enable_timing(self, timer: StageTimer | None = None) -> StageTimer:
        """Time each :meth:`step` by stage into ``timer`` (a new one if None): ``read`` (waiting for the frame since
        the caller's last lap), ``preprocess`` (resize, tensor, normalisation), ``backbone``, ``head`` and
        ``postprocess`` (instance selection, tracking, masks at frame size). Hooks on this session's model record
        the backbone, so time one session of a model at a time; :meth:`disable_timing` removes them."""
        self.disable_timing()
        self.timer = timer = timer or StageTimer()
        dev = self.device

        def before(module, args):
            if self.timer is not None:
                self.timer.lap("preprocess", dev)

        def after(module, args, output):
            if self.timer is not None:
                self.timer.lap("backbone", dev)

        bb = self.model.backbone
        self._timer_hooks = (bb.register_forward_pre_hook(before), bb.register_forward_hook(after))
        return timer

    def disable_timing(self) -> None:
        for h in self._timer_hooks:
            h.remove()
        self._timer_hooks = ()
        self.timer = None

    @property
    def input_long_side(self) -> int:
        """Frames are resized so their long side is this (then padded to a multiple of :attr:`patch`)."""
        return int(self.config.input_long_side)

    @property
    def patch(self) -> int:
        return int(self.config.patch)

    def reset(self) -> None:
        """Start a new clip: forget the previous frame and all tracks."""
        self.state = ClipState()

    def set_pkr(self, pkr: float) -> None:
        """Run the next frames at ``pkr`` (this session only; the shared model is not changed)."""
        if not 0.0 < pkr <= 1.0:
            raise VPPError(f"PKR must be in (0, 1], got {pkr}")
        self.keep = keep_for(self.config, pkr)
        self.pkr = float(pkr)

    def set_mode(self, mode: PruneMode) -> None:
        """Run the next frames in ``mode`` (this session only; the shared model is not changed)."""
        if mode not in ("vpp", "random", "dense"):
            raise VPPError(f"unknown prune mode {mode!r}; choose vpp, random or dense")
        self._mode = mode

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` a frame of this size is resized to for the model (before padding): what
        :meth:`core.data.sources.FrameSource.stream` ``fit`` asks for."""
        rh, rw = model_input_hw(int(height), int(width), self.input_long_side)
        return rw, rh

    def resize(self, frame: np.ndarray, frame_hw: tuple[int, int] | None = None) -> ResizedFrame:
        """The frame resized for the model, with its input planes (NumPy/OpenCV only: made on a reader thread,
        see :class:`core.data.prefetch.Prefetcher`); :meth:`step` takes it in place of the frame. ``frame_hw``:
        the frame's full ``(H, W)`` when ``frame`` was read smaller (``stream(fit=...)``): masks come back at it."""
        return resize_frame(frame, self.config.input_long_side, self.config.patch, planes=True, frame_hw=frame_hw)

    @torch.inference_mode()
    def step(self, frame: np.ndarray | ResizedFrame) -> FrameResult:
        """Segment one RGB uint8 frame ``[H, W, 3]`` (or its :meth:`resize`) as the next frame of the clip."""
        t0 = time.perf_counter()
        timer = self.timer
        if timer is not None:
            timer.lap("read")
        resized = frame if isinstance(frame, ResizedFrame) else resize_frame(frame, self.input_long_side, self.patch)
        geom = resized.geometry
        images = to_input(resized).to(self.device)
        st = self.state
        if timer is not None:
            timer.lap("preprocess", self.device)
        with self.autocast():
            out = self.model(images, st.prune, keep=self.keep, mode=self._mode)
        if timer is not None:
            timer.lap("head", self.device)
        dec = out.decoder
        det = select_instances(
            dec.class_logits[0],
            dec.mask_logits[0],
            dec.embeddings[0],
            score_threshold=self.score_threshold,
            nms_iou=self.nms_iou,
            max_instances=self.max_instances,
        )
        ids = st.tracker.update(det.embeddings.float(), st.frame_index)
        masks = geom.encoded_masks(det.mask_logits)  # at the frame's size, as RLEs, on each box only
        bb = out.backbone
        gh, gw = bb.grid
        kept = torch.stack([m[0] for m in bb.kept_masks]).reshape(-1, gh, gw) if bb.kept_masks else None
        st.prune = bb.state
        result = FrameResult(
            index=st.frame_index,
            track_ids=np.asarray(ids, dtype=np.int64),
            category_ids=self._category_ids[det.labels.cpu().numpy()],
            scores=det.scores.float().cpu().numpy().astype(np.float32),
            masks=masks,
            kept=kept.cpu().numpy() if kept is not None else np.ones((0, gh, gw), dtype=bool),
            stage_names=self.stage_names,
            keep_ratio=bb.keep_ratio,
            gflops=out.flops / 1e9,
            ms=(time.perf_counter() - t0) * 1000.0,
        )
        st.frame_index += 1
        if timer is not None:
            timer.lap("postprocess", self.device)
        return result


def make_session(
    loaded,
    *,
    device: str = "cpu",
    pkr: float | None = None,
    mode: PruneMode = "vpp",
    score_threshold: float | None = None,
    amp: bool = True,
    vpp_session: Callable[..., InferenceSession] | None = None,
):
    """The session for a :class:`core.resources.LoadedModel`: :class:`InferenceSession` or, for ``kind``
    "release", :class:`core.release_session.ReleaseSession` (same public surface: ``reset``, ``set_pkr``,
    ``set_mode``, ``step``, ``run_clip``, ``pkr``, ``mode``, ``stage_names``, ``state``, ``input_long_side``,
    ``patch``).

    ``pkr`` None: the model's own (a VPPConfig's ``pkr``; for a released model the schedule its file name says it
    was trained for, else dense). ``score_threshold`` None: each session's default (0.25 for "vpp"; the ROVIS
    tracker's own thresholds for "release"). ``vpp_session``: the class used for "vpp" models (default
    :class:`InferenceSession`), for a caller that substitutes its own.
    """
    kind = getattr(loaded, "kind", "vpp")
    if kind == "release":
        from core.release_session import ReleaseSession, trained_schedule

        release = getattr(loaded, "release", None)
        names = [str(loaded.source)] + ([str(release.source.get("file", ""))] if release is not None else [])
        return ReleaseSession(loaded.model, categories=getattr(loaded, "categories", ()), device=device, pkr=pkr,
                              mode=mode, amp=amp, score_threshold=score_threshold,
                              trained_for=trained_schedule(loaded.model.config, *names))
    if kind != "vpp":
        raise VPPError(f"{getattr(loaded, 'source', 'model')}: unknown model kind {kind!r} (expected vpp or release)")
    options: dict = {}
    if score_threshold is not None:
        options["score_threshold"] = float(score_threshold)
    if not amp:
        options["amp"] = False
    cls = InferenceSession if vpp_session is None else vpp_session
    return cls(loaded.model, loaded.config, device=device, pkr=pkr, mode=mode, **options)
