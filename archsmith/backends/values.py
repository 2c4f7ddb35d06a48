"""Values of the class translator: what a spec expression is while its block's class is being written.

A value is known when the class is written (`Const`), or known only when the class is constructed
(`Dyn`: Python source over the constructor's parameters, with the spec symbols it depends on), or a
tensor of the forward (`TVal`: its per-sample shape as values, and the forward source holding it).
Arithmetic on values folds constants and otherwise writes Python with the least parentheses."""
from __future__ import annotations

import math
from dataclasses import dataclass

IN = "@in"  # dependency on the block's input channels
SPATIAL = "@spatial"  # dependency on the block's input height and width
INPUT = "@input"  # a size of the block's input tensor, as a caller knows it

PREC = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "@": 6, "neg": 7,
        "**": 8}
ATOM = 100
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
# The longest expression written over constructor parameters. A spec can make one grow exponentially
# (`r = {a: r.a * r.a}` in a loop inlines the field twice per iteration); past this length the
# generator writes the values it depends on as literals instead.
MAX_EXPRESSION = 10_000


class Untranslatable(Exception):
    """A construct that cannot be written over the values in `deps`: the generator makes them literals."""

    def __init__(self, deps, why: str):
        super().__init__(why)
        self.deps = frozenset(deps)
        self.why = why


@dataclass(frozen=True)
class Const:
    value: object


@dataclass(frozen=True)
class Dyn:
    src: str
    prec: int = ATOM
    deps: frozenset = frozenset()
    boolean: bool = False  # a comparison or a logical operation: its Python value is a bool
    classes: frozenset = frozenset()  # for a class passed as a value: id()s of the blocks it may be
    terms: tuple = None  # for a sum: ((term source, precedence, int coefficient), ...), int constant

    def __post_init__(self):
        if len(self.src) > MAX_EXPRESSION:
            raise Untranslatable(self.deps, f"an expression longer than {MAX_EXPRESSION:,} characters")


@dataclass(frozen=True)
class Missing:
    """A dimension that is not known when the class is constructed (an input's height, say). Where
    forward can compute it, `fwd` is its source there (`x_height * 2`)."""
    deps: frozenset
    fwd: str = None
    prec: int = ATOM


@dataclass
class SList:
    """A list whose length is known, with some items not constant (or tensors). `source`, where set,
    is how the list itself is written (its variable, or the comprehension that builds it)."""
    items: list
    source: str = None


@dataclass
class TVal:
    """A tensor of the forward: per-sample shape (values) and the forward source that holds it (a free
    parameter is not `batched`: its shape is its whole shape)."""
    shape: tuple
    fwd: str
    prec: int = ATOM
    batched: bool = True


@dataclass
class TList:
    """A list of tensors that a Python loop grows (DenseNet's features): the total of its items'
    channels and their other dimensions, and the forward name of the list."""
    shape: tuple
    fwd: str
    prec: int = ATOM


@dataclass
class RVal:
    """A record with fields not all constant: its fields can be read, but it has no Python value."""
    fields: dict


def deps(v) -> frozenset:
    if isinstance(v, (Dyn, Missing)):
        return v.deps
    if isinstance(v, RVal):
        return frozenset().union(*[deps(i) for i in v.fields.values()]) if v.fields else frozenset()
    if isinstance(v, SList):
        return frozenset().union(*[deps(i) for i in v.items]) if v.items else frozenset()
    if isinstance(v, (TVal, TList)):
        return frozenset().union(*[deps(d) for d in v.shape]) if v.shape else frozenset()
    return frozenset()


