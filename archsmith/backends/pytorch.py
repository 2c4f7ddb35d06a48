"""PyTorch backend: elaborated models -> readable, standalone Python source.

Each block definition becomes one class, and each def that makes a module one helper function,
translated from its syntax tree (`classgen`): its parameters are the constructor's parameters, its
expressions are written as Python over them, so the class is right for every argument it takes, as
torchvision's are. Where a construct cannot be written over a parameter (docs/language.md §14 lists
them: a split count known only at construction, a size that depends on the input's height and width,
forward state per loop iteration...), that parameter is made a literal of the class instead, and the
block gets one class for each value its instances use: the generator retries with the parameters each
failure names until everything translates. The elaborated instances say which blocks are used with
which arguments; the models' factories pass the models' arguments."""
from __future__ import annotations

import os
import re
import textwrap
from collections import OrderedDict
from dataclasses import dataclass, field

from .. import ast
from ..errors import SpecError
from ..evaluate import BlockRef, Record, Scope
from ..ir import Instance, Model
from .classgen import _MISSING, RESERVED, RESULT, ClassSource, FnSource, FnTranslator, Namespace, Translator
from .values import IN, SPATIAL, Const, Dyn, Missing, Untranslatable, deps, fold, literal, src

MAX_ROUNDS = 1000


@dataclass
class ClassInfo:
    """One generated class: a block definition with the parameters fixed to literals (`fixed`)."""
    block: object  # ast.BlockDef
    fixed: dict  # spec parameter (or IN / SPATIAL) -> the value the class is written for
    rank: int  # of the block's input
    instances: list = field(default_factory=list)
    listed: bool = False  # whether the block's input is a list of tensors (joined, they have `rank`)
    root_channels: int = None  # the input channels of the first model this class is the root of
    class_params: dict = field(default_factory=dict)  # parameter -> id()s of the blocks it is given
    name: str = ""
    source: ClassSource = None


class _Retry(Exception):
    def __init__(self, block, failure: Untranslatable):
        super().__init__(failure.why)
        self.block, self.failure = block, failure


