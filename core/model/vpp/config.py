"""The numbers of the project's own model: variants, the config and its validation, the parameter count.

``VPPConfig.for_variant(name)`` gives the defaults of "tiny" (192 d, 3 heads) or "small" (384 d, 6 heads);
``VPPConfig.from_dict`` validates a config read from a file (every key's type and range, and how they fit
together). The builder (:mod:`core.model.vpp.builder`) turns a config into a model and a PKR into keep
fractions; ``config.pkr`` is only the default PKR a session starts at (the model itself stores no PKR).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.values import is_int, is_number

VARIANTS: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 192, "num_heads": 3, "decoder_dim": 128},
    "small": {"embed_dim": 384, "num_heads": 6, "decoder_dim": 256},
}


# Allowed ranges of the config keys (inclusive). Upper bounds keep a hostile or mistyped config from
# asking for absurd amounts of memory before anything is checked against the weights; the largest
# real model (Small at 2048 px) is far inside all of them.
INT_RANGES: dict[str, tuple[int, int]] = {
    "embed_dim": (1, 4096),
    "num_heads": (1, 64),
    "depth": (2, 64),
    "patch": (2, 64),
    "map_block": (1, 63),
    "deep_block": (1, 63),
    "selective_hidden": (1, 4096),
    "dilation": (1, 63),
    "decoder_dim": (8, 4096),
    "num_queries": (1, 1000),
    "decoder_layers": (1, 32),
    "decoder_heads": (1, 64),
    "decoder_ffn": (1, 16384),
    "track_dim": (1, 4096),
    "num_classes": (1, 10000),
    "input_long_side": (32, 8192),
}
# (low, high, low included, high included)
FLOAT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "mlp_ratio": (0.0, 16.0, False, True),
    "background_share": (0.0, 1.0, True, False),
    "selection_noise": (0.0, 10.0, True, True),
    "pkr": (0.0, 1.0, False, True),
}
# int sequences: (min length, max length, element range)
INT_SEQUENCES: dict[str, tuple[int, int, tuple[int, int]]] = {
    "pos_grid": (2, 2, (1, 128)),
    "selective_blocks": (0, 16, (1, 63)),
    "out_indices": (2, 16, (0, 63)),
    "category_ids": (0, 10000, (0, 2**31 - 1)),
}
MAX_CATEGORY_NAME = 256
MAX_GRID_SIDE = 256  # tokens along the long side (input_long_side / patch): Map-SM is quadratic in tokens
MAX_PARAMETERS = 500_000_000  # 2 GB of float32; Small is 30 million
MAX_EXTRA_DEPTH = 8
MAX_EXTRA_CHARS = 65536


@dataclass(frozen=True)
class VPPConfig:
    """Everything needed to rebuild a model; saved as JSON next to the weights.

    Build configs with :meth:`from_dict` / :meth:`for_variant` (or :meth:`replace`): they check every
    key with :meth:`validate`, so a model is never built from a config with a wrong type or a value
    outside its range. Constructing the dataclass directly does not validate; call ``validate()``.
    """

    variant: str = "tiny"
    embed_dim: int = 192
    num_heads: int = 3
    depth: int = 12
    patch: int = 16
    mlp_ratio: float = 4.0
    pos_grid: tuple[int, int] = (32, 32)
    map_block: int = 1
    selective_blocks: tuple[int, ...] = (3, 6, 9)
    deep_block: int = 5
    out_indices: tuple[int, ...] = (2, 5, 8, 11)
    selective_hidden: int = 48
    dilation: int = 9
    background_share: float = 0.1
    selection_noise: float = 0.1  # training only: logistic noise scale on the keep ranking (see core.model.backbone)
    pkr: float = 1.0
    decoder_dim: int = 128
    num_queries: int = 50
    decoder_layers: int = 6
    decoder_heads: int = 4
    decoder_ffn: int = 512
    track_dim: int = 64
    num_classes: int = 40
    categories: tuple[str, ...] = ()  # names of the K classes, in class-index order
    category_ids: tuple[int, ...] = ()  # dataset ids of the K classes (default 1..K, the YTVIS convention)
    input_long_side: int = 960
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_variant(cls, variant: str, *, source: str = "model config", **overrides: Any) -> VPPConfig:
        if not isinstance(variant, str) or variant not in VARIANTS:
            raise ConfigError(f"{source}: unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
        return cls.from_dict({"variant": variant, **VARIANTS[variant], **overrides}, source=source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model config") -> VPPConfig:
        """A validated config from a JSON object; ``source`` (a file name) starts every error message."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the model config must be a JSON object, got {_kind(data)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown config keys {unknown}; valid keys are {sorted(names)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        cfg = cls(**fixed).validate(source=source)
        # a float key may be given as an integer (``"pkr": 1``); store it as the float it means
        ints = {k: float(getattr(cfg, k)) for k in FLOAT_RANGES if type(getattr(cfg, k)) is int}
        return dataclasses.replace(cfg, **ints) if ints else cfg

    def validate(self, *, source: str = "model config") -> VPPConfig:
        """Check every key's type and range and how they fit together; returns ``self``.

        Raises :class:`ConfigError` (one line: the source, then each offending ``key = value: rule``).
        """
        problems = _field_problems(self)
        if not problems:
            problems = _relation_problems(self)
        if not problems:
            n = parameter_count(self)
            if n > MAX_PARAMETERS:
                problems = [f"this config describes a model of {n / 1e6:,.0f} million parameters "
                            f"({4 * n / 2**30:.1f} GiB as float32), more than the {MAX_PARAMETERS // 10**6} million "
                            "this program builds (check depth, embed_dim, decoder sizes and pos_grid)"]
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> VPPConfig:
        """A copy with ``changes``, validated like :meth:`from_dict`."""
        return type(self).from_dict({**self.to_dict(), **changes}, source="changed model config")

    @property
    def category_names(self) -> tuple[str, ...]:
        return self.categories or tuple(f"class_{i + 1}" for i in range(self.num_classes))

    @property
    def class_to_category_id(self) -> tuple[int, ...]:
        return self.category_ids or tuple(range(1, self.num_classes + 1))


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """The value as it would appear in the JSON file, shortened."""
    if isinstance(value, dict):
        text = "{...}" if value else "{}"
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple, dict)) for v in value):
        text = "[...]"
    else:
        try:
            text = json.dumps(list(value) if isinstance(value, tuple) else value)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int_problem(key: str, v: Any, lo: int, hi: int) -> str | None:
    if not is_int(v):
        return f"{key} = {_show(v)}: must be an integer in {lo}..{hi}, not {_kind(v)}"
    if not lo <= v <= hi:
        return f"{key} = {_show(v)}: must be an integer in {lo}..{hi}"
    return None


