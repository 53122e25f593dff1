"""The package's import graph has no circle: data flows one way (DESIGN.md: the Study type below
the format readers, the dispatch above them; the sharding above the single-process reconstruction).

Every ``import`` / ``from ... import`` of a medrecon module counts, at module level or inside a
function (a lazy import is still a dependency). Imports of a package's ``__init__`` (lazy facades
such as ``medrecon`` itself) are not edges; imports of its modules are."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted((ROOT / "medrecon").rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    for p in sorted((ROOT / "operators").rglob("*.py")):
        mods["medrecon.operators" + ("" if p.stem == "__init__" else "." + p.stem)] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    packages = {m for m, p in mods.items() if p.name == "__init__.py"}
    graph = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets.add(base)
                targets |= {f"{base}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in mods and t not in packages and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "medrecon.study" in graph["medrecon.io.dicom_read"] and "medrecon.reconstruct" in graph["medrecon.distributed"]


# ------------------------------------------------------------------------------ the layout's rules
MAX_LINES = 800


def _sources():
    return sorted((ROOT / "medrecon").rglob("*.py")) + sorted((ROOT / "operators").rglob("*.py"))


def test_only_the_commands_package_uses_argparse():
    users = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if "argparse" in names and "commands" not in path.relative_to(ROOT).parts:
            users.append(str(path.relative_to(ROOT)))
    assert users == []


def test_no_source_file_is_longer_than_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_library_never_reads_the_command_line():
    def reads_argv(path) -> bool:
        return any(isinstance(n, ast.Attribute) and n.attr == "argv" and isinstance(n.value, ast.Name) and n.value.id == "sys"
                   for n in ast.walk(ast.parse(path.read_text())))

    readers = [str(p.relative_to(ROOT)) for p in _sources() if reads_argv(p) and "commands" not in p.relative_to(ROOT).parts]
    assert readers == []


def test_the_command_line_builds_without_torch():
    import subprocess
    import sys

    code = "import sys; from medrecon.commands import build_parser; build_parser(); print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]
