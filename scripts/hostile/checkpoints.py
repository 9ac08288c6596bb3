"""Hostile checkpoints: ``.pth`` files fed to the reader behind ``vpp import-checkpoint``, ``vpp models
download``'s import and the timm / release backbone readers (``core.safe_pickle``).

The rules checked (README "Using the authors' models" > Safe loading, and "What is read is bounded"): a
checkpoint never makes the reader write a file (torch's legacy ``dump_patches`` ``.patch`` writer), change a
global, run code, open a pipe or tar member, hang, crash or allocate more than the file declares; each
refusal is one CheckpointError naming the file, never a traceback. Hangs, crashes and memory run in a
subprocess with a timeout and RLIMIT_AS; the rest in this process.

The builders (``pickle_*``, ``write_zip``, ``write_legacy``, ``write_tar``) assemble the pickles opcode by
opcode, so tests/test_checkpoint_hostile.py uses them too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy format
PATCH_TEXT = "first line\nsecond line chosen by the file\n"

# --- pickle assembly -------------------------------------------------------------------------------------


def s(text: str) -> bytes:
    """BINUNICODE ``text``."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def n(value: int) -> bytes:
    """An integer: BININT, or LONG1 for large ones."""
    if -2**31 <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def g(module: str, name: str) -> bytes:
    """GLOBAL."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + b"R"


def storage_id(key: str, numel: int, *, legacy: bool, stype: str = "FloatStorage") -> bytes:
    """A storage persistent id as torch writes it (zip: 5 fields; legacy: + the view, None)."""
    return tup(s("storage"), g("torch", stype), s(key), s("cpu"), n(numel), *([b"N"] if legacy else [])) + b"Q"


def tensor(key: str, numel: int, *, legacy: bool = False, size: tuple[int, ...] | None = None,
           stride: tuple[int, ...] | None = None, offset: int = 0) -> bytes:
    size = (numel,) if size is None else size
    stride = (1,) * len(size) if stride is None else stride
    return call(g("torch._utils", "_rebuild_tensor_v2"), storage_id(key, numel, legacy=legacy), n(offset),
                tup(*map(n, size)), tup(*map(n, stride)), b"\x89", call(g("collections", "OrderedDict")))


def checkpoint(meta: bytes, *, legacy: bool = False, weights: bytes | None = None) -> bytes:
    """``{"state_dict": {"w": <2 floats in storage "0">}, "meta": <meta>}`` as a protocol-2 pickle."""
    weights = tensor("0", 2, legacy=legacy) if weights is None else weights
    return (b"\x80\x02}(" + s("state_dict") + b"}(" + s("w") + weights + b"u" + s("meta") + meta + b"u.")


def dump_patches(target: str, *, legacy: bool = True) -> bytes:
    """The issue's attack: BUILD ``{dump_patches: True, __name__: target}`` on an allow-listed torch function,
    then a ``("module", <it>, "src.py", TEXT)`` persistent id: torch's legacy loader writes ``target.patch``."""
    # (None, attributes): pickle's BUILD setattr()s each one, so __name__ really changes
    state = pickle.dumps((None, {"dump_patches": True, "__name__": target}), 2)[2:-1]  # memo 0.. (ours is 100)
    return (b"\x80\x02" + g("torch._utils", "_rebuild_tensor") + b"qd" + state + b"b0"
            + tup(s("module"), b"hd", s("src.py"), s(PATCH_TEXT)) + b"Q.")


# --- container formats ------------------------------------------------------------------------------------


def write_zip(path: Path, pkl: bytes, records: dict[str, bytes] | None = None, prefix: str = "archive") -> Path:
    records = {"0": bytes(8)} if records is None else records
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", pkl)
        zf.writestr(f"{prefix}/byteorder", "little")
        for key, data in records.items():
            zf.writestr(f"{prefix}/data/{key}", data)
        zf.writestr(f"{prefix}/version", "3\n")
    return path


