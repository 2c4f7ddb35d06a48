"""An audit of generated source against what the code generator legitimately writes (no tests here).

`audit(source)` parses the source with `ast` and returns a list of violations, empty when every
statement, name, attribute and call is one the generator emits: a text of a spec that broke out of
its string literal or identifier would show up as a statement, a name or a call outside this list.

The allowlist was derived from the generated source of the bundled specs, the examples, the test
fixtures and the specs of the test modules (about 600 sources, deploy included), and from the op
table of `archsmith.primitives`; it is kept tight on purpose: a generator that starts writing
something new must add it here, in review.

* Module level: a docstring, the imports below (exactly), `__all__ = [names]`, classes and functions.
* Classes: bases `nn.<allowed>` or classes of the module; no keywords (no metaclass); decorators
  `classmethod`/`staticmethod` only; methods and class attributes hide no `nn.Module` attribute
  (`forward` and `__init__` excepted) and no dunder.
* Statements in functions: assignments, `return`, `if`, `for`, `raise ValueError(...)`, `with
  torch.device(...)`/`torch.no_grad()`, expression statements (calls, string constants), `pass`,
  `break`, `continue`. No import, global, del, try, while, lambda, nested def or class, yield, await.
* Names read: the function's own (parameters and assigned names), the module's (imports, classes,
  functions), or the builtins in BUILTINS. Nothing else: no eval, exec, compile, open, __import__,
  globals, vars, setattr, print, input, breakpoint, os, sys...
* Names bound: no builtin, import, `self` (but as a method's first parameter) or module-level name
  (a model's factory excepted) is rebound by a parameter or a local; no module-level class or function
  takes a name Python gives the module a meaning by (`__builtins__`, `__all__`, `__getattr__`...).
* Python's own rewriting of names: in a class, no parameter, keyword or module-level name read is a
  mangled `__name` (`_Class__name` to Python), and no method calling `super()` binds `__class__`.
* Attributes: no name starting with `_` except `super().__init__`; a chain from torch, nn, F or math
  is one of QUALIFIED exactly; `self.<attr> = ...` (or `add_module('<attr>', ...)`) sets no nn.Module
  attribute and none of the class's own methods and class attributes, which would hide it.
* `getattr(obj, name)` takes a non-dunder string literal or an f-string as its name; `setattr`,
  `delattr` and friends are not builtins here.
"""
from __future__ import annotations

import ast
import builtins

import torch.nn

# (module, alias) of `import module [as alias]`, and (module, name) of `from module import name`.
IMPORTS = {("torch", None), ("torch.nn.functional", "F"), ("math", None)}
FROM_IMPORTS = {("torch", "Tensor"), ("torch", "nn"), ("torch.utils.checkpoint", "checkpoint"),
                ("collections", "OrderedDict"), ("typing", "Optional"), ("typing", "Union")}

BUILTINS = {"ValueError", "any", "all", "bool", "classmethod", "dict", "enumerate", "float", "getattr", "int",
            "isinstance", "len", "list", "max", "min", "next", "range", "reversed", "round", "staticmethod", "str",
            "sum", "super", "tuple", "type", "zip", "abs"}
EXCEPTIONS = {"ValueError"}
DECORATORS = {"classmethod", "staticmethod"}

_NN = {"Module", "ModuleDict", "ModuleList", "Sequential", "Parameter", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
       "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AvgPool1d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
       "ChannelShuffle", "Conv1d", "Conv2d", "Dropout", "ELU", "Flatten", "GELU", "GroupNorm", "Hardsigmoid",
       "Hardswish", "Identity", "InstanceNorm2d", "LayerNorm", "LeakyReLU", "Linear", "LocalResponseNorm",
       "LogSoftmax", "MaxPool1d", "MaxPool2d", "Mish", "PReLU", "PixelShuffle", "PixelUnshuffle", "ReLU", "ReLU6",
       "SELU", "SiLU", "Sigmoid", "Softmax", "Softplus", "Tanh", "Unflatten", "Upsample"}
_F = {"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d", "avg_pool1d",
      "avg_pool2d", "max_pool1d", "max_pool2d", "channel_shuffle", "dropout", "elu", "gelu", "group_norm",
      "hardsigmoid", "hardswish", "instance_norm", "interpolate", "layer_norm", "leaky_relu",
      "local_response_norm", "mish", "pad", "pixel_shuffle", "pixel_unshuffle", "relu", "relu6", "selu", "silu",
      "softplus", "batch_norm", "linear", "conv1d", "conv2d"}
