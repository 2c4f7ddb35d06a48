"""PyTorch backend: elaborated models -> readable, standalone Python source.

Block instances with the same structure share one class. A value that differs between the instances
of a class becomes a constructor parameter, named after the spec symbol it came from (a block
parameter, a single-assignment local, or the input's channel count); a value that is the same in all
of them stays a literal. Runs of identical blocks in a seq are written as one loop, so the size of the
source follows the number of distinct block structures, not the depth."""
from __future__ import annotations

import builtins
import keyword
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from .. import ast, queries
from ..ir import Instance, Layer, Model, Step

_RESERVED = set(keyword.kwlist) | set(dir(builtins)) | {"self", "torch", "nn", "F", "Tensor", "OrderedDict",
                                                         "math", "x"}


class Namespace:
    """Hands out legal, unique Python names (after torch.fx's _Namespace)."""

    def __init__(self, taken=()):
        self.used = set(taken)

    def create(self, wanted: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in wanted) or "v"
        if base[0].isdigit():
            base = "_" + base
        name, i = base, 1
        while name in self.used or name in _RESERVED:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


def literal(v) -> str:
    """Python source for a spec value (lists are written as lists)."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(literal(i) for i in v) + "]"
    return repr(v)


def _hint(v) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(v), "object")


# ---------------------------------------------------------------- structure and classes

def _sig_layer(layer: Layer, sig_of):
    if layer.kind == "prim":
        return ("prim", layer.name, layer.prim.name, tuple(sorted((k, layer.origins.get(k)) for k in layer.attrs)))
    if layer.kind == "seq":
        return ("seq", layer.name, tuple(_sig_layer(c, sig_of) for c in layer.children))
    return ("block", layer.name, sig_of(layer.instance), tuple(sorted(layer.origins.items())))


def _local_numbering(inst: Instance):
    numbers = {inst.input.key: 0}
    for step in inst.steps:
        for k in step.outputs:
            numbers.setdefault(k, len(numbers))
    return numbers


def structure(inst: Instance, memo: dict):
    """A hashable description of an instance's structure: what a class of it must contain."""
    key = id(inst)
    if key in memo:
        return memo[key]
    sig_of = lambda i: structure(i, memo)
    numbers = _local_numbering(inst)
    steps = []
    for s in inst.steps:
        what = s.layer.name if s.layer is not None else (s.prim.name if s.prim is not None else "")
        origins = tuple(sorted(s.origins.items())) if s.kind == "func" else ()
        attrs = tuple(sorted(s.attrs)) if s.kind == "func" else ()
        steps.append((s.kind, what, s.var, tuple(numbers.get(k, -1) for k in s.inputs),
                      tuple(numbers.get(k, -1) for k in s.outputs), attrs, origins))
    sig = (inst.block.name, tuple(_sig_layer(l, sig_of) for l in inst.layers), tuple(steps),
           numbers.get(inst.output.key, -1))
    memo[key] = sig
    return sig


@dataclass
class CtorParam:
    name: str
    values: list  # one per instance of the class
    default: object = None
    has_default: bool = False
    symbol: Optional[str] = None  # the spec symbol it stands for


@dataclass
class OptionalPart:
    """The part of a merged class that exists only where the spec's `if` holds."""
    node: ast.If
    layers: set  # names of the layers declared under it
    steps: set  # indices of the template's steps run under it


@dataclass
class ClassDef:
    name: str
    block: ast.BlockDef
    instances: list  # with a merged class, those with the optional part first
    optional: Optional[OptionalPart] = None
    params: list = field(default_factory=list)  # CtorParam, in signature order
    init_lines: list = field(default_factory=list)
    forward_lines: list = field(default_factory=list)
    plain_forward: list = field(default_factory=list)  # forward without the optional part

    def args_for(self, inst_index: int) -> list:
        """Constructor argument sources for instance `inst_index`: required positionally, others by keyword."""
        out = []
        for p in self.params:
            v = p.values[inst_index]
            if not p.has_default:
                out.append(literal(v))
            elif v != p.default or type(v) is not type(p.default):
                out.append(f"{p.name}={literal(v)}")
        return out


