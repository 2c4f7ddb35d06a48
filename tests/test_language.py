"""The language's evaluation, naming and import rules, observed through compiled modules."""
import pytest
import torch

import archsmith
from archsmith.compiler import elaborate_models


def channels_of(expr: str, prelude: str = "") -> int:
    """Compile a net whose conv has `expr` output channels and read them back from the graph."""
    spec = f"""{prelude}
block Net() {{
    return x | conv: conv2d({expr}, 1)
}}
model net = Net() input [3, 8, 8]
"""
    (model,) = elaborate_models(spec)
    return model.output_shape[0]


@pytest.mark.parametrize("expr,value", [
    ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("17 // 5", 3), ("17 % 5", 2), ("2 ** 5", 32),
    ("int(7 / 2)", 3), ("round(2.5)", 2), ("round(3.5)", 4), ("max(3, 9, 4)", 9), ("min([5, 2, 8])", 2),
    ("abs(-6)", 6), ("len([1, 2, 3])", 3), ("sum([1, 2, 3])", 6), ("ceil(7 / 2)", 4), ("floor(7 / 2)", 3),
    ("4 if 2 > 1 else 5", 4), ("4 if 2 < 1 else 5", 5), ("3 if true and not false else 1", 3),
    ("[4, 8, 16][-1]", 16), ("len([1, 2, 3, 4][1:3])", 2), ("sum([i * 2 for i in range(4)])", 12),
    ("len(str(123) + \"ab\")", 5), ("1 if [1, 2] == [1, 2] else 2", 1), ("int(2.9)", 2),
])
def test_expressions_evaluate_like_python(expr, value):
    assert channels_of(expr) == value


def test_constants_and_block_valued_parameters():
    spec = """
WIDTHS = [4, 8]
block Conv(out) {
    return x | conv: conv2d(out, 3, padding=1)
}
block Net(unit, widths = WIDTHS) {
    x = x | a: unit(widths[0])
    return x | b: unit(widths[1] * 2)
}
model net = Net(Conv) input [3, 8, 8]
"""
    model = archsmith.build(spec)
    assert [k for k in model.state_dict()] == ["a.conv.weight", "a.conv.bias", "b.conv.weight", "b.conv.bias"]
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 16, 8, 8)


def test_tensor_shape_attributes():
    spec = """
block Net() {
    y = x | pool: maxpool2d(2)
    c = y.channels * 1000 + y.height * 10 + y.width
    return y | conv: conv2d(c + len(y.shape), 1)
}
model net = Net() input [3, 16, 12]
"""
    (model,) = elaborate_models(spec)
    assert model.output_shape == (3000 + 80 + 6 + 3, 8, 6)


def test_interpolated_names_and_named_seq_children():
    spec = """
block Net(n = 3) {
    for i in range(n) {
        x = x | conv{i + 1}: conv2d(4, 3, padding=1)
    }
    return x | head: seq { pool: adaptive_avgpool2d(1); flat: flatten(); fc: linear(2) }
}
model net = Net() input [3, 8, 8]
"""
    model = archsmith.build(spec)
    keys = [k for k in model.state_dict()]
    assert keys[:6] == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias"]
    assert keys[6:] == ["head.fc.weight", "head.fc.bias"]
    assert "OrderedDict([" in archsmith.compile(spec)


def test_parameter_free_ops_without_a_name_are_functional():
    source = archsmith.compile("""
block Net() {
    x = x | conv: conv2d(4, 3) | relu | maxpool2d(2) | flatten()
    return x | fc: linear(10) | softmax()
}
model net = Net() input [3, 10, 10]
""")
    assert "x = F.relu(x)" in source and "x = F.max_pool2d(x, 2)" in source
    assert "x = torch.flatten(x, 1)" in source and "torch.softmax(x, dim=1)" in source


