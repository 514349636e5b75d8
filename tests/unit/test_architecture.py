"""Architecture rules, as tests: small engine modules, a thin facade, no import cycle, and an engine
that never imports azure.functions (so it runs, and is tested, outside a Functions host)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_ENGINE_MODULE_LINES = 400
MAX_FACADE_LINES = 150


def modules(package: str) -> dict[str, Path]:
    root = REPO / package
    found = {}
    for path in root.rglob("*.py"):
        if "fixtures" in path.parts:
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the same package ``name`` imports, TYPE_CHECKING blocks and function bodies included."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            candidates = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


def cycles(package: str) -> list[list[str]]:
    graph_modules = modules(package)
    known = set(graph_modules)
    graph = {name: imports_of(name, path, known) for name, path in graph_modules.items()}
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt == package:  # the package's __init__ is imported by everyone; it imports nothing of ours
                continue
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


@pytest.mark.parametrize("package", ["mccf_backup", "emulator", "functions"])
def test_no_import_cycle(package):
    assert cycles(package) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (package / "b.py").write_text("from . import a\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["REPO"]), "REPO", tmp_path)
    assert cycles("cyclic") == [["cyclic.a", "cyclic.b", "cyclic.a"]]


def test_no_engine_module_is_over_400_lines_and_the_facade_stays_thin():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules("mccf_backup").items()}
    assert {name: n for name, n in sizes.items() if n > MAX_ENGINE_MODULE_LINES} == {}
    assert sizes["mccf_backup.service"] <= MAX_FACADE_LINES


def test_the_engine_never_imports_azure_functions():
    for name, path in modules("mccf_backup").items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n == "azure.functions" or n.startswith("azure.functions.") for n in names), name
