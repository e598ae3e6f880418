"""Issue 19, item 5: the devices floor has no import circle.

``import_graph`` reads every module of the repository's packages (``ast``; every import, at module level or
inside a function) and ``cycles`` lists its strongly connected components of more than one module: the
circles. Run as a script it prints them: ``python tests/test_device_imports.py``.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "search_spaces")
DEVICES = "orchestrator.latency.devices"
DEVICE_MODULES = ["protocol", "registry", "catalog", "measured", "runtimes", "extras", "remote", "command", "lut",
                  "tabulated", "simulated", "plugins", "reliability"]


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (root / pkg).rglob("*.py"):
            parts = list(p.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the repository's modules it imports at run time (``from a.b import c`` counts as a.b.c where that
    is a module, else a.b; relative imports resolved; imports inside function bodies count, those under
    ``if TYPE_CHECKING:`` do not)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # `if TYPE_CHECKING:` imports are annotations, not run-time arrows
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = itertools.count()

    def visit(v: str) -> None:
        index[v] = low[v] = next(counter)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


FLOOR = (DEVICES, "orchestrator.latency.service")


def test_no_import_circle_through_the_devices_floor():
    found = [c for c in cycles(import_graph()) if any(m.startswith(FLOOR) for m in c)]
    assert found == []


def test_the_only_circles_are_a_space_and_its_torch_module():
    """Issue 19's check: no import circle in the repository beyond a space and its torch module (the module
    that builds the space's networks imports the space's encoding, and the space builds its network lazily)."""
    found = cycles(import_graph())
    pairs = [c for c in found if len(c) == 2 and c[0].startswith("search_spaces.") and c[1] == f"{c[0]}_torch"]
    assert [c for c in found if c not in pairs] == []


def test_the_graph_ignores_type_checking_imports(tmp_path):
    pkg = tmp_path / "orchestrator"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from orchestrator import b\n")
    (pkg / "b.py").write_text("def f():\n    from orchestrator import a\n")
    for other in PACKAGES[1:]:
        (tmp_path / other).mkdir()
    graph = import_graph(tmp_path)
    assert graph["orchestrator.a"] == set() and graph["orchestrator.b"] == {"orchestrator.a"}


def test_device_implementations_import_neither_the_catalog_nor_the_package():
    graph = import_graph()
    for name in DEVICE_MODULES:
        if name == "catalog":
            continue
        deps = graph[f"{DEVICES}.{name}"]
        assert f"{DEVICES}.catalog" not in deps and DEVICES not in deps and f"{DEVICES}.base" not in deps, name
    assert not any(m.startswith(DEVICES) for m in graph["orchestrator.latency.service"])  # devices use the service
    # the protocol stands on the space protocol and the settings base only, and that base on nothing of hwnas
    assert graph[f"{DEVICES}.protocol"] <= {"search_spaces.base", "orchestrator.schema"}
    assert graph["orchestrator.schema"] == set()


def test_the_graph_sees_a_circle():
    """The checker itself: a two-module circle is found, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


ORDERS = [["service", *DEVICE_MODULES], DEVICE_MODULES[::-1], ["measured", "remote", "catalog"]]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: "-".join(o[:2]))
def test_device_modules_import_in_any_order(order):
    """Each order in a fresh interpreter (the latency service first, a device first, the protocol last): no
    module is met partially initialised, and every built-in type registers."""
    mod = {"service": "orchestrator.latency.service"}
    code = "".join(f"import {mod.get(m, f'{DEVICES}.{m}')}\n" for m in order) + (
        "from orchestrator.latency.devices.registry import DEVICES, PREFIXES\n"
        "import orchestrator.latency.devices.catalog\n"
        "assert 'torch-cpu' in DEVICES and 'sim:' in PREFIXES and 'command:' in PREFIXES\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    g = import_graph(root)
    cs = cycles(g)
    print(f"{len(g)} modules, {sum(map(len, g.values()))} import edges, {len(cs)} circle(s)")
    for c in cs:
        print(f"  {len(c)} modules: {', '.join(c)}")