def _interval(lo: float, hi: float, lo_in: bool, hi_in: bool) -> str:
    return f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"


def _field_problems(c: VPPConfig) -> list[str]:
    """Per-key type and range problems (no key depends on another here)."""
    out: list[str] = []
    if not isinstance(c.variant, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", c.variant):
        out.append(f"variant = {_show(c.variant)}: must be a name of 1-64 letters, digits, '_', '-' or '.' "
                   f"(the variants are {', '.join(sorted(VARIANTS))})")
    # block indices are checked against the depth when the depth itself is valid
    depth_ok = is_int(c.depth) and INT_RANGES["depth"][0] <= c.depth <= INT_RANGES["depth"][1]
    last = c.depth - 1 if depth_ok else INT_RANGES["depth"][1] - 1
    blocks = f" (block indices, depth = {c.depth})" if depth_ok else " (block indices)"
    ints = {**INT_RANGES, "map_block": (1, last), "deep_block": (1, last)}
    seqs = {**INT_SEQUENCES, "selective_blocks": (0, 16, (1, last)), "out_indices": (2, 16, (0, last))}
    for key, (lo, hi) in ints.items():
        p = _int_problem(key, getattr(c, key), lo, hi)
        if p:
            out.append(p + (blocks if key in ("map_block", "deep_block") else ""))
    for key, (lo, hi, lo_in, hi_in) in FLOAT_RANGES.items():
        v = getattr(c, key)
        rng = _interval(lo, hi, lo_in, hi_in)
        if not is_number(v):
            out.append(f"{key} = {_show(v)}: must be a number in {rng}, not {_kind(v)}")
        elif not math.isfinite(v) or not ((lo <= v) if lo_in else (lo < v)) or not ((v <= hi) if hi_in else (v < hi)):
            out.append(f"{key} = {_show(v)}: must be a number in {rng}")
    if is_int(c.dilation) and c.dilation > 0 and c.dilation % 2 == 0:
        out.append(f"dilation = {c.dilation}: must be odd (a window centred on each token), e.g. {c.dilation + 1}")
    for key, (n_lo, n_hi, (lo, hi)) in seqs.items():
        v = getattr(c, key)
        length = f"{n_lo}" if n_lo == n_hi else f"{n_lo} to {n_hi}"
        if not isinstance(v, (list, tuple)):
            out.append(f"{key} = {_show(v)}: must be a list of {length} integers, not {_kind(v)}")
        elif not n_lo <= len(v) <= n_hi:
            out.append(f"{key} = {_show(v)}: must be a list of {length} integers, got {len(v)}")
        else:
            bad = next((x for x in v if not is_int(x) or not lo <= x <= hi), None)
            if bad is not None or any(not is_int(x) for x in v):
                out.append(f"{key} = {_show(v)}: every element must be an integer in {lo}..{hi} (got {_show(bad)})"
                           + (blocks if key in ("selective_blocks", "out_indices") else ""))
    cats = c.categories
    if not isinstance(cats, (list, tuple)):
        out.append(f"categories = {_show(cats)}: must be a list of names, not {_kind(cats)}")
    elif any(not isinstance(x, str) or len(x) > MAX_CATEGORY_NAME for x in cats):
        bad = next(x for x in cats if not isinstance(x, str) or len(x) > MAX_CATEGORY_NAME)
        out.append(f"categories: every name must be a string of at most {MAX_CATEGORY_NAME} characters "
                   f"(got {_show(bad)})")
    problem = _extra_problem(c.extra)
    if problem:
        out.append(f"extra = {_show(c.extra)}: {problem}")
    return out


def _relation_problems(c: VPPConfig) -> list[str]:
    """Problems of keys that must fit each other (all keys already have valid types and ranges)."""
    out: list[str] = []
    last = c.depth - 1
    if c.embed_dim % c.num_heads:
        out.append(f"embed_dim = {c.embed_dim}: must be divisible by num_heads = {c.num_heads}")
    if c.decoder_dim % 8:
        out.append(f"decoder_dim = {c.decoder_dim}: must be a multiple of 8 (the pixel decoder's group norms)")
    if c.decoder_dim % c.decoder_heads:
        out.append(f"decoder_dim = {c.decoder_dim}: must be divisible by decoder_heads = {c.decoder_heads}")
    if int(c.embed_dim * c.mlp_ratio) < 1:
        out.append(f"mlp_ratio = {c.mlp_ratio:g}: gives an empty MLP for embed_dim = {c.embed_dim}")
    if not 1 <= c.map_block <= last:
        out.append(f"map_block = {c.map_block}: must be a block index in 1..{last} (depth = {c.depth})")
    sel = tuple(c.selective_blocks)
    if any(b <= a for a, b in itertools.pairwise(sel)):
        out.append(f"selective_blocks = {_show(sel)}: must be strictly increasing")
    elif sel and not (c.map_block < sel[0] and sel[-1] <= last):
        out.append(f"selective_blocks = {_show(sel)}: must be block indices in {c.map_block + 1}..{last} "
                   f"(after map_block = {c.map_block}, inside depth = {c.depth})")
    if not c.map_block <= c.deep_block <= last:
        out.append(f"deep_block = {c.deep_block}: must be a block index in {c.map_block}..{last} "
                   f"(map_block = {c.map_block}, depth = {c.depth})")
    outs = tuple(c.out_indices)
    if any(i > last for i in outs):
        out.append(f"out_indices = {_show(outs)}: must be block indices in 0..{last} (depth = {c.depth})")
    elif any(b < a for a, b in itertools.pairwise(outs)):
        out.append(f"out_indices = {_show(outs)}: must be in increasing order (repeats allowed)")
    for key in ("categories", "category_ids"):
        v = getattr(c, key)
        if v and len(v) != c.num_classes:
            out.append(f"{key}: {len(v)} entries for num_classes = {c.num_classes} (give one per class or none)")
    ids = tuple(c.category_ids)
    if len(set(ids)) != len(ids):
        out.append(f"category_ids = {_show(ids)}: must not repeat an id")
    if c.input_long_side < c.patch:
        out.append(f"input_long_side = {c.input_long_side}: must be at least patch = {c.patch}")
    elif -(-c.input_long_side // c.patch) > MAX_GRID_SIDE:
        out.append(f"input_long_side = {c.input_long_side}: at patch = {c.patch} that is "
                   f"{-(-c.input_long_side // c.patch)} tokens along the long side, more than {MAX_GRID_SIDE} "
                   f"(Map-SM compares every token with every other one); use at most "
                   f"{MAX_GRID_SIDE * c.patch} or a larger patch")
    return out


def _extra_problem(extra: Any) -> str | None:
    """Why ``extra`` is not a plain JSON object of bounded size and depth (None if it is)."""
    if not isinstance(extra, dict):
        return f"must be a JSON object, not {_kind(extra)}"
    stack = [(extra, 1)]
    while stack:  # iterative: a deeply nested value must not hit Python's recursion limit here
        value, depth = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            return f"is nested more than {MAX_EXTRA_DEPTH} levels deep"
        if isinstance(value, dict):
            if any(not isinstance(k, str) for k in value):
                return "object keys must be strings"
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"holds a non-finite number ({value})"
        elif not (value is None or isinstance(value, (str, int, bool))):
            return f"holds {_kind(value)}, which is not a JSON value"
    if len(json.dumps(extra)) > MAX_EXTRA_CHARS:
        return f"is larger than {MAX_EXTRA_CHARS} characters of JSON"
    return None


def parameter_count(c: VPPConfig) -> int:
    """The number of weights ``build_vpp(c)`` creates, computed without building anything.

    Exact for the model :func:`core.model.vpp.builder.build_vpp` builds (tested); used to refuse absurd configs
    before they allocate.
    """
    d, dd, n_out = c.embed_dim, c.decoder_dim, len(c.out_indices)
    h = int(d * c.mlp_ratio)
    linear = lambda i, o: i * o + o  # noqa: E731
    block = 2 * d + linear(d, 3 * d) + linear(d, d) + 2 * d + linear(d, h) + linear(h, d)
    map_hidden = max(1, int(d * 0.5))
    backbone = (3 * c.patch * c.patch * d + d + d * c.pos_grid[0] * c.pos_grid[1] + c.depth * block
                + 2 * d + linear(d, map_hidden) + linear(map_hidden, 2)
                + len(c.selective_blocks) * (2 * d + linear(d, c.selective_hidden) + linear(c.selective_hidden, 2)))
    pixel = (n_out * 2 * d + (4 * d * dd + dd) + (n_out - 2) * linear(d, dd) + (4 * d * dd + dd)
             + 3 * (9 * dd * dd + 2 * dd) + linear(dd, dd))
    layer = 8 * linear(dd, dd) + linear(dd, c.decoder_ffn) + linear(c.decoder_ffn, dd) + 6 * dd
    decoder = (2 * c.num_queries * dd + 3 * dd + c.decoder_layers * layer + 2 * dd + linear(dd, c.num_classes + 1)
               + 3 * linear(dd, dd) + linear(dd, dd) + linear(dd, c.track_dim))
    return backbone + pixel + decoder
