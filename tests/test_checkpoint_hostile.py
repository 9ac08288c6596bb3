"""Hostile checkpoints (issue 25: items 2, 11, 12, 13): core.safe_pickle reads .pth files itself, never through
torch.load; a file can make it write nothing, change no global, hang on nothing and allocate no more than it holds.

The crafted files are assembled opcode by opcode by scripts/hostile/checkpoints.py (the probe of this area).
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import core.cli
from core.checkpoint_io import limits
from core.errors import CheckpointError
from core.safe_pickle import load_mmengine_checkpoint, load_torch_file_safely

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hostile_checkpoints", ROOT / "scripts" / "hostile" / "checkpoints.py")
H = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(H)
s, n, g, tup, call = H.s, H.n, H.g, H.tup, H.call


def _refused(path: Path, match: str = "") -> str:
    with pytest.raises(CheckpointError) as info:
        load_mmengine_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and match in msg, msg
    assert len(msg) < 2000
    return msg


def _untouched_torch_globals() -> None:
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
        fn = getattr(torch._utils, name)
        assert fn.__name__ == name and "dump_patches" not in vars(fn), vars(fn)


def _run(code: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


# --- item 2: torch's legacy loader writes PATH.patch where the file says --------------------------------------


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
def test_a_dump_patches_checkpoint_writes_no_file(tmp_path, monkeypatch, legacy, absolute):
    (tmp_path / "sub").mkdir()
    target = str(tmp_path / "sub" / "evil") if absolute else "evil"  # relative: lands in the current folder
    src = tmp_path / "crafted.pth"
    (H.write_legacy if legacy else H.write_zip)(src, H.dump_patches(target, legacy=legacy))
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the old code's SourceChangeWarning
        msg = _refused(src)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["crafted.pth", "sub"]  # no evil.patch, here or in sub/
    assert not list(Path.cwd().glob("*.patch")) and not (ROOT / "evil.patch").exists()
    assert "torch._utils._rebuild_tensor" in msg  # it says what it refused
    _untouched_torch_globals()


def test_the_dump_patches_checkpoint_through_import_checkpoint(tmp_path, monkeypatch, capsys):
    src, out = H.write_legacy(tmp_path / "crafted.pth", H.dump_patches("evil")), tmp_path / "out.safetensors"
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = core.cli.main(["import-checkpoint", str(src), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(src) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.pth"]


def test_build_cannot_change_an_allowed_global(tmp_path):
    state = tup(b"N", b"}" + s("dump_patches") + b"\x88" + b"s")  # (None, {"dump_patches": True})
    src = H.write_zip(tmp_path / "b.pth", H.checkpoint(g("torch._utils", "_rebuild_tensor_v2") + state + b"b"))
    _refused(src, "sets the state of torch._utils._rebuild_tensor_v2")
    _untouched_torch_globals()


@pytest.mark.parametrize(("pid", "legacy"), [
    (tup(s("module"), g("collections", "OrderedDict"), s("a.py"), s("x")), True),
    (tup(s("module"), g("collections", "OrderedDict"), s("a.py"), s("x")), False),
    (s("0"), False),  # not a tuple (torch: AssertionError)
    (tup(s("tensor"), s("0")), False),  # an unknown type (torch: AssertionError)
    (tup(s("storage"), g("collections", "OrderedDict"), s("0"), s("cpu"), n(2)), False),
    (tup(s("storage"), g("torch", "FloatStorage"), s("../0"), s("cpu"), n(2)), False),
], ids=["module-legacy", "module-zip", "not-a-tuple", "unknown-type", "not-a-storage-type", "bad-key"])
def test_persistent_ids_other_than_storages_are_refused(tmp_path, monkeypatch, pid, legacy):
    pkl = H.checkpoint(pid + b"Q")
    src = (H.write_legacy if legacy else H.write_zip)(tmp_path / "pid.pth", pkl)
    monkeypatch.chdir(tmp_path)
    _refused(src)
    assert not list(tmp_path.glob("*.patch"))


def test_a_text_persistent_id_is_refused(tmp_path):
    _refused(H.write_zip(tmp_path / "p.pth", H.checkpoint(b"P0\n")), "persistent id")


# --- item 12: tracebacks become refusals naming the file -------------------------------------------------------


@pytest.mark.parametrize(("meta", "match"), [
    (call(g("_codecs", "encode"), s("x"), s("bad")), "codec"),
    (call(g("_codecs", "encode"), s("x"), s("rot13")), "codec"),
    (call(g("_codecs", "encode"), s("x"), s("zlib_codec")), "codec"),
    (H.deep_list(200_000), "nested more than"),
    (H.self_dict(), "contains itself"),
    (b"]q\x05h\x05a", "contains itself"),  # a list that contains itself
    (call(g("numpy", "dtype"), s("V4"), b"\x89\x88"), "numpy.dtype"),
    (call(g("numpy", "dtype"), s("M8"), b"\x89\x88"), "numpy.dtype"),
    (call(g("copy_reg", "_reconstructor"), g("builtins", "object"), g("builtins", "object"), b"N"), "copyreg"),
    (b"\x82\x01", "opcode"),  # EXT1: the copyreg extension registry
    (b"\x97", "opcode"),  # NEXT_BUFFER
    (b"}" + tup(*[b")"] * 3) + b")" + b"\x85" * 200 + n(1) + b"s", "nests tuples"),
    (tup(s("a")) + s("k") + s("v") + b"s", "not of a dict"),  # SETITEM on a tuple
    (call(g("__builtin__", "bytearray"), s("abc"), s("latin-1")) + b"K\x01a", "not a list"),  # APPEND to a bytearray
    (call(g("collections", "OrderedDict")) + b"}" + s("items") + n(1) + b"sb", "attribute 'items'"),  # shadows
    (call(g("collections", "OrderedDict")) + b"}" + s("__class__") + n(1) + b"sb", "attribute '__class__'"),
], ids=["bad-codec", "rot13", "zlib", "deep-list", "self-dict", "self-list", "record-dtype", "datetime-dtype",
        "reconstructor", "ext1", "next-buffer", "deep-tuple", "setitem-on-tuple", "append-to-bytearray",
        "shadow-items", "shadow-class"])
def test_meta_that_raised_or_misbehaved_is_refused(tmp_path, meta, match):
    _refused(H.write_zip(tmp_path / "m.pth", H.checkpoint(meta)), match)


def test_a_million_deep_tuple_key_is_refused_not_a_crash(tmp_path):
    src = H.write_zip(tmp_path / "k.pth", H.checkpoint(H.deep_tuple_key(1_000_000)))
    proc = _run("from core.errors import CheckpointError\nfrom core.safe_pickle import load_mmengine_checkpoint\n"
                f"try:\n    load_mmengine_checkpoint({str(src)!r})\nexcept CheckpointError as exc:\n"
                "    print('REFUSED', exc)", tmp_path)
    assert proc.returncode == 0 and "REFUSED" in proc.stdout and "nests tuples" in proc.stdout, proc.stderr[-500:]


def test_a_hash_flood_is_refused_not_a_hang(tmp_path):
    """200000 dict keys / set items sharing one hash: hours of inserting for pickle; refused at 1024 here."""
    assert H.check_hash_flood(tmp_path) is None


def test_many_ordinary_int_keys_still_load(tmp_path):
    meta = (b"}(" + b"".join(n(k) + b"N" for k in range(5000)) + b"u"
            + b"\x8f(" + b"".join(map(n, range(5000))) + b"\x90")
    pkl = H.checkpoint(b"(" + meta + b"t")
    meta_out = load_mmengine_checkpoint(H.write_zip(tmp_path / "ok.pth", pkl))["meta"]
    assert meta_out["value"][0] == dict.fromkeys(range(5000)) and meta_out["value"][1] == set(range(5000))


def test_keys_that_are_not_strings_are_named_briefly(tmp_path):
    key = tup(*[tup(n(i)) for i in range(3)]) + b"\x85" * 90  # a tuple 90 deep: its repr is long
    weights = H.tensor("0", 2)
    pkl = b"\x80\x02}(" + key + weights + b"u."
    msg = _refused(H.write_zip(tmp_path / "k.pth", pkl), "not named tensors")
    assert "(a tuple)" in msg


# --- forbidden globals and unsupported containers -----------------------------------------------------------


@pytest.mark.parametrize("name", [
    "torch.storage._load_from_bytes", "torch.serialization.load", "torch.load", "torch.jit.load", "numpy.load",
    "numpy.memmap", "builtins.open", "builtins.getattr", "io.open", "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor", "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_wrapper_subclass", "torch.nn.modules.module.Module", "torch._utils._import_dotted_name",
])
def test_globals_outside_the_data_types_are_refused(tmp_path, name):
    module, _, attr = name.rpartition(".")
    _refused(H.write_zip(tmp_path / "g.pth", H.checkpoint(g(module, attr))), f"global {name}")


def test_tensor_subclasses_are_refused(tmp_path):
    meta = call(g("torch._tensor", "_rebuild_from_type_v2"), g("torch._utils", "_rebuild_tensor_v2"),
                g("torch.nn.parameter", "Buffer"), b")", b"N")
    _refused(H.write_zip(tmp_path / "t.pth", H.checkpoint(meta)), "torch.nn.parameter.Buffer")


def test_a_tar_checkpoint_is_refused_without_opening_its_members(tmp_path):
    """Item 11: torch extracts the ``storages`` member (here a FIFO) and blocks opening it."""
    src = H.write_tar(tmp_path / "old.pth")
    work = tmp_path / "work"
    work.mkdir()
    try:
        proc = _run("from core.errors import CheckpointError\nfrom core.safe_pickle import load_mmengine_checkpoint\n"
                    f"try:\n    load_mmengine_checkpoint({str(src)!r})\nexcept CheckpointError as exc:\n"
                    "    print('REFUSED', exc)", work, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading a tar checkpoint with a FIFO member hangs")
    assert "REFUSED" in proc.stdout and "tar-format" in proc.stdout and str(src) in proc.stdout, proc.stderr[-500:]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["old.pth", "work"]


def test_a_fifo_checkpoint_path_is_refused_without_blocking(tmp_path):
    """Item 11: a FIFO (or a link to one) as the checkpoint itself, through every reader and the command."""
    assert H.check_fifo_path(tmp_path) is None


# --- item 13: what the file declares bounds what is allocated -----------------------------------------------


MEMORY_CASES = [
    "bytearray(6e9) in meta", "bytearray(6e9) as the legacy magic pickle", "BINBYTES8 declaring 6e9",
    "BINUNICODE8 declaring 6e9 (legacy)", "numpy _reconstruct of shape 3e8", "numpy object array of shape 3e8",
    "numpy float array of shape 3e8", "legacy storage of 1e12 floats", "zip storage of 1e12 floats",
    "a 2-float storage viewed as 1e12 floats (stride 0)", "one 1 MB string encoded 20000 times",
    "LONG4 declaring 1e8 bytes"]


@pytest.fixture(scope="module")
def memory_results(tmp_path_factory):
    """Every file of the probe's memory case read in one subprocess (RLIMIT_AS 6 GiB), with its peak growth."""
    tmp = tmp_path_factory.mktemp("memory")
    files = H.memory_files(tmp)
    assert sorted(files) == sorted(MEMORY_CASES)
    proc = H._run(H._MEMORY_CHILD, cwd=tmp, timeout=300, mem_gb=6, argv=(json.dumps({k: str(v) for k, v in
                                                                                      files.items()}),))
    assert not isinstance(proc, str), proc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stderr[-2000:]
    return json.loads(lines[0][7:])


