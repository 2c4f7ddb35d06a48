"""EfficientNet-B0 ... B7 are one definition at eight scales, each equal to torchvision's model of its
name: the same state_dict keys, order and shapes, with its weights the same outputs at its own
resolution, its published size and multiply-accumulates; stochastic depth as torchvision schedules
and draws it; and the class is right at scales off the grid, checked against torchvision's own
EfficientNet built from the same multipliers."""
import ast
import math
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models import efficientnet as tv

import archsmith

from test_equivalence import randomize_batchnorm, relative_error
from test_residual_variants import drop_path_log

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "specs" / "efficientnet.arch")

# name -> (parameters, state_dict entries, GMACs at 224x224) from shared/REFERENCE.md, and the input
# resolution torchvision's weights are evaluated at (the `crop_size` of their transforms)
MODELS = {
    "efficientnet_b0": (5_288_548, 360, 0.386, 224),
    "efficientnet_b1": (7_794_184, 508, 0.570, 240),
    "efficientnet_b2": (9_109_994, 508, 0.659, 288),
    "efficientnet_b3": (12_233_232, 574, 0.963, 300),
    "efficientnet_b4": (19_341_616, 706, 1.504, 380),
    "efficientnet_b5": (30_389_784, 854, 2.356, 456),
    "efficientnet_b6": (43_040_704, 986, 3.360, 528),
    "efficientnet_b7": (66_347_960, 1200, 5.170, 600),
}
# B0-B4 are compared at their own resolution, B5 and B6 at a small input (their weights and structure
# do not depend on it) and B7 at its own 600x600, once
SMALL = {"efficientnet_b5", "efficientnet_b6"}


def assert_matches(ours, reference, x):
    """The same keys in the same order with the same shapes; with the reference's weights (and
    random batch-norm statistics), its outputs in eval."""
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
    assert expected.std() > 0
    assert relative_error(actual, expected) < 1e-4


