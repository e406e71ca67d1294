"""The package's shape, checked: imports go down only, no cycles, one reader of the environment.

These are the rules ``docs/architecture.md`` states; a change that breaks
one fails here with the offending import named, rather than in review.
Imports inside functions count as much as those at the top: a lazy import
still couples the two modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "contentpkg"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every contentpkg module ``path`` imports, resolved to a module that exists."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            # "from pkg import mod" imports pkg.mod when that is a module,
            # else a name defined in pkg itself.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            if not target.startswith("contentpkg"):
                continue
            while target and target not in known:
                target = target.rpartition(".")[0]
            # A module's own parent packages are imported before it in any
            # case; only imports across the tree are edges.
            if target and not (name == target or name.startswith(target + ".")):
                found.add(target)
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``, which never run."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and (
                (isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING")
                or (isinstance(child.test, ast.Attribute) and child.test.attr == "TYPE_CHECKING")
            ):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return nodes


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _area(module: str) -> str:
    """The concern a module belongs to: ``store``, ``python``, ``cli``, ``fs``..."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles() -> None:
    graph = _graph()
    # Tarjan's strongly connected components: any component of more than
    # one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"


#: What each concern may import from the others: imports go down only.
ALLOWED = {
    "errors": set(),
    "fs": set(),
    "context": set(),
    "progress": set(),
    "netfaults": set(),
    "store": {"errors", "fs", "context", "netfaults"},
    "elf": {"errors", "fs", "context", "progress", "netfaults", "store"},
    "env": {"errors", "fs", "context", "progress", "netfaults", "store", "elf"},
    "python": {"errors", "fs", "context", "progress", "netfaults", "store", "env", "elf"},
}


@pytest.mark.parametrize("area", sorted(ALLOWED))
def test_imports_go_down_only(area: str) -> None:
    graph = _graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _area(module) == area
        for target in targets
        if _area(target) not in ALLOWED[area] | {area, ""}
    )
    assert wrong == []


def test_only_the_context_and_the_run_memo_read_the_environment() -> None:
    readers = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in ("environ", "getenv", "environb")
            ):
                readers.append(f"{name}:{node.lineno}")
    allowed = ("contentpkg.context:", "contentpkg.python.run.memo:")
    assert [r for r in readers if not r.startswith(allowed)] == []
