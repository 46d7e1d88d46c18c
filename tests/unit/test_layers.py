"""The shape of `src/securepipe`, read from its imports with `ast` (no module is imported).

Layers, lowest first; a module imports only from its own layer or below, the graph has no
cycle, and `securepipe` modules are imported at the top of a file, never inside a function
(except the KMS providers, whose libraries are optional extras).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from securepipe.protect.registry import operator_names

SRC = Path(__file__).resolve().parents[2] / "src"
LAYERS = [
    ("ground", ("errors", "config", "layout", "locks", "jars", "logs", "__init__")),
    ("crypto", ("crypto",)),
    ("protect", ("protect",)),
    ("io", ("io",)),
    ("quality/access", ("quality", "access")),
    ("pipeline", ("pipeline",)),
    ("entry", ("spark", "cli", "__main__")),
]
# Optional dependencies, imported where they are used so that the base install works without.
OPTIONAL_IN_FUNCTION = {"boto3", "pkcs11"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "securepipe").rglob("*.py"))}


def _layer(module: str) -> int:
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "__init__"
    for index, (_, names) in enumerate(LAYERS):
        if first in names:
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import of `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    # `from pkg import module` imports the module; otherwise the name's module.
                    found.append((full if full in MODULES else child.module, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


MODULES = _modules()
GRAPH = {
    name: sorted({m for m, _ in _imports(path) if m in MODULES and m != name})
    for name, path in MODULES.items()
}


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        _layer(name)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_layer_above(module: str) -> None:
    above = [m for m in GRAPH[module] if _layer(m) > _layer(module)]
    assert not above, f"{module} ({LAYERS[_layer(module)][0]}) imports upwards: {above}"


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in GRAPH[node]:
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module)


def test_no_import_inside_a_function_except_optional_dependencies() -> None:
    inside = sorted(
        f"{name}: {imported}"
        for name, path in MODULES.items()
        for imported, in_function in _imports(path)
        if in_function
        and imported.split(".")[0] not in OPTIONAL_IN_FUNCTION
        and imported not in OPTIONAL_IN_FUNCTION
    )
    assert not inside, "imports inside functions:\n" + "\n".join(inside)


def test_the_cycle_check_finds_a_planted_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    planted = {**GRAPH, "securepipe.errors": [*GRAPH["securepipe.errors"], "securepipe.cli"]}
    monkeypatch.setattr(__import__(__name__, fromlist=["GRAPH"]), "GRAPH", planted)
    with pytest.raises(AssertionError, match="import cycle"):
        test_the_import_graph_has_no_cycle()


def test_no_module_outside_protect_compares_an_operator_name() -> None:
    """Operators' facts live on their classes: elsewhere nothing tests `protect.op` or names a
    built-in operator in a string."""
    names = set(operator_names())
    offenders = []
    for module, path in MODULES.items():
        if module.startswith("securepipe.protect"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                text = ast.unparse(node)
                if ".erasure" in text:  # `erasure: partial` is a table setting, not a mask
                    continue
                if "protect.op" in text or any(
                    isinstance(c, ast.Constant) and c.value in names
                    for c in [node.left, *node.comparators]
                    + [
                        e
                        for c in node.comparators
                        if isinstance(c, ast.Tuple | ast.Set | ast.List)
                        for e in c.elts
                    ]
                ):
                    offenders.append(f"{module}:{node.lineno}: {text}")
    assert not offenders, "\n".join(offenders)
