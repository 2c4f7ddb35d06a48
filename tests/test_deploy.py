"""The deploy pass (`archsmith.deploy`, `compile --deploy`): the inference network of a model computes
its eval-mode function with batchnorms folded into the layers before them, summed parallel convs of
one input (and the input itself) merged into one conv, and dropout, drop-path and training's outputs
removed; for every bundled model, and for random sums of convs the pass must merge or must leave."""
import random
import subprocess
import sys

import pytest
import torch

import archsmith
from archsmith.compiler import elaborate_models
from archsmith.reparam import deploy_graph

# The smallest input a model takes where 64x64 is too small; in eval Inception v3 has no aux head.
INPUT_SIZE = {"inception_v3": 75, "inception_v4": 75, "inception_resnet_v2": 75}


def randomize(model, seed=0):
    """Non-trivial batchnorm statistics and biases, so that a wrongly folded term cannot hide."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
    return model.eval()


def relative_error(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def same_function(model, deployed, x):
    with torch.no_grad():
        return relative_error(deployed(x), model(x))


def count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


# Families with pre-activation blocks: a batchnorm before a conv has no layer to fold into, and stays.
PRE_ACTIVATION = ("preact_resnet", "resnetv2_", "wrn", "densenet", "dpn")


@pytest.mark.parametrize("name", archsmith.list_models())
def test_every_bundled_model_deploys_to_its_eval_function(name):
    model = randomize(archsmith.create_model(name, num_classes=10))
    deployed = archsmith.deploy(model)
    size = INPUT_SIZE.get(name, 64)
    assert same_function(model, deployed, torch.randn(1, 3, size, size)) < 1e-4
    assert not deployed.training
    assert count(deployed, torch.nn.Dropout) == 0
    norms = count(deployed, torch.nn.modules.batchnorm._BatchNorm)
    if name.startswith(PRE_ACTIVATION):
        assert 0 < norms < count(model, torch.nn.modules.batchnorm._BatchNorm)
    else:
        assert norms == 0


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "dpn68", "googlenet", "inception_v4", "legacy_xception",
                                  "resnest14d", "seresnet50", "preact_resnet164"])
def test_inference_networks_script_and_trace(name):
    model = randomize(archsmith.create_model(name, num_classes=10))
    deployed = archsmith.deploy(model)
    x = torch.randn(1, 3, INPUT_SIZE.get(name, 64), INPUT_SIZE.get(name, 64))
    with torch.no_grad():
        expected = deployed(x)
        torch.testing.assert_close(torch.jit.script(deployed)(x), expected)
        torch.testing.assert_close(torch.fx.symbolic_trace(deployed)(x), expected)


def test_repvgg_a0_deploys_as_timm_reparameterizes_it():
    timm = pytest.importorskip("timm")
    from timm.utils.model import reparameterize_model
    reference = randomize(timm.create_model("repvgg_a0"))
    model = archsmith.create_model("repvgg_a0")
    model.load_state_dict(reference.state_dict())
    deployed = archsmith.deploy(model.eval())
    reparameterized = reparameterize_model(reference)
    assert sum(p.numel() for p in deployed.parameters()) == 8_309_384
    assert sum(p.numel() for p in reparameterized.parameters()) == 8_309_384
    assert same_function(reparameterized, deployed, torch.randn(1, 3, 64, 64)) < 1e-4
    # a plain stack: the stem and 2 + 4 + 14 + 1 blocks, one 3x3 conv each, then the classifier
    convs = [m for m in deployed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 22 and {c.kernel_size for c in convs} == {(3, 3)}
    assert [type(m).__name__ for m in deployed.modules() if not isinstance(m, (torch.nn.Conv2d, type(deployed.stages)))] \
        == [type(deployed).__name__, "Linear"]


def build(spec, **params):
    return randomize(archsmith.build(spec, **params))


REPVGG = """
block RepBlock(out, stride = 1, groups = 1) {
    y = x | conv_kxk: conv2d(out, 3, stride=stride, padding=1, groups=groups, bias=false) | bn_kxk: batchnorm2d()
    z = x | conv_1x1: conv2d(out, 1, stride=stride, groups=groups, bias=false) | bn_1x1: batchnorm2d()
    if stride == 1 and x.channels == out {
        i = x | identity: batchnorm2d()
        return relu(z + y + i)
    }
    return relu(y + z)
}
block Net(groups = 1) {
    x = x | a: RepBlock(8, stride=2) | b: RepBlock(8, groups=groups) | c: RepBlock(8, groups=4)
    return x | mean() | fc: linear(10)
}
model net = Net(groups=2) input [3, 16, 16]
"""


def test_repvgg_branches_merge_into_one_conv_per_block():
    model = build(REPVGG)
    deployed = archsmith.deploy(model)
    assert same_function(model, deployed, torch.randn(4, 3, 16, 16)) < 1e-5
    convs = [m for m in deployed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding, c.groups, c.bias is not None) for c in convs] == [
        ((3, 3), (2, 2), (1, 1), 1, True), ((3, 3), (1, 1), (1, 1), 2, True), ((3, 3), (1, 1), (1, 1), 4, True)]
    assert count(deployed, torch.nn.BatchNorm2d) == 0
    # the merged layer is the largest kernel's, under its checkpoint key
    assert sorted(deployed.state_dict()) == sorted(
        f"{block}.conv_kxk.{entry}" for block in "abc" for entry in ("weight", "bias")) + ["fc.bias", "fc.weight"]


def test_merged_weights_are_the_sum_of_the_centred_kernels():
    spec = """