@pytest.mark.parametrize("name", MEMORY_CASES)
def test_declared_sizes_are_refused_before_allocating(memory_results, name):
    verdict, grown_mb = memory_results[name]
    assert verdict is None, verdict
    assert grown_mb < H.MEMORY_LIMIT_MB


def test_limits_on_members_pickle_size_operations_and_nesting(tmp_path, monkeypatch):
    src = H.write_zip(tmp_path / "ok.pth", H.checkpoint(tup(*[b")"] * 2) + b"\x85" * 40 + b"0" + b"N" * 3 + b"00"))
    assert list(load_mmengine_checkpoint(src)["state_dict"]) == ["w"]  # within every limit
    monkeypatch.setattr(limits, "MAX_ENTRIES", 3)
    _refused(src, "members")
    monkeypatch.setattr(limits, "MAX_ENTRIES", 100)
    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", 64)
    _refused(src, "data.pkl declares")
    monkeypatch.setattr(limits, "MAX_PICKLE_BYTES", 1 << 20)
    monkeypatch.setattr(limits, "MAX_OPS", 40)
    _refused(src, "operations")
    monkeypatch.setattr(limits, "MAX_OPS", 10**6)
    monkeypatch.setattr(limits, "MAX_NESTING", 20)
    _refused(src, "nests tuples more than 20 deep")


