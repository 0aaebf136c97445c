"""The import graph of ``egopress_core`` and ``egopress_ros``: no cycles, and no ROS in the library.

Every module is parsed with :mod:`ast`; nothing is imported, so the check is fast and cannot be
fooled by an import that happens to succeed because of the order the tests ran in. What counts as
a dependency of module M (``docs/design.md``, "Layers and imports"):

- every ``import`` / ``from ... import`` statement anywhere in M, inside functions and methods
  too: a lazy import still ties M to its target, and a cycle through one fails the day someone
  moves it to the top of the file;
- ``import a.b.c`` depends on ``a.b.c`` and on the packages ``a.b`` and ``a``, whose
  ``__init__`` runs first; ``from a.b import c`` depends on ``a.b`` (and ``a``) and, when
  ``a.b.c`` is a module, on ``a.b.c``;
- a package's ``__init__`` is a module of its own (named after the package);
- M's own enclosing packages are not dependencies of M: Python runs their ``__init__`` before
  M's first line, so a sibling import through them adds nothing;
- imports under ``if TYPE_CHECKING:`` never run and do not count; dynamic imports
  (``importlib.import_module``) are not seen.

Only edges between modules of the two packages make the graph; a cycle is a strongly connected
component of more than one module, or a module that imports itself.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]  # test/unit/<this file>
PACKAGES = ("egopress_core", "egopress_ros")
# Top-level names the ROS-free library must never import (besides any ``*_msgs`` package): the
# library runs on training servers without ROS (docs/design.md, "Layers and imports").
ROS_TOP_LEVEL = frozenset({
    "rclpy", "egopress_ros", "builtin_interfaces", "message_filters", "launch_ros", "cv_bridge",
    "sensor_msgs_py", "rosidl_runtime_py",
})
# Enough to read a cycle report; an SCC with more elementary cycles than this is reported as such.
MAX_CYCLES_PER_COMPONENT = 50


@dataclass(frozen=True)
class ImportEdge:
    """One dependency of ``source`` on ``target``, with the statement that creates it."""

    source: str
    target: str
    path: str  # relative to the repository root
    line: int
    statement: str

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.statement}"


def discover_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``packages`` under ``root``."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_statements(tree: ast.AST):
    """Every Import / ImportFrom node that can run, in source order (``if TYPE_CHECKING:``
    bodies skipped, their ``else`` branches kept)."""
    stack = [tree]
    found = []
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return sorted(found, key=lambda node: (node.lineno, node.col_offset))


def _with_packages(name: str) -> list[str]:
    """``a.b.c`` -> ``[a.b.c, a.b, a]``: the module and the packages whose ``__init__`` runs."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(len(parts), 0, -1)]


def imported_names(module: str, is_package: bool, node: ast.Import | ast.ImportFrom,
                   known: set[str]) -> list[tuple[str, bool]]:
    """Absolute names ``node`` makes ``module`` import (known or not), each with whether the
    statement spells it out (True) or only implies it as the parent package of one (False).

    ``from a.b import c`` spells out ``a.b.c`` when that is one of the ``known`` modules, and
    ``a.b`` itself when some imported name is not a submodule (then it is an attribute that
    ``a.b``'s ``__init__`` must already have defined). Relative imports are resolved against
    ``module``.
    """
    if isinstance(node, ast.Import):
        names = []
        for alias in node.names:
            packages = _with_packages(alias.name)
            names.append((packages[0], True))
            names.extend((package, False) for package in packages[1:])
        return names
    if node.level:
        # The package a relative import starts from: the module itself for an __init__.
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        base_parts = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
    names = [(package, False) for package in _with_packages(base)[1:]]
    names.append((base, len(submodules) < len(node.names)))
    names.extend((submodule, True) for submodule in submodules)
    return names


def _statement_text(lines: list[str], node: ast.stmt) -> str:
    """The statement on one line, so that a parenthesised multi-line import reads in full
    (``ast.get_source_segment`` re-splits the whole file per call: too slow here)."""
    span = lines[node.lineno - 1 : node.end_lineno]
    span[-1] = span[-1][: node.end_col_offset]
    span[0] = span[0][node.col_offset :]
    return " ".join(" ".join(span).split())


