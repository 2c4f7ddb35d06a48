"""No injection: spec text reaches the generated code only as checked identifiers and as literals.

A corpus of hostile spec texts tries to break out of every place text enters the output: block,
model, parameter, variable, fn, def, region, field and layer names (quoted ones too), string values
and defaults, comments (which become docstrings), import paths and file names, and the messages of
`assert` and `error`. Each case either fails with a located SpecError or compiles, plain and deploy,
to source that parses, passes `source_audit.audit` (nothing but what the generator writes), and
executes and builds importing nothing but torch and the standard modules the generator uses; the
plain module computes what the elaborated spec computes, the deployed one what the plain one does.

`audit` itself is tested: it passes every bundled spec file's source, plain and deploy, and flags
hand-written hostile sources.
"""
from __future__ import annotations

import builtins
import time

import pytest
import torch

import archsmith
from archsmith.backends.inference import deployed_class_name, generate_deployed
from archsmith.backends.pytorch import emit
from archsmith.compiler import elaborate_models
from archsmith.loader import bundled_dir

from graph_reference import expected_state, run_graph
from source_audit import audit

ALLOWED_IMPORTS = {"torch", "math", "collections", "typing"}


# ------------------------------------------------------------------------------------- the corpus

BODY = "    return x | c: conv2d(4, 1)\n"


def spec(body=BODY, params="", block="Net", models=None, head="", doc="", model_doc=""):
    models = models if models is not None else f"{model_doc}model net = {block}() input [3, 8, 8]\n"
    return f"{head}{doc}block {block}({params}) {{\n{body}}}\n{models}"


# Python keywords the language does not reserve, builtins an escape would reach for, and the names
# the generated module itself uses (imports, helpers, locals, nn.Module's and its own attributes).
BLOCK_NAMES = ["class", "lambda", "None", "True", "print", "eval", "__import__", "super", "object", "type", "self",
               "nn", "F", "torch", "Tensor", "OrderedDict", "checkpoint", "Optional", "DropPath", "drop_path",
               "LayerNorm2d", "Layers", "ValueError", "__all__", "__builtins__", "__class__", "__x", "_", "os",
               "NetDeployed", "net"]
MODEL_NAMES = ["class", "lambda", "None", "eval", "exec", "__import__", "super", "self", "nn", "F", "torch",
               "Tensor", "checkpoint", "DropPath", "drop_path", "Net", "__all__", "__init__", "__x", "_", "kwargs",
               "x", "os", "NetDeployed", "in_channels"]
PARAM_NAMES = ["class", "lambda", "None", "True", "print", "eval", "__import__", "super", "self", "cls", "forward",
               "nn", "F", "torch", "math", "Tensor", "checkpoint", "Union", "drop_path", "DropPath", "ValueError",
               "kwargs", "__all__", "__class__", "__init__", "__x", "_", "x", "in_channels", "channels", "layers",
               "training"]
LOCAL_NAMES = ["class", "lambda", "eval", "__import__", "super", "self", "torch", "F", "nn", "math", "drop_path",
               "Tensor", "__x", "__class__", "_", "in_channels", "channels", "kwargs", "identity"]
FN_NAMES = ["class", "eval", "exec", "__import__", "open", "super", "torch", "F", "nn", "math", "drop_path",
            "make_divisible", "__x", "__init__", "Net", "net"]
LAYER_NAMES = ["class", "lambda", "None", "eval", "__import__", "super", "self", "nn", "F", "torch", "math",
               "Tensor", "drop_path", "x", "__x", "__class__", "__init__", "__dict__", "_modules", "forward",
               "add_module", "from_trained", "FUSED", "cls", "use_branch"]
REGION_NAMES = ["forward", "__call__", "__init__", "state_dict", "cuda", "to", "_apply", "__x", "class", "eval",
                "self", "mix"]

# Texts for the quoted places: a quoted layer name, a string value, a comment, a message. The
# language's strings have no escapes, no `"` and no newline: whatever else is there is text.
TEXTS = ["a'b", "'); import os; os.system('echo PWNED'); ('", "\\", "a\\", "\\\\", "\\'", "'''", "\\N{BULLET}",
         "\\x41\\u1234\\0", "\x00", "a\x00b", "\u2028", "\u2029", "\r", "a\rimport os", "\x0c", "\x0b", "\x85",
         "\t", "{{", "}}", "}", "%s%r", "é", "\U0001F600", "\ufeff", "\\'); import os #", "#", "f'{1}'"]


