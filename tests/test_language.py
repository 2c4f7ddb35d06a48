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
    assert "def vgg11() -> VGG:" in source and "vgg13" not in source
    with pytest.raises(archsmith.SpecError, match="no model `vgg12`"):
        archsmith.compile("specs/vgg.arch", model="vgg12")
    with pytest.raises(ValueError, match="several models"):
        archsmith.build("specs/vgg.arch")


def test_list_models_names_the_bundled_models():
    models = archsmith.list_models()
    assert models == sorted(models)
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
