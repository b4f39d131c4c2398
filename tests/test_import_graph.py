"""The house plan: no two modules import each other, and the job contract imports no worker code.

Reads every module's imports with ``ast`` (lazy imports inside functions included), so a cycle that
Python would tolerate at run time, because one side imports late, still fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("workers", "queue_config", "pipelines", "storage")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``name`` imports, resolving ``from package import module``.

    A module's own enclosing packages are left out: Python imports them before the module in any
    case, so a package that re-exports its modules' names is no cycle.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    enclosing = {name.rsplit(".", depth)[0] for depth in range(1, name.count(".") + 1)}
    return {module for module in found if module in known and module != name and module not in enclosing}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_modules_import_each_other_directly_or_around_a_loop() -> None:
    assert cycles(import_graph()) == []


def test_the_job_contract_imports_nothing_from_workers() -> None:
    graph = import_graph()
    offenders = {name: sorted(target for target in targets if target.split(".")[0] == "workers")
                 for name, targets in graph.items() if name.startswith("queue_config")}
    assert {name: targets for name, targets in offenders.items() if targets} == {}


def test_workers_keeps_at_most_ten_top_level_modules() -> None:
    top_level = sorted(path.name for path in (REPO_ROOT / "workers").glob("*.py") if path.name != "__init__.py")
    assert len(top_level) <= 10, top_level


def test_the_cycle_finder_sees_a_loop_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
