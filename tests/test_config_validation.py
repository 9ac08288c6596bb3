"""Model configs are validated once, at load: every absurd value is one CheckpointError line naming the file,
the key and the allowed range, never a traceback from deep inside the model or an 18 GB allocation."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from core.errors import CheckpointError, ConfigError, VPPError
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import MAX_CONFIG_BYTES, config_path, load_checkpoint, read_config, save_checkpoint
from core.model.vpp.config import MAX_PARAMETERS, VPPConfig, parameter_count
from core.resources import DEFAULT_MODEL, load_model

REPO = Path(__file__).resolve().parents[1]
DEEP = "deep"  # marker: the JSON text itself is nested 100000 levels deep

# name -> (change to a valid config, the key the message must name, a piece of the allowed range it must give)
BAD = {
    "embed_dim_0": ({"embed_dim": 0}, "embed_dim", "1..4096"),
    "num_heads_0": ({"num_heads": 0}, "num_heads", "1..64"),
    "patch_-16": ({"patch": -16}, "patch", "2..64"),
    "patch_0": ({"patch": 0}, "patch", "2..64"),
    "out_indices_99": ({"out_indices": [2, 5, 8, 99]}, "out_indices", "0..11"),
    "depth_string": ({"depth": "12"}, "depth", "not a string"),
    "depth_12.5": ({"depth": 12.5}, "depth", "an integer in 2..64"),
    "depth_10000": ({"depth": 10000}, "depth", "2..64"),
    "pkr_1.5": ({"pkr": 1.5}, "pkr", "(0, 1]"),
    "pkr_0": ({"pkr": 0}, "pkr", "(0, 1]"),
    "pkr_-0.2": ({"pkr": -0.2}, "pkr", "(0, 1]"),
    "pkr_true": ({"pkr": True}, "pkr", "not a boolean"),
    "pkr_string": ({"pkr": "0.5"}, "pkr", "not a string"),
    "pkr_nan": ({"pkr": math.nan}, "pkr", "(0, 1]"),
    "deep_json": (DEEP, "nested too deeply", ""),
    "input_long_side_0": ({"input_long_side": 0}, "input_long_side", "32..8192"),
    "input_long_side_1e9": ({"input_long_side": 10**9}, "input_long_side", "32..8192"),
    "input_long_side_tokens": ({"input_long_side": 8192}, "input_long_side", "at most 4096"),
    "dilation_-9": ({"dilation": -9}, "dilation", "1..63"),
    "dilation_even": ({"dilation": 8}, "dilation", "odd"),
    "embed_dim_indivisible": ({"embed_dim": 191}, "embed_dim", "divisible by num_heads"),
    "num_queries_0": ({"num_queries": 0}, "num_queries", "1..1000"),
    "num_queries_1e5": ({"num_queries": 100000}, "num_queries", "1..1000"),
    "selective_unordered": ({"selective_blocks": [9, 6, 3]}, "selective_blocks", "strictly increasing"),
    "selective_past_depth": ({"selective_blocks": [3, 6, 12]}, "selective_blocks", "1..11"),
    "map_block_0": ({"map_block": 0}, "map_block", "1..11"),
    "deep_block_12": ({"deep_block": 12}, "deep_block", "1..11"),
    "out_indices_unordered": ({"out_indices": [11, 8, 5, 2]}, "out_indices", "increasing order"),
    "out_indices_one": ({"out_indices": [11]}, "out_indices", "2 to 16"),
    "out_indices_string": ({"out_indices": "2,5"}, "out_indices", "not a string"),
    "background_share_1": ({"background_share": 1.0}, "background_share", "[0, 1)"),
    "background_share_-0.1": ({"background_share": -0.1}, "background_share", "[0, 1)"),
    "mlp_ratio_0": ({"mlp_ratio": 0}, "mlp_ratio", "(0, 16]"),
    "categories_length": ({"num_classes": 3, "categories": ["a", "b"]}, "categories", "num_classes = 3"),
    "category_ids_strings": ({"num_classes": 2, "category_ids": ["1", "2"]}, "category_ids", "integer"),
    "category_ids_repeat": ({"num_classes": 2, "category_ids": [4, 4]}, "category_ids", "repeat"),
    "extra_list": ({"extra": [1, 2]}, "extra", "JSON object"),
    "extra_too_deep": ({"extra": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}, "extra",
                       "nested more than 8"),
    "pos_grid_0": ({"pos_grid": [0, 32]}, "pos_grid", "1..128"),
    "pos_grid_3": ({"pos_grid": [32, 32, 1]}, "pos_grid", "list of 2"),
    "decoder_dim_36": ({"decoder_dim": 36}, "decoder_dim", "multiple of 8"),
    "decoder_heads_0": ({"decoder_heads": 0}, "decoder_heads", "1..64"),
    "decoder_layers_-1": ({"decoder_layers": -1}, "decoder_layers", "1..32"),
    "num_classes_0": ({"num_classes": 0}, "num_classes", "1..10000"),
    "variant_7": ({"variant": 7}, "variant", "tiny"),
    "embed_dim_true": ({"embed_dim": True}, "embed_dim", "not a boolean"),
    "huge_model": ({"depth": 64, "embed_dim": 4096, "num_heads": 64}, "million parameters", "500 million"),
    "unknown_key": ({"bogus": 1}, "bogus", "valid keys"),
}
# these would allocate gigabytes on a build without the checks: always probed in a memory-capped subprocess
BIG = {"depth_10000", "huge_model", "num_queries_1e5", "input_long_side_tokens"}


def small_config(**kw) -> VPPConfig:
    base = dict(input_long_side=96, decoder_dim=32, num_queries=5, decoder_layers=2, decoder_ffn=64, pkr=0.5)
    return VPPConfig.for_variant("tiny", **{**base, **kw})


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny valid checkpoint; tests copy its bytes and write a config beside the copy."""
    torch.manual_seed(0)
    c = small_config()
    return save_checkpoint(build_vpp(c), c, tmp_path_factory.mktemp("ck") / "base.safetensors")