class Generator:
    def __init__(self, models: list):
        self.models = models
        self.fixed_names: dict = {}  # id(block) -> names made literal in its classes
        self.fixed_why: dict = {}  # id(block) -> {name: why the generator made it literal}
        self.classes: "OrderedDict[tuple, ClassInfo]" = OrderedDict()
        self.order: list = []  # ClassInfo, children first
        self.factory_names: dict = {}  # model name -> its factory function's name
        self.source = ""
        self._inline: dict = {}
        self._names = None
        self.blocks: dict = {}  # id(block) -> block, for the blocks passed as values
        self.class_params: dict = {}  # id(block) -> {parameter: id()s of the blocks its instances pass}
        self.width_params: dict = {}  # id(block) -> what a caller of `out_channels` passes it
        self.functions: "OrderedDict[tuple, ClassInfo]" = OrderedDict()  # the defs' helper functions
        self.fns: "OrderedDict[int, FnSource]" = OrderedDict()  # id(fn) -> the fn as a function
        for m in models:
            for inst in _instances(m.root):
                names = self.fixed_names.setdefault(id(inst.block), set())
                for p, v in inst.params.items():
                    if _passes_class(inst.block, p, v):
                        self.blocks[id(v.defn)] = v.defn
                        self.class_params.setdefault(id(inst.block), {}).setdefault(p, set()).add(id(v.defn))
                    elif _holds_block(v):
                        names.add(p)

    # ------------------------------------------------------------------ driver

    def generate(self) -> str:
        for _ in range(MAX_ROUNDS):
            try:
                self._translate_all()
                break
            except _Retry as retry:
                self._fix(retry.block, retry.failure)
        else:
            raise RuntimeError("code generation did not settle")
        self.source = self._module_source()
        return self.source

    def _fix(self, block, failure: Untranslatable):
        fixed = self.fixed_names[id(block)]
        candidates = {p.name for p in block.params} | {IN, SPATIAL}
        new = (failure.deps & candidates) - fixed
        if not new:
            new = candidates - fixed
        if not new:
            raise SpecError(f"`{block.name}` cannot be written as a Python class: {failure.why}", block.span,
                            hint="this is a limit of the code generator (docs section 17); `archsmith check` "
                                 "and the diagram still work")
        fixed |= new
        for name in new:
            self.fixed_why.setdefault(id(block), {})[name] = failure.why

    def _translate_all(self):
        self.classes, self.order, self._inline, self.functions = OrderedDict(), [], {}, OrderedDict()
        self.fns = OrderedDict()
        for m in self.models:
            for inst in _instances(m.root):
                key, fixed = self._key(inst.block, inst.params, inst.in_shape, inst.listed)
                info = self.classes.setdefault(key, ClassInfo(inst.block, fixed, len(inst.in_shape),
                                                              listed=inst.listed))
                info.instances.append(inst)
                info.class_params = {p: frozenset(ids) for p, ids in self.class_params.get(id(inst.block), {}).items()
                                     if p not in fixed}
        for m in reversed(self.models):  # a model's input channels are its root class's default
            self.classes[self._key(m.root.block, m.root.params, m.root.in_shape)[0]].root_channels = m.input_shape[0]
        self._name_all()
        for info in list(self.classes.values()):
            self._translate(info)

    def _translate(self, info: ClassInfo, owner=None):
        """Write a class (or, with `owner`, the helper function of that def) once."""
        if info.source is not None or info in self.order:
            return
        tr = Translator(self, info.block, info.fixed, info.rank, instances=info.instances,
                        root_channels=info.root_channels, class_params=info.class_params, listed=info.listed)
        try:
            info.source = tr.translate()
        except Untranslatable as failure:
            raise _Retry(owner or info.block, failure) from None
        if owner is None:
            self.order.append(info)

    def function_for(self, defn, values: dict, in_shape) -> ClassInfo:
        """The helper function a def that makes a module is written as, for these argument values."""
        fixed = self.fixed_names.setdefault(id(defn), set())
        fixed |= {p.name for p in defn.params
                  if isinstance(fold(values[p.name]), Const) and _holds_block(fold(values[p.name]).value)}
        concrete = self._concrete(defn, fixed, values, in_shape)
        shape = tuple(fold(d).value if isinstance(fold(d), Const) else None for d in in_shape)
        key, fixed_values = self._key(defn, concrete, shape)
        if key not in self.functions:
            block = _function_block(defn)
            info = self.functions[key] = ClassInfo(block, fixed_values, len(in_shape))
            info.class_params = {p: fold(v).classes for p, v in values.items()
                                 if isinstance(fold(v), Dyn) and fold(v).classes and p not in fixed_values}
            wanted = defn.name if not any(i.block.name == defn.name for i in list(self.functions.values())[:-1]) \
                else defn.name + "_" + _suffix(info, list(self.functions.values())).lower()
            info.name = self._names.create(wanted)
            self._translate(info, owner=defn)
        return self.functions[key]

    def def_output(self, defn, info: ClassInfo, values: dict, in_shape):
        """(output shape, (primitive, arguments) of the layer) of a def applied with these values."""
        key = ("def", id(defn), repr(sorted(values.items(), key=lambda kv: kv[0])), repr(in_shape))
        if key not in self._inline:
            tr = Translator(self, info.block, info.fixed, info.rank, inline=True, bindings=values, in_shape=in_shape)
            self._inline[key] = (tr.output_shape(), tr.layers.get(RESULT, (None, None)))
        return self._inline[key]

    def _key(self, block, values: dict, in_shape, listed: bool = False) -> tuple:
        fixed = {}
        for name in sorted(self.fixed_names.setdefault(id(block), set())):
            if name == IN:
                fixed[IN] = in_shape[0]
            elif name == SPATIAL:
                fixed[SPATIAL] = tuple(in_shape[1:])
            else:
                fixed[name] = values[name]
        return (id(block), len(in_shape), listed, _freeze(fixed)), fixed

    # ------------------------------------------------------------------ what the translator asks

    def constant(self, assign):
        return self.models[0].elaborator._constant(assign)

    def fold_fn(self, defn, args: list):
        """The value a fn returns for constant arguments [(name or None, value)]; `_MISSING` where it
        fails (a branch no model takes: Python raises there if it runs)."""
        try:
            return self.models[0].elaborator.call_fn(defn, [(n, v, None, None) for n, v in args], defn.span,
                                                     Scope(defn.file))
        except SpecError:
            return _MISSING

    def fn_info(self, defn, used: bool) -> FnSource:
        """The function a fn is written as (written once); `used`: a class calls it."""
        if id(defn) not in self.fns:
            info = self.fns[id(defn)] = FnSource(defn, self._names.create(defn.name))
            try:
                FnTranslator(self, info).write()
            except Untranslatable as failure:
                info.failure = failure.why
        info = self.fns[id(defn)]
        info.used = info.used or used
        return info

    def _written_fns(self) -> list:
        """The fns the classes call, and the fns those call."""
        wanted = {key for key, info in self.fns.items() if info.used}
        grown = True
        while grown:
            more = set().union(*[self.fns[k].calls for k in wanted]) & set(self.fns) if wanted else set()
            grown = bool(more - wanted)
            wanted |= more
        return [info for key, info in self.fns.items() if key in wanted and info.failure is None]

    def _concrete(self, defn, fixed, values: dict, in_shape) -> dict:
        """The values of the parameters `fixed` for a call: they must be known when the caller is written."""
        concrete = {}
        for name in fixed:
            if name in (IN, SPATIAL):
                dims = in_shape[:1] if name == IN else in_shape[1:]
                folded = [fold(d) for d in dims]
                if not all(isinstance(d, Const) for d in folded):
                    raise Untranslatable(frozenset().union(*[deps(d) for d in folded]),
                                         f"`{defn.name}` is written for one input size")
                continue
            v = fold(values[name])
            if not isinstance(v, Const):
                raise Untranslatable(deps(v), f"`{defn.name}` is written for one value of `{name}`")
            concrete[name] = v.value
        return concrete

    def class_for(self, block, values: dict, in_shape, listed: bool = False) -> ClassInfo:
        """The class a call of `block` with these argument values (from a translator) builds; `listed`:
        given a list of tensors, joined of `in_shape`."""
        concrete = self._concrete(block, self.fixed_names.setdefault(id(block), set()), values, in_shape)
        shape = tuple(fold(d).value if isinstance(fold(d), Const) else None for d in in_shape)
        key, fixed = self._key(block, concrete, shape, listed)
        if key not in self.classes:
            info = self.classes[key] = ClassInfo(block, fixed, len(in_shape), listed=listed)
            info.name = self._names.create(block.name)
        info = self.classes[key]
        self._translate(info)
        return info

    def output_shape(self, block, info: ClassInfo, values: dict, in_shape) -> tuple:
        """What `block` returns for these arguments and input, in the caller's values."""
        key = (id(block), repr(sorted(values.items(), key=lambda kv: kv[0])), repr(in_shape), info.listed)
        if key not in self._inline:
            tr = Translator(self, block, info.fixed, info.rank, inline=True, bindings=values, in_shape=in_shape,
                            listed=info.listed)
            self._inline[key] = tr.output_shape()
        return self._inline[key]

    # ------------------------------------------------------------------ names

    def _name_all(self):
        names = Namespace(reserved=RESERVED)
        self.factory_names = {m.name: names.create(m.name) for m in self.models}
        by_block = OrderedDict()
        for info in self.classes.values():
            by_block.setdefault(id(info.block), []).append(info)
        for infos in by_block.values():
            for info in infos:
                wanted = info.block.name
                if len(infos) > 1:
                    wanted += _suffix(info, infos)
                info.name = names.create(wanted)
        self._names = names

    # ------------------------------------------------------------------ the module

    def _module_source(self) -> str:
        roots = {}
        for m in self.models:
            key, _ = self._key(m.root.block, m.root.params, m.root.in_shape)
            roots[m.name] = self.classes[key]
        written = self.order + list(self.functions.values())
        fns = self._written_fns()
        uses = set().union(*[info.source.uses for info in written], *[f.uses for f in fns])
        factories = sorted(self.factory_names.values())
        code = []
        for fn in fns:
            where = f"Fn `{fn.defn.name}` of {_short(fn.defn.span.path)}:{fn.defn.span.line}."
            code += ["", "", fn.lines[0]] + _docstring(fn.defn.doc, where, "    ") + fn.lines[1:]
        for info in self.functions.values():
            code += ["", ""] + self._function_source(info)
        for info in self.order:
            code += ["", ""] + self._class_source(info)
        body = ["__all__ = [" + ", ".join(repr(n) for n in sorted(info.name for info in self.order) + factories) + "]"]
        for names, lines in SUPPORT:  # the helpers the code calls
            if any(re.search(rf"\b{name}\(", line) for line in code for name in names):
                body += ["", ""] + lines
        body += code
        for m in self.models:
            info = roots[m.name]
            where = f"`{m.name}` of {_short(m.definition.span.path)}:{m.definition.span.line}, " \
                    f"for input {list(m.input_shape)}."
            name = self.factory_names[m.name]
            fixed, keywords = self._factory_args(m, info)
            params = ["*"] + keywords if keywords else []
            body += ["", ""] + wrap_line(f"def {name}({', '.join(params + ['**kwargs'])}) -> {info.name}:")
            where += f"\nKeyword arguments go to `{info.name}`: `{name}(num_classes=10)`." if "num_classes" in \
                {sig.spec for sig in info.source.params} else f"\nKeyword arguments go to `{info.name}`."
            body += _docstring(m.definition.doc, where, "    ")
            passed = fixed + [f"{k.split('=')[0]}={k.split('=')[0]}" for k in keywords] + ["**kwargs"]
            body += wrap_line(f"    return {info.name}({', '.join(passed)})")
        text = "\n".join(body)
        sources = ", ".join(sorted({_short(m.definition.span.path) for m in self.models}))
        docs = "\n\n".join(dict.fromkeys(m.definition.file.doc for m in self.models if m.definition.file.doc))
        marker = f"Generated by archsmith from {sources}. Do not edit: edit the spec and compile again."
        head = _docstring(marker + ("\n\n" + docs if docs else ""), "", "")
        head += [""]
        std = [line for line, used in (("import math", "math" in uses),
                                       ("from collections import OrderedDict", "OrderedDict" in uses),
                                       ("from typing import " + ", ".join(sorted(uses & {"Optional", "Union"})),
                                        uses & {"Optional", "Union"})) if used]
        torch_imports = ["from torch.utils.checkpoint import checkpoint"] if "checkpoint" in uses else []
        head += std + ([""] if std else [])
        head += [line for line, used in (("import torch", "torch." in text),
                                         ("import torch.nn.functional as F", "F." in text)) if used]
        head += ["from torch import Tensor, nn"] + torch_imports + [""]
        return "\n".join(head + body).rstrip() + "\n"

    def _factory_args(self, m: Model, info: ClassInfo) -> tuple:
        """The model's arguments to its root class: (those the factory fixes: required ones and lists or
        classes, in the call; `name=value` of the other keywords, its own keyword parameters)."""
        out, keywords = [], []
        for sig in info.source.params:
            value = m.input_shape[0] if sig.spec == "" else m.root.params[sig.spec]
            if isinstance(value, BlockRef):
                # a block the class never builds (its parameter is unread) has no class: nothing to pass
                source = self.class_name(value.defn) if self._has_class(value.defn) else "None"
            else:
                source = literal(value)
            if sig.default is None:
                out.append(source)
            elif source != sig.default:
                scalar = isinstance(value, (int, float, str)) or value is None
                (keywords if scalar else out).append(f"{sig.name}={source}")
        return out, keywords

    def _classes_of(self, block):
        # the same definition, perhaps from another load of its file
        return [info for info in self.classes.values()
                if info.block.span == block.span and info.block.name == block.name and not info.fixed]

    def _has_class(self, block) -> bool:
        return bool(self._classes_of(block))

    def class_name(self, block) -> str:
        """The name of the class a block passed as a value is (written for no literal parameter)."""
        for info in self._classes_of(block):
            return info.name
        raise Untranslatable(frozenset(), f"`{block.name}` is passed as a class but has none of its own")

    def width_of(self, block):
        """A block's output channels as an expression over its own parameters, for `out_channels`."""
        key = ("width", id(block))
        if key not in self._inline:
            info = next(i for i in self.classes.values() if i.block is block and not i.fixed)
            names = {s.spec: s.name for s in info.source.params}
            bindings = {p.name: Dyn(names.get(p.name, p.name), deps=frozenset({p.name})) for p in block.params}
            shape = (Dyn(names.get("", "in_channels"), deps=frozenset({IN})),) + tuple(
                Missing(frozenset({SPATIAL})) for _ in range(info.rank - 1))
            tr = Translator(self, block, {}, info.rank, inline=True, bindings=bindings, in_shape=shape,
                            listed=info.listed)
            self._inline[key] = tr.output_shape()[0]
        return self._inline[key]

    def _width_method(self, info: ClassInfo) -> list:
        """`out_channels(...)`: what a caller that gets the class as a value reads its width from
        (torchvision's `planes * block.expansion`)."""
        width = self.width_of(info.block)
        own = deps(width)
        names = {s.spec or IN: s.name for s in info.source.params}
        params = [f"{names[p]}: int" if p in own else f"{names[p]}=None" for p in sorted(self.width_params[id(info.block)],
                                                                                     key=lambda p: p not in own)]
        return ["    @staticmethod", f"    def out_channels({', '.join(params)}) -> int:",
                '        """The channels of the output for these arguments."""', f"        return {src(width)}"]

    def _function_source(self, info: ClassInfo) -> list:
        defn = info.block.definition
        returns = info.source.returns
        if any(c.name == returns for c in self.order):  # a class written after the functions
            returns = repr(returns)
        out = [f"def {info.name}({', '.join(_params(info))}) -> {returns}:"]
        where = f"Layer `{defn.name}` of {_short(defn.span.path)}:{defn.span.line}."
        out += _docstring(defn.doc, where, "    ")
        out += ["    " + l.replace("\n", "\n    ") for l in info.source.init]
        return out

    def _class_source(self, info: ClassInfo) -> list:
        params = _params(info)
        out = [f"class {info.name}(nn.Module):"]
        where = f"Block `{info.block.name}` of {_short(info.block.span.path)}:{info.block.span.line}."
        out += _docstring(info.block.doc, where + self._fixed_note(info), "    ")
        if id(info.block) in self.width_params and not info.fixed:
            out += [""] + self._width_method(info)
        out += ["", f"    def __init__({', '.join(['self'] + params)}) -> None:", "        super().__init__()"]
        out += ["        " + l.replace("\n", "\n        ") for l in info.source.init]
        for method in info.source.methods:
            out += ["", *("    " + l for l in method)]
        returns = "Tensor"
        if info.source.training_returns:  # a tuple in training, the main output in eval
            returns = f"Union[Tensor, tuple[{', '.join(['Tensor'] * info.source.training_returns)}]]"
        out += ["", f"    def forward(self, x: {'list[Tensor]' if info.listed else 'Tensor'}) -> {returns}:"]
        out += ["        " + l.replace("\n", "\n        ") for l in info.source.forward]
        return out

    def _fixed_note(self, info: ClassInfo) -> str:
        """Why this class is written for some values of its block's parameters only, where the generator
        made them literal (a user calling it with other values is told where to look)."""
        why = self.fixed_why.get(id(info.block), {})
        reasons: dict = {}
        for name, value in info.fixed.items():
            if name in why:
                shown = ("`in_channels=" + repr(value) + "`" if name == IN else "an input of "
                         + "x".join(map(str, value)) if name == SPATIAL else f"`{name}={literal(value)}`")
                reasons.setdefault(why[name], []).append(shown)
        if not reasons:
            return ""
        notes = [f"Written for {', '.join(values)}: {why}." for why, values in reasons.items()]
        return "\n" + "\n".join(textwrap.wrap(" ".join(notes) + " Compile the spec again for other values.", 100))


