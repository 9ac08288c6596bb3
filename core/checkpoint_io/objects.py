"""What the restricted pickle machine hands to a pickle, and the checks on values taken from the file.

:class:`Global` (an allow-listed global: its dotted name and what calling / creating it does, our code),
:class:`StorageType` and :class:`Storage` (a tensor storage of the file); :class:`Machine`, the part of the
pickle machine the allow-listed callables use; the argument checks those callables share (``check_args``,
``check_int``, ``check_shape``); the hash-flood guard used for every dict and set the pickle fills (``fill``);
and the exact form of a storage persistent id (``storage_id``), shared by both container formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from core.checkpoint_io import limits
from core.checkpoint_io.limits import Damaged, Refused


class Machine(Protocol):
    """What an allow-listed callable may use of the pickle machine (:class:`core.checkpoint_io.machine.Unpickler`)."""

    hash_checked: dict[int, int]

    def charge(self, n: int) -> None: ...

    def nested(self, obj: Any, items: Any) -> Any: ...

    def buildable(self, obj: Any, build: Callable[[Machine, Any, Any], None]) -> None: ...


class Global:
    """An allow-listed global as the pickle sees it: its dotted name and what calling / creating it does
    (our code, never the real object's). No ``__dict__``: a pickle cannot set attributes on it."""

    __slots__ = ("call", "new", "path")

    def __init__(self, path: str, call: Callable[[Machine, tuple], Any] | None = None,
                 new: Callable[[Machine, tuple], Any] | None = None):
        self.path, self.call, self.new = path, call, new

    def __repr__(self) -> str:
        return f"<global {self.path}>"


class StorageType:
    """``torch.<X>Storage`` as a pickle names it in a persistent id: only its dtype is used."""

    __slots__ = ("dtype", "path")

    def __init__(self, path: str, dtype: Any):
        self.path, self.dtype = path, dtype


class Storage:
    """A storage of the file: ``nbytes`` bytes in ``buf`` (a uint8 tensor) from ``offset``."""

    __slots__ = ("buf", "dtype", "has_bool", "key", "nbytes", "numel", "offset")

    def __init__(self, key: str, dtype: Any, buf: Any, offset: int, nbytes: int, numel: int):
        self.key, self.dtype, self.buf, self.offset, self.nbytes, self.numel = key, dtype, buf, offset, nbytes, numel
        self.has_bool = False  # some tensor views it as bool: its bytes are made 0 / 1 once read


def short(value: Any) -> str:
    """A bounded description of a value taken from the file (never a repr of a deep or huge object)."""
    if isinstance(value, (str, bytes)):
        text = repr(value[:60])
        return text + ("..." if len(value) > 60 else "")
    if isinstance(value, (bool, int, float)) and not (isinstance(value, int) and value.bit_length() > 64):
        return repr(value)
    if isinstance(value, (Global, StorageType)):
        return f"the global {value.path}"
    return f"a {type(value).__name__}"


def check_args(args: tuple, name: str, low: int, high: int | None = None) -> tuple:
    if not isinstance(args, tuple) or not low <= len(args) <= (low if high is None else high):
        count = f"{low}" if high is None or high == low else f"{low} to {high}"
        raise Damaged(f"{name} is called with {len(args) if isinstance(args, tuple) else short(args)} "
                      f"arguments, not {count}")
    return args


def check_int(value: Any, what: str, *, low: int = 0, high: int = 1 << 62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Damaged(f"{what} is {short(value)}, not an integer in {low}..{high}")
    return value


def check_shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > 64:
        raise Damaged(f"{what} is {short(value)}, not a tuple of at most 64 sizes")
    return tuple(check_int(v, what) for v in value)


def prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def fill(vm: Machine, target: Any, items: list[Any], *, pairs: bool) -> None:
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
            if counts and max(counts.values()) > limits.MAX_SAME_HASH:
                raise Refused(f"a dict or set in its pickle holds {max(counts.values()):,} keys with the same "
                              "hash (a hash flood, which takes hours to insert)")


def set_from(vm: Machine, items: list[Any], kind: type) -> set | frozenset:
    result: set = set()
    fill(vm, result, items, pairs=False)
    return result if kind is set else frozenset(result)


KEY = re.compile(r"[A-Za-z0-9_]{1,64}")


def storage_id(pid: Any, length: int) -> tuple:
    """The fields of a storage persistent id after checking its exact form; any other id is refused."""
    if not isinstance(pid, tuple):
        raise Refused(f"its pickle holds a persistent id that is {short(pid)}, not a storage reference")
    kind = pid[0] if pid else None
    if isinstance(kind, bytes):
        kind = kind.decode("ascii", "replace")
    if kind != "storage":
        raise Refused(f"its pickle holds a persistent id of type {short(kind)}; only tensor storages are read "
                      "(a 'module' id makes torch's own loader write a .patch file)")
    if len(pid) != length:
        raise Damaged(f"a storage reference has {len(pid)} fields instead of {length}")
    _, stype, key, location, numel = pid[:5]
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if not isinstance(stype, StorageType):
        raise Refused(f"a storage reference names {short(stype)} instead of a torch storage type")
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise Damaged(f"a storage key is {short(key)}")
    if not isinstance(location, (str, bytes)) or len(location) > 64:
        raise Damaged(f"a storage location is {short(location)}")
    return stype, key, check_int(numel, f"the size of storage {key}"), pid[5:]


def finish_storages(storages: list[Storage]) -> None:
    """Bool storages hold 0 / 1 only (other bytes make torch's bool kernels misbehave)."""
    for st in storages:
        if st.has_bool:
            st.buf[st.offset:st.offset + st.nbytes].ne_(0)
