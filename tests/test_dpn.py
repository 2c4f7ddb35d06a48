"""Every bundled Dual Path Network has timm's state_dict keys and, with its weights, its outputs; its
dual path block is timm's DualPathBlock of every block type, with and without the DPN-b expand."""
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
    "dpn68": (12_611_602, 433, 2.326),
    "dpn68b": (12_611_602, 455, 2.326),
    "dpn92": (37_668_392, 577, 6.502),
    "dpn98": (61_570_728, 613, 11.671),
    "dpn107": (86_917_800, 667, 18.299),
    "dpn131": (79_254_504, 811, 16.014),
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
    (model,) = elaborate_models(name)
    params, entries, gmacs = MODELS[name]
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)
    assert model.output_shape == (1000,)


@pytest.mark.parametrize("block_type,b", [("proj", False), ("down", False), ("normal", False),
                                          ("proj", True), ("down", True), ("normal", True)])
def test_dual_path_block_is_timms(block_type, b):
    """The block alone: the residual path (the first `bw` channels) added to, the dense path appended to."""
    from timm.models.dpn import DualPathBlock
    in_chs, r, bw, inc, groups = 48, 32, 24, 8, 4
    spec = f"""
import "dpn"
model unit = DualPathBlock({r}, {bw}, {inc}, {groups}, "{block_type}", {str(b).lower()})
    input [{in_chs}, 9, 9]
"""
    torch.manual_seed(0)
    reference = DualPathBlock(in_chs, r, r, bw, inc, groups, block_type, b)
    ours = archsmith.build(spec)
    x = torch.randn(2, in_chs, 9, 9)
    assert_matches(ours, reference, x)
    out_channels = (bw + 3 * inc) if block_type != "normal" else in_chs + inc
    assert ours(x).shape[1] == out_channels


def test_unknown_block_type_is_refused():
    spec = 'import "dpn"\nmodel unit = DualPathBlock(32, 24, 8, 4, "up") input [48, 9, 9]\n'
    with pytest.raises(archsmith.SpecError, match="unknown block_type up: proj, down or normal"):
        archsmith.compile(spec)


def test_num_classes_override_and_classifier_is_a_1x1_conv():
    model = archsmith.create_model("dpn68", num_classes=10)
    assert isinstance(model.classifier, torch.nn.Conv2d) and model.classifier.kernel_size == (1, 1)
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_generated_source_reads_like_timms():
    source = archsmith.compile(str(ROOT / "specs" / "dpn.arch"))
    tree = ast.parse(source)
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == \
        ["ConvBnAct", "BnActConv", "BnAct", "DualPathBlock", "DPN"]  # one per block, every model
    assert "def dpn68b(*, k_r=128, small=True, num_init_features=10, b=True, **kwargs) -> DPN:" in source
    assert "return DPN(k_sec=[3, 4, 12, 3], inc_sec=[16, 32, 32, 64], k_r=k_r, small=small, " \
           "num_init_features=num_init_features, b=b, **kwargs)" in " ".join(source.split())
    assert "        residual, dense = torch.split(paths, [self.bw, self.dense_width], dim=1)\n" in source
    assert "        return torch.cat([residual + out1, dense, out2], 1)\n" in source
    # the width after each block is timm's: bw + 3 * inc after a projecting block, `inc` more after others
    assert "        for s, (bw_base, depth, inc) in enumerate(zip([64, 128, 256, 512], k_sec, inc_sec)):\n" in source
    assert "                channels = (bw + 2 * inc if block_type != 'normal' else channels) + inc\n" in source
    assert "            elif self.c1x1_w_s2 is not None:\n                paths = self.c1x1_w_s2(x)\n" in source
    d92 = archsmith.compile(str(ROOT / "specs" / "dpn.arch"), model="dpn92")
    d131 = archsmith.compile(str(ROOT / "specs" / "dpn.arch"), model="dpn131")
    def classes(source):  # all but the factory, whose signature lists the model's own arguments
        return source[:source.rindex("\n\n\ndef ")]
    assert len(classes(d131).splitlines()) == len(classes(d92).splitlines())


def test_dropout_before_the_classifier_in_training_only_and_other_input_channels():
    model = archsmith.create_model("dpn68", drop_rate=0.5, input_shape=[1, 64, 64])
    assert model.features.conv1_1.conv.in_channels == 1
    randomize_batchnorm(model)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        assert not torch.equal(a, model(x))
