"""The bundled Xception (`legacy_xception`) has timm's state_dict keys and, with its weights, its
outputs; its blocks are timm's unit for unit; its published figures hold at 299x299."""
import ast
from pathlib import Path

import pytest
import torch

import archsmith

timm = pytest.importorskip("timm")

from test_equivalence import randomize_batchnorm, relative_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "specs" / "xception.arch")
# parameters, state_dict entries, GMACs at 299x299, from shared/REFERENCE.md
FIGURES = (22_855_952, 276, 8.357)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    reference = timm.create_model("legacy_xception")
    randomize_batchnorm(reference)
    ours = archsmith.create_model("legacy_xception")
    ours.load_state_dict(reference.state_dict())
    return ours.eval(), reference.eval()


def test_state_dict_is_timms_key_for_key():
    reference, ours = timm.create_model("legacy_xception"), archsmith.create_model("legacy_xception")
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert list(our_state) == list(ref_state)  # block1.skip and skipbn before block1.rep, as timm registers them
    assert all(our_state[k].shape == ref_state[k].shape for k in ref_state)
    params, entries, _ = FIGURES
    assert sum(p.numel() for p in ours.parameters()) == params and len(our_state) == entries


@pytest.mark.parametrize("size", [299, 7])  # 7x7 is the smallest input the two unpadded stem convs take
def test_outputs_are_timms(pair, size):
    ours, reference = pair
    x = torch.randn(2 if size < 64 else 1, 3, size, size)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == expected.shape == (len(x), 1000)
    assert relative_error(actual, expected) < 1e-4


def test_a_smaller_input_is_refused_where_the_stem_no_longer_fits():
    with pytest.raises(archsmith.SpecError, match="does not fit the input height 2"):
        archsmith.build("legacy_xception", input_shape=[3, 6, 6])


def test_published_figures_at_compile_time():
    from archsmith.compiler import elaborate_models
    from archsmith.passes import mac_count, parameter_count, state_dict_size
    (model,) = elaborate_models(SPEC, "legacy_xception")
    params, entries, gmacs = FIGURES
    assert model.input_shape == (3, 299, 299) and model.output_shape == (1000,)
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)


def test_every_block_is_timms_unit_for_unit(pair):
    """The ReLUs, separable convs, batch norms and pools of each block in timm's order, at timm's widths,
    with the first ReLU not in place (the shortcut reads the block's input) and block1 starting with
    its conv; the strided blocks, and only they, project the shortcut."""
    ours, reference = pair
    for i in range(1, 13):
        mine, theirs = getattr(ours, f"block{i}"), getattr(reference, f"block{i}")
        assert [type(m).__name__ for m in mine.rep] == [type(m).__name__ for m in theirs.rep]
        assert [getattr(m, "inplace", None) for m in mine.rep] == [getattr(m, "inplace", None) for m in theirs.rep]
        assert [m.pointwise.out_channels for m in mine.rep if hasattr(m, "pointwise")] == \
            [m.pointwise.out_channels for m in theirs.rep if hasattr(m, "pointwise")]
        assert (mine.skip is None) == (theirs.skip is None) == (4 <= i <= 11)
    assert type(ours.block1.rep[0]).__name__ == "SeparableConv2d"
    assert [m.pointwise.out_channels for m in ours.block12.rep[1::3]] == [728, 1024]  # widens at its last unit
    depthwise = ours.conv3.conv1
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == 1024


def test_num_classes_and_dropout():
    model = archsmith.create_model("legacy_xception", num_classes=10, drop_rate=0.2)
    assert model.fc.out_features == 10 and model.drop_rate == 0.2
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_generated_source_reads_like_timms():
    source = archsmith.compile(SPEC)
    tree = ast.parse(source)
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == \
        ["SeparableConv2d", "XceptionBlock", "Xception"]
    assert ("        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=kernel, stride=stride, "
            "padding=padding, groups=in_channels, bias=False)") in source
    assert "            width = out if grow_first or i == reps - 1 else in_channels\n" in source
    assert "            if start_with_relu or i > 0:\n                rep.append(nn.ReLU(inplace=i > 0))" in source
    assert "        self.block12 = XceptionBlock(728, 1024, 2, stride=2, grow_first=False)" in source
    assert "        return y + shortcut" in source
