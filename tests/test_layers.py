"""The import contracts in pyproject.toml cover the whole code base, and no import cycle exists.

``lint-imports`` checks each contract; these tests check that the contracts cannot be dodged by a new
module: every module of ``core`` belongs to one layer, the GUI's forbidden list names everything except the
app layer, and the import graph (function-level imports included, annotation-only imports excluded) has no
cycle at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

try:
    import tomllib
except ImportError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> dict[str, dict]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["name"]: c for c in data["tool"]["importlinter"]["contracts"]}


def _core_units() -> set[str]:
    core = ROOT / "core"
    units = {f"core.{p.stem}" for p in core.glob("*.py") if p.stem != "__init__"}
    units |= {f"core.{p.name}" for p in core.iterdir() if (p / "__init__.py").is_file()}
    return units


def _layer_members() -> list[set[str]]:
    layers = _contracts()["the layers of VPP Studio"]["layers"]
    return [{m.strip() for m in layer.replace("|", ":").split(":")} for layer in layers]


def test_every_core_module_is_in_exactly_one_layer():
    members = _layer_members()
    named = [m for layer in members for m in layer]
    assert len(named) == len(set(named)), "a module is named in two layers"
    missing = _core_units() - set(named)
    assert not missing, f"add these modules to a layer in pyproject.toml: {sorted(missing)}"
    assert len(members) <= 10


def test_the_gui_may_import_only_the_app_layer_and_errors():
    forbidden = set(_contracts()["the GUI talks only to the app layer (core.app) and core.errors"]["forbidden_modules"])
    assert forbidden == _core_units() - {"core.app", "core.errors"}


def test_no_import_cycles():
    graph = grimp.build_graph("core", "vpp_gui", exclude_type_checking_imports=True)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        order[v] = low[v] = len(order)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        for module in sorted(graph.modules):
            if module not in order:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    assert not cycles, f"import cycles: {cycles}"