class Generator:
    def __init__(self, models: list, frozen: dict = None):
        """`frozen`: id(root instance) -> spec symbols its class must not take as parameters."""
        self.models = models
        self.frozen = frozen or {}
        self.memo = {}
        self.source = ""
        self.groups: "OrderedDict[tuple, list]" = OrderedDict()
        self.class_of = {}  # id(instance) -> (ClassDef, index in its instances)
        self.classes: list = []
        self.helpers = set()
        self.uses_ordered_dict = False
        self.uses_math = False

    def generate(self) -> str:
        for m in self.models:
            self._collect(m.root)
        self.classes = [ClassDef("", insts[0].block, insts) for insts in self.groups.values()]
        self._write_all()
        self._merge_variants()
        self.source = self._module_source()
        return self.source

    def labels(self) -> dict:
        """id(instance) -> the name of its class, with the optional layers it has:
        `Bottleneck + downsample`."""
        out = {}
        for cls in self.classes:
            for inst in cls.instances:
                extra = [l.name for l in inst.layers if cls.optional and l.name in cls.optional.layers]
                out[id(inst)] = " + ".join([cls.name] + extra)
        return out

    def _write_all(self):
        """Name and write every class; children come before parents, so parents see their final form."""
        self.class_of = {}
        self.helpers, self.uses_ordered_dict, self.uses_math = set(), False, False
        for cls in self.classes:
            for i, inst in enumerate(cls.instances):
                self.class_of[id(inst)] = (cls, i)
        self._name_classes()
        for cls in self.classes:
            _ClassWriter(self, cls).write()

    def _name_classes(self):
        names = Namespace()
        roots = {id(m.root): m for m in self.models}
        by_block = {}
        for cls in self.classes:
            by_block.setdefault(cls.block.name, []).append(cls)
        for cls in self.classes:
            first = cls.instances[0]
            model = roots.get(id(first)) if len(cls.instances) == 1 else None
            wanted = cls.block.name
            if len(by_block[wanted]) > 1:
                if model is not None:
                    wanted = "".join(p[:1].upper() + p[1:] for p in model.name.split("_"))
                else:
                    wanted += _variant_suffix(first, [c.instances[0] for c in by_block[wanted]])
            cls.name = names.create(wanted)

    def _merge_variants(self):
        """One class for two structures of a block that differ only in an `if` (without else) that
        declares layers, as torchvision's Bottleneck has an optional `downsample`: the class builds
        them under the spec's condition and sets them to None otherwise."""
        changed = True
        while changed:
            changed = False
            for a, b in list(self._merge_candidates()):
                optional = _optional_if(b, a)
                if optional is None:
                    continue
                merged = ClassDef("", b.block, b.instances + a.instances, optional=optional)
                saved = self.classes
                self.classes = _place(saved, a, b, merged)
                try:
                    self._write_all()
                    if merged.plain_forward != a.forward_lines:
                        raise _Unmergeable("the forward without the condition is not the other variant's")
                except _Unmergeable:
                    self.classes = saved
                    self._write_all()
                    continue
                changed = True
                break

    def _merge_candidates(self):
        """(without, with) pairs of classes of one block, the second with more steps."""
        roots = {id(m.root) for m in self.models}
        by_block = {}
        for cls in self.classes:
            if id(cls.instances[0]) not in roots and cls.optional is None:
                by_block.setdefault(cls.block.name, []).append(cls)
        for variants in by_block.values():
            for a in variants:
                for b in variants:
                    if len(b.instances[0].steps) > len(a.instances[0].steps):
                        yield a, b

    def _collect(self, inst: Instance):
        for layer in inst.layers:
            self._collect_layer(layer)
        sig = structure(inst, self.memo)
        self.groups.setdefault(sig, []).append(inst)

    def _collect_layer(self, layer: Layer):
        if layer.kind == "block":
            self._collect(layer.instance)
        elif layer.kind == "seq":
            for c in layer.children:
                self._collect_layer(c)

    def _module_source(self) -> str:
        names = sorted({m.name for m in self.models})
        body = ["__all__ = [" + ", ".join(repr(n) for n in sorted({c.name for c in self.classes}) + names) + "]"]
        if "drop_path" in self.helpers:
            body += ["", ""] + _DROP_PATH
        for cls in self.classes:
            body += ["", ""] + self._class_source(cls)
        for m in self.models:
            cls, _ = self.class_of[id(m.root)]
            where = f"`{m.name}` of {_short(m.definition.span.path)}:{m.definition.span.line}, " \
                    f"for input {list(m.input_shape)}."
            body += ["", "", f"def {m.name}() -> {cls.name}:"]
            body += _docstring(m.definition.doc or m.definition.file.doc, where, "    ")
            body.append(f"    return {cls.name}({', '.join(cls.args_for(0))})")
        text = "\n".join(body)
        sources = ", ".join(sorted({_short(m.definition.span.path) for m in self.models}))
        head = [f'"""Generated by archsmith from {sources}. Do not edit: edit the spec and compile again."""', ""]
        head += [line for line, used in (("import math", self.uses_math),
                                         ("from collections import OrderedDict", self.uses_ordered_dict)) if used]
        if len(head) > 2:
            head.append("")
        head += [line for line, used in (("import torch", re.search(r"\btorch\.", text)),
                                         ("import torch.nn.functional as F", re.search(r"\bF\.", text))) if used]
        head += ["from torch import Tensor, nn", ""]
        return "\n".join(head + body).rstrip() + "\n"

    def _class_source(self, cls: ClassDef) -> list:
        sig = ", ".join(["self"] + [_param_src(p) for p in cls.params])
        out = [f"class {cls.name}(nn.Module):"]
        where = f"Block `{cls.block.name}` of {_short(cls.block.span.path)}:{cls.block.span.line}."
        out += _docstring(cls.block.doc, where, "    ")
        out += ["", f"    def __init__({sig}) -> None:", "        super().__init__()"]
        out += ["        " + l.replace("\n", "\n        ") for l in cls.init_lines]
        out += ["", "    def forward(self, x: Tensor) -> Tensor:"]
        out += ["        " + l for l in cls.forward_lines]
        return out


