"""Evaluation of .arch expressions by walking the syntax tree (nothing is handed to Python's eval):
the values (numbers, bools, strings, lists, blocks used as values, the tensors of a model being
built), the names a scope sees, the built-in functions, the binding of arguments to parameters, and
the limits that keep a spec from hanging the compiler.

An `Evaluator` alone evaluates top-level constants and `--set` values. The operations on tensors (a
pipe, a declared layer called, `+` of two tensors) belong to its subclass `elaborate.Elaborator`,
which builds the graph: they are reached only through a tensor, and only the Elaborator makes one."""
from __future__ import annotations

import builtins
import copy
import math
from dataclasses import dataclass
from typing import Optional

from . import ast, limits
from .errors import SpecError, did_you_mean
from .ir import Instance, Tensor
from .primitives import PRIMITIVES, REQUIRED, fmt_shape
from .queries import names_in, walk

MAX_INT = 2 ** 63
TENSOR_ATTRS = ("channels", "height", "width", "shape")


@dataclass(frozen=True)
class BlockRef:
    """A block or layer definition used as a value, e.g. ResNet's `block` parameter."""
    defn: object

    def __repr__(self):
        return self.defn.name


class Record:
    """A record value, `{out: 64, stride: 2}`: named fields in the order written."""

    def __init__(self, fields: dict):
        self.fields = dict(fields)

    def __eq__(self, other):
        return isinstance(other, Record) and self.fields == other.fields

    def __hash__(self):
        return hash(tuple(self.fields))

    def __repr__(self):  # Python source of a dict, for a record the generated code holds
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self.fields.items()) + "}"


class Builtin:
    def __init__(self, name, fn, arity):
        self.name, self.fn, self.arity = name, fn, arity


def _range(*a):
    r = range(*a)
    most = limits.current().range_items
    if len(r) > most:
        raise ValueError(f"range of {len(r):,} items is larger than the limit of {most:,}")
    return list(r)


def _log(x, base=None):
    return math.log(x) if base is None else math.log(x, base)


BUILTINS = {b.name: b for b in [
    Builtin("range", _range, (1, 3)), Builtin("len", len, (1, 1)), Builtin("sum", sum, (1, 1)),
    Builtin("min", min, (1, 99)), Builtin("max", max, (1, 99)), Builtin("abs", abs, (1, 1)),
    Builtin("round", round, (1, 2)), Builtin("int", int, (1, 1)), Builtin("float", float, (1, 1)),
    Builtin("str", lambda v: format_value(v), (1, 1)), Builtin("ceil", math.ceil, (1, 1)),
    Builtin("floor", math.floor, (1, 1)), Builtin("sqrt", math.sqrt, (1, 1)),
    Builtin("log", _log, (1, 2)), Builtin("log2", math.log2, (1, 1)), Builtin("exp", math.exp, (1, 1)),
    Builtin("zip", lambda *lists: [list(t) for t in zip(*lists)], (1, 99)),
    Builtin("enumerate", lambda items, start=0: [[i, v] for i, v in enumerate(items, start)], (1, 2)),
    Builtin("list", list, (1, 1)),
]}


_LITERALS = {"true": "true", "false": "false", "none": "none", "null": "none", "nil": "none"}


def _literal_hint(name: str) -> Optional[str]:
    """For `True`, `None`, `null` and the like: the literal of this language they mean."""
    literal = _LITERALS.get(name.lower())
    return f"did you mean `{literal}`? the literals are `true`, `false` and `none`" if literal else None


def _function_hint(name: str, names: list) -> Optional[str]:
    """The hint for an unknown function `name`, where `names` are the variables and definitions in scope."""
    if hasattr(builtins, name):  # a Python function: only the language's value functions are near it
        return f"`{name}` is a Python function; the built-in functions here are {', '.join(BUILTINS)}"
    return layer_hint(name, names + list(PRIMITIVES) + list(BUILTINS))


def layer_hint(name: str, candidates) -> Optional[str]:
    """For an unknown layer or function: the primitive it names in PyTorch's words, or a close candidate."""
    primitive = primitive_named(name)
    return f"did you mean `{primitive}`?" if primitive else did_you_mean(name, candidates)


TORCH_MODULES = ("nn", "torch", "F")  # what PyTorch code calls its layers through


def primitive_named(name: str) -> Optional[str]:
    """The primitive a name from elsewhere means: its PyTorch class (`Conv2d`, `nn.ReLU`) or its own
    name in other capitals (`LayerNorm`); None if it means none."""
    name = name.rpartition(".")[2].lower()
    for prim in PRIMITIVES.values():
        if name in (prim.name.lower(), (prim.torch_class or "").lower(), *(a.lower() for a in prim.aliases)):
            return prim.name
    return None


