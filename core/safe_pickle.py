"""Read a PyTorch / mmengine checkpoint without executing pickled code and without ``torch.load``.

A ``.pth`` file is a pickle: loading it with plain ``pickle`` (or torch's full unpickler, ``torch.load`` with
weights-only mode off) runs whatever callable the file names, e.g. ``os.system``; and even with a restricted
``find_class``, ``torch.load``'s own loader reacts to what the pickle says (its legacy format writes a
``NAME.patch`` file chosen by the pickle when a "module" persistent id carries source text, and allocates
storages of any declared size before reading them). So this reader reads both container formats itself and
never calls ``torch.load``, ``pickle.load`` or anything of torch's serialization code:

- the **zip format** (``torch.save`` since 1.6): one ``PREFIX/data.pkl`` pickle and one record
  ``PREFIX/data/KEY`` per storage (read with a bounded copy, CRC checked);
- the **legacy format** (``_use_new_zipfile_serialization=False``): the magic number, protocol 1001 and
  ``sys_info`` pickles, the object pickle, the list of storage keys, then each storage's bytes;
- the **tar format** of PyTorch 0.3 and older, TorchScript archives, big-endian legacy files and anything
  else are refused (no archive member is ever extracted or opened).

The pickles are run by :class:`~core.checkpoint_io.machine.Unpickler`, a small pickle machine of our own
(protocols 0-5) that:

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
  dict or set sharing a hash (a hash flood of crafted ints takes hours to insert); these bounds are in
  :mod:`core.checkpoint_io.limits`.

Every refusal is a :class:`~core.errors.CheckpointError` naming the file (and the forbidden global, for a
pickle that asks for one); nothing from a refused file is called, and no file is written.

mmengine checkpoints (``Runner.save_checkpoint``) are dicts with ``meta`` (epoch, iter, cfg text, seed,
dataset_meta, ...), ``state_dict`` (model weights), ``message_hub`` (``MessageHub.state_dict()``: log
scalars as ``HistoryBuffer`` objects, runtime info; old versions pickled the ``MessageHub`` object) and
optionally ``optimizer`` / ``param_schedulers``. torch and numpy are imported only when a file is read.

The reader lives in :mod:`core.checkpoint_io`, one module per layer: ``limits`` (the bounds above, the
allocation budget, bounded reads, the internal refusals), ``objects`` (what the machine hands out, argument
checks, the hash-flood guard, storage ids), ``stand_ins``, ``torch_globals`` / ``numpy_globals`` /
``allow_list`` (the allow-list), ``machine`` (the pickle machine), ``zip_format`` / ``legacy_format`` (the two
containers) and ``reader`` (opening a file, :func:`load_torch_file_safely`). This module is the public face:
the mmengine-level API and :func:`to_plain`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.checkpoint_io import limits
from core.checkpoint_io.limits import ForbiddenGlobal
from core.checkpoint_io.objects import short
from core.checkpoint_io.reader import load_torch_file_safely
from core.checkpoint_io.stand_ins import STAND_INS, DictStandIn, StandIn
from core.errors import CheckpointError

__all__ = ["STAND_INS", "DictStandIn", "ForbiddenGlobal", "StandIn", "load_mmengine_checkpoint",
           "load_torch_file_safely", "to_plain"]


def to_plain(obj: Any) -> Any:
    """Stand-ins, numpy values and ordered dicts as plain Python data (dict / list / int / float / str).

    A stand-in becomes ``{"__class__": <dotted name>, **its attributes}``; tensors are left as they are, and
    so are numpy arrays of more than ``MAX_PLAIN_ITEMS`` values. Raises ``ValueError`` for data nested more
    than ``MAX_META_DEPTH`` deep or that contains itself (a value shared by two parents is fine); both bounds
    are in :mod:`core.checkpoint_io.limits`.
    """
    active: set[int] = set()  # the containers on the way down to the current one

    def plain(value: Any, depth: int) -> Any:
        if isinstance(value, (str, bytes, bytearray, int, float, complex, type(None))):
            return value
        if depth > limits.MAX_META_DEPTH:
            raise ValueError(f"is nested more than {limits.MAX_META_DEPTH} levels deep")
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
                return value.tolist() if value.size <= limits.MAX_PLAIN_ITEMS else value
            if isinstance(value, numpy.generic):
                return value.item()
            if isinstance(value, numpy.dtype):
                return str(value)
        return value

    return plain(obj, 0)


def _describe_key(key: Any) -> str:
    return key[:80] + ("..." if len(key) > 80 else "") if isinstance(key, str) else f"({short(key)})"


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
