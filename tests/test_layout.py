"""The tree keeps the shape issue 12 gave it: the library never imports the demo, no import circle
in either package, bench/ and harness/ never import the tests, and no source file grows past
about 400 lines. Read from the source (ast), so a violation anywhere fails here, not only on the
paths other tests happen to run."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_LINES = 420  # "no source file over about 400 lines"
# The design card's script: it starts the demo, and is not imported by the library.
DEMO_SCRIPT = SRC / "DistributedMutex" / "test.py"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> Iterator[str]:
    """Modules imported when ``path`` is imported: module level, outside ``if TYPE_CHECKING:``
    (function-level imports are lazy on purpose: the backends, the SQLite store)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # `from package import submodule` imports the submodule too.
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def package_files(*names: str) -> list[Path]:
    return sorted(p for name in names for p in (SRC / name).rglob("*.py"))


def test_the_library_never_imports_the_demo() -> None:
    offenders = []
    for path in package_files("DistributedMutex"):
        if path == DEMO_SCRIPT:
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names
                          if n.split(".")[0] == "distributed_mutex_demo"]
    assert not offenders, f"the library imports the demo at {offenders}"


@pytest.mark.parametrize("package", ["DistributedMutex", "distributed_mutex_demo"])
def test_no_import_circle(package: str) -> None:
    modules = {module_name(p): p for p in package_files(package)}
    graph = {name: {m for m in top_level_imports(path) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ importing its own submodules is how packages work, not a circle.
    for name, deps in graph.items():
        deps -= {m for m in deps if name.startswith(m + ".")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            pytest.fail("import circle: " + " -> ".join(cycle))


def test_bench_and_harness_do_not_import_the_tests() -> None:
    offenders = []
    for path in sorted([*(ROOT / "bench").rglob("*.py"), *(ROOT / "harness").rglob("*.py")]):
        for module in top_level_imports(path):
            if module.split(".")[0] in ("support", "tests", "conftest"):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders


def test_no_source_file_is_much_over_400_lines() -> None:
    files = [*SRC.rglob("*.py"), *(ROOT / "bench").rglob("*.py"), *(ROOT / "harness").rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_LINES}
    assert not long, f"split these into modules with one job each: {long}"
