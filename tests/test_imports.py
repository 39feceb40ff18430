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

# The layers, top to bottom: a module imports from its own layer or a
# lower one, never a higher one (docs/architecture.md says why).
LAYERS: list[tuple[str, ...]] = [
    ("tidings.__main__", "tidings.cli", "tidings.config_reference"),
    ("tidings.app", "tidings.startup_errors"),
    ("tidings.transport",),
    ("tidings.api",),
    ("tidings.notify", "tidings.metrics"),
    ("tidings.auth",),
    ("tidings.storage",),
    ("tidings.crypto", "tidings.config", "tidings.config_checks", "tidings.errors",
     "tidings.logs", "tidings.bench", "tidings.shared_calls"),
]
# The storage drivers: each imports only the interface and the shared
# rules (storage.base, storage.common), never another driver or wrapper.
DRIVERS = ("tidings.storage.sqlite", "tidings.storage.redis", "tidings.storage.postgres")
DRIVERS_MAY_IMPORT = ("tidings.storage.base", "tidings.storage.common")


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


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int:
    for depth, prefixes in enumerate(LAYERS):
        if any(within(module, prefix) for prefix in prefixes):
            return depth
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_every_import_goes_down_the_layers() -> None:
    upward = [f"{source} -> {target}"
              for source, targets in sorted(import_graph().items())
              for target in sorted(targets)
              if layer_of(target) < layer_of(source)]
    assert upward == []


def test_a_driver_imports_no_other_driver() -> None:
    strays = []
    for source, targets in sorted(import_graph().items()):
        driver = next((d for d in DRIVERS if within(source, d)), None)
        if driver is None:
            continue
        strays += [f"{source} -> {target}" for target in sorted(targets)
                   if within(target, "tidings.storage") and not within(target, driver)
                   and not any(within(target, ok) for ok in DRIVERS_MAY_IMPORT)]
    assert strays == []
