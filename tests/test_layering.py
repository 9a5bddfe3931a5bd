"""The package's layers (docs/architecture.md): each imports only its own or lower layers, and
no two packages import each other, even through imports inside functions."""

from __future__ import annotations

import ast

from conftest import ROOT

# Lower number = lower layer. A module may import packages of its own layer or below.
LAYERS = {
    "utils": 0,
    "paths": 0,
    "registry": 0,
    "tasks": 0,
    "runtime": 0,
    "losses": 1,
    "models": 1,
    "datasets": 1,
    "evaluation": 1,
    "visualization": 1,
    "complexity": 1,
    "compress": 1,
    "convert": 1,
    "input_size": 1,
    "data": 1,
    "engine": 2,
    "export": 2,
    "apis": 3,
    "workflows": 4,
    "analysis_cli": 4,
}


def _imports() -> dict[tuple[str, str], set[str]]:
    """(importing package, imported package) → the files where it happens."""
    edges: dict[tuple[str, str], set[str]] = {}
    package = ROOT / "vision_mtl"
    for path in package.rglob("*.py"):
        source = path.relative_to(package).parts[0].removesuffix(".py")
        if source == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                if node.module == "vision_mtl":
                    names = [f"vision_mtl.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "vision_mtl" and len(parts) > 1 and parts[1] != source:
                    edges.setdefault((source, parts[1]), set()).add(str(path.relative_to(ROOT)))
    return edges


def test_every_package_has_a_layer():
    packages = {
        p.name.removesuffix(".py")
        for p in (ROOT / "vision_mtl").iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "__init__.py"
    }
    assert packages <= set(LAYERS), f"give these a layer here and in docs: {packages - set(LAYERS)}"


def test_imports_go_down_the_layers():
    upward = {
        f"{a} → {b}": sorted(files)
        for (a, b), files in _imports().items()
        if LAYERS.get(b, 99) > LAYERS.get(a, 99)
    }
    assert not upward, upward


def test_no_two_packages_import_each_other():
    edges = _imports()
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))
        return False

    cycles = sorted(
        f"{a} ⇄ {b}: {sorted(files)}" for (a, b), files in edges.items() if reaches(b, a)
    )
    assert not cycles, cycles
