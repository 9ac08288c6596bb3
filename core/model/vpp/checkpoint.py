"""Save and load the project's models as safetensors weights + a JSON config next to them.

``model.safetensors`` holds the weights (the config is also copied into its metadata, so a lone file
still loads); ``model.json`` holds the :class:`VPPConfig`. Loading refuses, with one message naming the
file and the keys or tensors concerned:

* a config that is not a JSON object of valid keys, types and ranges (:meth:`VPPConfig.validate`),
  JSON nested too deeply, or a config file larger than ``MAX_CONFIG_BYTES``;
* a config that describes a model far larger than the file's tensors (checked on the header, before
  anything is allocated);
* tensors that do not fit the model, or are not finite (:mod:`core.model.weights`, the loader both
  families share).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save

from core.atomic import atomic_write_bytes, atomic_write_text
from core.errors import CheckpointError, ConfigError
from core.model.vpp.builder import build_vpp
from core.model.vpp.config import VPPConfig, parameter_count
from core.model.vpp.model import VPPModel
from core.model.weights import check_fit, load_weights, numel, read_header, read_metadata, require_file, storage_entries

CONFIG_KEY = "vpp_config"
MAX_CONFIG_BYTES = 1 << 20  # a model config is about 1 KB; 1 MiB leaves room for 10000 category names
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
    meta = read_metadata(path)
    if CONFIG_KEY not in meta:
        raise CheckpointError(f"{path}: no config found (expected {side.name} beside it or a '{CONFIG_KEY}' entry)")
    return parse_config(meta[CONFIG_KEY], source=f"{path} (the config in its metadata)")


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", config: VPPConfig | None = None
) -> tuple[VPPModel, VPPConfig]:
    """Build the model described by the checkpoint's config and load its weights onto ``device``."""
    path = Path(path)
    require_file(path)
    if config is not None:
        try:
            cfg = config.validate(source=f"{path}: the model config given for it")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
    else:
        cfg = read_config(path)
    header = read_header(path)
    stored = sum(numel(shape) for _, shape in header.values())
    wanted = parameter_count(cfg)
    if wanted > max(2 * stored, EARLY_SIZE_CHECK):  # refuse before allocating a model the file cannot fill
        raise CheckpointError(f"{path}: its config describes a model of {wanted:,} weights but the file holds "
                              f"{stored:,}; the config does not belong to these weights "
                              f"(check {config_path(path).name})")
    model = build_vpp(cfg)
    check_fit(model, storage_entries(header), source=str(path))
    load_weights(model, path)
    return model.to(device).eval(), cfg
