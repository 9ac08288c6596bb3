"""numpy's allow-listed globals: arrays and scalars of plain dtypes, rebuilt by our code from checked bytes.

No record, datetime or sub-array dtypes; an array's BUILD is applied only to the empty array this module made
for it. numpy is imported only when a file holds numpy values.
"""

from __future__ import annotations

import re
from typing import Any

from core.checkpoint_io.limits import Damaged, Refused
from core.checkpoint_io.objects import Global, Machine, check_args, check_shape, prod, short

NUMPY_MODULES = {"numpy.core.multiarray": "multiarray", "numpy._core.multiarray": "multiarray",
                 "numpy.core.numeric": "numeric", "numpy._core.numeric": "numeric"}
_NUMPY_CODE = re.compile(r"(b1|[iu][1248]|f[248]|c(8|16)|O8|[US][0-9]{1,7})")


def _numpy():
    import numpy

    return numpy


NDARRAY = Global("numpy.ndarray")


def np_dtype(vm: Machine, args: tuple):
    args = check_args(args, "numpy.dtype", 1, 3)
    code = args[0]
    if not isinstance(code, str) or not _NUMPY_CODE.fullmatch(code):
        raise Refused(f"numpy.dtype is asked for {short(code)}: only numbers, booleans, strings and objects "
                      "are read (no records, datetimes or sub-arrays)")
    dtype = _numpy().dtype(code, False, True)  # a fresh copy that its BUILD may set the byte order of
    vm.buildable(dtype, _build_dtype)
    return dtype


def _build_dtype(vm: Machine, dtype: Any, state: Any) -> None:
    if not isinstance(state, tuple) or len(state) != 8 or state[0] != 3 or state[1] not in ("<", ">", "|", "=") \
            or state[2:5] != (None, None, None):
        raise Refused(f"a numpy dtype {dtype.str} is given the state {short(state)}: only a byte order is read")
    own = dtype.__reduce__()[2]
    dtype.__setstate__((3, state[1], *own[2:]))  # numpy's own sizes and flags; only the byte order is the file's


def np_reconstruct(vm: Machine, args: tuple):
    cls, shape, code = check_args(args, "numpy.core.multiarray._reconstruct", 3)
    if cls is not NDARRAY:
        raise Refused(f"numpy.core.multiarray._reconstruct is asked for {short(cls)}: only numpy.ndarray")
    if shape not in ((0,), [0]) or code not in (b"b", "b"):  # numpy's own pickles; the BUILD then sets the data
        raise Refused(f"numpy.core.multiarray._reconstruct is asked for an array of shape {short(shape)} without "
                      "its data: only an empty array that the pickle then fills is read")
    array = _numpy().empty((0,), _numpy().uint8)
    vm.buildable(array, _build_array)
    return array


def _build_array(vm: Machine, array: Any, state: Any) -> None:
    np = _numpy()
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise Damaged(f"a numpy array is given the state {short(state)}")
    shape, dtype, fortran, data = state
    shape = check_shape(shape, "a numpy array's shape")
    if not isinstance(dtype, np.dtype) or not isinstance(fortran, (bool, int)):
        raise Damaged("a numpy array's state has no dtype")
    count = prod(shape)
    if dtype.hasobject:
        if not isinstance(data, list) or len(data) != count:
            raise Damaged(f"a numpy object array of shape {list(shape)} is given "
                          f"{len(data) if isinstance(data, list) else short(data)} items")
        vm.charge(8 * count)
    else:
        if not isinstance(data, (bytes, bytearray)) or len(data) != count * dtype.itemsize:
            raise Damaged(f"a numpy array of shape {list(shape)} and dtype {dtype} needs "
                          f"{count * dtype.itemsize:,} bytes but is given "
                          f"{len(data) if isinstance(data, (bytes, bytearray)) else short(data)}")
        vm.charge(len(data))
    array.__setstate__((1, shape, dtype, bool(fortran), data))


def np_scalar(vm: Machine, args: tuple):
    np = _numpy()
    dtype, data = check_args(args, "numpy.core.multiarray.scalar", 2)
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise Damaged("a numpy scalar's bytes do not fit its dtype")
    return np.frombuffer(data, dtype, count=1)[0]


def np_frombuffer(vm: Machine, args: tuple):
    np = _numpy()
    data, dtype, shape, order = check_args(args, "numpy.core.numeric._frombuffer", 4)
    shape = check_shape(shape, "a numpy array's shape")
    if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F", "A", "K") \
            or not isinstance(data, (bytes, bytearray)) or len(data) != prod(shape) * dtype.itemsize:
        raise Damaged("a numpy array's bytes do not fit its dtype and shape")
    vm.charge(len(data))
    return np.frombuffer(bytearray(data), dtype).reshape(shape, order="F" if order == "F" else "C")