def write_bad(weights: Path, folder: Path, name: str) -> Path:
    change = BAD[name][0]
    path = folder / f"{name}.safetensors"
    path.write_bytes(weights.read_bytes())
    base = json.loads(config_path(weights).read_text())
    if change == DEEP:
        text = json.dumps(base)[:-1] + ', "extra_nest": ' + "[" * 100_000 + "]" * 100_000 + "}"
    else:
        text = json.dumps({**base, **change})
    config_path(path).write_text(text)
    return path


def load_capped(path: Path) -> str:
    """``load_checkpoint(path)`` in a subprocess limited to 6 GiB of address space; its one-line outcome."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
        sys.path.insert(0, {str(REPO)!r})
        from core.model.vpp.checkpoint import load_checkpoint
        try:
            load_checkpoint({str(path)!r})
            print("ACCEPTED")
        except Exception as exc:
            print(type(exc).__name__ + "|" + str(exc))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else f"no output: {out.stderr[-500:]}"


@pytest.mark.parametrize("name", sorted(BAD))
def test_absurd_config_values_are_one_clear_error(weights, tmp_path, name):
    path = write_bad(weights, tmp_path, name)
    _, key, allowed = BAD[name]
    if name in BIG:
        kind, _, msg = load_capped(path).partition("|")
        assert kind == "CheckpointError", (kind, msg)
    else:
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(config_path(path))), msg  # names the file
    assert key in msg and allowed in msg, msg  # the key and the allowed range


@pytest.mark.parametrize("name", ["embed_dim_0", "pkr_true", "deep_json", "out_indices_99"])
def test_the_app_and_resources_loader_refuse_them_too(weights, tmp_path, name):
    path = write_bad(weights, tmp_path, name)
    with pytest.raises(VPPError, match=re.escape(str(config_path(path)))):
        load_model(path)


def test_a_bad_config_in_the_weights_metadata_names_it(tmp_path):
    c = small_config()
    path = save_checkpoint(build_vpp(c), c, tmp_path / "m.safetensors")
    config_path(path).unlink()
    from safetensors.torch import load_file, save_file

    state = {k: v.clone() for k, v in load_file(str(path)).items()}
    save_file(state, str(path), metadata={"vpp_config": json.dumps({**c.to_dict(), "patch": -16})})
    with pytest.raises(CheckpointError, match=r"m\.safetensors \(the config in its metadata\): patch = -16: .*2\.\.64"):
        load_checkpoint(path)
    save_file(state, str(path), metadata={"vpp_config": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(CheckpointError, match="nested too deeply"):
        read_config(path)


def test_an_oversized_or_non_object_config_file_is_refused(weights, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(weights.read_bytes())
    config_path(path).write_text(json.dumps({**json.loads(config_path(weights).read_text()),
                                             "extra": {"pad": "x" * MAX_CONFIG_BYTES}}))
    with pytest.raises(CheckpointError, match="too large for a model config"):
        load_checkpoint(path)
    for text, pattern in (("[1, 2]", "must be a JSON object, got a list"), ('"tiny"', "got a string"),
                          ("{", "not valid JSON"), ('{"depth": 1' + "0" * 5000 + "}", "not a valid model config")):
        config_path(path).write_text(text)
        with pytest.raises(CheckpointError, match=pattern):
            load_checkpoint(path)


def test_a_config_given_by_the_caller_is_validated_at_load(weights):
    bad = VPPConfig(embed_dim=0)  # the dataclass itself does not validate; loading does
    with pytest.raises(CheckpointError, match=r"the model config given for it: embed_dim = 0"):
        load_checkpoint(weights, config=bad)


def test_valid_configs_still_load_and_ints_for_floats_are_accepted(weights):
    shipped = read_config(DEFAULT_MODEL)  # the embedded default model's config
    assert shipped.validate() is shipped
    for variant in ("tiny", "small"):
        VPPConfig.for_variant(variant)
    c = VPPConfig.from_dict({**small_config().to_dict(), "mlp_ratio": 4, "pkr": 1, "background_share": 0,
                             "out_indices": [11, 11, 11, 11], "selective_blocks": []})
    assert c.mlp_ratio == 4.0 and isinstance(c.mlp_ratio, float) and isinstance(c.pkr, float)
    assert json.loads(c.to_json())["mlp_ratio"] == 4.0
    assert VPPConfig.from_dict(json.loads(c.to_json())) == c
    _, loaded = load_checkpoint(weights)
    assert loaded == small_config()


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.json")), ids=lambda p: p.name)
def test_every_recipe_model_passes_validation(recipe):
    data = json.loads(recipe.read_text())
    VPPConfig.for_variant(data.get("variant", "tiny"), num_classes=6, **data.get("model", {}))


def test_replace_validates():
    c = small_config()
    assert c.replace(pkr=0.4).pkr == 0.4
    with pytest.raises(ConfigError, match=r"pkr = 2: must be a number in \(0, 1\]"):
        c.replace(pkr=2)
    with pytest.raises(ValueError):  # ConfigError is a ValueError for older callers
        VPPConfig.from_dict({"depth": 0})


@pytest.mark.parametrize("kw", [{}, {"variant": "small"}, {"out_indices": (11, 11)}, {"selective_blocks": ()},
                                {"mlp_ratio": 2.5, "pos_grid": (8, 12), "patch": 8, "selective_hidden": 5,
                                 "track_dim": 3, "num_classes": 2, "num_queries": 7, "decoder_layers": 1}])
def test_parameter_count_is_exact(kw):
    kw = dict(kw)
    c = VPPConfig.for_variant(kw.pop("variant", "tiny"), **kw)
    assert parameter_count(c) == sum(t.numel() for t in build_vpp(c).state_dict().values())


def test_largest_allowed_sizes_are_refused_by_the_parameter_cap_without_building():
    with pytest.raises(ConfigError, match="million parameters") as err:
        VPPConfig.for_variant("tiny", depth=64, embed_dim=4096, num_heads=64)
    assert f"{MAX_PARAMETERS // 10**6} million" in str(err.value)


def test_a_config_much_larger_than_its_weights_is_refused_from_the_header(weights, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(weights.read_bytes())
    # valid on its own (about 85 million weights) but the file holds about 5 million
    config_path(path).write_text(json.dumps({**json.loads(config_path(weights).read_text()), "embed_dim": 768,
                                             "num_heads": 12}))
    with pytest.raises(CheckpointError, match=r"describes a model of .* weights but the file holds"):
        load_checkpoint(path)
