"""Questions the code generator asks of a block's syntax tree: which names an expression reads,
which parameters decide the structure, whether `x` is still the input at some point."""
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


def contains(node, target) -> bool:
    """Whether the tree `node` contains the very object `target`."""
    return any(n is target for n in walk(node))


def structural_names(body, evaluated_if=None) -> set:
    """Names a block body's structure depends on: what loops run over, what conditions test, what
    layer names interpolate, and (transitively) the locals those are computed from. The condition of
    `evaluated_if` does not count: the generated class evaluates it itself. `x` stands for the input,
    so it brings in `in_channels`."""
    direct = set()
    for n in walk(body):
        if isinstance(n, ast.For):
            direct |= names_in(n.iterable)
        elif isinstance(n, ast.If) and n is not evaluated_if:
            direct |= names_in([cond for cond, _ in n.branches])
        elif isinstance(n, ast.LayerName) and n.suffix is not None:
            direct |= names_in(n.suffix)
    assigns = [n for n in walk(body) if isinstance(n, ast.Assign)]
    names = set(direct)
    changed = True
    while changed:
        changed = False
        for a in assigns:
            if a.target in names and not names_in(a.value) <= names:
                names |= names_in(a.value)
                changed = True
    if "x" in names:
        names.add("in_channels")
    return names


def assigns_x(body) -> bool:
    """Whether statements rebind the block's input `x`."""
    return any((isinstance(n, ast.Assign) and n.target == "x") or (isinstance(n, ast.For) and n.var == "x")
               for n in walk(body))


def x_is_input_at(body, target) -> bool:
    """Whether `x` still names the block's input where the expression `target` is evaluated:
    no statement before it (outside loops) rebinds x."""
    for s in body:
        if not contains(s, target):
            if assigns_x([s]):
                return False
            continue
        if isinstance(s, ast.If):
            for cond, branch in s.branches:
                if contains(cond, target):
                    return True
                if contains(branch, target):
                    return x_is_input_at(branch, target)
            return x_is_input_at(s.orelse or [], target)
        return not isinstance(s, ast.For)
    return False