def write_legacy(path: Path, pkl: bytes, storages: dict[str, tuple[int, bytes]] | None = None) -> Path:
    """torch's legacy layout: magic, protocol, sys_info, the object pickle, the keys, each storage's bytes."""
    storages = {"0": (2, bytes(8))} if storages is None else storages
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    out = [pickle.dumps(MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps(sys_info, 2), pkl,
           pickle.dumps(sorted(storages), 2)]
    out += [struct.pack("<q", numel) + data for _, (numel, data) in sorted(storages.items())]
    path.write_bytes(b"".join(out))
    return path


def write_tar(path: Path) -> Path:
    """A PyTorch 0.3 tar checkpoint whose ``storages`` member is a FIFO (torch extracts it and blocks)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", pickle.dumps({"little_endian": True}, 2)), ("tensors", pickle.dumps(0, 2)),
                           ("pickle", pickle.dumps({}, 2))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        fifo = tarfile.TarInfo("storages")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    return path


# --- expectations ------------------------------------------------------------------------------------------


def expect_refusal(path: Path, *, reader: Callable[[Path], object] | None = None) -> str | None:
    """None when reading ``path`` raises one CheckpointError naming it (of bounded length); else what happened."""
    from core.errors import CheckpointError
    from core.safe_pickle import load_mmengine_checkpoint

    try:
        (reader or load_mmengine_checkpoint)(path)
    except CheckpointError as exc:
        msg = str(exc)
        if str(path) not in msg:
            return f"the refusal does not name the file: {msg[:300]}"
        if len(msg) > 2000:
            return f"the refusal is {len(msg)} characters long"
        return None
    except Exception as exc:  # the failure being probed for: a traceback instead of a refusal
        return f"{type(exc).__name__} instead of a refusal: {str(exc)[:300]}"
    return "the file was read without a refusal"


def _torch_globals_changed() -> str | None:
    import torch

    for name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
        fn = getattr(torch._utils, name)
        if fn.__name__ != name or "dump_patches" in vars(fn):
            return f"the pickle changed torch._utils.{name} (now named {fn.__name__!r}, {sorted(vars(fn))})"
    return None


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _patches(*folders: Path) -> list[str]:
    return sorted(str(p) for f in folders for p in f.rglob("*.patch"))


def _run(code: str, *, cwd: Path, timeout: float = 90, mem_gb: float | None = None, argv: tuple[str, ...] = ()
         ) -> subprocess.CompletedProcess | str:
    """Run ``code`` in a fresh Python in ``cwd``; a string when it hung."""
    def limit():  # pragma: no cover - in the child
        if mem_gb is not None:
            import resource

            size = int(mem_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit, env=env)
    except subprocess.TimeoutExpired:
        return f"still running after {timeout:.0f} s (a hang)"


# --- the cases -----------------------------------------------------------------------------------------------


def check_dump_patches(tmp: Path, *, absolute: bool, legacy: bool = True) -> str | None:
    """Item 2: the file names where torch's legacy loader writes ``PATH.patch``; nothing may be written."""
    (tmp / "sub").mkdir()
    target = str(tmp / "sub" / "evil") if absolute else "evil"
    src = tmp / "crafted.pth"
    pkl = dump_patches(target, legacy=legacy)
    (write_legacy(src, pkl) if legacy else write_zip(src, pkl))
    before = set(os.listdir(os.getcwd()))
    with _cwd(tmp):
        problem = expect_refusal(src)
    written = _patches(tmp) + sorted(set(os.listdir(os.getcwd())) - before)
    if written:
        return f"the checkpoint wrote {written}"
    return problem or _torch_globals_changed()


def check_dump_patches_cli(tmp: Path) -> str | None:
    """Item 2 through ``vpp import-checkpoint`` (one error line, exit 2, no .patch, no output)."""
    src = write_legacy(tmp / "crafted.pth", dump_patches("evil"))
    out = tmp / "out.safetensors"
    proc = _run(f"import sys; from core.cli import main; sys.exit(main(['import-checkpoint', {str(src)!r}, "
                f"'--out', {str(out)!r}]))", cwd=tmp)
    if isinstance(proc, str):
        return proc
    if _patches(tmp) or out.exists():
        return f"files were written: {_patches(tmp)} {out.exists()}"
    if proc.returncode != 2 or "Traceback" in proc.stderr or str(src) not in proc.stderr:
        return f"exit {proc.returncode}, stderr: {proc.stderr[-600:]}"
    return None


def check_build_on_a_global(tmp: Path) -> str | None:
    """A zip pickle that sets attributes on an allow-listed torch function (process-wide state)."""
    state = pickle.dumps((None, {"dump_patches": True, "__name__": "evil"}), 2)[2:-1]
    meta = g("torch._utils", "_rebuild_tensor_v2") + state + b"b"
    return expect_refusal(write_zip(tmp / "build.pth", checkpoint(meta))) or _torch_globals_changed()


def check_persistent_id(tmp: Path, pid: bytes, *, legacy: bool) -> str | None:
    """Item 12: persistent ids other than torch's storage form ("module", unknown, not a tuple)."""
    pkl = checkpoint(pid + b"Q")
    src = write_legacy(tmp / "pid.pth", pkl) if legacy else write_zip(tmp / "pid.pth", pkl)
    with _cwd(tmp):
        return expect_refusal(src) or (f"the checkpoint wrote {_patches(tmp)}" if _patches(tmp) else None)


def check_meta(tmp: Path, meta: bytes, name: str) -> str | None:
    """Item 12: meta that made the old reader raise (LookupError, RecursionError, ...)."""
    return expect_refusal(write_zip(tmp / f"{name}.pth", checkpoint(meta)))


def deep_list(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)


def self_dict() -> bytes:
    return b"}q\x05" + s("self") + b"h\x05s"


def deep_tuple_key(depth: int) -> bytes:
    """``{((((...),),),): 1}``: hashing the key recurses ``depth`` levels in C."""
    return b"}" + b")" + b"\x85" * depth + n(1) + b"s"


def check_fifo_tar(tmp: Path) -> str | None:
    """Item 11: a tar checkpoint whose ``storages`` member is a FIFO."""
    src = write_tar(tmp / "old.pth")
    work = tmp / "work"
    work.mkdir()
    proc = _run("from core.errors import CheckpointError\nfrom core.safe_pickle import load_mmengine_checkpoint\n"
                f"try:\n    load_mmengine_checkpoint({str(src)!r})\nexcept CheckpointError as exc:\n"
                "    print('REFUSED', exc)\nelse:\n    print('LOADED')", cwd=work, timeout=60)
    if isinstance(proc, str):
        return proc
    if "REFUSED" not in proc.stdout or str(src) not in proc.stdout:
        return f"exit {proc.returncode}: {proc.stdout[-300:]} {proc.stderr[-600:]}"
    extra = sorted(str(p) for p in tmp.rglob("*") if p not in (src, work))
    return f"the reader created {extra}" if extra else None


def check_fifo_path(tmp: Path) -> str | None:
    """Item 11: the checkpoint path itself is a FIFO (or a link to one, or a folder): refused without blocking,
    through the reader, the release importer and the timm backbone reader."""
    fifo = tmp / "ckpt.pth"
    os.mkfifo(fifo)
    (tmp / "link.pth").symlink_to(fifo)
    (tmp / "folder.pth").mkdir()
    code = ("import sys\nfrom core.errors import CheckpointError, VPPError\nfrom core.cli import main\n"
            "from core.safe_pickle import load_torch_file_safely\nfrom core.model.timm_import import read_state_dict\n"
            "bad = []\n"
            "for name in ('ckpt.pth', 'link.pth', 'folder.pth'):\n"
            "    for reader in (load_torch_file_safely, read_state_dict):\n"
            "        try:\n            reader(name)\n            bad.append(name + ' read')\n"
            "        except CheckpointError as exc:\n"
            "            bad += [] if name in str(exc) else [name + ': ' + str(exc)]\n"
            "    if main(['import-checkpoint', name, '--out', 'out.safetensors']) != 2:\n"
            "        bad.append(name + ': import exit code')\n"
            "print('BAD', bad) if bad else print('OK')\n")
    proc = _run(code, cwd=tmp, timeout=60)
    if isinstance(proc, str):
        return proc
    if "OK" not in proc.stdout or "Traceback" in proc.stderr:
        return f"exit {proc.returncode}: {proc.stdout[-400:]} {proc.stderr[-600:]}"
    return None


def check_deep_tuple_key(tmp: Path) -> str | None:
    """Item 12: a 10**6-deep tuple as a dict key (hashing it crashes CPython: segfault)."""
    src = write_zip(tmp / "deep_key.pth", checkpoint(deep_tuple_key(1_000_000)))
    proc = _run("from core.errors import CheckpointError\nfrom core.safe_pickle import load_mmengine_checkpoint\n"
                f"try:\n    load_mmengine_checkpoint({str(src)!r})\nexcept CheckpointError as exc:\n"
                "    print('REFUSED', exc)\nelse:\n    print('LOADED')", cwd=tmp, timeout=60)
    if isinstance(proc, str):
        return proc
    if proc.returncode != 0 or "REFUSED" not in proc.stdout:
        return f"exit {proc.returncode} (a crash?): {proc.stdout[-300:]} {proc.stderr[-400:]}"
    return None


def hash_flood(count: int, *, as_set: bool = False) -> bytes:
    """``count`` distinct ints that all hash alike (multiples of 2**61 - 1) as dict keys or set items."""
    items = b"".join(n(k * (2**61 - 1)) + (b"" if as_set else b"N") for k in range(1, count + 1))
    return (b"\x8f(" + items + b"\x90") if as_set else (b"}(" + items + b"u")


def check_hash_flood(tmp: Path) -> str | None:
    """A dict and a set of 200000 keys sharing one hash: inserting them takes hours unless refused."""
    files = [write_zip(tmp / f"flood_{kind}.pth", checkpoint(hash_flood(200_000, as_set=kind == "set")))
             for kind in ("dict", "set")]
    proc = _run("import sys\nfrom core.errors import CheckpointError\n"
                "from core.safe_pickle import load_mmengine_checkpoint\n"
                "for path in sys.argv[1:]:\n    try:\n        load_mmengine_checkpoint(path)\n"
                "        print('LOADED', path)\n    except CheckpointError as exc:\n        print('REFUSED', exc)\n",
                cwd=tmp, timeout=60, argv=tuple(map(str, files)))
    if isinstance(proc, str):
        return proc
    if proc.stdout.count("REFUSED") != 2 or "same hash" not in proc.stdout:
        return f"exit {proc.returncode}: {proc.stdout[-400:]} {proc.stderr[-400:]}"
    return None


MEMORY_LIMIT_MB = 400  # what one hostile file may add to the reader's peak memory


def memory_files(tmp: Path) -> dict[str, Path]:
    """Item 13: small files that declare big allocations (each must be refused before allocating)."""
    big, huge = 3 * 10**8, 6 * 10**9
    np_array = g("numpy.core.multiarray", "_reconstruct")
    ndarray = (np_array + tup(g("numpy", "ndarray"), tup(n(0)), call(g("_codecs", "encode"), s("b"), s("latin1")))
               + b"R")
    dtype = (call(g("numpy", "dtype"), s("{}"), b"\x89\x88") + tup(n(3), s("<"), b"NNN", n(-1), n(-1), n(0)) + b"b")
    files = {
        "bytearray(6e9) in meta": write_zip(tmp / "m1.pth", checkpoint(call(g("__builtin__", "bytearray"), n(huge)))),
        "bytearray(6e9) as the legacy magic pickle": tmp / "m2.pth",
        "BINBYTES8 declaring 6e9": write_zip(tmp / "m3.pth", checkpoint(b"\x8e" + struct.pack("<Q", huge))),
        "BINUNICODE8 declaring 6e9 (legacy)": write_legacy(tmp / "m4.pth",
                                                            checkpoint(b"\x8d" + struct.pack("<Q", huge), legacy=True)),
        "numpy _reconstruct of shape 3e8": write_zip(tmp / "m12.pth", checkpoint(
            np_array + tup(g("numpy", "ndarray"), tup(n(big)), call(g("_codecs", "encode"), s("b"), s("latin1")))
            + b"R")),
        "numpy object array of shape 3e8": write_zip(tmp / "m5.pth", checkpoint(
            ndarray + tup(n(1), tup(n(big)), dtype.replace(b"{}", b"O8"), b"\x89", b"]") + b"b")),
        "numpy float array of shape 3e8": write_zip(tmp / "m6.pth", checkpoint(
            ndarray + tup(n(1), tup(n(big)), dtype.replace(b"{}", b"f8"), b"\x89", s("")) + b"b")),
        "legacy storage of 1e12 floats": write_legacy(tmp / "m7.pth", checkpoint(
            b"N", legacy=True, weights=tensor("0", 10**12, legacy=True)), {"0": (10**12, bytes(8))}),
        "zip storage of 1e12 floats": write_zip(tmp / "m8.pth", checkpoint(b"N", weights=tensor("0", 10**12))),
        "a 2-float storage viewed as 1e12 floats (stride 0)": write_zip(tmp / "m9.pth", checkpoint(
            b"N", weights=tensor("0", 2, size=(10**6, 10**6), stride=(0, 0)))),
        "one 1 MB string encoded 20000 times": write_zip(tmp / "m10.pth", checkpoint(
            s("x" * 2**20) + b"q\x07]" + (call(g("_codecs", "encode"), b"h\x07", s("latin1")) + b"a") * 20_000)),
        "LONG4 declaring 1e8 bytes": write_zip(tmp / "m11.pth", checkpoint(b"\x8b" + struct.pack("<i", 10**8))),
    }
    (tmp / "m2.pth").write_bytes(b"\x80\x02" + call(g("__builtin__", "bytearray"), n(huge)) + b".")
    return files


_MEMORY_CHILD = """
import json, resource, sys
from core.errors import CheckpointError
from core.safe_pickle import load_mmengine_checkpoint
import torch, numpy

def peak_kb():  # the peak of address space (catches allocations never touched), else of resident memory
    try:
        with open('/proc/self/status') as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith('VmPeak:'))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

out = {}
for name, path in json.loads(sys.argv[1]).items():
    before = peak_kb()
    try:
        load_mmengine_checkpoint(path)
        verdict = 'read without a refusal'
    except CheckpointError as exc:
        verdict = None if path in str(exc) else 'the refusal does not name the file: ' + str(exc)[:200]
    except BaseException as exc:
        verdict = type(exc).__name__ + ' instead of a refusal: ' + str(exc)[:200]
    grown = (peak_kb() - before) // 1024
    out[name] = [verdict, grown]
print('RESULT', json.dumps(out))
"""


def check_memory(tmp: Path) -> str | None:
    files = memory_files(tmp)
    proc = _run(_MEMORY_CHILD, cwd=tmp, timeout=180, mem_gb=6,
                argv=(json.dumps({k: str(v) for k, v in files.items()}),))
    if isinstance(proc, str):
        return proc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return f"the reader died (exit {proc.returncode}): {proc.stderr[-600:]}"
    problems = []
    for name, (verdict, grown) in json.loads(lines[0][7:]).items():
        if verdict:
            problems.append(f"{name}: {verdict}")
        elif grown > MEMORY_LIMIT_MB:
            problems.append(f"{name}: refused, but only after using {grown} MB")
    return "; ".join(problems) or None


def check_legit(tmp: Path) -> str | None:
    """Control: torch.save files (zip and legacy) of an mmengine-like checkpoint still load, equal."""
    import torch

    from core.safe_pickle import load_mmengine_checkpoint

    sd = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).state_dict()  # with _metadata
    for legacy in (False, True):
        path = tmp / f"ok_{legacy}.pth"
        torch.save({"state_dict": sd, "meta": {"epoch": 3}}, path, _use_new_zipfile_serialization=not legacy)
        try:
            got = load_mmengine_checkpoint(path)
        except Exception as exc:  # a refusal of a legitimate file is the failure probed here
            return f"a legitimate {'legacy' if legacy else 'zip'} file is refused: {exc}"
        if got["meta"] != {"epoch": 3} or got["state_dict"]._metadata != sd._metadata \
                or any(not torch.equal(got["state_dict"][k], v) for k, v in sd.items()):
            return f"{'legacy' if legacy else 'zip'} file read back differently"
    return None