def test_a_user_library_imports_like_the_standard_one(tmp_path):
    (tmp_path / "mylib.arch").write_text("""
import "std"
block Stem(width = 16) {
    return x | conv: conv3x3(width, 2) | bn: batchnorm2d() | act: relu(inplace=true)
}
""")
    (tmp_path / "net.arch").write_text("""
import "mylib"
import "std"
block Net(num_classes = 10) {
    x = x | stem: Stem(32) | se: SqueezeExcite()
    return x | mean() | fc: linear(num_classes)
}
model net = Net() input [3, 32, 32]
""")
    model = archsmith.build(str(tmp_path / "net.arch"), num_classes=5)
    assert model.stem.conv.stride == (2, 2)
    assert model.se.fc1.out_channels == 8  # max(32 // 16, 8)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_model_selection_and_overrides():
    assert archsmith.build("resnet18", num_classes=7).fc.out_features == 7
    source = archsmith.compile("specs/vgg.arch", model="vgg11")
    assert "def vgg11(**kwargs) -> VGG:" in source and "vgg13" not in source
    with pytest.raises(archsmith.SpecError, match="no model `vgg12`"):
        archsmith.compile("specs/vgg.arch", model="vgg12")
    with pytest.raises(ValueError, match="several models"):
        archsmith.build("specs/vgg.arch")


def test_list_models_names_the_bundled_models():
    models = archsmith.list_models()
    assert len(models) == len(set(models)) and models.index("resnet18") < models.index("resnet101")
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"} <= set(models)
    assert {"vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"} <= set(models)


def test_slice_from_channel_zero():
    (model,) = elaborate_models("""
block Net() {
    return slice(x, 0, 2)
}
model net = Net() input [3, 4, 4]
""")
    assert model.output_shape == (2, 4, 4)


def test_an_override_replaces_an_argument_of_the_model_line():
    spec = """
block MLP(hidden, num_classes = 10) {
    x = x | flatten()
    for i in range(len(hidden)) {
        x = x | fc{i}: linear(hidden[i]) | relu
    }
    return x | head: linear(num_classes)
}
model mlp = MLP([32, 16]) input [3, 4, 4]
model mlp_kw = MLP(hidden=[32, 16]) input [3, 4, 4]
"""
    for name in ("mlp", "mlp_kw"):
        model = archsmith.build(spec, model=name, hidden=[8])
        assert [k for k in model.state_dict()] == ["fc0.weight", "fc0.bias", "head.weight", "head.bias"]


def test_definition_keywords_are_names_inside_blocks():
    model = archsmith.build("""
block Unit(out) {
    return x | model: conv2d(out, 1)
}
block Net() {
    input = x
    x = input | block: Unit(4)
    return x | input: relu()
}
model net = Net() input [3, 4, 4]
""")
    assert list(model.state_dict()) == ["block.model.weight", "block.model.bias"]


def test_a_missing_brace_is_reported_at_the_next_definition():
    with pytest.raises(archsmith.SpecError) as e:
        archsmith.compile("block Net() {\n    return x\n\nblock Other() {\n    return x\n}\n")
    assert (e.value.line, e.value.column) == (4, 1)
    assert e.value.hint == "is a `}` missing before this line?"


def test_the_input_shape_can_be_replaced():
    model = archsmith.create_model("resnet18", input_shape=[1, 64, 64], num_classes=10)
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)
    source = archsmith.compile("vgg11", input_shape=[3, 32, 32])
    assert "def __init__(self, cfg: list, in_channels: int = 3, batch_norm: bool = False, num_classes: int = 1000, " \
           "dropout: float = 0.5)" in source
    with pytest.raises(archsmith.SpecError, match="must be a list of positive ints"):
        archsmith.compile("vgg11", input_shape=[3, 0, 32])


# ---- issue 7: fns, records, comprehensions, unpacking, augmented assignment, layer names

def error_of(spec: str) -> archsmith.SpecError:
    with pytest.raises(archsmith.SpecError) as e:
        elaborate_models(spec)
    return e.value


FNS = """
fn make_divisible(v, divisor, min_value = none) {
    if min_value == none {
        min_value = divisor
    }
    n = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if n < 0.9 * v {
        n += divisor
    }
    return n
}
fn fact(n) {
    return 1 if n <= 1 else n * fact(n - 1)
}
fn first_even(xs) {
    for i, v in enumerate(xs) {
        if v % 2 == 0 {
            return i
        }
    }
    return -1
}
"""


