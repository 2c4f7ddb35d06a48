"""Hostile and broken specs: whatever a spec holds, the compiler gives a module or a located
`SpecError`, within the limits of `archsmith.limits`, and never hangs, blows up or shows a traceback.
Each case here once did one of those."""
import os
import signal
import subprocess
import sys

import pytest
import torch

import archsmith
from archsmith import limits
from archsmith.compiler import elaborate_models

NET = "block Net() {\n    return x | c: conv2d(4, 1)\n}\nmodel net = Net() input [3, 8, 8]\n"


@pytest.fixture(autouse=True)
def no_hang():
    """A case that hangs fails here instead of stalling the suite (the bound is far above any case's time)."""
    def hung(*_):
        raise TimeoutError("the case ran for more than 60 s")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def located(text, line, *words, **params):
    """The spec's error, which is at `line` and says `words`."""
    with pytest.raises(archsmith.SpecError) as caught:
        archsmith.compile(text, **params)
    error = caught.value
    assert error.line == line and error.column is not None, str(error)
    assert str(error).startswith(f"{error.path}:{error.line}:{error.column}: error: ")
    for word in words:
        assert word in str(error)
    return error


def classes(text) -> dict:
    """The generated module of `text`, executed: its namespace."""
    namespace = {}
    exec(archsmith.compile(text), namespace)
    return namespace


def parameters_of(cls) -> tuple:
    return cls.__init__.__code__.co_varnames


@pytest.mark.parametrize("text,line,words", [
    ("X = " + "[" * 494 + "1" + "]" * 494 + "\n" + NET, 1, ["nest more than 100 deep"]),
    ("X = " + "+".join(["1"] * 5000) + "\n" + NET, 1, ["nest more than 100 deep"]),
    ('block Net() {\n    assert false, "{' + "[" * 300 + "1" + "]" * 300 + '}"\n    return x\n}\n'
     "model net = Net() input [3, 8, 8]\n", 2, ["nest more than 100 deep"]),
    ("X = 1" + "0" * 5000 + "\n" + NET, 1, ["too large"]),
    ('block Net() {\n    assert false, "{' + "9" * 5000 + '}"\n    return x\n}\n', 2, ["too large"]),
    ("A0 = [1]\n" + "".join(f"A{i} = [A{i - 1}, A{i - 1}]\n" for i in range(1, 41)) + "X = len(A40)\n" + NET,
     19, ["more than 1,000,000 items", "value_size"]),
    ('X = str(["x" * 1000000] * 1000000)\n' + NET, 1, ["more than 1,000,000"]),
    ('S = "x" * 1000000\nX = [S, S]\n' + NET, 2, ["more than 1,000,000"]),
    ("X = range(1000000000)\n" + NET, 1, ["limit"]),
    ("X = 2 ** 64\n" + NET, 1, ["too large"]),
    ("X = int(1e300)\n" + NET, 1, ["too large"]),
    ("X = {a: [1] * 600000, b: [1] * 600000}\n" + NET, 1, ["more than 1,000,000"]),
    ("block Net() {\n    for i in range(100000) { for j in range(100) { x = x } }\n    return x\n}\n"
     "model net = Net() input [3, 8, 8]\n", 2, ["more than 1,000,000 times"]),
    ("block B(n) {\n    return x | b: B(n - 1)\n}\nmodel net = B(3) input [3, 8, 8]\n", 2, ["uses itself"]),
    ("fn f(n) {\n    return f(n + 1)\n}\nX = f(0)\n" + NET, 2, ["nest more than 64 deep"]),
    ("block Net() {\n    return x | c: batchnorm2d(momentum=1e400 - 1e400)\n}\nmodel net = Net() input [3, 8, 8]\n",
     2, ["momentum"]),
], ids=["deep list", "long sum", "deep interpolation", "huge int", "huge int in a message", "exponential list tree",
        "huge string list", "shared strings", "huge range", "int overflow", "int of a float", "huge record",
        "many iterations", "recursive block", "recursive fn", "nan argument"])
def test_runaway_specs_are_located_errors(text, line, words):
    located(text, line, *words)


def test_deep_parentheses_that_nest_nothing_compile():
    archsmith.compile("X = " + "(" * 3000 + "1" + ")" * 3000 + "\n" + NET)


def test_a_long_loop_compiles_and_every_layer_is_in_the_module():
    text = ("block Net() {\n    for i in range(20000) { x = x | c{i}: conv2d(3, 1) }\n    return x\n}\n"
            "model net = Net() input [3, 8, 8]\n")
    [model] = elaborate_models(text)
    assert model.graph.number_of_nodes() == 20002