# --- damaged files: refused, never uninitialised memory ------------------------------------------------------


def test_a_legacy_file_without_the_data_of_a_storage_is_refused(tmp_path):
    """torch.load leaves such a storage uninitialised (whatever was in memory becomes the weights)."""
    _refused(H.write_legacy(tmp_path / "a.pth", H.checkpoint(b"N", legacy=True), {}), "storages its tensors use")
    src = H.write_legacy(tmp_path / "b.pth", H.checkpoint(b"N", legacy=True), {"0": (2, bytes(8))})
    src.write_bytes(src.read_bytes()[:-3])  # truncated inside the storage
    _refused(src, "left in the file")


@pytest.mark.parametrize(("records", "match"), [
    ({"0": bytes(4)}, "declares 8 bytes"), ({}, "no record"),
])
def test_zip_storages_must_match_their_records(tmp_path, records, match):
    _refused(H.write_zip(tmp_path / "z.pth", H.checkpoint(b"N"), records), match)


def test_a_damaged_zip_storage_fails_its_crc(tmp_path):
    src = H.write_zip(tmp_path / "z.pth", H.checkpoint(b"N"), {"0": struct.pack("<2f", 1.0, 2.0)})
    data = bytearray(src.read_bytes())
    at = data.index(struct.pack("<2f", 1.0, 2.0))
    data[at] ^= 0xFF
    src.write_bytes(bytes(data))
    _refused(src, "CRC")


