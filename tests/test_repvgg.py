"""Every bundled RepVGG (training form) has timm's state_dict keys and, with its weights, its outputs;
its layer is timm's RepVggBlock at every shape, stride and grouping; the grouped layers, the identity
branches and the drop-path schedule are timm's; the elaborated graph holds the parallel conv-BN and
BN branches, summed, that a re-parameterization folds."""
import ast
from pathlib import Path

import pytest
import torch

import archsmith

timm = pytest.importorskip("timm")

from test_equivalence import randomize_batchnorm, relative_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# timm name -> (parameters, state_dict entries, GMACs at 224x224), from shared/REFERENCE.md
MODELS = {
    "repvgg_a0": (9_108_968, 351, 1.513),
    "repvgg_a1": (14_092_264, 351, 2.626),
    "repvgg_a2": (28_210_600, 351, 5.685),
    "repvgg_b0": (15_817_960, 453, 3.397),
    "repvgg_b1": (57_415_016, 453, 13.128),
    "repvgg_b1g4": (39_966_056, 453, 8.119),
    "repvgg_b2": (89_022_376, 453, 20.418),
    "repvgg_b2g4": (61_758_376, 453, 12.591),
    "repvgg_b3": (123_085_288, 453, 29.121),
    "repvgg_b3g4": (83_825_128, 453, 17.849),
}


def assert_matches(ours, reference, x):
    """The same keys in the same order with the same shapes; with the reference's weights, its outputs."""
    randomize_batchnorm(reference)
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert list(our_state) == list(ref_state)
    assert all(our_state[k].shape == ref_state[k].shape for k in ref_state)
    ours.load_state_dict(ref_state)
    reference.eval()
    ours.eval()
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) < 1e-4


def blocks(model):
    """The stem and every layer of the stages, in order."""
    return [model.stem] + [block for stage in model.stages for block in stage]


@pytest.mark.parametrize("name", MODELS)
def test_matches_timm(name):
    torch.manual_seed(0)
    reference = timm.create_model(name)
    ours = archsmith.create_model(name)
    params, entries, _ = MODELS[name]
    assert sum(p.numel() for p in ours.parameters()) == params
    assert len(ours.state_dict()) == entries
    assert_matches(ours, reference, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("name", MODELS)
def test_published_figures_at_compile_time(name):
    from archsmith.compiler import elaborate_models
    from archsmith.passes import mac_count, parameter_count, state_dict_size
    (model,) = elaborate_models(name, input_shape=[3, 224, 224])
    params, entries, gmacs = MODELS[name]
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)
    assert model.output_shape == (1000,)


@pytest.mark.parametrize("in_channels,out,stride,groups", [
    (16, 16, 1, 1), (16, 32, 1, 1), (16, 16, 2, 1), (16, 32, 2, 4), (32, 32, 1, 4), (32, 32, 1, 32)])
