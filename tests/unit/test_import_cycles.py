"""No import cycles in ``src/freshtoken``: the modules form layers a reader can follow downwards.

The import graph is read from the source with :mod:`ast` (nothing is imported). Module-level
imports count, including those under ``if TYPE_CHECKING:`` (a cycle that only the type checker
sees is still two modules that each need the other to be understood) and those in class bodies
(they run at import). An import inside a function runs later, so it can break a cycle; that is
allowed only where it is listed in :data:`DOCUMENTED_FUNCTION_IMPORTS` with the reason no
module-level arrangement works, and the second test keeps that list honest.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import freshtoken

PACKAGE_DIR = Path(freshtoken.__file__).resolve().parent
ROOT = "freshtoken"

# (importer, imported): function-level imports that close a cycle, each with why it stays.
DOCUMENTED_FUNCTION_IMPORTS: dict[tuple[str, str], str] = {
    ("freshtoken.api.errors", "freshtoken.api.deps"): (
        "an unknown route or method answers 401 before 404/405, so the handler authenticates "
        "with deps, which raises the ApiError defined in errors"
    ),
    ("freshtoken.refresh.grants", "freshtoken.refresh.authmodes.client_assertion"): (
        "private_key_jwt client authentication signs with the auth-mode helpers, which raise "
        "the grant errors defined in grants"
    ),
    ("freshtoken.mockprovider", "freshtoken.cli"): (
        "`python -m freshtoken.mockprovider` is an alias of the CLI's mock-provider command, "
        "which imports the mock provider lazily to keep the CLI quick to start"
    ),
    ("freshtoken.mockprovider", "freshtoken.mockauthorize"): (
        "the authorize and OAuth 1.0a endpoints are an extension of the mock provider's "
        "handler, kept in their own module"
    ),
}


@dataclass(frozen=True)
class Edge:
    """``importer`` loads ``imported`` through the import of ``named`` on ``line``."""

    importer: str
    imported: str
    line: int
    in_function: bool
    named: str = ""  # the module the statement names (``imported`` may be its package)


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is_package) for every module of the package."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = [ROOT, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> dict[str, str]:
    """The package's modules that executing ``node`` in ``importer`` may load, each mapped to
    the module the statement names (itself, or a module of the package it initialises)."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names.update(alias.name for alias in node.names)
    else:
        if node.level:
            base = importer.split(".") if is_package else importer.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        names.add(module)
        # `from pkg import sub` loads the submodule when ``sub`` is one.
        names.update(f"{module}.{alias.name}" for alias in node.names)
    targets: dict[str, str] = {}
    own = set(_ancestors(importer))
    for name in sorted(names):
        if name not in MODULES:
            continue
        # Importing a module runs its packages' __init__ first, except the importer's own
        # packages, which are already being imported when it runs.
        for package in _ancestors(name):
            if package not in own and package in MODULES:
                targets.setdefault(package, name)
        targets[name] = name
    targets.pop(importer, None)
    return targets


def _walk(body: Iterable[ast.stmt], in_function: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``body``, with whether it runs inside a function."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(node.body, True)
        else:
            # if/else (TYPE_CHECKING included), try/except/finally, with, class bodies, loops.
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _walk([child], in_function)
                elif isinstance(child, ast.excepthandler):
                    yield from _walk(child.body, in_function)


def _edges() -> list[Edge]:
    edges: list[Edge] = []
    for module, (path, is_package) in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_function in _walk(tree.body, False):
            assert isinstance(node, ast.Import | ast.ImportFrom)
            for target, named in _targets(module, is_package, node).items():
                edges.append(Edge(module, target, node.lineno, in_function, named))
    return edges


def _cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for edge in edges:
        graph[edge.importer].add(edge.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _describe(cycles: list[list[str]], edges: list[Edge]) -> str:
    lines: list[str] = []
    for component in cycles:
        members = set(component)
        lines.append("cycle: " + ", ".join(component))
        lines.extend(
            f"  {e.importer}:{e.line} imports {e.imported}"
            + (" (inside a function)" if e.in_function else "")
            for e in edges
            if e.importer in members and e.imported in members
        )
    return "\n".join(lines)


def test_module_level_imports_have_no_cycle() -> None:
    """Module-level imports (TYPE_CHECKING blocks included) never lead back to the importer."""
    edges = [e for e in _edges() if not e.in_function]
    cycles = _cycles(edges)
    assert not cycles, _describe(cycles, edges)


def test_function_level_imports_break_only_documented_cycles() -> None:
    """Counting imports inside functions too, the only cycles are the documented ones.

    Each documented import must still exist inside a function, so the list shrinks when one is
    no longer needed.
    """
    edges = _edges()
    function_imports = {(e.importer, e.named) for e in edges if e.in_function}
    stale = set(DOCUMENTED_FUNCTION_IMPORTS) - function_imports
    assert not stale, f"documented function-level imports that no longer exist: {sorted(stale)}"
    # A documented statement is dropped whole: with its module, the package __init__ it runs.
    kept = [
        e
        for e in edges
        if not (e.in_function and (e.importer, e.named) in DOCUMENTED_FUNCTION_IMPORTS)
    ]
    cycles = _cycles(kept)
    assert not cycles, _describe(cycles, kept)


def test_the_graph_sees_a_cycle_when_there_is_one() -> None:
    """The detector itself: a two-module loop and a three-module loop are found, a chain is not."""
    a, b, c = "freshtoken.runtime", "freshtoken.settings", "freshtoken.clock"
    loop = [Edge(a, b, 1, False), Edge(b, a, 1, False)]
    assert _cycles(loop) == [sorted([a, b])]
    triangle = [Edge(a, b, 1, False), Edge(b, c, 1, False), Edge(c, a, 1, False)]
    assert _cycles(triangle) == [sorted([a, b, c])]
    assert _cycles([Edge(a, b, 1, False), Edge(b, c, 1, False)]) == []


def test_type_checking_imports_and_package_inits_are_edges() -> None:
    """An import under ``if TYPE_CHECKING:`` counts, and so does the target's package __init__."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from freshtoken.webhooks.outbox import install\n"
        "def f():\n"
        "    from freshtoken.cli import main\n"
    )
    found = {
        (target, in_function)
        for node, in_function in _walk(tree.body, False)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for target in _targets("freshtoken.runtime", False, node)
    }
    assert found == {
        ("freshtoken.webhooks.outbox", False),
        ("freshtoken.webhooks", False),
        ("freshtoken.cli", True),
    }