@pytest.mark.parametrize("expr,value", [
    ("make_divisible(30, 8)", 32), ("make_divisible(9, 8, min_value=16)", 16), ("fact(5)", 120),
    ("first_even([3, 5, 6, 8])", 2), ("round(log(8, 2))", 3), ("round(log2(32))", 5), ("int(exp(0))", 1),
    ("round(log(exp(2)))", 2), ("len([a * b for a in [1, 2, 3] for b in [1, 2] if a != b])", 4),
    ("sum([a * b for a in [1, 2, 3] for b in [1, 2] if a != b])", 2 + 2 + 3 + 6),
    ("sum([i * w for i, w in enumerate([5, 6, 7])])", 6 + 14), ("len(zip([1, 2, 3], [4, 5]))", 2),
    ("zip([1, 2], [3, 4])[1][0]", 2), ("list(range(3))[2]", 2), ("enumerate([7, 8], 1)[1][0]", 2),
    ("{out: 12, stride: 2}.out", 12), ("[{w: 3}, {w: 9}][1].w", 9),
    ("1 if {a: 1, b: [2]} == {a: 1, b: [2]} else 2", 1),
    ("sum([a + b for (a, b) in [[1, 2], [3, 4]]])", 10),
])
def test_new_expressions_evaluate(expr, value):
    assert channels_of(expr, FNS) == value


def test_a_fn_calls_reach_defaults_and_constants():
    assert channels_of("f(2)", "K = 3\nfn f(a, b = a * K) {\n    return a + b\n}") == 8


def test_unpacking_and_augmented_assignment_in_blocks_and_seqs():
    spec = """
block Net(sizes = [[4, 1], [6, 2]]) {
    a, b = chunk(x | conv: conv2d(8, 1), 2)
    a += b
    a *= b
    h, w = a.shape[1:]
    n = 0
    n += h * w
    n //= 16
    x = a | body: seq {
        for i, (c, k) in enumerate(sizes) {
            k += 2
            "conv{i}": conv2d(c, k, padding=k // 2)
        }
    }
    return x | mean() | fc: linear(n)
}
model net = Net() input [3, 8, 8]
"""
    model = archsmith.build(spec)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert [k for k in model.state_dict() if k.endswith("weight")][1:3] == ["body.conv0.weight", "body.conv1.weight"]
    assert model.body.conv1.kernel_size == (4, 4)


def test_a_stage_table_of_records_applies_the_blocks_it_holds():
    spec = """
block A(out, stride = 1) {
    return x | conv: conv2d(out, 3, stride=stride, padding=1)
}
block B(out, stride = 1) {
    return x | conv: conv2d(out, 1, stride=stride)
}
CFG = [A, 8]
STAGES = [
    {kind: A, out: 4, stride: 1},
    {kind: B, out: 6, stride: 2},
]
block Net() {
    for s, row in enumerate(STAGES) {
        x = x | stage{s}: row.kind(row.out, stride=row.stride)
    }
    x = x | last: CFG[0](CFG[1]) | act: row.kind(5)
    return x
}
model net = Net() input [3, 8, 8]
"""
    model = archsmith.build(spec)
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 5, 4, 4)
    assert list(model.state_dict())[::2] == ["stage0.conv.weight", "stage1.conv.weight", "last.conv.weight",
                                             "act.conv.weight"]


def test_quoted_and_interpolated_layer_names_keep_their_keys():
    spec = """
block Net(n = 2) {
    for s in range(2) {
        for i in range(n) {
            x = x | "block{s}-{i}": conv2d(4, 1) | stage{s}_{i}x: batchnorm2d()
        }
    }
    x = x | "if": conv2d(4, 1) | "__hidden": conv2d(4, 1)
    return x | head: seq { "fc.0"[:2]: flatten() }
}
model net = Net() input [3, 4, 4]
"""
    e = error_of(spec)
    assert e.line == 9  # a name is not indexed: the quoted name is the whole target
    spec = spec.replace('"fc.0"[:2]: flatten()', '"fc 1": flatten(); "fc-2": linear(3)')
    source = archsmith.compile(spec)
    assert "self.add_module(f\"block{s}-{i}\"" in source or "self.add_module('block0-0'" in source
    model = archsmith.build(spec)
    keys = list(model.state_dict())
    assert "block1-1.weight" in keys and "stage1_1x.weight" in keys and "if.weight" in keys
    assert "__hidden.weight" in keys and "head.fc-2.weight" in keys
    assert model(torch.randn(1, 3, 4, 4)).shape == (1, 3)


