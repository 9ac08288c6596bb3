"""Read a PyTorch / mmengine checkpoint without executing pickled code and without ``torch.load``.

A ``.pth`` file is a pickle: loading it with plain ``pickle`` (or ``torch.load(weights_only=False)``)
runs whatever callable the file names, e.g. ``os.system``; and even with a restricted ``find_class``,
``torch.load``'s own loader reacts to what the pickle says (its legacy format writes a ``NAME.patch`` file
chosen by the pickle when a "module" persistent id carries source text, and allocates storages of any
declared size before reading them). So this module reads both container formats itself and never calls
``torch.load``, ``pickle.load`` or anything of torch's serialization code:

- the **zip format** (``torch.save`` since 1.6): one ``PREFIX/data.pkl`` pickle and one record
  ``PREFIX/data/KEY`` per storage (read with a bounded copy, CRC checked);
- the **legacy format** (``_use_new_zipfile_serialization=False``): the magic number, protocol 1001 and
  ``sys_info`` pickles, the object pickle, the list of storage keys, then each storage's bytes;
- the **tar format** of PyTorch 0.3 and older, TorchScript archives, big-endian legacy files and anything
  else are refused (no archive member is ever extracted or opened).

The pickles are run by :class:`_Unpickler`, a small pickle machine of our own (protocols 0-5) that:

- resolves globals only from an explicit allow-list, and gets **our** stand-in for each, never the real
  object: what a tensor needs (``torch._utils._rebuild_tensor[_v2|_v3]``, ``_rebuild_parameter[_with_state]``,
  ``torch._tensor._rebuild_from_type_v2``, the ``torch.<X>Storage`` types, ``torch.<dtype>``,
  ``torch.Size``, ``torch.device``), plain containers and scalars (``collections.OrderedDict``,
  ``builtins.set/frozenset/complex/bytearray/bytes``, ``_codecs.encode`` with a text codec: how protocol 2
  spells ``bytes``), numpy arrays and scalars of plain dtypes (``numpy.ndarray``, ``numpy.dtype``,
  ``numpy[._]core.multiarray._reconstruct`` / ``scalar``, ``numpy[._]core.numeric._frombuffer``) and
  mmengine's record classes as **inert stand-ins** (plain attribute bags whose class cannot be modified;
  mmengine is never imported): ``MessageHub``, ``HistoryBuffer``, ``ConfigDict`` (a dict), ``Config``;
- accepts a persistent id only in torch's exact storage form (``("storage", <storage type>, key,
  location, numel)``, legacy: ``+ view``); a "module" id, or any other, is refused;
- applies BUILD (``__setstate__``) only to objects it made for that purpose (stand-ins, numpy arrays and
  dtypes, each validated first), APPEND only to lists, SETITEM only to dicts, ADDITEMS only to sets;
  extension codes and out-of-band buffers are refused;
- bounds memory by what the input declares, before allocating: a string, storage, array or tensor that
  declares more bytes than the file holds is refused; all copies and tensors together may use at most
  ``4 x file size + 64 MiB``; at most ``MAX_OPS`` pickle operations; hashable containers nested at most
  ``MAX_NESTING`` deep (hashing very deep tuples crashes CPython); at most ``MAX_SAME_HASH`` keys of one
  dict or set sharing a hash (a hash flood of crafted ints takes hours to insert).

Every refusal is a :class:`~core.errors.CheckpointError` naming the file (and the forbidden global, for a
pickle that asks for one); nothing from a refused file is called, and no file is written.

mmengine checkpoints (``Runner.save_checkpoint``) are dicts with ``meta`` (epoch, iter, cfg text, seed,
dataset_meta, ...), ``state_dict`` (model weights), ``message_hub`` (``MessageHub.state_dict()``: log
scalars as ``HistoryBuffer`` objects, runtime info; old versions pickled the ``MessageHub`` object) and
optionally ``optimizer`` / ``param_schedulers``. torch and numpy are imported only when a file is read.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import io
import os
import re
import stat
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from core.errors import CheckpointError

MAX_OPS = 10_000_000  # pickle operations per pickle (a release checkpoint with its optimizer: ~100 000)
MAX_NESTING = 100  # tuples / frozensets inside each other (hashing a 10**6-deep tuple crashes CPython)
MAX_META_DEPTH = 100  # levels of meta / message_hub that to_plain converts
MAX_PICKLE_BYTES = 256 << 20  # a zip checkpoint's data.pkl (a release checkpoint's: ~100 kB)
MAX_ENTRIES = 200_000  # zip members (a checkpoint has one per storage)
MAX_PLAIN_ITEMS = 1_000_000  # numpy arrays larger than this stay arrays in to_plain
MAX_SAME_HASH = 64  # keys of one dict / set sharing a hash (more: a hash flood, quadratic to insert)
SLACK_BYTES = 64 << 20  # allocation allowed beyond 4 x the file size (tiny files)
_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy format: the first pickle
_LEGACY_PROTOCOL = 1001

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
            self.__dict__.update({_attr(k): v for k, v in state.items()})
        elif state is not None:
            self.__dict__["_state"] = state
        if slots:
            self.__dict__.update({_attr(k): v for k, v in slots.items()})

    def __repr__(self) -> str:
        return f"<stand-in for {self.class_path}: {sorted(self.__dict__)}>"


def _attr(key: Any) -> str:
    if not isinstance(key, str):
        raise _Damaged(f"an attribute name of a stand-in is a {type(key).__name__}, not a string")
    return key


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

# --- errors --------------------------------------------------------------------------------------------


class _Refused(Exception):
    """The file asks for something this reader does not do safely (or declares more than it holds)."""

    verb = "refusing to load"


class _Damaged(_Refused):
    """The file is not a well-formed checkpoint."""

    verb = "cannot read"


class ForbiddenGlobal(_Refused):
    """The pickle asked for a global outside the allow-list; nothing it names was called."""

    def __init__(self, module: str, name: str):
        super().__init__(f"forbidden global {module}.{name}")
        self.module, self.name = module, name

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"


def _short(value: Any) -> str:
    """A bounded description of a value taken from the file (never a repr of a deep or huge object)."""
    if isinstance(value, (str, bytes)):
        text = repr(value[:60])
        return text + ("..." if len(value) > 60 else "")
    if isinstance(value, (bool, int, float)) and not (isinstance(value, int) and value.bit_length() > 64):
        return repr(value)
    if isinstance(value, (_Global, _StorageType)):
        return f"the global {value.path}"
    return f"a {type(value).__name__}"


# --- what the allow-listed globals become ---------------------------------------------------------------


class _Global:
    """An allow-listed global as the pickle sees it: its dotted name and what calling / creating it does
    (our code, never the real object's). No ``__dict__``: a pickle cannot set attributes on it."""

    __slots__ = ("call", "new", "path")

    def __init__(self, path: str, call: Callable[[_Unpickler, tuple], Any] | None = None,
                 new: Callable[[_Unpickler, tuple], Any] | None = None):
        self.path, self.call, self.new = path, call, new

    def __repr__(self) -> str:
        return f"<global {self.path}>"


class _StorageType:
    """``torch.<X>Storage`` as a pickle names it in a persistent id: only its dtype is used."""

    __slots__ = ("dtype", "path")

    def __init__(self, path: str, dtype: Any):
        self.path, self.dtype = path, dtype


_STORAGE_DTYPES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
                   "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                   "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
                   "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
                   "UntypedStorage": "uint8"}
