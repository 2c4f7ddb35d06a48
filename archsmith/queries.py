"""Questions asked of a syntax tree: every node under one, and which names an expression reads."""
from __future__ import annotations

from . import ast


def walk(node):
    """Every syntax-tree node under `node` (a node, or a list or tuple of them), `node` included."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (list, tuple)):
            stack.extend(n)
        elif hasattr(n, "__dataclass_fields__") and not isinstance(n, ast.Span):
            yield n
            stack.extend(getattr(n, f) for f in n.__dataclass_fields__ if f not in ("span", "file"))


def names_in(node) -> set:
    """The names an expression (or statement list) reads; `x.channels` reads `x`."""
    return {n.id for n in walk(node) if isinstance(n, ast.Name)}
