"""Class generation by translation: a block definition's syntax tree, written as one `nn.Module` class.

The translator walks the block's body once, as the elaborator does, but over `values`: a parameter
of the class is a `Dyn` (its Python name), a literal is a `Const`, and every expression is translated
to Python over them, folding what is constant. `__init__` and `forward` are written in step: scalar
statements and layer declarations go to `__init__`, tensor statements to `forward`. A loop or `if`
whose condition is known when the class is written is unrolled or taken; otherwise it becomes the
Python `for` or `if`, with the channel counts that change in it held in variables (as torchvision's
`make_layers` keeps `in_channels`).

What cannot be written over the parameters raises `Untranslatable` with the symbols it depends on,
and the generator makes those parameters literals of the class (see `pytorch.Generator`). In inline
mode nothing is written: the translator only works out a child block's output shape in the caller's
values."""
from __future__ import annotations

import builtins
import itertools
import keyword
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

from .. import ast
from ..queries import names_in, walk
from ..elaborate import RESERVED_LAYER_NAMES, plain_layer_name
from ..evaluate import BUILTINS, BlockRef, Record, format_value, target_names
from ..primitives import INITIALIZERS, PRIMITIVES, REQUIRED, Primitive, ShapeError, dim_index, spatial_out
from .values import (ATOM, IN, INPUT, PREC, SPATIAL, Const, Dyn, Missing, RVal, SList, TList, TVal, Untranslatable, binop, boolop,
                     call, condition, deps, fold, is_int, literal, neg, not_, same, src, src_prec, ternary, truth, wrap)

# Names the generated module defines or imports; no spec name may take them.
MODULE_NAMES = {"self", "torch", "nn", "F", "Tensor", "OrderedDict", "math", "drop_path", "DropPath",
                "LayerNorm2d", "Permute", "Optional", "Union", "checkpoint"}
RESERVED = set(keyword.kwlist) | set(dir(builtins)) | MODULE_NAMES
LOCAL = "@local"  # dependency on a variable of the function being written (a loop variable, say)


class Namespace:
    """Hands out legal, unique Python names (after torch.fx's _Namespace)."""

    def __init__(self, taken=(), reserved=RESERVED):
        self.used = set(taken)
        self.reserved = reserved

    def create(self, wanted: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in wanted) or "v"
        if base[0].isdigit():
            base = "_" + base
        if base.startswith("__"):  # Python rewrites `__name` inside a class body to `_Class__name`
            base = "_" + base.lstrip("_")
        name, i = base, 1
        while name in self.used or name in self.reserved:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


@dataclass
class Maybe:
    """A line that assigns `name`: kept only where something else reads `name`."""
    name: str
    line: str


@dataclass
class TTuple:
    """The tuple of tensors a split or chunk returns."""
    shapes: list
    fwd: str


@dataclass
class Signature:
    """One constructor parameter of a generated class."""
    spec: str  # the spec's name; "" for the input channels
    name: str
    hint: str = ""
    default: Optional[str] = None  # source of the default; None: required


RESULT = "@result"  # the layer a def's helper function returns


@dataclass
class ClassSource:
    """A translated class (or, for a def, helper function)."""
    params: list = field(default_factory=list)  # Signature, in order
    init: list = field(default_factory=list)  # lines of __init__ after super().__init__()
    forward: list = field(default_factory=list)
    uses: set = field(default_factory=set)  # imports used: "math", "OrderedDict", "Optional", "checkpoint"
    methods: list = field(default_factory=list)  # the lines of each method besides forward (`recompute`)
    returns: str = "nn.Module"  # a helper function's return annotation
    training_returns: int = 0  # how many tensors `forward` returns in training, where more than one


class _Seq:
    """The children of one `seq` being built: a literal `nn.Sequential(...)` while every child is known,
    a list built by Python (`layers.append(...)`) once a loop or condition is not."""

    def __init__(self, tr: "Translator", wanted: str = "layers"):
        self.tr, self.wanted = tr, wanted
        self.items = []  # (name source or None, module source), while static
        self.var = None  # the Python list (or Sequential) once dynamic
        self.named = False

    def add(self, name, module: str):
        if name is not None:
            self.named = True
        if self.var is None:
            self.items.append((name, module))
        else:
            self.tr.emit_init(_Add(self, name, module))

    def go_dynamic(self):
        if self.var is not None or self.tr.inline:
            return
        self.var = self.tr.ns.create(self.wanted)
        self.start = len(self.tr.init)
        items, self.items = self.items, []
        for name, module in items:
            self.tr.emit_init(_Add(self, name, module))

    def finish(self, indent: int) -> str:
        """The module's source; a dynamic seq also writes its list's first line."""
        if self.var is None:
            return self.tr.sequential(self.items, indent)
        pad = "    " * self.tr.ii
        head = f"{pad}{self.var} = nn.Sequential()" if self.named else f"{pad}{self.var} = []"
        self.tr.init.insert(self.start, head)
        return self.var if self.named else f"nn.Sequential(*{self.var})"


@dataclass
class _Add:
    seq: _Seq
    name: Optional[str]
    module: str
    pad: str = ""

    def render(self) -> str:
        # the module was laid out as an item of a literal nn.Sequential, one level deeper than here
        module = self.module.replace("\n    ", "\n")
        if self.seq.named:
            name = self.name if self.name is not None else f"str(len({self.seq.var}))"
            return f"{self.pad}{self.seq.var}.add_module({name}, {module})"
        return f"{self.pad}{self.seq.var}.append({module})"


