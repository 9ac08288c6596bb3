"""The app's Qt-free run logic (vpp_gui is a view over it): runs, the worker's generator, the cache.

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
from typing import Literal

from core.errors import CheckpointError, VPPError
from core.results import ClipResults, CompactFrame

ModelKind = Literal["default", "tiny", "small", "file"]
#: Score threshold used by "auto": trained models / untrained ones (whose scores are all ~0.05).
AUTO_THRESHOLD_TRAINED = 0.25
AUTO_THRESHOLD_UNTRAINED = 0.03
#: Input size of the untrained Tiny/Small choices (the same as core.resources' fallback).
UNTRAINED_LONG_SIDE = 640


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run: the default one, an untrained variant, or a checkpoint file."""

    kind: ModelKind = "default"
    path: str = ""

    @property
    def label(self) -> str:
        return {"default": "Default model", "tiny": "Tiny (untrained)", "small": "Small (untrained)"}.get(
            self.kind, Path(self.path).name)

    def location(self) -> str:
        """The weights file this choice loads ("" for an untrained variant): what the app shows as the model."""
        if self.kind == "file":
            return self.path
        if self.kind == "default":
            from core.resources import DEFAULT_MODEL

            return str(DEFAULT_MODEL)
        return ""

    def known_untrained(self) -> bool:
        """True when the weights are surely random (no torch needed to tell)."""
        if self.kind in ("tiny", "small"):
            return True
        if self.kind == "default":
            from core.resources import DEFAULT_MODEL

            return not DEFAULT_MODEL.is_file()
        return False

    def cache_id(self) -> str:
        if self.kind != "file":
            return self.kind
        p = Path(self.path)
        try:
            stamp = p.stat().st_mtime_ns
        except OSError:
            stamp = 0
        return f"file:{p.resolve()}:{stamp}"


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
    def make(cls, clip: str | Path, spec: ModelSpec, device: str, pkr: float, threshold: float | None) -> RunKey:
        return cls(str(clip), spec.cache_id(), device, round(float(pkr), 2),
                   None if threshold is None else round(float(threshold), 3))


@dataclass(frozen=True)
class RunRequest:
    id: int
    clip: str
    spec: ModelSpec
    device: str
    pkr: float
    threshold: float | None  # None: auto (see resolve_threshold)


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


ModelFactory = Callable[[ModelSpec, str], "object"]  # -> core.resources.LoadedModel


def default_model_factory(spec: ModelSpec, device: str):
    """Load the model for ``spec`` (runs on the worker thread)."""
    import torch

    from core.build import VPPConfig, build_vpp
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
                 open_clip: Callable[[str], object]) -> Iterator[Message]:
    """:func:`inference_pass`, ending with :class:`PassDone`, or :class:`PassError` instead of raising."""
    try:
        yield from inference_pass(request, models, channel, open_clip)
    except Exception as exc:
        # our errors say what went wrong and where: no traceback (the log would show it to the user);
        # anything unexpected keeps its traceback, for the debug log only
        expected = isinstance(exc, VPPError) and not isinstance(exc, ModelLoadError)
        yield PassError(request.id, user_message(exc), "" if expected else traceback.format_exc())
    else:
        yield PassDone(request.id)


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

    A checkpoint's own errors (``CheckpointError`` from ``core.checkpoint`` / ``core.build``) already
    name it and pass unchanged; anything else (a ``ZeroDivisionError`` from an absurd config, a
    ``RuntimeError`` from torch ...) becomes a :class:`ModelLoadError` "<file>: cannot load the model:
    <type>: <what>".
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
                   open_clip: Callable[[str], object]) -> Iterator[ModelInfo | FrameMessage]:
    """The worker's generator: load the model, then one pass from frame 0, previews interleaved."""
    from core.cpu_threads import ThreadGovernor
    from core.resources import loaded_categories
    from core.session import make_session, resolve_device

    device = resolve_device(request.device)  # a clear message ("CUDA is not available ...") before loading anything
    loaded = load_for_pass(models, request.spec, request.device)
    # auto threshold: a released model keeps the ROVIS tracker's own (0.3 new / 0.25 kept); ours the trained one
    released = getattr(loaded, "kind", "vpp") == "release"
    threshold = request.threshold if released else resolve_threshold(request.threshold, loaded.trained)
    session = make_session(loaded, device=request.device, pkr=request.pkr, score_threshold=threshold)
    categories = loaded_categories(loaded)
    yield ModelInfo(request.id, loaded.source, loaded.trained, tuple(n for _, n in categories),
                    tuple(i for i, _ in categories), session.input_long_side, session.patch)
    source = open_clip(request.clip)
    governor = ThreadGovernor.for_run(device)  # fewer torch threads while other processes keep cores busy
    tick = governor.tick if governor is not None else (lambda: None)
    try:
        session.reset()
        previewed: set[int] = set()
        for i in range(len(source)):
            wanted = channel.take()
            if wanted is not None and wanted > i and wanted not in previewed and wanted < len(source):
                previewed.add(wanted)
                tick()
                saved = session.state
                session.reset()
                try:
                    result = session.step(source.frame(wanted))
                finally:
                    session.state = saved
                yield FrameMessage(request.id, CompactFrame.from_result(result, index=wanted), True)
            tick()
            yield FrameMessage(request.id, CompactFrame.from_result(session.step(source.frame(i))), False)
    finally:
        if governor is not None:
            governor.restore()
        source.close()


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