def test_layer_is_timms_repvgg_block(in_channels, out, stride, groups):
    """The layer alone, in eval: the identity branch where the shape is kept, grouped convs alike."""
    from timm.models.byobnet import RepVggBlock
    spec = f"""
import "repvgg"
model unit = RepVggBlock({out}, stride={stride}, groups={groups}) input [{in_channels}, 9, 9]
"""
    torch.manual_seed(0)
    reference = RepVggBlock(in_channels, out, stride=stride, group_size=in_channels // groups)
    ours = archsmith.build(spec)
    assert (ours.identity is None) == (reference.identity is None) == (stride != 1 or in_channels != out)
    assert ours.conv_kxk.conv.groups == ours.conv_1x1.conv.groups == groups
    assert_matches(ours, reference, torch.randn(2, in_channels, 9, 9))


@pytest.mark.parametrize("name", ["repvgg_a0", "repvgg_b1g4"])
def test_grouped_and_identity_layers_are_timms(name):
    """g4 groups the convs of every second layer of each stage; the identity branch exists in every
    layer that keeps the shape, none in the stem or the first layer of a stage."""
    reference = timm.create_model(name)
    ours = archsmith.create_model(name)
    ref_blocks, our_blocks = blocks(reference), blocks(ours)
    assert [b.conv_kxk.conv.groups for b in our_blocks] == [b.conv_kxk.conv.groups for b in ref_blocks]
    assert [b.identity is None for b in our_blocks] == [b.identity is None for b in ref_blocks]
    first_of_stage = [0] + [1 + sum(len(s) for s in ours.stages[:i]) for i in range(4)]
    assert [i for i, b in enumerate(our_blocks) if b.identity is None] == first_of_stage
    if name.endswith("g4"):
        assert [b.conv_kxk.conv.groups for b in ours.stages[2]] == [1, 4] * 8


def test_drop_path_rates_follow_timms_schedule_and_eval_is_unchanged():
    torch.manual_seed(0)
    reference = timm.create_model("repvgg_a0", drop_path_rate=0.1)
    ours = archsmith.create_model("repvgg_a0", drop_path_rate=0.1)
    # timm drops only in layers with an identity branch; the others have an nn.Identity
    expected = [b.drop_path.drop_prob for b in blocks(reference) if b.identity is not None]
    assert expected[-1] == pytest.approx(0.1 * 19 / 20)  # the last layer with an identity: 20th of 21
    assert [b.drop_path_rate for b in blocks(ours) if b.identity is not None] == pytest.approx(expected)
    assert all(type(b.drop_path).__name__ == "Identity" for b in blocks(reference) if b.identity is None)
    assert_matches(ours, reference, torch.randn(2, 3, 64, 64))


def test_drop_path_in_training_drops_what_timms_drops():
    """With the same random draws, training mode gives timm's outputs: the same branches (the sum of
    the two conv branches, never the identity) are dropped and the rest rescaled alike."""
    torch.manual_seed(0)
    reference = timm.create_model("repvgg_a0", drop_path_rate=0.5, drop_rate=0.2)
    ours = archsmith.create_model("repvgg_a0", drop_path_rate=0.5, drop_rate=0.2)
    assert_matches(ours, reference, torch.randn(2, 3, 64, 64))
    reference.train()
    ours.train()
    x = torch.randn(8, 3, 64, 64)
    with torch.no_grad():
        torch.manual_seed(1)
        expected = reference(x)
        torch.manual_seed(1)
        actual = ours(x)
        torch.manual_seed(2)
        other = ours(x)
    assert relative_error(actual, expected) < 1e-4
    assert not torch.allclose(actual, other)


def test_head_dropout_and_num_classes():
    model = archsmith.create_model("repvgg_a0", num_classes=10, drop_rate=0.3)
    assert model.head.fc.out_features == 10
    assert model.head.drop_rate == 0.3
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_graph_sums_conv_bn_branches_and_identity_bn_of_one_tensor():
    """What re-parameterization folds: in every layer, the 3x3 conv-BN and the 1x1 conv-BN read the
    layer's input, as does the identity BN where there is one, and their sum feeds the ReLU."""
    from archsmith.compiler import elaborate_models
    (model,) = elaborate_models("repvgg_a0", input_shape=[3, 64, 64])
    graph = model.graph
    nodes = dict(graph.nodes(data=True))

    def producer(key):
        return nodes[key[0]]

    def terms(key):
        """The tensors summed into `key`, through nested adds and drop-paths."""
        node = producer(key)
        if node["op"] in ("add", "drop_path"):
            return [t for k in node["inputs"] for t in terms(k)]
        return [key]

    relus = [d for d in nodes.values() if d["op"] == "relu"]
    assert len(relus) == 22
    for relu in relus:
        layer = relu["module"].rpartition(".")[0]
        summed = [producer(k) for k in terms(relu["inputs"][0])]
        assert [n["module"] for n in summed][:2] == [f"{layer}.conv_kxk.bn", f"{layer}.conv_1x1.bn"]
        assert all(n["op"] == "batchnorm2d" for n in summed)
        reads = {n["inputs"][0] if n["module"].endswith("identity") else producer(n["inputs"][0])["inputs"][0]
                 for n in summed}
        assert len(reads) == 1
        kernels = [producer(n["inputs"][0])["attrs"]["kernel_size"] for n in summed[:2]]
        assert kernels == [3, 1] and len(summed) in (2, 3)


def test_generated_source_reads_like_timms():
    source = archsmith.compile(str(ROOT / "specs" / "repvgg.arch"))
    tree = ast.parse(source)
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == \
        ["DropPath", "ConvBnAct", "RepVggBlock", "ClassifierHead", "RepVGG"]  # one per block, every model
    assert "    return RepVGG([4, 6, 16, 1], 3.0, 5.0, groups=groups, **kwargs)" in source
    assert "        self.add_module('identity', None)  # its place in the state_dict; built below" in source
    assert "        self.conv_kxk = ConvBnAct(in_channels, out, kernel=3, stride=stride, groups=groups, act=False)" \
        in source
    assert "            y = drop_path(y, self.drop_path_rate, self.training) + self.identity(x)" in source
    assert "stride=2 if i == 0 else 1, groups=groups if i % 2 == 1 else 1" in source
    a0 = archsmith.compile(str(ROOT / "specs" / "repvgg.arch"), model="repvgg_a0")
    b3g4 = archsmith.compile(str(ROOT / "specs" / "repvgg.arch"), model="repvgg_b3g4")
    assert len(b3g4.splitlines()) == len(a0.splitlines())


def test_depths_name_four_stages():
    with pytest.raises(archsmith.SpecError, match="four stages after its stem"):
        archsmith.create_model("repvgg_a0", depths=[2, 4, 14])
