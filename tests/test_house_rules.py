"""House rules: dependencies point one way (rtatl_sdk <- training <- export), no import cycle, short functions."""

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("rtatl_sdk", "training", "export")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if level:
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([target] if target else []))
    return target or ""


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth of the file, lazy imports included)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node.level, node.module)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for n in names:
                while n and n not in files:  # a name inside a module -> that module
                    n = n.rpartition(".")[0]
                if n and n != mod and n.split(".")[0] in PACKAGES and not (files[n].name == "__init__.py" and mod.startswith(n + ".")):
                    graph[mod].add(n)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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


def test_the_three_packages_have_no_import_cycle():
    assert _cycles(import_graph()) == []


def test_dependencies_point_one_way():
    graph = import_graph()
    wrong = [(m, d) for m, deps in graph.items() for d in deps
             if (m.startswith("rtatl_sdk") and d.split(".")[0] in ("training", "export"))
             or (m.startswith("training") and d.startswith("export"))]
    assert wrong == []


def test_the_graph_sees_real_edges():
    graph = import_graph()  # a checker that finds nothing checks nothing
    assert "training.checkpoint" in graph["training.train"]
    assert "rtatl_sdk.contract.geometry" in graph["training.data.dataset"]
    assert "training.model" in graph["export.api"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_function_outside_tests_and_bench_is_longer_than_60_lines():
    long = []
    for pkg in (*PACKAGES, "examples"):
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert long == []


def test_recipes_hold_no_module_level_mutable_state():
    """A recipe's settings travel in its ``spec.Recipe`` and its data's manifests, never in a module
    global: no ``global`` statement, and no module attribute a function could change in place (a
    dict, list or set, a writable array). Mappings are read-only (``MappingProxyType``)."""
    import importlib

    import numpy as np

    folder = REPO / "training" / "recipes"
    bad = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        bad += [f"{path.name}:{n.lineno}: global {', '.join(n.names)}" for n in ast.walk(tree) if isinstance(n, (ast.Global, ast.Nonlocal))]
        mod = importlib.import_module(f"training.recipes.{path.stem}")
        own = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
               for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        for name in sorted(own):
            value = getattr(mod, name)
            if isinstance(value, (dict, list, set, bytearray)) or (isinstance(value, np.ndarray) and value.flags.writeable):
                bad.append(f"{path.name}: {name} is a mutable {type(value).__name__}")
    assert not bad, bad