class Translator:
    """Writes one class (or, inline, works out one output shape) from a block definition."""

    def __init__(self, gen, block: ast.BlockDef, fixed: dict, in_rank: int, inline: bool = False,
                 bindings: dict = None, in_shape: tuple = None, instances: list = (), root_channels=None,
                 class_params: dict = None, listed: bool = False):
        """`instances`: the elaborated instances the class is written for (for type hints and the
        names its layers take); `root_channels`: for a model's root class, its input channels, the
        default of `in_channels`; `listed`: the block takes a list of tensors, `in_shape` joined."""
        self.gen, self.block, self.fixed, self.inline = gen, block, fixed, inline
        self.root_channels = root_channels
        self.class_params = class_params or {}  # parameter -> id()s of the blocks passed to it as classes
        self.instances = instances
        self.file = block.file
        self.env: dict = {}
        self.init: list = []
        self.scopes = [0]  # the init buffer being written and those enclosing it, as serial numbers
        self.serial = 0
        self.outer_inits: list = []  # the init buffers enclosing the one being written, outermost first
        self.assigned: set = set()  # Python names __init__ has assigned so far
        self.fwd: list = []
        self.ii = self.fi = 0  # indentation of the next init / forward line
        self.layers: dict = {}  # declared layer name -> (prim, attrs) for a primitive, else (None, None)
        self.ns = Namespace()
        self.sizes = {}  # forward variables holding sizes of tensors: see forward_size
        self.fns = Namespace({"x"})
        self.pynames: dict = {}  # spec name -> Python name in __init__
        self.fnames: dict = {"x": "x"}  # spec name -> Python name in forward
        self.attr_ns = Namespace({l.name for i in instances for l in i.layers},
                                 reserved=RESERVED | RESERVED_LAYER_NAMES)
        self.stored: dict = {}
        self.shadows: set = set()  # variables that hold a dimension changed by a loop
        self.loop_deps = None  # inside a Python loop of a block body: what its list depends on
        self.live_curs: list = []  # the tensor flowing through each seq being built
        self.maybe_layers: dict = {}  # layers declared under a condition -> what the condition reads
        self.branch_deps = frozenset()  # what the conditions of the branch being written read
        self.branch_depth = 0  # how many branches of `if`s the statement being written is inside
        self.refused = False  # whether the branch being written ends in `raise ValueError` (an `error`)
        self.pending_returns: list = []  # (condition, shape) of returns in an `if` the path went on after
        self.training = False  # writing the body of an `if training`
        self.training_names: set = set()  # spec names an `if training` assigns
        self.built: dict = {}  # layer name -> [init buffer, first line, line count, names] of the statement
        # that built it, for a `declare` further on that moves it
        self.out_shape = None
        self.result = ClassSource()
        self.in_rank = in_rank
        self.listed = listed
        if inline:
            self.env.update(bindings)
            self.env["x"] = (TList if listed else TVal)(
                tuple(Dyn(d.src, d.prec, d.deps | {INPUT}, d.boolean) if isinstance(d, Dyn) else d for d in in_shape),
                "x")
        else:
            self._bind_parameters()

    # ------------------------------------------------------------------ emission

    def emit_init(self, line):
        if self.inline:
            return
        if isinstance(line, _Add):
            line.pad = "    " * self.ii
        elif isinstance(line, Maybe):
            line = Maybe(line.name, "    " * self.ii + line.line)
        else:
            line = "    " * self.ii + line
        text = line.line if isinstance(line, Maybe) else line
        if isinstance(text, str):
            target = re.match(r"\s*([\w, ]+?) = ", text)
            if target:
                self.assigned |= {n.strip() for n in target.group(1).split(",")}
        self.init.append(line)

    def emit_fwd(self, line):
        if self.inline:
            return
        if isinstance(line, Maybe):
            line = Maybe(line.name, "    " * self.fi + line.line)
        else:
            line = "    " * self.fi + line
        self.fwd.append(line)

    @contextmanager
    def capture(self):
        """Lines written inside go to new buffers one level deeper, returned as (init, forward)."""
        saved = self.init, self.fwd
        self.outer_inits.append(self.init)
        self.init, self.fwd = [], []
        self.serial += 1
        self.scopes.append(self.serial)
        self.ii += 1
        self.fi += 1
        out = ([], [])
        try:
            yield out
        finally:
            out[0].extend(self.init)
            out[1].extend(self.fwd)
            self.init, self.fwd = saved
            self.outer_inits.pop()
            self.scopes.pop()
            self.ii -= 1
            self.fi -= 1

    def emit_init_updates(self, updates):
        """Variables set at the end of a loop's body, at once: each new value is the body's, read
        before any of them changes (`channels, n = n // 2, n_2`)."""
        pairs = [(name, src(v)) for name, v in updates if not (isinstance(v, Dyn) and v.src == name)]
        if len(pairs) == 1:
            self.emit_init(f"{pairs[0][0]} = {pairs[0][1]}")
        elif pairs:
            self.emit_init(f"{', '.join(n for n, _ in pairs)} = {', '.join(v for _, v in pairs)}")

    def init_target(self, var: str) -> str:
        """The __init__ name for assigning `var`: its own, unless a value still live reads that name
        (then the old value would change under it), in which case a fresh one."""
        name = self.pyname(var)
        live = set()
        for k, v in self.env.items():
            if k != var:
                live |= _dyn_names(v)
        for cur in self.live_curs:
            live |= _dyn_names(cur)
        return name if name not in live else self.ns.create(var)

    def pyname(self, spec_name: str) -> str:
        if spec_name not in self.pynames:
            self.pynames[spec_name] = self.ns.create(spec_name)
        return self.pynames[spec_name]

    def fname(self, spec_name: str) -> str:
        if spec_name not in self.fnames:
            self.fnames[spec_name] = self.fns.create(spec_name)
        return self.fnames[spec_name]

    # ------------------------------------------------------------------ parameters

    def _bind_parameters(self):
        block, result = self.block, self.result
        for p in block.params:
            if p.name in self.fixed:
                continue
            self.pynames[p.name] = self.ns.create(p.name)
        in_name = self.ns.create("in_channels")
        if IN in self.fixed:
            channels = Const(self.fixed[IN])
        else:
            channels = Dyn(in_name, deps=frozenset({IN}))
        if SPATIAL in self.fixed:
            rest = tuple(Const(d) for d in self.fixed[SPATIAL])
        else:
            rest = tuple(Missing(frozenset({SPATIAL})) for _ in range(self.in_rank - 1))
        self.env["x"] = (TList if self.listed else TVal)((channels,) + rest, "x")
        required, optional, resolve = [], [], []
        for p in block.params:
            if p.name in self.fixed:
                self.env[p.name] = Const(self.fixed[p.name])
                continue
            name = self.pynames[p.name]
            values = [i.params.get(p.name) for i in self.instances]
            sig = Signature(p.name, name, "type" if p.name in self.class_params else _hint(values))
            if p.default is not None:
                default = fold(self.eval(p.default))
                if isinstance(default, Const) and not isinstance(default.value, BlockRef):
                    sig.default = literal(default.value)
                    if p.name not in self.class_params:  # no hint where the values differ in kind
                        sig.hint = _hint([v for v in values if v is not None] + [default.value])
                else:
                    sig.default = "None"
                    if sig.hint:
                        sig.hint = f"Optional[{sig.hint}]"
                        self.result.uses.add("Optional")
                    resolve.append(f"if {name} is None:")
                    resolve.append(f"    {name} = {src(default)}")
            (optional if sig.default is not None else required).append(sig)
            self.env[p.name] = Dyn(name, deps=frozenset({p.name}), classes=frozenset(self.class_params.get(p.name, ())))
        if IN in self.fixed:
            result.params = required + optional
        elif self.root_channels is None:
            result.params = [Signature("", in_name, "int")] + required + optional
        else:  # defaulted, so after the required ones
            result.params = required + [Signature("", in_name, "int", str(self.root_channels))] + optional
        for line in resolve:
            self.emit_init(line)

    # ------------------------------------------------------------------ the class

    def translate(self) -> ClassSource:
        self.stmts(self.block.body)
        result = self.result
        result.init = render(self.init)
        result.forward = render(self.fwd)
        in_param = [s for s in result.params if s.spec == ""]
        if in_param and not any(_reads(l, in_param[0].name) for l in result.init):  # a class that needs no width
            result.params = [s for s in result.params if s.spec != ""]
        return result

    def output_shape(self) -> tuple:
        """Inline mode: the shape the block returns, in the caller's values."""
        self.stmts(self.block.body)
        return self.out_shape

    # ------------------------------------------------------------------ statements of a block body

    def stmts(self, body) -> bool:
        """Translate statements; True where every path returned."""
        body = list(body)
        index = 0
        previous = None
        while index < len(body):
            self._note_built(previous)
            previous = (self.init, len(self.init), len(self.layers))
            s = body[index]
            index += 1
            if isinstance(s, _Bind):
                self.bind(s.var, s.value)
            elif isinstance(s, ast.Assign):
                self.assign(s.target, s.value)
            elif isinstance(s, ast.ParamDecl):
                self.env[s.name] = self.declare_parameter(s)
            elif isinstance(s, ast.Unpack):
                self.unpack(s.targets, s.value)
            elif isinstance(s, ast.Return) and self.training:
                self.training_return(s)
                return True
            elif isinstance(s, ast.Return):
                self.do_return(s.value)
                return True
            elif isinstance(s, ast.Training):
                self.training_stmt(s)
            elif isinstance(s, ast.Fail):
                self.emit_init(self.refusal(s))
                self.refused = True
                return True
            elif isinstance(s, ast.Assert):
                self.assert_stmt(s)
            elif isinstance(s, ast.Declare):
                self.declare_place(s)
            elif isinstance(s, ast.Recompute):
                self.recompute(s)
            elif isinstance(s, ast.If):
                rest = body[index:]
                if rest and _returns(s):
                    # `if c { return a }; ...; return b`: what follows runs where no branch returned
                    s = ast.If([(c, b + rest) for c, b in s.branches], (s.orelse or []) + rest, s.span)
                    self.if_stmt(s, self.stmts)
                    return True
                if self.if_stmt(s, self.stmts):
                    return True
            elif isinstance(s, ast.For):
                it = fold(self.eval(s.iterable))
                items = self.items_of(it)
                if items is None:
                    self.block_for(s, it)
                    continue
                # unrolled in place, so that what follows an iteration's early return is in view
                body[index:index] = [stmt for v in items for stmt in [_Bind(s.var, v)] + list(s.body)]
        return False

    def _note_built(self, previous):
        """Remember which init lines the statement just written built its layers with."""
        if previous is None or self.inline:
            return
        buffer, start, known = previous
        # a statement only adds layers (a branch's copy keeps the order): the new ones are the last
        new = list(itertools.islice(reversed(self.layers), len(self.layers) - known))[::-1]
        if new and buffer is self.init:
            record = [buffer, start, len(buffer) - start, new]
            for name in new:
                self.built[name] = record

    def training_stmt(self, s: ast.Training):
        """`if training { ... }`: its layers are built in __init__ unconditionally (they exist in both
        modes); its forward lines run under `if self.training:`."""
        if self.training:
            self.stmts(s.body)
            return
        saved = self.fwd, self.out_shape, list(self.pending_returns)
        self.fwd, self.training = [], True
        self.fi += 1
        try:
            self.stmts(s.body)
        finally:
            body = self.fwd
            self.fi -= 1
            self.fwd, self.out_shape, self.pending_returns = saved
            self.training = False
        self.training_names |= _assigned(s.body)
        if _has_content(body):
            self.emit_fwd("if self.training:")
            self.fwd.extend(body)

    def training_return(self, s: ast.Return):
        """A `return` under `if training`: one tensor, or a tuple of them (`return x, aux2, aux1`)."""
        exprs = s.outputs or [s.value]
        values = [self.as_tensor(self.eval(e)) for e in exprs]
        if len(values) > 1:
            self.result.training_returns = len(values)
            self.result.uses.add("Union")
        self.emit_fwd(f"return {', '.join(v.fwd for v in values)}")

    def block_for(self, s: ast.For, it):
        """A loop of a block body over a list known only at construction: a Python loop in __init__
        declaring the layers (`self.add_module(f"blk{i}", ...)`) and one in forward applying them."""
        var, loop_var = self.loop_target(s.var, it)
        assigned = _assigned(s.body)
        scalars = sorted(n for n in assigned if n in self.env and not isinstance(self.env[n], (TVal, SList, TTuple)))
        for n in sorted(n for n in assigned if isinstance(self.env.get(n), SList)):
            self.env[n] = self._python_list(n, self.env[n], deps(it))
        tensors = sorted(n for n in assigned if isinstance(self.env.get(n), (TVal, TList)))
        if any(isinstance(self.env.get(n), (SList, TTuple)) for n in assigned):
            raise Untranslatable(deps(it), "a list of tensors that grows in a loop")
        dims = {(n, i): self.env[n].shape[i] for n in tensors for i, d in enumerate(self.env[n].shape)
                if not isinstance(d, Missing)}
        names = set(self.ns.used), set(self.fns.used), dict(self.pynames), dict(self.fnames), dict(self.stored)
        saved_layers = dict(self.layers)
        _, _, end, assigned_shadows = self._block_loop_pass(s, it, loop_var, scalars, tensors,
                                                             {k: f"@{k[0]}.{k[1]}" for k in dims})
        self.ns.used, self.fns.used, self.pynames, self.fnames, self.stored = names
        self.layers = dict(saved_layers)
        changed = {}
        for (n, i), d in dims.items():
            e = end[n].shape[i]
            if same(e, d):  # every iteration ends with the size it began with
                continue
            if not (isinstance(e, Dyn) and e.src == f"@{n}.{i}") or f"@{n}.{i}" in assigned_shadows:
                changed[(n, i)] = f"@{n}.{i}" if self.inline else self.ns.create(
                    f"{n}_{_DIM_NAMES.get(i, f'dim{i}')}" if n != "x" else _DIM_NAMES.get(i, f"dim{i}"))
        if not self.inline:
            for (n, i), name in changed.items():
                self.emit_init(Maybe(name, f"{name} = {src(dims[(n, i)])}"))
            for n in scalars:
                value, name = self.env[n], self.pyname(n)
                if not (isinstance(value, Dyn) and value.src == name):
                    self.emit_init(Maybe(name, f"{name} = {src(value)}"))
            for n in tensors:
                if self.env[n].fwd != self.fname(n):
                    self.emit_fwd(f"{self.fname(n)} = {self.env[n].fwd}")
            forward_it = self._forward_iterable(s.iterable, it)
        init, fwd, end, _ = self._block_loop_pass(s, it, loop_var, scalars, tensors, changed)
        increments = {}
        if self.inline and changed:  # the body run from size 0 gives what each iteration adds
            increments = self._block_loop_pass(s, it, loop_var, scalars, tensors, changed, zero=True)[2]
        self.emit_init(f"for {var} in {self.loop_iterable(it, s.var)}:")
        self.init.extend(init)
        if not self.inline:
            self.emit_fwd(f"for {var} in {forward_it}:")
            self.fwd.extend(fwd)
        for n in scalars + sorted(a for a in assigned if a not in scalars and a not in tensors):
            self.env[n] = Dyn(self.pyname(n), deps=deps(it) | {LOCAL})
        for n in tensors:
            shape = list(self.env[n].shape)
            for (m, i), name in changed.items():
                if m == n:
                    d = end[n].shape[i]
                    if self.inline:
                        shape[i] = self._after_loop(s, it, shape[i], d, name, increments[n].shape[i])
                    else:
                        shape[i] = Dyn(name, deps=deps(it) | deps(d) | deps(shape[i]))
            self.env[n] = type(self.env[n])(tuple(shape), self.fname(n))
        self.env.update(loop_var)

    def _after_loop(self, s, it, entry, end, shadow: str, increment):
        """A size after a loop, in the caller's values: the body's, where it does not depend on the
        size it began with; `entry + count * increment` where each iteration adds the same."""
        if LOCAL not in deps(end):
            return end
        grown = binop("+", Dyn(shadow, deps=end.deps if isinstance(end, Dyn) else frozenset()), increment)
        if LOCAL in deps(increment) or not same(end, grown):
            return Missing(deps(end) | deps(it))
        node = s.iterable
        if isinstance(node, ast.Call) and node.func == "range" and len(node.args) == 1:
            count = self.eval(node.args[0].value)
        else:
            count = call("len", [it])
        return binop("+", entry, binop("*", count, increment))

    def _python_list(self, name, value: SList, loop_deps):
        """A list of tensors carried by a loop, as a Python list in forward (`features = [x]`)."""
        items = value.items
        if not items or not all(isinstance(t, TVal) for t in items) or any(
                not all(same(a, b) for a, b in zip(t.shape[1:], items[0].shape[1:])) for t in items):
            raise Untranslatable(loop_deps, "a list of tensors that grows in a loop")
        total = items[0].shape[0]
        for t in items[1:]:
            total = binop("+", total, t.shape[0])
        fwd = self.fwd_target(name)
        self.emit_fwd(f"{fwd} = [{', '.join(t.fwd for t in items)}]")
        return TList((total,) + tuple(items[0].shape[1:]), fwd)

    def _block_loop_pass(self, s, it, loop_var, scalars, tensors, shadows: dict, zero=False):
        """One translation of the loop's body, with each dimension in `shadows` a variable (or, with
        `zero`, 0): (init lines, forward lines, carried values at the end, shadows the body assigns)."""
        saved_env, saved_deps = dict(self.env), self.loop_deps
        self.env.update(loop_var)
        for n in scalars:
            self.env[n] = Dyn(self.pyname(n), deps=deps(it) | deps(self.env[n]) | {LOCAL})
        for n in tensors:
            shape = list(self.env[n].shape)
            for (m, i), name in shadows.items():
                if m == n:
                    shape[i] = Const(0) if zero else Dyn(name, deps=deps(it) | deps(shape[i]) | {LOCAL})
            self.env[n] = type(self.env[n])(tuple(shape), self.fname(n))
        self.loop_deps = deps(it)
        try:
            with self.capture() as (init, fwd):
                if self.stmts(s.body):
                    raise Untranslatable(deps(it), "a return inside a loop")
                end = {n: self.env[n] for n in tensors}
                updates = [(self.pyname(n), self.env[n]) for n in scalars]
                updates += [(name, end[n].shape[i]) for (n, i), name in shadows.items() if not name.startswith("@")]
                self.emit_init_updates(updates)
                moves = [(self.fname(n), end[n].fwd) for n in tensors if end[n].fwd != self.fname(n)]
                if moves:
                    self.emit_fwd(f"{', '.join(n for n, _ in moves)} = {', '.join(f for _, f in moves)}")
        finally:
            self.loop_deps = saved_deps
            self.env = saved_env
        assigned = {name for name in shadows.values()
                    if any(re.match(rf"\s*{re.escape(name)} = ", l.line if isinstance(l, Maybe) else l)
                           for l in init if isinstance(l, (str, Maybe)))}
        return init, fwd, end, assigned

    def _forward_iterable(self, node, it) -> str:
        """The loop's list in forward: `range(self.n)`, `enumerate(self.widths)` for the iteration
        built-ins (over the values kept on self), else the list kept on self."""
        if isinstance(node, ast.Call) and node.func in ("range", "enumerate", "zip") and node.func not in self.env \
                and not any(a.name for a in node.args):
            return f"{node.func}({', '.join(self._forward_argument(a.value) for a in node.args)})"
        return self.fsrc(it, "items")

    def _forward_argument(self, e) -> str:
        if isinstance(e, ast.Call) and e.func in ("range", "enumerate", "zip"):
            return self._forward_iterable(e, self.eval(e))
        counted = e.args[0].value if isinstance(e, ast.Call) and e.func == "len" and len(e.args) == 1 \
            and isinstance(e.args[0].value, ast.Name) else None
        return self.fsrc(self.eval(e), f"num_{counted.id}" if counted else "stop")

    def items_of(self, v):
        v = fold(v)
        if isinstance(v, Const) and isinstance(v.value, list):
            return [Const(i) for i in v.value]
        if isinstance(v, SList):
            return list(v.items)
        return None

    def assign(self, target: str, expr):
        core, stages = _chain(expr, self)
        if stages and not any(target in _stage_names(stage) for stage in stages):
            value = self.eval(core)
            if isinstance(value, TVal):
                name = self.fwd_target(target)
                if value.fwd != name and not isinstance(core, ast.Name):
                    self.emit_fwd(f"{name} = {value.fwd}")
                    value = TVal(value.shape, name)
                for stage in stages:
                    value = self.apply_stage(stage, value)
                    self.emit_fwd(f"{name} = {value.fwd}")
                    value = TVal(value.shape, name)
                self.env[target] = value
                return
        self.assign_value(target, self.eval(expr), isinstance(expr, ast.Name))

    def assign_value(self, target: str, value, alias=False):
        """`target` takes `value`; `alias`: the value is another variable's (`y = x`)."""
        if isinstance(value, TVal):
            name = self.fwd_target(target)
            if value.fwd != name:
                line = f"{name} = {value.fwd}"
                self.emit_fwd(Maybe(name, line) if alias else line)
            self.env[target] = TVal(value.shape, name)
        elif isinstance(value, TList):
            name = self.fwd_target(target)
            if value.fwd != name:
                self.emit_fwd(f"{name} = {value.fwd}")
            self.env[target] = TList(value.shape, name)
        elif isinstance(value, TTuple):
            name = self.fwd_target(target)
            self.emit_fwd(f"{name} = {value.fwd}")
            self.env[target] = SList([TVal(s, f"{name}[{i}]") for i, s in enumerate(value.shapes)])
        elif isinstance(value, SList) and not self.inline and not any(
                isinstance(i, (TVal, SList)) for i in value.items):
            name = self.init_target(target)
            self.emit_init(Maybe(name, f"{name} = {src(value)}"))
            self.env[target] = SList([Dyn(f"{name}[{i}]", ATOM, deps(v)) for i, v in enumerate(value.items)],
                                     source=name)
        elif isinstance(value, Dyn) and not self.inline:
            name = self.init_target(target)
            if value.src != name:
                self.emit_init(Maybe(name, f"{name} = {value.src}"))
            self.env[target] = Dyn(name, ATOM, value.deps, value.boolean)
        else:
            self.env[target] = value

    def unpack(self, targets: list, expr):
        """`a, b = value`: the tuple of a split or chunk in one line of forward, else item by item."""
        value = self.eval(expr)
        if isinstance(value, TTuple) and all(isinstance(t, str) for t in targets) \
                and len(targets) == len(value.shapes):
            names = [self.fwd_target(t) for t in targets]
            self.emit_fwd(f"{', '.join(names)} = {value.fwd}")
            for t, name, shape in zip(targets, names, value.shapes):
                self.env[t] = TVal(shape, name)
            return
        for name, item in self.leaves(targets, value):
            self.assign_value(name, item)

    def leaves(self, target, value) -> list:
        """[(name, value)]: a value unpacked into a (nested) target, where its length is known here."""
        if isinstance(target, str):
            return [(target, value)]
        if isinstance(value, TTuple):
            value = SList([TVal(s, f"{value.fwd}[{i}]") for i, s in enumerate(value.shapes)])
        items = self.items_of(value)
        if items is None or len(items) != len(target):
            raise Untranslatable(deps(value), "an unpacking of a list whose length is known only at construction")
        return [leaf for t, v in zip(target, items) for leaf in self.leaves(t, v)]

    def bind(self, target, value):
        """A loop's variable (or variables) take a value known when the class is written."""
        for name, v in self.leaves(target, value):
            self.env[name] = v

    def loop_target(self, target, it, fresh=False, mark=frozenset()):
        """(Python source, {spec name: value}) of the variables of a Python loop over `it`; `fresh`:
        names of their own (a comprehension's), else the spec names' names in the class; `mark`:
        dependencies that tell this loop's values from those of the loops around it."""
        if isinstance(target, str):
            name = target if self.inline else (self.ns.create(target) if fresh else self.pyname(target))
            return name, {target: Dyn(name, deps=deps(it) | {LOCAL} | mark)}
        parts, env = [], {}
        for t in target:
            part, names = self.loop_target(t, it, fresh, mark)
            parts.append(f"({part})" if isinstance(t, list) else part)
            env.update(names)
        return ", ".join(parts), env

    @staticmethod
    def loop_iterable(it, target) -> str:
        """A loop's list; a loop that unpacks each item iterates `zip(...)` or `enumerate(...)` itself
        (its items are then tuples, which only the unpacking sees)."""
        source, prec = src_prec(it)
        if not isinstance(target, str):
            found = re.fullmatch(r"list\(map\(list, ((?:zip|enumerate)\(.*\))\)\)", source)
            if found:
                source, prec = found.group(1), ATOM
            # `for i, (a, b) in enumerate(zip(xs, ys))`: the inner items are unpacked too
            inner = re.fullmatch(r"enumerate\(list\(map\(list, (zip\(.*\))\)\)((?:, [^()]*)?)\)", source)
            if inner and len(target) == 2 and isinstance(target[1], list):
                return f"enumerate({inner.group(1)}{inner.group(2)})"
        return wrap(source, prec, 1)

    def fwd_target(self, var: str, live=frozenset()) -> str:
        """The forward name for `var`, unless it holds a value still needed under another spec name
        (here, or in `live`: the names other values read)."""
        name = self.fname(var)
        live = set(live)
        for k, v in self.env.items():
            if k != var:
                live |= _fwd_names(v)
        taken = live | {v for k, v in self.fnames.items() if k != var}
        n, base = 1, name
        while name in taken or name in self.fns.reserved:
            n += 1
            name = f"{base}_{n}"
        self.fns.used.add(name)
        return name

    def do_return(self, expr):
        if not _chain(expr, self)[1]:
            value = self.as_tensor(self.eval(expr))
            self.emit_fwd(f"return {value.fwd}")
            self._returns(value.shape)
            return
        leftmost = _leftmost_name(expr)
        if not isinstance(self.env.get(leftmost), TVal):
            leftmost = "out"
        self.assign(leftmost, expr)
        value = self.env[leftmost]
        if not isinstance(value, TVal):
            raise Untranslatable(deps(value), "a block returns a tensor")
        self.emit_fwd(f"return {value.fwd}")
        self._returns(value.shape)

    def _returns(self, shape):
        """The block returns `shape` here, unless one of the returns an `if` made earlier on this path
        already did (inside an unrolled loop, say): a choice over their conditions, for callers."""
        if self.inline:  # a class's own output shape is read by no one
            for cond, earlier in reversed(self.pending_returns):
                shape = tuple(self._merge_dim("out", [a, b], [], [cond]) for a, b in zip(earlier, shape))
        self.out_shape = shape

    def assert_stmt(self, s: ast.Assert):
        """`assert c, "message"`: the class refuses the arguments the spec refuses, where it is built
        (`if not c: raise ValueError("message")`)."""
        if self.inline:
            return
        cond = self.test(s.cond)
        if isinstance(cond, Const) and cond.value:
            return
        if isinstance(cond, Const):
            self.emit_init(self.refusal(s.failure))
            return
        self.emit_init(f"if {src(self.negation(s.cond))}:")
        self.emit_init("    " + self.refusal(s.failure))

    def declare_place(self, s: ast.Declare):
        """`declare name`: the module registered here, empty until it is built (`add_module(name, None)`),
        so that it keeps this place in the module's order."""
        if self.loop_deps is not None:
            raise Untranslatable(self.loop_deps, "a `declare` in every iteration of a loop")
        moved = []
        for name in s.names:
            if name in self.layers:
                moved.append(self._move_built(name, s.names))
            else:
                self.emit_init(f"self.add_module({_pystr(name)}, None)  # its place in the state_dict; built below")
        self.init.extend(_merge_chains([lines for lines in moved if lines]))

    def _move_built(self, name, names):
        """`declare name` after the layer is built: the statement that built it moves here in __init__
        (`self.aux1 = ...` after the layers its place follows)."""
        if self.inline:
            return []
        record = self.built.get(name)
        if record is None or record[0] is not self.init:
            raise Untranslatable(frozenset(), f"`declare {name}` at another level of conditions than `{name}`")
        buffer, start, count, built = record
        if count == 0:  # moved already, with another layer its statement built
            return []
        if any(n not in names for n in built):
            raise Untranslatable(frozenset(), f"`declare {name}` without {', '.join(n for n in built if n not in names)}, "
                                              "which the same statement builds")
        lines = buffer[start:start + count]
        between = buffer[start + count:]
        texts = [l.line if isinstance(l, Maybe) else l for l in lines if isinstance(l, (str, Maybe))]
        later = [l.line if isinstance(l, Maybe) else l for l in between if isinstance(l, (str, Maybe))]
        set_there = {m.group(1) for t in texts for m in re.finditer(r"^\s*(\w+) = ", t, re.M)}
        set_between = {m.group(1) for t in later for m in re.finditer(r"^\s*(\w+) = ", t, re.M)}
        if any(_reads(t, n) for t in later for n in set_there) or any(_reads(t, n) for t in texts for n in set_between):
            raise Untranslatable(frozenset(), f"`declare {name}` moves what the lines after it read")
        del buffer[start:start + count]
        for other in {id(r): r for r in self.built.values()}.values():
            if other[0] is buffer and other[1] > start:
                other[1] -= count
        record[2] = 0
        return lines

    def recompute(self, s: ast.Recompute):
        """`recompute name if cond { ... }`: the statements as the method `name` (torchvision's
        `bn_function`), and in forward, where `cond` holds and an input requires grad, the method run under
        `checkpoint`, which keeps its inputs for the backward pass and computes the rest again there."""
        cond = self.test(s.cond) if s.cond is not None else Const(True)
        if self.inline or (isinstance(cond, Const) and not cond.value):
            self.stmts(s.body)
            return
        if self.loop_deps is not None:
            raise Untranslatable(self.loop_deps, "a `recompute` region in every iteration of a loop")
        inside = {id(n) for n in walk(s.body)}
        names = sorted((n for n in walk(s.body) if isinstance(n, ast.Name)), key=lambda n: (n.span.line, n.span.column))
        inputs = [n for n in dict.fromkeys(n.id for n in names)
                  if isinstance(self.env.get(n), (TVal, TList)) and getattr(self.env[n], "batched", True)]
        for n in inputs:  # a tensor held in an expression (`parts[1]`) is passed by a name of its own
            if not self.env[n].fwd.isidentifier():
                self.assign_value(n, self.env[n])
        params = [(self.env[n].fwd, "list[Tensor]" if isinstance(self.env[n], TList) else "Tensor") for n in inputs]
        later = {n.id for n in walk(self.block.body) if isinstance(n, ast.Name) and id(n) not in inside}
        saved = self.fwd, self.fi
        self.fwd, self.fi = [], 0
        try:
            before = dict(self.env)
            self.stmts(s.body)
            outputs = [n for n in sorted(_assigned(s.body)) if n in later and isinstance(self.env.get(n), TVal)
                       and self.env[n] is not before.get(n)]
            if not outputs:
                raise Untranslatable(frozenset(), "a `recompute` region whose tensors nothing reads")
            self.emit_fwd(f"return {', '.join(self.env[n].fwd for n in outputs)}")
            body = render(self.fwd)
        finally:
            self.fwd, self.fi = saved
        returns = "Tensor" if len(outputs) == 1 else f"tuple[{', '.join(['Tensor'] * len(outputs))}]"
        head = f"def {s.name}(self, {', '.join(f'{p}: {t}' for p, t in params)}) -> {returns}:"
        doc = '    """Recomputed in the backward pass' + \
            ("" if s.cond is None else f" where `{_spec_text(s.cond, self.file)}` holds") + '."""'
        self.result.methods.append([head, doc] + ["    " + l for l in body])
        args = ", ".join(p for p, _ in params)
        grads = " or ".join(f"any(t.requires_grad for t in {p})" if t != "Tensor" else f"{p}.requires_grad"
                            for p, t in params)
        test = grads if isinstance(cond, Const) else \
            f"{wrap(self.fsrc(cond, 'recompute'), src_prec(cond)[1], PREC['and'])} and {wrap(grads, PREC['or'], PREC['and'] + 1) if len(params) > 1 else grads}"
        for n in outputs:
            self.env[n] = TVal(self.env[n].shape, self.fwd_target(n))
        targets = ", ".join(self.env[n].fwd for n in outputs)
        self.result.uses.add("checkpoint")
        self.emit_fwd(f"if {test}:")
        self.emit_fwd(f"    {targets} = checkpoint(self.{s.name}, {args}, use_reentrant=False)")
        self.emit_fwd("else:")
        self.emit_fwd(f"    {targets} = self.{s.name}({args})")

    def negation(self, cond):
        """`not cond`, translated; a comparison negated as one (`n % 6 != 0`), `not c` as `c`."""
        if isinstance(cond, ast.BinOp) and cond.op in _NEGATED:
            negated = self.eval(ast.BinOp(_NEGATED[cond.op], cond.left, cond.right, cond.span))
            if isinstance(fold(negated), Dyn) and fold(negated).boolean:
                return negated
        if isinstance(cond, ast.UnaryOp) and cond.op == "not":
            return self.test(cond.operand)
        return not_(self.test(cond))

    # ------------------------------------------------------------------ conditionals

    def if_stmt(self, s: ast.If, run, cur=None, seq=None):
        """An `if` in a block body (run=stmts) or a seq (run=seq_body, threading `cur`). Returns
        whether every path returned (body), or the tensor flowing on (seq)."""
        clauses = []
        for cond, body in s.branches:
            c = self.test(cond)
            if isinstance(c, Const):
                if c.value:
                    clauses.append((None, body))
                    break
                continue
            clauses.append((c, body))
        else:
            clauses.append((None, s.orelse or []))
        if clauses[0][0] is None:  # known when the class is written
            return run(clauses[0][1]) if seq is None else run(clauses[0][1], cur, seq)
        if seq is not None:
            seq.go_dynamic()
            cur = self._settle(cur)
        return self._branches(clauses, run, cur, seq)

    def _settle(self, cur: TVal) -> TVal:
        """Before a Python `if` of a seq, a width that a loop's variable plus something is, written into
        that variable (`channels = channels + n * growth`), so the branches read and set the variable
        (torchvision's `num_features` in DenseNet), where nothing else still reads its old value."""
        if self.inline:
            return cur
        referenced = set()
        for v in list(self.env.values()) + self.live_curs[:-1]:
            referenced |= _dyn_names(v)
        shape = list(cur.shape)
        for i, d in enumerate(shape):
            if not isinstance(d, Dyn) or d.src.isidentifier():
                continue
            names = sorted((_names_read(d.src) & self.shadows) - referenced)
            if len(names) == 1:
                self.emit_init(f"{names[0]} = {d.src}")
                shape[i] = Dyn(names[0], deps=d.deps)
        return TVal(tuple(shape), cur.fwd)

    def _branches(self, clauses, run, cur, seq):
        before_env, before_layers = dict(self.env), dict(self.layers)
        done = []  # (cond, init, fwd, env, result, layers it declared)
        declared = dict(before_layers)
        returned = []  # the shapes the branches return
        outer_deps, outer_refused = self.branch_deps, self.refused
        for cond, body in clauses:
            self.env, self.layers = dict(before_env), dict(before_layers)
            self.out_shape = None
            self.branch_deps = frozenset().union(*[deps(c) for c, _ in clauses[:len(done) + 1] if c is not None])
            self.refused = False
            maybe_before = set(self.maybe_layers)
            self.branch_depth += 1
            with self.capture() as (init, fwd):
                result = run(body) if seq is None else run(body, cur, seq)
            self.branch_depth -= 1
            done.append([cond, init, fwd, self.env, result, set(self.layers) - set(before_layers), self.refused,
                         set(self.maybe_layers) - maybe_before])
            declared.update(self.layers)
            if self.out_shape is not None:
                returned.append((cond, self.out_shape))
        self.env, self.layers = dict(before_env), declared
        self.out_shape = None
        self.branch_deps, self.refused = outer_deps, outer_refused or all(d[6] for d in done)
        if returned and len(returned) < sum(not d[6] for d in done):  # some branches return, the others go on
            if any(c is None for c, _ in returned) or len(returned[0][1]) != len(returned[-1][1]):
                raise Untranslatable(frozenset().union(*[deps(d[0]) for d in done if d[0] is not None]),
                                     "an `else` that returns while its `if` goes on")
            self.pending_returns += returned
            returned = []
        if returned and self.inline:
            conds = [c for c, _ in returned]
            self.out_shape = tuple(self._merge_dim("out", [r[1][i] for r in returned], [], conds)
                                   for i in range(len(returned[0][1])))
        elif returned:
            self.out_shape = returned[0][1]
        live = [d for d in done if (seq is not None or not d[4]) and not d[6]]
        # values that differ between the branches are Python variables after the `if`
        for key in sorted(set().union(*[set(d[3]) for d in live])) if live else []:
            values = [d[3].get(key) for d in live]
            if any(v is None for v in values):
                present = [v for v in values if v is not None]
                if key in self.training_names and all(same(present[0], v) for v in present[1:]):
                    self.env[key] = present[0]  # read only under `if training`, where the branch that sets it ran
                continue
            if all(same(values[0], v) for v in values[1:]):
                self.env[key] = values[0]
                continue
            self.env[key] = self._merge(key, values, live, [d[0] for d in live])
        if seq is not None:
            going_on = [d for d in done if not d[6]] or done
            shapes = [d[4].shape for d in going_on]
            cur = TVal(tuple(self._merge_dim(f"{_DIM_NAMES.get(i, f'dim{i}')}", [s[i] for s in shapes], going_on,
                                             [d[0] for d in going_on])
                             for i in range(len(shapes[0]))), "")
        # layers only some branches declare are None in the others
        cond_deps = frozenset().union(*[deps(d[0]) for d in done if d[0] is not None])
        for name in sorted(set().union(*[d[5] for d in done]) - set(before_layers), key=list(self.layers).index):
            for d in done:
                if name not in d[5] and not d[6]:
                    d[1].append("    " * (self.ii + 1) + _set_module(name, "None"))
                    self.maybe_layers[name] = self.maybe_layers.get(name, frozenset()) | cond_deps
        self._write_chain(done, before_layers)
        if seq is not None:
            return cur
        return bool(done) and all(d[4] for d in done) and done[-1][0] is None

    def _merge(self, key, values, live, conds):
        if all(isinstance(v, TVal) for v in values):
            # not a name another value of a branch still reads (an earlier `sp` in a list)
            name = self.fwd_target(key, set().union(*[_fwd_names(v) for d in live for k, v in d[3].items()
                                                     if k != key]))
            for d, v in zip(live, values):
                if v.fwd != name:
                    d[2].append("    " * (self.fi + 1) + f"{name} = {v.fwd}")
            shape = tuple(self._merge_dim(f"{key}_{_DIM_NAMES.get(i, f'dim{i}')}", [v.shape[i] for v in values],
                                          live, conds) for i in range(len(values[0].shape)))
            return TVal(shape, name)
        if any(isinstance(v, (TVal, SList, TTuple, TList)) for v in values):
            raise Untranslatable(frozenset().union(*[deps(c) for c in conds if c is not None]),
                                 "tensors that differ between the branches of an `if`")
        return self._merge_dim(key, values, live, conds)

    def _merge_dim(self, wanted, values, branches, conds):
        """One value after an `if` whose branches give `values`: a ternary inline, a variable in a class."""
        if all(same(values[0], v) for v in values[1:]):
            return values[0]
        cond_deps = frozenset().union(*[deps(c) for c in conds if c is not None])
        if any(isinstance(v, Missing) for v in values):
            return Missing(cond_deps | frozenset().union(*[deps(v) for v in values]))
        if self.inline:
            out = values[-1]
            for c, v in reversed(list(zip(conds[:len(values) - 1], values[:-1]))):
                out = ternary(c, v, out)
            return out
        referenced = set()
        for k, v in self.env.items():
            if k != wanted:
                referenced |= _dyn_names(v)
        reusable = [v.src for v in values if isinstance(v, Dyn) and v.src in self.shadows and v.src not in referenced]
        name = reusable[0] if reusable else self.ns.create(wanted)
        for d, v in zip(branches, values):
            if not (isinstance(v, Dyn) and v.src == name):
                d[1].append(Maybe(name, "    " * (self.ii + 1) + f"{name} = {src(v)}"))
        return Dyn(name, deps=cond_deps | frozenset().union(*[deps(v) for v in values]))

    def _write_chain(self, done, before_layers):
        pad_i, pad_f = "    " * self.ii, "    " * self.fi
        for i, d in enumerate(done):
            cond = d[0]
            head = "if" if i == 0 else ("elif" if cond is not None else "else")
            self.init.append(f"{pad_i}{head} {src(cond)}:" if cond is not None else f"{pad_i}else:")
            self.init.extend(d[1] or [f"{pad_i}    pass"])
        if self.inline or not any(_has_content(d[2]) for d in done):
            return
        # forward never runs where __init__ refused: its chain has the other branches, or one if they agree
        done = [d for d in done if not d[6]]
        if not done:
            return
        if all(d[2] == done[0][2] for d in done):
            self.fwd.extend(_dedent(done[0][2]))
            return
        if self.loop_deps is not None:
            raise Untranslatable(self.loop_deps | frozenset().union(*[deps(d[0]) for d in done if d[0] is not None]),
                                 "a condition in forward inside a loop of a block body")
        tests = []
        for d in done:
            # a layer of this branch alone, which an `if` inside it does not leave None, tells it apart
            own = [n for n in d[5] if n not in d[7] and all(n not in o[5] for o in done if o is not d)]
            # an `else` inside a branch of another `if` tests its layer too: where the outer branch is
            # not taken, every layer of the chain is None, and TorchScript compiles what it cannot rule out
            if d[0] is None and not (own and self.branch_depth):
                tests.append(None)
                continue
            if own:
                tests.append(f"{_module_attr(sorted(own, key=list(self.layers).index)[0])} is not None")
            else:
                attr = self.store(d[0], "use_branch")
                tests.append(attr)
        for i, (d, test) in enumerate(zip(done, tests)):
            head = "if" if i == 0 else ("elif" if test is not None else "else")
            self.fwd.append(f"{pad_f}{head} {test}:" if test is not None else f"{pad_f}else:")
            self.fwd.extend(d[2] or [f"{pad_f}    pass"])

    # ------------------------------------------------------------------ values for forward

    def store(self, v, hint: str) -> str:
        """`self.<attr>`: a value known at construction, kept on the module for forward."""
        v = fold(v)
        if isinstance(v, Const):
            return literal(v.value)
        if self.loop_deps is not None and LOCAL in deps(v):
            raise Untranslatable(self.loop_deps, "a value that changes in each iteration of a loop, read in forward")
        source = src(v)
        key = next(((source, scope) for scope in self.scopes if (source, scope) in self.stored),
                   (source, self.scopes[-1]))  # kept already, here or before the enclosing `if`
        if key not in self.stored and self.outer_inits and self._of_parameters(source):
            return self._store_first(source, hint)
        if key not in self.stored:
            wanted = source if source.isidentifier() else hint
            attr = self.stored.get(source) or self.attr_ns.create(wanted)
            self.stored[source] = attr
            self.stored[key] = attr
            self.emit_init(f"self.{attr} = {source}")
        return f"self.{self.stored[key]}"

    def _of_parameters(self, source: str) -> bool:
        """Whether `source` reads only constructor parameters that __init__ has not reassigned."""
        if "'" in source or '"' in source:
            return False
        names = set(re.findall(r"(?<![\w.])[A-Za-z_]\w*", source))
        return bool(names) and names <= {p.name for p in self.result.params} - self.assigned

    def _store_first(self, source: str, hint: str) -> str:
        """A value of the parameters kept on self at the top of __init__, not under the `if` or in the
        loop that needs it: every instance then has the attribute, as TorchScript requires of the
        branches it compiles but does not take."""
        top = self.outer_inits[0]
        found = [re.fullmatch(rf"self\.(\w+) = {re.escape(source)}", line) for line in top if isinstance(line, str)]
        attr = next((m.group(1) for m in found if m), None)
        if attr is None:
            attr = self.attr_ns.create(source if source.isidentifier() else hint)
            top.append(f"self.{attr} = {source}")
        self.stored[source] = self.stored[(source, 0)] = attr
        return f"self.{attr}"

    def fsrc(self, v, hint: str) -> str:
        """Forward source of a value known at construction (or of a size forward computes)."""
        v = fold(v)
        if isinstance(v, Missing) and v.fwd is not None:
            return v.fwd
        if isinstance(v, SList):
            return "[" + ", ".join(self.fsrc(i, hint) for i in v.items) + "]"
        return self.store(v, hint)

    # ------------------------------------------------------------------ expressions

    def eval(self, e):
        return getattr(self, "_e_" + type(e).__name__)(e)

    def _e_Literal(self, e):
        return Const(e.value)

    def _e_Name(self, e):
        return self.lookup(e.id)

    def lookup(self, name):
        if name in self.env:
            return self.env[name]
        if name in self.file.scope:
            defn = self.file.scope[name]
            if isinstance(defn, ast.Assign):
                return Const(self.gen.constant(defn))
            return Const(BlockRef(defn))
        if name in PRIMITIVES:
            return Const(BlockRef(PRIMITIVES[name]))
        raise Untranslatable((), f"unknown name {name}")

    def _e_ListExpr(self, e):
        return fold(SList([self.eval(i) for i in e.items]))

    def _e_ListComp(self, e):
        names = {n for c in e.clauses if isinstance(c, ast.CompFor) for n in target_names(c.target)}
        saved = {n: self.env.get(n, _MISSING) for n in names}
        try:
            out = self._unrolled(e, 0)
            if out is None:  # a list or a filter known only at construction
                return self._comprehension(e, strict=True)
            result = fold(SList(out))
            if isinstance(result, SList) and not any(isinstance(i, (TVal, TTuple, SList)) for i in out):
                written = self._comprehension(e)  # written as the spec writes it
                result.source = written.src if written is not None else None
            return result
        finally:
            for n, v in saved.items():
                if v is _MISSING:
                    self.env.pop(n, None)
                else:
                    self.env[n] = v

    def _unrolled(self, e, index):
        """The items of a comprehension from clause `index` on, or None where a list or a filter is
        not known when the class is written."""
        if index == len(e.clauses):
            return [self.eval(e.item)]
        clause = e.clauses[index]
        if isinstance(clause, ast.CompIf):
            cond = self.test(clause.cond)
            if not isinstance(cond, Const):
                return None
            return self._unrolled(e, index + 1) if cond.value else []
        items = self.items_of(fold(self.eval(clause.iterable)))
        if items is None:
            return None
        out = []
        for v in items:
            self.bind(clause.target, v)
            more = self._unrolled(e, index + 1)
            if more is None:
                return None
            out += more
        return out

    def _comprehension(self, e, strict=False):
        """The comprehension in Python, or None (strict: Untranslatable) where it cannot be written."""
        parts, found = [], frozenset()
        try:
            for clause in e.clauses:
                if isinstance(clause, ast.CompIf):
                    cond = self.test(clause.cond)
                    parts.append(f"if {wrap(*src_prec(cond), 1)}")
                    found |= deps(cond)
                    continue
                it = fold(self.eval(clause.iterable))
                var, names = self.loop_target(clause.target, it, fresh=True)
                parts.append(f"for {var} in {self.loop_iterable(it, clause.target)}")
                self.env.update(names)
                found |= deps(it)
            item = self.eval(e.item)
            if isinstance(item, (TVal, TTuple)):
                raise Untranslatable(found, "a list of tensors of a length fixed when the class is written")
            return Dyn(f"[{src(item)} {' '.join(parts)}]", ATOM, (deps(item) | found) - {LOCAL})
        except Untranslatable:
            if strict:
                raise
            return None

    def _e_Record(self, e):
        fields = {name: fold(self.eval(value)) for name, value in e.fields}
        if all(isinstance(v, Const) for v in fields.values()):
            return Const(Record({k: v.value for k, v in fields.items()}))
        return RVal(fields)

    def _e_BinOp(self, e):
        a, b = self.eval(e.left), self.eval(e.right)
        if isinstance(a, TList) and e.op == "+" and isinstance(b, SList) and all(isinstance(t, TVal) for t in b.items):
            total = a.shape[0]
            for t in b.items:
                total = binop("+", total, t.shape[0])
            return TList((total,) + a.shape[1:], f"{a.fwd} + [{', '.join(t.fwd for t in b.items)}]", PREC["+"])
        if isinstance(a, TVal) or isinstance(b, TVal):
            return self.tensor_op(e.op, a, b)
        return binop(e.op, a, b)

    def tensor_op(self, op, a, b):
        """As the elaborator's `_tensor_op`: arithmetic of tensors and numbers."""
        names = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
        if op == "**":
            return self.functional(PRIMITIVES["pow"], [a], {"exponent": b})
        if op == "@":
            return self.functional(PRIMITIVES["matmul"], [a, b], {})
        if op not in names:  # a comparison of a tensor: an error where elaboration took the branch
            raise Untranslatable(self.branch_deps, f"`{op}` of a tensor")
        if isinstance(a, TVal) and isinstance(b, TVal):
            return self.functional(PRIMITIVES[names[op]], [a, b], {})
        tensor, scalar = (a, b) if isinstance(a, TVal) else (b, a)
        return self.functional(PRIMITIVES[names[op]], [tensor], {"scalar": scalar, "scalar_first": Const(tensor is b)})

    def _e_UnaryOp(self, e):
        v = self.eval(e.operand)
        if isinstance(v, TVal):
            return self.functional(PRIMITIVES["neg"], [v], {})
        return not_(v) if e.op == "not" else neg(v)

    def _e_BoolOp(self, e):
        left = truth(self.eval(e.left))
        if isinstance(left, Const) and left.value == (e.op == "or"):
            return left
        return boolop(e.op, left, self.eval(e.right))

    def test(self, e):
        """The value of `e` where an `if`, an `assert` or a conditional expression tests it: there
        Python's truth is the spec's, so neither it nor the operands of its `and`, `or` and `not` need
        a `bool()` (`if start_with_relu or i > 0:`)."""
        if isinstance(e, ast.BoolOp):
            left = self.test(e.left)
            if isinstance(left, Const) and bool(left.value) == (e.op == "or"):
                return Const(bool(left.value))
            return boolop(e.op, left, self.test(e.right), tested=True)
        if isinstance(e, ast.UnaryOp) and e.op == "not":
            return not_(self.test(e.operand))
        return condition(self.eval(e))

    def _e_Ternary(self, e):
        cond = self.test(e.cond)
        if isinstance(cond, Const):
            return self.eval(e.then if cond.value else e.orelse)
        then, orelse = self.eval(e.then), self.eval(e.orelse)
        if isinstance(then, (TVal, TTuple)) or isinstance(orelse, (TVal, TTuple)):
            raise Untranslatable(deps(cond), "a choice between tensors")
        return ternary(cond, then, orelse)

    def _e_Index(self, e):
        target, index = fold(self.eval(e.target)), fold(self.eval(e.index))
        if isinstance(target, TTuple):
            target = SList([TVal(s, f"{target.fwd}[{i}]") for i, s in enumerate(target.shapes)])
        if isinstance(index, Const):
            if isinstance(target, Const):
                return Const(target.value[index.value])
            if isinstance(target, SList):
                return target.items[index.value]
        if isinstance(target, SList) and any(isinstance(i, TVal) for i in target.items):
            raise Untranslatable(deps(index), "a tensor chosen by an index known only at construction")
        (t, tp), (i, _) = src_prec(target), src_prec(index)
        return Dyn(f"{wrap(t, tp, ATOM)}[{i}]", ATOM, deps(target) | deps(index))

    def _e_Slice(self, e):
        target = fold(self.eval(e.target))
        bounds = [None if b is None else fold(self.eval(b)) for b in (e.start, e.stop)]
        if all(b is None or isinstance(b, Const) for b in bounds):
            lo, hi = [None if b is None else b.value for b in bounds]
            if isinstance(target, Const):
                return Const(target.value[lo:hi])
            if isinstance(target, SList):
                return fold(SList(target.items[lo:hi]))
        if isinstance(target, SList) and any(isinstance(i, TVal) for i in target.items):
            raise Untranslatable(frozenset().union(*[deps(b) for b in bounds if b is not None]),
                                 "a slice of tensors known only at construction")
        t, tp = src_prec(target)
        lo, hi = ["" if b is None else src(b) for b in bounds]
        all_deps = deps(target).union(*[deps(b) for b in bounds if b is not None])
        return Dyn(f"{wrap(t, tp, ATOM)}[{lo}:{hi}]", ATOM, all_deps)

    def _e_Attr(self, e):
        target = fold(self.eval(e.target))
        if isinstance(target, Const) and isinstance(target.value, Record):
            return Const(target.value.fields[e.name])
        if isinstance(target, RVal):
            return target.fields[e.name]
        if isinstance(target, Dyn) and not target.classes:  # a record known at construction: a dict
            return Dyn(f"{wrap(target.src, target.prec, ATOM)}[{e.name!r}]", ATOM, target.deps)
        if not isinstance(target, TVal):
            raise Untranslatable(deps(target), "an attribute of a value that is not a tensor")
        if e.name == "shape":
            return fold(SList([self.forward_size(target, i) for i in range(len(target.shape))]))
        return self.forward_size(target, {"channels": 0, "height": 1, "width": 2}[e.name])

    def forward_size(self, t: TVal, i: int):
        """Dimension i of tensor t; one known only when t exists is read from it in forward, into a
        variable written where the spec reads it (`x_height = x.shape[2]`), kept if forward uses it."""
        d = t.shape[i]
        if not isinstance(d, Missing) or d.fwd is not None or self.inline or not t.fwd.isidentifier():
            return d
        key = (id(self.fwd), id(t), i)  # read once per tensor in a run of forward lines at one level
        if key not in self.sizes:
            what = ("channels", "height", "width")[i] if len(t.shape) == 3 else f"size{i + 1}"
            name = self.ns.create(f"{t.fwd}_{what}")
            self.emit_fwd(Maybe(name, f"{name} = {t.fwd}.shape[{i + 1}]"))
            self.sizes[key] = (t, self.fwd, Missing(d.deps, name))
        return self.sizes[key][2]

    def _e_Pipe(self, e):
        source = self.eval(e.source)
        return self.apply_item(e.layer, source)

    def _e_Call(self, e):
        name = e.func
        if name in self.layers and name not in self.env:
            (arg,) = [self.eval(a.value) for a in e.args]
            return self.reapply(name, arg)
        if name not in self.env and isinstance(self.file.scope.get(name), ast.FnDef):
            return self.fn_call(self.file.scope[name], e)
        if name in BUILTINS:
            values = [fold(self.eval(a.value)) for a in e.args]
            if name in PRIMITIVES and values and isinstance(values[0], TVal):
                return self.call_primitive(PRIMITIVES[name], e, values)
            return self.builtin(name, values)
        if name not in PRIMITIVES:  # in a branch these arguments do not take, so elaboration did not see it
            raise Untranslatable(self.branch_deps, f"unknown function {name}")
        return self.call_primitive(PRIMITIVES[name], e)

    def builtin(self, name, args):
        if all(isinstance(a, Const) for a in args):
            try:
                return Const(BUILTINS[name].fn(*[a.value for a in args]))
            except Exception:  # noqa: BLE001 - as in binop: raised by Python where it runs
                pass
        if name == "len" and isinstance(args[0], SList):
            return Const(len(args[0].items))
        if name in ("zip", "enumerate", "list"):
            return self.list_builtin(name, args)
        if name == "str":
            raise Untranslatable(deps(args[0]), "`str` of a value known only at construction")
        if name in ("ceil", "floor", "sqrt", "log", "log2", "exp"):
            self.result.uses.add("math")
            return call(f"math.{name}", args)
        return call(name, args)

    def list_builtin(self, name, args):
        """`zip`, `enumerate` and `list`: a list of known length where the lists are, else Python's,
        with lists for items as in the spec (`list(map(list, zip(a, b)))`)."""
        lists = [self.items_of(a) for a in (args[:1] if name != "zip" else args)]
        start = args[1] if name == "enumerate" and len(args) > 1 else Const(0)
        if all(items is not None for items in lists) and isinstance(start, Const):
            if name == "list":
                return fold(SList(lists[0]))
            if name == "zip":
                return fold(SList([fold(SList(list(t))) for t in zip(*lists)]))
            return fold(SList([fold(SList([Const(start.value + i), v])) for i, v in enumerate(lists[0])]))
        return call("list", [Dyn(f"map(list, {src(call(name, args))})", ATOM, frozenset().union(
            *[deps(a) for a in args]))]) if name != "list" else call("list", args)

    def fn_call(self, defn: ast.FnDef, e: ast.Call):
        """A fn called: its value where the arguments are constants, else a call of the function
        of the generated module it is written as."""
        args = [(a.name, fold(self.eval(a.value))) for a in e.args]
        if all(isinstance(v, Const) for _, v in args):
            value = self.gen.fold_fn(defn, [(n, v.value) for n, v in args])
            if value is not _MISSING:
                return Const(value)
        info = self.gen.fn_info(defn, used=not self.inline)
        found = frozenset().union(*[deps(v) for _, v in args]) if args else frozenset()
        if info.failure is not None:
            raise Untranslatable(found, f"fn `{defn.name}` cannot be written in Python: {info.failure}")
        values = self.bind_params(defn, args)
        given = {n or defn.params[i].name for i, (n, _) in enumerate(args)}
        parts, skipped = [], False
        for p, (python, default) in zip(defn.params, info.params):
            if p.name not in given and default is not None:
                skipped = True
                continue
            parts.append(f"{python}={src(values[p.name])}" if skipped else src(values[p.name]))
        return Dyn(f"{info.name}({', '.join(parts)})", ATOM, frozenset().union(
            *[deps(values[p.name]) for p in defn.params]) if defn.params else frozenset())

    # ------------------------------------------------------------------ tensors

    def functional(self, prim: Primitive, tensors: list, attrs: dict):
        """A primitive applied in forward without a module."""
        tensors = [self.as_tensor(t) for t in tensors]
        for p in prim.params:
            attrs.setdefault(p.name, Const(p.default if p.default is not REQUIRED else None))
        batched = [t.batched for t in tensors]
        if len(tensors) > 1 and not all(batched):
            attrs["batched"] = Const(batched)
        attrs = with_inferred(prim, attrs, tensors[0].shape)
        shape = sym_shape(prim, attrs, [t.shape for t in tensors])
        if prim.name == "chunk":
            self.require_divisible(tensors[0].shape[dim_index(attrs["dim"].value, tensors[0].shape, "chunk")],
                                   attrs["chunks"], "chunk")
        if prim.name in _OPERATORS:
            return TVal(shape, *self.operator_source(prim, tensors, attrs), batched=any(batched))
        sources = [wrap(t.fwd, t.prec, ATOM) if prim.method else t.fwd for t in tensors]
        source = prim.functional(_Args(self, prim, attrs, forward=True), sources)
        if prim.inputs == "list":
            return TTuple(shape, source)
        return TVal(shape, source, batched=any(batched))

    def require_divisible(self, size, parts, op: str):
        """A check in __init__ that `parts` divides `size`, where the spec's shape rule requires it and
        torch would not (torch.chunk rounds up): the class refuses what the spec refuses."""
        size, parts = fold(size), fold(parts)
        if isinstance(size, Const) and isinstance(parts, Const) or isinstance(size, Missing):
            return
        message = f"{src(size)} must be divisible by {src(parts)}: the spec's {op} splits it into {src(parts)} parts"
        self.emit_init(f"if {wrap(*src_prec(size), PREC['%'])} % {wrap(*src_prec(parts), PREC['%'] + 1)}:")
        self.emit_init(f"    raise ValueError({message!r})")

    def operator_source(self, prim, tensors, attrs):
        """(source, precedence) of `a + b`, `x * 0.5`, `1 - x`, `-x`, `x ** 2`, with the least parentheses."""
        symbol, prec = _OPERATORS[prim.name]
        if prim.name == "neg":
            return f"-{wrap(tensors[0].fwd, tensors[0].prec, prec)}", prec
        operands = [(t.fwd, t.prec) for t in tensors]
        scalar = fold(attrs.get("scalar", Const(None)))
        if prim.name == "pow":
            scalar = fold(attrs["exponent"])
        if not (isinstance(scalar, Const) and scalar.value is None):
            source = self.fsrc(scalar, f"{prim.name}_operand")
            operand = (source, src_prec(scalar)[1] if isinstance(scalar, Const) else ATOM)
            first = fold(attrs.get("scalar_first", Const(False)))
            operands = [operand] + operands if isinstance(first, Const) and first.value else operands + [operand]
        if prim.name == "pow":  # right-associative
            (a, ap), (b, bp) = operands
            return f"{wrap(a, ap, prec + 1)} ** {wrap(b, bp, PREC['neg'])}", prec
        parts = [wrap(operands[0][0], operands[0][1], prec)]
        parts += [wrap(x, xp, prec + 1) for x, xp in operands[1:]]
        return f" {symbol} ".join(parts), prec

    def as_tensor(self, v):
        if isinstance(v, TVal):
            return v
        raise Untranslatable(deps(v), "a tensor expected")

    def call_primitive(self, prim: Primitive, e: ast.Call, values=None):
        tensors, rest = [], []
        if values is None:
            values = [self.eval(a.value) for a in e.args]
        for a, v in zip(e.args, values):
            if isinstance(v, TList):  # `concat(features)`: the list itself, concatenated on channels
                attrs = bind_primitive(prim, [(x.name, self.eval(x.value)) for x in e.args[1:]])
                if prim.name != "concat" or len(e.args) != 1 + len(e.args[1:]) or attrs["dim"] != Const(1):
                    raise Untranslatable(deps(v) | {LOCAL}, f"`{prim.name}` of a list of tensors a loop grows")
                return TVal(v.shape, f"torch.cat({v.fwd}, 1)")
            if isinstance(v, TTuple):
                v = SList([TVal(s, f"{v.fwd}[{i}]") for i, s in enumerate(v.shapes)])
            is_tensors = isinstance(v, TVal) or (isinstance(v, SList) and v.items
                                                 and all(isinstance(t, TVal) for t in v.items))
            if a.name is None and is_tensors and not rest:
                tensors.extend(v.items if isinstance(v, SList) else [v])
            else:
                rest.append((a.name, v))
        attrs = bind_primitive(prim, rest)
        return self.functional(prim, tensors, attrs)

    def reapply(self, name: str, x):
        prim, attrs = self.layers[name]
        x = self.as_tensor(x)
        attrs = with_inferred(prim, attrs, x.shape)
        return TVal(sym_shape(prim, attrs, [x.shape]), f"{_module_attr(name)}({x.fwd})")

    def apply_stage(self, stage, x: TVal) -> TVal:
        kind, node = stage
        if kind == "pipe":
            return self.apply_item(node, x)
        if node.func in self.layers and node.func not in self.env:
            return self.reapply(node.func, x)
        prim = PRIMITIVES[node.func]
        rest = [(a.name, self.eval(a.value)) for a in node.args[1:]]
        return self.functional(prim, [x], bind_primitive(prim, rest))

    def apply_item(self, item: ast.LayerItem, x, seq: Optional[_Seq] = None, def_name=None):
        """`name: target` applied to x in a block body, or added to `seq` (then only the shape flows).
        A list of tensors goes into a block (the elaborator refuses it elsewhere) as a Python list."""
        if isinstance(x, TTuple):
            x = SList([TVal(s, f"{x.fwd}[{i}]") for i, s in enumerate(x.shapes)])
        if isinstance(x, SList) and x.items and all(isinstance(t, TVal) for t in x.items):
            total = x.items[0].shape[0]
            for t in x.items[1:]:
                total = binop("+", total, t.shape[0])
            x = TList((total,) + tuple(x.items[0].shape[1:]), f"[{', '.join(t.fwd for t in x.items)}]")
        if not isinstance(x, TList):
            x = self.as_tensor(x)
        name = self.layer_name(item.name, seq) if item.name else def_name
        target = item.target
        if isinstance(target, ast.Name):
            if seq is None and target.id in self.layers and name is None and target.id not in self.env:
                return self.reapply(target.id, x)
            target = ast.Call(target.id, [], target.span, target.span)
        if isinstance(target, ast.Seq):
            return self.apply_seq(target, name, x, seq)
        if isinstance(target, ast.ValueCall):
            return self.apply_value(target, name, x, seq)
        return self.apply_call(target, name, x, seq)

    def apply_value(self, c: ast.ValueCall, name, x: TVal, seq):
        """A block, def or primitive held in a value, applied (`row.kind(row.out)`)."""
        value = fold(self.eval(c.func))
        args = [(a.name, self.eval(a.value)) for a in c.args]
        if isinstance(value, Dyn) and value.classes:
            return self.class_call(value, args, name, x, seq)
        if not (isinstance(value, Const) and isinstance(value.value, BlockRef)):
            raise Untranslatable(deps(value), "a layer chosen by a value known only at construction")
        return self.apply_target(value.value.defn, args, name, x, seq)

    def layer_name(self, ln: ast.LayerName, seq):
        parts = [p if isinstance(p, str) else fold(self.eval(p)) for p in ln.parts]
        if all(isinstance(p, (str, Const)) for p in parts):
            return "".join(p if isinstance(p, str) else format_value(p.value) for p in parts)
        found = frozenset().union(*[deps(p) for p in parts if not isinstance(p, str)])
        if seq is None and self.loop_deps is None:
            raise Untranslatable(found, "a layer name known only at construction, outside a loop")
        return Dyn(_fstring(parts), ATOM, found)

    def apply_call(self, c: ast.Call, name, x: TVal, seq):
        fname = c.func
        value = self.env.get(fname)
        target = None
        if isinstance(value, Const) and isinstance(value.value, BlockRef):
            target = value.value.defn
        elif isinstance(value, Dyn) and value.classes:
            return self.class_call(value, [(a.name, self.eval(a.value)) for a in c.args], name, x, seq)
        elif value is not None and fname not in self.file.scope and fname not in PRIMITIVES:
            # a layer parameter (`act = relu`) not yet fixed: fix it (a `dropout` parameter is a value)
            raise Untranslatable(deps(value), "a layer chosen by a value known only at construction")
        elif fname in self.file.scope:
            target = self.file.scope[fname]
            if isinstance(target, ast.Assign):
                target = self.gen.constant(target).defn
        elif fname in PRIMITIVES:
            target = PRIMITIVES[fname]
        else:  # in a branch these arguments do not take, so elaboration did not see it
            raise Untranslatable(self.branch_deps, f"unknown layer {fname}")
        return self.apply_target(target, [(a.name, self.eval(a.value)) for a in c.args], name, x, seq)

    def apply_target(self, target, args, name, x: TVal, seq):
        if isinstance(target, ast.LayerDef):
            return self.expand_def(target, args, name, x, seq)
        if isinstance(target, ast.BlockDef):
            return self.block_call(target, args, name, x, seq)
        return self.apply_primitive(target, args, name, x, seq)

    def expand_def(self, defn: ast.LayerDef, args, name, x, seq):
        """A def that makes a module is a call of its helper function (`conv3x3(in_channels, planes)`, as
        torchvision writes); one that is an op of forward is written in place."""
        values = self.bind_params(defn, args)
        saved = self.env, self.file
        self.env, self.file = values, defn.file
        try:
            item = defn.layer
            inner = name
            if inner is None and item.name is not None:
                inner = self.layer_name(item.name, seq)
            if self.inline or (seq is None and inner is None):
                return self.apply_item(ast.LayerItem(None, item.target, item.span), x, seq, def_name=inner)
        finally:
            self.env, self.file = saved
        info = self.gen.function_for(defn, values, x.shape)
        shape, layer = self.gen.def_output(defn, info, values, x.shape)
        given = {n or [p.name for p in defn.params][i] for i, (n, _) in enumerate(args)}
        module = f"{info.name}({', '.join(self._call_args(info, values, given, x))})"
        if inner == RESULT:
            self.result.returns = info.source.returns
        return self.declare(inner, module, x, shape, seq, *layer)

    def _call_args(self, info, values, given, x) -> list:
        """Arguments of a call of a generated class or helper: input channels and required ones by
        position, the others by keyword where the spec gives them."""
        parts, positional = [], True
        for sig in info.source.params:
            value = x.shape[0] if sig.spec == "" else values.get(sig.spec)
            positional = positional and sig.default is None
            if positional:
                parts.append(src(value))
            elif sig.spec == "" or sig.spec in given:
                parts.append(f"{sig.name}={src(value)}")
        return parts

    def bind_params(self, defn, args) -> dict:
        """{param: value} for a def or block called with `args`, defaults evaluated as the elaborator does."""
        names = [p.name for p in defn.params]
        given = {}
        positional = [v for n, v in args if n is None]
        for n, v in zip(names, positional):
            given[n] = v
        for n, v in args:
            if n is not None:
                given[n] = v
        env = {}
        saved = self.env, self.file
        self.env, self.file = env, defn.file
        try:
            for p in defn.params:
                if p.name not in given and p.default is None:  # elaboration never took this call's branch
                    raise Untranslatable(self.branch_deps, f"`{defn.name}` called without `{p.name}`")
                env[p.name] = given[p.name] if p.name in given else self.eval(p.default)
        finally:
            self.env, self.file = saved
        return env

    def block_call(self, defn: ast.BlockDef, args, name, x: TVal, seq):
        values = self.bind_params(defn, args)
        given = {n or [p.name for p in defn.params][i] for i, (n, _) in enumerate(args)}
        listed = isinstance(x, TList)
        info = self.gen.class_for(defn, values, x.shape, listed)
        out_shape = self.gen.output_shape(defn, info, values, x.shape)
        module = "" if self.inline else f"{info.name}({', '.join(self._call_args(info, values, given, x))})"
        if name == RESULT:
            self.result.returns = info.name
        return self.declare(name, module, x, out_shape, seq)

    def class_call(self, kind: Dyn, args, name, x: TVal, seq):
        """A block passed as a value, called (`kind(planes, stride)` with `kind` a parameter): the
        candidates' common signature, and the width from their `out_channels`."""
        candidates = sorted((self.gen.blocks[i] for i in kind.classes), key=lambda b: b.name)
        if any([p.name for p in c.params] != [p.name for p in candidates[0].params] for c in candidates):
            raise Untranslatable(kind.deps, "blocks of different parameters passed as one class")
        bound = [self.bind_params(c, args) for c in candidates]
        infos = [self.gen.class_for(c, v, x.shape) for c, v in zip(candidates, bound)]
        signature = [[(s.spec, s.default is None) for s in i.source.params] for i in infos]
        if any(i.fixed for i in infos) or any(s != signature[0] for s in signature):
            raise Untranslatable(kind.deps, "blocks written for fixed values, or of different signatures")
        values = bound[0]
        given = {n or [p.name for p in candidates[0].params][i] for i, (n, _) in enumerate(args)}
        uses = frozenset()
        for c in candidates:
            width = self.gen.width_of(c)
            if isinstance(width, Missing) or LOCAL in deps(width):
                raise Untranslatable(kind.deps, "a block passed as a class whose width is not its arguments'")
            uses |= deps(width) & ({p.name for p in c.params} | {IN})
        for u in uses - {IN}:
            if u not in given and not all(same(v[u], values[u]) for v in bound):
                raise Untranslatable(kind.deps, "blocks passed as one class with different defaults")
        for c in candidates:
            self.gen.width_params.setdefault(id(c), set()).update(uses)
        names = {s.spec or IN: s.name for s in infos[0].source.params}
        width_args = [f"{names[u]}={src(x.shape[0] if u == IN else values[u])}" for u in sorted(uses)]
        width_deps = kind.deps.union(*[deps(x.shape[0] if u == IN else values[u]) for u in uses])
        out_shape = (Dyn(f"{kind.src}.out_channels({', '.join(width_args)})", deps=width_deps),) + tuple(
            Missing(kind.deps | {SPATIAL}) for _ in x.shape[1:])
        module = "" if self.inline else f"{kind.src}({', '.join(self._call_args(infos[0], values, given, x))})"
        if name == RESULT:
            self.result.returns = "nn.Module"
        return self.declare(name, module, x, out_shape, seq)

    def declare(self, name, module: str, x: TVal, out_shape, seq, prim=None, attrs=None):
        """A module `name` of the class (or the next child of `seq`), applied to x."""
        if seq is not None:
            seq.add(None if name is None else (_pystr(name) if isinstance(name, str) else name.src), module)
            return TVal(out_shape, "")
        if name == RESULT:  # a helper function's module
            self.emit_init(f"return {module}")
            self.layers[name] = (prim, attrs)
            return TVal(out_shape, "")
        if name is None:  # an error of a branch no instance takes: the class keeps to those taken
            raise Untranslatable(self.branch_deps, "an unnamed layer with weights, in a branch not taken")
        if isinstance(name, Dyn):  # a layer per iteration of a Python loop: blk{i}
            self.emit_init(f"self.add_module({name.src}, {module})")
            return TVal(out_shape, f"getattr(self, {name.src})({x.fwd})")
        if self.loop_deps is not None:
            raise Untranslatable(self.loop_deps, "a layer declared in every iteration of a loop under one name")
        if name in self.maybe_layers:  # declared before under a condition, and again here
            raise Untranslatable(self.maybe_layers[name], f"`{name}` declared under more than one condition")
        if name not in self.layers:
            self.emit_init(_set_module(name, module))
        self.layers[name] = (prim, attrs)
        return TVal(out_shape, f"{_module_attr(name)}({x.fwd})")

    def declare_parameter(self, s: ast.ParamDecl) -> TVal:
        """`self.gamma = nn.Parameter(torch.full((dim, 1, 1), init))`, or a registered buffer."""
        kind = INITIALIZERS[s.init.func]
        names = ["shape"] + [p.name for p in kind.params]
        given = dict(zip(names, [self.eval(a.value) for a in s.init.args if a.name is None]))
        given.update({a.name: self.eval(a.value) for a in s.init.args if a.name is not None})
        shape = fold(given["shape"])
        if isinstance(shape, Const) and is_int(shape.value):
            shape = Const([shape.value])
        if isinstance(shape, Const):
            dims = [Const(d) for d in shape.value]
        elif isinstance(shape, SList):
            dims = shape.items
        else:
            raise Untranslatable(deps(shape), "a parameter whose rank is known only at construction")
        if self.loop_deps is not None:
            raise Untranslatable(self.loop_deps, "a parameter declared in every iteration of a loop")
        sizes = ", ".join(src(d) for d in dims)
        args = {p.name: fold(given.get(p.name, Const(p.default))) for p in kind.params}
        if kind.name == "full":
            tensor = f"torch.full(({sizes}{',' if len(dims) == 1 else ''}), {src(args['value'])})"
        else:
            tensor = f"torch.{kind.name if kind.name in ('zeros', 'ones') else 'empty'}({sizes})"
        if s.buffer:
            self.emit_init(f"self.register_buffer({s.name!r}, {tensor})")
        else:
            self.emit_init(f"self.{s.name} = nn.Parameter({tensor})")
        if kind.name in ("normal", "trunc_normal"):
            extra = [f"{k}={src(args[k])}" for k in ("mean", "std")
                     if not (isinstance(args[k], Const) and args[k].value == {"mean": 0.0, "std": 1.0}[k])]
            self.emit_init(f"nn.init.{kind.name}_({', '.join([f'self.{s.name}'] + extra)})")
        self.layers[s.name] = (None, None)
        return TVal(tuple(dims), f"self.{s.name}", batched=False)

    def apply_primitive(self, prim: Primitive, args, name, x: TVal, seq):
        tensors = [v for _, v in args if isinstance(v, TVal) or (isinstance(v, SList) and any(
            isinstance(i, TVal) for i in v.items))]
        if prim.inputs != "one" and prim.torch_class is None:
            extra = []
            for t in tensors:
                extra.extend(t.items if isinstance(t, SList) else [t])
            rest = [(n, v) for n, v in args if not any(v is t for t in tensors)]
            return self.functional(prim, [x] + extra, bind_primitive(prim, rest))
        attrs = bind_primitive(prim, args)
        if prim.torch_class is None or (name is None and seq is None):
            return self.functional(prim, [x], attrs)
        attrs = with_inferred(prim, attrs, x.shape)
        shape = sym_shape(prim, attrs, [x.shape])
        module = ""
        if not self.inline:
            module = f"{prim.module_class}({prim.ctor(_Args(self, prim, attrs), x.shape)})"
        if name == RESULT:
            self.result.returns = prim.module_class
        return self.declare(name, module, x, shape, seq, prim, attrs)

    # ------------------------------------------------------------------ seqs

    def apply_seq(self, node: ast.Seq, name, x: TVal, parent: Optional[_Seq]):
        builder = _Seq(self, name if isinstance(name, str) and parent is None and name != RESULT else "layers")
        if name == RESULT:
            self.result.returns = "nn.Sequential"
        cur = self.seq_body(node.body, TVal(x.shape, ""), builder)
        module = builder.finish(self.ii + (1 if parent is not None else 0)) if not self.inline else ""
        return self.declare(name, module, x, cur.shape, parent)

    def seq_body(self, stmts, cur: TVal, seq: _Seq) -> TVal:
        self.live_curs.append(cur)
        try:
            return self._seq_statements(stmts, cur, seq)
        finally:
            self.live_curs.pop()

    def _seq_statements(self, stmts, cur: TVal, seq: _Seq) -> TVal:
        for s in stmts:
            self.live_curs[-1] = cur
            if isinstance(s, ast.LayerStmt):
                saved = self.env
                cur = self.apply_item(s.item, cur, seq)
                self.env = saved
            elif isinstance(s, (ast.Assign, ast.Unpack)):
                target = s.target if isinstance(s, ast.Assign) else s.targets
                for name, value in self.leaves(target, self.eval(s.value)):
                    if isinstance(value, Dyn) and seq.var is not None:
                        python = self.init_target(name)
                        if value.src != python:
                            self.emit_init(Maybe(python, f"{python} = {value.src}"))
                        value = Dyn(python, ATOM, value.deps, value.boolean)
                    self.env[name] = value
            elif isinstance(s, ast.Assert):
                self.assert_stmt(s)
            elif isinstance(s, ast.For):
                cur = self.seq_for(s, cur, seq)
            elif isinstance(s, ast.If):
                cur = self.if_stmt(s, self.seq_body, cur, seq)
            elif isinstance(s, ast.Fail):
                self.emit_init(self.refusal(s))
                self.refused = True
        return cur

    def refusal(self, s: ast.Fail) -> str:
        """`raise ValueError(...)` for the spec's `error(...)`: a class refuses what its spec refuses."""
        parts = [p if isinstance(p, str) else fold(self.eval(p)) for p in s.parts]
        if all(isinstance(p, (str, Const)) for p in parts):
            return f"raise ValueError({_pystr(''.join(p if isinstance(p, str) else format_value(p.value) for p in parts))})"
        return f"raise ValueError({_fstring(parts)})"

    def seq_for(self, s: ast.For, cur: TVal, seq: _Seq) -> TVal:
        it = fold(self.eval(s.iterable))
        items = self.items_of(it)
        if items is not None:
            for v in items:
                self.bind(s.var, v)
                cur = self.seq_body(s.body, cur, seq)
            return cur
        seq.go_dynamic()
        # what this loop's variables feed: a def's arguments may depend on the caller's loop (LOCAL)
        mark = frozenset({f"@loop{id(s)}"})
        var, loop_var = self.loop_target(s.var, it, mark=mark)
        carried = sorted(n for n in _assigned(s.body, seqs=True) if n in self.env)
        dims = [i for i, d in enumerate(cur.shape) if not isinstance(d, Missing)]
        # first pass: every dimension in a variable, to see which ones the body changes
        names = set(self.ns.used), set(self.fns.used), dict(self.pynames), dict(self.stored)
        _, end, assigned = self._loop_pass(s, cur, seq, loop_var, {i: f"@{i}" for i in dims}, carried, it, mark)
        self.ns.used, self.fns.used, self.pynames, self.stored = names
        changed = {i: None for i in dims if not same(end.shape[i], cur.shape[i]) and (
            not (isinstance(end.shape[i], Dyn) and end.shape[i].src == f"@{i}") or f"@{i}" in assigned)}
        referenced = set()
        for k, v in self.env.items():
            referenced |= _dyn_names(v)
        for i in changed:
            d = cur.shape[i]
            if self.inline:
                changed[i] = f"@{i}"
            elif isinstance(d, Dyn) and d.src in self.shadows and d.src not in referenced:
                changed[i] = d.src  # the variable a loop before left: nothing else reads it
            else:
                changed[i] = self.ns.create(_DIM_NAMES.get(i, f"dim{i}"))
                self.shadows.add(changed[i])
        for i, name in changed.items():
            if not self.inline and src(cur.shape[i]) != name:
                self.emit_init(Maybe(name, f"{name} = {src(cur.shape[i])}"))
        for n in carried:
            value = self.env[n]
            name = self.pyname(n)
            if not self.inline and not (isinstance(value, Dyn) and value.src == name):
                self.emit_init(Maybe(name, f"{name} = {src(value)}"))
        lines, end, _ = self._loop_pass(s, cur, seq, loop_var, changed, carried, it, mark)
        self.emit_init(f"for {var} in {self.loop_iterable(it, s.var)}:")
        self.init.extend(lines)
        for n in carried + sorted(n for n in _assigned(s.body, seqs=True) if n not in carried):
            self.env[n] = Dyn(self.pyname(n), deps=deps(it) | {LOCAL})
        shape = list(cur.shape)
        for i, name in changed.items():
            if self.inline:
                d = end.shape[i]
                shape[i] = d if not (mark & deps(d)) else Missing(deps(d) | deps(it))
            else:
                shape[i] = Dyn(name, deps=deps(it) | deps(end.shape[i]) | deps(cur.shape[i]))
        return TVal(tuple(shape), "")

    def _loop_pass(self, s, cur, seq, loop_var, shadows: dict, carried, it, mark=frozenset()):
        saved_env = dict(self.env)
        shape = list(cur.shape)
        for i, name in shadows.items():
            shape[i] = Dyn(name, deps=deps(it) | deps(cur.shape[i]) | {LOCAL} | mark)
        self.env.update(loop_var)
        for n in carried:
            self.env[n] = Dyn(self.pyname(n), deps=deps(it) | deps(self.env[n]) | {LOCAL} | mark)
        assigned = set()
        with self.capture() as (init, _):
            end = self.seq_body(s.body, TVal(tuple(shape), ""), seq)
            updates = [(self.pyname(n), self.env[n]) for n in carried]
            updates += [(name, end.shape[i]) for i, name in shadows.items() if not name.startswith("@")]
            self.emit_init_updates(updates)
        for line in init:
            text = line.line if isinstance(line, Maybe) else (line.render() if isinstance(line, _Add) else line)
            for name in shadows.values():
                if re.match(rf"\s*{re.escape(name)} = ", text):
                    assigned.add(name)
        self.env = saved_env
        return init, end, assigned

    def sequential(self, items, indent: int) -> str:
        """`nn.Sequential(...)` of known children; named ones as torchvision's OrderedDict."""
        pad = "    " * indent
        if all(name is None for name, _ in items):
            runs = []
            for _, module in items:
                if runs and runs[-1][0] == module:
                    runs[-1][1] += 1
                else:
                    runs.append([module, 1])
            body = [m if n == 1 else f"*[{m} for _ in range({n})]" for m, n in runs]
            if len(body) == 1 and "\n" not in body[0] and len(body[0]) < 80:
                return f"nn.Sequential({body[0]})"
            return "nn.Sequential(\n" + "".join(f"{pad}    {b},\n" for b in body) + f"{pad})"
        self.result.uses.add("OrderedDict")
        body = "".join(f"{pad}    ({name if name is not None else repr(str(i))}, {m}),\n"
                       for i, (name, m) in enumerate(items))
        return "nn.Sequential(OrderedDict([\n" + body + f"{pad}]))"