_TORCH = {"abs", "arange", "cat", "chunk", "device", "empty", "exp", "flatten", "float64", "float32", "full", "log",
          "log_softmax", "matmul", "no_grad", "ones", "permute", "rsqrt", "sigmoid", "softmax", "split", "sqrt",
          "stack", "tanh", "zeros", "Tensor"}
_MATH = {"ceil", "floor", "exp", "log", "log2", "sqrt", "prod", "isfinite", "inf", "pi"}
_INIT = {"normal_", "trunc_normal_", "zeros_", "ones_", "constant_"}
QUALIFIED = ({f"nn.{n}" for n in _NN} | {f"nn.init.{n}" for n in _INIT} | {f"F.{n}" for n in _F}
             | {f"torch.{n}" for n in _TORCH} | {f"math.{n}" for n in _MATH})
ROOTS = {"torch", "nn", "F", "math"}
CONTEXTS = {"torch.device", "torch.no_grad"}

STATEMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Return, ast.If, ast.For, ast.Raise, ast.With,
              ast.Expr, ast.Pass, ast.Break, ast.Continue)
EXPRESSIONS = (ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Dict, ast.DictComp, ast.ListComp,
               ast.GeneratorExp, ast.Compare, ast.Call, ast.FormattedValue, ast.JoinedStr, ast.Constant,
               ast.Attribute, ast.Subscript, ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice,
               ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop, ast.comprehension, ast.keyword)

# What a method, a class attribute or `self.<x> = ...` may not be: nn.Module's own attributes.
MODULE_ATTRIBUTES = (set(dir(torch.nn.Module)) | {"training"}) - {"forward", "__init__"}
# What no parameter or local may rebind.
PROTECTED = set(dir(builtins)) | {"torch", "nn", "F", "math", "Tensor", "checkpoint", "OrderedDict", "Optional",
                                  "Union", "self"}
# Module-level names Python itself gives a meaning (the module's builtins, its star-import list, its
# attribute hook...): a class or function of that name changes how the module works.
MODULE_SPECIAL = {"__all__", "__builtins__", "__getattr__", "__dir__", "__class__", "__dict__", "__name__", "__doc__",
                  "__file__", "__spec__", "__loader__", "__package__", "__path__", "__annotations__", "__cached__"}


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _is_dunder(text: str) -> bool:
    return text.startswith("__") and text.endswith("__") and len(text) > 4


def _is_mangled(text: str) -> bool:
    """`__x` inside a class body is `_Class__x` to Python: a name the class reads from outside, or a
    keyword its callers pass, is then another name."""
    return text.startswith("__") and not text.endswith("__")


def _calls_super(f) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "super" for n in ast.walk(f))


def _bound_names(node) -> set:
    """Names a function binds: its parameters and every Store target in it (comprehensions included)."""
    out = set()
    a = node.args
    for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
        out.add(arg.arg)
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            out.add(sub.id)
    return out