def batchnorms(model):
    return [(m.eps, m.momentum) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("name", MODELS)
def test_matches_torchvision_at_its_resolution(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    ours = archsmith.create_model(name)
    params, entries, _, size = MODELS[name]
    assert sum(p.numel() for p in ours.parameters()) == params
    assert len(ours.state_dict()) == entries
    assert batchnorms(ours) == batchnorms(reference)  # B5-B7: eps 1e-3, momentum 0.01
    assert ours.classifier[0].p == reference.classifier[0].p
    size = 64 if name in SMALL else size
    assert_matches(ours, reference, torch.randn(1, 3, size, size))


@pytest.mark.parametrize("name", MODELS)
def test_published_figures_and_resolution_at_compile_time(name):
    from archsmith.compiler import elaborate_models
    from archsmith.passes import mac_count, parameter_count, state_dict_size
    params, entries, gmacs, size = MODELS[name]
    (native,) = elaborate_models(SPEC, model=name)
    assert list(native.input_shape) == [3, size, size]
    weights = getattr(tv, f"EfficientNet_B{name[-1]}_Weights").DEFAULT
    assert weights.transforms().crop_size == [size]
    (model,) = elaborate_models(SPEC, model=name, input_shape=[3, 224, 224])
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)


def test_stochastic_depth_is_torchvisions_schedule_and_draws():
    """Block j of all N has rate p * j / N, applied on the residual blocks only; in training the
    generated model draws the same masks as torchvision's from the same seed, so its outputs (and
    the dropout before the classifier) are torchvision's."""
    torch.manual_seed(0)
    reference = tv.efficientnet_b0(stochastic_depth_prob=0.5)
    ours = archsmith.create_model("efficientnet_b0", stochastic_depth_prob=0.5)
    ref_blocks = [b for stage in reference.features[1:-1] for b in stage]
    our_blocks = [b for stage in ours.features[1:-1] for b in stage]
    assert len(our_blocks) == 16
    assert [b.drop_path_rate for b in our_blocks] == [b.stochastic_depth.p for b in ref_blocks]
    assert [b.drop_path_rate for b in our_blocks] == pytest.approx([0.5 * j / 16 for j in range(16)])
    assert [b.use_branch for b in our_blocks] == [b.use_res_connect for b in ref_blocks]
    assert_matches(ours, reference, torch.randn(2, 3, 64, 64))
    ours.train()
    reference.train()
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


def test_stochastic_depth_drops_whole_samples_at_each_blocks_rate(monkeypatch):
    rate, batch = 0.5, 1000
    torch.manual_seed(0)
    model = archsmith.create_model("efficientnet_b0", stochastic_depth_prob=rate).train()
    residual = [j for j, b in enumerate(b for stage in model.features[1:-1] for b in stage) if b.use_branch]
    calls = drop_path_log(model, monkeypatch)
    with torch.no_grad():
        model(torch.randn(batch, 3, 16, 16))
    assert len(calls) == len(residual) == 9
    for j, (p, dropped) in zip(residual, calls):
        scheduled = rate * j / 16
        assert p == pytest.approx(scheduled)
        sigma = math.sqrt(scheduled * (1 - scheduled) / batch)
        assert abs(dropped - scheduled) <= 4 * sigma + 1e-9, (j, dropped, scheduled)


@pytest.mark.parametrize("width_mult,depth_mult", [(0.5, 0.4), (0.75, 1.3), (1.3, 0.7)])
def test_other_scales_are_torchvisions_efficientnet_at_those_multipliers(width_mult, depth_mult):
    """Off the B0-B7 grid (widths that round up and down, stages of one block), with other classes
    and eps: torchvision's EfficientNet built from the same multipliers."""
    from functools import partial
    torch.manual_seed(0)
    setting, last_channel = tv._efficientnet_conf("efficientnet_b0", width_mult=width_mult, depth_mult=depth_mult)
    reference = tv.EfficientNet(setting, 0.3, num_classes=10, last_channel=last_channel,
                                norm_layer=partial(torch.nn.BatchNorm2d, eps=1e-3, momentum=0.01))
    ours = archsmith.create_model("efficientnet_b0", width_mult=width_mult, depth_mult=depth_mult, dropout=0.3,
                                  num_classes=10, bn_eps=1e-3, bn_momentum=0.01)
    assert batchnorms(ours) == batchnorms(reference)
    assert_matches(ours, reference, torch.randn(2, 3, 48, 48))


def test_mbconv_keys_follow_the_expansion_and_the_residual_the_shape():
    spec = 'import "std"\nmodel unit = MBConv({out}, {ratio}, 5, stride={stride}) input [16, 8, 8]\n'
    plain = archsmith.build(spec.format(out=16, ratio=1, stride=1))  # no expansion: block.0 is depthwise
    assert [k for k in plain.state_dict() if k.endswith("weight")] == \
        ["block.0.0.weight", "block.0.1.weight", "block.1.fc1.weight", "block.1.fc2.weight",
         "block.2.0.weight", "block.2.1.weight"]
    assert plain.block[0][0].groups == 16 and plain.block[1].fc1.out_channels == 4
    expanded = archsmith.build(spec.format(out=24, ratio=6, stride=2))
    assert expanded.block[0][0].out_channels == 96 and expanded.block[2].fc1.out_channels == 4
    assert not expanded.use_branch and plain.use_branch
    x = torch.randn(2, 16, 8, 8)
    assert expanded.eval()(x).shape == (2, 24, 4, 4)


def test_generated_source_reads_like_torchvisions():
    source = archsmith.compile(SPEC)
    tree = ast.parse(source)
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == \
        ["DropPath", "SqueezeExcite", "MBConv", "EfficientNet"]  # one class per block, every model
    assert "        for expand, kernel, stride, out, blocks in stages:\n" in source
    assert "drop_path_rate=stochastic_depth_prob * k / total" in source
    assert "                k = k + 1\n" in source
    assert "        if hidden != in_channels:\n" in source
    assert "            return drop_path(y, self.drop_path_rate, self.training) + x\n" in source
    assert "            nn.Dropout(p=dropout, inplace=True),\n" in source
    assert "def efficientnet_b7(*, width_mult=2.0, depth_mult=3.1, dropout=0.5, bn_eps=0.001, bn_momentum=0.01, " \
        "**kwargs) -> EfficientNet:" in " ".join(source.split())
    b0 = archsmith.compile(SPEC, model="efficientnet_b0")
    b7 = archsmith.compile(SPEC, model="efficientnet_b7")
    def classes(source):  # all but the factory, whose signature lists the model's own arguments
        return source[:source.rindex("\n\n\ndef ")]
    assert len(classes(b7).splitlines()) == len(classes(b0).splitlines())