@dataclass
class FnSource:
    """A fn written as a function of the generated module."""
    defn: object  # ast.FnDef
    name: str
    params: list = field(default_factory=list)  # (Python name, default source or None), in order
    lines: list = field(default_factory=list)  # the function's source, `def` line first
    uses: set = field(default_factory=set)
    calls: set = field(default_factory=set)  # id()s of the fns it calls
    failure: Optional[str] = None  # why it cannot be written
    used: bool = False  # called by a class of the module


class FnTranslator(Translator):
    """Writes a fn as a Python function: every local a Python variable, every statement one of
    Python's. Expressions are translated as in a class, over the function's parameters."""

    def __init__(self, gen, info: FnSource):
        self.gen, self.info, self.file = gen, info, info.defn.file
        self.inline, self.loop_deps = False, None
        self.env, self.layers, self.pynames = {}, {}, {}
        self.ns = Namespace()
        self.result = ClassSource()

    def write(self):
        info, defn = self.info, self.info.defn
        for p in defn.params:
            self.env[p.name] = Dyn(self.pyname(p.name), deps=frozenset({LOCAL}))
        # a trailing run of constant defaults is the signature's; the others are always passed
        defaults = [fold(self.eval(p.default)) if p.default is not None else None for p in defn.params]
        trailing = len(defn.params)
        while trailing and isinstance(defaults[trailing - 1], Const) \
                and not isinstance(defaults[trailing - 1].value, BlockRef):
            trailing -= 1
        info.params = [(self.pyname(p.name), literal(d.value) if i >= trailing else None)
                       for i, (p, d) in enumerate(zip(defn.params, defaults))]
        signature = ", ".join(n if d is None else f"{n}={d}" for n, d in info.params)
        body = self.body(defn.body, 1)
        info.lines = [f"def {info.name}({signature}):"] + body
        info.uses = self.result.uses

    def body(self, stmts, level) -> list:
        pad, out = "    " * level, []
        for s in stmts:
            if isinstance(s, ast.Return):
                out.append(f"{pad}return {src(self.eval(s.value))}")
            elif isinstance(s, ast.Assert):
                out += [f"{pad}if {src(self.negation(s.cond))}:", f"{pad}    {self.refusal(s.failure)}"]
            elif isinstance(s, (ast.Assign, ast.Unpack)):
                value = src(self.eval(s.value))
                target, names = self.loop_target(s.target if isinstance(s, ast.Assign) else s.targets, Const(None))
                out.append(f"{pad}{target} = {value}")
                self.env.update(names)
            elif isinstance(s, ast.If):
                for i, (cond, branch) in enumerate(s.branches):
                    out.append(f"{pad}{'if' if i == 0 else 'elif'} {src(self.test(cond))}:")
                    out += self.body(branch, level + 1) or [f"{pad}    pass"]
                if s.orelse:
                    out += [f"{pad}else:"] + (self.body(s.orelse, level + 1) or [f"{pad}    pass"])
            elif isinstance(s, ast.Fail):
                out.append(pad + self.refusal(s))
            elif isinstance(s, ast.For):
                it = fold(self.eval(s.iterable))
                target, names = self.loop_target(s.var, it)
                out.append(f"{pad}for {target} in {self.loop_iterable(it, s.var)}:")
                self.env.update(names)
                out += self.body(s.body, level + 1) or [f"{pad}    pass"]
        return out

    def fn_call(self, defn, e):
        self.info.calls.add(id(defn))
        return super().fn_call(defn, e)