_TEXT_CODECS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "ascii", "us-ascii", "utf-8", "utf8"}
_NUMPY_MODULES = {"numpy.core.multiarray": "multiarray", "numpy._core.multiarray": "multiarray",
                  "numpy.core.numeric": "numeric", "numpy._core.numeric": "numeric"}
_NUMPY_CODE = re.compile(r"(b1|[iu][1248]|f[248]|c(8|16)|O8|[US][0-9]{1,7})")


def _args(args: tuple, name: str, low: int, high: int | None = None) -> tuple:
    if not isinstance(args, tuple) or not low <= len(args) <= (low if high is None else high):
        count = f"{low}" if high is None or high == low else f"{low} to {high}"
        raise _Damaged(f"{name} is called with {len(args) if isinstance(args, tuple) else _short(args)} "
                       f"arguments, not {count}")
    return args


def _int(value: Any, what: str, *, low: int = 0, high: int = 1 << 62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Damaged(f"{what} is {_short(value)}, not an integer in {low}..{high}")
    return value


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > 64:
        raise _Damaged(f"{what} is {_short(value)}, not a tuple of at most 64 sizes")
    return tuple(_int(v, what) for v in value)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# builtins and codecs


def _ordered_dict(vm: _Unpickler, args: tuple) -> OrderedDict:
    (items,) = _args(args, "collections.OrderedDict", 0, 1) or ((),)
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, (list, tuple)) and len(i) == 2 for i in items):
        raise _Damaged(f"collections.OrderedDict is given {_short(items)} instead of (key, value) pairs")
    vm.charge(64 * len(items))
    result: OrderedDict = OrderedDict()
    _fill(vm, result, [x for pair in items for x in pair], pairs=True)
    return result


def _set_of(kind: type) -> Callable[[_Unpickler, tuple], Any]:
    def make(vm: _Unpickler, args: tuple):
        (items,) = _args(args, kind.__name__, 0, 1) or ((),)
        if not isinstance(items, (list, tuple)):
            raise _Damaged(f"builtins.{kind.__name__} is given {_short(items)}")
        vm.charge(64 * len(items))
        return vm.nested(_set_from(vm, items, kind), items)
    return make


def _complex(vm: _Unpickler, args: tuple) -> complex:
    parts = _args(args, "builtins.complex", 0, 2)
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts):
        raise _Damaged("builtins.complex is given something other than numbers")
    return complex(*(float(p) for p in parts))


def _bytes_from(vm: _Unpickler, args: tuple, name: str) -> bytes:
    args = _args(args, name, 0, 3)
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
    raise _Refused(f"{name} is called with {_short(data)}"
                   + (f" and the codec {_short(args[1])}" if len(args) > 1 else "")
                   + ": only bytes, or text with a text codec (latin-1, ascii, utf-8), are read")


def _codecs_encode(vm: _Unpickler, args: tuple) -> bytes:
    args = _args(args, "_codecs.encode", 1, 3)
    text = args[0]
    codec = args[1] if len(args) > 1 else "utf-8"
    if not isinstance(text, str) or not isinstance(codec, str) or codec.lower() not in _TEXT_CODECS \
            or (len(args) == 3 and args[2] != "strict"):
        raise _Refused(f"it calls _codecs.encode with {_short(text)} and the codec {_short(codec)}: only text "
                       "with a text codec (latin-1, ascii, utf-8) is read")
    vm.charge(4 * len(text))
    return text.encode(codec.lower())


# torch


def _torch():
    import torch

    return torch


def _torch_size(vm: _Unpickler, args: tuple):
    (dims,) = _args(args, "torch.Size", 0, 1) or ((),)
    return _torch().Size(_shape(dims, "a torch.Size"))


def _torch_device(vm: _Unpickler, args: tuple):
    args = _args(args, "torch.device", 1, 2)
    index = args[1] if len(args) == 2 else None
    if not isinstance(args[0], str) or len(args[0]) > 64 or not (
            index is None or (type(index) is int and 0 <= index < 1 << 16)):
        raise _Damaged("torch.device is given something other than a device name and index")
    try:
        return _torch().device(*args)
    except RuntimeError:
        return args[0]  # a device this torch does not know: its name is all a checkpoint reader needs


class _Storage:
    """A storage of the file: ``nbytes`` bytes in ``buf`` (a uint8 tensor) from ``offset``."""

    __slots__ = ("buf", "dtype", "has_bool", "key", "nbytes", "numel", "offset")

    def __init__(self, key: str, dtype: Any, buf: Any, offset: int, nbytes: int, numel: int):
        self.key, self.dtype, self.buf, self.offset, self.nbytes, self.numel = key, dtype, buf, offset, nbytes, numel
        self.has_bool = False  # some tensor views it as bool: its bytes are made 0 / 1 once read


def _tensor(vm: _Unpickler, storage: Any, offset: Any, size: Any, stride: Any, dtype: Any = None):
    torch = _torch()
    if not isinstance(storage, _Storage):
        raise _Damaged(f"a tensor is rebuilt from {_short(storage)}, not from a storage of the file")
    dtype = storage.dtype if dtype is None else dtype
    if not isinstance(dtype, torch.dtype):
        raise _Damaged(f"a tensor's dtype is {_short(dtype)}")
    offset = _int(offset, "a tensor's storage offset")
    size, stride = _shape(size, "a tensor's size"), _shape(stride, "a tensor's stride")
    if len(size) != len(stride):
        raise _Damaged(f"a tensor has {len(size)} sizes but {len(stride)} strides")
    itemsize = dtype.itemsize
    if storage.nbytes % itemsize:
        raise _Damaged(f"storage {storage.key} holds {storage.nbytes} bytes, not a whole number of {dtype} values")
    count = storage.nbytes // itemsize
    numel = _prod(size)
    last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) if numel else offset - 1
    if last >= count or offset > count:
        raise _Damaged(f"a tensor of size {list(size)} at offset {offset} reaches past the end of its storage "
                       f"{storage.key} ({count} values)")
    vm.charge(numel * itemsize)
    if dtype == torch.bool:
        storage.has_bool = True
    flat = storage.buf[storage.offset:storage.offset + storage.nbytes].view(dtype)
    return torch.as_strided(flat, size, stride, offset)