def format_value(v):
    """A value as `str` writes it: a string as itself, anything else as the .arch literal for it."""
    return v if isinstance(v, str) else spec_literal(v)


def spec_literal(v) -> str:
    """The .arch source of a value: `true`, `none`, `"s"`, `[1, 2]`, `{out: 64}`, a block's name."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(spec_literal(i) for i in v) + "]"
    if isinstance(v, Record):
        return "{" + ", ".join(f"{k}: {spec_literal(i)}" for k, i in v.fields.items()) + "}"
    return str(v)


def type_name(v) -> str:
    if isinstance(v, bool):
        return "a bool"
    if isinstance(v, int):
        return "an int"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if v is None:
        return "none"
    if isinstance(v, Tensor):
        return "a tensor"
    if isinstance(v, list):
        return "a list of tensors" if v and all(isinstance(t, Tensor) for t in v) else "a list"
    if isinstance(v, BlockRef):
        return "a fn" if isinstance(v.defn, ast.FnDef) else "a block"
    if isinstance(v, Record):
        return "a record"
    return type(v).__name__


class Scope:
    """Names visible while evaluating one block instance (or def, or constant)."""

    def __init__(self, file, instance: Optional[Instance] = None):
        self.file = file
        self.instance = instance
        self.vars: dict = {}
        self.layer_name = None  # in a def: the name its layer gets
        self.site_span = None  # in a def: where it is used, where its layer's errors are reported
        self.training = False  # inside `if training { ... }`
        self.training_only: dict = {}  # names assigned under `if training` -> where

    def derive(self, **changes) -> "Scope":
        """The same names (shared, not copied) with some fields changed."""
        out = copy.copy(self)
        out.__dict__.update(changes)
        return out


class Evaluator:
    """Evaluates expressions in a `Scope`; errors are `SpecError`s at the expression's span."""

    def __init__(self, loader):
        self.loader = loader
        self.constants: dict = {}  # id(Assign) -> value
        self._evaluating: set = set()
        self.iterations = 0
        self.call_depth = 0  # calls of fns under way
        self._sizes: dict = {}  # id -> (value, size) of the larger values measured, to measure each once

    # ---------------------------------------------------------------- errors and lookups

    def _err(self, message, span, file=None, hint=None, notes=()):
        return SpecError(message, span, hint=hint, source=self._source(span, file), notes=notes)


    def _source(self, span, file=None):
        if file is not None and span is not None and file.path == span.path:
            return file.text
        for f in self.loader.files.values():
            if span is not None and f.path == span.path:
                return f.text
        return None

    # ---------------------------------------------------------------- expressions

    def eval(self, e, scope: Scope):
        method = getattr(self, "_eval_" + type(e).__name__)
        return method(e, scope)


    def _eval_Literal(self, e, scope):
        return e.value


    def _eval_Name(self, e, scope):
        if e.id in scope.vars:
            if e.id in scope.training_only and not scope.training:
                raise self._err(f"`{e.id}` is assigned only in training, so only `if training` can read it", e.span,
                                scope.file, notes=[("assigned here", scope.training_only[e.id])],
                                hint="read it under `if training { ... }`, or assign it in both modes")
            return scope.vars[e.id]
        if e.id == "training" and scope.instance is not None:
            raise self._err("`training` is the module's mode, known only when it runs: it is a condition on its own, "
                            "`if training { ... }`", e.span, scope.file,
                            hint="nest a condition on other values around it: `if aux { if training { ... } }`")
        if e.id in scope.file.scope:
            defn = scope.file.scope[e.id]
            if isinstance(defn, ast.Assign):
                return self._constant(defn)
            return BlockRef(defn)
        if e.id in PRIMITIVES:
            return BlockRef(PRIMITIVES[e.id])
        candidates = list(scope.vars) + list(scope.file.scope)
        raise self._err(f"unknown name `{e.id}`", e.span, scope.file,
                        hint=_literal_hint(e.id) or did_you_mean(e.id, candidates))


    def _constant(self, assign):
        key = id(assign)
        if key not in self.constants:
            if key in self._evaluating:
                raise self._err(f"constant `{assign.target}` depends on itself", assign.span, assign.file)
            self._evaluating.add(key)
            value = self.eval(assign.value, Scope(assign.file))
            if isinstance(value, Tensor) or has_tensor(value):
                raise self._err("a top-level constant cannot be a tensor", assign.span, assign.file)
            self.constants[key] = value
            self._evaluating.discard(key)
        return self.constants[key]


    def _eval_ListExpr(self, e, scope):
        return self._check_size([self.eval(i, scope) for i in e.items], e.span, scope)


    def _check_size(self, value, span, scope):
        """`value`, if its size (see `value_size`) is within the limit: a list of lists can double
        in each line of a spec, so a size counts everything nested, shared or not."""
        if value_size(value, self._sizes) > limits.current().value_size:
            raise self._too_large(span, scope)
        return value


    def _too_large(self, span, scope):
        most = limits.current().value_size
        return self._err(f"the value has more than {most:,} items and characters in all", span, scope.file,
                         hint=limits.hint("value_size"))


    def _eval_ListComp(self, e, scope):
        """`[item for a in xs for b in ys if c]`: its variables are local to it."""
        names = {n for c in e.clauses if isinstance(c, ast.CompFor) for n in target_names(c.target)}
        saved = {n: scope.vars.get(n, MISSING) for n in names}
        out = []
        try:
            self._comprehend(e, 0, scope, out, [0])
        finally:
            for n, v in saved.items():
                if v is MISSING:
                    scope.vars.pop(n, None)
                else:
                    scope.vars[n] = v
        return self._check_size(out, e.span, scope)


    def _comprehend(self, e, index, scope, out, total):
        if index == len(e.clauses):
            item = self.eval(e.item, scope)
            out.append(item)
            total[0] += 1 + value_size(item, self._sizes)  # as it grows: its items may be large lists
            if total[0] > limits.current().value_size:
                raise self._too_large(e.span, scope)
            return
        clause = e.clauses[index]
        if isinstance(clause, ast.CompIf):
            if self._truth(self.eval(clause.cond, scope), clause.cond.span, scope):
                self._comprehend(e, index + 1, scope, out, total)
            return
        for v in self._iterable(clause.iterable, scope):
            self._bind_target(clause.target, v, clause.span, scope)
            self._comprehend(e, index + 1, scope, out, total)


    def _bind_target(self, target, value, span, scope):
        """Assign `value` to a name, or unpack it into a (nested) list of targets."""
        if isinstance(target, str):
            scope.vars[target] = value
            if scope.training:
                scope.training_only[target] = span
            else:
                scope.training_only.pop(target, None)
            return
        if not isinstance(value, list):
            raise self._err(f"cannot unpack {type_name(value)} into {len(target)} names", span, scope.file)
        if len(value) != len(target):
            raise self._err(f"cannot unpack {len(value)} value{'s' if len(value) != 1 else ''} into "
                            f"{len(target)} names", span, scope.file)
        for t, v in zip(target, value):
            self._bind_target(t, v, span, scope)


    def _assign(self, s, scope):
        """An assignment (`a = ...`) or an unpacking (`a, b = ...`); gives the value assigned."""
        value = self.eval(s.value, scope)
        self._bind_target(s.target if isinstance(s, ast.Assign) else s.targets, value, s.span, scope)
        return value


    def _iterable(self, e, scope):
        value = self.eval(e, scope)
        if not isinstance(value, list):
            raise self._err(f"cannot loop over {type_name(value)}", e.span, scope.file)
        self.iterations += len(value)
        most = limits.current().loop_iterations
        if self.iterations > most:
            raise self._err(f"the loops of this model run more than {most:,} times", e.span, scope.file,
                            hint=limits.hint("loop_iterations"))
        return value


    def _eval_BinOp(self, e, scope):
        left, right = self.eval(e.left, scope), self.eval(e.right, scope)
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            return self._tensor_op(e.op, left, right, e.span, scope)
        return self._scalar_op(e.op, left, right, e.span, scope)


    def _tensor_op(self, op, left, right, span, scope):
        """`a + b`, `x * 0.5`, `1 - x`, `x ** 2`: the primitives add, sub, mul, div and pow."""
        names = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
        tensor_first = isinstance(left, Tensor)
        other = right if tensor_first else left
        if op == "**" and tensor_first and is_number(other):
            return self._functional("pow", [left], {"exponent": other}, span, scope)
        if op == "@" and isinstance(left, Tensor) and isinstance(right, Tensor):
            return self._functional("matmul", [left, right], {}, span, scope)
        if op in names and isinstance(left, Tensor) and isinstance(right, Tensor):
            return self._functional(names[op], [left, right], {}, span, scope)
        if op in names and is_number(other):
            if not math.isfinite(other):
                raise self._err(f"a tensor cannot be combined with {other}", span, scope.file)
            tensor = left if tensor_first else right
            return self._functional(names[op], [tensor], {"scalar": other, "scalar_first": not tensor_first},
                                    span, scope)
        raise self._err(f"`{op}` cannot combine {type_name(left)} and {type_name(right)}", span, scope.file,
                        hint="tensors combine with tensors and numbers by `+`, `-`, `*` and `/`, `t ** n` "
                             "raises a tensor to a number, and `a @ b` multiplies matrices")


    def _scalar_op(self, op, left, right, span, scope):
        result = self._scalar_value(op, left, right, span, scope)
        if isinstance(result, (list, str)):
            self._check_size(result, span, scope)
        if is_int(result) and abs(result) >= MAX_INT:
            raise self._err("the result is too large a number", span, scope.file)
        return result


    def _scalar_value(self, op, left, right, span, scope):
        for v in (left, right):
            if isinstance(v, BlockRef):
                raise self._err(f"`{op}` cannot be applied to the block `{v}`", span, scope.file)
        try:
            if op == "+":
                return left + right
            if op == "-":
                return left - right
            if op == "*":
                if isinstance(left, (list, str)) or isinstance(right, (list, str)):
                    items, n = (left, right) if isinstance(left, (list, str)) else (right, left)
                    if is_int(n) and len(items) * n > limits.current().value_size:
                        raise ValueError(f"the result has more than {limits.current().value_size:,} items")
                return left * right
            if op == "/":
                return left / right
            if op == "//":
                return left // right
            if op == "%":
                return left % right
            if op == "**":
                if is_number(right) and abs(right) > 64:
                    raise ValueError("the exponent is too large")
                return left ** right
            if op == "@":
                raise ValueError("`@` multiplies matrices: both sides must be tensors")
            if op == "==":
                return left == right
            if op == "!=":
                return left != right
            return {"<": lambda: left < right, "<=": lambda: left <= right,
                    ">": lambda: left > right, ">=": lambda: left >= right}[op]()
        except ZeroDivisionError:
            raise self._err("division by zero", span, scope.file) from None
        except (TypeError, ValueError, OverflowError) as err:
            detail = str(err) if isinstance(err, ValueError) else ""
            raise self._err(detail or f"`{op}` cannot combine {type_name(left)} and {type_name(right)}",
                            span, scope.file) from None


    def _eval_UnaryOp(self, e, scope):
        v = self.eval(e.operand, scope)
        if e.op == "not":
            return not self._truth(v, e.operand.span, scope)
        if isinstance(v, Tensor):
            return self._functional("neg", [v], {}, e.span, scope)
        if not is_number(v):
            raise self._err(f"cannot negate {type_name(v)}", e.span, scope.file)
        return -v


    def _truth(self, v, span, scope):
        if isinstance(v, (Tensor, BlockRef)) or has_tensor(v):
            raise self._err(f"{type_name(v)} is not a condition", span, scope.file)
        return bool(v)


    def _eval_BoolOp(self, e, scope):
        left = self._truth(self.eval(e.left, scope), e.left.span, scope)
        if e.op == "and" and not left:
            return False
        if e.op == "or" and left:
            return True
        return self._truth(self.eval(e.right, scope), e.right.span, scope)


    def _eval_Ternary(self, e, scope):
        if self._truth(self.eval(e.cond, scope), e.cond.span, scope):
            return self.eval(e.then, scope)
        return self.eval(e.orelse, scope)


    def _eval_Index(self, e, scope):
        target, index = self.eval(e.target, scope), self.eval(e.index, scope)
        if not isinstance(target, (list, str)):
            raise self._err(f"cannot index {type_name(target)}", e.target.span, scope.file)
        if not is_int(index):
            raise self._err(f"an index must be an int, not {type_name(index)}", e.index.span, scope.file)
        if not -len(target) <= index < len(target):
            raise self._err(f"index {index} is out of range for {type_name(target)} of length {len(target)}",
                            e.index.span, scope.file)
        return target[index]


    def _eval_Slice(self, e, scope):
        target = self.eval(e.target, scope)
        if not isinstance(target, (list, str)):
            raise self._err(f"cannot slice {type_name(target)}", e.target.span, scope.file)
        bounds = []
        for b in (e.start, e.stop):
            v = None if b is None else self.eval(b, scope)
            if v is not None and not is_int(v):
                raise self._err(f"a slice bound must be an int, not {type_name(v)}", b.span, scope.file)
            bounds.append(v)
        return target[bounds[0]:bounds[1]]


    def _eval_Record(self, e, scope):
        fields = {}
        for name, expr in e.fields:
            value = self.eval(expr, scope)
            if isinstance(value, Tensor) or has_tensor(value):
                raise self._err("a record holds values, not tensors", expr.span, scope.file)
            fields[name] = value
        return self._check_size(Record(fields), e.span, scope)


    def _eval_Attr(self, e, scope):
        if (isinstance(e.target, ast.Name) and e.target.id in TORCH_MODULES and e.target.id not in scope.vars
                and e.target.id not in scope.file.scope):
            suggestion = primitive_named(e.name)
            raise self._err(f"`{e.target.id}.{e.name}` is a PyTorch name; layers are the language's primitives",
                            e.span, scope.file, hint=f"did you mean `{suggestion}`?" if suggestion
                            else "docs/language.md section 9 lists the primitives")
        target = self.eval(e.target, scope)
        if isinstance(target, Record):
            if e.name not in target.fields:
                raise self._err(f"the record has no field `{e.name}`", e.span, scope.file,
                                hint=did_you_mean(e.name, target.fields) or
                                f"its fields are {', '.join(target.fields) or 'none'}")
            return target.fields[e.name]
        if not isinstance(target, Tensor):
            raise self._err(f"{type_name(target)} has no attribute `{e.name}`", e.span, scope.file)
        shape = target.shape
        if e.name == "shape":
            return list(shape)
        if e.name == "channels":
            return shape[0]
        if e.name in ("height", "width"):
            if len(shape) != 3:
                raise self._err(f"a tensor of shape {fmt_shape(shape)} has no {e.name}", e.span, scope.file)
            return shape[1] if e.name == "height" else shape[2]
        raise self._err(f"a tensor has no attribute `{e.name}`", e.span, scope.file,
                        hint=did_you_mean(e.name, TENSOR_ATTRS) or "tensors have channels, height, width and shape")


    def _eval_Pipe(self, e, scope):
        source = self.eval(e.source, scope)
        if not isinstance(source, Tensor) and not (isinstance(source, list) and source
                                                   and all(isinstance(t, Tensor) for t in source)):
            raise self._err(f"`|` sends a tensor into a layer, but this is {type_name(source)}", e.source.span,
                            scope.file)
        return self._apply_item(e.layer, source, scope)


    def _eval_Seq(self, e, scope):
        raise self._err("a `seq` is a layer: apply it to a tensor with `|`", e.span, scope.file)


    def _eval_Call(self, e, scope):
        name = e.func
        inst = scope.instance
        declared = find_layer(inst, name) if inst is not None and name not in scope.vars else None
        if declared is not None:
            inputs = [self.eval(a.value, scope) for a in e.args]
            if len(inputs) != 1 or not isinstance(inputs[0], Tensor) or any(a.name for a in e.args):
                raise self._err(f"`{name}` is a layer: call it with one tensor, `{name}(x)`", e.span, scope.file)
            return self._apply_layer(declared, inputs[0], e.span, scope)
        if name in scope.vars:
            value = scope.vars[name]
            if isinstance(value, BlockRef) and isinstance(value.defn, ast.BlockDef):
                raise self._err(f"blocks are applied with `|`: write `x | name: {name}(...)`", e.span, scope.file)
            raise self._err(f"`{name}` is {type_name(value)}, not something to call", e.func_span, scope.file)
        if name in scope.file.scope:
            defn = scope.file.scope[name]
            if isinstance(defn, ast.FnDef):
                return self._call_fn(defn, e, scope)
            if isinstance(defn, ast.Assign):
                raise self._err(f"`{name}` is a constant, not something to call", e.func_span, scope.file)
            raise self._err(f"`{name}` is a layer definition: apply it with `|`, as in `x | name: {name}(...)`",
                            e.span, scope.file)
        if name in BUILTINS:
            values = [self.eval(a.value, scope) for a in e.args]
            if name in PRIMITIVES and values and isinstance(values[0], Tensor):  # `sqrt(x)` of a tensor
                return self._call_primitive(PRIMITIVES[name], e, scope, values)
            return self._call_builtin(BUILTINS[name], e, scope, values)
        if name in PRIMITIVES:
            return self._call_primitive(PRIMITIVES[name], e, scope)
        raise self._err(f"unknown function `{name}`", e.func_span, scope.file,
                        hint=_function_hint(name, list(scope.vars) + list(scope.file.scope)))


    def _call_fn(self, defn, e, scope):
        args = self._eval_args(e.args, scope)
        for _, value, span, _ in args:
            if isinstance(value, Tensor) or has_tensor(value):
                raise self._err(f"`{defn.name}` is a fn: it computes a value, and cannot take {type_name(value)}",
                                span, scope.file)
        return self.call_fn(defn, args, e.span, scope)


    def refusal(self, s: "ast.Fail", scope, hint=None) -> SpecError:
        """The error an `error(message)` statement, or a failed `assert`, raises: the spec's message, located."""
        message = "".join(p if isinstance(p, str) else format_value(self.eval(p, scope)) for p in s.parts)
        return self._err(message, s.span, scope.file, hint=hint)

    def call_fn(self, defn, args, span, caller: Scope):
        """The value a fn returns for evaluated args [(name|None, value, span, expr)]."""
        if self.call_depth >= limits.current().call_depth:
            raise self._err(f"calls of fns nest more than {limits.current().call_depth} deep", span, caller.file,
                            hint=f"does `{defn.name}` call itself without end?")
        bound = self._bind(f"`{defn.name}`", self._param_defaults(defn), args, span, caller)
        inner = Scope(defn.file)
        self._bind_params(defn, bound, inner, span, caller)
        self.call_depth += 1
        try:
            result = self._run_fn_body(defn.body, inner)
        finally:
            self.call_depth -= 1
        if result is MISSING:
            raise self._err(f"fn `{defn.name}` ends without `return`", defn.span, defn.file,
                            notes=[("called here", span)])
        return result


    def _run_fn_body(self, stmts, scope):
        """Run a fn's statements: the value of the first `return` reached, else MISSING."""
        for s in stmts:
            result = MISSING
            if isinstance(s, ast.Return):
                return self.eval(s.value, scope)
            if isinstance(s, (ast.Assign, ast.Unpack)):
                self._assign(s, scope)
            elif isinstance(s, ast.Assert):
                self.check_assert(s, scope)
            elif isinstance(s, ast.If):
                result = self._run_fn_body(self._branch(s, scope), scope)
            elif isinstance(s, ast.Fail):
                raise self.refusal(s, scope)
            elif isinstance(s, ast.For):
                for v in self._iterable(s.iterable, scope):
                    self._bind_target(s.var, v, s.span, scope)
                    result = self._run_fn_body(s.body, scope)
                    if result is not MISSING:
                        break
            else:
                raise self._err("a fn computes a value: it has no layers", s.span, scope.file)
            if result is not MISSING:
                return result
        return MISSING

    # ---------------------------------------------------------------- checking what nothing uses

    def check_definitions(self, file):
        """Evaluate every constant of `file` and check the names its fns use, used or not."""
        for constant in file.constants:
            self._constant(constant)
        for defn in file.fns.values():
            self._check_fn(defn)
        for defn in list(file.blocks.values()) + list(file.layer_defs.values()):
            self._check_defaults(defn)


    def _check_fn(self, defn):
        local = {p.name for p in defn.params}
        for node in walk(defn.body):
            if isinstance(node, ast.Assign):
                local.add(node.target)
            elif isinstance(node, ast.Unpack):
                local |= target_names(node.targets)
            elif isinstance(node, (ast.For, ast.CompFor)):
                local |= target_names(node.var if isinstance(node, ast.For) else node.target)
        self._check_names([defn.body, [p.default for p in defn.params]],
                          local | set(defn.file.scope) | set(PRIMITIVES), defn.file)


    def _check_names(self, nodes, known, file):
        for node in walk(nodes):
            if isinstance(node, ast.Name) and node.id not in known:
                raise self._err(f"unknown name `{node.id}`", node.span, file,
                                hint=_literal_hint(node.id) or did_you_mean(node.id, known))
            if isinstance(node, ast.Call) and node.func not in known and node.func not in BUILTINS:
                raise self._err(f"unknown function `{node.func}`", node.func_span, file,
                                hint=_function_hint(node.func, list(known)))


    def _check_defaults(self, defn):
        """The names in a block's or def's defaults are known, whether or not a call leaves one to its default."""
        defaults = [p.default for p in defn.params if p.default is not None]
        local = {p.name for p in defn.params} | {n for node in walk(defaults) if isinstance(node, ast.CompFor)
                                                 for n in target_names(node.target)}
        self._check_names(defaults, local | set(defn.file.scope) | set(PRIMITIVES), defn.file)


    def _call_builtin(self, b, e, scope, values):
        if any(a.name for a in e.args):
            raise self._err(f"`{b.name}` takes no keyword arguments", e.span, scope.file)
        lo, hi = b.arity
        if not lo <= len(values) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise self._err(f"`{b.name}` takes {want} argument{'s' if hi > 1 else ''}, got {len(values)}", e.span,
                            scope.file)
        for v, a in zip(values, e.args):
            if isinstance(v, (Tensor, BlockRef)) or has_tensor(v):
                raise self._err(f"`{b.name}` cannot take {type_name(v)}", a.span, scope.file)
        try:
            result = b.fn(*values)
        except (TypeError, ValueError, OverflowError) as err:
            raise self._err(f"`{b.name}`: {err}", e.span, scope.file) from None
        if is_int(result) and abs(result) >= MAX_INT:
            raise self._err("the result is too large a number", e.span, scope.file)
        return self._check_size(result, e.span, scope)


    def _call_primitive(self, prim, e, scope, values=None):
        """`relu(x)`, `add(a, b)`, `concat(xs)`: a primitive applied in an expression, with no module.
        `values`: the arguments, where they are evaluated already."""
        tensors, rest = [], []
        if values is None:
            values = [self.eval(a.value, scope) for a in e.args]
        for a, v in zip(e.args, values):
            is_tensors = isinstance(v, Tensor) or (isinstance(v, list) and v and all(isinstance(t, Tensor) for t in v))
            if a.name is None and is_tensors and not rest:
                tensors.extend(v if isinstance(v, list) else [v])
            else:
                if isinstance(v, Tensor) or has_tensor(v):
                    raise self._err(f"tensors go first in a call of `{prim.name}`", a.span, scope.file)
                rest.append((a.name, v, a.span, a.value))
        if not tensors:
            raise self._err(f"`{prim.name}` needs a tensor to work on; apply it with `|` or pass the tensor first",
                            e.span, scope.file)
        if prim.inputs != "many" and len(tensors) > 1:
            raise self._err(f"`{prim.name}` takes one tensor, got {len(tensors)}", e.span, scope.file)
        attrs = self._bind_primitive(prim, rest, e, scope)
        return self._functional(prim.name, tensors, attrs, e.span, scope)

    # ---------------------------------------------------------------- argument binding

    def _eval_args(self, args, scope):
        return [(a.name, self.eval(a.value, scope), a.span, a.value) for a in args]


    def _bind(self, what, params, args, call_span, scope, inferred=None):
        """Match evaluated args [(name|None, value, span, expr)] to params [(name, default)] -> {name: (value, expr)}.
        `inferred` maps what the callee takes from its input, which no argument may give, to the dimension."""
        inferred = inferred or {}
        names = [p[0] for p in params]
        order = f"{what} takes, in order: {', '.join(names)}" if names else f"{what} takes no arguments"
        if inferred:
            order += f" (`{'`, `'.join(inferred)}` is inferred from its input)"
        bound = {}
        positional = [a for a in args if a[0] is None]
        if len(positional) > len(params):
            extra = positional[len(params)]
            raise self._err(f"{what} takes at most {len(params)} argument{'s' if len(params) != 1 else ''}, "
                            f"got {len(positional)}", extra[2] or call_span, scope.file, hint=order)
        for (name, default), arg in zip(params, positional):
            bound[name] = (arg[1], arg[3])
        for name, value, span, expr in (a for a in args if a[0] is not None):
            if name in inferred:
                where = "channels" if inferred[name] == 0 else "last dimension"
                raise self._err(f"`{name}` of {what} is inferred from its input's {where}; drop it",
                                span or call_span, scope.file)
            if name not in names:
                raise self._err(f"{what} has no parameter `{name}`", span or call_span, scope.file,
                                hint=did_you_mean(name, names))
            if name in bound:
                position = names.index(name) + 1
                raise self._err(f"{what} got `{name}` twice: as argument {position} and by name",
                                span or call_span, scope.file, hint=order)
            bound[name] = (value, expr)
        return bound


    def _bind_primitive(self, prim, args, e, scope):
        params = [(p.name, p.default) for p in prim.user_params]
        bound = self._bind(f"`{prim.name}`", params, args, e.span, scope, inferred=dict(prim.inferred))
        attrs = {}
        for p in prim.user_params:
            if p.name in bound:
                value, expr = bound[p.name]
                span = expr.span if expr is not None else e.span
                attrs[p.name] = self._check_kind(prim, p, value, span, scope)
            elif p.default is REQUIRED:
                raise self._err(f"`{prim.name}` needs `{p.name}`", e.span, scope.file)
            else:
                attrs[p.name] = p.default
        return attrs


    def _check_kind(self, prim, p, value, span, scope):
        def ints(v, n=None):
            return isinstance(v, list) and all(map(is_int, v)) and (n is None or len(v) == n)
        ok = {
            "int": is_int(value),
            "dim": is_int(value),
            "float": is_number(value),
            "number": is_number(value),
            "bool": isinstance(value, bool),
            "pair": is_int(value) or ints(value, 2),
            "ints": ints(value),
            "dims": is_int(value) or (ints(value) and len(value) > 0),
            "sizes": ints(value) and len(value) > 0,
            "str": isinstance(value, str),
        }[p.kind]
        if value is None and p.default is None:
            return None
        if not ok:
            want = {"int": "an int", "dim": "an int (a torch dimension)", "float": "a number", "number": "a number",
                    "bool": "a bool (true/false)", "pair": "an int or a list of two ints", "ints": "a list of ints",
                    "dims": "an int or a list of ints", "sizes": "a non-empty list of ints",
                    "str": "a string"}[p.kind]
            raise self._err(f"`{p.name}` of `{prim.name}` must be {want}, not {type_name(value)}", span, scope.file)
        if p.kind in ("int", "pair", "ints"):
            least = p.least
            if min(value if isinstance(value, list) else [value], default=least) < least:
                what = "at least 0" if least == 0 else "positive"
                raise self._err(f"`{p.name}` of `{prim.name}` must be {what}, got {value}", span, scope.file)
        if p.kind in ("float", "number"):
            if not math.isfinite(value):
                raise self._err(f"`{p.name}` of `{prim.name}` must be a finite number, got {value}", span, scope.file)
            if p.kind == "float":
                value = float(value)
        if p.choices and value not in p.choices:
            raise self._err(f"`{p.name}` of `{prim.name}` must be one of {', '.join(map(repr, p.choices))}, "
                            f"not {value!r}", span, scope.file, hint=did_you_mean(value, p.choices))
        return value


    def _param_defaults(self, defn):
        return [(p.name, p.default) for p in defn.params]


    def _bind_params(self, defn, bound, inner: Scope, call_span, caller: Scope):
        for p in defn.params:
            if p.name in bound:
                value, _ = bound[p.name]
            elif p.default is not None:
                value = self.eval(p.default, inner)
            else:
                raise self._err(f"`{defn.name}` needs `{p.name}`", call_span, caller.file,
                                notes=[(f"`{defn.name}` is defined here", defn.span)])
            inner.vars[p.name] = value


    def check_assert(self, s: ast.Assert, scope):
        """`assert cond, "message"`: the message as an error at `cond` where it does not hold, with the
        values of the names it reads."""
        if self._truth(self.eval(s.cond, scope), s.cond.span, scope):
            return
        values = [f"`{n}` is {spec_literal(scope.vars[n])}" for n in sorted(names_in(s.cond))
                  if n in scope.vars and not isinstance(scope.vars[n], Tensor) and not has_tensor(scope.vars[n])]
        raise self.refusal(s.failure, scope, hint="here " + ", ".join(values) if values else None)


    def _branch(self, s: ast.If, scope):
        """The body of the branch whose condition holds (the `else`, or nothing, if none does)."""
        for cond, body in s.branches:
            if self._truth(self.eval(cond, scope), cond.span, scope):
                return body
        return s.orelse or []


