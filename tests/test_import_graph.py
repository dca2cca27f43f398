"""The import graph of ``img2img/``: no cycles between modules, and imports point down the
layers (design notes: cli -> engine / inference -> tasks -> nn / losses / data).

Read statically with ``ast`` (every ``import`` statement, also those inside functions and
``TYPE_CHECKING`` blocks), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "img2img"

# The command line: img2img.cli, the subcommands it dispatches to, and the app's page.
FRONT = ("img2img.cli", "img2img.commands", "img2img.webapp")

# layer -> layers it must never import (a module belongs to a layer if it is the layer's
# package or below it)
FORBIDDEN = {
    "img2img.inference": ("img2img.engine", "img2img.tasks", *FRONT),
    "img2img.nn": ("img2img.tasks", "img2img.engine", "img2img.inference", *FRONT),
    "img2img.losses": ("img2img.tasks", "img2img.engine", "img2img.inference", *FRONT),
    "img2img.data": ("img2img.tasks", "img2img.engine", "img2img.inference", *FRONT),
    "img2img.collective": ("img2img.engine", "img2img.inference", "img2img.tasks", *FRONT),
}


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file below ``package``."""
    out = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The module an import of ``name`` loads: ``name`` itself or its nearest parent."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the ``img2img`` modules it imports (``from pkg import sub`` counts as an
    import of ``pkg.sub`` when that is a module, else of ``pkg``)."""
    modules = _modules(package)
    root = package.name
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                edges.update(_target(a.name, modules) for a in node.names
                             if a.name.split(".")[0] == root)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the package holding this module
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] != root:
                    continue
                for a in node.names:
                    full = f"{mod}.{a.name}"
                    edges.add(full if full in modules else _target(mod, modules))
        edges.discard(None)
        edges.discard(name)
        graph[name] = edges  # type: ignore[assignment]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _inside(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def test_the_graph_is_read_from_the_sources() -> None:
    graph = import_graph()
    assert len(graph) > 50
    # a top-level import and a function-level one
    assert "img2img.data.io" in graph["img2img.inference.folder"]
    assert "img2img.inference.loader" in graph["img2img.commands.import_"]


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer: str) -> None:
    graph = import_graph()
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items() if _inside(m, layer)
                 for t in targets if any(_inside(t, f) for f in FORBIDDEN[layer]))
    assert not bad, f"{layer} imports a layer above it: " + ", ".join(bad)
