"""Limits and budgets of the restricted checkpoint reader, the refusals it raises, and bounded reads.

Every bound a hostile file could push against lives here: the pickle-operation, nesting, hash-flood, zip-member
and pickle-size limits (read through this module at call time, so a test may lower them), :class:`Budget` (what
reading one file may allocate: ``4 x file size + SLACK_BYTES``) and :class:`Source` (reads that never go past
what is left of the file). :class:`Refused` / :class:`Damaged` / :class:`ForbiddenGlobal` are the reader's
internal refusals; :func:`core.checkpoint_io.reader.load_torch_file_safely` turns them into ``CheckpointError``.
"""

from __future__ import annotations

from typing import Any

MAX_OPS = 10_000_000  # pickle operations per pickle (a release checkpoint with its optimizer: ~100 000)
MAX_NESTING = 100  # tuples / frozensets inside each other (hashing a 10**6-deep tuple crashes CPython)
MAX_META_DEPTH = 100  # levels of meta / message_hub that to_plain converts
MAX_PICKLE_BYTES = 256 << 20  # a zip checkpoint's data.pkl (a release checkpoint's: ~100 kB)
MAX_ENTRIES = 200_000  # zip members (a checkpoint has one per storage)
MAX_PLAIN_ITEMS = 1_000_000  # numpy arrays larger than this stay arrays in to_plain
MAX_SAME_HASH = 64  # keys of one dict / set sharing a hash (more: a hash flood, quadratic to insert)
SLACK_BYTES = 64 << 20  # allocation allowed beyond 4 x the file size (tiny files)


class Refused(Exception):
    """The file asks for something this reader does not do safely (or declares more than it holds)."""

    verb = "refusing to load"


class Damaged(Refused):
    """The file is not a well-formed checkpoint."""

    verb = "cannot read"


class ForbiddenGlobal(Refused):
    """The pickle asked for a global outside the allow-list; nothing it names was called."""

    def __init__(self, module: str, name: str):
        super().__init__(f"forbidden global {module}.{name}")
        self.module, self.name = module, name

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"


class Source:
    """Bounded reads from a binary file object: nothing longer than what is left before ``end`` is read."""

    def __init__(self, fh: Any, end: int):
        self.fh, self.end, self.pos = fh, end, fh.tell()

    def read(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise Damaged(f"a value at byte {self.pos:,} declares {n:,} bytes but only {self.end - self.pos:,} "
                          "are left in the file")
        data = self.fh.read(n)
        self.pos += len(data)
        if len(data) != n:
            raise Damaged("the file ends early")
        return data

    def readline(self) -> bytes:
        data = self.fh.readline(self.end - self.pos)
        self.pos += len(data)
        if not data.endswith(b"\n"):
            raise Damaged("the file ends inside a text value")
        return data

    def readinto(self, buf: memoryview) -> None:
        n = len(buf)
        if n > self.end - self.pos:
            raise Damaged(f"a storage at byte {self.pos:,} needs {n:,} bytes but only {self.end - self.pos:,} "
                          "are left in the file")
        got = 0
        while got < n:
            k = self.fh.readinto(buf[got:])
            if not k:
                raise Damaged("the file ends inside a storage")
            got += k
        self.pos += n


class Budget:
    """How many bytes reading one file may allocate beyond the pickle machine's own objects."""

    def __init__(self, file_size: int):
        self.limit, self.used, self.file_size = 4 * file_size + SLACK_BYTES, 0, file_size

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise Refused(f"it declares more data than a file of {self.file_size:,} bytes can hold "
                          f"({self.used:,} bytes of values and tensors so far); refused before allocating it")
