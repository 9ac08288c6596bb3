"""The legacy container format (``_use_new_zipfile_serialization=False``).

Reads the magic number, protocol 1001 and ``sys_info`` header pickles (no globals allowed), the object pickle,
the list of storage keys, then each storage's bytes. Storages are allocated only once the bytes they declare
are known to be left in the file; big-endian files are refused.
"""

from __future__ import annotations

import struct
from typing import Any

from core.checkpoint_io.allow_list import no_globals
from core.checkpoint_io.limits import Budget, Damaged, ForbiddenGlobal, Refused, Source
from core.checkpoint_io.machine import Unpickler
from core.checkpoint_io.objects import KEY, Storage, check_int, finish_storages, short, storage_id
from core.checkpoint_io.torch_globals import import_torch

_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy format: the first pickle
_LEGACY_PROTOCOL = 1001


def read_legacy(fh: Any, size: int, budget: Budget) -> Any:
    torch = import_torch()
    src = Source(fh, size)

    def header() -> Any:
        return Unpickler(src, budget, find_class=no_globals).load()

    try:
        magic = header()
    except ForbiddenGlobal:
        raise
    except Refused as exc:
        raise Damaged(f"not a PyTorch checkpoint (neither the zip nor the legacy format: {exc})") from None
    if type(magic) is not int or magic != _MAGIC:
        raise Damaged("not a PyTorch checkpoint (no PyTorch magic number; a plain pickle is not read)")
    version = header()
    if type(version) is not int or version != _LEGACY_PROTOCOL:
        raise Damaged("unsupported legacy PyTorch protocol version")
    sys_info = header()
    if not isinstance(sys_info, dict):
        raise Damaged("its sys_info is not a dict")
    if sys_info.get("little_endian", True) is not True:
        raise Refused("it was saved on a big-endian machine in the legacy format, which this reader does not read; "
                      "save it again with torch.save (the zip format) there")
    roots: dict[str, Storage] = {}
    views: dict[str, Storage] = {}
    declared = [0]

    def persistent_load(pid: Any) -> Storage:
        stype, key, numel, (view,) = storage_id(pid, 6)
        dtype = stype.dtype
        root = roots.get(key)
        if root is None:
            nbytes = numel * dtype.itemsize
            declared[0] += nbytes + 8
            if declared[0] > src.end - src.pos:
                raise Refused(f"its storages declare {declared[0]:,} bytes but only {src.end - src.pos:,} are left "
                              "in the file; refused before allocating them")
            budget.charge(nbytes)
            root = roots[key] = Storage(key, dtype, torch.empty(nbytes, dtype=torch.uint8), 0, nbytes, numel)
        if view is None:
            return root
        if not isinstance(view, tuple) or len(view) != 3:
            raise Damaged(f"storage {key} has a malformed view {short(view)}")
        vkey, offset, vsize = view
        if not isinstance(vkey, str) or not KEY.fullmatch(vkey):
            raise Damaged(f"a storage view key is {short(vkey)}")
        if vkey not in views:
            item = root.dtype.itemsize
            offset, vsize = check_int(offset, "a storage view offset"), check_int(vsize, "a storage view size")
            if (offset + vsize) * item > root.nbytes:
                raise Damaged(f"storage view {vkey} reaches past the end of storage {key}")
            views[vkey] = Storage(vkey, root.dtype, root.buf, offset * item, vsize * item, vsize)
        return views[vkey]

    result = Unpickler(src, budget, persistent_load=persistent_load).load()
    keys = header()
    if not isinstance(keys, list) or len(keys) != len(set(k for k in keys if isinstance(k, str))) \
            or set(keys) != set(roots):
        raise Damaged("its list of storages does not match the storages its tensors use")
    for key in keys:
        root = roots[key]
        stored = struct.unpack("<q", src.read(8))[0]
        if stored != root.numel:
            raise Damaged(f"storage {key} holds {stored:,} values but its tensors declare {root.numel:,}")
        if root.nbytes:
            src.readinto(memoryview(root.buf.numpy()).cast("B"))
    finish_storages(list(roots.values()) + list(views.values()))
    return result
