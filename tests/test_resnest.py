"""Every bundled ResNeSt has timm's state_dict keys and, with its weights, its outputs; its split
attention is timm's SplitAttn at every radix and cardinality; drop-path follows timm's schedule."""
import ast
from pathlib import Path

import pytest
import torch

import archsmith

timm = pytest.importorskip("timm")

from test_equivalence import randomize_batchnorm, relative_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# timm name -> (parameters, state_dict entries, GMACs at 224x224), from shared/REFERENCE.md;
# None: not listed there
MODELS = {
    "resnest14d": (10_611_688, 152, 2.749),
    "resnest26d": (17_069_448, 260, 3.623),
    "resnest50d": (27_483_240, 476, 5.371),
    "resnest101e": (48_275_016, 935, 10.201),
    "resnest200e": (70_201_544, 1826, 17.408),
    "resnest269e": (110_929_480, 2447, 22.434),
    "resnest50d_4s2x40d": None,
    "resnest50d_1s4x24d": None,
}


@pytest.fixture(autouse=True)
def flush_denormals():
    """The radix softmax of deep random networks yields denormal floats, which CPUs compute a hundred
    times slower; flushing them to zero changes both models' outputs alike."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


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


@pytest.mark.parametrize("name", MODELS)
def test_matches_timm(name):
    torch.manual_seed(0)
    reference = timm.create_model(name)
    ours = archsmith.create_model(name)
    if MODELS[name] is not None:
        params, entries, _ = MODELS[name]
        assert sum(p.numel() for p in ours.parameters()) == params
        assert len(ours.state_dict()) == entries
    assert_matches(ours, reference, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("name", [n for n in MODELS if MODELS[n] is not None])
def test_published_figures_at_compile_time(name):
    from archsmith.compiler import elaborate_models
    from archsmith.passes import mac_count, parameter_count, state_dict_size
    (model,) = elaborate_models(name, input_shape=[3, 224, 224])
    params, entries, gmacs = MODELS[name]
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)


@pytest.mark.parametrize("radix,groups", [(1, 1), (2, 1), (4, 2), (1, 4), (2, 4)])
def test_split_attention_is_timms(radix, groups):
    """The unit alone, in eval: sigmoid at radix 1, the radix softmax within each cardinal group."""
    from timm.layers import SplitAttn
    spec = f"""
import "resnest"
model unit = SplitAttn(48, stride=2, groups={groups}, radix={radix}) input [48, 9, 9]
"""
    torch.manual_seed(0)
    reference = SplitAttn(48, 48, kernel_size=3, stride=2, padding=1, groups=groups, radix=radix,
                          norm_layer=torch.nn.BatchNorm2d)
    ours = archsmith.build(spec)
    assert [k for k in ours.state_dict() if k.endswith("weight")] == \
        ["conv.weight", "bn0.weight", "fc1.weight", "bn1.weight", "fc2.weight"]
    assert_matches(ours, reference, torch.randn(2, 48, 9, 9))


def test_attention_width_is_timms_make_divisible():
    from timm.layers import make_divisible
    for planes, radix in [(64, 2), (128, 2), (512, 2), (80, 4), (96, 1), (24, 1)]:
        spec = f'import "resnest"\nmodel unit = SplitAttn({planes}, radix={radix}) input [{planes}, 8, 8]\n'
        unit = archsmith.build(spec)
        assert unit.fc1.out_channels == make_divisible(planes * radix * 0.25, min_value=32, divisor=8)


def test_drop_path_rates_follow_timms_schedule_and_eval_is_unchanged():
    torch.manual_seed(0)
    reference = timm.create_model("resnest50d", drop_path_rate=0.1)
    ours = archsmith.create_model("resnest50d", drop_path_rate=0.1)
    ref_blocks = [b for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4)
                  for b in layer]
    our_blocks = [b for layer in (ours.layer1, ours.layer2, ours.layer3, ours.layer4) for b in layer]
    expected = [b.drop_path.drop_prob if b.drop_path is not None else 0.0 for b in ref_blocks]
    assert expected[0] == 0.0 and expected[-1] == pytest.approx(0.1)
    assert [b.drop_path_rate for b in our_blocks] == pytest.approx(expected)
    assert not any(isinstance(m, torch.nn.Dropout) or type(m).__name__ == "DropPath" for m in ours.modules())
    assert_matches(ours, reference, torch.randn(2, 3, 64, 64))


def test_drop_path_drops_residual_branches_in_training_only():
    model = archsmith.create_model("resnest14d", drop_path_rate=0.9)
    randomize_batchnorm(model)
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        b = model(x)
    assert not torch.allclose(a, b)  # batch statistics are the same; only the dropped branches differ


def test_drop_path_rate_of_block_j_of_n_is_rate_times_j_over_n_minus_1():
    model = archsmith.create_model("resnest14d", drop_path_rate=0.3)
    rates = [layer[0].drop_path_rate for layer in (model.layer1, model.layer2, model.layer3, model.layer4)]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_num_classes_override():
    model = archsmith.create_model("resnest14d", num_classes=10)
    assert model.fc.out_features == 10
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_generated_source_reads_like_timms():
    source = archsmith.compile(str(ROOT / "specs" / "resnest.arch"))
    tree = ast.parse(source)
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == \
        ["DropPath", "SplitAttn", "ZeroPadShortcut", "ResNestBottleneck", "ResNeSt"]  # one per block, every model
    assert "    return ResNeSt([3, 30, 48, 8], stem_width=stem_width, **kwargs)" in source
    assert "def resnest50d_4s2x40d(*, radix=4, cardinality=2, base_width=40, avd_first=True, **kwargs) -> ResNeSt:" \
        in source
    assert "self.fc1 = nn.Conv2d(out, attn_chs, kernel_size=1, groups=groups)" in source
    assert "self.conv3 = conv1x1(width, out_channels)" in source
    assert "            self.avd_last = nn.AvgPool2d(kernel_size=3, stride=stride, padding=1)" in source
    assert "        if self.avd_last is not None:\n            out = self.avd_last(out)" in source
    assert "out = drop_path(out, self.drop_path_rate, self.training) + identity" in source
    r50 = archsmith.compile(str(ROOT / "specs" / "resnest.arch"), model="resnest50d")
    r269 = archsmith.compile(str(ROOT / "specs" / "resnest.arch"), model="resnest269e")
    assert len(r269.splitlines()) == len(r50.splitlines())
