"""ReleaseSession: the authors' released model (ViT-Adapter + Mask2Former + ROVIS) behind InferenceSession's surface.

    session = ReleaseSession(model, categories=loaded.categories, pkr=0.4)   # or core.build.make_session(loaded)
    for result in session.run_clip(frames):      # FrameResult, as InferenceSession's
        ...
    session.reset()                              # before the next clip

Per frame, as the release's test pipeline and ``ROVIS.predict`` (PatGlan/Video-Patch-Pruning, head bf74be2):

1. the RGB frame is resized so its long side is the model's input size (960, keep aspect; bilinear, mmcv's
   ``int(side * scale + 0.5)``); the model normalises it and pads it to a multiple of 32 itself;
2. the ViT-Adapter runs with this session's keep fractions (``release_keep(pkr)``; None = dense at PKR 1.0) and
   mode, the previous frame's pruning state and the live tracks' queries appended to the head's queries;
3. :class:`~core.model.rovis_tracker.RovisTracker` picks the instances (top-k over query x class, new track at
   score > 0.3, kept at > 0.25, mask-NMS 0.7 / 0.4) and feeds their query features to the next frame;
4. the chosen masks (stride 4 of the padded input) are cropped to the image and resized to the frame.

Differences from the release, none of which changes which objects are tracked much: the candidates are scored and
compared at stride 4, where the release first upsamples every query's mask to the frame (100+ full-size maps a
frame); the selection is the project's static top-k (see :mod:`core.model.release.config`).

All per-clip state (pruning state, tracker, frame index) is one :class:`ReleaseClipState`, which :meth:`reset`
replaces whole; the run settings belong to the session, so sessions can share one model at different PKRs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from core.errors import VPPError
from core.model.backbone import PruneMode, PruneState
from core.model.release.config import RELEASE_KEEP, ReleaseConfig, nominal_pkr, release_keep
from core.model.release.model import ReleaseVPPModel
from core.model.rovis_tracker import RovisTracker
from core.pkr import check_pkr
from core.preprocess import Resized
from core.session_base import ClipRunner, FrameResult, resolve_device

#: The release's test-time input: long side 960 (1280 x 720 YouTube-VIS frames become 960 x 540).
RELEASE_LONG_SIDE = 960
#: ``config.extra`` key of a model file that was trained or imported for another input size.
LONG_SIDE_KEY = "input_long_side"

_PKR_IN_NAME = re.compile(r"(?<![\d.])(0?\.\d+)\s*_?PKR", re.IGNORECASE)


def trained_schedule(config: ReleaseConfig, *names: str) -> str | None:
    """The key of :data:`RELEASE_KEEP` ("0.55" / "0.4") a released model was trained for, or None.

    Read from the released file's name (``vpp_vitSmall_0.4PKR...``), given in ``names`` or recorded by the importer
    in ``config.extra["imported_from"]``. None for a dense model (``pruning_trained`` False) or no such name.
    """
    if not config.pruning_trained:
        return None
    for name in (*names, str(config.extra.get("imported_from", ""))):
        m = _PKR_IN_NAME.search(str(name))
        if m is not None:
            key = f"{float(m.group(1)):g}"
            if key in RELEASE_KEEP:
                return key
    return None


@dataclass
class ReleaseClipState:
    prune: PruneState | None = None
    tracker: RovisTracker = field(default_factory=RovisTracker)
    frame_index: int = 0


class ReleaseSession(ClipRunner):
    """Runs a :class:`ReleaseVPPModel` frame by frame over a clip with ROVIS tracking.

    Args:
        model: the released model (:func:`core.model.release.checkpoint.load_release_checkpoint`).
        categories: ``(dataset id, name)`` per class index (the model file's; YouTube-VIS 2021 for the released
            models). Empty: ids ``1..K`` and placeholder names.
        device: "auto", "cpu", "cuda" or "cuda:N".
        pkr: patch keep ratio in (0, 1]; keep fractions from :func:`release_keep` (1.0: dense). None: the
            schedule the model was trained for (``trained_for``), else 1.0.
        mode: "vpp", "random" (random selection at the same per-stage budget) or "dense".
        amp: bfloat16 autocast on CUDA; ignored on CPU.
        input_long_side: resize the frame's long side to this; None: ``config.extra["input_long_side"]`` when the
            file says so, else 960 (the release).
        score_threshold: None: the release's (the tracker's 0.3 / 0.25); a number also hides instances scoring
            below it (they are still tracked, so ids do not change with it).
        trained_for: a :data:`RELEASE_KEEP` key (see :func:`trained_schedule`) used when ``pkr`` is None.
        tracker: options of :class:`RovisTracker` (thresholds), the release's when empty.

    ``FrameResult.gflops`` counts the pruned ViT only (patch embedding, the blocks on the tokens they ran on, Map-SM
    and selective-module scoring; analytic): the adapter's spatial prior module, injectors / extractors and the
    Mask2Former head run dense whatever the PKR and are not counted. ``ms`` is the wall-clock time of the whole
    frame (preprocessing, model, tracking, mask resizing).
    """

    def __init__(
        self,
        model: ReleaseVPPModel,
        *,
        categories: Sequence[tuple[int, str]] = (),
        device: str = "cpu",
        pkr: float | None = None,
        mode: PruneMode = "vpp",
        amp: bool = True,
        input_long_side: int | None = None,
        score_threshold: float | None = None,
        trained_for: str | None = None,
        tracker: dict | None = None,
        selection: str | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config: ReleaseConfig = model.config
        self.amp = amp and self.device.type == "cuda"
        num_classes = self.config.num_classes
        cats = tuple((int(i), str(n)) for i, n in categories) or tuple((i + 1, f"class {i + 1}")
                                                                        for i in range(num_classes))
        if len(cats) != num_classes:
            raise VPPError(f"{len(cats)} categories for a model of {num_classes} classes")
        self.categories = cats
        self._category_ids = np.asarray([c for c, _ in cats], dtype=np.int64)
        side = self.config.extra.get(LONG_SIDE_KEY, RELEASE_LONG_SIDE) if input_long_side is None else input_long_side
        if isinstance(side, bool) or not isinstance(side, int) or not 32 <= side <= 8192:
            raise VPPError(f"input long side must be an integer in 32..8192, got {side!r}")
        self.input_long_side = int(side)
        self.patch = int(self.config.patch)
        self.input_multiple = int(model.input_multiple)
        self.score_threshold = score_threshold
        self._tracker_options = dict(tracker or {})
        RovisTracker(**self._tracker_options)  # unknown options fail here, not at the first frame
        points = model.adapter.backbone.prune_points
        self.stage_names = ("Map-SM", *(f"block {b}" for b in points[1:]))
        self.pkr = 1.0
        self.keep: tuple[float, ...] | None = None
        self._mode: PruneMode = "vpp"
        #: "topk" (static k per stage) or "release" (the release's thresholded gates); None: the model file's
        self.selection = selection
        if selection is not None and selection not in ("topk", "release"):
            raise VPPError(f"unknown selection {selection!r}; choose topk or release")
        if pkr is not None:
            self.set_pkr(pkr)
        elif trained_for is not None:
            if trained_for not in RELEASE_KEEP:
                raise VPPError(f"unknown release schedule {trained_for!r}; known: {', '.join(RELEASE_KEEP)}")
            self.set_keep(RELEASE_KEEP[trained_for])
        self.set_mode(mode)
        self.state = self._new_state()

    @classmethod
    def from_loaded(cls, loaded, *, device: str = "cpu", pkr: float | None = None, mode: PruneMode = "vpp",
                    score_threshold: float | None = None, amp: bool = True) -> ReleaseSession:
        """The session of a loaded model of the "release" family, as :func:`core.build.make_session` makes it: the
        file's categories, and with ``pkr`` None the schedule its file name says it was trained for (else dense);
        ``score_threshold`` None keeps the ROVIS tracker's own thresholds."""
        release = getattr(loaded, "release", None)
        names = [str(loaded.source)] + ([str(release.source.get("file", ""))] if release is not None else [])
        return cls(loaded.model, categories=getattr(loaded, "categories", ()), device=device, pkr=pkr, mode=mode,
                   amp=amp, score_threshold=score_threshold, trained_for=trained_schedule(loaded.model.config, *names))

    def _new_state(self) -> ReleaseClipState:
        return ReleaseClipState(tracker=RovisTracker(**self._tracker_options))

    @property
    def mode(self) -> PruneMode:
        """This session's prune mode (the model stores none)."""
        return self._mode

    def reset(self) -> None:
        """Start a new clip: forget the previous frame and all tracks."""
        self.state = self._new_state()

    def set_pkr(self, pkr: float) -> None:
        """Run the next frames at ``pkr``: keep fractions :func:`release_keep` (``None``, dense, at 1.0)."""
        check_pkr(pkr)
        self.keep = release_keep(pkr)
        self.pkr = float(pkr)

    def set_keep(self, keep: Sequence[float] | None) -> None:
        """Run an explicit schedule (e.g. ``RELEASE_KEEP["0.55"]``, exactly); ``pkr`` becomes its nominal PKR."""
        keep = None if keep is None else tuple(float(k) for k in keep)
        if keep is not None and (len(keep) != len(self.stage_names) or any(not 0.0 < k <= 1.0 for k in keep)):
            raise VPPError(f"need {len(self.stage_names)} keep fractions in (0, 1], got {keep}")
        self.keep = keep
        self.pkr = nominal_pkr(keep, self.config.depth)

    def set_mode(self, mode: PruneMode) -> None:
        """Run the next frames in ``mode`` (this session only; the shared model is not changed)."""
        if mode not in ("vpp", "random", "dense"):
            raise VPPError(f"unknown prune mode {mode!r}; choose vpp, random or dense")
        self._mode = mode


    def prepare(self, frame: np.ndarray) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """RGB uint8 ``[H, W, 3]`` -> float ``[1, 3, h, w]`` in 0..255 (long side resized, not padded), ``(H, W)``,
        ``(h, w)``."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame [H, W, 3], got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        scale = self.input_long_side / max(h, w)
        rh, rw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))  # mmcv's rescale_size
        if (rh, rw) != (h, w):
            frame = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_LINEAR)  # mmcv's "bilinear"
        elif not frame.flags.writeable:  # sources hand out read-only cached frames
            frame = frame.copy()
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().unsqueeze(0)
        return x, (h, w), (rh, rw)

    @torch.inference_mode()
    def step(self, frame: np.ndarray) -> FrameResult:
        """Segment one RGB uint8 frame ``[H, W, 3]`` as the next frame of the current clip."""
        t0 = time.perf_counter()
        images, orig_hw, resized_hw = self.prepare(frame)
        st = self.state
        queries = st.tracker.track_queries()
        with self.autocast():
            out = self.model(images.to(self.device), st.prune, keep=self.keep, mode=self._mode,
                             track_queries=queries, selection=self.selection)
        update = st.tracker.update(out.head, frame_index=st.frame_index)
        ids, labels, scores = update.ids.cpu(), update.labels.cpu(), update.scores.float().cpu()
        logits = update.mask_logits
        if self.score_threshold is not None:
            shown = scores >= self.score_threshold
            ids, labels, scores, logits = ids[shown], labels[shown], scores[shown], logits[shown.to(logits.device)]
        masks = Resized(orig_hw, resized_hw, out.input_size).unpad_masks(logits)
        bb = out.backbone
        gh, gw = bb.grid
        kept = (torch.stack([m[0] for m in bb.kept_masks]).reshape(-1, gh, gw).cpu().numpy() if bb.kept_masks
                else np.ones((0, gh, gw), dtype=bool))
        st.prune = out.state
        result = FrameResult(
            index=st.frame_index,
            track_ids=ids.numpy().astype(np.int64),
            category_ids=self._category_ids[labels.numpy()],
            scores=scores.numpy().astype(np.float32),
            masks=masks.cpu().numpy(),
            kept=kept,
            stage_names=self.stage_names,
            keep_ratio=bb.keep_ratio,
            gflops=out.flops / 1e9,
            ms=(time.perf_counter() - t0) * 1000.0,
        )
        st.frame_index += 1
        return result