block Net() {
    return (x | k3: conv2d(4, 3, padding=1, bias=false)) + (x | k1: conv2d(4, 1)) + x
}
model net = Net() input [4, 5, 5]
"""
    model = archsmith.build(spec).eval()
    deployed = archsmith.deploy(model)
    expected = model.k3.weight.detach().clone()
    expected[:, :, 1, 1] += model.k1.weight.detach()[:, :, 0, 0] + torch.eye(4)
    torch.testing.assert_close(deployed.k3.weight, expected)
    torch.testing.assert_close(deployed.k3.bias, model.k1.bias.detach())


ASYMMETRIC = """
block Net() {
    a = x | square: conv2d(6, 3, padding=1, bias=false) | bn1: batchnorm2d()
    b = x | wide: conv2d(6, [1, 3], padding=[0, 1], bias=false) | bn2: batchnorm2d()
    c = x | tall: conv2d(6, [3, 1], padding=[1, 0]) | bn3: batchnorm2d()
    return a + b + c
}
model net = Net() input [6, 7, 9]
"""


def test_asymmetric_kernels_merge_into_the_square_one():
    model = build(ASYMMETRIC)
    deployed = archsmith.deploy(model)
    assert same_function(model, deployed, torch.randn(2, 6, 7, 9)) < 1e-5
    assert [m.kernel_size for m in deployed.modules() if isinstance(m, torch.nn.Conv2d)] == [(3, 3)]


def test_one_dimensional_convs_and_a_linear_layer_fold():
    spec = """