@pytest.mark.parametrize("name,message", [
    ('"a.b"', "a layer named `a.b` contains a `.`"),
    ('""', "a layer name cannot be empty"),
    ('"training"', "a layer named `training` would hide nn.Module.training"),
    ('"x{1.5}"', "a layer name can interpolate an int or a string, not a float"),
])
def test_bad_layer_names_say_why(name, message):
    e = error_of(f"block Net() {{\n    return x | {name}: conv2d(4, 1)\n}}\nmodel net = Net() input [3, 4, 4]\n")
    assert message in e.message and e.line == 2


def test_an_unquoted_name_has_no_spaces():
    e = error_of("block Net() {\n    return x | a{1} b: conv2d(4, 1)\n}\nmodel net = Net() input [3, 4, 4]\n")
    assert e.line == 2 and "without spaces" in e.message


@pytest.mark.parametrize("body,line,message", [
    ("a, b = [1, 2, 3]", 2, "cannot unpack 3 values into 2 names"),
    ("a, b = 4", 2, "cannot unpack an int into 2 names"),
    ("for i, w in [1, 2] { }", 2, "cannot unpack an int into 2 names"),
    ("r = {a: 1}\n    q = r.b", 3, "the record has no field `b`"),
    ("r = {a: 1, a: 2}", 2, "the record has two fields named `a`"),
    ("r = {a: x}", 2, "a record holds values, not tensors"),
    ("n = loop(1)", 6, "calls of fns nest more than 64 deep"),
    ("n = nothing(1)", 1, "fn `nothing` ends without `return`"),
    ("n = f(x)", 2, "`f` is a fn: it computes a value, and cannot take a tensor"),
    ("x = x | f(1)", 2, "`f` is a fn: it computes a value, and is not a layer"),
    ("x = x | y: K[0](4)", 2, "this is an int, not a layer to apply"),
    ("n = 1\n    n -= [1]", 3, "`-` cannot combine an int and a list"),
])
def test_located_errors_of_the_new_constructs(body, line, message):
    spec = f"""block Net() {{
    {body}
    return x
}}
fn loop(n) {{
    return loop(n + 1)
}}
fn nothing(n) {{
    if n > 1 {{
        return n
    }}
}}
fn f(v) {{
    return v
}}
K = [1, 2]
model net = Net() input [3, 4, 4]
"""
    e = error_of(spec)
    assert message in e.message, e.message
    if "ends without" not in message:
        assert e.line == line, str(e)
    else:
        assert e.line == 8 and e.notes[0][1].line == 2


@pytest.mark.parametrize("item,line,message", [
    ("UNUSED = 1 / 0", 1, "division by zero"),
    ("UNUSED = [1][3]", 1, "index 3 is out of range"),
    ("fn unused(a) {\n    return a + b\n}", 2, "unknown name `b`"),
    ("fn unused(a) {\n    return frob(a)\n}", 2, "unknown function `frob`"),
])
def test_what_nothing_uses_is_still_checked(item, line, message):
    e = error_of(item + "\nblock Net() {\n    return x\n}\nmodel net = Net() input [3, 4, 4]\n")
    assert message in e.message and e.line == line


def test_fn_is_a_name_except_at_the_top_level():
    spec = """
block Net(fn = 4) {
    fn = fn * 2
    return x | fn: conv2d(fn, 1)
}
model net = Net() input [3, 4, 4]
"""
    assert elaborate_models(spec)[0].output_shape == (8, 4, 4)


def test_a_record_literal_may_span_lines():
    assert channels_of("R.out + R.k", "R = {\n    out: 5,\n    k: 1,\n}") == 6