MISSING = object()


def find_layer(inst, name):
    return None if inst is None else inst.named.get(name)


def target_names(target) -> set:
    """The names a loop or unpacking target assigns."""
    if isinstance(target, str):
        return {target}
    return set().union(*[target_names(t) for t in target])


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def has_tensor(v):
    """Whether the list `v` holds a tensor at any depth; a list met again is not searched again."""
    if not isinstance(v, list):
        return False
    seen, stack = set(), [v]
    while stack:
        items = stack.pop()
        for i in items:
            if isinstance(i, Tensor):
                return True
            if isinstance(i, list) and id(i) not in seen:
                seen.add(id(i))
                stack.append(i)
    return False


def value_size(value, known: dict) -> int:
    """How many items, characters and record fields `value` holds, counting what it nests as often as
    it appears (what printing it or looping through it would meet). Each list is looked at once, however
    often it is shared; `known` keeps the sizes of the larger ones between calls."""
    sizes: dict = {}  # id -> size of the lists and records measured in this call

    def items_of(v):
        return v.fields.values() if isinstance(v, Record) else v if isinstance(v, list) else None

    def measured(v):
        if id(v) in sizes:
            return sizes[id(v)]
        hit = known.get(id(v))
        return hit[1] if hit is not None and hit[0] is v else None

    def size(v):
        return len(v) if isinstance(v, str) else 1 if items_of(v) is None else measured(v)

    stack = [(value, False)]
    while stack:  # after the values a list holds, the list
        v, opened = stack.pop()
        items = items_of(v)
        if items is None or (not opened and measured(v) is not None):
            continue
        if opened:
            sizes[id(v)] = len(items) + sum(size(i) for i in items)
            if len(items) >= 16:
                known[id(v)] = (v, sizes[id(v)])
            continue
        stack.append((v, True))
        stack.extend((i, False) for i in items if items_of(i) is not None and measured(i) is None)
    return size(value)


def evaluate(text: str):
    """The value of one .arch expression that needs no block, e.g. `[64, 128] * 2`."""
    from .loader import Loader
    loader = Loader()
    file = loader.load_text(f"value = {text}\n", "<value>")
    value = Evaluator(loader)._constant(file.constants[0])
    if isinstance(value, BlockRef):
        raise SpecError(f"`{text}` is a block, not a value")
    return value