def cases() -> list[tuple[str, Callable[[Path], str | None]]]:
    return [
        ("legacy .pth: dump_patches writes PATH.patch (relative PATH)",
         lambda t: check_dump_patches(t, absolute=False)),
        ("legacy .pth: dump_patches writes PATH.patch (absolute PATH)",
         lambda t: check_dump_patches(t, absolute=True)),
        ("zip .pth: the same dump_patches pickle", lambda t: check_dump_patches(t, absolute=False, legacy=False)),
        ("vpp import-checkpoint of the dump_patches file", check_dump_patches_cli),
        ("zip .pth: BUILD sets attributes on an allow-listed torch function", check_build_on_a_global),
        ("legacy .pth: a 'module' persistent id naming OrderedDict",
         lambda t: check_persistent_id(t, tup(s("module"), g("collections", "OrderedDict"), s("a.py"), s("x")),
                                       legacy=True)),
        ("zip .pth: a 'module' persistent id", lambda t: check_persistent_id(
            t, tup(s("module"), g("collections", "OrderedDict"), s("a.py"), s("x")), legacy=False)),
        ("zip .pth: a persistent id that is not a tuple", lambda t: check_persistent_id(t, s("0"), legacy=False)),
        ("zip .pth: a storage id with an unknown storage type", lambda t: check_persistent_id(
            t, tup(s("storage"), g("collections", "OrderedDict"), s("0"), s("cpu"), n(2)), legacy=False)),
        ("meta: _codecs.encode(x, 'bad')",
         lambda t: check_meta(t, call(g("_codecs", "encode"), s("x"), s("bad")), "codec")),
        ("meta: _codecs.encode(x, 'rot13') / 'zlib'",
         lambda t: check_meta(t, call(g("_codecs", "encode"), s("x"), s("rot13")), "rot13")
         or check_meta(t, call(g("_codecs", "encode"), s("x"), s("zlib_codec")), "zlib")),
        ("meta: a list nested 200000 deep", lambda t: check_meta(t, deep_list(200_000), "deep")),
        ("meta: a dict that contains itself", lambda t: check_meta(t, self_dict(), "cycle")),
        ("meta: a numpy dtype with fields", lambda t: check_meta(
            t, call(g("numpy", "dtype"), s("V4"), b"\x89\x88"), "record")),
        ("meta: copyreg._reconstructor / EXT1", lambda t: check_meta(
            t, call(g("copy_reg", "_reconstructor"), g("builtins", "object"), g("builtins", "object"), b"N"), "reco")
         or check_meta(t, b"\x82\x01", "ext")),
        ("meta: a 10**6-deep tuple as a dict key (CPython crash)", check_deep_tuple_key),
        ("meta: a dict and a set of 200000 ints sharing one hash (a hang)", check_hash_flood),
        ("tar .pth whose storages member is a FIFO", check_fifo_tar),
        ("the checkpoint path is a FIFO / link to one / folder", check_fifo_path),
        ("memory: declared sizes beyond the file (bytearray(6e9), 3e8-element arrays, 1e12 storages, ...)",
         check_memory),
        ("control: torch.save zip and legacy files still load", check_legit),
    ]
