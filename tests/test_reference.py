"""Compile-time figures against the published ones in shared/REFERENCE.md (no torch needed)."""
import pytest

from archsmith.compiler import elaborate_models
from archsmith.passes import mac_count, parameter_count, state_dict_size

# model: (parameters, state_dict entries, GMACs at 224x224), from torchvision 0.28 and timm 1.0.31
REFERENCE = {
    "vgg11": (132_863_336, 22, 7.609), "vgg13": (133_047_848, 26, 11.308),
    "vgg16": (138_357_544, 32, 15.470), "vgg19": (143_667_240, 38, 19.632),
    "vgg11_bn": (132_868_840, 62, 7.609), "vgg13_bn": (133_053_736, 76, 11.308),
    "vgg16_bn": (138_365_992, 97, 15.470), "vgg19_bn": (143_678_248, 118, 19.632),
    "resnet18": (11_689_512, 122, 1.814), "resnet34": (21_797_672, 218, 3.664),
    "resnet50": (25_557_032, 320, 4.089), "resnet101": (44_549_160, 626, 7.801),
    "resnet152": (60_192_808, 932, 11.514),
    "resnext50_32x4d": (25_028_904, 320, 4.230), "resnext101_32x8d": (88_791_336, 626, 16.414),
    "resnext101_64x4d": (83_455_272, 626, 15.460),
    "seresnet50": (28_088_024, 384, 4.092), "seresnet101": (49_326_872, 758, 7.806),
    "resnetv2_50": (25_549_352, 300, 4.089), "resnetv2_101": (44_541_480, 606, 7.801),
    "wide_resnet50_2": (68_883_240, 320, 11.398), "wide_resnet101_2": (126_886_696, 626, 22.753),
}  # ResNeSt's figures are in test_resnest.py: its larger models take larger inputs


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_published_figures(name):
    (model,) = elaborate_models(name)
    params, entries, gmacs = REFERENCE[name]
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)
    assert model.output_shape == (1000,)


def test_every_node_has_a_shape_and_a_span():
    (model,) = elaborate_models("resnet50")
    files = set()
    for _, data in model.graph.nodes(data=True):
        assert data["shape"]
        files.add(data["span"].path.rpartition("/")[2])
    assert files == {"resnet.arch", "std.arch"}  # the stem and stages, the blocks of the library
    convs = [d for _, d in model.graph.nodes(data=True) if d["op"] == "conv2d"]
    assert len(convs) == 53
    assert {d["module"] for d in convs} >= {"conv1", "layer1.0.downsample.0", "layer4.2.conv3"}