def _tensor_metadata(metadata: Any) -> None:
    if metadata is None or (isinstance(metadata, dict) and not any(metadata.values())):
        return
    raise _Refused("a tensor carries conjugate / negative-view metadata, which weights never have")


def _rebuild_v1(vm: _Unpickler, args: tuple):
    storage, offset, size, stride = _args(args, "torch._utils._rebuild_tensor", 4)
    return _tensor(vm, storage, offset, size, stride)


def _rebuild_v2(vm: _Unpickler, args: tuple):
    args = _args(args, "torch._utils._rebuild_tensor_v2", 6, 7)
    _tensor_metadata(args[6] if len(args) == 7 else None)
    return _requires_grad(_tensor(vm, *args[:4]), args[4])


def _rebuild_v3(vm: _Unpickler, args: tuple):
    args = _args(args, "torch._utils._rebuild_tensor_v3", 7, 8)
    _tensor_metadata(args[7] if len(args) == 8 else None)
    return _requires_grad(_tensor(vm, *args[:4], dtype=args[6]), args[4])


def _requires_grad(tensor, flag: Any):
    if not isinstance(flag, bool):
        raise _Damaged(f"a tensor's requires_grad is {_short(flag)}")
    if flag and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_(True)
    return tensor


def _parameter(vm: _Unpickler, args: tuple):
    args = _args(args, "torch._utils._rebuild_parameter", 3, 4)  # _with_state has the state (ignored) last
    torch = _torch()
    if not isinstance(args[0], torch.Tensor) or not isinstance(args[1], bool):
        raise _Damaged(f"a parameter is rebuilt from {_short(args[0])}")
    data = args[0].detach()
    return torch.nn.Parameter(data, args[1] and (data.is_floating_point() or data.is_complex()))


_REBUILDERS: dict[str, Callable[[_Unpickler, tuple], Any]] = {
    "_rebuild_tensor": _rebuild_v1, "_rebuild_tensor_v2": _rebuild_v2, "_rebuild_tensor_v3": _rebuild_v3,
}
_TENSOR_TYPE = _Global("torch.Tensor")
_PARAMETER_TYPE = _Global("torch.nn.parameter.Parameter")


def _rebuild_from_type(vm: _Unpickler, args: tuple):
    func, new_type, inner, _state = _args(args, "torch._tensor._rebuild_from_type_v2", 4)
    if not isinstance(func, _Global) or func.call not in _REBUILDERS.values() or not isinstance(inner, tuple):
        raise _Refused(f"torch._tensor._rebuild_from_type_v2 is asked to call {_short(func)}: only the tensor "
                       "rebuilders are allowed")
    tensor = func.call(vm, inner)
    if new_type is _PARAMETER_TYPE:
        return _parameter(vm, (tensor, tensor.requires_grad, OrderedDict()))
    if new_type is not _TENSOR_TYPE:
        raise _Refused(f"a tensor is rebuilt as {_short(new_type)}: only torch.Tensor and torch.nn.Parameter "
                       "are read (tensor subclasses can run code)")
    return tensor  # the Python attributes in _state are not restored: weights do not need them


# numpy


def _numpy():
    import numpy

    return numpy


_NDARRAY = _Global("numpy.ndarray")


def _np_dtype(vm: _Unpickler, args: tuple):
    args = _args(args, "numpy.dtype", 1, 3)
    code = args[0]
    if not isinstance(code, str) or not _NUMPY_CODE.fullmatch(code):
        raise _Refused(f"numpy.dtype is asked for {_short(code)}: only numbers, booleans, strings and objects "
                       "are read (no records, datetimes or sub-arrays)")
    dtype = _numpy().dtype(code, False, True)  # a fresh copy that its BUILD may set the byte order of
    vm.buildable(dtype, _build_dtype)
    return dtype


def _build_dtype(vm: _Unpickler, dtype: Any, state: Any) -> None:
    if not isinstance(state, tuple) or len(state) != 8 or state[0] != 3 or state[1] not in ("<", ">", "|", "=") \
            or state[2:5] != (None, None, None):
        raise _Refused(f"a numpy dtype {dtype.str} is given the state {_short(state)}: only a byte order is read")
    own = dtype.__reduce__()[2]
    dtype.__setstate__((3, state[1], *own[2:]))  # numpy's own sizes and flags; only the byte order is the file's


def _np_reconstruct(vm: _Unpickler, args: tuple):
    cls, shape, code = _args(args, "numpy.core.multiarray._reconstruct", 3)
    if cls is not _NDARRAY:
        raise _Refused(f"numpy.core.multiarray._reconstruct is asked for {_short(cls)}: only numpy.ndarray")
    if shape not in ((0,), [0]) or code not in (b"b", "b"):  # numpy's own pickles; the BUILD then sets the data
        raise _Refused(f"numpy.core.multiarray._reconstruct is asked for an array of shape {_short(shape)} without "
                       "its data: only an empty array that the pickle then fills is read")
    array = _numpy().empty((0,), _numpy().uint8)
    vm.buildable(array, _build_array)
    return array


def _build_array(vm: _Unpickler, array: Any, state: Any) -> None:
    np = _numpy()
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise _Damaged(f"a numpy array is given the state {_short(state)}")
    shape, dtype, fortran, data = state
    shape = _shape(shape, "a numpy array's shape")
    if not isinstance(dtype, np.dtype) or not isinstance(fortran, (bool, int)):
        raise _Damaged("a numpy array's state has no dtype")
    count = _prod(shape)
    if dtype.hasobject:
        if not isinstance(data, list) or len(data) != count:
            raise _Damaged(f"a numpy object array of shape {list(shape)} is given "
                           f"{len(data) if isinstance(data, list) else _short(data)} items")
        vm.charge(8 * count)
    else:
        if not isinstance(data, (bytes, bytearray)) or len(data) != count * dtype.itemsize:
            raise _Damaged(f"a numpy array of shape {list(shape)} and dtype {dtype} needs "
                           f"{count * dtype.itemsize:,} bytes but is given "
                           f"{len(data) if isinstance(data, (bytes, bytearray)) else _short(data)}")
        vm.charge(len(data))
    array.__setstate__((1, shape, dtype, bool(fortran), data))


def _np_scalar(vm: _Unpickler, args: tuple):
    np = _numpy()
    dtype, data = _args(args, "numpy.core.multiarray.scalar", 2)
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise _Damaged("a numpy scalar's bytes do not fit its dtype")
    return np.frombuffer(data, dtype, count=1)[0]


