"""The shape of the code: no import circles, a domain layer without Flask, Whoosh behind its backend, no `|safe`.

Imports are read with `ast`, without importing anything, so a circle shows even where a function-level import
keeps it from failing at run time today.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KB = ROOT / "kb"
TEMPLATES = ROOT / "templates"

# Everything in kb/ is the domain layer except the web layer and the programs that start it.
NOT_DOMAIN = ("kb/__init__.py", "kb/web/", "kb/cli.py", "kb/server.py", "kb/instance.py")
WHOOSH_BACKEND = "kb/search/whoosh/"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module under kb/, by dotted name."""
    return {module_name(p): p for p in sorted(KB.rglob("*.py"))}


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported_names(path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(module, line) for each import in the file, at any depth (module level or inside a function).

    `from kb import x` counts as an import of kb.x when kb/x.py or kb/x/ exists, and of kb otherwise;
    relative imports are resolved against the file's package.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[:-(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in known else base, node.lineno))
    return found


def kb_imports(path: Path, known: dict[str, Path]) -> dict[str, int]:
    """The kb modules this file imports (importing kb.a.b also runs kb.a, but that is not counted as an edge:
    a package importing its own submodules, and a submodule importing a sibling, is not a circle)."""
    edges: dict[str, int] = {}
    for name, line in imported_names(path, known):
        while name and name not in known:  # `import kb.x.y` where y is a name inside kb.x
            name = name.rpartition(".")[0]
        if name.startswith("kb") and name in known and name != module_name(path):
            edges.setdefault(name, line)
    return edges


def import_graph() -> dict[str, dict[str, int]]:
    known = modules()
    return {name: kb_imports(path, known) for name, path in known.items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle for each strongly connected group of modules (Tarjan), as a path that returns to its start."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, {})):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [path_through(graph, group) for group in groups]


def path_through(graph: dict[str, dict[str, int]], group: list[str]) -> list[str]:
    """The shortest way from the group's first module back to itself (breadth first, inside the group)."""
    start, members = group[0], set(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target not in members:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no way round {group}")  # cannot happen for a strongly connected group


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    known = modules()
    steps = [f"{a} -> {b} ({relative(known[a])}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def test_the_cycle_finder_finds_a_circle_and_passes_a_tree():
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b": 1, "c": 1}, "b": {"c": 1}, "c": {}}) == []


def test_kb_modules_import_each_other_without_circles():
    graph = import_graph()
    assert len(graph) > 10 and graph["kb.transfer"], "the import walk found no kb modules"
    found = cycles(graph)
    assert not found, "import circles in kb/ (a function-level import counts too):\n" + "\n".join(
        describe(graph, c) for c in found)


def imports_of(prefix: str, skip) -> list[str]:
    """`path:line imports module` for each import of `prefix` (or a submodule of it) outside the skipped files."""
    known = modules()
    found = []
    for path in known.values():
        if skip(relative(path)):
            continue
        for name, line in imported_names(path, known):
            entry = f"{relative(path)}:{line} imports {name}"
            if (name == prefix or name.startswith(prefix + ".")) and entry not in found:
                found.append(entry)
    return found


def test_the_domain_layer_does_not_import_flask():
    found = imports_of("flask", lambda p: p.startswith(NOT_DOMAIN))
    assert not found, ("only the web layer (kb/__init__.py, kb/web/, kb/cli.py, kb/server.py, kb/instance.py) may "
                       "import Flask:\n" + "\n".join(found))


def test_only_the_whoosh_backend_imports_whoosh():
    found = imports_of("whoosh", lambda p: p.startswith(WHOOSH_BACKEND))
    assert not found, f"only {WHOOSH_BACKEND} may import Whoosh:\n" + "\n".join(found)


_SAFE_FILTER = re.compile(r"\|\s*safe\b")


def test_templates_never_mark_text_safe():
    found = [f"{relative(path)}:{number}: {line.strip()}"
             for path in sorted(TEMPLATES.rglob("*")) if path.is_file()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if _SAFE_FILTER.search(line)]
    assert not found, ("templates must not say |safe: HTML comes as Markup from kb.render (render, highlight) or "
                       "is escaped:\n" + "\n".join(found))
