"""The generated source: size independent of depth, deterministic, importing only torch."""
import ast
import subprocess
import sys

import archsmith


def test_source_size_does_not_grow_with_depth():
    r50, r152 = archsmith.compile("resnet50"), archsmith.compile("resnet152")
    assert len(r152.splitlines()) == len(r50.splitlines())
    assert "for _ in range(35)" in r152


def test_one_class_per_block_with_an_optional_shortcut():
    """The blocks with and without a projection differ only in the spec's `if`: one class, as torchvision."""
    source = archsmith.compile("resnet50")
    classes = [n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef)]
    assert classes == ["Bottleneck", "ResNet"]
    assert "        if stride != 1 or in_channels != out_channels:\n            self.downsample = nn.Sequential(" in source
    assert "        else:\n            self.downsample = None" in source
    assert "        if self.downsample is not None:\n            identity = self.downsample(x)\n" in source


def test_imports_only_torch_and_the_standard_library():
    tree = ast.parse(archsmith.compile("resnet50") + archsmith.compile("vgg16_bn"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module.split(".")[0])
    assert modules <= {"torch", "collections", "math"}


def test_reads_like_torchvision():
    source = archsmith.compile("resnet18")
    assert "self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)" in source
    assert "            identity = self.downsample(x)" in source
    assert "out = out + identity" in source
    assert "def resnet18() -> ResNet:" in source


def test_same_spec_same_bytes_across_hash_seeds():
    code = "import archsmith, sys; sys.stdout.write(archsmith.compile('resnet50'))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout for seed in ("1", "2")}
    assert len(outs) == 1


def compile_text(text):
    return archsmith.compile(text)


def test_no_parameter_is_left_unused_by_a_local_that_stays_literal():
    source = compile_text("""
block B(a = 2, b = a * 4, c = none) {
    for i in range(2) { last = i }
    w = b + last if c == none else c
    x = x | conv: conv2d(w, 1)
    return x
}
block Net() {
    x = x | one: B()
    return x | two: B(c = 5)
}
model net = Net() input [3, 4, 4]
""")
    init = next(l for l in source.splitlines() if l.startswith("    def __init__(self, in_channels: int, "))
    assert init == "    def __init__(self, in_channels: int, w: int) -> None:"


def test_an_alias_is_written_only_where_the_spec_reads_it():
    source = compile_text("""
block Net() {
    y = x
    x = x | conv: conv2d(4, 1)
    return x
}
model net = Net() input [3, 4, 4]
""")
    assert "y = x" not in source


def test_named_seq_and_one_element_tuples_are_laid_out_like_torchvision():
    source = compile_text("""
block Net() {
    x = x | features: seq { conv0: conv2d(4, 3); norm0: batchnorm2d() }
    return mean(x, [2], keepdim=true)
}
model net = Net() input [3, 8, 8]
""")
    assert ("        self.features = nn.Sequential(OrderedDict([\n"
            "            ('conv0', nn.Conv2d(in_channels, 4, kernel_size=3)),\n"
            "            ('norm0', nn.BatchNorm2d(4)),\n"
            "        ]))\n") in source
    assert "x.mean((2,), keepdim=True)" in source


def test_spec_comments_become_docstrings():
    source = archsmith.compile("resnet50")
    assert '    """1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50/101/152);' in source
    assert "    Block `Bottleneck` of resnet.arch:" in source
    assert '    """ResNet: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.' in source
    tricky = archsmith.compile('# a """quoted""" comment with a \\\\ backslash\nblock Net() {\n    return x\n}\n'
                               'model net = Net() input [3, 4, 4]\n')
    namespace = {}
    exec(compile(tricky, "<generated>", "exec"), namespace)
    assert '"""quoted"""' in namespace["Net"].__doc__ and "\\\\" in namespace["Net"].__doc__


def test_a_value_without_a_spec_name_becomes_a_parameter_named_after_its_use():
    spec = """
block B(k) {
    return x | conv: conv2d(4, k + 0, padding=k // 2)
}
block Net() {
    x = x | b3: B(3)
    return x | b5: B(5)
}
model net = Net() input [4, 8, 8]
"""
    source = compile_text(spec)
    # `k + 0` has the values of `k`, so it is written `k`; `k // 2` has no name of its own
    assert "def __init__(self, in_channels: int, k: int, conv_padding: int) -> None:" in source
    assert "nn.Conv2d(in_channels, 4, kernel_size=k, padding=conv_padding)" in source
    assert "self.b3 = B(in_channels, 3, 1)" in source and "self.b5 = B(4, 5, 2)" in source
    model = archsmith.build(spec)
    assert model.b5.conv.kernel_size == (5, 5) and model.b5.conv.padding == (2, 2)


def test_a_bool_parameter_never_stands_for_a_number():
    """`deep` is false where the padding is 0 and true where it is 1: equal in Python, not the same."""
    spec = """
block B(out, k = 3, deep = false) {
    x = x | conv: conv2d(out, k, padding=(k - 1) // 2)
    if deep {
        x = x | conv2: conv2d(out, 3, padding=1)
    }
    return x
}
block Net() {
    x = x | a: B(8, 1)
    return x | b: B(8, 3, deep=true)
}
model net = Net() input [3, 8, 8]
"""
    source = compile_text(spec)
    assert "padding=deep" not in source
    model = archsmith.build(spec)
    assert model.a.conv.padding == (0, 0) and model.b.conv.padding == (1, 1)


def test_a_parameter_that_decides_the_structure_stays_literal():
    """`parts` sets how many branches there are: a class built for parts=2 does not offer parts=4."""
    source = compile_text("""
block Split(out, parts = 2) {
    xs = chunk(x, parts)
    ys = [xs[0]]
    for j in range(1, parts) {
        ys = ys + [xs[j] | c{j}: conv2d(x.channels // parts, 3, padding=1)]
    }
    return concat(ys) | fuse: conv2d(out, 1)
}
block Net() {
    x = x | a: Split(8)
    return x | b: Split(16)
}
model net = Net() input [8, 8, 8]
""")
    assert "    def __init__(self, out: int) -> None:" in source
    assert "torch.chunk(x, 2, dim=1)" in source