def _quoted_layer(text):
    return spec(f'    return x | "{text}": conv2d(4, 1)\n')


def _looped_layer(text):
    """A layer name with `{i}` of a loop over a parameter: written as an f-string of the class."""
    return spec(f'    for i in range(depth) {{\n        x = x | "{text}{{i}}": conv2d(3, 1)\n    }}\n    return x\n',
                "depth = 2")


def _string_value(text):
    return spec(f'    if kind == "{text}" {{\n        x = x | c: conv2d(4, 1)\n    }}\n    return x\n',
                f'kind = "{text}"')


def _string_argument(text):
    return (f'block B(kind = "x") {{\n    if kind == "{text}" {{\n        x = x | c: conv2d(4, 1)\n    }}\n'
            f'    return x\n}}\nblock Net() {{\n    x = x | a: B()\n    return x | b: B("{text}")\n}}\n'
            f'model net = Net() input [3, 8, 8]\nmodel other = B("{text}") input [3, 8, 8]\n')


def _assert_message(text):
    return spec(f'    assert depth > 0, "{text} {{depth}}"\n    return x | c: conv2d(4, 1)\n', "depth = 2")


def _error_message(text):
    return spec(f'    if kind == "a" {{\n        x = x | c: conv2d(4, 1)\n    }} else {{\n'
                f'        error("{text} {{kind}}")\n    }}\n    return x\n', 'kind = "a"')


def _comment(text):
    return spec(head=f"#{text}\n\n", doc=f"#{text}\n", model_doc=f"#{text}\n")


CASES = []  # (id, text, expect): expect is "ok" (must compile), "error" (a located SpecError) or "either"


def case(kind, name, text, expect="either"):
    CASES.append((f"{kind}[{ascii(name)[1:-1]}]", text, expect))


for n in BLOCK_NAMES:
    case("block", n, f"block {n}(k = 1) {{\n    return x | c: conv2d(4, k)\n}}\n"
                     f"block Net() {{\n    x = x | a: {n}()\n    return x | b: {n}(k=3)\n}}\n"
                     f"model net = Net() input [3, 8, 8]\nmodel one = {n}() input [3, 8, 8]\n")
for n in MODEL_NAMES:
    case("model", n, spec(models=f"model {n} = Net() input [3, 8, 8]\nmodel net = Net() input [3, 8, 8]\n"))
for n in PARAM_NAMES:
    case("param", n, f"block B({n} = 2) {{\n    return x | c: conv2d({n} * 2, 1) | dropout({n} / 8)\n}}\n"
                     f"block Net() {{\n    x = x | a: B()\n    return x | b: B({n}=3)\n}}\n"
                     f"model net = Net() input [3, 8, 8]\n")
for n in LOCAL_NAMES:
    case("local", n, spec(f"    {n} = x | c: conv2d(4, 1)\n    for i in range(2) {{\n"
                          f"        {n} = {n} | \"d{{i}}\": conv2d(4, 1)\n    }}\n    return {n} + x\n",
                          models="model net = Net() input [4, 8, 8]\n"))
for n in FN_NAMES:
    case("fn", n, f"fn {n}(v, d = 8) {{\n    return max(d, v // d * d)\n}}\n"
                  f"block B(w = 1.0) {{\n    return x | c: conv2d({n}(int(16 * w)), 1)\n}}\n"
                  f"block Net() {{\n    x = x | a: B()\n    return x | b: B(2.0)\n}}\n"
                  f"model net = Net() input [3, 8, 8]\n")
for n in FN_NAMES:
    case("def", n, f"def {n}(out, k = 1) = conv2d(out, k, padding=k // 2, bias=false)\n"
                   f"block Net() {{\n    x = x | a: {n}(4)\n    return x | b: {n}(8, k=3)\n}}\n"
                   f"model net = Net() input [3, 8, 8]\n")
for n in LAYER_NAMES:
    case("layer", n, spec(f"    x = x | {n}: conv2d(4, 1)\n    return x | {n}2: conv2d(4, 1)\n"))
for n in REGION_NAMES:
    case("region", n, spec(f"    a = x | ca: conv2d(4, 1)\n    recompute {n} if efficient {{\n"
                           f"        b = a | cb: conv2d(4, 1)\n    }}\n    return b\n", "efficient = true"))