class _Unmergeable(Exception):
    pass


def _place(classes, a, b, merged):
    """`classes` without a and b, and `merged` where the later of them was (after all their children)."""
    later = max(classes.index(a), classes.index(b))
    out = []
    for i, c in enumerate(classes):
        if i == later:
            out.append(merged)
        elif c is not a and c is not b:
            out.append(c)
    return out


def _conds(inst):
    out = {}
    for item in list(inst.steps) + list(inst.layers):
        for node, branch in item.conds:
            out[(id(node), branch)] = node
    return out


def _optional_if(b: ClassDef, a: ClassDef):
    """Where b is a plus what one `if` without `else` adds, that `if` and what it adds; else None."""
    with_, without = b.instances[0], a.instances[0]
    cb, ca = _conds(with_), _conds(without)
    extra = [k for k in cb if k not in ca]
    if len(extra) != 1 or not set(ca) <= set(cb) or extra[0][1] != 0:
        return None
    node = cb[extra[0]]
    if len(node.branches) != 1 or node.orelse is not None:
        return None
    key = extra[0]
    under = lambda item: any((id(n), i) == key for n, i in item.conds)
    steps = {i for i, st in enumerate(with_.steps) if under(st)}
    layers = {l.name for l in with_.layers if under(l)}
    kept = [st for i, st in enumerate(with_.steps) if i not in steps]
    if not layers or len(kept) != len(without.steps):
        return None
    what = lambda st: (st.kind, st.layer.name if st.layer else (st.prim.name if st.prim else ""), st.var)
    if [what(st) for st in kept] != [what(st) for st in without.steps]:
        return None
    if [l.name for l in with_.layers if l.name not in layers] != [l.name for l in without.layers]:
        return None
    return OptionalPart(node, layers, steps)


def _variant_suffix(inst, variants) -> str:
    """`WithDownsample` for the variant of a block that has a `downsample` the others lack."""
    mine = [l.name for l in inst.layers]
    fewest = min((v for v in variants), key=lambda v: len(v.layers))
    base = {l.name for l in fewest.layers}
    extra = [n for n in mine if n not in base]
    if inst is fewest or not extra or not base <= set(mine):
        return ""
    return "With" + "And".join(n[:1].upper() + n[1:] for n in extra)


def _docstring(comment: str, where: str, indent: str) -> list:
    """A docstring: the spec's comment (if any), then where the code came from."""
    text = comment.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if not text:
        return [f'{indent}"""{where}"""']
    body = text.splitlines()
    return ([f'{indent}"""{body[0]}'] + [f"{indent}{l}" if l else "" for l in body[1:]]
            + ["", f"{indent}{where}", f'{indent}"""'])


