"""The shape of the source tree: no import circle, short modules, short functions.

Read from the source (nothing is imported), so the checks cover every import
statement wherever it is: module level, inside a function, or under
``if TYPE_CHECKING:``. A circle hidden behind a function-local import still ties
two modules together, and a type-hint-only circle still says the two modules
are one job split in the wrong place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "napari_unet"

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

# Functions allowed over MAX_FUNCTION_LINES lines of code, each with its reason.
# Keep this short: a long function is almost always several jobs. The numba
# kernels of border_term.py, the one place where splitting would cost speed (a
# call out of an njit loop is not free), are all under the limit today, so the
# list is empty.
LONG_FUNCTIONS: dict[str, str] = {}

# Modules allowed over MAX_MODULE_LINES lines, each with its reason.
LONG_MODULES: dict[str, str] = {}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's ``__init__``)."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _imported(node: ast.AST, package: str, modules: dict) -> set[str]:
    """The modules of src/ that one import statement loads (beyond its parents).

    ``import a.b`` and ``from a.b import name`` import ``a.b``; when ``name`` is a
    submodule, ``from a import b`` imports ``a.b`` (the package ``a`` runs first as a
    parent, as it does for any ``import a.x``, so only what the statement names
    counts). A name that is not a submodule comes from the package's ``__init__``,
    so ``from napari_unet import __version__`` imports the package ``napari_unet``.
    """
    targets: set[str] = set()
    if isinstance(node, ast.Import):
        targets = {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            targets.add(submodule if submodule in modules else source)
    return {t for t in targets if t in modules}


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of src/ it imports, anywhere in its source."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rsplit(".", 1)[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            edges |= _imported(node, package, modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest closed path through a circle's first module, for a readable message."""
    members = set(component)
    start = component[0]
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    return component


def long_functions() -> dict[str, int]:
    """``module:qualified.name`` -> lines of code (docstring excluded), over the limit."""
    found = {}
    for name, (path, _) in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scopes: list[tuple[ast.AST, str]] = [(tree, "")]
        while scopes:
            scope, prefix = scopes.pop()
            for node in ast.iter_child_nodes(scope):
                if isinstance(node, ast.ClassDef):
                    scopes.append((node, f"{prefix}{node.name}."))
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    qualified = f"{prefix}{node.name}"
                    scopes.append((node, f"{qualified}."))
                    lines = node.end_lineno - node.lineno + 1
                    body = node.body
                    if (
                        isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)
                    ):
                        lines -= body[0].end_lineno - body[0].lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        found[f"{name}:{qualified}"] = lines
                else:
                    scopes.append((node, prefix))
    return found


def test_the_walk_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The graph counts relative, absolute, function-local and TYPE_CHECKING imports."""
    root = tmp_path / "src" / PACKAGE
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("__version__ = '1'\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("def f():\n    from .sub import b\n")
    (root / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import X\n"
    )
    (root / "c.py").write_text("import napari_unet.d\nfrom napari_unet import __version__\n")
    (root / "d.py").write_text("from . import a\n")
    monkeypatch.setitem(globals(), "SRC", tmp_path / "src")
    graph = import_graph()
    assert graph["napari_unet.a"] == {"napari_unet.sub.b"}
    assert graph["napari_unet.sub.b"] == {"napari_unet.c"}
    assert graph["napari_unet.c"] == {"napari_unet.d", "napari_unet"}
    assert graph["napari_unet.d"] == {"napari_unet.a"}
    assert circles(graph) == [
        ["napari_unet.a", "napari_unet.c", "napari_unet.d", "napari_unet.sub.b"]
    ]
    path = _cycle_path(graph, circles(graph)[0])
    assert path == [
        "napari_unet.a",
        "napari_unet.sub.b",
        "napari_unet.c",
        "napari_unet.d",
        "napari_unet.a",
    ]


def test_no_import_circle():
    """No module of src/ imports one that imports it back, however indirectly."""
    graph = import_graph()
    found = circles(graph)
    message = "\n".join(
        f"{', '.join(c)}\n    e.g. {' -> '.join(_cycle_path(graph, c))}" for c in found
    )
    assert not found, f"import circles:\n{message}"


def test_modules_are_short():
    """Each module of src/ is one job of at most MAX_MODULE_LINES lines."""
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, (path, _) in _modules().items()
    }
    over = {
        name: n for name, n in lengths.items() if n > MAX_MODULE_LINES and name not in LONG_MODULES
    }
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


def test_functions_are_short():
    """No function of src/ runs over MAX_FUNCTION_LINES lines of code (docstring excluded)."""
    over = {k: n for k, n in long_functions().items() if k not in LONG_FUNCTIONS}
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines of code: {over}"


@pytest.mark.parametrize("table", [LONG_FUNCTIONS, LONG_MODULES])
def test_allow_lists_hold_only_real_offenders(table):
    """An allowed entry that got short again leaves the list, so the list stays short."""
    current = (
        long_functions()
        if table is LONG_FUNCTIONS
        else {
            name: len(path.read_text(encoding="utf-8").splitlines())
            for name, (path, _) in _modules().items()
            if len(path.read_text(encoding="utf-8").splitlines()) > MAX_MODULE_LINES
        }
    )
    stale = sorted(set(table) - set(current))
    assert not stale, f"no longer over the limit, remove from the allow-list: {stale}"
