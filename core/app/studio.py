"""The app's Qt-free run logic (vpp_gui is a view over it): runs, the worker's pass, the cache.

**The rule.** Pruning state and track IDs chain frame to frame, so a *pass* always starts at the
clip's first frame with a fresh session state and stores every result in one
:class:`core.results.ClipResults` (one pass = one store = consistent track IDs). To show the
current frame at once, the UI may ask for a *preview* of frame ``c``: the worker runs ``c`` alone,
as if the clip started there (fresh pruning state, fresh track IDs, the session's pass state saved
and restored around it), between two frames of the pass. Previews are kept apart from the pass's
results, are marked "preview" on screen, are never plotted or exported, and are dropped once the
pass reaches ``c``. Nothing from two passes is ever mixed in one store.

Every request has an id; messages carry it and the UI drops those of a replaced request.
Only the worker thread calls :func:`inference_pass`, so only it touches torch and the session.
"""

from __future__ import annotations

import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.app.settings import ModelSpec, RunSettings
from core.clip_loop import input_plan, run_clip
from core.errors import CheckpointError, VPPError
from core.results import ClipResults, CompactFrame

#: Score threshold used by "auto": trained models / untrained ones (whose scores are all ~0.05).
AUTO_THRESHOLD_TRAINED = 0.25
AUTO_THRESHOLD_UNTRAINED = 0.03
#: Input size of the untrained Tiny/Small choices (the same as core.resources' fallback).
UNTRAINED_LONG_SIDE = 640


def resolve_threshold(value: float | None, trained: bool) -> float:
    """``None`` means auto: :data:`AUTO_THRESHOLD_TRAINED` or, for random weights, the untrained one.

    Resolved on the worker once the model is loaded, from what was loaded (not from the choice's
    name: a checkpoint or an injected model can be either).
    """
    if value is not None:
        return float(value)
    return AUTO_THRESHOLD_TRAINED if trained else AUTO_THRESHOLD_UNTRAINED


@dataclass(frozen=True)
class RunKey:
    """What makes two passes' results interchangeable (the cache key)."""

    clip: str
    model: str
    device: str
    pkr: float
    threshold: float | None  # None: auto

    @classmethod
    def make(cls, clip: str | Path, settings: RunSettings) -> RunKey:
        threshold = settings.threshold
        return cls(str(clip), settings.spec.cache_id(), settings.device, round(float(settings.pkr), 2),
                   None if threshold is None else round(float(threshold), 3))


@dataclass(frozen=True)
class RunRequest:
    """One pass to run: its id (messages carry it), the clip and the run settings, as they were when asked."""

    id: int
    clip: str
    settings: RunSettings


@dataclass(frozen=True)
class ModelInfo:
    """Sent once per pass, when the model is ready."""

    request_id: int
    source: str
    trained: bool
    category_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    input_long_side: int
    patch: int


@dataclass(frozen=True)
class FrameMessage:
    request_id: int
    frame: CompactFrame
    preview: bool  # True: a preview (not part of the pass)


@dataclass(frozen=True)
class PassDone:
    request_id: int


@dataclass(frozen=True)
class PassError:
    request_id: int
    message: str  # one line for the user
    detail: str  # the traceback, for the details pane


Message = ModelInfo | FrameMessage | PassDone | PassError
Sink = Callable[[Message], object]  # where a pass's messages go (the worker: a queued signal to the UI thread)


ModelFactory = Callable[[ModelSpec, str], "object"]  # -> core.resources.LoadedModel


def default_model_factory(spec: ModelSpec, device: str):
    """Load the model for ``spec`` (runs on the worker thread)."""
    import torch

    from core.model.vpp.builder import build_vpp
    from core.model.vpp.config import VPPConfig
    from core.resources import LoadedModel, load_model

    if spec.kind == "default":
        return load_model(None, device=device)
    if spec.kind == "file":
        return load_model(spec.path, device=device)
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant(spec.kind, input_long_side=UNTRAINED_LONG_SIDE)
    return LoadedModel(build_vpp(cfg).to(device).eval(), cfg, f"untrained {spec.kind.capitalize()}", False)