def _param_src(p: CtorParam) -> str:
    hint = _hint(p.values[0])
    return f"{p.name}: {hint} = {literal(p.default)}" if p.has_default else f"{p.name}: {hint}"


def _short(path: str) -> str:
    import os
    return os.path.basename(path)


_DROP_PATH = [
    "def drop_path(x: Tensor, p: float, training: bool) -> Tensor:",
    '    """Stochastic depth (Huang et al. 2016): zero whole samples with probability p, rescale the rest."""',
    "    if p == 0.0 or not training:",
    "        return x",
    "    keep = 1.0 - p",
    "    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)",
    "    if keep > 0.0:",
    "        mask.div_(keep)",
    "    return x * mask",
    "",
    "",
    "class DropPath(nn.Module):",
    '    """Stochastic depth as a module: see `drop_path`."""',
    "",
    "    def __init__(self, p: float = 0.0) -> None:",
    "        super().__init__()",
    "        self.p = p",
    "",
    "    def forward(self, x: Tensor) -> Tensor:",
    "        return drop_path(x, self.p, self.training)",
]


class _Unresolvable(Exception):
    pass


class _ClassWriter:
    """Writes one class: decides its constructor parameters, then its __init__ and forward."""

    def __init__(self, gen: Generator, cls: ClassDef):
        self.gen, self.cls = gen, cls
        self.insts = cls.instances
        self.first = cls.instances[0]
        self.is_root = any(id(m.root) == id(self.first) for m in gen.models)
        self.names = Namespace({"x"})
        self.symbols = {}  # spec symbol -> python source
        self.params = OrderedDict()  # python name -> CtorParam
        self.let_lines = []
        self.stored_attrs = OrderedDict()  # python name -> attribute of self holding it for forward
        self.optional = cls.optional
        self.step_maps = {id(i): self._step_map(i) for i in self.insts}
        # parameters that decide the structure, except through the condition the class evaluates itself
        self.structural = queries.structural_names(cls.block.body, cls.optional.node if cls.optional else None)


    def _step_map(self, inst) -> list:
        """Template step index -> this instance's step index (None where it lacks the optional part)."""
        n = len(self.first.steps)
        if len(inst.steps) == n:
            return list(range(n))
        own = iter(range(len(inst.steps)))
        return [None if i in self.optional.steps else next(own) for i in range(n)]

    # -- symbols
    def _param(self, wanted, values):
        if len(values) != len(self.insts):  # a value only the optional part has, and no symbol for it
            raise _Unmergeable(wanted)
        for p in self.params.values():
            if _same(p.values, values):
                return p.name
        name = self.names.create(wanted)
        self.params[name] = CtorParam(name, values)
        return name

    def symbol(self, sym: str) -> str:
        if sym in self.symbols:
            return self.symbols[sym]
        first = self.first
        if self.is_root and sym in self.gen.frozen.get(id(first), ()):
            raise _Unresolvable(sym)
        if sym == first.input_symbol:
            values = [i.input.shape[0] for i in self.insts]
            src = self._declare(sym, values, has_default=self.is_root, default=values[0])
        elif sym in first.params:
            values = [i.params[sym] for i in self.insts]
            if sym in self.structural and _same(values, [values[0]] * len(values)):
                raise _Unresolvable(sym)  # the class is built for this value only: keep it literal
            default, has_default = self._spec_default(sym)
            if self.is_root:
                default, has_default = values[0], True
            src = self._declare(sym, values, default=default, has_default=has_default)
        elif sym in first.lets:
            if any(sym not in i.lets for i in self.insts):
                raise _Unresolvable(sym)
            src = self._let(sym)
        else:
            raise _Unresolvable(sym)
        self.symbols[sym] = src
        return src

    def _declare(self, sym, values, default=None, has_default=False):
        name = self.names.create(sym)
        self.params[name] = CtorParam(name, values, default, has_default, symbol=sym)
        return name

    def _spec_default(self, name):
        for p in self.cls.block.params:
            if p.name == name and p.default is not None:
                v = _literal_value(p.default)
                if v is not _NOPE:
                    return v, True
        return None, False

    def _let(self, sym):
        values = [i.lets[sym][0] for i in self.insts]
        expr = self.first.lets[sym][1]
        saved = OrderedDict(self.params), dict(self.symbols), list(self.let_lines), set(self.names.used)
        try:
            src = self._translate(expr)
        except _Unresolvable:
            self.params, self.symbols, self.let_lines, self.names.used = saved
            if len(set(map(repr, values))) == 1:
                return literal(values[0])
            return self._declare(sym, values)
        name = self.names.create(sym)
        self.let_lines.append(f"{name} = {src}")
        return name

    def _translate(self, e) -> str:
        """A spec expression as Python over this class's parameters (for single-assignment locals)."""
        return self._tr(e)[0]

    def _tr(self, e):
        """(source, precedence) of e; parentheses only where Python needs them."""
        if isinstance(e, ast.BinOp):
            prec = _PREC[e.op]
            left, lp = self._tr(e.left)
            right, rp = self._tr(e.right)
            if lp < prec or (e.op == "**" and lp == prec):
                left = f"({left})"
            if rp < prec or (rp == prec and e.op != "**"):
                right = f"({right})"
            return f"{left} {e.op} {right}", prec
        if isinstance(e, ast.BoolOp):
            prec = _PREC[e.op]
            left, lp = self._tr(e.left)
            right, rp = self._tr(e.right)
            return f"{_wrap(left, lp, prec)} {e.op} {_wrap(right, rp, prec + 1)}", prec
        if isinstance(e, ast.UnaryOp):
            prec = _PREC["not" if e.op == "not" else "neg"]
            inner, ip = self._tr(e.operand)
            return f"{'not ' if e.op == 'not' else '-'}{_wrap(inner, ip, prec)}", prec
        if isinstance(e, ast.Ternary):
            then, tp = self._tr(e.then)
            cond, cp = self._tr(e.cond)
            orelse, op = self._tr(e.orelse)
            return f"{_wrap(then, tp, 1)} if {_wrap(cond, cp, 1)} else {orelse}", 0
        return self._translate_atom(e), 100

    def _translate_atom(self, e) -> str:
        if isinstance(e, ast.Literal):
            if not isinstance(e.value, (int, float, bool, str)):
                raise _Unresolvable(e)
            return literal(e.value)
        if isinstance(e, ast.Name):
            return self.symbol(e.id)
        if (isinstance(e, ast.Attr) and e.name == "channels" and isinstance(e.target, ast.Name)
                and e.target.id == "x" and queries.x_is_input_at(self.cls.block.body, e)):
            return self.symbol(self.first.input_symbol)
        if isinstance(e, ast.Call) and e.func in ("min", "max", "abs", "round", "int", "float") and not any(a.name for a in e.args):
            return f"{e.func}({', '.join(self._translate(a.value) for a in e.args)})"
        if isinstance(e, ast.Call) and e.func in ("ceil", "floor", "sqrt") and len(e.args) == 1:
            self.gen.uses_math = True
            return f"math.{e.func}({self._translate(e.args[0].value)})"
        raise _Unresolvable(e)

    def slot(self, values: list, origin: Optional[str], wanted: str) -> str:
        """The source for one value of the class, given its value in each instance."""
        if origin is not None:
            try:
                return self.symbol(origin)
            except _Unresolvable:
                pass
        if _same(values, [values[0]] * len(values)):
            return literal(values[0])
        if len(values) == len(self.insts):  # no symbol: a block parameter with the same values names it
            for p in self.cls.block.params:
                if p.name in self.first.params and _same([i.params.get(p.name) for i in self.insts], values):
                    try:
                        return self.symbol(p.name)
                    except _Unresolvable:
                        break
        return self._param(wanted, values)

    def stored(self, name: str) -> str:
        """The attribute of self that keeps `name` (a constructor value) for forward."""
        if name not in self.stored_attrs:
            taken = {l.name for l in self.first.layers} | set(self.stored_attrs.values())
            attr = name
            while attr in taken:
                attr += "_"
            self.stored_attrs[name] = attr
        return self.stored_attrs[name]

    # -- writing
    def write(self):
        cls = self.cls
        init = []
        optional = [l for l in self.first.layers if self.optional and l.name in self.optional.layers]
        for layer in self.first.layers:
            peers = [l for l in (self._find(i, layer.name) for i in self.insts) if l is not None]
            src = self._layer_src(layer, peers, indent=0)
            if layer in optional:
                init.append((layer.name, src))
            else:
                init.append(f"self.{layer.name} = {src}")
        if optional:
            init = self._optional_init(init)
        forward = self._forward()
        init = [f"self.{attr} = {name}" for name, attr in self.stored_attrs.items()] + init
        declared = [p.name for p in cls.block.params]
        order = {name: i for i, name in enumerate([self.symbols.get(self.first.input_symbol)] + declared)}
        ordered = sorted(self.params.values(), key=lambda p: order.get(p.name, len(order)))
        required = [p for p in ordered if not p.has_default]
        optional = [p for p in ordered if p.has_default]
        cls.params = required + optional
        cls.init_lines = self.let_lines + init
        cls.forward_lines = forward

    def _optional_init(self, init: list) -> list:
        """The optional layers, built where the spec's condition holds, None elsewhere."""
        try:
            cond = self._translate(self.optional.node.branches[0][0])
        except _Unresolvable:
            raise _Unmergeable("the condition cannot be written over the class's parameters") from None
        out, group = [], []
        for item in init + [None]:
            if isinstance(item, tuple):
                group.append(item)
                continue
            if group:
                out.append(f"if {cond}:\n" + "\n".join(f"    self.{n} = {src.replace(chr(10), chr(10) + '    ')}"
                                                        for n, src in group)
                           + "\nelse:\n" + "\n".join(f"    self.{n} = None" for n, _ in group))
                group = []
            if item is not None:
                out.append(item)
        return out

    def _find(self, inst, name):
        for l in inst.layers:
            if l.name == name:
                return l
        return None

    def _layer_src(self, layer: Layer, peers: list, indent: int) -> str:
        """`peers`: this layer in every instance of the class."""
        if layer.kind == "prim":
            return self._prim_src(layer, peers)
        if layer.kind == "block":
            child_cls, _ = self.gen.class_of[id(layer.instance)]
            args = []
            for p in child_cls.params:
                values = [p.values[self.gen.class_of[id(pl.instance)][1]] for pl in peers]
                src = self.slot(values, layer.origins.get(p.name), f"{layer.name}_{p.name}")
                if p.has_default:
                    if src == literal(p.default) and _same(values, [p.default] * len(values)):
                        continue
                    args.append(f"{p.name}={src}")
                else:
                    args.append(src)
            return f"{child_cls.name}({', '.join(args)})"
        return self._seq_src(layer, peers, indent)

    def _seq_src(self, layer, peers, indent):
        items = []
        for i, child in enumerate(layer.children):
            items.append((child.name, self._layer_src(child, [p.children[i] for p in peers], indent + 1)))
        pad = "    " * indent
        if all(name == str(i) for i, (name, _) in enumerate(items)):
            runs = _runs([src for _, src in items])
            body = [src if n == 1 else f"*[{src} for _ in range({n})]" for src, n in runs]
            if len(body) == 1 and "\n" not in body[0]:
                return f"nn.Sequential({body[0]})"
            return "nn.Sequential(\n" + "".join(f"{pad}    {b},\n" for b in body) + f"{pad})"
        self.gen.uses_ordered_dict = True
        body = "".join(f"{pad}    ({name!r}, {src}),\n" for name, src in items)
        return "nn.Sequential(OrderedDict([\n" + body + f"{pad}]))"

    def _prim_src(self, layer, peers):
        if layer.prim.name == "drop_path":
            self.gen.helpers.add("drop_path")
        e = _Attrs(self, layer.prim, [p.attrs for p in peers], layer.origins, layer.name)
        prefix = "" if layer.prim.name == "drop_path" else "nn."
        return f"{prefix}{layer.prim.torch_class}({layer.prim.ctor(e, layer.in_shape)})"

    def _forward(self) -> list:
        inst = self.first
        steps = inst.steps
        last_use = {}
        for i, s in enumerate(steps):
            for k in s.inputs:
                last_use[k] = i
        last_use[inst.output.key] = len(steps)
        names = _Holders()
        names.bind("x", [inst.input.key])
        lines = []

        def read_as(k, var, i):
            """Whether a step after i (or the return) reads value k under the spec name var."""
            later = [(key, v) for st in steps[i + 1:] for key, v in zip(st.inputs, st.input_vars)]
            later.append((inst.output.key, inst.output.via))
            return (k, var) in later

        def target_for(var, i):
            """The spec's variable name, unless it holds the only copy of a value needed later."""
            base = name = _sanitize(var)
            n = 1
            while any(last_use.get(k, -1) > i and names.only_holder(k, name) for k in names.keys_of(name)):
                n += 1
                name = f"{base}_{n}"
            return name

        optional_steps = self.optional.steps if self.optional else set()
        region = None  # the `if self.<layer> is not None:` the lines go under
        plain = []
        for i, s in enumerate(steps):
            if i in optional_steps and region is None:
                region = self._region_test(i)
                lines.append(region)
            elif i not in optional_steps:
                region = None
            indent = "    " if region else ""
            if s.kind == "alias":
                (k,) = s.inputs
                # in a merged class the name may be read on the path without the optional part
                needed = read_as(k, s.var, i) or (self.optional is not None and last_use.get(k, -1) > i)
                if not needed or s.var in names.names_of(k):
                    continue
                name = target_for(s.var, i)
                lines.append(f"{indent}{name} = {names.expr(k)}")
                if not region:
                    plain.append(lines[-1])
                names.bind(name, [k], alias=True)
                continue
            ins = [names.expr(k, prefer=v) for k, v in zip(s.inputs, s.input_vars)]
            if s.kind == "apply":
                rhs = f"self.{s.layer.name}({ins[0]})"
            else:
                peers = [self._step(j, i) for j in self.insts]
                e = _Attrs(self, s.prim, [p.attrs for p in peers if p is not None], s.origins, s.prim.name,
                           in_forward=True)
                rhs = s.prim.functional(e, ins)
                if s.prim.name == "drop_path":
                    self.gen.helpers.add("drop_path")
            name = target_for(s.var, i)
            lines.append(f"{indent}{name} = {rhs}")
            if not region:
                plain.append(lines[-1])
            names.bind(name, s.outputs, listed=s.listed)
        lines.append(f"return {names.expr(inst.output.key)}")
        plain.append(lines[-1])
        self.cls.plain_forward = plain
        return lines

    def _region_test(self, i) -> str:
        """`if self.downsample is not None:` for the optional steps from i on."""
        for s in self.first.steps[i:]:
            if s.kind == "apply" and s.layer.name in self.optional.layers:
                return f"if self.{s.layer.name} is not None:"
            if i not in self.optional.steps:
                break
        raise _Unmergeable("an optional part that applies no optional layer")

    def _step(self, inst, i) -> Optional[Step]:
        j = self.step_maps[id(inst)][i]
        return None if j is None else inst.steps[j]


