"""torch's allow-listed globals: tensor and parameter rebuilders, ``torch.Size``, ``torch.device``, storages.

Each is our own function over the pickle's arguments (checked against the storage they view and charged to the
budget), never torch's: only torch tensors, sizes, devices and dtypes come out. torch is imported only when a
file is read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from core.checkpoint_io.limits import Damaged, Refused
from core.checkpoint_io.objects import Global, Machine, Storage, check_args, check_int, check_shape, prod, short

STORAGE_DTYPES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
                  "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                  "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
                  "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
                  "UntypedStorage": "uint8"}


def import_torch():
    import torch

    return torch


def torch_size(vm: Machine, args: tuple):
    (dims,) = check_args(args, "torch.Size", 0, 1) or ((),)
    return import_torch().Size(check_shape(dims, "a torch.Size"))


def torch_device(vm: Machine, args: tuple):
    args = check_args(args, "torch.device", 1, 2)
    index = args[1] if len(args) == 2 else None
    if not isinstance(args[0], str) or len(args[0]) > 64 or not (
            index is None or (type(index) is int and 0 <= index < 1 << 16)):
        raise Damaged("torch.device is given something other than a device name and index")
    try:
        return import_torch().device(*args)
    except RuntimeError:
        return args[0]  # a device this torch does not know: its name is all a checkpoint reader needs


def _tensor(vm: Machine, storage: Any, offset: Any, size: Any, stride: Any, dtype: Any = None):
    torch = import_torch()
    if not isinstance(storage, Storage):
        raise Damaged(f"a tensor is rebuilt from {short(storage)}, not from a storage of the file")
    dtype = storage.dtype if dtype is None else dtype
    if not isinstance(dtype, torch.dtype):
        raise Damaged(f"a tensor's dtype is {short(dtype)}")
    offset = check_int(offset, "a tensor's storage offset")
    size, stride = check_shape(size, "a tensor's size"), check_shape(stride, "a tensor's stride")
    if len(size) != len(stride):
        raise Damaged(f"a tensor has {len(size)} sizes but {len(stride)} strides")
    itemsize = dtype.itemsize
    if storage.nbytes % itemsize:
        raise Damaged(f"storage {storage.key} holds {storage.nbytes} bytes, not a whole number of {dtype} values")
    count = storage.nbytes // itemsize
    numel = prod(size)
    last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) if numel else offset - 1
    if last >= count or offset > count:
        raise Damaged(f"a tensor of size {list(size)} at offset {offset} reaches past the end of its storage "
                      f"{storage.key} ({count} values)")
    vm.charge(numel * itemsize)
    if dtype == torch.bool:
        storage.has_bool = True
    flat = storage.buf[storage.offset:storage.offset + storage.nbytes].view(dtype)
    return torch.as_strided(flat, size, stride, offset)


def _tensor_metadata(metadata: Any) -> None:
    if metadata is None or (isinstance(metadata, dict) and not any(metadata.values())):
        return
    raise Refused("a tensor carries conjugate / negative-view metadata, which weights never have")


def _rebuild_v1(vm: Machine, args: tuple):
    storage, offset, size, stride = check_args(args, "torch._utils._rebuild_tensor", 4)
    return _tensor(vm, storage, offset, size, stride)


def _rebuild_v2(vm: Machine, args: tuple):
    args = check_args(args, "torch._utils._rebuild_tensor_v2", 6, 7)
    _tensor_metadata(args[6] if len(args) == 7 else None)
    return _requires_grad(_tensor(vm, *args[:4]), args[4])


def _rebuild_v3(vm: Machine, args: tuple):
    args = check_args(args, "torch._utils._rebuild_tensor_v3", 7, 8)
    _tensor_metadata(args[7] if len(args) == 8 else None)
    return _requires_grad(_tensor(vm, *args[:4], dtype=args[6]), args[4])


def _requires_grad(tensor, flag: Any):
    if not isinstance(flag, bool):
        raise Damaged(f"a tensor's requires_grad is {short(flag)}")
    if flag and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_(True)
    return tensor


def parameter(vm: Machine, args: tuple):
    args = check_args(args, "torch._utils._rebuild_parameter", 3, 4)  # _with_state has the state (ignored) last
    torch = import_torch()
    if not isinstance(args[0], torch.Tensor) or not isinstance(args[1], bool):
        raise Damaged(f"a parameter is rebuilt from {short(args[0])}")
    data = args[0].detach()
    return torch.nn.Parameter(data, args[1] and (data.is_floating_point() or data.is_complex()))


REBUILDERS: dict[str, Callable[[Machine, tuple], Any]] = {
    "_rebuild_tensor": _rebuild_v1, "_rebuild_tensor_v2": _rebuild_v2, "_rebuild_tensor_v3": _rebuild_v3,
}
TENSOR_TYPE = Global("torch.Tensor")
PARAMETER_TYPE = Global("torch.nn.parameter.Parameter")


def rebuild_from_type(vm: Machine, args: tuple):
    func, new_type, inner, _state = check_args(args, "torch._tensor._rebuild_from_type_v2", 4)
    if not isinstance(func, Global) or func.call not in REBUILDERS.values() or not isinstance(inner, tuple):
        raise Refused(f"torch._tensor._rebuild_from_type_v2 is asked to call {short(func)}: only the tensor "
                      "rebuilders are allowed")
    tensor = func.call(vm, inner)
    if new_type is PARAMETER_TYPE:
        return parameter(vm, (tensor, tensor.requires_grad, OrderedDict()))
    if new_type is not TENSOR_TYPE:
        raise Refused(f"a tensor is rebuilt as {short(new_type)}: only torch.Tensor and torch.nn.Parameter "
                      "are read (tensor subclasses can run code)")
    return tensor  # the Python attributes in _state are not restored: weights do not need them