@dataclass
class _Bind:
    """An unrolled loop's variable taking its next value, among the statements of the body."""
    var: str
    value: object


_MISSING = object()
_NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_DIM_NAMES = {0: "channels", 1: "height", 2: "width"}


def _pystr(text: str) -> str:
    """A Python string literal of `text`."""
    return repr(text)


def _module_attr(name: str) -> str:
    """How the class reads its layer `name`: `self.conv`, or `getattr(self, "block1-0")`."""
    return f"self.{name}" if plain_layer_name(name) else f"getattr(self, {_pystr(name)})"


def _set_module(name: str, module: str) -> str:
    return f"self.{name} = {module}" if plain_layer_name(name) else f"self.add_module({_pystr(name)}, {module})"


def _fstring(parts) -> str:
    """An f-string of text and values (a layer name built in a loop: `f"block{s}_{i}"`)."""
    out = []
    for p in parts:
        if isinstance(p, (str, Const)):
            text = p if isinstance(p, str) else format_value(p.value)
            out.append("".join(_fstring_char(c) for c in text))
            continue
        source = src(p)
        if "\\" in source or '"' in source:  # not allowed inside an f-string's braces before Python 3.12
            raise Untranslatable(deps(p), "a layer name interpolating a string with quotes or backslashes")
        out.append("{" + source + "}")
    return 'f"' + "".join(out) + '"'


