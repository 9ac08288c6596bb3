"""The export formats, one module each, found automatically: the registry every export, CLI option and menu uses.

Every module of this package but :mod:`core.formats.base` is a format and exposes ``CODEC``, a
:class:`core.formats.base.Codec`. :func:`codecs` lists them in a stable order: ``ytvis``, ``zip``, ``davis``,
``coco``, then any other by name. A new format is one new module here: :func:`core.export.export_results`
writes it, ``vpp infer`` and ``vpp export`` get its option, the app's File menu its entry.

    from core.formats import codecs, codec
    [c.name for c in codecs()]        # ['ytvis', 'zip', 'davis', 'coco', ...]
    codec("coco").option              # '--coco'
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from core.formats.base import Codec

__all__ = ["Codec", "codec", "codecs", "staging_order"]

#: The formats that come first, in this order; any other follows by name.
_FIRST = ("ytvis", "zip", "davis", "coco")
_NOT_FORMATS = frozenset({"base"})


@functools.lru_cache(maxsize=1)
def codecs() -> tuple[Codec, ...]:
    """Every format's codec (each module's ``CODEC``), in the registry's order."""
    found: dict[str, Codec] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_FORMATS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        c = getattr(module, "CODEC", None)
        if not isinstance(c, Codec):
            raise TypeError(f"{module.__name__}: a format module must expose CODEC, a core.formats.base.Codec")
        if c.name in found:
            raise TypeError(f"{module.__name__}: the format name {c.name!r} is taken")
        found[c.name] = c
    first = [found[n] for n in _FIRST if n in found]
    return (*first, *(found[n] for n in sorted(found) if n not in _FIRST))


def codec(name: str) -> Codec:
    """The codec called ``name``; ValueError naming the known ones otherwise."""
    for c in codecs():
        if c.name == name:
            return c
    raise ValueError(f"unknown export format {name!r} (known: {', '.join(c.name for c in codecs())})")


def staging_order() -> tuple[Codec, ...]:
    """The order outputs are checked, staged and reported in: files in registry order, then folders (the
    slowest to write, DAVIS masks, last)."""
    return tuple(c for c in codecs() if not c.folder) + tuple(c for c in codecs() if c.folder)
