"""The package's layering: no import circle inside ``earec_core``, counting every import (module
level, inside functions, and under ``TYPE_CHECKING``), and the plugin contract imports no stage."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import earec_core

ROOT = Path(earec_core.__file__).parent
STAGES = {"align", "compose", "embed", "explain", "recommend", "search", "study", "report", "pipeline", "cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """Every ``earec_core`` module that ``path`` imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("earec_core")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("earec_core"):
                continue
            found.add(target)
            for alias in node.names:  # `from . import x` / `from .data import sequences` name modules too
                found.add(f"{target}.{alias.name}")
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # a package import of its own submodule (data/__init__ -> data.atomic) is not an edge back to it
        graph[name] = {t for t in _imports(path, name) if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_earec_core():
    found = cycles(import_graph())
    assert not found, f"import circles (module-level, in-function and TYPE_CHECKING imports all count): {found}"


def test_the_plugin_contract_imports_no_stage():
    graph = import_graph()
    for contract in ("earec_core.modality", "earec_core.recommender", "earec_core.hookspecs"):
        seen, todo = set(), [contract]
        while todo:  # everything the contract reaches, directly or not
            for dep in graph[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        stages = sorted(d for d in seen if d.rpartition(".")[2] in STAGES or d.endswith(("workspace", "plugins")))
        assert not stages, f"{contract} reaches {stages}"


def test_tables_import_nothing_of_earec_core():
    assert import_graph()["earec_core.tables"] == set(), "tables renders dicts; it must not import a stage"


def test_run_folder_paths_are_built_in_the_workspace():
    hand = re.compile(r"\bws\.dir\s*/")
    found = [f"{p.relative_to(ROOT.parent)}:{i}" for p in ROOT.rglob("*.py") if p.name != "workspace.py"
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if hand.search(line)]
    assert not found, f"run-folder paths joined by hand (use a Workspace helper): {found}"
