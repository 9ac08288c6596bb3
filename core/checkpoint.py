"""Save and load models as safetensors weights + a JSON config next to them.

``model.safetensors`` holds the weights (the config is also copied into its metadata, so a lone file
still loads); ``model.json`` holds the :class:`VPPConfig`. Loading refuses, with one message naming the
file and the keys or tensors concerned:

* a config that is not a JSON object of valid keys, types and ranges (:meth:`VPPConfig.validate`),
  JSON nested too deeply, or a config file larger than ``MAX_CONFIG_BYTES``;
* a config that describes a model far larger than the file's tensors (checked on the header, before
  anything is allocated);
* tensors that are missing, unexpected, of another shape, or of another dtype family than the model's
  parameter (float parameters load only from float16/bfloat16/float32/float64 tensors; this is what
  catches bytes relabelled to another dtype, e.g. float16 data declared int8 or float32 with a shape
  that still fits the byte count);
* NaN or Inf in any floating tensor, also after conversion to the parameter's dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from core.atomic import atomic_write_bytes, atomic_write_text
from core.build import VPPConfig, build_vpp, parameter_count
from core.errors import CheckpointError, ConfigError
from core.model.vpp import VPPModel

CONFIG_KEY = "vpp_config"
MAX_CONFIG_BYTES = 1 << 20  # a model config is about 1 KB; 1 MiB leaves room for 10000 category names

# safetensors dtype names float parameters may be stored as (casting to the parameter's dtype is exact
# enough for all of them); float8 and the integer and bool types are refused for float parameters.
FLOAT_STORAGE = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
_FLOAT_TORCH = frozenset(FLOAT_STORAGE.values())
# A config asking for more weights than this and more than twice what the file holds is refused from the
# header alone; smaller mismatches are built and reported key by key.
EARLY_SIZE_CHECK = 50_000_000


def config_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_checkpoint(model: VPPModel, config: VPPConfig, path: str | Path, *, metadata: dict | None = None,
                    half: bool = False) -> Path:
    """Write ``path`` (.safetensors) and its JSON config atomically; returns the weights path.

    ``half`` stores floating-point weight matrices and kernels (2+ dims, nearly all the bytes) as
    float16; vectors (biases, norms, pixel statistics) stay float32. Loading casts back to the model's
    float32, so evaluate the half file itself if its figures matter.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() and v.ndim >= 2 else v for k, v in state.items()}
    meta = {CONFIG_KEY: config.to_json(), **{k: str(v) for k, v in (metadata or {}).items()}}
    atomic_write_bytes(path, save(state, metadata=meta))
    atomic_write_text(config_path(path), config.to_json() + "\n")
    return path


def parse_config(text: str, *, source: str) -> VPPConfig:
    """A validated config from JSON text; every problem becomes one :class:`CheckpointError` naming ``source``."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{source}: the JSON is nested too deeply to be a model config") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise CheckpointError(f"{source}: not a valid model config ({exc})") from None
    try:
        return VPPConfig.from_dict(data, source=source)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def read_config(path: str | Path) -> VPPConfig:
    """The config of a checkpoint: the JSON file beside it, else the copy in the weights' metadata."""
    path = Path(path)
    side = config_path(path)
    if side.is_file():
        try:
            size = side.stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise CheckpointError(f"{side}: {size:,} bytes is too large for a model config "
                                      f"(at most {MAX_CONFIG_BYTES:,})")
            text = side.read_bytes().decode("utf-8")
        except OSError as exc:
            raise CheckpointError(f"{side}: cannot read the model config ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"{side}: the model config is not UTF-8 text ({exc.reason} at byte "
                                  f"{exc.start})") from None
        return parse_config(text, source=str(side))
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if CONFIG_KEY not in meta:
        raise CheckpointError(f"{path}: no config found (expected {side.name} beside it or a '{CONFIG_KEY}' entry)")
    return parse_config(meta[CONFIG_KEY], source=f"{path} (the config in its metadata)")


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


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", config: VPPConfig | None = None
) -> tuple[VPPModel, VPPConfig]:
    """Build the model described by the checkpoint's config and load its weights onto ``device``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found" if not path.exists()
                              else f"{path}: not a file (expected a .safetensors checkpoint)")
    if config is not None:
        try:
            cfg = config.validate(source=f"{path}: the model config given for it")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
    else:
        cfg = read_config(path)
    header = read_header(path)
    stored = sum(_numel(shape) for _, shape in header.values())
    wanted = parameter_count(cfg)
    if wanted > max(2 * stored, EARLY_SIZE_CHECK):  # refuse before allocating a model the file cannot fill
        raise CheckpointError(f"{path}: its config describes a model of {wanted:,} weights but the file holds "
                              f"{stored:,}; the config does not belong to these weights "
                              f"(check {config_path(path).name})")
    model = build_vpp(cfg)
    check_fit(model, {k: (_family_of_storage(d), d, s) for k, (d, s) in header.items()}, source=str(path))
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    load_state_strict(model, state, source=str(path))
    return model.to(device).eval(), cfg


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


def _listing(items: list[str]) -> str:
    return ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


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