def _np_frombuffer(vm: _Unpickler, args: tuple):
    np = _numpy()
    data, dtype, shape, order = _args(args, "numpy.core.numeric._frombuffer", 4)
    shape = _shape(shape, "a numpy array's shape")
    if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F", "A", "K") \
            or not isinstance(data, (bytes, bytearray)) or len(data) != _prod(shape) * dtype.itemsize:
        raise _Damaged("a numpy array's bytes do not fit its dtype and shape")
    vm.charge(len(data))
    return np.frombuffer(bytearray(data), dtype).reshape(shape, order="F" if order == "F" else "C")


def _stand_in_global(path: str) -> _Global:
    cls = STAND_INS[path]
    return _Global(path, call=lambda vm, args: cls(*args), new=lambda vm, args: cls.__new__(cls))


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
        "_codecs.encode": _codecs_encode, "torch.Size": _torch_size, "torch.device": _torch_device,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
        "torch._utils._rebuild_parameter": _parameter, "torch._utils._rebuild_parameter_with_state": _parameter,
        "numpy.dtype": _np_dtype,
    }
    if path in simple:
        return _Global(path, call=simple[path])
    if module == "torch._utils" and name in _REBUILDERS:
        return _Global(path, call=_REBUILDERS[name])
    if path == "torch.Tensor":
        return _TENSOR_TYPE
    if path in ("torch.nn.parameter.Parameter", "torch.nn.Parameter"):
        return _PARAMETER_TYPE
    if path == "numpy.ndarray":
        return _NDARRAY
    if (module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES) or path == "torch.storage.UntypedStorage":
        return _StorageType(path, getattr(_torch(), _STORAGE_DTYPES[name]))
    if module == "torch" and not name.startswith("_"):
        torch = _torch()
        if isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
    kind = _NUMPY_MODULES.get(module)
    if kind == "multiarray" and name in ("_reconstruct", "scalar"):
        return _Global(path, call=_np_reconstruct if name == "_reconstruct" else _np_scalar)
    if kind == "numeric" and name == "_frombuffer":
        return _Global(path, call=_np_frombuffer)
    raise ForbiddenGlobal(module, name)


def _python3_name(module: str, name: str) -> tuple[str, str]:
    # Protocol < 3 writes Python 2 names (``__builtin__``, ``copy_reg``); map them as pickle does.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _find_class(module: str, name: str) -> Any:
    return _resolve(*_python3_name(module, name))


def _no_globals(module: str, name: str) -> Any:
    raise ForbiddenGlobal(*_python3_name(module, name))


def _no_persistent_ids(pid: Any) -> Any:
    raise _Refused("a header pickle holds a persistent id")


# --- the pickle machine --------------------------------------------------------------------------------