def test_check_show_params(capsys):
    from archsmith.cli import main
    assert main(["check", "resnet18", "--show-params"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "  (root): ResNet(kind=BasicBlock, layers=[2, 2, 2, 2], num_classes=1000, groups=1, width_per_group=64, drop_path_rate=0.0)"
    assert out[2] == "  layer1.0: BasicBlock(planes=64, stride=1, groups=1, base_width=64, shortcut=\"B\", drop_path_rate=0.0)"


def test_a_fn_over_a_parameter_is_a_function_of_the_module():
    spec = FNS + """
block Net(width = 1.0) {
    return x | conv: conv2d(make_divisible(24 * width, 8), 1)
}
model net = Net() input [3, 4, 4]
model big = Net(2.1) input [3, 4, 4]
"""
    source = archsmith.compile(spec)
    assert "def make_divisible(v, divisor, min_value=None):" in source
    assert "nn.Conv2d(in_channels, make_divisible(24 * width, 8), kernel_size=1)" in source
    assert "def fact" not in source and "def first_even" not in source
    assert archsmith.compile(FNS + """
block Net() {
    return x | conv: conv2d(make_divisible(24 * 1.3, 8), 1)
}
model net = Net() input [3, 4, 4]
""").count("make_divisible") == 0  # folded: the arguments are constants


ERROR_SPEC = """
fn checked_groups(width, groups) {
    if width % groups != 0 {
        error("{width} channels do not split into {groups} groups")
    }
    return groups
}

block Net(depth = 10, groups = 2) {
    if depth % 2 == 1 {
        error("depth {depth} is odd; the blocks come in pairs")
    }
    x = x | body: seq {
        for i in range(depth // 2) {
            conv2d(16, 3, padding=1, groups=checked_groups(16, groups))
            if i > 20 {
                error("at most 20 pairs, not {depth // 2}")
            }
        }
    }
    return x
}
"""


@pytest.mark.parametrize("args,line,message", [
    ("depth=11", 11, "depth 11 is odd; the blocks come in pairs"),
    ("groups=3", 4, "16 channels do not split into 3 groups"),
    ("depth=44", 17, "at most 20 pairs, not 22"),
])
def test_error_refuses_the_values_that_reach_it_where_it_stands(args, line, message):
    with pytest.raises(archsmith.SpecError) as e:
        elaborate_models(ERROR_SPEC + f"model net = Net({args}) input [16, 8, 8]\n")
    assert e.value.message == message
    assert (e.value.span.line, e.value.span.column) == (line, 17 if line == 17 else 9)


def test_the_generated_class_raises_what_its_spec_refuses():
    namespace = {}
    exec(archsmith.compile(ERROR_SPEC + "model net = Net() input [16, 8, 8]\n"), namespace)
    assert sum(1 for _ in namespace["Net"](16, depth=4).body) == 2
    with pytest.raises(ValueError, match="^depth 7 is odd; the blocks come in pairs$"):
        namespace["Net"](16, depth=7)
    with pytest.raises(ValueError, match="^16 channels do not split into 5 groups$"):
        namespace["Net"](16, groups=5)


@pytest.mark.parametrize("body,message", [
    ('error("a", "b")', "`error` takes one message"),
    ('error(msg="a")', "`error` takes one message"),
    ('error("depth {depth")', "a `{` in a message is not closed"),
])
def test_a_malformed_error_statement_is_located(body, message):
    with pytest.raises(archsmith.SpecError) as e:
        elaborate_models(f"block Net(depth = 1) {{\n    {body}\n    return x\n}}\nmodel net = Net() input [3, 8, 8]\n")
    assert e.value.message == message and e.value.span.line == 2


def test_a_model_line_may_continue_with_input_on_the_next_line():
    (model,) = elaborate_models("""
block Net(width = 4) {
    return x | conv: conv2d(width, 1)
}
model net = Net(width=8)
    input [3, 8, 8]
""")
    assert model.input_shape == (3, 8, 8)
    assert model.output_shape[0] == 8


ASSERTING = """
fn blocks(depth) {
    assert depth >= 4, "a depth of at least 4"
    return (depth - 4) // 6
}
block Net(depth, width = 8) {
    assert (depth - 4) % 6 == 0, "the depth is 6n + 4"
    x = x | body: seq {
        assert not width % 2, "an even width"
        for i in range(blocks(depth)) { conv2d(width, 3, padding=1) }
    }
    return x
}
model net = Net(10) input [3, 8, 8]
"""


def test_assert_refuses_arguments_at_compile_time_and_in_the_generated_class():
    assert archsmith.build(ASSERTING)(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)
    for params, message in [({"depth": 15}, "the depth is 6n + 4"), ({"width": 3}, "an even width"),
                            ({"depth": -2}, "a depth of at least 4")]:
        with pytest.raises(archsmith.SpecError) as e:
            archsmith.compile(ASSERTING, **params)
        assert e.value.message == message
    source = archsmith.compile(ASSERTING)
    # a comparison is negated as one, `not c` is `c`
    assert "        if (depth - 4) % 6 != 0:\n            raise ValueError('the depth is 6n + 4')\n" in source
    assert "        if width % 2:\n            raise ValueError('an even width')\n" in source
    assert "    if depth < 4:\n        raise ValueError('a depth of at least 4')\n" in source
    namespace = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    assert len(namespace["Net"](16).body) == 2
    for args, message in [((15,), "the depth is 6n + 4"), ((10, 3, 3), "an even width"),
                          ((-2,), "a depth of at least 4")]:
        with pytest.raises(ValueError) as e:
            namespace["Net"](*args)
        assert str(e.value) == message


def test_an_assert_that_holds_where_the_class_is_written_is_not_written():
    source = archsmith.compile("""
WIDTHS = [4, 8]
block Unit(out) {
    assert out > 0, "a positive width"
    return x | conv: conv2d(out, 1)
}
block Net() {
    assert len(WIDTHS) == 2, "two widths"
    assert x.channels == 3, "an RGB input"
    return x | a: Unit(WIDTHS[0])
}
model net = Net() input [3, 8, 8]
""")
    assert "if out <= 0:\n            raise ValueError('a positive width')" in source
    assert "two widths" not in source
    assert "if in_channels != 3:\n            raise ValueError('an RGB input')" in source  # any input width


def test_declare_places_a_layer_in_the_module_order_before_its_first_use():
    """timm registers a pre-activation block's projection first, though it reads the first norm's
    output: `declare` gives a layer its place in the checkpoint before it is built."""
    spec = """
block B(out) {
    declare proj
    y = x | norm: batchnorm2d() | relu
    shortcut = x
    if x.channels != out {
        shortcut = y | proj: conv2d(out, 1, bias=false)
    }
    return (y | conv: conv2d(out, 3, padding=1)) + shortcut
}
block Net() {
    x = x | a: B(8)
    return x | b: B(8)
}
model net = Net() input [3, 8, 8]
"""
    (model,) = elaborate_models(spec)
    a, b = (layer.instance for layer in model.root.layers)
    assert [l.name for l in a.layers] == ["proj", "norm", "conv"] and [l.name for l in b.layers] == ["norm", "conv"]
    source = archsmith.compile(spec)
    assert "        self.add_module('proj', None)  # its place in the state_dict; built below\n" \
           "        self.norm = nn.BatchNorm2d(in_channels)\n" in source
    net = archsmith.build(spec)
    keys = [k for k in net.state_dict() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert keys == ["a.proj.weight", "a.norm.weight", "a.norm.bias", "a.conv.weight", "a.conv.bias",
                    "b.norm.weight", "b.norm.bias", "b.conv.weight", "b.conv.bias"]
    assert net.b.proj is None and net(torch.randn(1, 3, 8, 8)).shape == (1, 8, 8, 8)


LISTED = """
block Unit(growth) {
    return concat(x) | norm: batchnorm2d() | conv: conv2d(growth, 3, padding=1, bias=false)
}
block Net(layers = 3, growth = 4) {
    features = [x]
    for i in range(layers) {
        y = features | unit{i}: Unit(growth)
        features = features + [y]
    }
    z = [features[0], features[1]] | pair: Unit(growth)
    return concat(features + [z])
}
model net = Net() input [4, 8, 8]
"""


def test_a_block_takes_a_list_of_tensors_as_its_input():
    """DenseNet's layers read their block's features: a list piped into a block is its `x`, and the
    class takes their total width and `x: list[Tensor]`."""
    (model,) = elaborate_models(LISTED)
    units = [layer.instance for layer in model.root.layers]
    assert [u.listed for u in units] == [True] * 4
    assert [u.in_shape for u in units] == [(4, 8, 8), (8, 8, 8), (12, 8, 8), (8, 8, 8)]
    assert [len(u.input) for u in units] == [1, 2, 3, 2]
    assert model.output_shape == (20, 8, 8)
    source = archsmith.compile(LISTED)
    assert "    def forward(self, x: list[Tensor]) -> Tensor:\n        out = torch.cat(x, 1)\n" in source
    # indexing the list fixes the loop, unrolled: each unit is given the list written out
    assert "        y_3 = self.unit2([x, y, y_2])\n        z = self.pair([x, y])\n" in source
    looped = archsmith.compile(LISTED.replace("    z = [features[0], features[1]] | pair: Unit(growth)\n", "")
                               .replace("features + [z]", "features"))
    assert '            y = getattr(self, f"unit{i}")(features)\n' in looped
    net = archsmith.build(LISTED).eval()
    assert net.unit2.norm.num_features == 12 and net.pair.norm.num_features == 8
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        feats = [x]
        for unit in (net.unit0, net.unit1, net.unit2):
            feats.append(unit.conv(unit.norm(torch.cat(feats, 1))))
        z = net.pair.conv(net.pair.norm(torch.cat(feats[:2], 1)))
        torch.testing.assert_close(net(x), torch.cat(feats + [z], 1))


RECOMPUTED = """
block Unit(width, memory_efficient = false) {
    recompute bottleneck if memory_efficient {
        y = x | norm1: batchnorm2d() | relu1: relu | conv1: conv2d(width, 1, bias=false)
        y = y | drop: dropout(0.5)
    }
    return x | conv2: conv2d(width, 3, padding=1, bias=false) | add(y)
}
block Net(memory_efficient = false) {
    x = x | stem: conv2d(8, 3, padding=1)
    x = x | a: Unit(8, memory_efficient)
    return x | b: Unit(16, memory_efficient)
}
model net = Net() input [3, 8, 8]
"""


def _step(net, x, seed):
    torch.manual_seed(seed)
    y = net(x)
    y.square().sum().backward()
    return y.detach(), [p.grad.clone() for p in net.parameters()]


def test_recompute_gives_the_same_outputs_and_gradients_and_runs_the_region_again_in_backward():
    plain = archsmith.build(RECOMPUTED).train()
    efficient = archsmith.build(RECOMPUTED, memory_efficient=True).train()
    assert list(efficient.state_dict()) == list(plain.state_dict())
    efficient.load_state_dict(plain.state_dict())
    calls = []
    efficient.a.norm1.register_forward_hook(lambda *_: calls.append("a"))
    x = torch.randn(2, 3, 8, 8)
    y, grads = _step(plain, x, 0)
    y2, grads2 = _step(efficient, x, 0)  # the dropout in the region draws the same mask again
    assert torch.equal(y, y2)
    assert all(torch.allclose(g, g2, atol=1e-6) for g, g2 in zip(grads, grads2))
    assert calls == ["a", "a"]  # forward, then again in the backward pass
    with torch.no_grad():
        efficient(x)
    assert calls == ["a", "a", "a"]  # nothing to recompute for: an ordinary call


def test_recompute_translates_to_a_method_run_under_checkpoint():
    source = archsmith.compile(RECOMPUTED)
    assert "from torch.utils.checkpoint import checkpoint\n" in source
    assert "    def bottleneck(self, x: Tensor) -> Tensor:\n" \
           '        """Recomputed in the backward pass where `memory_efficient` holds."""\n' \
           "        y = self.norm1(x)\n" in source
    assert "        if self.memory_efficient and x.requires_grad:\n" \
           "            y = checkpoint(self.bottleneck, x, use_reentrant=False)\n" \
           "        else:\n" \
           "            y = self.bottleneck(x)\n" in source
    # a condition that never holds is no region: the statements are written in forward; no condition
    # is always, where an input requires grad
    assert "def bottleneck" not in archsmith.compile(RECOMPUTED.replace("if memory_efficient {", "if false {"))
    assert "        if x.requires_grad:\n            y = checkpoint(self.bottleneck, x, use_reentrant=False)\n" \
        in archsmith.compile(RECOMPUTED.replace("if memory_efficient {", "{"))


def test_declare_after_a_layers_first_use_moves_it_there():
    """torchvision's GoogLeNet builds its auxiliary classifiers after the last module, though they read
    an earlier one: a `declare` after the layer's first use gives it its place there."""
    spec = """
block Net(aux = true) {
    x = x | conv1: conv2d(8, 1)
    y = x
    if aux {
        y = x | head: conv2d(8, 1)
    }
    x = x | conv2: conv2d(8, 1)
    declare head
    return (x | conv3: conv2d(8, 1)) + y
}
model net = Net() input [3, 8, 8]
"""
    (model,) = elaborate_models(spec)
    assert [l.name for l in model.root.layers] == ["conv1", "conv2", "head", "conv3"]
    source = archsmith.compile(spec)
    assert ("        self.conv2 = nn.Conv2d(8, 8, kernel_size=1)\n"
            "        if aux:\n"
            "            self.head = nn.Conv2d(8, 8, kernel_size=1)\n"
            "        else:\n"
            "            self.head = None\n"
            "        self.conv3 = nn.Conv2d(8, 8, kernel_size=1)\n") in source
    for aux in (True, False):
        keys = [k.split(".")[0] for k in archsmith.build(spec, aux=aux).state_dict()][::2]
        assert keys == (["conv1", "conv2", "head", "conv3"] if aux else ["conv1", "conv2", "conv3"])


AUX = """
block Head(num_classes) {
    return x | mean() | fc: linear(num_classes)
}
block Net(num_classes = 10, aux_logits = true) {
    x = x | conv1: conv2d(8, 3, padding=1) | relu
    if aux_logits {
        if training { aux = x | aux: Head(num_classes) }
    }
    x = x | conv2: conv2d(16, 3, stride=2, padding=1) | relu
    x = x | mean() | fc: linear(num_classes)
    if aux_logits {
        if training { return x, aux }
    }
    return x
}
model net = Net() input [3, 16, 16]
"""


def test_training_outputs_are_returned_in_training_only():
    """`if training` runs in train mode only; its layers exist in both modes; a `return` in it gives
    training's outputs, and eval goes on after it."""
    net = archsmith.build(AUX)
    assert [k for k in net.state_dict()] == ["conv1.weight", "conv1.bias", "aux.fc.weight", "aux.fc.bias",
                                              "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]
    x = torch.randn(2, 3, 16, 16)
    net.train()
    logits, aux = net(x)
    assert logits.shape == aux.shape == (2, 10)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), logits.detach())
        torch.testing.assert_close(aux.detach(), net.aux.fc(torch.relu(net.conv1(x)).mean((2, 3))))
    plain = archsmith.build(AUX, aux_logits=False).train()
    assert plain.aux is None and plain(x).shape == (2, 10)


def test_training_ops_are_marked_and_left_out_of_the_eval_macs():
    from archsmith.passes import mac_count, parameter_count
    (model,) = elaborate_models(AUX)
    (plain,) = elaborate_models(AUX, aux_logits=False)
    training = [d["op"] for _, d in model.graph.nodes(data=True) if d["training"]]
    assert training == ["mean", "linear"]
    assert mac_count(model.graph) == mac_count(plain.graph)
    assert parameter_count(model.graph) == parameter_count(plain.graph) + 8 * 10 + 10
    assert model.root.training_output[0][1].shape == (10,)


def test_a_training_branch_is_shape_checked_in_every_elaboration():
    """The eval path never runs the auxiliary head, but a head that does not fit is still an error."""
    spec = AUX.replace("mean() | fc: linear(num_classes)\n}", "maxpool2d(32) | flatten() | fc: linear(num_classes)\n}", 1)
    with pytest.raises(archsmith.SpecError, match="maxpool2d window 32"):
        elaborate_models(spec)


def test_a_block_that_returns_one_tensor_in_training_is_any_blocks_layer():
    spec = """
block Noisy(scale = 0.5) {
    if training { return x + x * scale }
    return x
}
block Net() {
    x = x | conv: conv2d(8, 1) | noise: Noisy()
    return x | mean() | fc: linear(4)
}
model net = Net() input [3, 8, 8]
"""
    assert "        if self.training:\n            return x + x * self.scale\n        return x\n" in archsmith.compile(spec)
    net = archsmith.build(spec)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        features = net.conv(x)
        torch.testing.assert_close(net.train()(x), net.fc((features * 1.5).mean((2, 3))))
        torch.testing.assert_close(net.eval()(x), net.fc(features.mean((2, 3))))