class ModelStore:
    """The last few loaded models, keyed by (spec, device). Used by the worker thread only."""

    def __init__(self, factory: ModelFactory = default_model_factory, keep: int = 2) -> None:
        self.factory = factory
        self.keep = keep
        self._models: OrderedDict[tuple[str, str], object] = OrderedDict()

    def get(self, spec: ModelSpec, device: str):
        key = (spec.cache_id(), device)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        loaded = self.factory(spec, device)
        self._models[key] = loaded
        while len(self._models) > self.keep:
            self._models.popitem(last=False)
        return loaded


class PreviewChannel:
    """One slot, written by the UI thread and taken by the worker: the frame to preview next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: int | None = None

    def want(self, index: int | None) -> None:
        with self._lock:
            self._wanted = index

    def take(self) -> int | None:
        with self._lock:
            wanted, self._wanted = self._wanted, None
            return wanted


def guarded_pass(request: RunRequest, models: ModelStore, channel: PreviewChannel,
                 open_clip: Callable[[str], object], sink: Sink, stop: Callable[[], bool] | None = None) -> None:
    """:func:`inference_pass`, then :class:`PassDone` (unless stopped), or :class:`PassError` instead of raising."""
    try:
        inference_pass(request, models, channel, open_clip, sink, stop)
    except Exception as exc:
        # our errors say what went wrong and where: no traceback (the log would show it to the user);
        # anything unexpected keeps its traceback, for the debug log only
        expected = isinstance(exc, VPPError) and not isinstance(exc, ModelLoadError)
        sink(PassError(request.id, user_message(exc), "" if expected else traceback.format_exc()))
    else:
        if stop is None or not stop():
            sink(PassDone(request.id))


def user_message(exc: BaseException) -> str:
    """A one-line message: our errors already name the file and the fix; others get their type."""
    if isinstance(exc, VPPError):
        return str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return f"out of memory while running the model ({exc}); try a smaller model or the CPU"
    return f"{type(exc).__name__}: {exc}"


def model_file(spec: ModelSpec) -> str | None:
    """The checkpoint file ``spec`` loads, or None for a model built in memory (untrained variants)."""
    if spec.kind == "file":
        return spec.path
    if spec.kind == "default":
        from core.resources import DEFAULT_MODEL

        return str(DEFAULT_MODEL) if DEFAULT_MODEL.is_file() else None
    return None


class ModelLoadError(CheckpointError):
    """An unexpected exception while loading a model, with the file named (see :func:`load_for_pass`)."""


def load_for_pass(models: ModelStore, spec: ModelSpec, device: str):
    """``models.get``, every failure turned into a :class:`core.errors.CheckpointError` naming the file.

    A checkpoint's own errors (``CheckpointError`` from ``core.model.vpp.checkpoint`` /
    ``core.model.release.checkpoint``) already name it and pass unchanged; anything else (a
    ``ZeroDivisionError`` from an absurd config, a ``RuntimeError`` from torch ...) becomes a
    :class:`ModelLoadError` "<file>: cannot load the model: <type>: <what>".
    """
    try:
        return models.get(spec, device)
    except Exception as exc:
        path = model_file(spec)
        where = path if path is not None else f"the {spec.label} model"
        if isinstance(exc, VPPError) and (path is None or Path(path).stem in str(exc)):  # names it (or its .json)
            raise
        raise ModelLoadError(f"{where}: cannot load the model: {user_message(exc)}") from exc


def inference_pass(request: RunRequest, models: ModelStore, channel: PreviewChannel,
                   open_clip: Callable[[str], object], sink: Sink, stop: Callable[[], bool] | None = None) -> None:
    """The worker's pass: load the model (:class:`ModelInfo` to ``sink``), then one pass from frame 0 through
    :func:`core.clip_loop.run_clip`, each frame a :class:`FrameMessage` to ``sink``; before each frame the
    governor ticks and a preview the UI asked for (``channel``) runs. ``stop()`` True ends it at the next frame."""
    from core.build import make_session
    from core.cpu_threads import ThreadGovernor
    from core.resources import loaded_categories
    from core.session_base import resolve_device

    settings = request.settings
    device = resolve_device(settings.device)  # a clear message ("CUDA is not available ...") before loading anything
    loaded = load_for_pass(models, settings.spec, settings.device)
    # auto threshold: a released model keeps the ROVIS tracker's own (0.3 new / 0.25 kept); ours the trained one
    released = getattr(loaded, "kind", "vpp") == "release"
    threshold = settings.threshold if released else resolve_threshold(settings.threshold, loaded.trained)
    session = make_session(loaded, device=settings.device, pkr=settings.pkr, mode=settings.mode,
                           score_threshold=threshold)
    categories = loaded_categories(loaded)
    sink(ModelInfo(request.id, loaded.source, loaded.trained, tuple(n for _, n in categories),
                   tuple(i for i, _ in categories), session.input_long_side, session.patch))
    source = open_clip(request.clip)
    governor = ThreadGovernor.for_run(device)  # fewer torch threads while other processes keep cores busy
    tick = governor.tick if governor is not None else (lambda: None)
    count = len(source)
    previewed: set[int] = set()
    read = model_reader(source, session)

    def frames() -> Iterator[object]:
        for i in range(count):
            if stop is not None and stop():
                return  # not even read: a replaced pass gives the worker back at once
            yield read(i)

    def before(index: int) -> None:
        wanted = channel.take()
        if wanted is not None and index < wanted < count and wanted not in previewed:
            previewed.add(wanted)
            tick()
            sink(FrameMessage(request.id, preview_frame(session, read(wanted), wanted), True))
        tick()

    try:
        run_clip(frames(), session, lambda index, result: sink(FrameMessage(
            request.id, CompactFrame.from_result(result), False)), stop=stop, before=before)
    finally:
        if governor is not None:
            governor.restore()
        source.close()


def model_reader(source, session) -> Callable[[int], object]:
    """``read(i)``: frame ``i`` of ``source`` as ``session`` takes it (:func:`core.clip_loop.input_plan`: decoded
    at the model's input size where the session says one, as ``vpp infer`` reads it; else the full frame)."""
    plan = input_plan(source, session)
    if plan is None:
        return source.frame
    fit, prepare = plan
    return lambda i: prepare(source.frame(i, fit=fit))


def preview_frame(session, frame, index: int) -> CompactFrame:
    """``frame`` run alone, as if the clip started there; the session's pass state is kept apart and restored."""
    saved = session.state
    session.reset()
    try:
        result = session.step(frame)
    finally:
        session.state = saved
    return CompactFrame.from_result(result, index=index)


class ResultCache:
    """(RunKey -> ClipResults), least recently used first out, bounded by the stores' bytes.

    The most recently used entry is never evicted, whatever its size.
    """

    def __init__(self, max_bytes: int = 512 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[RunKey, ClipResults] = OrderedDict()

    def get(self, key: RunKey) -> ClipResults | None:
        results = self._items.get(key)
        if results is not None:
            self._items.move_to_end(key)
        return results

    def put(self, key: RunKey, results: ClipResults) -> None:
        self._items[key] = results
        self._items.move_to_end(key)
        self.trim()

    def trim(self) -> None:
        while len(self._items) > 1 and self.nbytes > self.max_bytes:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self._items.values())


SYNTHETIC_MODEL_NOTICE = (
    "The default model was trained on this project's synthetic shapes (circles, stars, crosses…), not on "
    "real video: on this clip its categories and masks are not meaningful. For real footage use the "
    "authors' YouTube-VIS models (README, \"Using the authors' models\"; downloading needs internet), or "
    "correct the masks by hand: every edit is kept.")


def synthetic_model_notice(model_source: str | None, clip: str | Path | None) -> str | None:
    """The one-time notice for the default synthetic model on a real clip (None: nothing to say).

    ``model_source`` is the loaded model's file (``ModelInfo.source``); the notice is for the embedded
    default model only, on any clip but the project's own demo clip (made of the same shapes).
    """
    from core.resources import DEFAULT_MODEL, DEMO_CLIP

    if not model_source or clip is None:
        return None
    try:
        is_default = Path(model_source).resolve() == DEFAULT_MODEL.resolve()
        is_demo = Path(clip).resolve() == DEMO_CLIP.resolve()
    except OSError:
        return None
    return SYNTHETIC_MODEL_NOTICE if is_default and not is_demo else None