class _Source:
    """Bounded reads from a binary file object: nothing longer than what is left before ``end`` is read."""

    def __init__(self, fh: Any, end: int):
        self.fh, self.end, self.pos = fh, end, fh.tell()

    def read(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise _Damaged(f"a value at byte {self.pos:,} declares {n:,} bytes but only {self.end - self.pos:,} "
                           "are left in the file")
        data = self.fh.read(n)
        self.pos += len(data)
        if len(data) != n:
            raise _Damaged("the file ends early")
        return data

    def readline(self) -> bytes:
        data = self.fh.readline(self.end - self.pos)
        self.pos += len(data)
        if not data.endswith(b"\n"):
            raise _Damaged("the file ends inside a text value")
        return data

    def readinto(self, buf: memoryview) -> None:
        n = len(buf)
        if n > self.end - self.pos:
            raise _Damaged(f"a storage at byte {self.pos:,} needs {n:,} bytes but only {self.end - self.pos:,} "
                           "are left in the file")
        got = 0
        while got < n:
            k = self.fh.readinto(buf[got:])
            if not k:
                raise _Damaged("the file ends inside a storage")
            got += k
        self.pos += n


class _Budget:
    """How many bytes reading one file may allocate beyond the pickle machine's own objects."""

    def __init__(self, file_size: int):
        self.limit, self.used, self.file_size = 4 * file_size + SLACK_BYTES, 0, file_size

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise _Refused(f"it declares more data than a file of {self.file_size:,} bytes can hold "
                           f"({self.used:,} bytes of values and tensors so far); refused before allocating it")


class _Unpickler:
    """A pickle machine (protocols 0-5) that only builds data: see the module docstring for what it allows."""

    def __init__(self, src: _Source, budget: _Budget, *, find_class: Callable[[str, str], Any] = _find_class,
                 persistent_load: Callable[[Any], Any] = _no_persistent_ids):
        self.src, self.budget = src, budget
        self.find_class, self.persistent_load = find_class, persistent_load
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.depth: dict[int, int] = {}  # id -> nesting of tuples / frozensets deeper than 1 (kept alive below)
        self.keep: list[Any] = []
        self.builds: dict[int, tuple[Any, Callable[[_Unpickler, Any, Any], None]]] = {}
        self.hash_checked: dict[int, int] = {}  # id of a big dict / set -> its size when its hashes were counted

    # helpers the allow-listed callables use
    def charge(self, n: int) -> None:
        self.budget.charge(n)

    def nested(self, obj: Any, items: Any) -> Any:
        """``obj`` (a tuple or frozenset of ``items``), after checking how deep such containers nest."""
        depth = 1
        for item in items:
            if type(item) in (tuple, frozenset):
                depth = max(depth, self.depth.get(id(item), 1) + 1)
        if depth > 1:
            if depth > MAX_NESTING:
                raise _Refused(f"it nests tuples more than {MAX_NESTING} deep")
            self.depth[id(obj)] = depth
            self.keep.append(obj)
        return obj

    def buildable(self, obj: Any, build: Callable[[_Unpickler, Any, Any], None]) -> None:
        self.builds[id(obj)] = (obj, build)

    # the machine
    def load(self) -> Any:
        read, dispatch, limit = self.src.read, _DISPATCH, MAX_OPS
        ops = 0
        try:
            while True:
                code = read(1)[0]
                ops += 1
                if ops > limit:
                    raise _Refused(f"its pickle has more than {limit:,} operations")
                if code == 0x2E:  # STOP
                    if self.metastack or len(self.stack) != 1:
                        raise _Damaged("a pickle ends with a malformed stack")
                    return self.stack.pop()
                handler = dispatch.get(code)
                if handler is None:
                    raise _Refused(f"its pickle uses the opcode {bytes([code])!r} at byte {self.src.pos - 1:,}, "
                                   "which this reader does not accept")
                handler(self)
        except IndexError:
            raise _Damaged(f"its pickle is malformed (stack underflow at byte {self.src.pos:,})") from None
        except KeyError as exc:
            raise _Damaged(f"its pickle refers to a memo entry that does not exist ({_short(exc.args[0])})") from None

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def readline_str(self) -> str:
        return self.src.readline()[:-1].decode("utf-8")

    def call(self, func: Any, args: Any) -> Any:
        if not isinstance(func, _Global) or func.call is None:
            what = func.path if isinstance(func, (_Global, _StorageType)) else _short(func)
            raise _Refused(f"its pickle calls {what}, which is not a callable this reader allows")
        if not isinstance(args, tuple):
            raise _Damaged(f"{func.path} is called with {_short(args)} instead of an argument tuple")
        return func.call(self, args)

    def new(self, cls: Any, args: Any) -> Any:
        if not isinstance(cls, _Global) or cls.new is None:
            raise _Refused(f"its pickle creates an instance of "
                           f"{cls.path if isinstance(cls, (_Global, _StorageType)) else _short(cls)}, "
                           "which is not a class this reader allows")
        return cls.new(self, args)

    def build(self, inst: Any, state: Any) -> None:
        if isinstance(inst, (StandIn, DictStandIn)):
            inst.__setstate__(state)
            return
        if type(inst) is OrderedDict:  # a module's state_dict() carries ``_metadata`` (layer versions)
            _ordered_dict_state(inst, state)
            return
        entry = self.builds.pop(id(inst), None)
        if entry is None or entry[0] is not inst:
            what = inst.path if isinstance(inst, (_Global, _StorageType)) else f"a {type(inst).__name__}"
            raise _Refused(f"its pickle sets the state of {what}, which this reader does not allow "
                           "(only of mmengine records, numpy arrays and dtypes it made)")
        entry[1](self, inst, state)


_I4, _U4, _U8, _U2, _F8 = struct.Struct("<i"), struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<H"), \
    struct.Struct(">d")


def _n1(vm: _Unpickler) -> int:
    return vm.src.read(1)[0]


def _n4(vm: _Unpickler) -> int:
    return _U4.unpack(vm.src.read(4))[0]


def _n8(vm: _Unpickler) -> int:
    return _U8.unpack(vm.src.read(8))[0]


def _line(vm: _Unpickler) -> bytes:
    return vm.src.readline()[:-1]


def _int_line(vm: _Unpickler) -> int | bool:
    line = _line(vm)
    return {b"00": False, b"01": True}[line] if line in (b"00", b"01") else int(line, 0)


def _ordered_dict_state(inst: OrderedDict, state: Any) -> None:
    """Attributes pickled with an OrderedDict (torch: ``_metadata``); none may shadow a dict method or dunder."""
    if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
        state = state[0]
    if state is None:
        return
    if not isinstance(state, dict):
        raise _Damaged(f"an OrderedDict is given the state {_short(state)}")
    for key in state:
        if not isinstance(key, str) or key.startswith("__") or hasattr(OrderedDict, key):
            raise _Refused(f"its pickle sets the attribute {_short(key)} of an OrderedDict, which would change "
                           "how it behaves (only new private attributes such as torch's _metadata are read)")
    inst.__dict__.update(state)


def _op_proto(vm: _Unpickler) -> None:
    if _n1(vm) > 5:
        raise _Damaged("its pickle protocol is newer than 5")


def _op_mark(vm: _Unpickler) -> None:
    vm.metastack.append(vm.stack)
    vm.stack = []


def _op_pop(vm: _Unpickler) -> None:
    if vm.stack:
        vm.stack.pop()
    else:
        vm.pop_mark()


def _op_long4(vm: _Unpickler) -> None:
    n = _I4.unpack(vm.src.read(4))[0]
    if not 0 <= n <= 1024:
        raise _Refused(f"its pickle holds an integer of {n:,} bytes")
    vm.push(int.from_bytes(vm.src.read(n), "little", signed=True))


def _op_string(vm: _Unpickler) -> None:
    data = _line(vm)
    if len(data) < 2 or data[0] != data[-1] or data[0] not in b"\"'":
        raise _Damaged("a STRING value is not quoted")
    vm.push(codecs.escape_decode(data[1:-1])[0].decode("utf-8"))


def _op_binstring(vm: _Unpickler) -> None:
    n = _I4.unpack(vm.src.read(4))[0]
    if n < 0:
        raise _Damaged("a string has a negative length")
    vm.push(vm.src.read(n).decode("utf-8"))


def _op_tuple(n: int) -> Callable[[_Unpickler], None]:
    def op(vm: _Unpickler) -> None:
        if len(vm.stack) < n:
            raise IndexError
        items = vm.stack[len(vm.stack) - n:]
        del vm.stack[len(vm.stack) - n:]
        vm.push(vm.nested(tuple(items), items))
    return op


def _op_dict(vm: _Unpickler) -> None:
    items = vm.pop_mark()
    vm.push({})
    _set_items(vm, items)


def _op_append(vm: _Unpickler, items: list[Any]) -> None:
    target = vm.stack[-1]
    if type(target) is not list:
        raise _Refused(f"its pickle appends to a {type(target).__name__}, not a list")
    target.extend(items)


def _set_items(vm: _Unpickler, items: list[Any]) -> None:
    target = vm.stack[-1]
    if not (type(target) in (dict, OrderedDict) or isinstance(target, DictStandIn)):
        raise _Refused(f"its pickle sets items of a {type(target).__name__}, not of a dict")
    if len(items) % 2:
        raise _Damaged("a pickle sets a key without a value")
    _fill(vm, target, items, pairs=True)


def _fill(vm: _Unpickler, target: Any, items: list[Any], *, pairs: bool) -> None:
    """Insert ``items`` (``pairs``: key, value, key, value, ...) into the dict / set ``target``, refusing a hash
    flood: keys chosen to share one hash make each insert scan all the others (10**6 keys: hours)."""
    step = 2 if pairs else 1
    for i in range(0, len(items), step):
        if pairs:
            target[items[i]] = items[i + 1]
        else:
            target.add(items[i])
        size = len(target)
        if size >= 1024 and not size & (size - 1) and vm.hash_checked.get(id(target)) != size:
            vm.hash_checked[id(target)] = size  # at 1024, 2048, 4096, ... entries: O(n) in all
            counts: dict[int, int] = {}
            for key in target:
                if type(key) not in (str, bytes):  # their hashes are salted per process
                    h = hash(key)
                    counts[h] = counts.get(h, 0) + 1
            if counts and max(counts.values()) > MAX_SAME_HASH:
                raise _Refused(f"a dict or set in its pickle holds {max(counts.values()):,} keys with the same "
                               "hash (a hash flood, which takes hours to insert)")


def _set_from(vm: _Unpickler, items: list[Any], kind: type) -> set | frozenset:
    result: set = set()
    _fill(vm, result, items, pairs=False)
    return result if kind is set else frozenset(result)


def _op_additems(vm: _Unpickler) -> None:
    items = vm.pop_mark()
    target = vm.stack[-1]
    if type(target) is not set:
        raise _Refused(f"its pickle adds items to a {type(target).__name__}, not to a set")
    _fill(vm, target, items, pairs=False)


def _op_stack_global(vm: _Unpickler) -> None:
    name, module = vm.stack.pop(), vm.stack.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise _Damaged("a global's module or name is not a string")
    vm.push(vm.find_class(module, name))


def _op_reduce(vm: _Unpickler) -> None:
    args = vm.stack.pop()
    vm.stack[-1] = vm.call(vm.stack[-1], args)


def _op_obj(vm: _Unpickler) -> None:
    args = vm.pop_mark()
    if not args:
        raise IndexError
    vm.push(vm.call(args[0], tuple(args[1:])))


def _op_newobj(vm: _Unpickler, with_kwargs: bool) -> None:
    if with_kwargs:
        vm.stack.pop()  # keyword arguments: no allowed class takes any
    args = vm.stack.pop()
    vm.push(vm.new(vm.stack.pop(), args))


def _op_build(vm: _Unpickler) -> None:
    state = vm.stack.pop()
    vm.build(vm.stack[-1], state)


def _op_put(vm: _Unpickler, index: int) -> None:
    if index < 0:
        raise _Damaged("a negative memo index")
    vm.memo[index] = vm.stack[-1]


def _op_frozenset(vm: _Unpickler) -> None:
    items = vm.pop_mark()
    vm.push(vm.nested(_set_from(vm, items, frozenset), items))


def _op_tuple_mark(vm: _Unpickler) -> None:
    items = vm.pop_mark()
    vm.push(vm.nested(tuple(items), items))


def _op_global(vm: _Unpickler) -> None:
    module = vm.readline_str()
    vm.push(vm.find_class(module, vm.readline_str()))


def _op_inst(vm: _Unpickler) -> None:
    module = vm.readline_str()
    cls = vm.find_class(module, vm.readline_str())
    vm.push(vm.call(cls, tuple(vm.pop_mark())))


def _push(value: Callable[[_Unpickler], Any]) -> Callable[[_Unpickler], None]:
    return lambda vm: vm.push(value(vm))


# Opcode -> handler, as in pickle.py. Not accepted: EXT1/2/4 (the copyreg extension registry names any global)
# and NEXT_BUFFER / READONLY_BUFFER (out-of-band data). STOP is handled by the machine's loop.
_DISPATCH: dict[int, Callable[[_Unpickler], None]] = {ord(k): v for k, v in {
    b"\x80": _op_proto, b"\x95": lambda vm: vm.src.read(8),  # FRAME: a length hint only
    b"(": _op_mark, b"0": _op_pop, b"1": lambda vm: vm.pop_mark(), b"2": _push(lambda vm: vm.stack[-1]),
    b"N": _push(lambda vm: None), b"\x88": _push(lambda vm: True), b"\x89": _push(lambda vm: False),
    b"I": _push(_int_line),
    b"J": _push(lambda vm: _I4.unpack(vm.src.read(4))[0]), b"K": _push(_n1),
    b"M": _push(lambda vm: _U2.unpack(vm.src.read(2))[0]),
    b"L": _push(lambda vm: int(_line(vm).removesuffix(b"L"), 0)),
    b"\x8a": _push(lambda vm: int.from_bytes(vm.src.read(_n1(vm)), "little", signed=True)),
    b"\x8b": _op_long4, b"F": _push(lambda vm: float(_line(vm))),
    b"G": _push(lambda vm: _F8.unpack(vm.src.read(8))[0]),
    b"S": _op_string, b"T": _op_binstring, b"U": _push(lambda vm: vm.src.read(_n1(vm)).decode("utf-8")),
    b"B": _push(lambda vm: vm.src.read(_n4(vm))), b"C": _push(lambda vm: vm.src.read(_n1(vm))),
    b"\x8e": _push(lambda vm: vm.src.read(_n8(vm))), b"\x96": _push(lambda vm: bytearray(vm.src.read(_n8(vm)))),
    b"V": _push(lambda vm: str(_line(vm), "raw-unicode-escape")),
    b"X": _push(lambda vm: str(vm.src.read(_n4(vm)), "utf-8", "surrogatepass")),
    b"\x8d": _push(lambda vm: str(vm.src.read(_n8(vm)), "utf-8", "surrogatepass")),
    b"\x8c": _push(lambda vm: str(vm.src.read(_n1(vm)), "utf-8", "surrogatepass")),
    b")": _push(lambda vm: ()), b"t": _op_tuple_mark, b"\x85": _op_tuple(1), b"\x86": _op_tuple(2),
    b"\x87": _op_tuple(3), b"]": _push(lambda vm: []), b"l": _push(lambda vm: vm.pop_mark()),
    b"}": _push(lambda vm: {}), b"d": _op_dict, b"\x8f": _push(lambda vm: set()), b"\x91": _op_frozenset,
    b"a": lambda vm: _op_append(vm, [vm.stack.pop()]), b"e": lambda vm: _op_append(vm, vm.pop_mark()),
    b"s": lambda vm: _set_items(vm, [*reversed([vm.stack.pop(), vm.stack.pop()])]),
    b"u": lambda vm: _set_items(vm, vm.pop_mark()), b"\x90": _op_additems,
    b"c": _op_global, b"\x93": _op_stack_global, b"R": _op_reduce, b"i": _op_inst, b"o": _op_obj,
    b"\x81": lambda vm: _op_newobj(vm, False), b"\x92": lambda vm: _op_newobj(vm, True), b"b": _op_build,
    b"P": _push(lambda vm: vm.persistent_load(_line(vm).decode("ascii", "replace"))),
    b"Q": _push(lambda vm: vm.persistent_load(vm.stack.pop())),
    b"p": lambda vm: _op_put(vm, int(_line(vm))), b"q": lambda vm: _op_put(vm, _n1(vm)),
    b"r": lambda vm: _op_put(vm, _n4(vm)), b"\x94": lambda vm: _op_put(vm, len(vm.memo)),
    b"g": _push(lambda vm: vm.memo[int(_line(vm))]), b"h": _push(lambda vm: vm.memo[_n1(vm)]),
    b"j": _push(lambda vm: vm.memo[_n4(vm)]),
}.items()}

# --- the two container formats -------------------------------------------------------------------------

_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")


def _storage_id(pid: Any, length: int) -> tuple:
    """The fields of a storage persistent id after checking its exact form; any other id is refused."""
    if not isinstance(pid, tuple):
        raise _Refused(f"its pickle holds a persistent id that is {_short(pid)}, not a storage reference")
    kind = pid[0] if pid else None
    if isinstance(kind, bytes):
        kind = kind.decode("ascii", "replace")
    if kind != "storage":
        raise _Refused(f"its pickle holds a persistent id of type {_short(kind)}; only tensor storages are read "
                       "(a 'module' id makes torch's own loader write a .patch file)")
    if len(pid) != length:
        raise _Damaged(f"a storage reference has {len(pid)} fields instead of {length}")
    _, stype, key, location, numel = pid[:5]
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if not isinstance(stype, _StorageType):
        raise _Refused(f"a storage reference names {_short(stype)} instead of a torch storage type")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise _Damaged(f"a storage key is {_short(key)}")
    if not isinstance(location, (str, bytes)) or len(location) > 64:
        raise _Damaged(f"a storage location is {_short(location)}")
    return stype, key, _int(numel, f"the size of storage {key}"), pid[5:]


def _byteswap(buf: Any, dtype: Any) -> None:
    size = dtype.itemsize // (2 if dtype.is_complex else 1)
    if size > 1:
        buf.numpy().view(f"u{size}").byteswap(inplace=True)


def _finish(storages: list[_Storage]) -> None:
    """Bool storages hold 0 / 1 only (other bytes make torch's bool kernels misbehave)."""
    for st in storages:
        if st.has_bool:
            st.buf[st.offset:st.offset + st.nbytes].ne_(0)


def _read_zip(fh: Any, size: int, budget: _Budget) -> Any:
    torch = _torch()
    try:
        end = zipfile._EndRecData(fh)
    except (OSError, struct.error):
        end = None
    if end is None:
        raise _Damaged("damaged zip container (no end of central directory)")
    if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_ENTRIES:
        raise _Refused(f"its zip container declares {end[zipfile._ECD_ENTRIES_TOTAL]:,} members "
                       f"(a checkpoint has one per tensor storage; at most {MAX_ENTRIES:,} are read)")
    fh.seek(0)
    zf = zipfile.ZipFile(fh)
    names = zf.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise _Refused("it is a TorchScript archive, which holds code; save the weights with "
                       "torch.save(model.state_dict(), ...) instead")
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise _Damaged("not a torch.save zip archive (no single PREFIX/data.pkl)")
    prefix = pkls[0][:-len("data.pkl")]
    info = zf.getinfo(pkls[0])
    if info.file_size > MAX_PICKLE_BYTES:
        raise _Refused(f"its data.pkl declares {info.file_size:,} bytes (at most {MAX_PICKLE_BYTES:,} are read)")
    data = zf.read(info)
    swap = False
    if prefix + "byteorder" in names:
        order = zf.getinfo(prefix + "byteorder")
        mark = zf.read(order) if order.file_size <= 16 else b""
        if mark not in (b"little", b"big"):
            raise _Damaged(f"its byteorder record is {_short(mark)}")
        swap = mark == b"big"
    storages: dict[str, _Storage] = {}

    def load_storage(key: str, dtype: Any, nbytes: int) -> _Storage:
        name = f"{prefix}data/{key}"
        try:
            rec = zf.getinfo(name)
        except KeyError:
            raise _Damaged(f"storage {key} has no record {name}") from None
        if rec.file_size != nbytes:
            raise _Damaged(f"storage {key} declares {nbytes:,} bytes but its record holds {rec.file_size:,}")
        if rec.flag_bits & 0x1:
            raise _Refused(f"storage record {name} is encrypted")
        budget.charge(nbytes)
        buf = torch.empty(nbytes, dtype=torch.uint8)
        view = memoryview(buf.numpy()).cast("B") if nbytes else memoryview(b"")
        if rec.compress_type == zipfile.ZIP_STORED:
            fh.seek(rec.header_offset)
            header = fh.read(30)
            if len(header) != 30 or header[:4] != b"PK\x03\x04":
                raise _Damaged(f"storage record {name} has no local header")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            start = rec.header_offset + 30 + name_len + extra_len
            if start + nbytes > size:
                raise _Damaged(f"storage record {name} reaches past the end of the file")
            fh.seek(start)
            src = _Source(fh, start + nbytes)
            src.readinto(view)
            if zlib.crc32(view) != rec.CRC:
                raise _Damaged(f"storage record {name} fails its CRC check (the file is damaged)")
        else:  # torch.save stores records uncompressed; a re-zipped file is still read, bounded by its size
            with zf.open(rec) as member:
                got = 0
                while got < nbytes:
                    chunk = member.read(min(1 << 20, nbytes - got))
                    if not chunk:
                        raise _Damaged(f"storage record {name} ends early")
                    view[got:got + len(chunk)] = chunk
                    got += len(chunk)
        st = _Storage(key, dtype, buf, 0, nbytes, nbytes // dtype.itemsize)
        if swap:
            _byteswap(buf, dtype)
        return st

    def persistent_load(pid: Any) -> _Storage:
        stype, key, numel, _ = _storage_id(pid, 5)
        st = storages.get(key)
        nbytes = numel * stype.dtype.itemsize
        if st is None:
            st = storages[key] = load_storage(key, stype.dtype, nbytes)
        elif nbytes > st.nbytes:
            raise _Damaged(f"storage {key} is referenced with {nbytes:,} bytes but holds {st.nbytes:,}")
        return st

    vm = _Unpickler(_Source(io.BytesIO(data), len(data)), budget, persistent_load=persistent_load)
    result = vm.load()
    _finish(list(storages.values()))
    return result


def _read_legacy(fh: Any, size: int, budget: _Budget) -> Any:
    torch = _torch()
    src = _Source(fh, size)

    def header() -> Any:
        return _Unpickler(src, budget, find_class=_no_globals).load()

    try:
        magic = header()
    except ForbiddenGlobal:
        raise
    except _Refused as exc:
        raise _Damaged(f"not a PyTorch checkpoint (neither the zip nor the legacy format: {exc})") from None
    if type(magic) is not int or magic != _MAGIC:
        raise _Damaged("not a PyTorch checkpoint (no PyTorch magic number; a plain pickle is not read)")
    version = header()
    if type(version) is not int or version != _LEGACY_PROTOCOL:
        raise _Damaged("unsupported legacy PyTorch protocol version")
    sys_info = header()
    if not isinstance(sys_info, dict):
        raise _Damaged("its sys_info is not a dict")
    if sys_info.get("little_endian", True) is not True:
        raise _Refused("it was saved on a big-endian machine in the legacy format, which this reader does not read; "
                       "save it again with torch.save (the zip format) there")
    roots: dict[str, _Storage] = {}
    views: dict[str, _Storage] = {}
    declared = [0]

    def persistent_load(pid: Any) -> _Storage:
        stype, key, numel, (view,) = _storage_id(pid, 6)
        dtype = stype.dtype
        root = roots.get(key)
        if root is None:
            nbytes = numel * dtype.itemsize
            declared[0] += nbytes + 8
            if declared[0] > src.end - src.pos:
                raise _Refused(f"its storages declare {declared[0]:,} bytes but only {src.end - src.pos:,} are left "
                               "in the file; refused before allocating them")
            budget.charge(nbytes)
            root = roots[key] = _Storage(key, dtype, torch.empty(nbytes, dtype=torch.uint8), 0, nbytes, numel)
        if view is None:
            return root
        if not isinstance(view, tuple) or len(view) != 3:
            raise _Damaged(f"storage {key} has a malformed view {_short(view)}")
        vkey, offset, vsize = view
        if not isinstance(vkey, str) or not _KEY.fullmatch(vkey):
            raise _Damaged(f"a storage view key is {_short(vkey)}")
        if vkey not in views:
            item = root.dtype.itemsize
            offset, vsize = _int(offset, "a storage view offset"), _int(vsize, "a storage view size")
            if (offset + vsize) * item > root.nbytes:
                raise _Damaged(f"storage view {vkey} reaches past the end of storage {key}")
            views[vkey] = _Storage(vkey, root.dtype, root.buf, offset * item, vsize * item, vsize)
        return views[vkey]

    result = _Unpickler(src, budget, persistent_load=persistent_load).load()
    keys = header()
    if not isinstance(keys, list) or len(keys) != len(set(k for k in keys if isinstance(k, str))) \
            or set(keys) != set(roots):
        raise _Damaged("its list of storages does not match the storages its tensors use")
    for key in keys:
        root = roots[key]
        stored = struct.unpack("<q", src.read(8))[0]
        if stored != root.numel:
            raise _Damaged(f"storage {key} holds {stored:,} values but its tensors declare {root.numel:,}")
        if root.nbytes:
            src.readinto(memoryview(root.buf.numpy()).cast("B"))
    _finish(list(roots.values()) + list(views.values()))
    return result


def _looks_like_tar(head: bytes) -> bool:
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    try:  # a v7 tar header: its checksum field matches its bytes
        stored = int(head[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(head[:148]) + 8 * 32 + sum(head[156:512])


def _open_regular(path: Path) -> tuple[Any, int]:
    """``path`` opened for reading if it is a regular file (a FIFO, device or folder is refused without blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"not a file: {path} (a checkpoint must be a regular file, not a pipe, device "
                                  "or folder)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _read(path: Path) -> Any:
    fh, size = _open_regular(path)
    with fh:
        head = fh.read(512)
        fh.seek(0)
        budget = _Budget(size)
        if head[:4] == b"PK\x03\x04":
            return _read_zip(fh, size, budget)
        if _looks_like_tar(head):
            raise _Refused("it is a tar-format checkpoint of PyTorch 0.3 or older, which this reader does not read "
                           "(its members are never extracted); save the weights again with a current PyTorch")
        return _read_legacy(fh, size, budget)


# --- loading -------------------------------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """Stand-ins, numpy values and ordered dicts as plain Python data (dict / list / int / float / str).

    A stand-in becomes ``{"__class__": <dotted name>, **its attributes}``; tensors are left as they are, and
    so are numpy arrays of more than ``MAX_PLAIN_ITEMS`` values. Raises ``ValueError`` for data nested more
    than ``MAX_META_DEPTH`` deep or that contains itself (a value shared by two parents is fine).
    """
    active: set[int] = set()  # the containers on the way down to the current one

    def plain(value: Any, depth: int) -> Any:
        if isinstance(value, (str, bytes, bytearray, int, float, complex, type(None))):
            return value
        if depth > MAX_META_DEPTH:
            raise ValueError(f"is nested more than {MAX_META_DEPTH} levels deep")
        if id(value) in active:
            raise ValueError("contains itself (a reference cycle)")
        active.add(id(value))
        try:
            return convert(value, depth + 1)
        finally:
            active.discard(id(value))

    def convert(value: Any, depth: int) -> Any:
        if isinstance(value, StandIn):
            return {"__class__": type(value).class_path, **{k: plain(v, depth) for k, v in value.__dict__.items()}}
        if isinstance(value, Mapping):
            return {k: plain(v, depth) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            items = [plain(v, depth) for v in value]
            return tuple(items) if type(value) is tuple else items
        if isinstance(value, (set, frozenset)):
            return type(value)(plain(v, depth) for v in value)
        if type(value).__module__ == "numpy":
            import numpy

            if isinstance(value, numpy.ndarray):
                if value.dtype.hasobject:
                    return plain(value.tolist(), depth)
                return value.tolist() if value.size <= MAX_PLAIN_ITEMS else value
            if isinstance(value, numpy.generic):
                return value.item()
            if isinstance(value, numpy.dtype):
                return str(value)
        return value

    return plain(obj, 0)


_UNEXPECTED = (ValueError, TypeError, ArithmeticError, LookupError, RecursionError, MemoryError, RuntimeError,
               EOFError, struct.error, zipfile.BadZipFile, AttributeError, NotImplementedError, UnicodeError)


def load_torch_file_safely(path: str | os.PathLike) -> Any:
    """The object a ``torch.save`` file holds, read on the CPU by this module's own reader (see the module
    docstring): tensors, plain containers, numpy values and inert stand-ins.

    Raises :class:`CheckpointError` naming the file (and the forbidden global, for a pickle that asks for
    one); nothing from a refused file is executed and no file is written.
    """
    path = Path(path)
    try:
        return _read(path)
    except ForbiddenGlobal as exc:
        raise CheckpointError(
            f"refusing to load {path}: it asks for the Python global {exc.path}, which is not a data type a "
            f"checkpoint may hold (tensors, numbers, strings, containers, numpy arrays, mmengine's log "
            f"records); unpickling it could run code, so it was stopped before anything was called") from None
    except _Refused as exc:
        raise CheckpointError(f"{exc.verb} {path}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except _UNEXPECTED as exc:
        text = str(exc)
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {type(exc).__name__}: "
                              f"{text[:300]}{'...' if len(text) > 300 else ''}") from None


def _describe_key(key: Any) -> str:
    return key[:80] + ("..." if len(key) > 80 else "") if isinstance(key, str) else f"({_short(key)})"


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
        keys = ", ".join(_describe_key(k) for k in list(obj)[:12]) or "none"
        raise CheckpointError(f"{path} holds no state dict (top-level keys: {keys})")
    bad = [_describe_key(k) for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: the state dict has entries that are not named tensors: "
                              f"{', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}")
    state_dict = weights if isinstance(weights, OrderedDict) else OrderedDict(weights)
    plain = {}
    for part in ("meta", "message_hub"):
        value = obj.get(part) if fmt != "state_dict" else None
        try:
            plain[part] = None if value is None else to_plain(value)
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"refusing to load {path}: its {part} {exc}; a checkpoint's {part} is plain "
                                  "data (numbers, strings, lists and dicts)") from None
    meta = plain["meta"] or {}
    if not isinstance(meta, dict):
        meta = {"value": meta}
    return {
        "state_dict": state_dict,
        "meta": meta,
        "message_hub": plain["message_hub"],
        "format": fmt,
        "other_keys": [_describe_key(k) for k in obj if k not in taken],
    }