for n in ["__class__", "self", "keys", "items", "__init__", "x", "class"]:
    case("field", n, f"ROWS = [{{{n}: 4, w: 1}}, {{{n}: 8, w: 2}}]\n"
                     f"block S(rows) {{\n    for r in rows {{\n        x = x | \"c{{r.w}}\": conv2d(r.{n}, 1)\n    }}\n"
                     f"    return x\n}}\nblock Net() {{\n    return x | s: S(ROWS)\n}}\nmodel net = Net() input [3, 8, 8]\n")
for t in TEXTS:
    case("quoted layer", t, _quoted_layer(t))
    case("looped layer", t, _looped_layer(t))
    case("string value", t, _string_value(t), "ok")
    case("comment", t, _comment(t), "ok")
for t in ["a'b", "'); import os; ('", "\\", "\\N", "\x00", "\u2028", "\r", "}}", "\U0001F600"]:
    case("string argument", t, _string_argument(t), "ok")
    case("assert message", t, _assert_message(t), "ok")
    case("error message", t, _error_message(t), "ok")
for t in ['"""', '""""', 'ends with a quote "', '"', '\\"""', "\\\\\\", '\\N{BULLET}"', '"""\\', "\ud800",
          "\udfff\ud83d"]:
    case("comment", t, _comment(t), "ok")
# blocks named as the helpers the generated module defines, in a spec that needs the helper too
for n, use in [("DropPath", "drop_path(0.1)"), ("drop_path", "drop_path(0.1)"), ("LayerNorm2d", "ln: layernorm2d()"),
               ("Permute", "p: permute([0, 1, 3, 2])"), ("Layers", "c2: conv2d(4, 1)"), ("conv3x3", "c2: conv3x3(4)")]:
    case("helper", n, f'import "std"\nblock {n}() {{\n    return x | c: conv2d(4, 1)\n}}\n'
                      f"block Net() {{\n    x = x | a: {n}() | {use}\n    return x | bn: batchnorm2d()\n}}\n"
                      "model net = Net() input [3, 8, 8]\n")
# breaking out of a string of the spec itself: the spec's strings end at the first `"`
for t in ['a\\"); import os; (\\"', '\\"', 'x"; import os; "']:
    case("quote break", t, _quoted_layer(t), "error")
    case("quote break value", t, _string_value(t), "error")
case("quote break import", 'x\\"; os.system', 'import "x\\"; os.system"\n' + spec(), "error")
case("import missing", "'; import os", "import \"'; import os #\"\n" + spec(), "error")
case("import traversal", "../../etc/passwd", 'import "../../../../../../etc/passwd"\n' + spec(), "error")
case("braces", "unclosed", _quoted_layer("a{b"), "error")
case("braces", "expr with quote", _looped_layer("{\"a\"}"), "error")

# A library of hostile file name imported by a spec: the file names reach docstrings.
FILE_NAMES = ['n""";import os;os.system("echo PWNED");""".arch', "lib\\N{BULLET}.arch", "a'b.arch", "tab\t.arch",
              "new\nline.arch", 'q".arch', "ü.arch", "cr\rx.arch", "u\u2028.arch", "trail\\.arch", "{x}.arch",
              "'''.arch", "%s.arch", "ends\".arch"]
LIB = "# The library.\nblock Lib(out = 4) {\n    return x | c: conv2d(out, 1)\n}\n"


class _RecordingImports:
    """Builtins whose `__import__` records the modules imported, for the namespace the source runs in."""

    def __init__(self):
        self.modules = []
        self.builtins = dict(vars(builtins), __import__=self.hook)

    def hook(self, name, *args, **kwargs):
        self.modules.append(name)
        return builtins.__import__(name, *args, **kwargs)


def run_source(source, what):
    """Audit, parse and execute `source`; -> its namespace and the import recorder."""
    problems = audit(source)
    assert problems == [], f"{what}:\n" + "\n".join(problems)
    imports = _RecordingImports()
    namespace = {"__builtins__": imports.builtins, "__name__": "generated"}
    exec(compile(source, f"<{what}>", "exec"), namespace)
    return namespace, imports


def check_plain(models, reference=True):
    """The source is clean, and each factory builds the elaborated graph: its keys and (with
    `reference`) its outputs. -> the modules, in eval mode."""
    gen = emit(models)
    namespace, imports = run_source(gen.source, "generated")
    modules = []
    for m in models:
        torch.manual_seed(0)
        module = namespace[gen.factory_names[m.name]]().eval()
        assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == expected_state(m.graph)
        if reference:
            x = torch.randn(2, *m.input_shape)
            with torch.no_grad():
                torch.testing.assert_close(module(x), run_graph(m.graph, module, x))
        modules.append(module)
    assert {name.split(".")[0] for name in imports.modules} <= ALLOWED_IMPORTS, imports.modules
    return modules