def _fstring_char(c: str) -> str:
    """`c` in the text of a double-quoted f-string, escaped as `repr` would escape it."""
    if c in '\\"':
        return "\\" + c
    if c in "{}":
        return c + c
    return c if c.isprintable() else ascii(c)[1:-1]


def _spec_text(node, file) -> str:
    """The spec's text of an expression on one line (its span's), else its first line."""
    span = node.span
    lines = file.text.splitlines()
    line = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
    end = span.end_column - 1 if span.end_line == span.line else len(line)
    return line[span.column - 1:end].strip()


def _hint(values) -> str:
    """A type hint from the values a parameter takes."""
    kinds = {type(v) for v in values}
    if len(kinds) != 1:
        return ""
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list"}.get(kinds.pop(), "")


def _dedent(lines) -> list:
    """Lines of a branch, one level out: what every branch that can run does, written unconditionally."""
    def out(line: str) -> str:
        return "\n".join(l[4:] if l.startswith("    ") else l for l in line.split("\n"))
    return [Maybe(l.name, out(l.line)) if isinstance(l, Maybe) else out(l) for l in lines]


def _has_content(lines) -> bool:
    return any(isinstance(l, (str, Maybe)) and (l.line if isinstance(l, Maybe) else l).strip() != "pass"
               for l in lines)


