"""Names and texts from a spec reach the generated code only checked or escaped. A corpus of
hostile names (Python keywords, builtins, nn.Module internals, the module's own names, mangled
names) and texts (quotes, backslashes and code in file names and comments): each spec either fails
with a located error or compiles to source that parses, imports, builds, and computes what the
elaborated spec computes."""
import ast as pyast

import pytest
import torch

import archsmith
from archsmith.backends.pytorch import emit
from archsmith.compiler import elaborate_models

from graph_reference import expected_state, run_graph

BODY = "    x = x | c: conv2d(4, 1)\n    return x\n"


def spec(params="", body=BODY, models="model net = Net() input [3, 8, 8]\n", head=""):
    return f"{head}block Net({params}) {{\n{body}}}\n{models}"


PARAMETERS = ["training", "forward", "self", "lambda", "None", "class", "math", "torch", "nn", "F", "Tensor",
              "OrderedDict", "super", "int", "range", "len", "drop_path", "DropPath", "in_channels", "x_2",
              "Optional", "__init__", "_modules"]
VARIABLES = ["drop_path", "torch", "F", "nn", "self", "math", "super", "lambda", "print", "Tensor", "in_channels"]
MODEL_NAMES = ["class", "None", "lambda", "super", "nn", "F", "torch", "Tensor", "drop_path", "print", "x"]
FILE_NAMES = ['n""";import os;os.system("echo PWNED");""".arch', "lib\\N.arch", "a'b.arch", "tab\t.arch",
              "new\nline.arch", 'q".arch', "ü.arch"]
COMMENTS = ['# a """quoted""" comment', "# a \\ backslash and \\N{BULLET}", '# ends with a quote "',
            "# ''' single triple '''", "# \\x00 \\u1234 tricks"]

CASES = (
    [(f"param {p}", spec(f"{p} = 4", f"    x = x | c: conv2d({p}, 1) | dropout({p} / 8)\n    return x\n"))
     for p in PARAMETERS if p != "None"]
    + [(f"variable {v}", spec(body=f"    {v} = x | c: conv2d(4, 1)\n    y = {v} | drop_path(0.25)\n"
                                   f"    return y + {v}\n")) for v in VARIABLES]
    + [(f"model {m}", spec(models=f"model {m} = Net() input [3, 8, 8]\nmodel net = Net() input [3, 8, 8]\n"))
       for m in MODEL_NAMES]
    + [(f"comment {c!r}", spec(head=c + "\n")) for c in COMMENTS]
    + [("string values", spec('kind = "a\\\\b\'c"', '    if kind == "a\\\\b\'c" {\n        x = x | c: conv2d(4, 1)\n'
                                                   '    }\n    return x\n')),
       ("infinite default", spec("p = 1e400", "    return x | c: conv2d(4, 1) | dropout(1 / p)\n")),
       ("layer named like the module's names", spec(body="    x = x | nn: conv2d(4, 1) | torch: relu() | F: relu()\n"
                                                        "    return x | self: conv2d(2, 1)\n")),
       ("layers Python would rename", spec(body='    x = x | __conv: conv2d(4, 1) | "ｆｏｒｗａｒｄ": conv2d(4, 1)\n'
                                                  '    return x | "class": conv2d(2, 1)\n')),
       ("block named like a builtin", "block print(k = 1) {\n    return x | c: conv2d(4, k)\n}\n"
                                      "block Net() {\n    return x | p: print()\n}\nmodel net = Net() input [3, 8, 8]\n")]
)

ERRORS = [(f"layer {n}", spec(body=f"    return x | {n}: conv2d(4, 1)\n"), 2)
          for n in ("training", "forward", "_parameters", "_modules", "T_destination", "compile", "bfloat16",
                    "share_memory", "__call__", "state_dict")] + [
    ("non-ASCII name", spec(body="    return x | ｆｏｒｗａｒｄ: conv2d(4, 1)\n"), 2),
    ("infinite eps", spec(body="    return x | c: batchnorm2d(eps=1e400)\n"), 2),
    ("nan momentum", spec(body="    return x | c: batchnorm2d(momentum=1e400 - 1e400)\n"), 2),
]


def check_source(models):
    """The source parses, imports, and each factory builds what the spec elaborates to."""
    gen = emit(models)
    pyast.parse(gen.source)
    namespace = {}
    exec(compile(gen.source, "<generated>", "exec"), namespace)
    for m in models:
        torch.manual_seed(0)
        module = namespace[gen.factory_names[m.name]]().eval()
        assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == expected_state(m.graph)
        x = torch.randn(2, *m.input_shape)
        with torch.no_grad():
            torch.testing.assert_close(module(x), run_graph(m.graph, module, x))
    return gen


@pytest.mark.parametrize("text", [t for _, t in CASES], ids=[n for n, _ in CASES])
def test_hostile_names_and_texts_compile_to_what_the_spec_says(text):
    check_source(elaborate_models(text))


@pytest.mark.parametrize("name", FILE_NAMES)
def test_hostile_file_names(name, tmp_path):
    path = tmp_path / name
    path.write_text(spec())
    gen = check_source(elaborate_models(str(path)))
    assert "PWNED" not in gen.source or '\\"\\"\\"' in gen.source


@pytest.mark.parametrize("text,line", [(t, l) for _, t, l in ERRORS], ids=[n for n, _, _ in ERRORS])
def test_names_that_would_change_a_key_or_a_value_are_located_errors(text, line):
    with pytest.raises(archsmith.SpecError) as e:
        archsmith.compile(text)
    assert e.value.line == line, str(e.value)


def test_the_corpus_is_large():
    assert len(CASES) + len(FILE_NAMES) + len(ERRORS) >= 70
