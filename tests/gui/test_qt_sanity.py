"""The installed PySide6 must not drop references to None/True/False.

PySide6 6.12.0 on CPython 3.11 returns ``None`` from void methods and ``True`` from ``emit()``
without taking a reference; the interpreter then aborts ("deallocating None") after a few seconds
of GUI use. pyproject.toml keeps PySide6 below 6.12; this test fails loudly if a broken build sneaks
back in (for example a manual upgrade in the venv).
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    fired = Signal()


def test_void_methods_and_emit_keep_singleton_refcounts():
    if sys.version_info >= (3, 12):
        return  # None/True/False are immortal there; reference counts are not meaningful
    probe = _Probe()
    calls = 200
    before_none, before_true = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(calls):
        probe.setObjectName("probe")
        probe.fired.emit()
    lost_none = before_none - sys.getrefcount(None)
    lost_true = before_true - sys.getrefcount(True)
    assert lost_none < calls // 2 and lost_true < calls // 2, (
        f"this PySide6 build leaks references (None: {lost_none}, True: {lost_true} over {calls} calls); "
        "install PySide6-Essentials<6.12 (see pyproject.toml)")