def _reads(line: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}\b", line) is not None


def _fwd_names(v) -> set:
    """The forward variables a value's expression reads (`F.relu(sp)` reads `sp`): while it is live,
    none of them may be assigned anew."""
    if isinstance(v, (TVal, TList)):
        return set(re.findall(r"(?<![\w.'\"])([A-Za-z_]\w*)\b(?!\s*=(?!=))", v.fwd))
    if isinstance(v, SList):
        return set().union(*[_fwd_names(i) for i in v.items]) if v.items else set()
    return set()


def _dyn_names(v) -> set:
    """Python names the values in `v` read."""
    if isinstance(v, Dyn):
        return set(re.findall(r"(?<![\w.])[A-Za-z_]\w*", v.src))
    if isinstance(v, SList):
        return set().union(*[_dyn_names(i) for i in v.items]) if v.items else set()
    if isinstance(v, (TVal, TList)):
        return set().union(*[_dyn_names(d) for d in v.shape]) if v.shape else set()
    return set()


def _merge_chains(groups: list) -> list:
    """The init lines of statements a `declare` moves, in order; where each is `if c: ... else: ...`
    on the same `c`, building layers only, one chain (`if aux_logits:` builds both heads)."""
    def parts(lines):
        if not lines or not all(isinstance(l, str) for l in lines):
            return None
        head = re.fullmatch(r"(\s*)if .*:", lines[0])
        if head is None or head.group(1) + "else:" not in lines:
            return None
        pad = head.group(1)
        k = lines.index(pad + "else:")
        then, orelse = lines[1:k], lines[k + 1:]
        if not all(l.startswith(pad + "    self.") for l in then + orelse):
            return None
        return lines[0], then, orelse, pad
    split = [parts(g) for g in groups]
    if len(groups) < 2 or any(p is None for p in split) or len({p[0] for p in split}) != 1:
        return [line for g in groups for line in g]
    return ([split[0][0]] + [line for p in split for line in p[1]] + [split[0][3] + "else:"]
            + [line for p in split for line in p[2]])


