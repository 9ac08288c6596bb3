"""core.model_zoo / ``vpp models``: the registry, and the downloader against a loopback HTTP server."""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import http.server
import re
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from core import model_zoo
from core.commands import models as models_cmd
from core.errors import VPPError
from core.model_zoo import ZOO, DownloadError, cache_dir, download, get_entry, read_sidecar

PAYLOAD = bytes(range(256)) * 300 + b"tail"  # 76,804 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/files/model.pth")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/files/model.pth":
            body = b"not here"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        data, start = srv.payload, 0
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drop_after is not None:  # announce everything, send only part, then hang up (once)
            n, srv.drop_after = srv.drop_after, None
            self.wfile.write(body[:n])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@contextlib.contextmanager
def _local_server(monkeypatch, handler, **attrs):
    """A threaded HTTP server on 127.0.0.1 (no proxy) with ``attrs`` set on it, stopped on exit."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    for key, value in attrs.items():
        setattr(srv, key, value)
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def server(monkeypatch):
    with _local_server(monkeypatch, _Handler, payload=PAYLOAD, drop_after=None, ignore_range=False,
                       requests=[]) as srv:
        yield srv


def _get(srv, tmp_path, **kw):
    kw.setdefault("progress", False)
    return download(f"{srv.base}/files/model.pth", tmp_path / "dl", chunk=4096, **kw)


# --- registry --------------------------------------------------------------------------------------------


def test_registry_has_the_eight_release_files():
    assert len(ZOO) == 8 and len({e.name for e in ZOO}) == 8
    assert [e.kind for e in ZOO].count("vpp") == 6 and [e.kind for e in ZOO].count("dense-coco") == 2
    assert {e.variant for e in ZOO} == {"tiny", "small"}
    assert all(re.fullmatch(r"https://osf\.io/[a-z0-9]{5}/\?action=download", e.url) for e in ZOO)
    assert get_entry("small-pkr39.3").url == "https://osf.io/yxjk6/?action=download"
    assert get_entry("coco-tiny").url == "https://osf.io/rywjc/?action=download"
    assert all(e.sha256 is None and "no checksum" in e.notes for e in ZOO)  # the release publishes none
    with pytest.raises(VPPError, match="known models"):
        get_entry("large")


def test_cache_dir_follows_xdg(tmp_path):
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "vpp-studio" / "models"
    assert cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/vpp-studio/models")
    assert cache_dir({"HOME": "/home/u", "XDG_CACHE_HOME": "rel"}) == Path("/home/u/.cache/vpp-studio/models")


# --- downloader ------------------------------------------------------------------------------------------


def test_full_download_with_checksum(server, tmp_path):
    path = _get(server, tmp_path, sha256=PAYLOAD_SHA)
    assert path == tmp_path / "dl" / "model.pth" and path.read_bytes() == PAYLOAD
    assert read_sidecar(path) == PAYLOAD_SHA
    assert not (tmp_path / "dl" / "model.pth.part").exists()
    assert server.requests == [("/files/model.pth", None)]
    assert _get(server, tmp_path, sha256=PAYLOAD_SHA) == path  # cached: no second request
    assert len(server.requests) == 1


def test_unknown_checksum_is_recorded_and_reported(server, tmp_path):
    msgs = []
    path = _get(server, tmp_path, log=msgs.append)
    assert path.read_bytes() == PAYLOAD and read_sidecar(path) == PAYLOAD_SHA
    assert any("unverified (the release publishes no checksum)" in m for m in msgs)


def test_checksum_mismatch_deletes_the_file(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        _get(server, tmp_path, sha256=wrong)
    assert wrong in str(info.value) and PAYLOAD_SHA in str(info.value)
    assert not any((tmp_path / "dl").iterdir())


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.drop_after = 10_000
    with pytest.raises(DownloadError, match="interrupted after 10000 of 76804 bytes"):
        _get(server, tmp_path, retries=0)
    part = tmp_path / "dl" / "model.pth.part"
    assert part.stat().st_size == 10_000 and not (tmp_path / "dl" / "model.pth").exists()
    path = _get(server, tmp_path, sha256=PAYLOAD_SHA, retries=0)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/files/model.pth", "bytes=10000-")


def test_interruption_is_resumed_automatically(server, tmp_path):
    server.drop_after = 30_000
    path = _get(server, tmp_path, sha256=PAYLOAD_SHA)
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, "bytes=30000-"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "model.pth.part").write_bytes(b"x" * 5000)  # wrong bytes: must not survive
    server.ignore_range = True
    path = _get(server, tmp_path, sha256=PAYLOAD_SHA)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/files/model.pth", "bytes=5000-")]


def test_partial_larger_than_remote_restarts(server, tmp_path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "model.pth.part").write_bytes(b"y" * (len(PAYLOAD) + 10))
    path = _get(server, tmp_path, sha256=PAYLOAD_SHA)
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_redirect_is_followed_and_keeps_the_range(server, tmp_path):
    (tmp_path / "m.pth.part").write_bytes(PAYLOAD[:1000])  # as osf.io does: the link redirects to storage
    path = download(f"{server.base}/redirect", tmp_path, filename="m.pth", sha256=PAYLOAD_SHA, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/redirect", "bytes=1000-"), ("/files/model.pth", "bytes=1000-")]


def test_http_error_names_code_and_url(server, tmp_path):
    url = f"{server.base}/files/missing.pth"
    with pytest.raises(DownloadError, match=re.escape(f"HTTP 404 Not Found for {url}")):
        download(url, tmp_path, progress=False)


def test_no_network_message(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=re.escape("downloading needs internet access; this machine cannot reach "
                                                      "127.0.0.1")):
        download(f"http://127.0.0.1:{port}/m.pth", tmp_path, progress=False, timeout=5)


def test_disk_full_is_one_clear_error(server, tmp_path, monkeypatch):
    class _Full:
        def __init__(self, *a, **k):
            pass

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(model_zoo, "open", _Full, raising=False)
    with pytest.raises(DownloadError, match="disk full while writing"):
        _get(server, tmp_path)


# --- vpp models --------------------------------------------------------------------------------------------


def _parse(argv):
    parser = argparse.ArgumentParser(prog="vpp")
    models_cmd.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_models_list_prints_all_names(tmp_path, capsys):
    (tmp_path / "tiny-dense.pth").write_bytes(b"0" * 2048)
    assert models_cmd.run(_parse(["models", "list", "--dir", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    for e in ZOO:
        assert e.name in out
    row = next(line for line in out.splitlines() if line.startswith("tiny-dense "))
    assert "downloaded" in row and "2.0 KiB" in row and "100% (dense)" in row and "not published" in row
    assert "needs internet access" in out
    (tmp_path / "tiny-dense.safetensors").write_bytes(b"")
    (tmp_path / "coco-tiny.safetensors").write_bytes(b"")
    models_cmd.run(_parse(["models", "list", "--dir", str(tmp_path)]))
    states = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line and line[0] != "-"}
    assert " imported " in states["tiny-dense"] and " imported " in states["coco-tiny"]
    assert "not present" in states["small-dense"]


def test_models_through_the_cli(tmp_path, capsys, monkeypatch):
    from core import cli

    if "models" not in cli.COMMANDS:  # until core/cli.py registers it
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "models"))
    assert cli.main(["models", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(e.name in out for e in ZOO)
    assert cli.main(["models", "download", "no-such-model", "--dir", str(tmp_path)]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_models_download_prints_the_path(server, tmp_path, capsys, monkeypatch):
    entry = model_zoo.ZooEntry(name="tiny-test", variant="tiny", kind="vpp", pkr=0.5,
                               url=f"{server.base}/files/model.pth", sha256=None, size=None, config=None, notes="")
    monkeypatch.setattr(model_zoo, "ZOO", (*ZOO, entry))
    assert models_cmd.run(_parse(["models", "download", "tiny-test", "--dir", str(tmp_path), "--no-progress",
                                  "--no-import"])) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "tiny-test.pth")
    assert "unverified" in err and "vpp import-checkpoint" in err
    assert (tmp_path / "tiny-test.pth").read_bytes() == PAYLOAD


def test_models_download_imports_the_file_and_the_app_list_finds_it(server, tmp_path, capsys, monkeypatch):
    from core import release_import

    entry = model_zoo.ZooEntry(name="tiny-test", variant="tiny", kind="vpp", pkr=0.5,
                               url=f"{server.base}/files/model.pth", sha256=None, size=None, config=None, notes="")
    monkeypatch.setattr(model_zoo, "ZOO", (*ZOO, entry))
    calls = []

    def fake_import(src, out, *, variant):  # the importer itself is tested in tests/test_release_import.py
        calls.append(SimpleNamespace(src=src, out=out, variant=variant))
        Path(out).write_bytes(b"model")
        return Path(out)

    monkeypatch.setattr(release_import, "import_release_checkpoint", fake_import)
    assert models_cmd.imported_models(tmp_path) == []
    assert models_cmd.run(_parse(["models", "download", "tiny-test", "--dir", str(tmp_path), "--no-progress"])) == 0
    out = capsys.readouterr().out
    assert [(c.src, c.out, c.variant) for c in calls] == [
        (str(tmp_path / "tiny-test.pth"), str(tmp_path / "tiny-test.safetensors"), "tiny")]
    assert out.strip() == str(tmp_path / "tiny-test.safetensors")
    assert models_cmd.imported_models(tmp_path) == [("tiny-test", tmp_path / "tiny-test.safetensors")]


# --- progress and cancel (the app's dialog drives the same download) ---------------------------------------


def test_progress_reaches_the_total(server, tmp_path):
    seen = []
    _get(server, tmp_path, on_progress=lambda have, total: seen.append((have, total)))
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [h for h, _ in seen] == sorted(h for h, _ in seen) and len(seen) > 2


def test_cancel_keeps_the_partial_file_and_resumes(server, tmp_path):
    stop = threading.Event()

    def on_progress(have, total):
        if have >= 8192:
            stop.set()

    with pytest.raises(model_zoo.DownloadCancelled, match=r"cancelled after .* bytes; the partial file .* is kept"):
        _get(server, tmp_path, on_progress=on_progress, cancelled=stop.is_set)
    part = tmp_path / "dl" / "model.pth.part"
    kept = part.stat().st_size
    assert 8192 <= kept < len(PAYLOAD) and not (tmp_path / "dl" / "model.pth").exists()
    path = _get(server, tmp_path, sha256=PAYLOAD_SHA)
    assert path.read_bytes() == PAYLOAD and server.requests[-1] == ("/files/model.pth", f"bytes={kept}-")


def test_cancel_before_the_first_request(server, tmp_path):
    with pytest.raises(model_zoo.DownloadCancelled):
        _get(server, tmp_path, cancelled=lambda: True)
    assert server.requests == []


def test_cli_download_failure_says_how_to_get_the_file_offline(tmp_path, capsys, monkeypatch):
    from core import cli

    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = model_zoo.ZooEntry(name="tiny-test", variant="tiny", kind="vpp", pkr=0.5,
                               url=f"http://127.0.0.1:{port}/m.pth", sha256=None, size=None, config=None, notes="")
    monkeypatch.setattr(model_zoo, "ZOO", (*ZOO, entry))
    assert cli.main(["models", "download", "tiny-test", "--dir", str(tmp_path), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "needs internet access" in err and "Traceback" not in err
    assert f"vpp import-checkpoint FILE.pth --out {tmp_path / 'tiny-test.safetensors'} --variant tiny" in err
    assert str(tmp_path / "tiny-test.pth") in err


# --- issue 25, item 10: size cap, stalls, unproven bodies, refused imports ---------------------------------

ZIP_PAYLOAD = None  # built once: a real zip, as torch checkpoints are


def _zip_payload() -> bytes:
    global ZIP_PAYLOAD
    if ZIP_PAYLOAD is None:
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("archive/data.pkl", PAYLOAD)
        ZIP_PAYLOAD = buf.getvalue()
    return ZIP_PAYLOAD


class _Hostile(http.server.BaseHTTPRequestHandler):
    """One misbehaving server per ``server.mode``; every loop ends within a few seconds or on a closed socket."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            return False

    def do_GET(self):
        srv, mode = self.server, self.server.mode
        srv.requests.append(self.headers.get("Range"))
        body = srv.body
        if mode == "header-drip":  # the status line, then one header byte at a time, forever
            self._send(b"HTTP/1.1 200 OK\r\n")
            for _ in range(200):
                if not self._send(b"X"):
                    return
                time.sleep(0.05)
            return
        if mode == "lie-416" and self.headers.get("Range"):  # "your partial file is complete": a lie
            start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1))
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{start}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if mode == "announce-huge":
            self.send_header("Content-Length", str(10 << 30))
        elif mode not in ("endless", "no-length", "drip"):
            self.send_header("Content-Length", str(len(body)))
        self.close_connection = True
        self.end_headers()
        if mode == "endless":
            block = b"\0" * 65536
            for _ in range(2000):  # 128 MiB at most, if the client never stops reading
                if not self._send(block):
                    return
        elif mode == "drip":  # one byte at a time: never a socket timeout
            for _ in range(200):
                if not self._send(b"x"):
                    return
                time.sleep(0.02)
        elif mode == "stall":  # half the body, then silence (the connection stays open)
            self._send(body[: len(body) // 2])
            time.sleep(3)
        elif mode in ("no-length", "lie-416"):  # the body, cut by srv.cut, ended by closing the connection
            self._send(body[: srv.cut] if srv.cut is not None else body)
        else:
            self._send(body)


@pytest.fixture
def hostile(monkeypatch):
    with _local_server(monkeypatch, _Hostile, mode=None, body=PAYLOAD, cut=None, requests=[]) as srv:
        srv.url = f"{srv.base}/m.pth"
        yield srv


def _fetch(srv, tmp_path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("timeout", 5)
    return download(srv.url, tmp_path / "dl", chunk=4096, **kw)


def _left(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "dl").iterdir()) if (tmp_path / "dl").exists() else []


def test_an_endless_body_is_cut_at_the_size_cap(hostile, tmp_path):
    hostile.mode = "endless"
    with pytest.raises(DownloadError, match=r"sent more than \d+ bytes, more than the 200000 bytes"):
        _fetch(hostile, tmp_path, max_bytes=200_000)
    assert _left(tmp_path) == []  # the partial body is deleted, nothing is promoted


def test_a_body_announced_larger_than_the_cap_is_refused_before_reading(hostile, tmp_path):
    hostile.mode = "announce-huge"
    with pytest.raises(DownloadError, match=r"announces 10737418240 bytes, more than the 2147483648 bytes"):
        _fetch(hostile, tmp_path)  # the default cap of a file of unknown size
    assert _left(tmp_path) == []


def test_the_cap_of_an_entry_of_known_size_is_its_size_plus_a_margin():
    entry = model_zoo.ZooEntry(name="x", variant="tiny", kind="vpp", pkr=0.5, url="http://h/x", sha256=None,
                               size=500 << 20, config=None, notes="")
    assert model_zoo.size_limit(entry) == (500 << 20) + 5 * (1 << 20)
    assert model_zoo.size_limit(get_entry("tiny-dense")) == model_zoo.MAX_UNKNOWN_SIZE
    assert model_zoo.size_limit(entry, 10) == 10


def test_a_server_sending_one_byte_at_a_time_is_stopped(hostile, tmp_path):
    hostile.mode = "drip"
    with pytest.raises(DownloadError, match=r"sent only \d+ bytes in \d+ s .*too slow.* is kept"):
        _fetch(hostile, tmp_path, min_rate=(1000, 0.3))
    assert _left(tmp_path) == ["m.pth.part"]  # resumable; never promoted


def test_a_server_dripping_its_headers_is_stopped(hostile, tmp_path):
    hostile.mode = "header-drip"
    with pytest.raises(DownloadError, match=r"did not answer within 0.5 s"):
        _fetch(hostile, tmp_path, timeout=0.5)
    assert not (tmp_path / "dl" / "m.pth").exists()


def test_a_stalled_body_times_out_and_resumes_later(hostile, tmp_path):
    hostile.mode = "stall"
    with pytest.raises(DownloadError, match=r"interrupted after 38402 of 76804 bytes \(no data for 0.3 s\)"):
        _fetch(hostile, tmp_path, timeout=0.3, retries=0)
    assert _left(tmp_path) == ["m.pth.part"]


def test_a_truncated_body_without_length_is_never_promoted(hostile, tmp_path, capsys, monkeypatch):
    hostile.mode, hostile.cut = "no-length", 10_000
    with pytest.raises(DownloadError, match="did not say how long the file is"):
        _fetch(hostile, tmp_path)
    assert _left(tmp_path) == []
    entry = model_zoo.ZooEntry(name="m", variant="tiny", kind="vpp", pkr=0.5, url=hostile.url, sha256=None,
                               size=None, config=None, notes="")
    monkeypatch.setattr(model_zoo, "ZOO", (entry,))
    assert models_cmd.run(_parse(["models", "list", "--dir", str(tmp_path / "dl")])) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("m "))
    assert "not present" in row  # `vpp models list` does not say it is there


def test_a_body_without_length_is_kept_only_when_it_proves_complete(hostile, tmp_path):
    hostile.mode, hostile.body = "no-length", _zip_payload()
    hostile.cut = len(hostile.body) - 100  # a cut zip: its end record is missing
    with pytest.raises(DownloadError, match="did not say how long"):
        _fetch(hostile, tmp_path)
    hostile.cut = None  # the whole zip: its central directory reads back
    assert _fetch(hostile, tmp_path).read_bytes() == hostile.body
    hostile.body, hostile.cut = PAYLOAD, 5000  # not a zip, but its sha256 is known: checked, refused
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        _fetch(hostile, tmp_path, filename="other.pth", sha256=PAYLOAD_SHA)


def test_a_416_answer_to_a_resume_is_not_taken_as_complete(hostile, tmp_path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "m.pth.part").write_bytes(PAYLOAD[:3000])
    hostile.mode = "lie-416"  # 416 "bytes */3000": the partial file would be promoted as the whole file
    path = _fetch(hostile, tmp_path)
    assert path.read_bytes() == PAYLOAD  # restarted from byte 0 instead
    assert hostile.requests == ["bytes=3000-", None]


def test_a_416_with_a_known_size_promotes_only_a_partial_of_that_size(hostile, tmp_path):
    entry = model_zoo.ZooEntry(name="m", variant="tiny", kind="vpp", pkr=0.5, url=hostile.url, sha256=None,
                               size=len(PAYLOAD), config=None, notes="")
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "m.pth.part").write_bytes(PAYLOAD)  # complete: an earlier run stopped before the rename
    hostile.mode = "lie-416"
    assert download(entry, tmp_path / "dl", progress=False).read_bytes() == PAYLOAD
    assert hostile.requests == [f"bytes={len(PAYLOAD)}-"]