def _params(info: ClassInfo) -> list:
    out = []
    for sig in info.source.params:
        p = f"{sig.name}: {sig.hint}" if sig.hint else sig.name
        if sig.default is not None:
            p += f" = {sig.default}" if sig.hint else f"={sig.default}"
        out.append(p)
    return out


def _function_block(defn):
    """A def as the block `return x | <result>: <its layer>`, which the translator writes as a function."""
    item = defn.layer
    result = ast.LayerItem(ast.LayerName(RESULT, None, item.span), item.target, item.span)
    block = ast.BlockDef(defn.name, defn.params, [ast.Return(ast.Pipe(ast.Name("x", item.span), result, item.span),
                                                             item.span)], defn.span, file=defn.file)
    block.definition = defn
    return block


def _instances(inst: Instance):
    """Every instance under `inst`, children before parents."""
    for layer in inst.layers:
        yield from _layer_instances(layer)
    yield inst


def _layer_instances(layer):
    if layer.kind == "block":
        yield from _instances(layer.instance)
    elif layer.kind == "seq":
        for c in layer.children:
            yield from _layer_instances(c)


def _passes_class(block, param, v) -> bool:
    """Whether the instance passes a block as the class of a required parameter (ResNet's `kind`)."""
    from .. import ast as spec
    declared = next(p for p in block.params if p.name == param)
    return isinstance(v, BlockRef) and isinstance(v.defn, spec.BlockDef) and declared.default is None


