"""The package's structure: imports point down the layers, no cycles, short functions and model files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scfuse"
#: entry points above every layer: they may import anything
ENTRY_POINTS = {"scfuse", "scfuse.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The scfuse modules ``name`` imports when it runs (imports inside functions too, not type-checking ones)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    up = up[: len(up) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)


def test_layers_point_down():
    """``pp``/``tl``/``pl`` -> ``models`` -> ``module``/``nn``/``_utils``; nothing outside ``tl`` imports ``tl``."""
    below_models = ("scfuse._utils", "scfuse.nn", "scfuse.module", "scfuse.datasets")
    for name, targets in _graph().items():
        if name in ENTRY_POINTS:
            continue
        for t in targets:
            if t.startswith("scfuse.tl"):
                assert name.startswith("scfuse.tl"), f"{name} imports {t}"
            if name.startswith(below_models):
                assert not t.startswith(("scfuse.models", "scfuse.pp", "scfuse.tl", "scfuse.pl")), f"{name} imports {t}"
            if name.startswith("scfuse.models"):
                assert not t.startswith(("scfuse.pp", "scfuse.pl")), f"{name} imports {t}"


def test_the_walker_sees_imports():
    graph = _graph()
    assert "scfuse.models._base" in graph["scfuse.models._two_stage"]
    assert "scfuse._utils._estimate_k" in graph["scfuse.models._base"]
    assert "scfuse.models" in graph["scfuse.tl._cluster"]  # an import inside a function counts


def _code_lines(node: ast.FunctionDef, lines: list[str]) -> int:
    doc = node.body[0]
    skip = (
        range(doc.lineno, doc.end_lineno + 1)
        if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
        else range(0)
    )
    return sum(
        1
        for i in range(node.lineno, node.end_lineno + 1)
        if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")
    )


def test_functions_are_short():
    long = []
    for path in SRC.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _code_lines(node, lines) > 60:
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({_code_lines(node, lines)} lines)")
    assert not long, "functions over 60 lines of code: " + "; ".join(long)


def test_model_files_are_short():
    long = [f"{p.name} ({n})" for p in (SRC / "models").glob("*.py") if (n := len(p.read_text().splitlines())) > 300]
    assert not long, "model files over 300 lines: " + ", ".join(long)