class _Auditor:
    def __init__(self):
        self.problems = []
        self.module_names = set()
        self.shadowable = set()
        self.current_class = None  # the class whose body is being read
        self.own = set()  # its methods and class attributes

    def flag(self, node, message):
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: {message}")

    # -- module ---------------------------------------------------------------------------------

    def module(self, tree: ast.Module):
        imported = set()
        defined = []
        for s in tree.body:
            if isinstance(s, ast.Import):
                for a in s.names:
                    if (a.name, a.asname) not in IMPORTS:
                        self.flag(s, f"import of `{a.name}`" + (f" as `{a.asname}`" if a.asname else "")
                                  + " is not one the generator writes")
                    imported.add(a.asname or a.name.split(".")[0])
            elif isinstance(s, ast.ImportFrom):
                for a in s.names:
                    if s.level or (s.module, a.name) not in FROM_IMPORTS or a.asname:
                        self.flag(s, f"`from {'.' * s.level}{s.module} import {a.name}` is not an import the "
                                     "generator writes")
                    imported.add(a.asname or a.name)
            elif isinstance(s, (ast.FunctionDef, ast.ClassDef)):
                defined.append(s)
        names = [s.name for s in defined]
        for s in defined:
            if names.count(s.name) > 1:
                self.flag(s, f"`{s.name}` is defined {names.count(s.name)} times at module level")
            if s.name in PROTECTED or s.name in imported:
                self.flag(s, f"module-level `{s.name}` shadows a builtin, an import or self")
            if s.name in MODULE_SPECIAL:
                self.flag(s, f"module-level `{s.name}` replaces what Python means by `{s.name}`")
        self.module_names = imported | set(names) | {"__all__"}
        classes = {s.name for s in defined if isinstance(s, ast.ClassDef)}
        # a local may shadow a model's factory (a model `features` and a local `features`), not a class,
        # an import or a helper function the generated code calls
        self.shadowable = {s.name for s in defined if isinstance(s, ast.FunctionDef) and _is_factory(s, classes)}
        self.shadowable.add("__all__")
        for i, s in enumerate(tree.body):
            if isinstance(s, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(s, ast.Expr):
                if not (isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)):
                    self.flag(s, f"module-level expression statement `{_short(s)}`")
            elif isinstance(s, ast.Assign):
                self.dunder_all(s, set(names))
            elif isinstance(s, ast.ClassDef):
                self.class_def(s, set(names))
            elif isinstance(s, ast.FunctionDef):
                self.function(s, [], in_class=False)
            else:
                self.flag(s, f"module-level {type(s).__name__} statement `{_short(s)}`")

    def dunder_all(self, s: ast.Assign, defined: set):
        ok = (len(s.targets) == 1 and isinstance(s.targets[0], ast.Name) and s.targets[0].id == "__all__"
              and isinstance(s.value, ast.List)
              and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in s.value.elts))
        if not ok:
            self.flag(s, f"module-level assignment `{_short(s)}` (only `__all__ = [names]` is written)")
            return
        for e in s.value.elts:
            if e.value not in defined:
                self.flag(s, f"`__all__` names `{e.value}`, which the module does not define")

    # -- classes --------------------------------------------------------------------------------

    def class_def(self, c: ast.ClassDef, defined: set):
        for b in c.bases:
            name = _dotted(b)
            if not (name in defined or (name and name.startswith("nn.") and name in QUALIFIED)):
                self.flag(c, f"class `{c.name}` has base `{ast.unparse(b)}`")
        if c.keywords:
            self.flag(c, f"class `{c.name}` has keywords ({', '.join(k.arg or '**' for k in c.keywords)})")
        if c.decorator_list:
            self.flag(c, f"class `{c.name}` is decorated")
        self.current_class = c.name
        self.own = {s.name for s in c.body if isinstance(s, ast.FunctionDef)} | {
            t.id for s in c.body if isinstance(s, (ast.Assign, ast.AnnAssign))
            for t in (s.targets if isinstance(s, ast.Assign) else [s.target]) if isinstance(t, ast.Name)}
        for i, s in enumerate(c.body):
            if isinstance(s, ast.FunctionDef):
                if s.name in MODULE_ATTRIBUTES or (s.name.startswith("__") and s.name != "__init__"):
                    self.flag(s, f"method `{c.name}.{s.name}` hides an nn.Module attribute or is a dunder")
                self.function(s, [], in_class=True)
            elif isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
                continue
            elif isinstance(s, (ast.Assign, ast.AnnAssign)):
                targets = s.targets if isinstance(s, ast.Assign) else [s.target]
                for t in targets:
                    if not isinstance(t, ast.Name):
                        self.flag(s, f"class attribute target `{ast.unparse(t)}`")
                    elif t.id in MODULE_ATTRIBUTES or t.id.startswith("_") or t.id in PROTECTED:
                        self.flag(s, f"class attribute `{c.name}.{t.id}` hides an nn.Module attribute, a builtin "
                                     "or is private")
                if isinstance(s, ast.AnnAssign):
                    self.expr(s.annotation, set())
                if s.value is not None:
                    self.expr(s.value, set())
            else:
                self.flag(s, f"{type(s).__name__} statement in the body of class `{c.name}`")
        self.current_class, self.own = None, set()

    # -- functions ------------------------------------------------------------------------------

    def function(self, f: ast.FunctionDef, outer: list, in_class: bool):
        for d in f.decorator_list:
            if not (isinstance(d, ast.Name) and d.id in DECORATORS and in_class):
                self.flag(f, f"function `{f.name}` has decorator `{ast.unparse(d)}`")
        a = f.args
        for default in a.defaults + [d for d in a.kw_defaults if d is not None]:
            self.expr(default, set())
        for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
            if arg.annotation is not None:
                self.expr(arg.annotation, set())
        if f.returns is not None:
            self.expr(f.returns, set())
        local = _bound_names(f)
        first = (a.posonlyargs + a.args)[:1]
        allowed_first = {"self", "cls"} if in_class else set()
        for name in sorted(local):
            if name in PROTECTED and not (first and first[0].arg == name and name in allowed_first):
                self.flag(f, f"`{f.name}` binds `{name}`, which shadows a builtin, an import or self")
            elif name in self.module_names and name not in self.shadowable:
                self.flag(f, f"`{f.name}` binds `{name}`, which shadows a module-level name")
            elif in_class and name == "__class__" and _calls_super(f):
                self.flag(f, f"`{f.name}` binds `__class__`, the cell zero-argument super() reads")
        if in_class:
            for arg in a.posonlyargs + a.args + a.kwonlyargs:
                if _is_mangled(arg.arg):
                    self.flag(f, f"parameter `{arg.arg}` of `{self.current_class}.{f.name}` is "
                                 f"`_{self.current_class.lstrip('_')}{arg.arg}` to Python: a caller's keyword misses it")
        self.body(f.body, local)

    def body(self, statements, local):
        for s in statements:
            self.statement(s, local)

    def statement(self, s, local):
        if not isinstance(s, STATEMENTS):
            self.flag(s, f"{type(s).__name__} statement `{_short(s)}` inside a function")
            return
        if isinstance(s, ast.Expr):
            v = s.value
            if not (isinstance(v, ast.Call) or (isinstance(v, ast.Constant) and isinstance(v.value, str))):
                self.flag(s, f"expression statement `{_short(s)}` is neither a call nor a string")
            self.expr(v, local)
        elif isinstance(s, ast.Raise):
            exc = s.exc.func if isinstance(s.exc, ast.Call) else s.exc
            if s.cause is not None or not (isinstance(exc, ast.Name) and exc.id in EXCEPTIONS):
                self.flag(s, f"`{_short(s)}` raises something other than {sorted(EXCEPTIONS)}")
            if s.exc is not None:
                self.expr(s.exc, local)
        elif isinstance(s, ast.With):
            for item in s.items:
                e = item.context_expr
                if not (isinstance(e, ast.Call) and _dotted(e.func) in CONTEXTS):
                    self.flag(s, f"`with {ast.unparse(e)}` is not a context the generator uses")
                self.expr(e, local)
                if item.optional_vars is not None:
                    self.target(item.optional_vars, local)
            self.body(s.body, local)
        elif isinstance(s, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = s.targets if isinstance(s, ast.Assign) else [s.target]
            for t in targets:
                self.target(t, local)
            if isinstance(s, ast.AnnAssign):
                self.expr(s.annotation, local)
            if s.value is not None:
                self.expr(s.value, local)
        elif isinstance(s, ast.Return):
            if s.value is not None:
                self.expr(s.value, local)
        elif isinstance(s, ast.If):
            self.expr(s.test, local)
            self.body(s.body, local)
            self.body(s.orelse, local)
        elif isinstance(s, ast.For):
            self.target(s.target, local)
            self.expr(s.iter, local)
            self.body(s.body, local)
            self.body(s.orelse, local)

    def target(self, t, local):
        if isinstance(t, ast.Name):
            return
        if isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self.target(e, local)
            return
        if isinstance(t, ast.Starred):
            self.target(t.value, local)
            return
        if isinstance(t, ast.Attribute):
            if isinstance(t.value, ast.Name) and t.value.id == "self" and t.attr in MODULE_ATTRIBUTES:
                self.flag(t, f"`self.{t.attr} = ...` overwrites an nn.Module attribute")
            if isinstance(t.value, ast.Name) and t.value.id == "self" and t.attr in self.own:
                self.flag(t, f"`self.{t.attr} = ...` is hidden by the class's own `{self.current_class}.{t.attr}`")
            self.expr(t, local)
            return
        if isinstance(t, ast.Subscript):
            self.expr(t, local)
            return
        self.flag(t, f"assignment target `{ast.unparse(t)}`")

    # -- expressions ----------------------------------------------------------------------------

    def expr(self, e, local):
        for node in ast.walk(e):
            if isinstance(node, (ast.arguments, ast.arg)):  # a lambda's, flagged as the lambda
                continue
            if not isinstance(node, EXPRESSIONS):
                self.flag(node, f"{type(node).__name__} expression `{_short(node)}`")
                continue
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id not in local and node.id not in self.module_names and node.id not in BUILTINS:
                    self.flag(node, f"name `{node.id}` is neither the function's, the module's nor an allowed "
                                    "builtin")
                elif self.current_class and node.id not in local and (_is_mangled(node.id) or node.id == "__class__"):
                    self.flag(node, f"module-level `{node.id}` read in class `{self.current_class}` is not what "
                                    "Python reads there (name mangling, the __class__ cell)")
            elif isinstance(node, ast.keyword) and node.arg and self.current_class and _is_mangled(node.arg):
                self.flag(e, f"keyword `{node.arg}=` in class `{self.current_class}` is mangled by Python")
            elif isinstance(node, ast.Attribute):
                self.attribute(node)
            elif isinstance(node, ast.Call):
                self.call(node)
            elif isinstance(node, ast.comprehension) and node.is_async:
                self.flag(e, "async comprehension")

    def attribute(self, node: ast.Attribute):
        if node.attr.startswith("_"):
            is_super_init = (node.attr == "__init__" and isinstance(node.value, ast.Call)
                             and isinstance(node.value.func, ast.Name) and node.value.func.id == "super"
                             and not node.value.args and not node.value.keywords)
            if not is_super_init:
                self.flag(node, f"attribute `{node.attr}` (private or dunder) in `{_short(node)}`")
        dotted = _dotted(node)
        if dotted is not None and dotted.split(".")[0] in ROOTS:
            # the longest chain from a module root is checked once, at its outermost attribute
            parts = dotted.split(".")
            for n in range(2, len(parts) + 1):
                prefix = ".".join(parts[:n])
                if prefix in QUALIFIED:
                    break
                if not any(q.startswith(prefix + ".") for q in QUALIFIED):
                    self.flag(node, f"`{prefix}` is not one of the torch, nn, F or math names the generator uses")
                    break

    def call(self, node: ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "getattr":
            if len(node.args) != 2 or node.keywords:
                self.flag(node, f"`{_short(node)}`: getattr with other than two positional arguments")
            elif not ((isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                       and not _is_dunder(node.args[1].value)) or isinstance(node.args[1], ast.JoinedStr)):
                self.flag(node, f"`{_short(node)}`: getattr of a name that is not a non-dunder string literal")
        if (isinstance(func, ast.Attribute) and func.attr == "add_module" and node.args
                and isinstance(node.args[0], ast.Constant) and node.args[0].value in self.own | MODULE_ATTRIBUTES):
            self.flag(node, f"`{_short(node)}`: a submodule hidden by an attribute of its class")
        if isinstance(func, ast.Name) and func.id in ("type",) and len(node.args) != 1:
            self.flag(node, f"`{_short(node)}`: type() that creates a class")
        if isinstance(func, ast.Name) and func.id == "super" and (node.args or node.keywords):
            self.flag(node, f"`{_short(node)}`: super with arguments")


def _is_factory(f: ast.FunctionDef, classes: set) -> bool:
    """`def resnet50(**kwargs) -> ResNet: "doc"; return ResNet(...)`: a model's factory."""
    body = f.body[1:] if f.body and isinstance(f.body[0], ast.Expr) else f.body
    return (len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Call)
            and isinstance(body[0].value.func, ast.Name) and body[0].value.func.id in classes)


def _short(node) -> str:
    text = ast.unparse(node).replace("\n", "\\n")
    return text if len(text) <= 80 else text[:77] + "..."


def audit(source: str) -> list:
    """The violations of `source` against the allowlist, each `line N: what`; [] when it is clean."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, UnicodeError) as e:
        return [f"does not parse: {type(e).__name__}: {e}"]
    auditor = _Auditor()
    auditor.module(tree)
    return list(dict.fromkeys(auditor.problems))
