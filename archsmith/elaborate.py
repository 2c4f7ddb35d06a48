"""Elaboration: evaluate a model's parameters, loops, conditionals and block instances into a tree of
`ir.Instance`s over one networkx graph of primitive ops, inferring every shape as it goes (blocks may
read their input's shape, so shapes are known while the graph is built).

Spec text is evaluated here by walking the syntax tree; nothing is handed to Python's eval."""
from __future__ import annotations

import copy
import keyword
import math
from dataclasses import dataclass
from typing import Optional

import networkx as nx

from . import ast
from .errors import SpecError, did_you_mean
from .ir import Instance, Layer, Model, Step, Tensor
from .primitives import PRIMITIVES, REQUIRED, ShapeError, fmt_shape

MAX_NODES = 200_000
MAX_RANGE = 100_000
MAX_DEPTH = 64
MAX_ITERATIONS = 1_000_000  # loop iterations in one model: a spec cannot make the compiler hang
MAX_LENGTH = 1_000_000  # items in a list or characters in a string
MAX_INT = 2 ** 63

# Attributes of nn.Module (torch 2.13: its methods and what its constructor sets) that a submodule
# name would shadow; kept here so that checking a spec needs no torch.
RESERVED_LAYER_NAMES = frozenset("""
T_destination _apply _backward_hooks _backward_pre_hooks _buffers _call_impl _compiled_call_impl
_forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks
_forward_pre_hooks_with_kwargs _get_backward_hooks _get_backward_pre_hooks _get_name
_is_full_backward_hook _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
_maybe_warn_non_full_backward_hook _modules _named_members _non_persistent_buffers_set _parameters
_register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel
_save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version
_wrapped_call_impl add_module apply bfloat16 buffers call_super_init children compile cpu cuda
double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
get_submodule half ipu load_state_dict modules mtia named_buffers named_children named_modules
named_parameters parameters register_backward_hook register_buffer register_forward_hook
register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_
set_extra_state set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
""".split())
TENSOR_ATTRS = ("channels", "height", "width", "shape")


@dataclass(frozen=True)
class BlockRef:
    """A block or layer definition used as a value, e.g. ResNet's `block` parameter."""
    defn: object

    def __repr__(self):
        return self.defn.name


class Builtin:
    def __init__(self, name, fn, arity):
        self.name, self.fn, self.arity = name, fn, arity


def _range(*a):
    r = range(*a)
    if len(r) > MAX_RANGE:
        raise ValueError(f"range of {len(r)} items is larger than the limit of {MAX_RANGE}")
    return list(r)


BUILTINS = {b.name: b for b in [
    Builtin("range", _range, (1, 3)), Builtin("len", len, (1, 1)), Builtin("sum", sum, (1, 1)),
    Builtin("min", min, (1, 99)), Builtin("max", max, (1, 99)), Builtin("abs", abs, (1, 1)),
    Builtin("round", round, (1, 2)), Builtin("int", int, (1, 1)), Builtin("float", float, (1, 1)),
    Builtin("str", lambda v: _format(v), (1, 1)), Builtin("ceil", math.ceil, (1, 1)),
    Builtin("floor", math.floor, (1, 1)), Builtin("sqrt", math.sqrt, (1, 1)),
]}


def _format(v):
    if isinstance(v, bool):
        return "true" if v else "false"
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
        return "a block"
    return type(v).__name__


class Scope:
    """Names visible while evaluating one block instance (or def, or constant)."""

    def __init__(self, file, instance: Optional[Instance] = None):
        self.file = file
        self.instance = instance
        self.vars: dict = {}
        self.layer_name = None  # in a def: the name its layer gets
        self.site_span = None  # in a def: where it is used, where its layer's errors are reported

    def derive(self, **changes) -> "Scope":
        """The same names (shared, not copied) with some fields changed."""
        out = copy.copy(self)
        out.__dict__.update(changes)
        return out


