"""The restricted pickle machine: our own interpreter of pickle protocols 0-5 that only builds data.

:class:`Unpickler` resolves globals through the allow-list (:mod:`core.checkpoint_io.allow_list`), accepts
persistent ids only through the reader's ``persistent_load``, applies BUILD only to stand-ins, ordered dicts and
objects it made for that purpose, APPEND only to lists, SETITEM only to dicts, ADDITEMS only to sets, and counts
its operations and how deep hashable containers nest (:mod:`core.checkpoint_io.limits`). Extension codes and
out-of-band buffers are refused.
"""

from __future__ import annotations

import codecs
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from core.checkpoint_io import limits
from core.checkpoint_io.allow_list import find_class, no_persistent_ids
from core.checkpoint_io.limits import Budget, Damaged, Refused, Source
from core.checkpoint_io.objects import Global, StorageType, fill, set_from, short
from core.checkpoint_io.stand_ins import DictStandIn, StandIn


class Unpickler:
    """A pickle machine (protocols 0-5) that only builds data: see the module docstring for what it allows."""

    def __init__(self, src: Source, budget: Budget, *, find_class: Callable[[str, str], Any] = find_class,
                 persistent_load: Callable[[Any], Any] = no_persistent_ids):
        self.src, self.budget = src, budget
        self.find_class, self.persistent_load = find_class, persistent_load
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.depth: dict[int, int] = {}  # id -> nesting of tuples / frozensets deeper than 1 (kept alive below)
        self.keep: list[Any] = []
        self.builds: dict[int, tuple[Any, Callable[[Unpickler, Any, Any], None]]] = {}
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
            if depth > limits.MAX_NESTING:
                raise Refused(f"it nests tuples more than {limits.MAX_NESTING} deep")
            self.depth[id(obj)] = depth
            self.keep.append(obj)
        return obj

    def buildable(self, obj: Any, build: Callable[[Unpickler, Any, Any], None]) -> None:
        self.builds[id(obj)] = (obj, build)

    # the machine
    def load(self) -> Any:
        read, dispatch, limit = self.src.read, _DISPATCH, limits.MAX_OPS
        ops = 0
        try:
            while True:
                code = read(1)[0]
                ops += 1
                if ops > limit:
                    raise Refused(f"its pickle has more than {limit:,} operations")
                if code == 0x2E:  # STOP
                    if self.metastack or len(self.stack) != 1:
                        raise Damaged("a pickle ends with a malformed stack")
                    return self.stack.pop()
                handler = dispatch.get(code)
                if handler is None:
                    raise Refused(f"its pickle uses the opcode {bytes([code])!r} at byte {self.src.pos - 1:,}, "
                                  "which this reader does not accept")
                handler(self)
        except IndexError:
            raise Damaged(f"its pickle is malformed (stack underflow at byte {self.src.pos:,})") from None
        except KeyError as exc:
            raise Damaged(f"its pickle refers to a memo entry that does not exist ({short(exc.args[0])})") from None

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def readline_str(self) -> str:
        return self.src.readline()[:-1].decode("utf-8")

    def call(self, func: Any, args: Any) -> Any:
        if not isinstance(func, Global) or func.call is None:
            what = func.path if isinstance(func, (Global, StorageType)) else short(func)
            raise Refused(f"its pickle calls {what}, which is not a callable this reader allows")
        if not isinstance(args, tuple):
            raise Damaged(f"{func.path} is called with {short(args)} instead of an argument tuple")
        return func.call(self, args)

    def new(self, cls: Any, args: Any) -> Any:
        if not isinstance(cls, Global) or cls.new is None:
            raise Refused(f"its pickle creates an instance of "
                          f"{cls.path if isinstance(cls, (Global, StorageType)) else short(cls)}, "
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
            what = inst.path if isinstance(inst, (Global, StorageType)) else f"a {type(inst).__name__}"
            raise Refused(f"its pickle sets the state of {what}, which this reader does not allow "
                          "(only of mmengine records, numpy arrays and dtypes it made)")
        entry[1](self, inst, state)


_I4, _U4, _U8, _U2, _F8 = struct.Struct("<i"), struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<H"), \
    struct.Struct(">d")


def _n1(vm: Unpickler) -> int:
    return vm.src.read(1)[0]


def _n4(vm: Unpickler) -> int:
    return _U4.unpack(vm.src.read(4))[0]


def _n8(vm: Unpickler) -> int:
    return _U8.unpack(vm.src.read(8))[0]


def _line(vm: Unpickler) -> bytes:
    return vm.src.readline()[:-1]


def _int_line(vm: Unpickler) -> int | bool:
    line = _line(vm)
    return {b"00": False, b"01": True}[line] if line in (b"00", b"01") else int(line, 0)


def _ordered_dict_state(inst: OrderedDict, state: Any) -> None:
    """Attributes pickled with an OrderedDict (torch: ``_metadata``); none may shadow a dict method or dunder."""
    if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
        state = state[0]
    if state is None:
        return
    if not isinstance(state, dict):
        raise Damaged(f"an OrderedDict is given the state {short(state)}")
    for key in state:
        if not isinstance(key, str) or key.startswith("__") or hasattr(OrderedDict, key):
            raise Refused(f"its pickle sets the attribute {short(key)} of an OrderedDict, which would change "
                          "how it behaves (only new private attributes such as torch's _metadata are read)")
    inst.__dict__.update(state)


def _op_proto(vm: Unpickler) -> None:
    if _n1(vm) > 5:
        raise Damaged("its pickle protocol is newer than 5")


def _op_mark(vm: Unpickler) -> None:
    vm.metastack.append(vm.stack)
    vm.stack = []


def _op_pop(vm: Unpickler) -> None:
    if vm.stack:
        vm.stack.pop()
    else:
        vm.pop_mark()


def _op_long4(vm: Unpickler) -> None:
    n = _I4.unpack(vm.src.read(4))[0]
    if not 0 <= n <= 1024:
        raise Refused(f"its pickle holds an integer of {n:,} bytes")
    vm.push(int.from_bytes(vm.src.read(n), "little", signed=True))


def _op_string(vm: Unpickler) -> None:
    data = _line(vm)
    if len(data) < 2 or data[0] != data[-1] or data[0] not in b"\"'":
        raise Damaged("a STRING value is not quoted")
    vm.push(codecs.escape_decode(data[1:-1])[0].decode("utf-8"))


def _op_binstring(vm: Unpickler) -> None:
    n = _I4.unpack(vm.src.read(4))[0]
    if n < 0:
        raise Damaged("a string has a negative length")
    vm.push(vm.src.read(n).decode("utf-8"))


def _op_tuple(n: int) -> Callable[[Unpickler], None]:
    def op(vm: Unpickler) -> None:
        if len(vm.stack) < n:
            raise IndexError
        items = vm.stack[len(vm.stack) - n:]
        del vm.stack[len(vm.stack) - n:]
        vm.push(vm.nested(tuple(items), items))
    return op


def _op_dict(vm: Unpickler) -> None:
    items = vm.pop_mark()
    vm.push({})
    _set_items(vm, items)


def _op_append(vm: Unpickler, items: list[Any]) -> None:
    target = vm.stack[-1]
    if type(target) is not list:
        raise Refused(f"its pickle appends to a {type(target).__name__}, not a list")
    target.extend(items)


def _set_items(vm: Unpickler, items: list[Any]) -> None:
    target = vm.stack[-1]
    if not (type(target) in (dict, OrderedDict) or isinstance(target, DictStandIn)):
        raise Refused(f"its pickle sets items of a {type(target).__name__}, not of a dict")
    if len(items) % 2:
        raise Damaged("a pickle sets a key without a value")
    fill(vm, target, items, pairs=True)


def _op_additems(vm: Unpickler) -> None:
    items = vm.pop_mark()
    target = vm.stack[-1]
    if type(target) is not set:
        raise Refused(f"its pickle adds items to a {type(target).__name__}, not to a set")
    fill(vm, target, items, pairs=False)


def _op_stack_global(vm: Unpickler) -> None:
    name, module = vm.stack.pop(), vm.stack.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise Damaged("a global's module or name is not a string")
    vm.push(vm.find_class(module, name))


def _op_reduce(vm: Unpickler) -> None:
    args = vm.stack.pop()
    vm.stack[-1] = vm.call(vm.stack[-1], args)


def _op_obj(vm: Unpickler) -> None:
    args = vm.pop_mark()
    if not args:
        raise IndexError
    vm.push(vm.call(args[0], tuple(args[1:])))


def _op_newobj(vm: Unpickler, with_kwargs: bool) -> None:
    if with_kwargs:
        vm.stack.pop()  # keyword arguments: no allowed class takes any
    args = vm.stack.pop()
    vm.push(vm.new(vm.stack.pop(), args))


def _op_build(vm: Unpickler) -> None:
    state = vm.stack.pop()
    vm.build(vm.stack[-1], state)


def _op_put(vm: Unpickler, index: int) -> None:
    if index < 0:
        raise Damaged("a negative memo index")
    vm.memo[index] = vm.stack[-1]


def _op_frozenset(vm: Unpickler) -> None:
    items = vm.pop_mark()
    vm.push(vm.nested(set_from(vm, items, frozenset), items))


def _op_tuple_mark(vm: Unpickler) -> None:
    items = vm.pop_mark()
    vm.push(vm.nested(tuple(items), items))


def _op_global(vm: Unpickler) -> None:
    module = vm.readline_str()
    vm.push(vm.find_class(module, vm.readline_str()))


def _op_inst(vm: Unpickler) -> None:
    module = vm.readline_str()
    cls = vm.find_class(module, vm.readline_str())
    vm.push(vm.call(cls, tuple(vm.pop_mark())))


def _push(value: Callable[[Unpickler], Any]) -> Callable[[Unpickler], None]:
    return lambda vm: vm.push(value(vm))


# Opcode -> handler, as in pickle.py. Not accepted: EXT1/2/4 (the copyreg extension registry names any global)
# and NEXT_BUFFER / READONLY_BUFFER (out-of-band data). STOP is handled by the machine's loop.
_DISPATCH: dict[int, Callable[[Unpickler], None]] = {ord(k): v for k, v in {
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
