"""InferenceSession: the stateful facade over a VPP model for one clip at a time.

    session = InferenceSession(model, config, device="cpu", pkr=0.4)   # or core.build.make_session(loaded, pkr=0.4)
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

:func:`core.build.make_session` picks the session for a loaded model through its family: this one for the
project's model (:meth:`InferenceSession.from_loaded`), :class:`core.release_session.ReleaseSession` (same surface,
ROVIS tracking) for the authors' released one. What both share is in :mod:`core.session_base`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from core.errors import VPPError
from core.model.backbone import PruneMode, PruneState
from core.model.postprocess import select_instances
from core.model.tracker import EmbeddingTracker
from core.model.vpp.builder import keep_for
from core.model.vpp.config import VPPConfig
from core.model.vpp.model import VPPModel
from core.pkr import check_pkr
from core.preprocess import ResizedFrame, model_input_hw, resize_frame, to_input
from core.session_base import ClipRunner, FrameResult, StageTimer, resolve_device


@dataclass
class ClipState:
    prune: PruneState | None = None
    tracker: EmbeddingTracker = field(default_factory=EmbeddingTracker)
    frame_index: int = 0


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

    @classmethod
    def from_loaded(cls, loaded, *, device: str = "cpu", pkr: float | None = None, mode: PruneMode = "vpp",
                    score_threshold: float | None = None, amp: bool = True) -> InferenceSession:
        """The session of a loaded model of the "vpp" family (``loaded.model``, ``loaded.config``), as
        :func:`core.build.make_session` makes it; ``score_threshold`` None keeps the default (0.25)."""
        options: dict = {}
        if score_threshold is not None:
            options["score_threshold"] = float(score_threshold)
        if not amp:
            options["amp"] = False
        return cls(loaded.model, loaded.config, device=device, pkr=pkr, mode=mode, **options)

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
        check_pkr(pkr)
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