def _returns(node) -> bool:
    """Whether a statement returns somewhere in it, other than in training (`if training`)."""
    if isinstance(node, ast.Training):
        return False
    if isinstance(node, ast.Return):
        return True
    if isinstance(node, ast.If):
        return any(_returns(b) for _, b in node.branches) or _returns(node.orelse or [])
    if isinstance(node, ast.For):
        return _returns(node.body)
    if isinstance(node, list):
        return any(_returns(n) for n in node)
    return False


def _assigned(body, seqs: bool = False) -> set:
    """Names assigned by statements; with `seqs`, also by the statements of the seqs nested among
    them as children, which assign the same variables (a counter a stage's blocks advance)."""
    out = set()
    for s in body:
        if isinstance(s, ast.Assign):
            out.add(s.target)
        elif isinstance(s, ast.Unpack):
            out |= target_names(s.targets)
        elif isinstance(s, ast.Training):
            out |= _assigned(s.body, seqs)
        elif isinstance(s, ast.If):
            for _, b in s.branches:
                out |= _assigned(b, seqs)
            out |= _assigned(s.orelse or [], seqs)
        elif isinstance(s, (ast.For, ast.Recompute)):
            out |= _assigned(s.body, seqs)
        elif seqs and isinstance(s, ast.LayerStmt) and isinstance(s.item.target, ast.Seq):
            out |= _assigned(s.item.target.body, seqs)
    return out


def _stage_names(stage) -> set:
    """Names a chain stage reads besides the tensor it is applied to."""
    kind, node = stage
    return names_in(node) if kind == "pipe" else names_in([a.value for a in node.args[1:]])


def _leftmost_name(e):
    while isinstance(e, ast.Pipe):
        e = e.source
    while isinstance(e, ast.Call) and e.args and e.args[0].name is None:
        e = e.args[0].value
        while isinstance(e, ast.Pipe):
            e = e.source
    while isinstance(e, ast.BinOp):
        e = e.left
    return e.id if isinstance(e, ast.Name) else None


def _chain(expr, tr: Translator):
    """(core, stages): an expression as a value and the layers applied to it in turn, so that
    `out = x | conv | bn` is written one layer a line, like torchvision's forward."""
    stages = []
    while True:
        if isinstance(expr, ast.Pipe):
            stages.insert(0, ("pipe", expr.layer))
            expr = expr.source
            continue
        if (isinstance(expr, ast.Call) and expr.args and expr.args[0].name is None
                and isinstance(expr.args[0].value, (ast.Pipe, ast.BinOp, ast.Call))
                and all(a.name is not None for a in expr.args[1:])
                and ((expr.func in tr.layers and expr.func not in tr.env)
                     or (expr.func in PRIMITIVES and expr.func not in tr.env and expr.func not in tr.file.scope
                         and PRIMITIVES[expr.func].inputs == "one" and PRIMITIVES[expr.func].functional))):
            stages.insert(0, ("call", expr))
            expr = expr.args[0].value
            continue
        return expr, stages


# ---------------------------------------------------------------------- primitives over values

def bind_primitive(prim: Primitive, args) -> dict:
    names = [p.name for p in prim.params]
    bound = {}
    for n, v in zip(names, [v for n, v in args if n is None]):
        bound[n] = v
    for n, v in args:
        if n is not None:
            bound[n] = v
    out = {}
    for p in prim.params:
        v = bound.get(p.name, Const(p.default) if p.default is not REQUIRED else Const(None))
        v = fold(v)
        if p.kind == "float" and isinstance(v, Const) and is_int(v.value):
            v = Const(float(v.value))
        out[p.name] = v
    return out


def with_inferred(prim: Primitive, attrs: dict, shape) -> dict:
    out = dict(attrs)
    for attr, dim in prim.inferred:
        if -len(shape) <= dim < len(shape):
            out[attr] = shape[dim]
    return out


_WINDOWS = {"conv": (True, False), "maxpool": (True, True), "avgpool": (False, True)}  # (dilation, ceil_mode)


def sym_shape(prim: Primitive, attrs: dict, shapes: list):
    """The output shape (of values) of `prim` on inputs of these shapes: the primitive's own rule where
    everything is constant, else the same rule over values. A size it cannot write is `Missing`."""
    attrs = {k: fold(v) for k, v in attrs.items()}
    if all(isinstance(d, Const) for s in shapes for d in s) and all(isinstance(v, Const) for v in attrs.values()):
        try:
            out = prim.shape({k: v.value for k, v in attrs.items()}, [tuple(d.value for d in s) for s in shapes])
        except ShapeError:
            out = None
        if out is not None:
            if prim.inputs == "list":
                return [tuple(Const(d) for d in s) for s in out]
            return tuple(Const(d) for d in out)
    try:
        return _symbolic(prim, attrs, shapes)
    except _NotConstant as unknown:
        everything = frozenset().union(*[deps(v) for v in attrs.values()], *[deps(d) for s in shapes for d in s])
        if prim.inputs == "list":
            raise Untranslatable(unknown.deps or everything, f"a `{prim.name}` whose parts are known only at construction")
        return tuple(Missing(unknown.deps or everything) for _ in range(unknown.rank or len(shapes[0])))


class _NotConstant(Exception):
    """An argument that decides the output's rank or layout is known only at construction."""

    def __init__(self, v=None, rank=None):
        super().__init__()
        self.deps = deps(v) if v is not None else frozenset()
        self.rank = rank


def _const(v):
    v = fold(v)
    if not isinstance(v, Const):
        raise _NotConstant(v)
    return v.value


def _product(dims):
    out = Const(1)
    for d in dims:
        out = binop("*", out, d)
    return out