def test_a_body_of_another_size_than_the_entry_says_is_refused(server, tmp_path):
    entry = model_zoo.ZooEntry(name="m", variant="tiny", kind="vpp", pkr=0.5, url=f"{server.base}/files/model.pth",
                               sha256=None, size=len(PAYLOAD) - 4, config=None, notes="")
    with pytest.raises(DownloadError, match=rf"gave {len(PAYLOAD)} bytes, but the file has {len(PAYLOAD) - 4}"):
        download(entry, tmp_path / "dl", progress=False)
    assert not (tmp_path / "dl" / "m.pth").exists()


def test_a_link_in_place_of_the_partial_file_is_never_written_through(server, tmp_path):
    from core.atomic import NotOurFile

    (tmp_path / "dl").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / "dl" / "model.pth.part").symlink_to(victim)
    with pytest.raises(NotOurFile, match="symbolic link"):
        _get(server, tmp_path)
    assert victim.read_text() == "keep me\n" and not (tmp_path / "dl" / "model.pth").exists()


def test_a_pth_whose_import_is_refused_is_moved_aside(server, tmp_path, capsys, monkeypatch):
    from core import release_import, released_models
    from core.errors import CheckpointError

    entry = model_zoo.ZooEntry(name="tiny-test", variant="tiny", kind="vpp", pkr=0.5,
                               url=f"{server.base}/files/model.pth", sha256=None, size=None, config=None, notes="")
    monkeypatch.setattr(model_zoo, "ZOO", (*ZOO, entry))

    def refuse(src, out, *, variant):
        raise CheckpointError(f"{src}: the checkpoint names a forbidden global")

    monkeypatch.setattr(release_import, "import_release_checkpoint", refuse)
    with pytest.raises(CheckpointError) as info:
        models_cmd.run(_parse(["models", "download", "tiny-test", "--dir", str(tmp_path), "--no-progress"]))
    pth = tmp_path / "tiny-test.pth"
    assert f"{pth}: moved to {pth}.refused" in str(info.value) and "forbidden global" in str(info.value)
    assert not pth.exists() and not (tmp_path / "tiny-test.pth.sha256").exists()
    assert (tmp_path / "tiny-test.pth.refused").read_bytes() == PAYLOAD
    assert released_models.local_model(entry, tmp_path).state == "absent"
    requests = len(server.requests)
    with pytest.raises(CheckpointError):  # the next Get downloads anew instead of trusting the refused file
        released_models.get_model(entry, tmp_path, progress=False)
    assert len(server.requests) == requests + 1
