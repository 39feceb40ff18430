"""The import graph of src/tidings: no circle, and each layer imports only
the layers below it (docs/architecture.md draws them).

Every import counts, also those inside functions and under TYPE_CHECKING:
a circle hidden in a function is still a circle of the design. Modules
loaded by name (the storage registry's ``module:class`` strings) are not
imports and are not seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tidings"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own
    name, for its __init__.py)."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of the package that ``name`` imports."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from tidings.api import queues`` imports the module
                # tidings.api.queues; ``from tidings.api.queues import x``
                # imports tidings.api.queues.
                child = f"{base}.{alias.name}"
                targets.add(child if child in modules else base)
    found = set()
    for target in targets:
        # ``import tidings.storage.base`` reaches the deepest module named.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target.startswith(PACKAGE + ".") and target != name:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    modules = set(files)
    return {name: imports_of(name, path, modules) for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph()
    # A known edge of each kind: a from-import of a module, of a name.
    assert "tidings.api.queues" in graph["tidings.api.messages"]
    assert "tidings.storage.base" in graph["tidings.api.queues"]


def test_no_import_circle() -> None:
    assert circles(import_graph()) == []