def _same(a: list, b: list) -> bool:
    """Equal values of equal types (so that `true` does not stand for 1)."""
    return len(a) == len(b) and all(type(x) is type(y) and x == y for x, y in zip(a, b))


class _Holders:
    """Which Python names hold which values in a forward being written."""

    def __init__(self):
        self._keys = {}  # name -> keys it holds (several for the list a split returns)
        self._names = {}  # key -> names holding it, the original first
        self._listed = set()

    def bind(self, name, keys, listed=False, alias=False):
        for old in self._keys.get(name, []):
            self._names[old] = [n for n in self._names.get(old, []) if n != name]
        self._keys[name] = list(keys)
        self._listed.discard(name)
        if listed:
            self._listed.add(name)
        for k in keys:
            self._names.setdefault(k, [])
            if alias:
                self._names[k].append(name)
            else:
                self._names[k].insert(0, name)

    def keys_of(self, name):
        return self._keys.get(name, [])

    def names_of(self, key):
        return self._names.get(key, [])

    def only_holder(self, key, name):
        return self._names.get(key, []) == [name]

    def expr(self, key, prefer=None) -> str:
        held = self._names[key]
        name = prefer if prefer in held else held[0]
        return f"{name}[{key[1]}]" if name in self._listed else name


def _sanitize(var: str) -> str:
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in var)
    if not name or name[0].isdigit() or keyword.iskeyword(name) or name in ("self", "torch", "nn", "F", "Tensor"):
        name = "v_" + name
    return name


