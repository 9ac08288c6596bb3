"""The authors' released model files, and a resumable, checksum-aware downloader for them.

The registry lists the eight files linked from the release README of GitHub
PatGlan/Video-Patch-Pruning (head bf74be2): six ROVIS + ViT-Adapter + Mask2Former models trained on
YouTube-VIS 2021 (Small / Tiny, dense and VPP at two PKRs) and the two COCO-2017-pretrained dense
ViT-Adapter Mask2Former models the dense stage starts from. The README gives one OSF download link per
file and nothing else about the file: **no checksum and no size are published**, so every entry has
``sha256=None`` and ``size=None`` and a download of it is reported as unverified (its sha256 is still
computed and recorded beside the file so later corruption or a changed upload can be noticed).

Downloading needs internet access (osf.io); nothing here is exercised against the real server on the
development machine, only against a loopback HTTP server in the tests.

This module is Qt-free and imports neither torch nor anything outside the standard library and tqdm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import http.client
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from core.atomic import atomic_write_text, check_regular, open_regular
from core.errors import DataError, VPPError
from core.regular_files import file_sha256

RELEASE_REPO = "PatGlan/Video-Patch-Pruning"
RELEASE_COMMIT = "bf74be2"
RELEASE_FILES_PAGE = "https://osf.io/u2x34/files/osfstorage"  # README: "Checkpoints ... are available at"

_NO_CHECKSUM = "The release README publishes no checksum and no file size for this file."


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One released model file. ``pkr`` is the patch keep ratio the release reports (1.0 = dense)."""

    name: str
    variant: str  # "tiny" | "small"
    kind: str  # "vpp" (trained on YouTube-VIS 2021 with ROVIS tracking) | "dense-coco" (COCO 2017 init)
    pkr: float | None  # measured PKR reported in the README table; None for the COCO models
    url: str
    sha256: str | None  # None: the release publishes none
    size: int | None  # bytes, None when unknown
    config: str | None  # the release's config file for this model (path inside the release repository)
    notes: str
    log_url: str | None = None  # the README's "LogFile" link
    results: tuple[float, float, float] | None = None  # YTVIS-21 val AP_track, mAP_bbox, mAP_segm (README)
    release_path: str | None = None  # where the release's configs expect the file, when they say

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"


def _vpp(name: str, variant: str, pkr: float, model_id: str, log_id: str, config: str,
         results: tuple[float, float, float], notes: str, release_path: str | None = None) -> ZooEntry:
    return ZooEntry(
        name=name, variant=variant, kind="vpp", pkr=pkr, url=f"https://osf.io/{model_id}/?action=download",
        sha256=None, size=None, config=config, notes=f"{notes} {_NO_CHECKSUM}".strip(),
        log_url=f"https://osf.io/{log_id}/?action=download", results=results, release_path=release_path)


_ROVIS = "configs/vis/rovis/rovis_mask2former_vitAda{}_ytvis21.py"
_VPP = "configs/vis/vpp/vpp_vit{}_4xb2_6e_{}PKR_ytvis21.py"
_COCO_PATH = "checkpoints/dense_vitAda_mask2former_coco2017/vitAda_{0}/vitAda_{0}_coco2017_dense_iter_368750.pth"