def check_deploy(models, modules):
    """The inference source is clean, and each network computes its plain module's eval function."""
    deployed, imports = run_source(generate_deployed(models), "deployed")
    for m, module in zip(models, modules):
        inference = deployed[deployed_class_name(m.name)].from_trained(module.state_dict())
        x = torch.randn(2, *m.input_shape)
        with torch.no_grad():
            torch.testing.assert_close(inference(x), module(x), rtol=1e-4, atol=1e-5)
    assert {name.split(".")[0] for name in imports.modules} <= ALLOWED_IMPORTS, imports.modules


def check_compiles(spec_or_path):
    """Plain and deploy, through the public API (a file's path)."""
    models = elaborate_models(spec_or_path)
    assert emit(models).source == archsmith.compile(spec_or_path)
    assert generate_deployed(models) == archsmith.compile(spec_or_path, deploy=True)
    check_deploy(models, check_plain(models))


_ELABORATED, _BUILT = {}, {}  # a case's models and plain modules, shared by its plain and deploy tests


def elaborated(text, expect):
    """The case's models; None where it is an error, which must be a located SpecError, and allowed."""
    try:
        if text not in _ELABORATED:
            try:
                _ELABORATED[text] = elaborate_models(text)
            except archsmith.SpecError as e:
                _ELABORATED[text] = e
        if isinstance(_ELABORATED[text], archsmith.SpecError):
            raise _ELABORATED[text]
        models = _ELABORATED[text]
    except archsmith.SpecError as e:
        assert expect != "ok", f"must compile, got: {e}"
        assert e.line is not None, f"not located: {e}"
        return None
    assert expect != "error", "must be an error"
    return models


CASE_PARAMS = dict(argnames="text,expect", argvalues=[pytest.param(text, expect, id=case_id)
                                                       for case_id, text, expect in CASES])


@pytest.mark.parametrize(**CASE_PARAMS)
def test_hostile_spec_text_is_an_error_or_clean_code(text, expect):
    models = elaborated(text, expect)
    if models is not None:
        _BUILT[text] = check_plain(models)  # emit(models).source is what archsmith.compile(text) returns


@pytest.mark.parametrize(**CASE_PARAMS)
def test_hostile_spec_text_deploys_to_clean_code(text, expect):
    """The inference network of what compiles, from a plain module's weights (a plain source that
    does not build fails this too)."""
    models = elaborated(text, expect)
    if models is not None:
        modules = _BUILT[text] if text in _BUILT else check_plain(models, reference=False)
        try:
            check_deploy(models, modules)
        except archsmith.SpecError as e:  # a layer the inference class's own members would hide
            assert e.line is not None and "would be hidden" in e.message, str(e)


@pytest.mark.parametrize("name", FILE_NAMES, ids=[ascii(n)[1:-1] for n in FILE_NAMES])
def test_hostile_file_names_of_a_spec_and_of_its_import(name, tmp_path):
    lib = tmp_path / name
    lib.write_text(LIB)
    main = tmp_path / name.replace(".arch", "_main.arch")
    stem = name[:-len(".arch")]
    if '"' in stem or "\n" in stem:  # an import path cannot hold these: the file is compiled on its own
        lib.write_text(LIB + "model lib = Lib() input [3, 8, 8]\n")
        check_compiles(str(lib))
        return
    main.write_text(f'# Main.\nimport "{stem}"\nblock Net() {{\n    return x | a: Lib() | b: Lib(8)\n}}\n'
                    "model net = Net() input [3, 8, 8]\n")
    check_compiles(str(main))


def test_the_corpus_is_large():
    assert len(CASES) + len(FILE_NAMES) >= 150


# ------------------------------------------------------------------------------------- the audit

def bundled_files():
    return sorted(p for p in bundled_dir().glob("*.arch"))