def build_graph(root: Path, packages: tuple[str, ...]) -> tuple[
        dict[str, set[str]], dict[tuple[str, str], list[ImportEdge]], dict[str, list[tuple[str, ImportEdge]]]]:
    """The module-level dependency graph.

    Returns:
        graph: module -> the known modules it depends on (a self-import is an edge to itself).
        edges: (source, target) -> the statements that create the edge.
        external: module -> (imported name, statement) of every import, known or not.
    """
    modules = discover_modules(root, packages)
    known = set(modules)
    graph: dict[str, set[str]] = {module: set() for module in modules}
    edges: dict[tuple[str, str], list[ImportEdge]] = defaultdict(list)
    external: dict[str, list[tuple[str, ImportEdge]]] = defaultdict(list)
    for module, path in modules.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        is_package = path.name == "__init__.py"
        enclosing = set(_with_packages(module)[1:]) | ({module} if is_package else set())
        for node in _import_statements(ast.parse(source, filename=str(path))):
            statement = _statement_text(lines, node)
            for name, explicit in imported_names(module, is_package, node, known):
                edge = ImportEdge(module, name, path.relative_to(root).as_posix(), node.lineno, statement)
                external[module].append((name, edge))
                # An enclosing package is already initialising when this module runs: being the
                # parent of an imported submodule adds no edge. Names taken from its __init__
                # (or a package importing itself) do: they need that __init__ to have run.
                if name not in known or (name in enclosing and not explicit):
                    continue
                graph[module].add(name)
                edges[(module, name)].append(edge)
    return graph, edges, external


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on deep graphs); members sorted."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = lowlink[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def elementary_cycles(graph: dict[str, set[str]], component: list[str], limit: int) -> list[list[str]]:
    """Simple cycles within ``component``, each starting at its smallest member, at most ``limit``."""
    members = set(component)
    cycles: list[list[str]] = []
    for start in component:
        allowed = {m for m in members if m >= start}
        path = [start]
        work = [iter(sorted(graph[start] & allowed))]
        while work and len(cycles) < limit:
            successor = next(work[-1], None)
            if successor is None:
                work.pop()
                path.pop()
                continue
            if successor == start:
                cycles.append(path + [start])
            elif successor not in path:
                path.append(successor)
                work.append(iter(sorted(graph[successor] & allowed)))
    return cycles


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every reported cycle as a closed path ``[a, b, ..., a]``: the elementary cycles of each
    strongly connected component with more than one module, and each self-import ``[a, a]``."""
    cycles: list[list[str]] = []
    for component in strongly_connected_components(graph):
        if len(component) > 1:
            cycles.extend(elementary_cycles(graph, component, MAX_CYCLES_PER_COMPONENT))
        elif component[0] in graph[component[0]]:
            cycles.append([component[0], component[0]])
    return cycles


def describe_cycles(cycles: list[list[str]], edges: dict[tuple[str, str], list[ImportEdge]]) -> str:
    """``a -> b -> a`` per cycle, then the statement behind each of its edges."""
    blocks = []
    for cycle in cycles:
        lines = [" -> ".join(cycle)]
        for source, target in zip(cycle, cycle[1:]):
            for edge in edges[(source, target)]:
                lines.append(f"    {source} -> {target}  ({edge.where()})")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def is_ros_name(name: str) -> bool:
    top = name.split(".")[0]
    return top in ROS_TOP_LEVEL or top.endswith("_msgs")


# ----------------------------------------------------------------------------------------------
# The repository
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repository_graph():
    return build_graph(REPO, PACKAGES)


def test_both_packages_are_parsed(repository_graph):
    graph, _, _ = repository_graph
    for package in PACKAGES:
        assert package in graph, f"{package}/__init__.py was not found under {REPO}"
    assert len(graph) > 20


def test_no_import_cycles(repository_graph):
    graph, edges, _ = repository_graph
    cycles = find_cycles(graph)
    if cycles:
        # pytrace=False: the report is the message; the graph fixture's repr would bury it.
        pytest.fail(
            f"{len(cycles)} import cycle(s) in {' and '.join(PACKAGES)} (move the shared code to the "
            f"lower module, see docs/design.md, \"Layers and imports\"):\n" + describe_cycles(cycles, edges),
            pytrace=False,
        )


def test_library_never_imports_ros(repository_graph):
    _, _, external = repository_graph
    offending = sorted(
        {edge.where() for module, found in external.items() if module.split(".")[0] == "egopress_core"
         for name, edge in found if is_ros_name(name)}
    )
    if offending:
        pytest.fail(
            "egopress_core must run without ROS (rclpy, *_msgs, egopress_ros); these imports break that:\n"
            + "\n".join(offending),
            pytrace=False,
        )


# ----------------------------------------------------------------------------------------------
# The checker itself, on a made-up package tree
# ----------------------------------------------------------------------------------------------


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_lazy_submodule_and_relative_cycles(tmp_path):
    _write_tree(tmp_path, {
        "pkg/__init__.py": "from pkg.low import helper\n",
        "pkg/low.py": "def helper():\n    from pkg import high  # lazy: still an edge\n",
        "pkg/high.py": "from . import low\nfrom pkg.sub import leaf\n",
        "pkg/sub/__init__.py": "from . import leaf\n",
        "pkg/sub/leaf.py": "import pkg.sub.leaf\n",  # imports itself
        "pkg/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import high\n",
        "pkg/ok.py": "import os\nfrom pkg.sub.leaf import thing\n",
        "pkg/attr.py": "from pkg import helper\n",  # needs pkg/__init__.py to have defined it
    })
    graph, edges, _ = build_graph(tmp_path, ("pkg",))
    assert graph["pkg.high"] == {"pkg.low", "pkg.sub", "pkg.sub.leaf"}
    assert graph["pkg.typed"] == set()  # TYPE_CHECKING imports never run
    assert graph["pkg.ok"] == {"pkg.sub", "pkg.sub.leaf"}
    assert graph["pkg.attr"] == {"pkg"}
    # A package's __init__ importing its own submodules depends on them, not on itself.
    assert graph["pkg"] == {"pkg.low"} and graph["pkg.sub"] == {"pkg.sub.leaf"}
    cycles = find_cycles(graph)
    assert ["pkg.high", "pkg.low", "pkg.high"] in cycles
    assert ["pkg.sub.leaf", "pkg.sub.leaf"] in cycles
    report = describe_cycles(cycles, edges)
    assert "pkg.high -> pkg.low -> pkg.high" in report
    assert "pkg/low.py:2: from pkg import high" in report


def test_checker_sees_ros_imports(tmp_path):
    _write_tree(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "def f():\n    from sensor_msgs.msg import Image\n    import rclpy.node\n",
    })
    _, _, external = build_graph(tmp_path, ("core",))
    names = sorted(name for name, _ in external["core.a"] if is_ros_name(name))
    assert names == ["rclpy", "rclpy.node", "sensor_msgs", "sensor_msgs.msg"]