@pytest.mark.parametrize(("size", "stride", "offset"), [((3,), (1,), 0), ((2,), (1,), 1), ((2, 2), (1, 1), 0),
                                                        ((1,), (1,), 3)])
def test_a_tensor_past_the_end_of_its_storage_is_refused(tmp_path, size, stride, offset):
    weights = H.tensor("0", 2, size=size, stride=stride, offset=offset)
    _refused(H.write_zip(tmp_path / "t.pth", H.checkpoint(b"N", weights=weights)), "past the end of its storage")


def test_bool_tensors_hold_only_0_and_1(tmp_path):
    weights = call(g("torch._utils", "_rebuild_tensor_v2"),
                   tup(s("storage"), g("torch", "BoolStorage"), s("0"), s("cpu"), n(3)) + b"Q", n(0),
                   tup(n(3)), tup(n(1)), b"\x89", call(g("collections", "OrderedDict")))
    src = H.write_zip(tmp_path / "b.pth", H.checkpoint(b"N", weights=weights), {"0": bytes([2, 0, 255])})
    w = load_mmengine_checkpoint(src)["state_dict"]["w"]
    assert w.dtype == torch.bool and w.view(torch.uint8).tolist() == [1, 0, 1]


# --- what must keep working ----------------------------------------------------------------------------------


