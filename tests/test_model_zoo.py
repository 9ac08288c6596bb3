"""core.model_zoo / ``vpp models``: the registry, and the downloader against a loopback HTTP server."""

from __future__ import annotations

import argparse
import errno
import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

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


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.payload, srv.drop_after, srv.ignore_range, srv.requests = PAYLOAD, None, False, []
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


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
    assert "yes" in row and "2.0 KiB" in row and "100% (dense)" in row and "not published" in row
    assert "needs internet access" in out


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
    from core.commands import import_checkpoint

    entry = model_zoo.ZooEntry(name="tiny-test", variant="tiny", kind="vpp", pkr=0.5,
                               url=f"{server.base}/files/model.pth", sha256=None, size=None, config=None, notes="")
    monkeypatch.setattr(model_zoo, "ZOO", (*ZOO, entry))
    calls = []

    def fake_import(args):  # the importer itself is tested in tests/test_release_import.py
        calls.append(args)
        Path(args.out).write_bytes(b"model")
        return 0

    monkeypatch.setattr(import_checkpoint, "run", fake_import)
    assert models_cmd.imported_models(tmp_path) == []
    assert models_cmd.run(_parse(["models", "download", "tiny-test", "--dir", str(tmp_path), "--no-progress"])) == 0
    out = capsys.readouterr().out
    assert [(c.src, c.out, c.variant) for c in calls] == [
        (str(tmp_path / "tiny-test.pth"), str(tmp_path / "tiny-test.safetensors"), "tiny")]
    assert out.strip() == str(tmp_path / "tiny-test.safetensors")
    assert models_cmd.imported_models(tmp_path) == [("tiny-test", tmp_path / "tiny-test.safetensors")]