#: The eight files of the release README, in its order (results table, then the COCO note).
ZOO: tuple[ZooEntry, ...] = (
    _vpp("small-dense", "small", 1.0, "kxfrd", "vhcqf", _ROVIS.format("Small"), (50.4, 57.3, 52.3),
         "Dense ROVIS model (no pruning); the start of the Small sparse fine-tuning.",
         "checkpoints/dense_vitAda_rovis_ytvis21/small/vitAda_small_ytvis21_dense_epoch_6.pth"),
    _vpp("small-pkr51.5", "small", 0.515, "m8kjw", "kzy87", _VPP.format("Small", "0.55"), (49.8, 56.1, 51.3),
         "VPP, config target PKR 0.55 (Map-SM keep 0.7, stage keep rates 0.56/0.448/0.358); the released "
         "Small configs set the Map-SM / selective-module width to 192: read widths from the tensors."),
    _vpp("small-pkr39.3", "small", 0.393, "yxjk6", "2kxcg", _VPP.format("Small", "0.4"), (48.5, 54.3, 49.9),
         "VPP, config target PKR 0.4; the released config repeats the 0.55 keep values (Map-SM 0.7, "
         "0.56/0.448/0.358), a release bug. The README's evaluation example pairs this checkpoint "
         "(checkpoints/vpp_vitAda_rovis_ytvis21/small/PKR=0.4/epoch_6.pth) with the Tiny 0.4 config."),
    _vpp("tiny-dense", "tiny", 1.0, "pq9jd", "75ucm", _ROVIS.format("Tiny"), (42.2, 49.1, 44.8),
         "Dense ROVIS model (no pruning); the start of the Tiny sparse fine-tuning.",
         "checkpoints/dense_vitAda_rovis_ytvis21/tiny/vitAda_tiny_ytvis21_dense_epoch_6.pth"),
    _vpp("tiny-pkr52.7", "tiny", 0.527, "e6fa9", "v7jdc", _VPP.format("Tiny", "0.55"), (42.3, 49.9, 45.7),
         "VPP, config target PKR 0.55 (Map-SM keep 0.7, stage keep rates 0.56/0.448/0.358)."),
    _vpp("tiny-pkr40.9", "tiny", 0.409, "bwhge", "tg5ap", _VPP.format("Tiny", "0.4"), (40.9, 47.6, 43.6),
         "VPP, config target PKR 0.4 (Map-SM keep 0.6, stage keep rates 0.42/0.294/0.206)."),
    ZooEntry(
        name="coco-tiny", variant="tiny", kind="dense-coco", pkr=None, url="https://osf.io/rywjc/?action=download",
        sha256=None, size=None, config=None,
        notes="Mask2Former + ViT-Adapter Tiny pretrained on COCO 2017 (dense); the init of "
              f"{_ROVIS.format('Tiny')}. The release has no config or results for this pretraining. {_NO_CHECKSUM}",
        release_path=_COCO_PATH.format("tiny")),
    ZooEntry(
        name="coco-small", variant="small", kind="dense-coco", pkr=None, url="https://osf.io/k5ymu/?action=download",
        sha256=None, size=None, config=None,
        notes="Mask2Former + ViT-Adapter Small pretrained on COCO 2017 (dense); the init of "
              f"{_ROVIS.format('Small')}. The release has no config or results for this pretraining. {_NO_CHECKSUM}",
        release_path=_COCO_PATH.format("small")),
)


class DownloadError(VPPError):
    """A download failed: no network, an HTTP error, a checksum mismatch, a full disk, an interruption."""


class DownloadCancelled(DownloadError):
    """The caller's ``cancelled()`` said stop; the partial file is kept, so the next download resumes."""


#: ``on_progress(bytes_have, bytes_total_or_None)``, called after every block a download writes.
ProgressCallback = Callable[[int, int | None], None]