block Net() {
    y = x | k5: conv1d(8, 5, padding=2, bias=false) | bn5: batchnorm1d()
    z = x | k3: conv1d(8, 3, padding=1, bias=false) | bn3: batchnorm1d()
    x = relu(y + z + (x | bn: batchnorm1d()))
    return x | flatten() | fc: linear(16) | bnf: batchnorm1d() | relu | out: linear(3)
}
model net = Net() input [8, 12]
"""
    model = build(spec)
    deployed = archsmith.deploy(model)
    assert same_function(model, deployed, torch.randn(3, 8, 12)) < 1e-5
    assert [type(m).__name__ for m in deployed.children()] == ["Conv1d", "Linear", "Linear"]
    assert deployed.k5.kernel_size == (5,)


@pytest.mark.parametrize("body,convs,norms", [
    # different dilations cannot be one kernel: each conv keeps its own, with its batchnorm folded
    ("return (x | a: conv2d(4, 3, padding=2, dilation=2) | n1: batchnorm2d()) + (x | b: conv2d(4, 3, padding=1) | n2: batchnorm2d())", 2, 0),
    # an even kernel has no centre for the identity
    ("return (x | a: conv2d(4, 2, padding=1, dilation=2) | n: batchnorm2d()) + x", 1, 0),
    # a kernel off the centre of the other (padding 0 for a 3x3 beside a 1x1 would not even add)
    ("return (x | a: conv2d(4, 3, padding=1, stride=2)) + (x | b: conv2d(4, 1, stride=2))", 1, 0),
    # a conv another op reads too keeps its batchnorm beside it
    ("y = x | a: conv2d(4, 3, padding=1)\n    return (y | n: batchnorm2d()) + y", 1, 1),
    # a layer applied twice has one set of weights for two batchnorms: neither folds
    ("y = x | a: conv2d(4, 3, padding=1) | n1: batchnorm2d()\n    return y | a | n2: batchnorm2d()", 1, 2),
    # pre-activation: a batchnorm before the conv stays
    ("return x | n: batchnorm2d() | relu | a: conv2d(4, 3, padding=1)", 1, 1),
    # a scaled branch is not a conv term: nothing merges
    ("return (x | a: conv2d(4, 3, padding=1)) * 2.0 + (x | b: conv2d(4, 1))", 2, 0),
    # a sum with a number: the convs merge, the number stays
    ("return (x | a: conv2d(4, 3, padding=1)) + (x | b: conv2d(4, 1)) + 1.0", 1, 0),
    # dropout, drop-path and what only training runs are gone
    ("y = x | a: conv2d(4, 3, padding=1) | dropout(0.5) | drop_path(0.3)\n    if training {\n        return y, y | b: conv2d(4, 1)\n    }\n    return y", 1, 0),
    # layers whose modules the generated file defines (LayerNorm2d, Permute)
    ("return x | a: conv2d(4, 3, padding=1) | ln: layernorm2d() | p: seq { permute([0, 2, 3, 1]); relu() }", 1, 0),
])
def test_what_the_pass_leaves_still_computes_the_same(body, convs, norms):
    model = build(f"block Net() {{\n    {body}\n}}\nmodel net = Net() input [4, 6, 6]\n")
    deployed = archsmith.deploy(model)
    assert same_function(model, deployed, torch.randn(2, 4, 6, 6)) < 1e-5
    assert count(deployed, torch.nn.Conv2d) == convs
    assert count(deployed, torch.nn.BatchNorm2d) == norms


def random_sum(rng):
    """Terms of a sum of random convs of one input (kernels 1, 3, 5 or asymmetric, groups, dilation, with
    or without batchnorm and bias), maybe with the input, its batchnorm or another tensor; and the
    groups of the convs."""
    dilation = rng.choice([1, 1, 2])
    terms, groups = [], set()
    for i in range(rng.randint(1, 4)):
        kernel = rng.choice([[1, 1], [3, 3], [5, 5], [1, 3], [3, 1], [3, 5]])
        padding = [dilation * (k // 2) for k in kernel]
        group = rng.choice([1, 2, 4]) if rng.random() < 0.3 else 2
        groups.add(group)
        term = (f"x | c{i}: conv2d(8, {kernel}, padding={padding}, dilation={dilation}, groups={group}, "
                f"bias={rng.choice(['true', 'false'])})")
        if rng.random() < 0.7:
            term += f" | n{i}: batchnorm2d()"
        terms.append(f"({term})")
    extra = rng.choice(["x", "(x | ni: batchnorm2d())", "(x | relu)", None])
    if extra:
        terms.insert(rng.randrange(len(terms) + 1), extra)
    return terms, groups


@pytest.mark.parametrize("seed", range(12))
def test_random_sums_of_convs_deploy_to_the_same_function(seed):
    rng = random.Random(seed)
    blocks, calls, merged = [], [], []
    for b in range(2):
        terms, groups = random_sum(rng)
        blocks.append(f"block Sum{b}() {{\n    return relu({' + '.join(terms)})\n}}")
        calls.append(f"    x = x | b{b}: Sum{b}()")
        merged.append(len(groups) == 1)
    spec = "\n".join(blocks) + "\nblock Net() {\n" + "\n".join(calls) + "\n    return x\n}\n" \
        + "model net = Net() input [8, 9, 9]\n"
    model = build(spec)
    deployed = archsmith.deploy(model)
    assert same_function(model, deployed, torch.randn(2, 8, 9, 9)) < 1e-4, spec
    # convs of one input with the same groups are one conv after the pass, whatever else the sum has
    for b in range(2):
        if merged[b]:
            assert count(getattr(deployed, f"b{b}"), torch.nn.Conv2d) == 1, spec


def test_the_pass_does_not_change_its_input_graph():
    model, = elaborate_models(REPVGG)
    before = [(n, dict(d["attrs"]), list(d["inputs"])) for n, d in model.graph.nodes(data=True)]
    graph, fused = deploy_graph(model.graph)
    assert [(n, d["attrs"], d["inputs"]) for n, d in model.graph.nodes(data=True)] == before
    assert len(graph) < len(model.graph)
    assert fused["b.conv_kxk"] == [("b.conv_1x1", "b.bn_1x1", 1e-5), ("b.conv_kxk", "b.bn_kxk", 1e-5),
                                   (None, "b.identity", 1e-5)]


def test_deploy_needs_the_spec_of_a_model_not_built_by_archsmith():
    model = archsmith.create_model("resnet18")
    generated = sys.modules[type(model).__module__]
    bare = generated.resnet18()
    with pytest.raises(ValueError, match="pass its spec"):
        archsmith.deploy(bare)
    randomize(bare)
    deployed = archsmith.deploy(bare, "resnet18")
    assert same_function(bare, deployed, torch.randn(1, 3, 64, 64)) < 1e-4


@pytest.mark.parametrize("name", ["keys", "update", "pop", "values", "0", "a-b", "__x"])
def test_a_nested_layer_may_have_any_name_a_block_may_give_it(name):
    # the holders of nested layers have no members of their own that such a name could hide
    model = build(f'block Inner() {{\n    return x | "{name}": conv2d(4, 1) | n: batchnorm2d()\n}}\n'
                  'block Net() {\n    return x | blk: Inner()\n}\nmodel net = Net() input [3, 8, 8]\n')
    deployed = archsmith.deploy(model)
    x = torch.randn(2, 3, 8, 8)
    assert same_function(model, deployed, x) < 1e-5
    assert [k for k in deployed.state_dict()] == [f"blk.{name}.weight", f"blk.{name}.bias"]
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(deployed)(x), deployed(x))


@pytest.mark.parametrize("name", ["FUSED", "from_trained"])
def test_a_layer_named_as_a_member_of_the_inference_class_is_a_located_error(name):
    spec = f"block Net() {{\n    return x | c: conv2d(4, 1) | {name}: conv2d(4, 1)\n}}\nmodel net = Net() input [3, 8, 8]\n"
    archsmith.compile(spec)
    with pytest.raises(archsmith.SpecError, match=f"`{name}` would be hidden") as caught:
        archsmith.compile(spec, deploy=True)
    assert (caught.value.line, caught.value.column) == (2, 36 + len(name))  # the layer's call


def test_deploy_keeps_the_dtype():
    model = build(REPVGG).double()
    deployed = archsmith.deploy(model)
    assert all(p.dtype == torch.float64 for p in deployed.parameters())
    assert same_function(model, deployed, torch.randn(2, 3, 16, 16, dtype=torch.float64)) < 1e-10


def test_cli_writes_the_inference_source_without_importing_torch(tmp_path):
    out = tmp_path / "net.py"
    code = ("import sys; from archsmith.cli import main; rc = main(['compile', 'resnet18', '--deploy', '-o', "
            f"{str(out)!r}]); assert 'torch' not in sys.modules; sys.exit(rc)")
    subprocess.run([sys.executable, "-c", code], check=True)
    source = out.read_text()
    assert source == archsmith.compile("resnet18", deploy=True)  # deterministic bytes
    namespace = {}
    exec(compile(source, str(out), "exec"), namespace)
    model = randomize(archsmith.create_model("resnet18"))
    deployed = namespace["Resnet18Deployed"].from_trained(model.state_dict())
    assert same_function(model, deployed, torch.randn(1, 3, 64, 64)) < 1e-4
