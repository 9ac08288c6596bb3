"""Read a PyTorch / mmengine checkpoint without executing pickled code.

A ``.pth`` file is a pickle: loading it with plain ``pickle`` (or ``torch.load(weights_only=False)``)
runs whatever callable the file names, e.g. ``os.system``. :func:`load_mmengine_checkpoint` instead
unpickles with :class:`RestrictedUnpickler`, whose ``find_class`` resolves only an explicit allow-list
of globals and refuses every other one *before* anything is called:

- what a tensor needs: ``torch._utils._rebuild_tensor*`` / ``_rebuild_parameter*``,
  ``torch._tensor._rebuild_from_type_v2``, ``torch.Size``, ``torch.device``, the ``torch.<dtype>``
  objects; storages are handled by ``torch.load`` itself;
- plain containers and scalars: ``collections.OrderedDict``, ``builtins.set/frozenset/complex/bytearray``,
  ``_codecs.encode`` (how protocol 2 spells ``bytes``);
- numpy arrays and scalars (mmengine's log history): ``numpy.ndarray``, ``numpy.dtype``,
  ``numpy[._]core.multiarray._reconstruct`` / ``scalar``, ``numpy[._]core.numeric._frombuffer``;
- mmengine's record classes, materialised as **inert stand-ins** (plain attribute bags whose class
  cannot be modified; mmengine is never imported): ``mmengine.logging.message_hub.MessageHub``,
  ``mmengine.logging.history_buffer.HistoryBuffer``, ``mmengine.config.config.ConfigDict`` (a dict) and
  ``mmengine.config.config.Config``.

Why not ``torch.load(weights_only=True)`` with ``torch.serialization.safe_globals``: torch's weights-only
unpickler can map the mmengine names to stand-ins, but it refuses to fill dict subclasses (``ConfigDict``)
and its allow-list is process-wide state. The restricted unpickler here is handed to ``torch.load`` as
its ``pickle_module`` (which is why that call says ``weights_only=False``: the safety comes from our
``find_class``, not torch's); torch still parses the zip / legacy container and builds the storages.
TorchScript archives (which hold code) are refused before ``torch.load`` sees them.

mmengine checkpoints (``Runner.save_checkpoint``) are dicts with ``meta`` (epoch, iter, cfg text, seed,
dataset_meta, ...), ``state_dict`` (model weights), ``message_hub`` (``MessageHub.state_dict()``: log
scalars as ``HistoryBuffer`` objects, runtime info; old versions pickled the ``MessageHub`` object) and
optionally ``optimizer`` / ``param_schedulers``. torch and numpy are imported only when a file is read.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import os
import pickle
import types
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from core.errors import CheckpointError

# --- inert stand-ins for allow-listed foreign classes -------------------------------------------------


class _FrozenClass(type):
    """Metaclass of the stand-ins: a pickle cannot patch methods onto them (BUILD on the class itself)."""

    def __setattr__(cls, key, value):
        raise AttributeError(f"the stand-in class for {cls.class_path} is read-only")

    def __delattr__(cls, key):
        raise AttributeError(f"the stand-in class for {cls.class_path} is read-only")


class StandIn(metaclass=_FrozenClass):
    """An inert object in place of an instance of an allow-listed foreign class; only holds data.

    ``class_path`` is the dotted name the pickle asked for; the pickled state is in ``__dict__``
    (or, for a non-dict state, in ``_state``); positional constructor arguments, if the pickle called
    the class, are kept in ``_args``.
    """

    class_path: ClassVar[str] = ""

    def __init__(self, *args, **kwargs):
        if args:
            self.__dict__["_args"] = args
        self.__dict__.update(kwargs)

    def __setstate__(self, state):
        slots = None
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)) \
                and isinstance(state[1], dict):
            state, slots = state
        if isinstance(state, dict):
            self.__dict__.update({str(k): v for k, v in state.items()})
        elif state is not None:
            self.__dict__["_state"] = state
        if slots:
            self.__dict__.update({str(k): v for k, v in slots.items()})

    def __repr__(self) -> str:
        return f"<stand-in for {self.class_path}: {sorted(self.__dict__)}>"


class DictStandIn(dict, metaclass=_FrozenClass):
    """A stand-in for an allow-listed dict subclass (mmengine's ConfigDict): a plain dict with its items."""

    class_path: ClassVar[str] = ""

    def __setstate__(self, state):
        if isinstance(state, Mapping) and state is not self:
            self.update(state)


def _stand_in(path: str, base: type) -> type:
    name = path.rpartition(".")[2]
    return _FrozenClass(name, (base,), {"class_path": path, "__module__": __name__,
                                        "__qualname__": f"StandIn[{path}]"})


#: Foreign classes a checkpoint may hold, by the dotted name pickle records (``cls.__module__.__qualname__``).
STAND_INS: dict[str, type] = {
    path: _stand_in(path, base) for path, base in (
        ("mmengine.logging.message_hub.MessageHub", StandIn),
        ("mmengine.logging.history_buffer.HistoryBuffer", StandIn),
        ("mmengine.config.config.Config", StandIn),
        ("mmengine.config.config.ConfigDict", DictStandIn),
    )
}

# --- the restricted unpickler --------------------------------------------------------------------------


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list; nothing it names was called."""

    def __init__(self, module: str, name: str):
        super().__init__(f"forbidden global {module}.{name}")
        self.module, self.name = module, name

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"


_TORCH_REBUILD = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                  "_rebuild_parameter_with_state", "_rebuild_meta_tensor_no_storage",
                  "_rebuild_device_tensor_from_cpu_tensor")
_NUMPY_MODULES = {"numpy.core.multiarray": "multiarray", "numpy._core.multiarray": "multiarray",
                  "numpy.core.numeric": "numeric", "numpy._core.numeric": "numeric"}
_NUMPY_NAMES = {"multiarray": ("_reconstruct", "scalar"), "numeric": ("_frombuffer",)}


def _resolve(module: str, name: str) -> Any:
    """The object an allow-listed global names, or raise :class:`ForbiddenGlobal`. Imports nothing new
    except torch and numpy, and only attributes of theirs that are on the list."""
    path = f"{module}.{name}"
    if path in STAND_INS:
        return STAND_INS[path]
    if module == "collections" and name == "OrderedDict":
        return OrderedDict
    if module == "builtins" and name in ("set", "frozenset", "complex", "bytearray"):
        return {"set": set, "frozenset": frozenset, "complex": complex, "bytearray": bytearray}[name]
    if module == "_codecs" and name == "encode":
        import _codecs

        return _codecs.encode
    if module.startswith("torch"):
        import torch

        if module == "torch._utils" and name in _TORCH_REBUILD and hasattr(torch._utils, name):
            return getattr(torch._utils, name)
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return torch._tensor._rebuild_from_type_v2
        if module == "torch" and name in ("Size", "Tensor", "device"):
            return getattr(torch, name)
        if module == "torch.nn.parameter" and name == "Parameter":
            return torch.nn.Parameter
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        import numpy

        return getattr(numpy, name)
    kind = _NUMPY_MODULES.get(module)
    if kind is not None and name in _NUMPY_NAMES[kind]:
        try:  # numpy 2 spells it numpy._core, numpy 1 numpy.core: use the installed one for both names
            sub = importlib.import_module(f"numpy._core.{kind}")
        except ImportError:
            sub = importlib.import_module(f"numpy.core.{kind}")
        return getattr(sub, name)
    raise ForbiddenGlobal(module, name)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come only from the allow-list (see the module docstring).

    Every way a pickle can reach a callable (GLOBAL, STACK_GLOBAL, INST, OBJ, EXT*) goes through
    ``find_class``; REDUCE / NEWOBJ can only call what it returned.
    """

    def find_class(self, module: str, name: str) -> Any:
        # Protocol < 3 writes Python 2 names (``__builtin__``, ``copy_reg``); map them as pickle does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        return _resolve(module, name)


def _restricted_load(file, **kwargs) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


#: Passed to ``torch.load`` as ``pickle_module``: torch subclasses ``Unpickler`` and calls ``load``.
restricted_pickle = types.ModuleType("core.safe_pickle.restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError

# --- loading -------------------------------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """Stand-ins, numpy values and ordered dicts as plain Python data (dict / list / int / float / str).

    A stand-in becomes ``{"__class__": <dotted name>, **its attributes}``; tensors are left as they are.
    """
    if isinstance(obj, StandIn):
        return {"__class__": type(obj).class_path, **{k: to_plain(v) for k, v in obj.__dict__.items()}}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj) if type(obj) in (list, tuple) else [to_plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return type(obj)(to_plain(v) for v in obj)
    module = type(obj).__module__
    if module == "numpy":
        import numpy

        if isinstance(obj, numpy.ndarray):
            return obj.tolist()
        if isinstance(obj, numpy.generic):
            return obj.item()
        if isinstance(obj, numpy.dtype):
            return str(obj)
    return obj


def _refuse_torchscript(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"cannot read {path}: damaged zip container ({exc})") from None
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(f"refusing to load {path}: it is a TorchScript archive, which holds code; "
                              f"save the weights with torch.save(model.state_dict(), ...) instead")


def load_torch_file_safely(path: str | os.PathLike) -> Any:
    """``torch.load`` of ``path`` on the CPU through :class:`RestrictedUnpickler`: the raw object.

    Raises :class:`CheckpointError` naming the file (and the forbidden global, for a pickle that asks
    for one); nothing from a refused file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}" if not path.exists() else f"not a file: {path}")
    _refuse_torchscript(path)
    import torch

    try:
        return torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except ForbiddenGlobal as exc:
        raise CheckpointError(
            f"refusing to load {path}: it asks for the Python global {exc.path}, which is not a data type a "
            f"checkpoint may hold (tensors, numbers, strings, containers, numpy arrays, mmengine's log "
            f"records); unpickling it could run code, so it was stopped before anything was called") from None
    except RuntimeError as exc:
        if "explicit pickle_module" in str(exc):
            raise CheckpointError(
                f"cannot read {path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which forbids the restricted "
                f"loader; unset it for this command") from None
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_mmengine_checkpoint(path: str | os.PathLike) -> dict:
    """Read an mmengine checkpoint (or a plain state dict) without executing pickled code.

    Returns ``{"state_dict": OrderedDict[str, Tensor], "meta": dict, "message_hub": dict | None,
    "format": str, "other_keys": list[str]}``:

    - ``format`` is ``"mmengine"`` for a dict with ``state_dict`` (and ``meta`` / ``message_hub``),
      ``"model"`` for a dict whose weights are under ``model`` (timm / DeiT files), ``"state_dict"`` for a
      bare mapping of names to tensors;
    - ``meta`` and ``message_hub`` are plain data (:func:`to_plain`; empty / None when absent);
    - ``other_keys`` names the top-level entries not returned (``optimizer``, ``param_schedulers``, ...).

    Both the zip format (torch >= 1.6) and the legacy format are read. Raises :class:`CheckpointError`.
    """
    path = Path(path)
    obj = load_torch_file_safely(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict or a state dict")
    import torch

    def is_weights(m: Any) -> bool:
        return isinstance(m, Mapping) and bool(m) and all(isinstance(v, torch.Tensor) for v in m.values())

    taken: tuple[str, ...]
    if isinstance(obj.get("state_dict"), Mapping):
        weights, fmt, taken = obj["state_dict"], "mmengine", ("state_dict", "meta", "message_hub")
    elif "state_dict" not in obj and is_weights(obj.get("model")):
        weights, fmt, taken = obj["model"], "model", ("model",)
    elif is_weights(obj):
        weights, fmt, taken = obj, "state_dict", tuple(obj)
    else:
        keys = ", ".join(map(str, list(obj)[:12])) or "none"
        raise CheckpointError(f"{path} holds no state dict (top-level keys: {keys})")
    bad = [str(k) for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: the state dict has entries that are not named tensors: "
                              f"{', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}")
    state_dict = weights if isinstance(weights, OrderedDict) else OrderedDict(weights)
    meta = to_plain(obj.get("meta") or {}) if fmt != "state_dict" else {}
    if not isinstance(meta, dict):
        meta = {"value": meta}
    hub = obj.get("message_hub") if fmt != "state_dict" else None
    return {
        "state_dict": state_dict,
        "meta": meta,
        "message_hub": None if hub is None else to_plain(hub),
        "format": fmt,
        "other_keys": [str(k) for k in obj if k not in taken],
    }
