"""core must never import Qt: import every core module in a fresh interpreter and inspect sys.modules."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import core

FORBIDDEN = ("PySide6", "shiboken6", "pyqtgraph", "superqt", "qtpy", "vpp_gui")


def _all_core_modules() -> list[str]:
    names = ["core"]
    for info in pkgutil.walk_packages(core.__path__, prefix="core."):
        names.append(info.name)
    return names


def test_core_imports_no_qt():
    modules = _all_core_modules()
    wanted = {"core.app.document.document", "core.export", "core.app.run_control"}
    assert len(modules) > 5 and wanted <= set(modules), modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core pulled in Qt/GUI modules: {out.stdout}"


def test_walk_detects_a_qt_import(tmp_path):
    """The check itself can fail: a module importing PySide6 is reported."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import PySide6.QtCore\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import fakepkg\n"
        f"print(any(n.split('.')[0] in {FORBIDDEN!r} for n in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "True", out.stderr