def _quotient(total, divisor):
    """`total // divisor` for a size `divisor` divides: `width * radix // radix` is written `width`
    (exact: a size is an int, so both factors of `width * radix` are)."""
    total, divisor = fold(total), fold(divisor)
    if isinstance(total, Dyn) and total.prec == PREC["*"] and isinstance(divisor, (Const, Dyn)):
        d, p = src_prec(divisor)
        if p > PREC["*"] and total.src.endswith(f" * {d}"):
            left = total.src[:-len(f" * {d}")]
            return Dyn(left, ATOM if re.fullmatch(r"[\w.]+", left) else PREC["*"], total.deps)
    return binop("//", total, divisor)


def _symbolic(prim, attrs, shapes):
    name, s0 = prim.name, tuple(shapes[0])
    if prim.keeps_shape:
        return s0
    if name == "pad" or name[:-2] in ("conv", "maxpool", "avgpool"):
        spatial = _spatial_dims(prim, attrs, s0)
        return ((attrs["out_channels"] if name.startswith("conv") else s0[0]),) + spatial
    if name.startswith("adaptive_"):
        size = attrs["output_size"]
        n = len(s0) - 1
        if isinstance(size, Const):
            return (s0[0],) + tuple(Const(d) for d in ((size.value,) * n if is_int(size.value) else size.value))
        return (s0[0],) + (Missing(deps(size)),) * n
    if name == "linear":
        return s0[:-1] + (attrs["out_features"],)
    if name == "flatten":
        i, j = (dim_index(_const(attrs[k]), s0, name) for k in ("start_dim", "end_dim"))
        return s0[:i] + (_product(s0[i:j + 1]),) + s0[j + 1:]
    if name in ("unflatten", "reshape"):
        if name == "unflatten":
            i = dim_index(_const(attrs["dim"]), s0, name)
            before, total, after, sizes = s0[:i], s0[i], s0[i + 1:], attrs["sizes"]
        else:
            before, total, after, sizes = (), _product(s0), (), attrs["shape"]
        items = [Const(v) for v in sizes.value] if isinstance(sizes, Const) else (
            sizes.items if isinstance(sizes, SList) else None)
        if items is None:
            raise _NotConstant(sizes)
        if any(isinstance(v, Const) and v.value == -1 for v in items):
            known = _product([v for v in items if not (isinstance(v, Const) and v.value == -1)])
            items = [_quotient(total, known) if isinstance(v, Const) and v.value == -1 else v for v in items]
        elif not all(isinstance(v, Const) for v in items):
            raise _NotConstant(sizes, rank=len(before) + len(items) + len(after))  # a -1 may hide among them
        return before + tuple(items) + after
    if name == "permute":
        return tuple(s0[d - 1] for d in _const(attrs["dims"])[1:])
    if name == "transpose":
        out = list(s0)
        i, j = (dim_index(_const(attrs[k]), s0, name) for k in ("dim0", "dim1"))
        out[i], out[j] = out[j], out[i]
        return tuple(out)
    if name == "squeeze":
        i = dim_index(_const(attrs["dim"]), s0, name)
        return s0[:i] + s0[i + 1:]
    if name == "unsqueeze":
        i = dim_index(_const(attrs["dim"]), s0, name, extra=1)
        return s0[:i] + (Const(1),) + s0[i:]
    if name in ("pixel_shuffle", "pixel_unshuffle"):
        r = attrs["upscale_factor" if name == "pixel_shuffle" else "downscale_factor"]
        sq = binop("*", r, r)
        if name == "pixel_shuffle":
            return (binop("//", s0[0], sq), binop("*", s0[1], r), binop("*", s0[2], r))
        return (binop("*", s0[0], sq), binop("//", s0[1], r), binop("//", s0[2], r))
    if name == "upsample":
        size = attrs["size"]
        if isinstance(size, Const) and size.value is not None:
            n = len(s0) - 1
            return (s0[0],) + tuple(Const(d) for d in ((size.value,) * n if is_int(size.value) else size.value))
        return (s0[0],) + tuple(Missing(deps(attrs["scale_factor"]) | deps(size) | {SPATIAL}) for _ in s0[1:])
    if name in ("add", "sub", "mul", "div"):
        return _broadcast_values(shapes, attrs.get("batched"))
    if name == "matmul":
        return _broadcast_values([s[:-2] for s in shapes], attrs.get("batched")) + (s0[-2], shapes[1][-1])
    if name in ("mean", "sum", "amax"):
        dims = _const(attrs["dim"])
        drop = {dim_index(d, s0, name) for d in (dims if isinstance(dims, list) else [dims])}
        if _const(attrs["keepdim"]):
            return tuple(Const(1) if i in drop else d for i, d in enumerate(s0))
        return tuple(d for i, d in enumerate(s0) if i not in drop)
    if name in ("concat", "stack"):
        i = dim_index(_const(attrs["dim"]), s0, name, extra=int(name == "stack"))
        if name == "stack":
            return s0[:i] + (Const(len(shapes)),) + s0[i:]
        total = s0[i]
        for s in shapes[1:]:
            total = binop("+", total, s[i])
        return s0[:i] + (total,) + s0[i + 1:]
    if name == "split":
        i = dim_index(_const(attrs["dim"]), s0, name)
        sizes = attrs["sizes"]
        items = [Const(v) for v in sizes.value] if isinstance(sizes, Const) else (
            sizes.items if isinstance(sizes, SList) else None)
        if items is None:
            raise Untranslatable(deps(sizes), "a split into a number of parts known only at construction")
        return [s0[:i] + (n,) + s0[i + 1:] for n in items]
    if name == "chunk":
        i = dim_index(_const(attrs["dim"]), s0, name)
        n = attrs["chunks"]
        if not isinstance(n, Const):
            raise Untranslatable(deps(n), "a chunk into a number of parts known only at construction")
        return [s0[:i] + (binop("//", s0[i], n),) + s0[i + 1:]] * n.value
    if name == "slice":
        return (binop("-", attrs["stop"], attrs["start"]),) + s0[1:]
    raise _NotConstant()


def _broadcast_values(shapes, batched):
    """`primitives.broadcast` over values: where sizes may differ, keep the one that is 1 nowhere, known,
    or not the block's input (equal wherever the op runs)."""
    batched = fold(batched) if batched is not None else Const(None)
    flags = batched.value if isinstance(batched, Const) and batched.value else [True] * len(shapes)
    rank = max((len(s) for s, b in zip(shapes, flags) if b), default=None)
    sized = [tuple(s)[1:] if not b and rank is not None and len(s) > rank else tuple(s) for s, b in zip(shapes, flags)]
    width = max(len(s) for s in sized)

    def preference(d):
        d = fold(d)
        ones = isinstance(d, Const) and d.value == 1
        return (ones, isinstance(d, Missing), not isinstance(d, Const), bool({IN, INPUT} & deps(d)))
    columns = [[s[len(s) - width + j] for s in sized if len(s) - width + j >= 0] for j in range(width)]
    return tuple(min(column, key=preference) for column in columns)


def _spatial_dims(prim, attrs, shape):
    if prim.name == "pad":
        p = attrs["padding"]
        if isinstance(p, Const):
            v = list(p.value)
            out = list(shape[1:])
            for k in range(min(len(v) // 2, len(out))):  # the pairs past the spatial sizes pad channels
                out[-1 - k] = binop("+", out[-1 - k], Const(v[2 * k] + v[2 * k + 1]))
            return tuple(out)
        return tuple(Missing(deps(p)) for _ in shape[1:])
    relevant = [attrs.get(k, Const(None)) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")]
    if all(isinstance(d, Const) for d in shape[1:]) and all(isinstance(v, Const) for v in relevant):
        dilation, ceil = _WINDOWS[prim.name[:-2]]
        try:
            return tuple(Const(d) for d in spatial_out(
                {k: v.value for k, v in attrs.items() if isinstance(v, Const)}, (0,) + tuple(d.value for d in shape[1:]),
                prim.name, len(shape) - 1, dilation=dilation, ceil=ceil))
        except (ShapeError, KeyError, TypeError):
            pass
    missing = Missing(frozenset().union(*[deps(v) for v in relevant], *[deps(d) for d in shape[1:]]))
    return tuple(missing for _ in shape[1:])


# primitives written as Python operators: (symbol, precedence)
_OPERATORS = {"add": ("+", PREC["+"]), "sub": ("-", PREC["-"]), "mul": ("*", PREC["*"]), "div": ("/", PREC["/"]),
              "matmul": ("@", PREC["*"]),
              "neg": ("-", PREC["neg"]), "pow": ("**", PREC["**"])}


class _Args:
    """Argument sources of one primitive, for the emitters in `primitives`: in forward, a value known
    only at construction is read from the attribute __init__ keeps it in."""

    def __init__(self, tr: Translator, prim: Primitive, attrs: dict, forward: bool = False):
        self.tr, self.prim, self.attrs, self.forward = tr, prim, attrs, forward
        self.kinds = {p.name: p for p in prim.params}

    def value(self, name):
        v = fold(self.attrs[name])
        if not isinstance(v, Const):
            raise Untranslatable(deps(v), f"`{name}` of `{self.prim.name}` must be known when the class is written")
        return v.value

    def __getitem__(self, name) -> str:
        v = fold(self.attrs[name])
        if self.forward:
            source = self.tr.fsrc(v, f"{self.prim.name}_{name}")
        else:
            source = src(v)
        p = self.kinds.get(name)
        if p is not None and p.kind == "pair" and isinstance(v, Const) and isinstance(v.value, list):
            source = "(" + ", ".join(literal(i) for i in v.value) + ")"
        return source

    def kw(self, *names) -> list:
        """`name=source` for each argument that is not a constant equal to its default."""
        out = []
        for name in names:
            v = fold(self.attrs[name])
            default = self.kinds[name].default
            if not isinstance(v, Const) or repr(v.value) != repr(default):
                out.append(f"{name}={self[name]}")
        return out

    def known(self, name):
        """The argument's value if it is known when the class is written, else None."""
        v = fold(self.attrs[name])
        return v.value if isinstance(v, Const) else None

    def splat(self, name) -> str:
        """A list argument as the arguments of a call: `4, 8` (or `*sizes`)."""
        v = fold(self.attrs[name])
        if isinstance(v, Const):
            return ", ".join(literal(i) for i in v.value)
        if isinstance(v, SList):
            return ", ".join(self.tr.fsrc(i, f"{self.prim.name}_{name}") if self.forward else src(i) for i in v.items)
        return f"*{self[name]}"

    def dims(self, name) -> str:
        """A `dims` argument: `(2, 3)`, or one dimension `-1`."""
        v = fold(self.attrs[name])
        if isinstance(v, Const) and is_int(v.value):
            return literal(v.value)
        return self.tuple(name)

    def tuple(self, name) -> str:
        v = fold(self.attrs[name])
        if isinstance(v, Const) and is_int(v.value):
            return f"({v.value}, {v.value})" if self.kinds[name].kind == "pair" else f"({v.value},)"
        if isinstance(v, SList) and self.forward:
            return "(" + ", ".join(self.tr.fsrc(i, f"{self.prim.name}_{name}") for i in v.items) + ("," if len(v.items) == 1 else "") + ")"
        if isinstance(v, Const) and isinstance(v.value, list):
            inner = ", ".join(literal(i) for i in v.value)
            return f"({inner},)" if len(v.value) == 1 else f"({inner})"
        return self[name]


# ---------------------------------------------------------------------- rendering

def render(items: list) -> list:
    """Lines from a buffer: `Maybe` lines kept only where their name is read, empty blocks dropped."""
    texts = []
    for it in items:
        if isinstance(it, _Add):
            texts.append(it.render())
        else:
            texts.append(it)
    used = set()
    plain = [t for t in texts if isinstance(t, str)]
    for t in plain:
        used |= _names_read(t)
    maybes = [t for t in texts if isinstance(t, Maybe)]
    kept = set()
    changed = True
    while changed:
        changed = False
        for i, m in enumerate(maybes):
            if i not in kept and m.name in used:
                kept.add(i)
                used |= _names_read(m.line.split("=", 1)[1])
                changed = True
    out = []
    index = {id(m): i for i, m in enumerate(maybes)}
    for t in texts:
        if isinstance(t, Maybe):
            if index[id(t)] in kept:
                out.append(t.line)
        else:
            out.append(t)
    return _drop_empty_blocks(out)


def _names_read(text: str) -> set:
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "", text)
    return set(re.findall(r"(?<![\w.])[A-Za-z_]\w*", text))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _drop_empty_blocks(lines: list) -> list:
    """Remove `pass`-only branches: an `else` with nothing in it, an `if` chain with nothing in any branch."""
    changed = True
    while changed:
        changed = False
        heads = [i for i, l in enumerate(lines) if l.rstrip().endswith(":") and l.lstrip().split(" ")[0].rstrip(":")
                 in ("if", "elif", "else")]
        for i in [i for i, l in enumerate(lines) if l.lstrip().startswith("for ") and l.rstrip().endswith(":")]:
            if all(lines[j].strip() == "pass" for j in _body(lines, i)):
                drop = {i} | set(_body(lines, i))
                lines = [l for j, l in enumerate(lines) if j not in drop]
                changed = True
                break
        if changed:
            continue
        for i in heads:
            body = _body(lines, i)
            if all(lines[j].strip() == "pass" for j in body):
                chain = _chain_of(lines, i)
                if all(all(lines[j].strip() == "pass" for j in _body(lines, h)) for h in chain):
                    drop = set()
                    for h in chain:
                        drop |= {h} | set(_body(lines, h))
                    lines = [l for j, l in enumerate(lines) if j not in drop]
                    changed = True
                    break
                if lines[i].strip() == "else:":
                    lines = [l for j, l in enumerate(lines) if j != i and j not in body]
                    changed = True
                    break
                if not body:
                    lines.insert(i + 1, " " * (_indent(lines[i]) + 4) + "pass")
                    changed = True
                    break
        for i, l in enumerate(lines):
            if l.rstrip().endswith(":") and not _body(lines, i):
                lines.insert(i + 1, " " * (_indent(l) + 4) + "pass")
                changed = True
                break
    return lines


def _body(lines, i) -> list:
    level = _indent(lines[i])
    out = []
    for j in range(i + 1, len(lines)):
        if _indent(lines[j]) <= level:
            break
        out.append(j)
    return out


def _chain_of(lines, i) -> list:
    """The heads of the if/elif/else chain that the head at i belongs to."""
    level = _indent(lines[i])
    start = i
    while lines[start].lstrip().startswith(("elif", "else")):
        j = start - 1
        while j >= 0 and _indent(lines[j]) > level:
            j -= 1
        start = j
    out = [start]
    j = start
    while True:
        body = _body(lines, j)
        nxt = (body[-1] if body else j) + 1
        if nxt < len(lines) and _indent(lines[nxt]) == level and lines[nxt].lstrip().startswith(("elif", "else")):
            out.append(nxt)
            j = nxt
        else:
            return out
