"""The product's import graph (issue 13): no cycle among module-level imports, and no import inside a function that
would close one (a lazy import may save start-up time; it may not hide a cycle)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "commands", "runner_agent", "configs", "tunebot")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    assert len(found) > 100, sorted(found)
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
        base = node.module or ""
        if node.level:
            package = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{alias.name}" for alias in node.names]
    targets = set()
    for name in names:
        while name and name not in modules and "." in name:
            name = name.rpartition(".")[0]
        # Importing a.b.c runs a and a.b first. A module's own packages are loading already when it runs: an edge
        # to them is no cycle.
        while name in modules:
            if name != module and not module.startswith(name + "."):
                targets.add(name)
            name = name.rpartition(".")[0]
    return targets


def _graphs() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """Module-level edges (imports run when the module loads, `if`/`try` blocks included) and function-level ones."""
    modules = _modules()
    top: dict[str, set[str]] = defaultdict(set)
    inner: list[tuple[str, str, int]] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        at_load = {id(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                   and not any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                               for p in _parents(tree, n))}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node, modules):
                    if id(node) in at_load:
                        top[module].add(target)
                    else:
                        inner.append((module, target, node.lineno))
    return top, inner


def _parents(tree: ast.AST, wanted: ast.AST) -> list[ast.AST]:
    path: list[ast.AST] = []

    def walk(node: ast.AST) -> bool:
        if node is wanted:
            return True
        for child in ast.iter_child_nodes(node):
            path.append(node)
            if walk(child):
                return True
            path.pop()
        return False

    walk(tree)
    return path


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def test_module_level_imports_have_no_cycle() -> None:
    top, _ = _graphs()
    assert len(top) > 50
    cycles = sorted(m for m in list(top) for t in top[m] if m in _reachable(top, t))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_no_import_inside_a_function_hides_a_cycle() -> None:
    top, inner = _graphs()
    assert inner, "expected some start-up-saving lazy imports to check"
    hiding = [f"{m}:{line} imports {t}" for m, t, line in inner if m in _reachable(top, t)]
    assert hiding == [], hiding


def test_the_checker_sees_a_cycle_when_there_is_one() -> None:
    graph: dict[str, set[str]] = defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert "a" in _reachable(graph, "b") and "d" not in _reachable(graph, "a")