def test_a_big_endian_zip_is_read_with_its_values(tmp_path):
    weights = H.tensor("0", 2)
    src = tmp_path / "be.pth"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("archive/data.pkl", H.checkpoint(b"N", weights=weights))
        zf.writestr("archive/byteorder", "big")
        zf.writestr("archive/data/0", struct.pack(">2f", 1.5, -2.0))
    assert load_mmengine_checkpoint(src)["state_dict"]["w"].tolist() == [1.5, -2.0]


def _raw(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).contiguous().view(torch.uint8)


def _same(a, b, path="$"):
    if isinstance(a, torch.Tensor):
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape, path
        assert a.stride() == b.stride() and a.requires_grad == b.requires_grad, path
        assert torch.equal(_raw(a), _raw(b)), path
    elif isinstance(a, np.ndarray):
        native = a.dtype.newbyteorder("=") if a.dtype.byteorder in "<>" else a.dtype  # byte order may be made native
        assert native == b.dtype.newbyteorder("=") and a.shape == b.shape and a.tolist() == b.tolist(), path
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (path, a, b)


@pytest.mark.parametrize("protocol", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_every_tensor_kind_reads_back_as_saved(tmp_path, legacy, protocol):
    base = torch.randn(6, 4)
    obj = collections.OrderedDict(
        w=torch.nn.Parameter(torch.randn(3, 5)), frozen=torch.nn.Parameter(torch.randn(2), requires_grad=False),
        t=base.t(), view=base[2:, 1:3], half=torch.arange(5).half(), bf=torch.randn(4).bfloat16(),
        i8=torch.tensor([-1, 2], dtype=torch.int8), b=torch.tensor([True, False]),
        c=torch.randn(3, dtype=torch.complex64),
        scalar=torch.tensor(7), empty=torch.zeros(0, 3), grad=torch.ones(2, requires_grad=True),
        meta={"a": [1, 2.5, None, True, "x", b"raw", bytearray(b"ba"), (1, (2, 3)), {1, 2}, frozenset({3}), 1 + 2j,
                    2**70], "np": np.arange(6, dtype=np.float32).reshape(2, 3),
              "fortran": np.asfortranarray(np.arange(6).reshape(2, 3)), "big_endian": np.arange(3, dtype=">i4"),
              "scalar": np.float64(3.5), "text": np.array(["ab", "c"]), "objects": np.array([None, "x"], dtype=object),
              "dtype": np.dtype("f4"), "device": torch.device("cuda", 1), "size": torch.Size([2, 3]),
              "torch_dtype": torch.float16})
    if not legacy:  # dtypes without a typed storage (torch's legacy format cannot hold them)
        obj.update(f8=torch.randn(3).to(torch.float8_e4m3fn), u16=torch.tensor([1, 2], dtype=torch.uint16))
    obj["tied"] = obj["t"]
    obj["module"] = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2)).state_dict()
    path = tmp_path / "all.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    ref = obj  # the object saved is the reference (no unpickler of torch's reads the file back)
    got = load_torch_file_safely(path)
    _same(ref, got)
    assert got["tied"].data_ptr() == got["t"].data_ptr()  # shared storages stay shared
    assert got["module"]._metadata == ref["module"]._metadata  # module.state_dict()'s layer versions


def test_no_reader_reaches_torch_load_or_pickle(tmp_path, monkeypatch):
    """Item 2's class: torch's loaders (and pickle's) are never used, so nothing of theirs can write or allocate."""
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load / pickle was called")

    sd = {"a.weight": torch.randn(2, 3), "a.bias": torch.zeros(2)}
    paths = []
    for legacy in (False, True):
        paths.append(tmp_path / f"w{legacy}.pth")
        torch.save({"state_dict": sd, "meta": {"epoch": 1}}, paths[-1], _use_new_zipfile_serialization=not legacy)
    for name in ("load", "_load", "_legacy_load"):
        monkeypatch.setattr(torch.serialization, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    from core.model.timm_import import read_state_dict

    for path in paths:
        assert torch.equal(load_mmengine_checkpoint(path)["state_dict"]["a.weight"], sd["a.weight"])
        assert torch.equal(read_state_dict(path)["a.bias"], sd["a.bias"])
