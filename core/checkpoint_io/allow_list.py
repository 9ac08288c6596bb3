"""The allow-list: what a pickle gets for each global it names (``find_class``), or ``ForbiddenGlobal``.

Plain containers and scalars (``collections.OrderedDict``, ``builtins.set/frozenset/complex/bytearray/bytes``,
``_codecs.encode`` with a text codec) are built here; torch's and numpy's names are resolved to the callables
of :mod:`core.checkpoint_io.torch_globals` / :mod:`core.checkpoint_io.numpy_globals`, mmengine's to the
stand-ins of :mod:`core.checkpoint_io.stand_ins`. Nothing but torch and numpy is imported, and no object of
theirs is handed out except torch dtypes.
"""

from __future__ import annotations

import _compat_pickle
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from core.checkpoint_io.limits import Damaged, ForbiddenGlobal, Refused
from core.checkpoint_io.numpy_globals import (
    NDARRAY,
    NUMPY_MODULES,
    np_dtype,
    np_frombuffer,
    np_reconstruct,
    np_scalar,
)
from core.checkpoint_io.objects import Global, Machine, StorageType, check_args, fill, set_from, short
from core.checkpoint_io.stand_ins import STAND_INS
from core.checkpoint_io.torch_globals import (
    PARAMETER_TYPE,
    REBUILDERS,
    STORAGE_DTYPES,
    TENSOR_TYPE,
    import_torch,
    parameter,
    rebuild_from_type,
    torch_device,
    torch_size,
)

_TEXT_CODECS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "ascii", "us-ascii", "utf-8", "utf8"}


def _ordered_dict(vm: Machine, args: tuple) -> OrderedDict:
    (items,) = check_args(args, "collections.OrderedDict", 0, 1) or ((),)
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, (list, tuple)) and len(i) == 2 for i in items):
        raise Damaged(f"collections.OrderedDict is given {short(items)} instead of (key, value) pairs")
    vm.charge(64 * len(items))
    result: OrderedDict = OrderedDict()
    fill(vm, result, [x for pair in items for x in pair], pairs=True)
    return result


def _set_of(kind: type) -> Callable[[Machine, tuple], Any]:
    def make(vm: Machine, args: tuple):
        (items,) = check_args(args, kind.__name__, 0, 1) or ((),)
        if not isinstance(items, (list, tuple)):
            raise Damaged(f"builtins.{kind.__name__} is given {short(items)}")
        vm.charge(64 * len(items))
        return vm.nested(set_from(vm, items, kind), items)
    return make


def _complex(vm: Machine, args: tuple) -> complex:
    parts = check_args(args, "builtins.complex", 0, 2)
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts):
        raise Damaged("builtins.complex is given something other than numbers")
    return complex(*(float(p) for p in parts))


def _bytes_from(vm: Machine, args: tuple, name: str) -> bytes:
    args = check_args(args, name, 0, 3)
    if not args:
        return b""
    data = args[0]
    if isinstance(data, (bytes, bytearray)) and len(args) == 1:
        vm.charge(len(data))
        return bytes(data)
    if isinstance(data, str) and len(args) >= 2 and isinstance(args[1], str) \
            and args[1].lower() in _TEXT_CODECS and (len(args) == 2 or args[2] == "strict"):
        vm.charge(4 * len(data))
        return data.encode(args[1].lower())
    raise Refused(f"{name} is called with {short(data)}"
                  + (f" and the codec {short(args[1])}" if len(args) > 1 else "")
                  + ": only bytes, or text with a text codec (latin-1, ascii, utf-8), are read")


def _codecs_encode(vm: Machine, args: tuple) -> bytes:
    args = check_args(args, "_codecs.encode", 1, 3)
    text = args[0]
    codec = args[1] if len(args) > 1 else "utf-8"
    if not isinstance(text, str) or not isinstance(codec, str) or codec.lower() not in _TEXT_CODECS \
            or (len(args) == 3 and args[2] != "strict"):
        raise Refused(f"it calls _codecs.encode with {short(text)} and the codec {short(codec)}: only text "
                      "with a text codec (latin-1, ascii, utf-8) is read")
    vm.charge(4 * len(text))
    return text.encode(codec.lower())


def _stand_in_global(path: str) -> Global:
    cls = STAND_INS[path]
    return Global(path, call=lambda vm, args: cls(*args), new=lambda vm, args: cls.__new__(cls))


def _resolve(module: str, name: str) -> Any:
    """What the pickle gets for an allow-listed global (see the module docstring), or :class:`ForbiddenGlobal`.
    Imports nothing but torch and numpy, and never hands out their objects except torch dtypes."""
    path = f"{module}.{name}"
    if path in STAND_INS:
        return _stand_in_global(path)
    simple = {
        "collections.OrderedDict": _ordered_dict, "builtins.set": _set_of(set),
        "builtins.frozenset": _set_of(frozenset), "builtins.complex": _complex,
        "builtins.bytearray": lambda vm, args: bytearray(_bytes_from(vm, args, "builtins.bytearray")),
        "builtins.bytes": lambda vm, args: _bytes_from(vm, args, "builtins.bytes"),
        "_codecs.encode": _codecs_encode, "torch.Size": torch_size, "torch.device": torch_device,
        "torch._tensor._rebuild_from_type_v2": rebuild_from_type,
        "torch._utils._rebuild_parameter": parameter, "torch._utils._rebuild_parameter_with_state": parameter,
        "numpy.dtype": np_dtype,
    }
    if path in simple:
        return Global(path, call=simple[path])
    if module == "torch._utils" and name in REBUILDERS:
        return Global(path, call=REBUILDERS[name])
    if path == "torch.Tensor":
        return TENSOR_TYPE
    if path in ("torch.nn.parameter.Parameter", "torch.nn.Parameter"):
        return PARAMETER_TYPE
    if path == "numpy.ndarray":
        return NDARRAY
    if (module in ("torch", "torch.cuda") and name in STORAGE_DTYPES) or path == "torch.storage.UntypedStorage":
        return StorageType(path, getattr(import_torch(), STORAGE_DTYPES[name]))
    if module == "torch" and not name.startswith("_"):
        torch = import_torch()
        if isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
    kind = NUMPY_MODULES.get(module)
    if kind == "multiarray" and name in ("_reconstruct", "scalar"):
        return Global(path, call=np_reconstruct if name == "_reconstruct" else np_scalar)
    if kind == "numeric" and name == "_frombuffer":
        return Global(path, call=np_frombuffer)
    raise ForbiddenGlobal(module, name)


def _python3_name(module: str, name: str) -> tuple[str, str]:
    # Protocol < 3 writes Python 2 names (``__builtin__``, ``copy_reg``); map them as pickle does.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def find_class(module: str, name: str) -> Any:
    return _resolve(*_python3_name(module, name))


def no_globals(module: str, name: str) -> Any:
    raise ForbiddenGlobal(*_python3_name(module, name))


def no_persistent_ids(pid: Any) -> Any:
    raise Refused("a header pickle holds a persistent id")
