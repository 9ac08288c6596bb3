"""The ``vpp`` command line never shows a traceback for something the user can fix: one ``error:`` line (or
argparse's usage message for a bad option) and exit code 2; a bug says it is one (exit 1)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core import cli
from core.cli import main
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import config_path, save_checkpoint
from core.model.vpp.config import VPPConfig

sys.path.insert(0, str(Path(__file__).parent))
from tiny_dataset import make_tiny_ytvis

REPO = Path(__file__).resolve().parents[1]


def vpp(*argv, timeout=300) -> subprocess.CompletedProcess:
    """``python -m core.cli ARGV`` in a subprocess (its real exit code and stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "core.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def one_error_line(err: str) -> str:
    """The stderr of a refused command: exactly one line, starting with ``error:``, and no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    c = VPPConfig.for_variant("tiny", input_long_side=64, decoder_dim=32, num_queries=5, decoder_layers=2,
                              decoder_ffn=64, pkr=0.5)
    return save_checkpoint(build_vpp(c), c, tmp_path_factory.mktemp("ck") / "m.safetensors")


@pytest.fixture
def frames(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), np.full((48, 64, 3), 60 * i, np.uint8))
    return folder


def bad_copy(ckpt: Path, folder: Path, text: str) -> Path:
    path = folder / "bad.safetensors"
    path.write_bytes(ckpt.read_bytes())
    config_path(path).write_text(text)
    return path


def with_change(ckpt: Path, **change) -> str:
    return json.dumps({**json.loads(config_path(ckpt).read_text()), **change})


# -- bad model configs through vpp infer ------------------------------------------------------------------
@pytest.mark.parametrize(("change", "key"), [
    ({"embed_dim": 0}, "embed_dim = 0"),
    ({"pkr": True}, "pkr = true"),
    ({"dilation": -9}, "dilation = -9"),
])
def test_infer_with_a_bad_model_config_is_one_error_line(ckpt, frames, tmp_path, capsys, change, key):
    model = bad_copy(ckpt, tmp_path, with_change(ckpt, **change))
    out = tmp_path / "out.json"
    assert main(["infer", str(frames), "--model", str(model), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(config_path(model)) in line and key in line
    assert not out.exists()


def test_infer_with_deeply_nested_config_json_in_a_subprocess(ckpt, frames, tmp_path):
    model = bad_copy(ckpt, tmp_path, with_change(ckpt)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    out = tmp_path / "out.json"
    r = vpp("infer", frames, "--model", model, "--out", out)
    assert r.returncode == 2, r.stderr[-2000:]
    line = one_error_line(r.stderr)
    assert str(config_path(model)) in line and "nested too deeply" in line
    assert not out.exists()


def test_infer_with_patch_minus_16_in_a_subprocess(ckpt, frames, tmp_path):
    model = bad_copy(ckpt, tmp_path, with_change(ckpt, patch=-16))
    r = vpp("infer", frames, "--model", model, "--out", tmp_path / "out.json")
    assert r.returncode == 2, r.stderr[-2000:]
    line = one_error_line(r.stderr)
    assert str(config_path(model)) in line and "patch = -16" in line and "2..64" in line


def test_infer_with_nan_weights_names_the_tensor(ckpt, frames, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    state = {k: v.clone() for k, v in load_file(str(ckpt)).items()}
    name = "head.mask_decoder.class_head.weight"
    state[name][0, 0] = float("nan")
    model = tmp_path / "nan.safetensors"
    save_file(state, str(model))
    config_path(model).write_text(config_path(ckpt).read_text())
    assert main(["infer", str(frames), "--model", str(model), "--out", str(tmp_path / "o.json")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "nan.safetensors" in line and name in line and "NaN" in line


# -- bench: option ranges are checked by argparse -----------------------------------------------------------
def test_bench_threads_minus_one_is_a_usage_error_in_a_subprocess():
    r = vpp("bench", "--threads", "-1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("usage: vpp bench") and "argument --threads: must be an integer in 1..1024, got -1" \
        in r.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--threads", "0"], "argument --threads: must be an integer in 1..1024"),
    (["--threads", "two"], "argument --threads: expected an integer"),
    (["--repeats", "0"], "argument --repeats: must be an integer in 1..100000"),
    (["--warmup", "-1"], "argument --warmup: must be an integer in 0..100000"),
    (["--pkr", "1.5"], "argument --pkr: must be a number in (0, 1]"),
    (["--pkr", "nan"], "argument --pkr: must be a number in (0, 1]"),
    (["--size", "99999x16"], "at most 4096 pixels per side"),
])
def test_bench_bad_option_values_are_usage_errors(capsys, argv, message):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("usage: vpp bench") and message in err


def test_bench_checks_device_and_output_before_timing_anything(tmp_path, capsys, monkeypatch):
    import core.commands.bench as bench

    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("timed before the checks"))
    assert main(["bench", "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in one_error_line(capsys.readouterr().err)
    assert main(["bench", "--json", str(tmp_path / "missing" / "b.json")]) == 2
    assert "folder" in one_error_line(capsys.readouterr().err)
    assert main(["bench", "--json", str(tmp_path)]) == 2
    assert "is a folder" in one_error_line(capsys.readouterr().err)


# -- export-model: unwritable destinations, damaged sources --------------------------------------------------
def test_export_model_to_a_missing_folder_in_a_subprocess(ckpt, tmp_path):
    dst = tmp_path / "missing" / "out.safetensors"
    r = vpp("export-model", ckpt, dst)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert str(dst) in line and "does not exist" in line
    assert not dst.parent.exists()


def test_export_model_to_a_read_only_file_system(ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(dir) / ".out.safetensors.abcd1234.tmp"))
        return real(*args, dir=dir, **kwargs)

    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):  # the writability probe meets a read-only file system
        if Path(path).parent == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    assert main(["export-model", str(ckpt), str(out / "out.safetensors")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "out.safetensors" in line and "Read-only file system" in line and "not writable" in line
    monkeypatch.undo()
    # the probe passed but the write itself meets the read-only file system
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(["export-model", str(ckpt), str(out / "out.safetensors")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(out / "out.safetensors") in line and "Read-only file system" in line
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_export_model_to_a_read_only_folder(ckpt, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["export-model", str(ckpt), str(out / "x.safetensors")]) == 2
        assert "not writable" in one_error_line(capsys.readouterr().err)
    finally:
        out.chmod(0o755)


def test_export_model_refuses_damaged_sources_and_writes_nothing(ckpt, tmp_path, capsys):
    dst = tmp_path / "dst.safetensors"
    bad = bad_copy(ckpt, tmp_path, with_change(ckpt, depth=10000))
    assert main(["export-model", str(bad), str(dst)]) == 2
    assert "depth = 10000" in one_error_line(capsys.readouterr().err)
    assert main(["export-model", str(tmp_path / "nope.safetensors"), str(dst)]) == 2
    assert "not found" in one_error_line(capsys.readouterr().err)
    assert main(["export-model", str(ckpt), str(tmp_path)]) == 2  # a folder, not a .safetensors name
    one_error_line(capsys.readouterr().err)
    assert main(["export-model", str(ckpt), str(dst), "--pkr", "0"]) == 2
    assert "argument --pkr" in capsys.readouterr().err
    assert not dst.exists() and not config_path(dst).exists()


# -- vpp train -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_ytvis(tmp_path_factory.mktemp("tiny"))


def train_argv(tiny_data, out, *extra):
    ann, imgs = tiny_data
    return ["train", "--train-ann", str(ann), "--train-images", str(imgs), "--out", str(out), "--dense-steps", "1",
            "--sparse-steps", "1", "--batch-size", "1", "--checkpoint-every", "1", "--device", "cpu",
            "--model", json.dumps({"input_long_side": 64, "decoder_dim": 32, "num_queries": 4, "decoder_layers": 1,
                                   "decoder_ffn": 32}), *extra]


class _Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_train_resuming_from_a_pickled_state_is_refused_plainly(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "unpickled"
    (out / "last_state.pt").write_bytes(pickle.dumps({"optimizer": _Marker(marker)}))
    (out / "last.safetensors").write_bytes(b"weights of an earlier run")
    assert main(train_argv(tiny_data, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "last_state.pt" in line and "pickle" in line and "for safety" in line and "delete it" in line
    assert "weights_only" not in line
    assert not marker.exists() and (out / "last.safetensors").read_bytes() == b"weights of an earlier run"
    assert sorted(p.name for p in out.iterdir()) == ["last.safetensors", "last_state.pt"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--batch-size", "0"], "argument --batch-size: must be an integer in 1..4096"),
    (["--lr", "-1"], "argument --lr: must be a number in (0, 10]"),
    (["--sparse-pkrs", "0.4", "2"], "argument --sparse-pkrs: must be a number in (0, 1]"),
    (["--log-every", "0"], "argument --log-every: must be an integer >= 1"),
])
def test_train_bad_flags_are_usage_errors(tiny_data, tmp_path, capsys, extra, message):
    assert main(train_argv(tiny_data, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("config", "message"), [
    ({"model": {"embed_dim": 0}}, "training config 'model': embed_dim = 0: must be an integer in 1..4096"),
    ({"warmup_steps": -1}, "warmup_steps = -1: must be an integer in 0..1000000000"),
    ({"model": [1]}, "model = [1]: must be an object of model config keys"),
    ({"bogus": 1}, "unknown training config keys ['bogus']"),
    ({"objectness_dilate": -1}, "objectness_dilate = -1: must be an integer in 0..64"),
])
def test_train_bad_config_values_are_one_error_line(tiny_data, tmp_path, capsys, config, message):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(config))
    assert main([*train_argv(tiny_data, tmp_path / "run")[:-2], "--config", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert message in line
    assert not (tmp_path / "run").exists()


def test_train_config_file_problems_are_one_error_line(tiny_data, tmp_path, capsys):
    path = tmp_path / "recipe.json"
    for text, message in (("[" * 100_000 + "]" * 100_000, "nested too deeply"), ("{", "cannot read the training"),
                          ("[]", "must be a JSON object")):
        path.write_text(text)
        assert main([*train_argv(tiny_data, tmp_path / "run"), "--config", str(path)]) == 2
        assert message in one_error_line(capsys.readouterr().err)
    assert main([*train_argv(tiny_data, tmp_path / "run")[:-2], "--model", "[1, 2]"]) == 2
    assert "--model must be a JSON object" in one_error_line(capsys.readouterr().err)


# -- other commands' option ranges --------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["model-card", "--split", "x", "--bootstrap", "0"], "argument --bootstrap: must be an integer in 1..1000000"),
    (["model-card", "--split", "x", "--pkr", "1.0"], "argument --pkr: must be a number in (0, 1)"),
    (["model-card", "--split", "x", "--max-videos", "0"], "argument --max-videos: must be an integer >= 1"),
    (["make-synthetic", "--out", "x", "--width", "4"], "argument --width: must be an integer in 8..4096"),
    (["make-synthetic", "--out", "x", "--frames", "0"], "argument --frames: must be an integer in 1..10000"),
    (["make-synthetic", "--out", "x", "--seed", "-3"], "argument --seed: must be an integer in 0..4294967295"),
])
def test_other_commands_check_option_ranges(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err


def test_model_card_checks_its_outputs_and_split_before_scoring(tmp_path, capsys):
    assert main(["model-card", "--split", str(tmp_path), "--json", str(tmp_path / "no" / "f.json")]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert main(["model-card", "--split", str(tmp_path)]) == 2
    assert "not a YTVIS split folder" in one_error_line(capsys.readouterr().err)


# -- main's rules for whatever escapes a command ----------------------------------------------------------------
def _failing(exc):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(("exc", "expected"), [
    (PermissionError(errno.EACCES, "Permission denied", "/data/out.json"), "error: /data/out.json: Permission denied"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/in.mp4"),
     "error: /data/in.mp4: No such file or directory"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/folder"), "error: /data/folder: Is a directory"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/.out.json.k2j4h5g6.tmp"),
     "error: /ro/out.json: Read-only file system"),  # the file a temporary write was for
    (OSError(errno.ENOSPC, "No space left on device", "/data/a", None, "/data/b"),
     "error: /data/a -> /data/b: No space left on device"),
    (MemoryError(), "error: out of memory"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 18 GB"), "error: out of memory"),
])
def test_environment_errors_that_escape_a_command_are_one_line(monkeypatch, capsys, exc, expected):
    import core.commands.bench as bench

    monkeypatch.setattr(bench, "run", _failing(exc))
    assert main(["bench"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(expected)


def test_a_bug_says_it_is_one_and_keeps_its_traceback(monkeypatch, capsys):
    import core.commands.bench as bench

    monkeypatch.setattr(bench, "run", _failing(ZeroDivisionError("division by zero")))
    assert main(["bench"]) == 1
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("error: internal error") and "bug" in first and "ZeroDivisionError" in first
    assert "Traceback" in err


def test_interrupt_usage_errors_after_parsing_and_help(monkeypatch, capsys):
    import core.commands.bench as bench

    monkeypatch.setattr(bench, "run", _failing(KeyboardInterrupt()))
    assert main(["bench"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    monkeypatch.setattr(bench, "run", _failing(argparse.ArgumentTypeError("--pkr 0.3 needs --variants small")))
    assert main(["bench"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vpp bench") and "vpp bench: error: --pkr 0.3 needs --variants small" in err
    assert main(["--help"]) == 0
    assert main(["bench", "--no-such-option"]) == 2
    capsys.readouterr()


def test_vpp_traceback_shows_the_traceback_of_one_line_errors(monkeypatch, capsys):
    import core.commands.bench as bench

    monkeypatch.setattr(bench, "run", _failing(PermissionError(errno.EACCES, "Permission denied", "/x")))
    assert main(["bench"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--traceback", "bench"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("error: /x: Permission denied")


def test_converters():
    assert cli.int_range(1, 3)("2") == 2 and cli.pkr_value("1") == 1.0
    for bad in ("0", "4", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.int_range(1, 3)(bad)
    for bad in ("0", "-0.1", "1.01", "inf", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.pkr_value(bad)