def get_entry(name: str) -> ZooEntry:
    for entry in ZOO:
        if entry.name == name:
            return entry
    raise VPPError(f"unknown model {name!r}; known models: {', '.join(e.name for e in ZOO)}")


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/vpp-studio/models``, else ``~/.cache/vpp-studio/models``.

    ``env`` defaults to ``os.environ``; a relative ``XDG_CACHE_HOME`` is ignored, as the XDG spec says.
    """
    env = os.environ if env is None else env
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    else:
        home = env.get("HOME")
        base = (Path(home) if home else Path.home()) / ".cache"
    return base / "vpp-studio" / "models"


def sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".sha256")


def read_sidecar(path: str | os.PathLike) -> str | None:
    """The sha256 recorded beside a downloaded file (``sha256sum`` format), or None."""
    try:
        text = sidecar_path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.match(r"\s*([0-9a-fA-F]{64})\b", text)
    return m.group(1).lower() if m else None


def cached_path(entry: ZooEntry, dest_dir: str | os.PathLike | None = None) -> Path | None:
    """The downloaded file of ``entry`` in ``dest_dir`` (default :func:`cache_dir`), or None."""
    path = Path(dest_dir if dest_dir is not None else cache_dir()) / entry.filename
    return path if path.is_file() else None


def _filename_from_url(url: str) -> str:
    parts = [p for p in urllib.parse.urlsplit(url).path.split("/") if p]
    name = urllib.parse.unquote(parts[-1]) if parts else ""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise DownloadError(f"cannot derive a file name from {url}; pass filename=")
    return name


def _network_error(url: str, exc: BaseException) -> DownloadError:
    host = urllib.parse.urlsplit(url).hostname or url
    reason = getattr(exc, "reason", exc)
    detail = "timed out" if isinstance(reason, TimeoutError) else (str(reason) or type(reason).__name__)
    return DownloadError(f"downloading needs internet access; this machine cannot reach {host} ({detail})")


def _disk_full(part: Path, written: int, total: int | None) -> DownloadError:
    more = f"; about {total - written} more bytes are needed" if total is not None else ""
    return DownloadError(f"disk full while writing {part} ({written} bytes written{more}); free space in "
                         f"{part.parent} and run the download again: the partial file is kept and resumes")


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")

#: The most a download of unknown size may bring (the release's models are a few hundred MB each): an
#: endless or oversized body is cut here, never left to fill the disk.
MAX_UNKNOWN_SIZE = 2 << 30
#: A server must send at least ``MIN_RATE[0]`` bytes in every ``MIN_RATE[1]`` seconds (about 1 KiB/s), or
#: the download stops (resumable): one byte every ten seconds never ends a socket timeout, this does.
MIN_RATE = (64 << 10, 60.0)


def size_limit(entry: ZooEntry | None, max_bytes: int | None = None) -> int:
    """The most bytes a download may bring: ``max_bytes``, else the entry's size plus 1% (at least 1 MiB),
    else :data:`MAX_UNKNOWN_SIZE`."""
    if max_bytes is not None:
        return int(max_bytes)
    if entry is not None and entry.size is not None:
        return entry.size + max(entry.size // 100, 1 << 20)
    return MAX_UNKNOWN_SIZE


@dataclasses.dataclass(frozen=True)
class _Limits:
    """What a download may take: bytes, seconds without a byte or an answer, and the slowest rate."""

    max_bytes: int
    timeout: float
    min_bytes: int
    window: float


def download(
    entry_or_url: ZooEntry | str,
    dest_dir: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 30,
    chunk: int = 1 << 20,
    filename: str | None = None,
    retries: int = 2,
    log: Callable[[str], None] | None = None,
    on_progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_bytes: int | None = None,
    min_rate: tuple[int, float] = MIN_RATE,
) -> Path:
    """Download a zoo entry (or a URL) into ``dest_dir`` and return the final file's path.

    - Streams into ``<file>.part``; a partial file left by an earlier, interrupted run is resumed with an
      HTTP ``Range`` request. A server that ignores Range (200 instead of 206) restarts from byte 0; a 416
      answer to a resume restarts from byte 0 too, unless the entry's size or checksum proves the partial
      file complete (a server's word alone never promotes it).
    - Limits (:func:`size_limit`): a body larger than ``max_bytes`` (default: the entry's size + 1%, else
      :data:`MAX_UNKNOWN_SIZE`) is refused as soon as the server announces it or the bytes pass it, and
      the partial file is deleted. ``timeout``: seconds for the server to answer (headers, redirects
      included) and the longest wait for a byte; ``min_rate`` ``(bytes, seconds)``: fewer bytes than that
      in any such window stops the download (the partial file is kept and resumes).
    - Completeness is proven before the ``.part`` file is renamed into place: its length must be the one
      the server announced (Content-Length / Content-Range / chunked end) and the entry's size when known;
      ``sha256`` (default: the entry's) must match. A body whose length nobody states (the server just
      closes the connection) is accepted only with a known size or checksum, or when it is a zip file
      whose end record reads back (torch checkpoints are zips); otherwise it is deleted and refused. On
      any mismatch :class:`DownloadError` says what differed. Without a known checksum the computed one
      is recorded in ``<file>.sha256`` and the download is reported as unverified.
    - An existing final file is reused (a known checksum is checked against it, or its sidecar); it may be
      a link to a regular file (it is only read), never a pipe, device or folder. The ``.part`` file is
      written only if it is a regular file: a link, pipe or folder in its place is refused
      (:class:`~core.atomic.NotOurFile`), never followed; the final file is renamed into place (a link
      there is replaced, not written through).
    - ``retries`` automatic resumes after a connection that ends early; then the error says to run again.
    - Progress goes to a tqdm bar on stderr; messages go to ``log`` (default: stderr when ``progress``).
    - ``on_progress`` and ``cancelled`` are for a caller on another thread (the app's dialog): progress
      after every block, and a stop between blocks (:class:`DownloadCancelled`; the ``.part`` file is
      kept and resumes). Blocks are whatever the connection has delivered, up to ``chunk`` bytes, so a
      slow link still reports and stops promptly.
    """
    entry = entry_or_url if isinstance(entry_or_url, ZooEntry) else None
    if entry is not None:
        url = entry.url
        expected = sha256 or entry.sha256
        name = filename or entry.filename
    else:
        url = str(entry_or_url)
        expected = sha256
        name = filename or _filename_from_url(url)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"only http(s) URLs can be downloaded, not {url}")
    expected = expected.lower() if expected else None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise DownloadError(f"not a sha256 hex digest: {expected!r}")
    if log is None:
        log = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    size = entry.size if entry is not None else None
    limits = _Limits(size_limit(entry, max_bytes), float(timeout), int(min_rate[0]), float(min_rate[1]))

    folder = Path(dest_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the download folder {folder}: {exc.strerror or exc}") from exc
    final = folder / name
    part = folder / (name + ".part")

    if check_regular(final, "downloaded model", follow=True) is not None:  # read only: a link to a model is fine
        recorded = read_sidecar(final)
        if expected is None or recorded == expected or file_sha256(final, chunk) == expected:
            log(f"{final}: already downloaded")
            return final
        log(f"{final}: cached file does not match sha256 {expected}; downloading again")
        final.unlink()
    st = check_regular(part, "partial download")
    if st is not None and st.st_size > limits.max_bytes:
        log(f"{part}: the partial file ({st.st_size} bytes) is larger than the {limits.max_bytes} bytes this "
            "file may have; restarting")
        part.unlink()

    hooks = _Hooks(on_progress or (lambda have, total: None), cancelled or (lambda: False), url, part)
    attempt = 0
    while True:
        hooks.check()
        try:
            told = _fetch_into(url, part, chunk=chunk, progress=progress, desc=name, log=log, hooks=hooks,
                               limits=limits, known=(size, expected))
            break
        except _Interrupted as exc:
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"download of {url} was interrupted after {exc.have} of "
                                    f"{exc.total if exc.total is not None else '?'} bytes{exc.why}; run the same "
                                    f"command again to resume from {part}") from None
            log(f"connection ended early at {exc.have} bytes{exc.why}; resuming ({attempt}/{retries})")

    actual = _verified(url, part, told=told, size=size, expected=expected, chunk=chunk)
    os.replace(part, final)
    try:
        atomic_write_text(sidecar_path(final), f"{actual}  {final.name}\n")
    except (OSError, DataError) as exc:  # the model itself is complete; a missing sidecar only costs a re-hash
        log(f"warning: could not record the checksum in {sidecar_path(final)}: {getattr(exc, 'strerror', None) or exc}")
    if expected is not None:
        log(f"{final}: sha256 {actual} verified")
    else:
        log(f"{final}: sha256 {actual} unverified (the release publishes no checksum)")
    return final


def _refuse(part: Path, message: str) -> DownloadError:
    """Delete the partial file (it is not the file asked for) and say why."""
    with contextlib.suppress(OSError):
        part.unlink()
    return DownloadError(f"{message}; the partial file {part} was deleted")


def _verified(url: str, part: Path, *, told: bool, size: int | None, expected: str | None, chunk: int) -> str:
    """The sha256 of ``part`` once it is proven complete (see :func:`download`); else DownloadError."""
    have = part.stat().st_size
    if size is not None and have != size:
        raise _refuse(part, f"{url} gave {have} bytes, but the file has {size}")
    actual = file_sha256(part, chunk)
    if expected is not None and actual != expected:
        raise _refuse(part, f"sha256 mismatch for {url}: expected {expected}, got {actual}")
    if not told and size is None and expected is None and not _zip_end_reads(part):
        raise _refuse(part, f"{url} did not say how long the file is and closed the connection after {have} "
                            "bytes, and the file is not a zip whose end can be checked: a cut download cannot be "
                            "told from a complete one, so nothing was kept. Download it another way (a browser) "
                            "and copy it into place")
    return actual


def _zip_end_reads(path: Path) -> bool:
    """Whether ``path`` is a zip whose central directory (at the very end) reads back: a cut zip fails."""
    try:
        with zipfile.ZipFile(path) as zf:
            return bool(zf.infolist())
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


@dataclasses.dataclass(frozen=True)
class _Hooks:
    """The caller's progress and cancel callbacks, checked between blocks."""

    progress: ProgressCallback
    cancelled: Callable[[], bool]
    url: str
    part: Path

    def check(self, have: int | None = None) -> None:
        if self.cancelled():
            got = f" after {have} bytes" if have else ""
            raise DownloadCancelled(f"download of {self.url} cancelled{got}; the partial file {self.part} is kept: "
                                    "download again to resume")


class _Interrupted(Exception):
    def __init__(self, have: int, total: int | None, why: str = ""):
        super().__init__(have, total)
        self.have, self.total, self.why = have, total, why


class _Watch:
    """The sockets of one request, so that a watchdog can cut a server that takes too long to answer
    (a socket timeout alone never fires while the server drips one byte at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.fired = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.fired:
                self._shut(sock)

    def cut(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._socks:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _watched_opener(watch: _Watch) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies and redirects as usual) whose connections register their socket in ``watch``."""

    def watched(base: type) -> type:
        class Connection(base):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                watch.add(self.sock)

        return Connection

    class Http(urllib.request.HTTPHandler):
        def do_open(self, http_class, req, **kwargs):
            return super().do_open(watched(http_class), req, **kwargs)

    class Https(urllib.request.HTTPSHandler):
        def do_open(self, http_class, req, **kwargs):
            return super().do_open(watched(http_class), req, **kwargs)

    return urllib.request.build_opener(Http, Https)


def _open(url: str, start: int, timeout: float):
    """The response to a GET of ``url`` from byte ``start``: the server has ``timeout`` seconds to answer
    (connection, redirects and headers together)."""
    headers = {"User-Agent": "vpp-studio", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    watch = _Watch()
    timer = threading.Timer(timeout, watch.cut)
    timer.daemon = True
    timer.start()
    late = DownloadError(f"{url}: the server did not answer within {timeout:g} s; try again later")
    try:
        resp = _watched_opener(watch).open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            return exc  # handled by the caller: the partial file is not shorter than the remote one
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
        if watch.fired:
            raise late from None
        raise _network_error(url, exc) from None
    finally:
        timer.cancel()
    if watch.fired:  # cut while its headers were read: what was parsed is not the answer
        resp.close()
        raise late
    return resp


def _too_big(url: str, part: Path, n: int, limits: _Limits, what: str) -> DownloadError:
    return _refuse(part, f"{url} {what} {n} bytes, more than the {limits.max_bytes} bytes this file may have "
                         "(an endless or wrong body)")


def _fetch_into(url: str, part: Path, *, chunk: int, progress: bool, desc: str, log: Callable[[str], None],
                hooks: _Hooks, limits: _Limits, known: tuple[int | None, str | None]) -> bool:
    """Complete ``part`` from ``url``; returns whether the server stated the length it then sent in full.

    Raises _Interrupted when the connection ends early or stalls, DownloadError for the rest."""
    from tqdm import tqdm

    st = check_regular(part, "partial download")
    start = st.st_size if st is not None else 0
    resp = _open(url, start, limits.timeout)
    if isinstance(resp, urllib.error.HTTPError):  # 416 for a Range request
        resp.close()
        size, expected = known
        if (size is not None and start == size) or (expected is not None and file_sha256(part) == expected):
            return True  # proven complete (an earlier run stopped before the rename)
        log(f"{part}: the server refused to resume at {start} bytes (416); restarting from the beginning")
        start = 0
        resp = _open(url, 0, limits.timeout)
    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total: int | None
        if start and status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                log(f"{url}: unexpected Content-Range {resp.headers.get('Content-Range')!r}; restarting")
                resp.close()
                part.unlink(missing_ok=True)
                return _fetch_into(url, part, chunk=chunk, progress=progress, desc=desc, log=log, hooks=hooks,
                                   limits=limits, known=known)
            total = int(m.group(3)) if m.group(3) != "*" else (start + length if length is not None else None)
            mode = "ab"
        else:
            if start:
                log(f"{url}: the server ignored the Range request; restarting from the beginning")
            start, mode = 0, "wb"
            total = length
        if total is not None and total > limits.max_bytes:
            raise _too_big(url, part, total, limits, "announces")
        told = total is not None or bool(getattr(resp, "chunked", False))
        have = start
        try:
            fd = open_regular(part, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC),
                              0o644, what="partial download")
            fh = open(fd, mode)  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from exc
        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                   disable=not progress, file=sys.stderr, leave=False)
        hooks.progress(have, total)
        window_start, window_bytes = time.monotonic(), 0
        try:
            while True:
                hooks.check(have)
                try:
                    block = resp.read1(chunk)  # what has arrived (up to chunk): progress and cancel stay prompt
                except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as exc:
                    if isinstance(exc, http.client.IncompleteRead) and exc.partial:
                        _write(fh, exc.partial, part, have, total)
                        have += len(exc.partial)
                    why = f" (no data for {limits.timeout:g} s)" if isinstance(exc, TimeoutError) else ""
                    raise _Interrupted(have, total, why) from None
                if not block:
                    break
                if have + len(block) > limits.max_bytes:
                    raise _too_big(url, part, have + len(block), limits, "sent more than")
                _write(fh, block, part, have, total)
                have += len(block)
                window_bytes += len(block)
                bar.update(len(block))
                hooks.progress(have, total)
                now = time.monotonic()
                if now - window_start >= limits.window:
                    if window_bytes < limits.min_bytes:
                        _flush(fh, part, have, total)
                        raise DownloadError(
                            f"{url} sent only {window_bytes} bytes in {now - window_start:.0f} s (less than "
                            f"{limits.min_bytes}): too slow, stopped; the partial file {part} is kept: run the same "
                            "command again to resume")
                    window_start, window_bytes = now, 0
            _flush(fh, part, have, total)
        finally:
            bar.close()
            with contextlib.suppress(OSError):
                fh.close()
    if total is not None and have < total:
        raise _Interrupted(have, total)
    if total is not None and have > total:
        raise _refuse(part, f"{url} sent {have} bytes but announced {total}")
    return told


def _write(fh, block: bytes, part: Path, have: int, total: int | None) -> None:
    try:
        fh.write(block)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(part, have, total) from None
        raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None


def _flush(fh, part: Path, have: int, total: int | None) -> None:
    try:
        fh.flush()
        os.fsync(fh.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(part, have, total) from None
        raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None
