"""The bundled Inception-v4 and Inception-ResNet-v2 have timm's state_dict keys and, with its weights,
its outputs; the residual modules are scaled as timm's; the published figures hold at 299x299."""
import ast
from pathlib import Path

import pytest
import torch

import archsmith

timm = pytest.importorskip("timm")

from test_equivalence import randomize_batchnorm, relative_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "specs" / "inception.arch")
# timm name -> parameters, state_dict entries, GMACs at 299x299, from shared/REFERENCE.md
MODELS = {
    "inception_v4": (42_679_816, 896, 12.254),
    "inception_resnet_v2": (55_843_464, 1306, 13.156),
}
SMALLEST = 75  # four unpadded stride-2 reductions and two unpadded 3x3s leave 1x1 at 75x75


@pytest.fixture(scope="module")
def built():
    """Each model as the spec builds it, to read (not to change)."""
    return {name: archsmith.create_model(name) for name in MODELS}


@pytest.mark.parametrize("name", MODELS)
def test_matches_timm(name):
    """At the smallest input the model takes and at the 299x299 it was trained for."""
    torch.manual_seed(0)
    reference = timm.create_model(name)
    randomize_batchnorm(reference)
    ours = archsmith.create_model(name)
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert list(our_state) == list(ref_state)
    assert all(our_state[k].shape == ref_state[k].shape for k in ref_state)
    params, entries, _ = MODELS[name]
    assert sum(p.numel() for p in ours.parameters()) == params and len(our_state) == entries
    ours.load_state_dict(ref_state)
    reference.eval()
    ours.eval()
    for x in torch.randn(2, 3, SMALLEST, SMALLEST), torch.randn(1, 3, 299, 299):
        with torch.no_grad():
            expected, actual = reference(x), ours(x)
        assert actual.shape == expected.shape == (len(x), 1000)
        assert relative_error(actual, expected) < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_a_smaller_input_is_refused_at_compile_time(name):
    with pytest.raises(archsmith.SpecError, match="does not fit the input"):
        archsmith.build(name, input_shape=[3, SMALLEST - 1, SMALLEST - 1])


@pytest.mark.parametrize("name", MODELS)
def test_published_figures_at_compile_time(name):
    from archsmith.compiler import elaborate_models
    from archsmith.passes import mac_count, parameter_count, state_dict_size
    (model,) = elaborate_models(SPEC, name)
    params, entries, gmacs = MODELS[name]
    assert model.input_shape == (3, 299, 299) and model.output_shape == (1000,)
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)


def test_residuals_are_scaled_as_timms(built):
    """Scales 0.17, 0.1 and 0.2 in the three repeats; the last module unscaled and without its ReLU."""
    reference, ours = timm.create_model("inception_resnet_v2"), built["inception_resnet_v2"]
    for seq in ("repeat", "repeat_1", "repeat_2"):
        assert [b.scale for b in getattr(ours, seq)] == [b.scale for b in getattr(reference, seq)]
    assert {b.scale for b in ours.repeat} == {0.17}
    assert ours.block8.scale == reference.block8.scale == 1.0
    assert ours.block8.relu is None and all(b.relu is not None for b in ours.repeat_2)


def test_the_scaled_branch_is_added_to_the_input():
    """y = x + scale * branch(x), then a ReLU unless `no_relu`: the module alone, at any input width."""
    spec = 'import "inception"\nmodel c = InceptionResNetC({}) input [64, 3, 3]\n'
    torch.manual_seed(0)
    half, plain = archsmith.build(spec.format("0.5, no_relu=true")), archsmith.build(spec.format("no_relu=true"))
    plain.load_state_dict(half.state_dict())
    x = torch.randn(2, 64, 3, 3)
    with torch.no_grad():
        a, b = half.eval()(x), plain.eval()(x)
        relu = archsmith.build(spec.format("0.5")).eval()
        relu.load_state_dict(half.state_dict())
        c = relu(x)
    assert half.conv2d.out_channels == 64 and (a < 0).any()
    assert torch.allclose(a - x, (b - x) * 0.5, atol=1e-5)
    assert torch.equal(c, torch.relu(a))


def test_every_batch_norm_has_the_tensorflow_epsilon(built):
    for model in built.values():
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and {m.eps for m in norms} == {1e-3}


def test_reduction_a_is_one_block_with_table_1s_filter_counts(built):
    v4, irv2 = built["inception_v4"], built["inception_resnet_v2"]
    a, b = v4.features[10], irv2.mixed_6a
    assert type(a).__name__ == type(b).__name__ == "ReductionA"
    for block, (k, l, m, n) in [(a, (192, 224, 256, 384)), (b, (256, 256, 384, 384))]:
        assert [c.conv.out_channels for c in block.branch1] == [k, l, m]
        assert block.branch0.conv.out_channels == n


def test_num_classes_and_dropout():
    for name, head in [("inception_v4", "last_linear"), ("inception_resnet_v2", "classif")]:
        model = archsmith.create_model(name, num_classes=10, drop_rate=0.2)
        assert getattr(model, head).out_features == 10 and model.drop_rate == 0.2


def test_generated_source_names_its_blocks_apart_from_torchvisions_inception_v3():
    """One class per block of the paper; none shares a name with torchvision's Inception-v3 modules."""
    source = archsmith.compile(SPEC, model="inception_v4") + archsmith.compile(SPEC, model="inception_resnet_v2")
    classes = list(dict.fromkeys(n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef)))
    assert classes == ["BasicConv2d", "Mixed3a", "Mixed4a", "Mixed5a", "InceptionV4A", "ReductionA",
                       "InceptionV4B", "ReductionV4B", "InceptionV4C", "InceptionV4", "Mixed5b",
                       "InceptionResNetA", "InceptionResNetB", "ReductionResNetB", "InceptionResNetC",
                       "InceptionResNetV2"]
    assert not set(classes) & {"InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE",
                               "InceptionAux", "Inception3"}
    assert "            *[InceptionV4B(1024) for _ in range(7)],\n" in source
    assert "        self.repeat_1 = nn.Sequential(*[InceptionResNetB(1088, scale=0.1) for _ in range(20)])" in source
    assert "        y = y * self.scale + x\n" in source
    assert "        b1 = torch.cat([self.branch1_1a(y), self.branch1_1b(y)], 1)\n" in source
    assert "    return BasicConv2d(in_channels, out, kernel=[1, n], padding=[0, n // 2])" in source