def _holds_block(v) -> bool:
    return isinstance(v, BlockRef) or (isinstance(v, list) and any(_holds_block(i) for i in v)) or (
        isinstance(v, Record) and any(_holds_block(i) for i in v.fields.values()))


def _freeze(v):
    if isinstance(v, BlockRef):
        return ("block", id(v.defn))
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in sorted(v.items()))
    if isinstance(v, Record):
        return ("record", tuple((k, _freeze(x)) for k, x in v.fields.items()))
    if isinstance(v, (list, tuple)):
        return ("list", tuple(_freeze(i) for i in v))
    return (type(v).__name__, v)


def _suffix(info: ClassInfo, infos: list) -> str:
    """What tells this class from the block's other classes: `ResNet` + `Bottleneck`, `Stage` + `N3`."""
    parts = []
    for name, value in info.fixed.items():
        if all(_freeze(other.fixed.get(name)) == _freeze(value) for other in infos):
            continue
        if isinstance(value, BlockRef):
            parts.append(value.defn.name)
        elif name == IN:
            parts.append(f"In{value}")
        elif name == SPATIAL:
            parts.append("At" + "x".join(map(str, value)))
        else:
            shown = "".join(c if c.isalnum() else "_" for c in str(value)).strip("_")
            if len(shown) > 12:  # a list or record: its place among the block's values, not its text
                values = list(dict.fromkeys(_freeze(other.fixed.get(name)) for other in infos))
                shown = str(values.index(_freeze(value)) + 1)
            parts.append(name[:1].upper() + name[1:] + shown)
    return "".join(parts)