class Elaborator:
    def __init__(self, loader):
        self.loader = loader
        self.graph: nx.DiGraph = None
        self.stack: list = []  # block definitions being instantiated, to catch recursion
        self.constants: dict = {}  # id(Assign) -> value
        self._evaluating: set = set()
        self.iterations = 0

    # ---------------------------------------------------------------- entry point

    def elaborate(self, model: ast.ModelDef, overrides: dict, input_shape: Optional[list] = None,
                  input_channels: Optional[int] = None) -> Model:
        """`input_shape` replaces the declared input shape; `input_channels` just its first dimension."""
        self.graph = nx.DiGraph()
        file = model.file
        defn = self._lookup_definition(model.block, model.block_span, file)
        if not isinstance(defn, ast.BlockDef):
            raise self._err(f"`{model.block}` is not a block", model.block_span, file)
        scope = Scope(file)
        given = input_shape is not None
        if not given:
            input_shape = self.eval(model.input, scope)
        if not (isinstance(input_shape, (list, tuple)) and input_shape
                and all(_is_int(d) and d > 0 for d in input_shape)):
            message = f"the input shape must be a list of positive ints, like [3, 224, 224], not {input_shape!r}"
            raise self._err(message, None if given else model.input.span, file)
        input_shape = tuple(input_shape)
        if input_channels is not None:
            input_shape = (input_channels,) + input_shape[1:]
        node = self._add_node("input", {}, [], input_shape, model.span, "", None)
        x = Tensor(node, 0, input_shape)
        args = self._eval_args(model.args, scope)
        names = [p.name for p in defn.params]
        for name, value in overrides.items():
            given = [i for i, a in enumerate(args)
                     if a[0] == name or (a[0] is None and i < len(names) and names[i] == name)]
            if given:  # an override replaces what the model line passes
                i = given[0]
                args[i] = (args[i][0], value, args[i][2], None)
            else:
                args.append((name, value, None, None))
        root = self._instantiate(defn, args, x, "", model.span, scope)
        self._add_node("output", {}, [root.output], root.output.shape, model.span, "", None)
        return Model(model.name, model, root, self.graph, input_shape, root.output.shape, root.params, self)

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

    def _lookup_definition(self, name, span, file):
        if name in file.scope:
            return file.scope[name]
        candidates = list(file.scope) + list(PRIMITIVES) + list(BUILTINS)
        raise self._err(f"unknown name `{name}`", span, file, hint=did_you_mean(name, candidates))

    # ---------------------------------------------------------------- graph

    def _add_node(self, op, attrs, inputs, shape, span, scope_path, module_path):
        n = self.graph.number_of_nodes()
        if n >= MAX_NODES:
            raise self._err(f"the model has more than {MAX_NODES} ops; is a loop too long?", span)
        self.graph.add_node(n, op=op, attrs=dict(attrs), span=span, scope=scope_path, module=module_path,
                            shape=shape, inputs=[t.key for t in inputs])
        for i, t in enumerate(inputs):
            if self.graph.has_edge(t.node, n):
                self.graph.edges[t.node, n]["ports"].append(i)
            else:
                self.graph.add_edge(t.node, n, ports=[i], shape=t.shape)
        return n

    # ---------------------------------------------------------------- expressions

    def eval(self, e, scope: Scope):
        method = getattr(self, "_eval_" + type(e).__name__)
        return method(e, scope)

    def _eval_Literal(self, e, scope):
        return e.value

    def _eval_Name(self, e, scope):
        if e.id in scope.vars:
            return scope.vars[e.id]
        if e.id in scope.file.scope:
            defn = scope.file.scope[e.id]
            if isinstance(defn, ast.Assign):
                return self._constant(defn)
            return BlockRef(defn)
        if e.id in PRIMITIVES:
            return BlockRef(PRIMITIVES[e.id])
        candidates = list(scope.vars) + list(scope.file.scope)
        raise self._err(f"unknown name `{e.id}`", e.span, scope.file, hint=did_you_mean(e.id, candidates))

    def _constant(self, assign):
        key = id(assign)
        if key not in self.constants:
            if key in self._evaluating:
                raise self._err(f"constant `{assign.target}` depends on itself", assign.span, assign.file)
            self._evaluating.add(key)
            value = self.eval(assign.value, Scope(assign.file))
            if isinstance(value, Tensor) or _has_tensor(value):
                raise self._err("a top-level constant cannot be a tensor", assign.span, assign.file)
            self.constants[key] = value
            self._evaluating.discard(key)
        return self.constants[key]

    def _eval_ListExpr(self, e, scope):
        return [self.eval(i, scope) for i in e.items]

    def _eval_ListComp(self, e, scope):
        items = self._iterable(e.iterable, scope)
        saved = scope.vars.get(e.var, _MISSING), None
        out = []
        for v in items:
            scope.vars[e.var] = v
            out.append(self.eval(e.item, scope))
        if saved[0] is _MISSING:
            scope.vars.pop(e.var, None)
        else:
            scope.vars[e.var] = saved[0]
        return out

    def _iterable(self, e, scope):
        value = self.eval(e, scope)
        if not isinstance(value, list):
            raise self._err(f"cannot loop over {type_name(value)}", e.span, scope.file)
        self.iterations += len(value)
        if self.iterations > MAX_ITERATIONS:
            raise self._err(f"the loops of this model run more than {MAX_ITERATIONS:,} times", e.span, scope.file)
        return value

    def _eval_BinOp(self, e, scope):
        left, right = self.eval(e.left, scope), self.eval(e.right, scope)
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            if e.op in ("+", "*") and isinstance(left, Tensor) and isinstance(right, Tensor):
                return self._functional("add" if e.op == "+" else "mul", [left, right], {}, e.span, scope)
            raise self._err(f"`{e.op}` cannot combine {type_name(left)} and {type_name(right)}", e.span, scope.file,
                            hint="tensors combine with `+` (add) and `*` (mul)" if e.op in "+*" else None)
        return self._scalar_op(e.op, left, right, e.span, scope)

    def _scalar_op(self, op, left, right, span, scope):
        result = self._scalar_value(op, left, right, span, scope)
        if isinstance(result, (list, str)) and len(result) > MAX_LENGTH:
            raise self._err(f"the result has more than {MAX_LENGTH:,} items", span, scope.file)
        if _is_int(result) and abs(result) >= MAX_INT:
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
                    if _is_int(n) and len(items) * n > MAX_LENGTH:
                        raise ValueError(f"the result has more than {MAX_LENGTH:,} items")
                return left * right
            if op == "/":
                return left / right
            if op == "//":
                return left // right
            if op == "%":
                return left % right
            if op == "**":
                if _is_number(right) and abs(right) > 64:
                    raise ValueError("the exponent is too large")
                return left ** right
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
        if not _is_number(v):
            raise self._err(f"cannot negate {type_name(v)}", e.span, scope.file)
        return -v

    def _truth(self, v, span, scope):
        if isinstance(v, (Tensor, BlockRef)) or _has_tensor(v):
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
        if not _is_int(index):
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
            if v is not None and not _is_int(v):
                raise self._err(f"a slice bound must be an int, not {type_name(v)}", b.span, scope.file)
            bounds.append(v)
        return target[bounds[0]:bounds[1]]

    def _eval_Attr(self, e, scope):
        target = self.eval(e.target, scope)
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
        if not isinstance(source, Tensor):
            raise self._err(f"`|` sends a tensor into a layer, but this is {type_name(source)}", e.source.span,
                            scope.file)
        return self._apply_item(e.layer, source, scope)

    def _eval_Seq(self, e, scope):
        raise self._err("a `seq` is a layer: apply it to a tensor with `|`", e.span, scope.file)

    def _eval_Call(self, e, scope):
        name = e.func
        inst = scope.instance
        declared = _find_layer(inst, name) if inst is not None and name not in scope.vars else None
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
            if isinstance(defn, ast.Assign):
                raise self._err(f"`{name}` is a constant, not something to call", e.func_span, scope.file)
            raise self._err(f"`{name}` is a layer definition: apply it with `|`, as in `x | name: {name}(...)`",
                            e.span, scope.file)
        if name in BUILTINS:
            return self._call_builtin(BUILTINS[name], e, scope)
        if name in PRIMITIVES:
            return self._call_primitive(PRIMITIVES[name], e, scope)
        candidates = list(scope.vars) + list(scope.file.scope) + list(PRIMITIVES) + list(BUILTINS)
        raise self._err(f"unknown function `{name}`", e.func_span, scope.file, hint=did_you_mean(name, candidates))

    def _call_builtin(self, b, e, scope):
        if any(a.name for a in e.args):
            raise self._err(f"`{b.name}` takes no keyword arguments", e.span, scope.file)
        values = [self.eval(a.value, scope) for a in e.args]
        lo, hi = b.arity
        if not lo <= len(values) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise self._err(f"`{b.name}` takes {want} argument{'s' if hi > 1 else ''}, got {len(values)}", e.span,
                            scope.file)
        for v, a in zip(values, e.args):
            if isinstance(v, (Tensor, BlockRef)) or _has_tensor(v):
                raise self._err(f"`{b.name}` cannot take {type_name(v)}", a.span, scope.file)
        try:
            return b.fn(*values)
        except (TypeError, ValueError, OverflowError) as err:
            raise self._err(f"`{b.name}`: {err}", e.span, scope.file) from None

    def _call_primitive(self, prim, e, scope):
        """`relu(x)`, `add(a, b)`, `concat(xs)`: a primitive applied in an expression, with no module."""
        tensors, rest = [], []
        for a in e.args:
            v = self.eval(a.value, scope)
            is_tensors = isinstance(v, Tensor) or (isinstance(v, list) and v and all(isinstance(t, Tensor) for t in v))
            if a.name is None and is_tensors and not rest:
                tensors.extend(v if isinstance(v, list) else [v])
            else:
                if isinstance(v, Tensor) or _has_tensor(v):
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

    def _bind(self, what, params, args, call_span, scope):
        """Match evaluated args [(name|None, value, span, expr)] to params [(name, default)] -> {name: (value, expr)}."""
        names = [p[0] for p in params]
        bound = {}
        positional = [a for a in args if a[0] is None]
        if len(positional) > len(params):
            extra = positional[len(params)]
            raise self._err(f"{what} takes at most {len(params)} argument{'s' if len(params) != 1 else ''}, "
                            f"got {len(positional)}", extra[2] or call_span, scope.file)
        for (name, default), arg in zip(params, positional):
            bound[name] = (arg[1], arg[3])
        for name, value, span, expr in (a for a in args if a[0] is not None):
            if name not in names:
                raise self._err(f"{what} has no parameter `{name}`", span or call_span, scope.file,
                                hint=did_you_mean(name, names))
            if name in bound:
                raise self._err(f"{what} got `{name}` twice", span or call_span, scope.file)
            bound[name] = (value, expr)
        return bound

    def _bind_primitive(self, prim, args, e, scope):
        params = [(p.name, p.default) for p in prim.params]
        bound = self._bind(f"`{prim.name}`", params, args, e.span, scope)
        attrs = {}
        for p in prim.params:
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
        ok = {
            "int": _is_int(value),
            "float": _is_number(value),
            "bool": isinstance(value, bool),
            "pair": _is_int(value) or (isinstance(value, list) and len(value) == 2 and all(map(_is_int, value))),
            "ints": isinstance(value, list) and all(map(_is_int, value)),
            "str": isinstance(value, str),
        }[p.kind]
        if value is None and p.default is None:
            ok = True
        if not ok:
            want = {"int": "an int", "float": "a number", "bool": "a bool (true/false)",
                    "pair": "an int or a list of two ints", "ints": "a list of ints", "str": "a string"}[p.kind]
            raise self._err(f"`{p.name}` of `{prim.name}` must be {want}, not {type_name(value)}", span, scope.file)
        if p.kind in ("int", "pair") and value is not None:
            least = p.least
            if min(value if isinstance(value, list) else [value]) < least:
                what = "at least 0" if least == 0 else "positive"
                raise self._err(f"`{p.name}` of `{prim.name}` must be {what}, got {value}", span, scope.file)
        if p.kind == "float" and value is not None:
            value = float(value)
            if not math.isfinite(value):
                raise self._err(f"`{p.name}` of `{prim.name}` must be a finite number, got {value}", span, scope.file)
        return value

    # ---------------------------------------------------------------- layers

    def _apply_item(self, item: ast.LayerItem, x: Tensor, scope: Scope, seq: Optional[Layer] = None) -> Tensor:
        """Apply `name: target` (or a bare target) to x: in a block body, or as the next child of `seq`."""
        name = self._layer_name(item.name, scope) if item.name else scope.layer_name
        if item.name and seq is None and scope.instance is not None:
            existing = _find_layer(scope.instance, name)
            if existing is not None and not (isinstance(item.target, ast.Name) and item.target.id == name):
                raise self._err(f"a layer named `{name}` is already declared in `{scope.instance.block.name}`",
                                item.name.span, scope.file, notes=[("declared here", existing.span)])
        target = item.target
        if isinstance(target, ast.Name):
            existing = _find_layer(scope.instance, target.id) if seq is None and scope.instance else None
            if existing is not None and name is None and target.id not in scope.vars:
                return self._apply_layer(existing, x, target.span, scope)
            target = ast.Call(target.id, [], target.span, target.span)
        if isinstance(target, ast.Seq):
            return self._apply_seq(target, name, x, scope, seq, item.span)
        return self._apply_call(target, name, x, scope, seq, item)

    def _layer_name(self, ln: ast.LayerName, scope) -> str:
        name = ln.base
        if ln.suffix is not None:
            v = self.eval(ln.suffix, scope)
            if not (_is_int(v) or isinstance(v, str)):
                raise self._err(f"a layer name can interpolate an int or a string, not {type_name(v)}",
                                ln.suffix.span, scope.file)
            name += _format(v)
        if not name.isidentifier() or keyword.iskeyword(name):
            raise self._err(f"`{name}` is not a valid layer name", ln.span, scope.file)
        if name in RESERVED_LAYER_NAMES:
            raise self._err(f"a layer named `{name}` would hide nn.Module.{name}", ln.span, scope.file,
                            hint="choose another name")
        if name.startswith("__"):
            raise self._err(f"a layer named `{name}` would be renamed by Python inside the generated class "
                            f"(`self.{name}` is stored as `_ClassName{name}`), changing its checkpoint key",
                            ln.span, scope.file, hint="use at most one leading underscore")
        return name

    def _apply_call(self, call: ast.Call, name, x, scope, seq, item):
        fname = call.func
        if scope.instance is not None and seq is None and fname not in scope.vars:
            declared = _find_layer(scope.instance, fname)
            if declared is not None:
                raise self._err(f"`{fname}` is a layer already declared here; apply it again with `| {fname}`",
                                call.span, scope.file, notes=[("declared here", declared.span)])
        target = None
        shadowed = fname in scope.vars and not isinstance(scope.vars[fname], BlockRef)
        if fname in scope.vars and not shadowed:
            target = scope.vars[fname].defn
        elif fname in scope.file.scope:
            target = scope.file.scope[fname]
            if isinstance(target, ast.Assign):
                value = self._constant(target)
                if not isinstance(value, BlockRef):
                    raise self._err(f"`{fname}` is a constant, not a layer", call.func_span, scope.file)
                target = value.defn
        elif fname in PRIMITIVES:
            target = PRIMITIVES[fname]
        if target is None:
            if shadowed:
                raise self._err(f"`{fname}` is {type_name(scope.vars[fname])}, not a layer", call.func_span,
                                scope.file)
            if fname in BUILTINS:
                raise self._err(f"`{fname}` is a function of numbers, not a layer", call.func_span, scope.file)
            candidates = list(scope.vars) + list(scope.file.scope) + list(PRIMITIVES)
            if scope.instance is not None:
                candidates += [l.name for l in scope.instance.layers]
            raise self._err(f"unknown layer `{fname}`", call.func_span, scope.file,
                            hint=did_you_mean(fname, candidates))
        args = self._eval_args(call.args, scope)
        if isinstance(target, ast.LayerDef):
            return self._expand_def(target, args, name, x, scope, seq, call)
        if isinstance(target, ast.BlockDef):
            if name is None and seq is None:
                raise self._err(f"an instance of `{fname}` needs a name, which becomes its checkpoint key",
                                call.span, scope.file, hint=f"write `x | name: {fname}(...)`")
            name = self._child_name(name, seq, call.span, scope)
            path = self._child_path(scope, seq, name)
            inst = self._instantiate(target, args, x, path, call.span, scope)
            layer = Layer(name, "block", call.span, path, instance=inst, in_shape=x.shape, out_shape=inst.output.shape)
            return self._register(layer, x, inst.output.shape, scope, seq, call.span, out=inst.output)
        return self._apply_primitive(target, args, name, x, scope, seq, call)

    def _expand_def(self, defn: ast.LayerDef, args, name, x, scope, seq, call):
        if defn in self.stack:
            raise self._recursion(defn, call.span, scope)
        params = self._param_defaults(defn)
        bound = self._bind(f"`{defn.name}`", params, args, call.span, scope)
        inner = Scope(defn.file, scope.instance)
        self._bind_params(defn, bound, inner, call.span, scope)
        item = defn.layer
        inner_name = name
        if inner_name is None and item.name is not None:
            inner_name = self._layer_name(item.name, inner)
        self.stack.append(defn)
        try:
            # the def's layer is declared in the caller's block (or seq), evaluated in the def's own names
            inner = inner.derive(layer_name=inner_name, site_span=call.span)
            return self._apply_item(ast.LayerItem(None, item.target, item.span), x, inner, seq)
        finally:
            self.stack.pop()

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

    def _apply_primitive(self, prim, args, name, x, scope, seq, call):
        if scope.site_span is not None:  # a def's layer: its shape errors belong to where the def is used
            call = ast.Call(call.func, call.args, scope.site_span, scope.site_span)
        tensors = [a for a in args if isinstance(a[1], Tensor) or _has_tensor(a[1])]
        if prim.inputs == "one" or prim.torch_class is not None:
            if tensors:
                raise self._err(f"`{prim.name}` takes its tensor from `|`, not as an argument", tensors[0][2],
                                scope.file)
            attrs = self._bind_primitive(prim, args, call, scope)
        else:
            extra = []
            for a in tensors:
                extra.extend(a[1] if isinstance(a[1], list) else [a[1]])
            attrs = self._bind_primitive(prim, [a for a in args if a not in tensors], call, scope)
            if name is not None:
                raise self._err(f"`{prim.name}` has no module, so it cannot be named", call.span, scope.file)
            return self._functional(prim.name, [x] + extra, attrs, call.span, scope)
        if prim.torch_class is None:
            if name is not None or seq is not None:
                raise self._err(f"`{prim.name}` is a function, not a layer, so it cannot be "
                                f"{'named' if name is not None else 'part of a seq'}", call.span, scope.file)
            return self._functional(prim.name, [x], attrs, call.span, scope)
        if name is None and seq is None:
            if prim.has_weights:
                raise self._err(f"a `{prim.name}` has weights, so it needs a name, which becomes its checkpoint key",
                                call.span, scope.file, hint=f"write `name: {prim.name}(...)`")
            return self._functional(prim.name, [x], attrs, call.span, scope)
        name = self._child_name(name, seq, call.span, scope)
        attrs = self._infer_attrs(prim, attrs, x)
        out_shape = self._shape(prim, attrs, [x.shape], call.span, scope)
        layer = Layer(name, "prim", call.span, self._child_path(scope, seq, name), prim=prim, attrs=attrs,
                      in_shape=x.shape, out_shape=out_shape)
        return self._register(layer, x, out_shape, scope, seq, call.span)

    def _infer_attrs(self, prim, attrs, x):
        attrs = dict(attrs)
        for attr, dim in prim.inferred:
            if dim < len(x.shape):
                attrs[attr] = x.shape[dim]
        return attrs

    def _shape(self, prim, attrs, shapes, span, scope):
        try:
            return prim.shape(attrs, shapes)
        except ShapeError as err:
            raise self._err(str(err), span, scope.file) from None

    def _child_name(self, name, seq, span=None, scope=None):
        if seq is None:
            return name
        if name is None:
            return str(len(seq.children))
        if any(c.name == name for c in seq.children):
            raise self._err(f"this seq already has a layer named `{name}`", span, scope.file if scope else None)
        return name

    def _child_path(self, scope, seq, name):
        base = seq.path if seq is not None else (scope.instance.path if scope.instance else "")
        return f"{base}.{name}" if base else name

    def _register(self, layer, x, out_shape, scope, seq, span, out=None):
        """Declare `layer` in its block or seq and apply it to x."""
        inst = scope.instance
        self._declare(layer, scope, seq, span)
        if layer.kind == "block":
            result = out
        else:
            result = self._run_layer(layer, x, layer.out_shape, span, scope)
        if seq is None:
            self._step(inst, Step("apply", [x.key], [result.key], layer=layer, span=span))
        return result

    def _run_layer(self, layer, x, out_shape, span, scope):
        """Add the graph node of a primitive layer applied to x."""
        node = self._add_node(layer.prim.name, layer.attrs, [x], out_shape, span,
                              scope.instance.path if scope.instance else "", layer.path)
        return Tensor(node, 0, out_shape)

    def _apply_layer(self, layer, x, span, scope):
        """Apply an already declared layer again (`| relu`)."""
        if layer.kind != "prim":
            raise self._err(f"`{layer.name}` is a {layer.kind}, which can be applied only where it is declared",
                            span, scope.file, notes=[("declared here", layer.span)])
        attrs = self._infer_attrs(layer.prim, layer.attrs, x)
        if attrs != layer.attrs:
            changed = [k for k in attrs if attrs[k] != layer.attrs.get(k)]
            raise self._err(f"`{layer.name}` was built for input {fmt_shape(layer.in_shape)} but is applied to "
                            f"{fmt_shape(x.shape)} ({changed[0]} differs)", span, scope.file,
                            notes=[("declared here", layer.span)])
        out_shape = self._shape(layer.prim, attrs, [x.shape], span, scope)
        result = self._run_layer(layer, x, out_shape, span, scope)
        self._step(scope.instance, Step("apply", [x.key], [result.key], layer=layer, span=span))
        return result

    def _apply_seq(self, body: ast.Seq, name, x, scope, parent_seq, span):
        if name is None and parent_seq is None:
            raise self._err("a `seq` needs a name, which becomes its checkpoint key", span, scope.file,
                            hint="write `x | name: seq { ... }`")
        name = self._child_name(name, parent_seq, span, scope)
        layer = Layer(name, "seq", span, self._child_path(scope, parent_seq, name), in_shape=x.shape)
        inst = scope.instance
        self._declare(layer, scope, parent_seq, span)
        y = self._run_seq_body(body.body, x, scope, layer)
        if not layer.children:
            raise self._err("this `seq` is empty", span, scope.file)
        layer.out_shape = y.shape
        if parent_seq is None:
            self._step(inst, Step("apply", [x.key], [y.key], layer=layer, span=span))
        return y

    def _run_seq_body(self, stmts, x, scope, seq):
        for s in stmts:
            if isinstance(s, ast.LayerStmt):
                # a seq's children: the block's names, without a def's layer name
                x = self._apply_item(s.item, x, scope.derive(layer_name=None, site_span=None), seq)
            elif isinstance(s, ast.Assign):
                value = self.eval(s.value, scope)
                if isinstance(value, Tensor) or _has_tensor(value):
                    raise self._err("a `seq` holds layers; tensors are not assigned in it", s.span, scope.file)
                scope.vars[s.target] = value
            elif isinstance(s, ast.For):
                for v in self._iterable(s.iterable, scope):
                    scope.vars[s.var] = v
                    x = self._run_seq_body(s.body, x, scope, seq)
            elif isinstance(s, ast.If):
                x = self._run_seq_body(self._branch(s, scope), x, scope, seq)
            else:
                raise self._err("a `seq` holds layers, loops and conditions; `return` is not allowed", s.span,
                                scope.file)
        return x

    def _branch(self, s: ast.If, scope):
        """The body of the branch whose condition holds (the `else`, or nothing, if none does)."""
        for cond, body in s.branches:
            if self._truth(self.eval(cond, scope), cond.span, scope):
                return body
        return s.orelse or []

    def _step(self, inst, step):
        inst.steps.append(step)

    def _declare(self, layer, scope, seq, span):
        """Add `layer` to its seq, or to its block under the conditions it was declared in."""
        if seq is not None:
            seq.children.append(layer)
            return
        inst = scope.instance
        existing = _find_layer(inst, layer.name)
        if existing is not None:
            raise self._err(f"a layer named `{layer.name}` is already declared in `{inst.block.name}`", span,
                            scope.file, notes=[("declared here", existing.span)])
        inst.layers.append(layer)

    # ---------------------------------------------------------------- functional ops

    def _functional(self, op, tensors, attrs, span, scope):
        prim = PRIMITIVES[op]
        inst = scope.instance
        if inst is None:
            raise self._err("tensors exist only inside a block", span, scope.file)
        for p in prim.params:
            attrs.setdefault(p.name, p.default if p.default is not REQUIRED else None)
        shapes = [t.shape for t in tensors]
        out = self._shape(prim, attrs, shapes, span, scope)
        node = self._add_node(op, attrs, tensors, out, span, inst.path if inst else "", None)
        listed = prim.inputs == "list"
        if listed:
            results = [Tensor(node, i, s) for i, s in enumerate(out)]
        else:
            results = [Tensor(node, 0, out)]
        self._step(inst, Step("func", [t.key for t in tensors], [r.key for r in results], prim=prim, attrs=attrs,
                              span=span))
        return results if listed else results[0]

    # ---------------------------------------------------------------- blocks

    def _instantiate(self, defn: ast.BlockDef, args, x: Tensor, path, call_span, caller: Scope) -> Instance:
        if defn in self.stack:
            raise self._recursion(defn, call_span, caller)
        if len(self.stack) >= MAX_DEPTH:
            raise self._err(f"blocks are nested more than {MAX_DEPTH} deep", call_span, caller.file)
        bound = self._bind(f"`{defn.name}`", self._param_defaults(defn), args, call_span, caller)
        inst = Instance(defn, path, {})
        scope = Scope(defn.file, inst)
        self._bind_params(defn, bound, scope, call_span, caller)
        inst.params = dict(scope.vars)
        inst.input = x
        scope.vars["x"] = inst.input
        self.stack.append(defn)
        try:
            result = self._run_block_body(defn.body, scope)
        finally:
            self.stack.pop()
        if result is _MISSING:
            raise self._err(f"block `{defn.name}` has no `return`", defn.span, defn.file,
                            hint="end the block with `return` and the tensor it outputs")
        result, span = result
        if not isinstance(result, Tensor):
            raise self._err(f"block `{defn.name}` must return a tensor, not {type_name(result)}", span, defn.file)
        inst.output = result
        return inst

    def _recursion(self, defn, span, scope):
        chain = [d.name for d in self.stack[self.stack.index(defn):]] + [defn.name]
        return self._err(f"`{defn.name}` uses itself: {' -> '.join(chain)}", span, scope.file,
                         hint="a block cannot contain an instance of itself")

    def _run_block_body(self, stmts, scope):
        for s in stmts:
            if isinstance(s, ast.Assign):
                value = self.eval(s.value, scope)
                if isinstance(value, Tensor) and isinstance(s.value, ast.Name):
                    self._step(scope.instance, Step("alias", [value.key], [value.key], span=s.span))
                scope.vars[s.target] = value
            elif isinstance(s, ast.Return):
                return self.eval(s.value, scope), s.value.span
            elif isinstance(s, ast.If):
                result = self._run_block_body(self._branch(s, scope), scope)
                if result is not _MISSING:
                    return result
            elif isinstance(s, ast.For):
                for v in self._iterable(s.iterable, scope):
                    scope.vars[s.var] = v
                    result = self._run_block_body(s.body, scope)
                    if result is not _MISSING:
                        return result
            elif isinstance(s, ast.LayerStmt):
                raise self._err("a layer on its own line has no input here", s.span, scope.file,
                                hint="apply it to a tensor: `x = x | name: ...`, or put it in a `seq { ... }`")
        return _MISSING


_MISSING = object()


def _find_layer(inst, name):
    if inst is None:
        return None
    for layer in inst.layers:
        if layer.name == name:
            return layer
    return None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scalar(v):
    return isinstance(v, (int, float, bool, str))


def _has_tensor(v):
    return isinstance(v, list) and any(isinstance(i, Tensor) or _has_tensor(i) for i in v)


def evaluate(text: str):
    """The value of one .arch expression that needs no block, e.g. `[64, 128] * 2`."""
    from .loader import Loader
    loader = Loader()
    file = loader.load_text(f"value = {text}\n", "<value>")
    value = Elaborator(loader)._constant(file.constants[0])
    if isinstance(value, BlockRef):
        raise SpecError(f"`{text}` is a block, not a value")
    return value
