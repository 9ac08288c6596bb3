"""Opening a checkpoint file and dispatching on its format; :func:`load_torch_file_safely`.

Only a regular file is opened (a FIFO, device or folder is refused without blocking); the zip format goes to
:mod:`core.checkpoint_io.zip_format`, tar-format files of PyTorch 0.3 and older are refused, anything else is
read as the legacy format (:mod:`core.checkpoint_io.legacy_format`). Every refusal and unexpected error becomes
a :class:`~core.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from pathlib import Path
from typing import Any

from core.checkpoint_io.legacy_format import read_legacy
from core.checkpoint_io.limits import Budget, ForbiddenGlobal, Refused
from core.checkpoint_io.zip_format import read_zip
from core.errors import CheckpointError


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
        budget = Budget(size)
        if head[:4] == b"PK\x03\x04":
            return read_zip(fh, size, budget)
        if _looks_like_tar(head):
            raise Refused("it is a tar-format checkpoint of PyTorch 0.3 or older, which this reader does not read "
                          "(its members are never extracted); save the weights again with a current PyTorch")
        return read_legacy(fh, size, budget)


_UNEXPECTED = (ValueError, TypeError, ArithmeticError, LookupError, RecursionError, MemoryError, RuntimeError,
               EOFError, struct.error, zipfile.BadZipFile, AttributeError, NotImplementedError, UnicodeError)


def load_torch_file_safely(path: str | os.PathLike) -> Any:
    """The object a ``torch.save`` file holds, read on the CPU by our own reader (see :mod:`core.safe_pickle`):
    tensors, plain containers, numpy values and inert stand-ins.

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
    except Refused as exc:
        raise CheckpointError(f"{exc.verb} {path}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except _UNEXPECTED as exc:
        text = str(exc)
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {type(exc).__name__}: "
                              f"{text[:300]}{'...' if len(text) > 300 else ''}") from None