def test_an_expression_that_doubles_in_each_iteration_is_written_as_its_value():
    # The record's field is inlined twice per iteration: written over `w`, the expression would
    # have 2**40 terms. The generator makes `w` a literal instead.
    text = ("block B(w = 2) {\n    r = {a: w}\n    for i in range(40) {\n        r = {a: r.a * r.a % 7 + 1}\n"
            "    }\n    return x | conv: conv2d(r.a, 1)\n}\nmodel m = B() input [3, 8, 8]\n")
    expected = 2
    for _ in range(40):
        expected = expected * expected % 7 + 1
    block = classes(text)["B"]
    assert block().conv.out_channels == expected
    assert "w" not in parameters_of(block)


@pytest.mark.parametrize("line", ["x = x | PICK", "x = x | c2: conv2d(frob(w), 1)"])
def test_an_unknown_name_in_a_branch_not_taken_fixes_the_condition(line):
    # Elaboration never sees the branch; the class is written for the value of `w` that skips it.
    text = (f"block B(w = 2) {{\n    if w > 100 {{\n        {line}\n    }}\n    return x | c: conv2d(4, 1)\n}}\n"
            "model m = B() input [3, 8, 8]\n")
    block = classes(text)["B"]
    assert "in_channels" in parameters_of(block) and "w" not in parameters_of(block)
    assert block(in_channels=5).c.in_channels == 5


def test_limits_are_configurable():
    text = "block Net() {\n    for i in range(50) { x = x | relu() }\n    return x\n}\nmodel net = Net() input [3, 8, 8]\n"
    with limits.override(graph_nodes=20):
        located(text, 2, "more than 20 ops", "graph_nodes")
    archsmith.compile(text)
    with limits.override(nesting=20):
        located("X = " + "[" * 30 + "]" * 30 + "\n" + NET, 1, "nest more than 20 deep")
    with limits.override(file_bytes=100):
        located(NET + "# " + "x" * 100 + "\n", 1, "larger than the limit of 100 bytes")
    with limits.override(value_size=10):
        located("X = [1] * 11\n" + NET, 1, "more than 10")
    with pytest.raises(TypeError, match="no limit named"):
        with limits.override(nodes=3):
            pass
    with pytest.raises(ValueError, match="positive"):
        with limits.override(nesting=0):
            pass
    assert limits.current() == limits.Limits()


def test_a_constant_pad_of_the_channels_is_written():
    # the soak's crash: the generator's shapes took the channel pair of `pad` for a spatial one
    text = ("block B(c = 3) {\n    y = x | conv: conv2d(c, 1)\n    return pad(y, [0, 0, 0, 0, 1, 2])\n}\n"
            "model m = B() input [3, 8, 8]\n")
    assert classes(text)["B"](c=4)(torch.zeros(1, 3, 8, 8)).shape == (1, 7, 8, 8)


@pytest.mark.parametrize("line", ["y = (x > 0.5) * x", "y = x | conv3x3"])
def test_what_elaboration_would_refuse_in_a_branch_not_taken_fixes_the_condition(line):
    # a comparison of tensors, a def called without its argument: errors where the branch is taken
    text = (f'import "std"\nblock B(mode = "a") {{\n    y = x\n    if mode == "b" {{\n        {line}\n    }}\n'
            "    return y | c: conv2d(4, 1)\n}\nmodel m = B() input [3, 8, 8]\n")
    assert "mode" not in parameters_of(classes(text)["B"])
    located(text.replace('mode = "a"', 'mode = "b"'), 5)


def test_lone_surrogates_in_long_text_and_in_the_language_server_are_no_crash():
    text = "# \ud800 " + "x" * 100_000 + "\n" + NET
    archsmith.compile(text)
    located("# \ud800" + "x" * 300_000 + "\n" + NET, 1, "larger than the limit")
    from archsmith.lsp import _column, _position
    assert _position(["a\ud800b"], 1, 3) == {"line": 0, "character": 2}
    assert _column("a\ud800b", 0, 2) == 2  # the index of `b`


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.arch"
    path.write_text(NET + "# padding\n" * 30000)
    error = located(str(path), 1, "larger than the limit")
    assert "padding" not in str(error)


def chain(tmp_path, n):
    for i in range(n):
        (tmp_path / f"m{i}.arch").write_text(f'import "m{i + 1}"\n' if i + 1 < n else "X = 1\n")
    (tmp_path / "net.arch").write_text('import "m0"\n' + NET)
    return str(tmp_path / "net.arch")