def literal(v) -> str:
    """Python source for a constant (lists are written as lists)."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(literal(i) for i in v) + "]"
    if isinstance(v, float) and not math.isfinite(v):
        return f'float("{v}")'  # repr would write `inf`, which is no Python name
    return repr(v)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def fold(v):
    """A value made only of constants, as one `Const`."""
    if isinstance(v, SList) and all(isinstance(i, Const) for i in v.items):
        return Const([i.value for i in v.items])
    return v


def _missing_op(op, a, b) -> Missing:
    """`a op b` where a size is known only in forward: its forward source, where both sides have one."""
    sides = []
    for v in (a, b):
        if isinstance(v, Missing) and v.fwd is not None:
            sides.append((v.fwd, v.prec))
        elif isinstance(v, Const) and is_int(v.value):
            sides.append(src_prec(v))
        else:
            return Missing(deps(a) | deps(b))
    prec = PREC.get(op)
    if prec is None:
        return Missing(deps(a) | deps(b))
    (x, xp), (y, yp) = sides
    return Missing(deps(a) | deps(b), f"{wrap(x, xp, prec)} {op} {wrap(y, yp, prec + 1)}", prec)


def wrap(src: str, prec: int, need: int) -> str:
    return f"({src})" if prec < need else src


def binop(op: str, a, b):
    """`a op b` for scalars and lists, folded where both are constant."""
    a, b = fold(a), fold(b)
    if isinstance(a, Missing) or isinstance(b, Missing):
        return _missing_op(op, a, b)
    if isinstance(a, Const) and isinstance(b, Const):
        try:
            return Const(_apply(op, a.value, b.value))
        except Exception:  # noqa: BLE001 - a branch no instance takes: Python raises it if it runs
            pass
    if op == "+" and isinstance(a, SList) and isinstance(b, SList):
        return SList(a.items + b.items)
    if op == "+" and isinstance(a, SList) and isinstance(b, Const) and isinstance(b.value, list):
        return SList(a.items + [Const(i) for i in b.value])
    if op == "+" and isinstance(a, Const) and isinstance(a.value, list) and isinstance(b, SList):
        return SList([Const(i) for i in a.value] + b.items)
    if op in ("*", "+", "-") and isinstance(b, Const) and is_int(b.value) and b.value == (1 if op == "*" else 0) \
            and isinstance(a, Dyn) and not a.boolean:
        return a  # `w * 1`, `w + 0`, `w - 0`
    if op in ("*", "+") and isinstance(a, Const) and is_int(a.value) and a.value == (1 if op == "*" else 0) \
            and isinstance(b, Dyn) and not b.boolean:
        return b
    if op in ("+", "-"):
        summed = _sum(op, a, b)
        if summed is not None:
            return summed
    cmp = op in COMPARISONS
    if op in ("==", "!=") and (a == Const(None) or b == Const(None)):
        op = "is" if op == "==" else "is not"
        if a == Const(None):
            a, b = b, a
    prec = PREC["cmp"] if cmp else PREC[op]
    la, pa = src_prec(a)
    lb, pb = src_prec(b)
    if op == "**":
        left, right = wrap(la, pa, prec + 1), wrap(lb, pb, PREC["neg"])
    elif cmp:
        left, right = wrap(la, pa, prec + 1), wrap(lb, pb, prec + 1)
    else:
        left, right = wrap(la, pa, prec), wrap(lb, pb, prec + 1)
    return Dyn(f"{left} {op} {right}", prec, deps(a) | deps(b), boolean=cmp, terms=_terms(op, a, b))


def _linear(v):
    """`v` as a sum of int multiples of terms plus an int: (((source, precedence, coefficient), ...),
    constant), or None where it is no int sum (a bool, a float, a list)."""
    if isinstance(v, Const):
        return ((), v.value) if is_int(v.value) else None
    if not isinstance(v, Dyn) or v.boolean:
        return None
    return v.terms if v.terms is not None else (((v.src, v.prec, 1),), 0)


def _terms(op, a, b):
    """The sum `a op b` as `_linear` gives it, for `+`, `-` and a multiple `k * t`."""
    if op == "*":
        for k, t in ((a, b), (b, a)):
            if isinstance(k, Const) and is_int(k.value) and isinstance(t, Dyn) and not t.boolean and t.terms is None:
                return ((t.src, t.prec, k.value),), 0
        return None
    if op not in ("+", "-"):
        return None
    la, lb = _linear(a), _linear(b)
    if la is None or lb is None:
        return None
    sign = 1 if op == "+" else -1
    coefficients = {}
    for source, prec, k in la[0]:
        coefficients[source] = [prec, coefficients.get(source, [prec, 0])[1] + k]
    for source, prec, k in lb[0]:
        coefficients[source] = [prec, coefficients.get(source, [prec, 0])[1] + sign * k]
    return tuple((source, prec, k) for source, (prec, k) in coefficients.items()), la[1] + sign * lb[1]


def _sum(op, a, b):
    """`a op b` written anew where a term cancels (`bw + (c - bw)` is `c`); else None, and it is
    written as the spec has it."""
    terms = _terms(op, a, b)
    if terms is None:
        return None
    on_both_sides = {t[0] for t in _linear(a)[0]} & {t[0] for t in _linear(b)[0]}
    if not any(t[0] in on_both_sides and t[2] == 0 for t in terms[0]):
        return None
    kept, constant = tuple(t for t in terms[0] if t[2]), terms[1]
    if not kept:
        return Const(constant)
    if len(kept) == 1 and kept[0][2] == 1 and constant == 0:
        return Dyn(kept[0][0], kept[0][1], deps(a) | deps(b), terms=(kept, 0))
    out, prec = "", PREC["+"]
    for source, term_prec, k in kept:
        written = wrap(source, term_prec, PREC["*"] + 1) if abs(k) != 1 else source
        written = f"{abs(k)} * {written}" if abs(k) != 1 else written
        if not out:
            if k < 0 and abs(k) != 1:
                out, prec = "-" + written, PREC["*"]  # `-3 * n`
            elif k < 0:
                out, prec = "-" + wrap(written, term_prec, PREC["neg"]), PREC["neg"]
            else:
                out = wrap(written, PREC["*"] if abs(k) != 1 else term_prec, PREC["+"])
        else:
            out += (" - " if k < 0 else " + ") + wrap(written, PREC["*"] if abs(k) != 1 else term_prec, PREC["+"] + 1)
            prec = PREC["+"]
    if constant:
        out, prec = out + (f" + {constant}" if constant > 0 else f" - {-constant}"), PREC["+"]
    return Dyn(out, prec, deps(a) | deps(b), terms=(kept, constant))


def _apply(op, a, b):
    if op == "**" and isinstance(b, (int, float)) and abs(b) > 64:
        raise ValueError("exponent")
    return {
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b, "//": lambda: a // b,
        "%": lambda: a % b, "**": lambda: a ** b, "==": lambda: a == b, "!=": lambda: a != b,
        "<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b,
    }[op]()


def neg(v):
    v = fold(v)
    if isinstance(v, Const):
        return Const(-v.value)
    s, p = src_prec(v)
    return Dyn("-" + wrap(s, p, PREC["neg"]), PREC["neg"], deps(v))


def not_(v):
    v = fold(v)
    if isinstance(v, Const):
        return Const(not v.value)
    s, p = src_prec(v)
    return Dyn("not " + wrap(s, p, PREC["not"]), PREC["not"], deps(v), boolean=True)


def boolop(op: str, a, b, tested=False):
    """`a and b` / `a or b` with the spec's meaning: always a bool. Where the value is only `tested`
    (by an `if`), Python's truth of its operands is the spec's, so they need no `bool()`."""
    a, b = fold(a), fold(b)
    as_bool = condition if tested else truth
    if isinstance(a, Const):
        if op == "and" and not a.value:
            return Const(False)
        if op == "or" and a.value:
            return Const(True)
        return as_bool(b)
    if isinstance(b, Const) and ((op == "and" and b.value) or (op == "or" and not b.value)):
        return as_bool(a)
    if isinstance(b, Const):  # `a and false`, `a or true`: the spec's value is the constant
        return Const(bool(b.value))
    prec = PREC[op]
    a, b = as_bool(a), as_bool(b)
    (la, pa), (lb, pb) = src_prec(a), src_prec(b)
    return Dyn(f"{wrap(la, pa, prec)} {op} {wrap(lb, pb, prec + 1)}", prec, deps(a) | deps(b),
               boolean=getattr(a, "boolean", False) and getattr(b, "boolean", False))


def truth(v):
    """The value as a bool, as a condition in the spec reads it."""
    v = fold(v)
    if isinstance(v, Const):
        return Const(bool(v.value))
    if isinstance(v, Dyn) and v.boolean:
        return v
    return Dyn(f"bool({src(v)})", ATOM, deps(v), boolean=True)


def condition(v):
    """A value tested by `if`: Python's truth is the spec's, so no `bool()` is needed."""
    t = truth(v)
    return t if isinstance(t, Const) else fold(v)


def ternary(cond, then, orelse):
    cond = fold(cond)
    if isinstance(cond, Const):
        return then if cond.value else orelse
    then, orelse = fold(then), fold(orelse)
    if isinstance(then, Const) and isinstance(orelse, Const) and _same_const(then.value, orelse.value):
        return then
    if isinstance(then, Dyn) and isinstance(orelse, Dyn) and then.src == orelse.src:
        return then
    if isinstance(then, Missing) or isinstance(orelse, Missing):
        return Missing(deps(cond) | deps(then) | deps(orelse))
    (t, tp), (c, cp), (o, _) = src_prec(then), src_prec(cond), src_prec(orelse)
    return Dyn(f"{wrap(t, tp, 1)} if {wrap(c, cp, 1)} else {o}", 0, deps(cond) | deps(then) | deps(orelse))


def _same_const(a, b) -> bool:
    return type(a) is type(b) and a == b


def same(a, b) -> bool:
    """Whether two values are the same for code generation."""
    a, b = fold(a), fold(b)
    if isinstance(a, Const) and isinstance(b, Const):
        return _same_const(a.value, b.value) and repr(a.value) == repr(b.value)
    if isinstance(a, Dyn) and isinstance(b, Dyn):
        return a.src == b.src
    if isinstance(a, SList) and isinstance(b, SList):
        return len(a.items) == len(b.items) and all(same(x, y) for x, y in zip(a.items, b.items))
    if isinstance(a, TVal) and isinstance(b, TVal):
        return a.fwd == b.fwd and len(a.shape) == len(b.shape) and all(same(x, y) for x, y in zip(a.shape, b.shape))
    if isinstance(a, Missing) and isinstance(b, Missing):
        return True
    return a is b


def src_prec(v):
    """(source, precedence) of a value known at construction."""
    v = fold(v)
    if isinstance(v, Const):
        s = literal(v.value)
        return s, (PREC["neg"] if s.startswith("-") else ATOM)
    if isinstance(v, Dyn):
        return v.src, v.prec
    if isinstance(v, SList):
        return (v.source or "[" + ", ".join(src(i) for i in v.items) + "]"), ATOM
    if isinstance(v, Missing):
        raise Untranslatable(v.deps, "a tensor size the spec reads, which the class knows only in forward")
    if isinstance(v, RVal):
        raise Untranslatable(deps(v), "a record whose fields are known only at construction")
    what = {"TVal": "a tensor", "TList": "a list of tensors", "TTuple": "the tensors of a split"}.get(
        type(v).__name__, "a value known only in forward")
    raise Untranslatable(deps(v), f"{what} where __init__ needs a value, such as a list of tensors an `if` chooses")


def src(v) -> str:
    return src_prec(v)[0]


def call(fn: str, args: list, boolean=False):
    """`fn(args)` over values."""
    return Dyn(f"{fn}({', '.join(src(a) for a in args)})", ATOM,
               frozenset().union(*[deps(a) for a in args]) if args else frozenset(), boolean=boolean)
