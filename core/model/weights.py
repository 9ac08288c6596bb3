"""Reading safetensors weights into a model strictly: the one loader behind both families' checkpoint readers.

    require_file(path)                          # a clear error for a missing file or a folder
    header = read_header(path)                  # {name: (dtype, shape)}, no tensor data read
    check_fit(model, storage_entries(header), source=str(path))    # before allocating: names, shapes, dtypes
    load_weights(model, path)                   # read every tensor and load it (load_state_strict)

Every problem is one :class:`~core.errors.CheckpointError` naming the file and the tensors concerned: tensors
that are missing, unexpected, of another shape, or of another dtype family than the model's parameter (float
parameters load only from float16/bfloat16/float32/float64 tensors; this is what catches bytes relabelled to
another dtype, e.g. float16 data declared int8 or float32 with a shape that still fits the byte count); NaN or
Inf in any floating tensor, also after conversion to the parameter's dtype.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from core.errors import CheckpointError

# safetensors dtype names float parameters may be stored as (casting to the parameter's dtype is exact
# enough for all of them); float8 and the integer and bool types are refused for float parameters.
FLOAT_STORAGE = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
_FLOAT_TORCH = frozenset(FLOAT_STORAGE.values())


def require_file(path: Path) -> None:
    """Raise a :class:`CheckpointError` unless ``path`` is a file (missing, or a folder)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found" if not path.exists()
                              else f"{path}: not a file (expected a .safetensors checkpoint)")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (empty if it has none), without reading the tensors."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (safetensors dtype, shape)}`` of a safetensors file, without reading the data."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            out = {}
            for name in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                sl = fh.get_slice(name)
                out[name] = (str(sl.get_dtype()), tuple(int(n) for n in sl.get_shape()))
            return out
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def storage_entries(header: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """:func:`read_header`'s entries as :func:`check_fit` takes them: name -> (dtype family, dtype name, shape)."""
    return {k: (_family_of_storage(d), d, s) for k, (d, s) in header.items()}


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Read every tensor of the safetensors file ``path`` (on the CPU) and load them with :func:`load_state_strict`."""
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    load_state_strict(model, state, source=str(path))


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model``; on any missing, unexpected, mis-shaped, mis-typed or non-finite
    tensor raise one clear error naming the tensors."""
    check_fit(model, {k: (_family_of_torch(v.dtype), str(v.dtype).removeprefix("torch."), tuple(v.shape))
                      for k, v in state.items()}, source=source)
    own = model.state_dict()
    ready, bad = {}, []
    for k, v in state.items():
        if v.is_floating_point():
            v = v.to(own[k].dtype)
            if not bool(torch.isfinite(v).all()):
                nan, inf = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
                bad.append(f"{k} ({nan} NaN, {inf} Inf of {v.numel()})")
        ready[k] = v
    if bad:
        holds = "tensor holds" if len(bad) == 1 else "tensors hold"
        raise CheckpointError(f"{source}: {len(bad)} {holds} NaN or Inf values, which a usable model never has: "
                              f"{_listing(bad)}. The file is damaged or comes from a diverged training run; use an "
                              "earlier checkpoint.")
    model.load_state_dict(ready, strict=True)


def check_fit(model: torch.nn.Module, entries: dict[str, tuple[str, str, tuple[int, ...]]], *, source: str) -> None:
    """Raise one error if ``entries`` (name -> (dtype family, dtype name, shape)) do not fit ``model``.

    Families: "float" (float16/bfloat16/float32/float64), "int", "bool", "other" (float8, complex, ...).
    Float parameters need float tensors; others need their own family.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in entries]  # in model order, so the first ones shown are the earliest
    unexpected = [k for k in entries if k not in own]
    shapes, dtypes = [], []
    for k, v in own.items():
        if k not in entries:
            continue
        family, name, shape = entries[k]
        if shape != tuple(v.shape):
            shapes.append(f"{k}: checkpoint {shape} {name} vs model {tuple(v.shape)}")
        if family != _family_of_torch(v.dtype):
            dtypes.append(f"{k}: checkpoint {name} vs model {str(v.dtype).removeprefix('torch.')}")
    if missing or unexpected or shapes or dtypes:
        parts = [f"{len(items)} {title}: {_listing(items)}"
                 for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                      ("shape mismatches", shapes), ("dtype mismatches", dtypes)) if items]
        hint = ("Float weights must be stored as float16, bfloat16, float32 or float64; a tensor of another dtype "
                "means the file was damaged or edited. " if dtypes else "")
        raise CheckpointError(f"{source} does not fit this model ({'; '.join(parts)}). {hint}"
                              "Is it a checkpoint of another variant or version? Check the JSON config beside it.")


def numel(shape: tuple[int, ...]) -> int:
    """The number of elements of a tensor of ``shape``."""
    n = 1
    for s in shape:
        n *= s
    return n


def _listing(items: list[str]) -> str:
    return ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")


def _family_of_storage(dtype: str) -> str:
    if dtype in FLOAT_STORAGE:
        return "float"
    if dtype == "BOOL":
        return "bool"
    if dtype[:1] in ("I", "U") and dtype[1:].isdigit():
        return "int"
    return "other"


def _family_of_torch(dtype: torch.dtype) -> str:
    if dtype in _FLOAT_TORCH:
        return "float"
    if dtype == torch.bool:
        return "bool"
    if not dtype.is_floating_point and not dtype.is_complex:
        return "int"
    return "other"