def test_a_long_import_chain_is_a_located_error(tmp_path):
    error = located(chain(tmp_path, 300), 1, "imports nest more than 64 files deep")
    assert error.path.endswith(".arch")
    archsmith.compile(chain(tmp_path, 30))


@pytest.mark.parametrize("target,words", [
    ("../outside", ["outside the directories"]),
    ("link", ["outside the directories"]),
    ("passwd", ["outside the directories"]),
    ("/etc/hosts", ["absolute path"]),
    ("dir.arch", ["not a .arch file"]),
    ("net", ["import cycle"]),
    ("nowhere", ["cannot find"]),
])
def test_imports_are_confined(tmp_path, target, words):
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "outside.arch").write_text("SECRET = 42\n")
    (root / "link.arch").symlink_to(tmp_path / "outside.arch")
    (root / "passwd.arch").symlink_to("/etc/passwd")
    (root / "dir.arch").mkdir()
    (root / "net.arch").write_text(f'import "{target}"\n' + NET)
    error = located(str(root / "net.arch"), 1, *words)
    assert "SECRET" not in str(error) and "root:" not in str(error)


def test_imports_inside_the_spec_directory_and_the_bundled_specs_work(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mine.arch").write_text('import "std"\nWIDTH = 4\n')
    (tmp_path / "net.arch").write_text('import "lib/mine"\nimport "std"\n' + NET.replace("conv2d(4", "conv2d(WIDTH"))
    assert "class Net" in archsmith.compile(str(tmp_path / "net.arch"))


def test_a_binary_import_is_located_and_not_shown(tmp_path):
    (tmp_path / "blob.arch").write_bytes(b"SECRET = 1\n\xff\xfe\x00binary")
    (tmp_path / "net.arch").write_text('import "blob"\n' + NET)
    with pytest.raises(archsmith.SpecError) as caught:
        archsmith.compile(str(tmp_path / "net.arch"))
    assert (caught.value.line, caught.value.column) == (2, 1)
    assert "not UTF-8" in str(caught.value) and "SECRET" not in str(caught.value)


def test_a_path_is_never_read_as_spec_text(tmp_path):
    with pytest.raises(archsmith.SpecError, match="cannot read"):
        archsmith.compile(str(tmp_path / "a{b.arch"))
    with pytest.raises(archsmith.SpecError, match="neither a .arch file nor a bundled model"):
        archsmith.compile("resnet5O")
    with pytest.raises(archsmith.SpecError, match="defines no model"):
        archsmith.compile("X = [1, 2]")


@pytest.mark.parametrize("text,line,excerpt", [
    ("\ufeff" + NET.replace("conv2d(4, 1)", "conv2d(4, 1, nope=1)"), 2, "nope=1"),
    ("# a\x0cform feed\n" + NET.replace("conv2d(4, 1)", "conv2d(4, 1, nope=1)"), 3, "nope=1"),
    ("# a\u2028separator\n" + NET.replace("conv2d(4, 1)", "conv2d(4, 1, nope=1)"), 3, "nope=1"),
    ("X = [1, 2,\n" + "y" * 50000 + "$]\n" + NET, 2, "…"),
])
def test_odd_text_is_located_on_the_right_line(text, line, excerpt):
    error = located(text, line)
    assert excerpt in str(error).splitlines()[1]
    assert all(len(shown) < 200 for shown in str(error).splitlines())


def test_no_traceback_on_the_command_line_for_a_hostile_value(tmp_path):
    spec = tmp_path / "net.arch"
    spec.write_text(NET.replace("Net()", "Net(n = 4)").replace("conv2d(4", "conv2d(n"))
    for value in ["9" * 5000, "[" * 2000 + "]" * 2000, '"' + "x" * 10000, "1e400 - 1e400"]:
        run = subprocess.run([sys.executable, "-m", "archsmith", "check", str(spec), "--set", f"n={value}"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode in (1, 2) and "Traceback" not in run.stderr, run.stderr[-2000:]
        assert len(run.stderr) < 2000


def test_the_command_line_reports_limits_it_does_not_know(tmp_path):
    spec = tmp_path / "net.arch"
    spec.write_text(NET)
    run = subprocess.run([sys.executable, "-m", "archsmith", "check", str(spec), "--limit", "nodes=3"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "graph_nodes" in run.stderr
    run = subprocess.run([sys.executable, "-m", "archsmith", "check", str(spec), "--limit", "graph_nodes=1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "net.arch:2:19: error: the model has more than 1 ops" in run.stderr


def test_the_limits_are_documented():
    page = open(os.path.join(os.path.dirname(__file__), "..", "docs", "language.md")).read()
    for name in limits.NAMES:
        assert f"`{name}`" in page, name
