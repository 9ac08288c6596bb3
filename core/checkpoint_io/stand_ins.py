"""Inert stand-ins for the foreign classes a checkpoint may hold (mmengine's log and config records).

A pickle that names one of :data:`STAND_INS` gets our stand-in class, never the real one (mmengine is never
imported): a plain attribute bag (:class:`StandIn`) or a plain dict (:class:`DictStandIn`) whose class a pickle
cannot modify.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from core.checkpoint_io.limits import Damaged


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
        raise Damaged(f"an attribute name of a stand-in is a {type(key).__name__}, not a string")
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