def test_every_bundled_spec_file_audits_clean_plain_and_deploy():
    """Every bundled model's source, from its spec file, plain and deploy, is what the generator may
    write; the files together define every bundled model."""
    started, problems, factories = time.perf_counter(), {}, set()
    for path in bundled_files():
        try:
            plain = archsmith.compile(str(path))
        except archsmith.SpecError as e:
            assert "defines no model" in str(e), e  # std.arch, a library
            continue
        deploy = archsmith.compile(str(path), deploy=True)
        for what, source in (("plain", plain), ("deploy", deploy)):
            found = audit(source)
            if found:
                problems[f"{path.name} ({what})"] = found
        factories |= {line[4:line.index("(")] for line in plain.splitlines() if line.startswith("def ")}
    assert problems == {}, "\n".join(f"{k}: {v[:5]}" for k, v in problems.items())
    assert set(archsmith.list_models()) <= factories
    assert time.perf_counter() - started < 60


HOSTILE_SOURCES = {
    "dunder import": 'def f():\n    return __import__("os").system("echo PWNED")\n',
    "eval": "import torch\n\n\ndef f(x):\n    return eval('x + 1')\n",
    "exec in a method": "from torch import nn\n\n\nclass A(nn.Module):\n    def forward(self, x):\n"
                        "        exec('import os')\n        return x\n",
    "open": "def f():\n    return open('/etc/passwd').read()\n",
    "top-level import os": '"""Doc."""\nimport os\n',
    "import in a function": "def f():\n    import subprocess\n    return subprocess\n",
    "from import": "from os import system\n",
    "top-level call": "import torch\nprint(torch)\n",
    "top-level assignment": "import torch\nx = torch.load('weights.pt')\n",
    "torch.load": "import torch\n\n\ndef f(p):\n    return torch.load(p)\n",
    "torch.hub": "import torch\n\n\ndef f():\n    return torch.hub.load('evil/repo', 'model')\n",
    "torch.os": "import torch\n\n\ndef f():\n    return torch.os.system('echo PWNED')\n",
    "dunder chain": "def f(x):\n    return x.__class__.__mro__[1].__subclasses__()\n",
    "getattr of a variable": "def f(x, n):\n    return getattr(x, n)\n",
    "getattr of a dunder": "def f(x):\n    return getattr(x, '__globals__')\n",
    "setattr": "def f(x):\n    setattr(x, 'a', 1)\n",
    "globals": "def f():\n    return globals()['torch']\n",
    "lambda": "def f():\n    g = lambda: 1\n    return g\n",
    "walrus": "def f(x):\n    return (y := x)\n",
    "metaclass": "from torch import nn\n\n\nclass A(nn.Module, metaclass=type):\n    pass\n",
    "decorator": "import torch\n\n\n@torch.jit.script\ndef f(x):\n    return x\n",
    "try": "def f():\n    try:\n        return 1\n    except Exception:\n        return 2\n",
    "while": "def f():\n    while True:\n        pass\n",
    "global": "def f():\n    global torch\n",
    "del": "def f(x):\n    del x\n",
    "shadowed builtin": "def f(x):\n    len = 3\n    return len\n",
    "redefined class": "from torch import nn\n\n\nclass A(nn.Module):\n    pass\n\n\nclass A(nn.Module):\n    pass\n",
    "method hiding nn.Module": "from torch import nn\n\n\nclass A(nn.Module):\n    def state_dict(self):\n"
                               "        return {}\n",
    "self.training": "from torch import nn\n\n\nclass A(nn.Module):\n    def __init__(self):\n"
                     "        super().__init__()\n        self.training = 1\n",
    "raise other": "def f():\n    raise SystemExit(1)\n",
    "unknown name": "def f():\n    return os.system('echo PWNED')\n",
    "syntax error": 'def f(:\n    """\n',
    "null byte": '"""a\x00b"""\n',
    "module docstring then code": '"""Doc."""\n__import__("os")\n',
    "__all__ with code": "__all__ = [__import__('os')]\n",
    "with other context": "def f():\n    with open('x') as h:\n        return h\n",
    "mangled parameter": "class A:\n    def __init__(self, __x):\n        pass\n",
    "breakpoint": "def f():\n    breakpoint()\n",
    "vars": "def f(x):\n    return vars(x)\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SOURCES))
def test_the_audit_flags_hostile_sources(name):
    assert audit(HOSTILE_SOURCES[name]), f"audit passed {name!r}"


def test_the_audit_passes_a_generated_source_and_flags_it_with_one_line_added():
    source = archsmith.compile("resnet18")
    assert audit(source) == []
    hostile = source.replace("        super().__init__()\n", "        super().__init__()\n"
                             "        __import__('os').system('echo PWNED')\n", 1)
    problems = audit(hostile)
    assert any("__import__" in p for p in problems), problems
