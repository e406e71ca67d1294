"""``cpk tree``: the lock's dependency graph, from the project's direct
requirements down (or, inverted, from a package up to what needs it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from contentpkg.errors import CpkError
from contentpkg.python.lock import LockedPackage
from contentpkg.python.names import canonical_name


@dataclass
class Node:
    """One line of the tree: a package, and below it what it needs (or,
    inverted, what needs it). ``seen`` marks a package already shown above,
    whose subtree is not repeated (uv's ``(*)``)."""

    name: str
    version: str | None
    children: list[Node] = field(default_factory=list)
    seen: bool = False
    latest: str | None = None


def _graph(packages: list[LockedPackage]) -> dict[str, list[str]]:
    names = {p.name for p in packages}
    return {p.name: [d for d in p.dependencies if d in names] for p in packages}


def dependency_tree(
    packages: list[LockedPackage],
    roots: Iterable[str] = (),
    *,
    depth: int | None = None,
    invert: str | None = None,
) -> list[Node]:
    """The forest to show. roots are the project's direct requirements;
    packages nothing depends on are roots too, so every package appears."""
    versions = {p.name: p.version for p in packages}
    graph = _graph(packages)
    if invert is not None:
        target = canonical_name(invert)
        if target not in graph:
            raise CpkError(f"{invert}: not in the lock")
        reverse: dict[str, list[str]] = {name: [] for name in graph}
        for name, deps in graph.items():
            for dep in deps:
                reverse[dep].append(name)
        graph = {name: sorted(users) for name, users in reverse.items()}
        starts = [target]
    else:
        needed = {dep for deps in graph.values() for dep in deps}
        declared = [canonical_name(r) for r in roots]
        starts = [r for r in dict.fromkeys(declared) if r in graph]
        starts += sorted(n for n in graph if n not in needed and n not in starts)
    shown: set[str] = set()

    def build(name: str, level: int) -> Node:
        node = Node(name, versions.get(name))
        if name in shown and graph[name]:
            node.seen = True
            return node
        shown.add(name)
        if depth is None or level < depth:
            node.children = [build(child, level + 1) for child in graph[name]]
        return node

    return [build(name, 0) for name in starts]


def render_tree(forest: list[Node]) -> list[str]:
    """Lines with box-drawing branches, as ``uv tree`` and ``tree`` draw them."""
    lines: list[str] = []

    def label(node: Node) -> str:
        text = f"{node.name} v{node.version}" if node.version else f"{node.name} (local)"
        if node.latest:
            text += f" (latest: v{node.latest})"
        return text + (" (*)" if node.seen else "")

    def walk(node: Node, prefix: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{label(child)}")
            walk(child, prefix + ("    " if last else "│   "))

    for root in forest:
        lines.append(label(root))
        walk(root, "")
    return lines
