"""The package tree's floors: no import circle among atbench's modules, and no import from a
lower layer to a higher one (imports inside functions count; those under `if TYPE_CHECKING:`
do not, as they never run).

Layers, lowest first: benchmark.core; attacks, benchmark.models and leaderboard (each importing
only the core and itself); defenses; benchmark.pipeline; benchmark.commands; `python -m
benchmark`. Run
`python -m tests.test_layers` to print every module's layer and the check's result.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("benchmark", "attacks", "defenses", "leaderboard")
#: (layer, module prefixes), lowest first; a module belongs to the longest prefix that matches.
LAYERS = (
    (0, ("benchmark.core", "benchmark")),
    (1, ("attacks", "benchmark.models", "leaderboard")),
    (2, ("defenses",)),
    (3, ("benchmark.pipeline",)),
    (4, ("benchmark.commands",)),
    (5, ("benchmark.__main__",)),
)


def modules() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Line numbers of import statements inside `if TYPE_CHECKING:` blocks."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt)
                      if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def imports(path: Path, known: set[str]) -> set[str]:
    """The atbench modules `path` imports (the most specific known module of each name)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    names = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n in known}


def layer_of(module: str) -> tuple[int, str]:
    """(layer, the prefix it belongs to) of a module."""
    matches = [(len(p), layer, p) for layer, prefixes in LAYERS for p in prefixes
               if module == p or module.startswith(p + ".")]
    _, layer, prefix = max(matches)
    return layer, prefix


def graph() -> dict[str, set[str]]:
    """module -> the atbench modules it imports (package __init__s of a module's own parents
    excluded: importing a submodule runs them, they do not import it)."""
    found = modules()
    return {m: {d for d in imports(p, set(found)) if d != m} for m, p in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports that go up a layer, or sideways between two packages of one layer."""
    bad = []
    for module, deps in sorted(edges.items()):
        layer, prefix = layer_of(module)
        for dep in sorted(deps):
            dep_layer, dep_prefix = layer_of(dep)
            if dep_layer > layer or (dep_layer == layer and dep_prefix != prefix and layer > 0):
                bad.append(f"{module} (layer {layer}) imports {dep} (layer {dep_layer})")
    return bad


def test_no_import_circle():
    assert cycles(graph()) == []


def test_no_import_goes_up_a_layer():
    assert violations(graph()) == []


def test_the_checker_sees_a_planted_circle_and_an_upward_import():
    edges = {"benchmark.core.io": {"benchmark.pipeline.train"}, "benchmark.pipeline.train": {"benchmark.core.io"}}
    assert cycles(edges) == [["benchmark.core.io", "benchmark.pipeline.train"]]
    assert violations(edges) == ["benchmark.core.io (layer 0) imports benchmark.pipeline.train (layer 3)"]


def test_leaderboard_and_attacks_are_floors_apart():
    edges = {"leaderboard.build": {"attacks.pgd"}}
    assert violations(edges) == ["leaderboard.build (layer 1) imports attacks.pgd (layer 1)"]


if __name__ == "__main__":
    g = graph()
    for m in sorted(g):
        print(f"layer {layer_of(m)[0]}  {m}")
    print(f"{len(g)} modules, {sum(len(d) for d in g.values())} imports; cycles: {cycles(g) or 'none'}; "
          f"upward or sideways imports: {violations(g) or 'none'}")
