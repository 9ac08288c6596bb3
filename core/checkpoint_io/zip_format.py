"""The zip container format (``torch.save`` since 1.6): one ``PREFIX/data.pkl`` and one record per storage.

TorchScript archives are refused; the member count and the pickle's size are bounded before anything is read;
each storage record is copied with a bounded read into a buffer charged to the budget and CRC checked (a
re-compressed record is streamed, bounded by its declared size). No member is extracted or opened by name
from the pickle.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import Any

from core.checkpoint_io import limits
from core.checkpoint_io.limits import Budget, Damaged, Refused, Source
from core.checkpoint_io.machine import Unpickler
from core.checkpoint_io.objects import Storage, finish_storages, short, storage_id
from core.checkpoint_io.torch_globals import import_torch


def _byteswap(buf: Any, dtype: Any) -> None:
    size = dtype.itemsize // (2 if dtype.is_complex else 1)
    if size > 1:
        buf.numpy().view(f"u{size}").byteswap(inplace=True)


def read_zip(fh: Any, size: int, budget: Budget) -> Any:
    torch = import_torch()
    try:
        end = zipfile._EndRecData(fh)
    except (OSError, struct.error):
        end = None
    if end is None:
        raise Damaged("damaged zip container (no end of central directory)")
    if end[zipfile._ECD_ENTRIES_TOTAL] > limits.MAX_ENTRIES:
        raise Refused(f"its zip container declares {end[zipfile._ECD_ENTRIES_TOTAL]:,} members "
                      f"(a checkpoint has one per tensor storage; at most {limits.MAX_ENTRIES:,} are read)")
    fh.seek(0)
    zf = zipfile.ZipFile(fh)
    names = zf.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise Refused("it is a TorchScript archive, which holds code; save the weights with "
                      "torch.save(model.state_dict(), ...) instead")
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise Damaged("not a torch.save zip archive (no single PREFIX/data.pkl)")
    prefix = pkls[0][:-len("data.pkl")]
    info = zf.getinfo(pkls[0])
    if info.file_size > limits.MAX_PICKLE_BYTES:
        raise Refused(f"its data.pkl declares {info.file_size:,} bytes (at most {limits.MAX_PICKLE_BYTES:,} are read)")
    data = zf.read(info)
    swap = False
    if prefix + "byteorder" in names:
        order = zf.getinfo(prefix + "byteorder")
        mark = zf.read(order) if order.file_size <= 16 else b""
        if mark not in (b"little", b"big"):
            raise Damaged(f"its byteorder record is {short(mark)}")
        swap = mark == b"big"
    storages: dict[str, Storage] = {}

    def load_storage(key: str, dtype: Any, nbytes: int) -> Storage:
        name = f"{prefix}data/{key}"
        try:
            rec = zf.getinfo(name)
        except KeyError:
            raise Damaged(f"storage {key} has no record {name}") from None
        if rec.file_size != nbytes:
            raise Damaged(f"storage {key} declares {nbytes:,} bytes but its record holds {rec.file_size:,}")
        if rec.flag_bits & 0x1:
            raise Refused(f"storage record {name} is encrypted")
        budget.charge(nbytes)
        buf = torch.empty(nbytes, dtype=torch.uint8)
        view = memoryview(buf.numpy()).cast("B") if nbytes else memoryview(b"")
        if rec.compress_type == zipfile.ZIP_STORED:
            fh.seek(rec.header_offset)
            header = fh.read(30)
            if len(header) != 30 or header[:4] != b"PK\x03\x04":
                raise Damaged(f"storage record {name} has no local header")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            start = rec.header_offset + 30 + name_len + extra_len
            if start + nbytes > size:
                raise Damaged(f"storage record {name} reaches past the end of the file")
            fh.seek(start)
            src = Source(fh, start + nbytes)
            src.readinto(view)
            if zlib.crc32(view) != rec.CRC:
                raise Damaged(f"storage record {name} fails its CRC check (the file is damaged)")
        else:  # torch.save stores records uncompressed; a re-zipped file is still read, bounded by its size
            with zf.open(rec) as member:
                got = 0
                while got < nbytes:
                    chunk = member.read(min(1 << 20, nbytes - got))
                    if not chunk:
                        raise Damaged(f"storage record {name} ends early")
                    view[got:got + len(chunk)] = chunk
                    got += len(chunk)
        st = Storage(key, dtype, buf, 0, nbytes, nbytes // dtype.itemsize)
        if swap:
            _byteswap(buf, dtype)
        return st

    def persistent_load(pid: Any) -> Storage:
        stype, key, numel, _ = storage_id(pid, 5)
        st = storages.get(key)
        nbytes = numel * stype.dtype.itemsize
        if st is None:
            st = storages[key] = load_storage(key, stype.dtype, nbytes)
        elif nbytes > st.nbytes:
            raise Damaged(f"storage {key} is referenced with {nbytes:,} bytes but holds {st.nbytes:,}")
        return st

    vm = Unpickler(Source(io.BytesIO(data), len(data)), budget, persistent_load=persistent_load)
    result = vm.load()
    finish_storages(list(storages.values()))
    return result