def _docstring(comment: str, where: str, indent: str) -> list:
    """A docstring: the spec's comment (if any), then where the code came from; escaped."""
    def escape(text):
        text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        # a NUL or a line break other than \n would not survive as a character, and a class cannot
        # have a lone surrogate in its docstring: the docstring shows their escapes as text
        return "".join(c if c == "\n" or c.isprintable() else "\\" + ascii(c)[1:-1] for c in text)
    text, where = escape(comment), escape(where)
    if not text or not where:
        one = text or where
        if "\n" not in one:
            return [f'{indent}"""{one}"""']
        body = one.splitlines()
        return [f'{indent}"""{body[0]}'] + [f"{indent}{l}" if l else "" for l in body[1:]] + [f'{indent}"""']
    body = text.splitlines()
    return ([f'{indent}"""{body[0]}'] + [f"{indent}{l}" if l else "" for l in body[1:]]
            + [""] + [f"{indent}{l}" for l in where.splitlines()] + [f'{indent}"""'])


def wrap_line(line: str, width: int = 110) -> list:
    """A long line broken after commas outside strings, continued after the outermost bracket open
    at the first of them."""
    if len(line) <= width:
        return [line]
    quote, breaks, open_brackets, opening = None, [], [], None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "([{":
            open_brackets.append(i)
        elif c in ")]}":
            open_brackets.pop()
        elif c == "," and open_brackets:
            breaks.append(i + 1)
            opening = open_brackets[0] if opening is None else opening
    if not breaks:
        return [line]
    out, start, last = [], 0, 0
    for b in breaks + [len(line)]:
        if b - start > width - (opening + 1 if out else 0) and last > start:
            out.append(line[start:last].rstrip())
            start = last + 1  # the space after the comma
        last = b
    out.append(line[start:])
    return [out[0]] + [" " * (opening + 1) + part for part in out[1:]]