def _runs(items: list) -> list:
    out = []
    for it in items:
        if out and out[-1][0] == it:
            out[-1][1] += 1
        else:
            out.append([it, 1])
    return [(a, n) for a, n in out]


_NOPE = object()
_PREC = {"or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "neg": 7, "**": 8}


def _wrap(src, prec, need):
    return f"({src})" if prec < need else src


def _literal_value(e):
    if isinstance(e, ast.Literal) and isinstance(e.value, (int, float, bool, str)):
        return e.value
    if isinstance(e, ast.UnaryOp) and e.op == "-" and isinstance(e.operand, ast.Literal):
        return -e.operand.value
    return _NOPE


class _Attrs:
    """Argument sources of one primitive, for the emitters in `primitives`. In a forward, a value that
    is a constructor parameter is read from the attribute __init__ stores it in."""

    def __init__(self, writer: _ClassWriter, prim, per_instance: list, origins: dict, prefix: str,
                 in_forward: bool = False):
        self.w, self.prim, self.values, self.origins, self.prefix = writer, prim, per_instance, origins, prefix
        self.kinds = {p.name: p for p in prim.params}
        self.in_forward = in_forward

    def value(self, name):
        return self.values[0][name]

    def _values(self, name):
        return [v[name] for v in self.values]

    def __getitem__(self, name) -> str:
        values = self._values(name)
        src = self.w.slot(values, self.origins.get(name), f"{self.prefix}_{name}")
        if self.in_forward and src.isidentifier() and src not in ("True", "False", "None"):
            src = "self." + self.w.stored(src)
        p = self.kinds.get(name)
        if p is not None and p.kind == "pair" and src.startswith("["):
            src = "(" + src[1:-1] + ")"
        return src

    def kw(self, *names) -> list:
        """`name=source` for each argument that is symbolic or differs from its default somewhere."""
        out = []
        for name in names:
            src = self[name]
            symbolic = src != literal(self.values[0][name]) and not src.startswith("(")
            default = self.kinds[name].default
            if symbolic or any(repr(v) != repr(default) for v in self._values(name)):
                out.append(f"{name}={src}")
        return out

    def tuple(self, name) -> str:
        src = self[name]
        v = self.values[0][name]
        if src == literal(v) and isinstance(v, int):
            return f"({v}, {v})" if self.kinds[name].kind == "pair" else f"({v},)"
        if src.startswith("["):
            inner = src[1:-1]
            return f"({inner},)" if inner and "," not in inner else f"({inner})"
        return src


def generate(models: list) -> str:
    """Source for `models`: see `emit`."""
    return emit(models).source


def emit(models: list) -> Generator:
    """The generator that wrote `models`, its source in `.source`. A root class takes a spec parameter
    only where the code it generates does not depend on the parameter's value: each is checked by
    elaborating the model again with the value changed. Others (ones that change the structure)
    stay literals."""
    settled = [_settled(m) for m in models]
    if len(models) == 1:
        return settled[0]
    gen = Generator(models, {k: v for g in settled for k, v in g.frozen.items()})
    gen.generate()
    return gen


def _settled(model: Model) -> Generator:
    """The generator of `model` alone, once no root parameter it keeps fails to generalise."""
    frozen: set = set()
    while True:
        gen = Generator([model], {id(model.root): frozen})
        source = gen.generate()
        cls, _ = gen.class_of[id(model.root)]
        unsafe = {p.symbol for p in cls.params if not _generalises(model, cls, p, source, frozen)}
        if not unsafe:
            return gen
        frozen = frozen | unsafe


def _perturbed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    return None


def _generalises(model: Model, cls: ClassDef, param: CtorParam, source: str, frozen: set) -> bool:
    from ..errors import SpecError
    new = _perturbed(param.default)
    if new is None:
        return False
    overrides = dict(model.overrides)
    channels = None
    if param.symbol == model.root.input_symbol:
        channels = new
    else:
        overrides[param.symbol] = new
    try:
        other = model.elaborator.elaborate(model.definition, overrides, list(model.input_shape), channels)
    except SpecError:
        return False
    changed = Generator([other], {id(other.root): frozen}).generate()
    hint = _hint(param.default)
    start = source.index(f"\nclass {cls.name}(nn.Module):")
    expected = source[:start] + source[start:].replace(f"{param.name}: {hint} = {literal(param.default)}",
                                                       f"{param.name}: {hint} = {literal(new)}", 1)
    return _without_factories(changed) == _without_factories(expected)


def _without_factories(source: str) -> str:
    return source.split("\n\n\ndef ")[0]


def class_names(models: list) -> dict:
    """id(instance) -> its class's label (see Generator.labels), without settling root parameters,
    which do not change the classes."""
    gen = Generator(models)
    gen.generate()
    return gen.labels()