def _short(path: str) -> str:
    return os.path.basename(path)


_DROP_PATH = [
    "def drop_path(x: Tensor, p: float, training: bool) -> Tensor:",
    '    """Stochastic depth (Huang et al. 2016): zero whole samples with probability p, rescale the rest."""',
    "    if p == 0.0 or not training:",
    "        return x",
    "    keep = 1.0 - p",
    "    mask = x.new_empty([x.shape[0]] + [1] * (x.ndim - 1)).bernoulli_(keep)",
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


_LAYER_NORM_2D = [
    "class LayerNorm2d(nn.LayerNorm):",
    '    """Layer norm over the channels of an N x C x H x W tensor (torchvision\'s LayerNorm2d)."""',
    "",
    "    def forward(self, x: Tensor) -> Tensor:",
    "        x = x.permute(0, 2, 3, 1)",
    "        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)",
    "        return x.permute(0, 3, 1, 2)",
]

_PERMUTE = [
    "class Permute(nn.Module):",
    '    """Tensor.permute as a module, for a sequence of layers (torchvision\'s Permute)."""',
    "",
    "    def __init__(self, dims: list[int]) -> None:",
    "        super().__init__()",
    "        self.dims = dims",
    "",
    "    def forward(self, x: Tensor) -> Tensor:",
    "        return torch.permute(x, self.dims)",
]

# helper code of the generated file: (the names it defines, its lines)
SUPPORT = [(("drop_path", "DropPath"), _DROP_PATH), (("LayerNorm2d",), _LAYER_NORM_2D), (("Permute",), _PERMUTE)]


def generate(models: list) -> str:
    """Source for `models`: see `emit`."""
    return emit(models).source


def emit(models: list) -> Generator:
    """The generator that wrote `models`, its source in `.source`."""
    gen = Generator(models)
    try:
        gen.generate()
    except RecursionError:  # the spec's nesting is within the limits, but not within Python's stack here
        first = models[0].definition
        raise SpecError("the spec nests blocks, branches or expressions too deeply to write its classes",
                        first.span, source=first.file.text,
                        hint="lower the `nesting` limit (`--limit nesting=N`) to find where") from None
    return gen
