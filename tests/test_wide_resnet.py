"""Wide ResNet (specs/wide_resnet.arch): torchvision's wide_resnet50_2 and wide_resnet101_2 (keys,
shapes, outputs), and the paper's CIFAR WRN-d-k (published sizes, the official PyTorch reference's
outputs in eval and, with dropout, in training, the 6n + 4 rule)."""
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archsmith
from archsmith.compiler import elaborate_models
from archsmith.passes import mac_count, parameter_count, state_dict_size

from test_equivalence import randomize_batchnorm, relative_error

SPEC = Path(__file__).resolve().parent.parent / "specs" / "wide_resnet.arch"
# model: (parameters, state_dict entries, GMACs at 224x224), from shared/REFERENCE.md (torchvision 0.28)
PUBLISHED = {"wide_resnet50_2": (68_883_240, 320, 11.398), "wide_resnet101_2": (126_886_696, 626, 22.753)}
# WRN-d-k of the paper, 10 classes, 32x32 input
CIFAR = {"wrn16_4": 2_748_890, "wrn16_8": 10_961_370, "wrn22_8": 17_158_106, "wrn28_10": 36_479_194,
         "wrn40_4": 8_949_210}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_figures(name):
    (model,) = elaborate_models(name)
    params, entries, gmacs = PUBLISHED[name]
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar_parameter_counts(name):
    (model,) = elaborate_models(name)
    assert parameter_count(model.graph) == CIFAR[name]
    assert model.input_shape == (3, 32, 32) and model.output_shape == (10,)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_matches_torchvision(name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    randomize_batchnorm(reference)
    ours = archsmith.create_model(name)
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert list(our_state) == list(ref_state)
    assert all(our_state[k].shape == ref_state[k].shape for k in ref_state)
    ours.load_state_dict(ref_state)
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == expected.shape == (2, 1000)
    assert relative_error(actual, expected) < 1e-4


def test_written_with_resnets_blocks():
    """The ImageNet models are torchvision's ResNet at 128 channels per group: the shared classes."""
    source = archsmith.compile(str(SPEC), model="wide_resnet50_2")
    assert "def wide_resnet50_2(*, width_per_group=128, **kwargs) -> ResNet:" in source
    assert "    return ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=width_per_group, **kwargs)\n" in source
    assert "Block `Bottleneck` of std.arch:" in source


# ------------------------------------------------------------------ the paper's CIFAR networks


class BasicBlock(nn.Module):
    """The official PyTorch WRN's block (xternalz/WideResNet-pytorch, wideresnet.py)."""

    def __init__(self, in_planes, out_planes, stride, dropRate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.droprate = dropRate
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride,
                                                                padding=0, bias=False) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class NetworkBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, out_planes, block, stride, dropRate=0.0):
        super().__init__()
        self.layer = nn.Sequential(*[block(i == 0 and in_planes or out_planes, out_planes, i == 0 and stride or 1,
                                           dropRate) for i in range(int(nb_layers))])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, num_classes, widen_factor=1, dropRate=0.0):
        super().__init__()
        nChannels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        assert (depth - 4) % 6 == 0
        n = (depth - 4) / 6
        self.conv1 = nn.Conv2d(3, nChannels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, nChannels[0], nChannels[1], BasicBlock, 1, dropRate)
        self.block2 = NetworkBlock(n, nChannels[1], nChannels[2], BasicBlock, 2, dropRate)
        self.block3 = NetworkBlock(n, nChannels[2], nChannels[3], BasicBlock, 2, dropRate)
        self.bn1 = nn.BatchNorm2d(nChannels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(nChannels[3], num_classes)
        self.nChannels = nChannels[3]

    def forward(self, x):
        out = self.conv1(x)
        out = self.block3(self.block2(self.block1(out)))
        out = self.relu(self.bn1(out))
        out = F.avg_pool2d(out, 8)
        return self.fc(out.view(-1, self.nChannels))


def ours_key(key: str) -> str:
    """The reference's checkpoint key in the names of std.arch's pre-activation blocks."""
    key = re.sub(r"^block(\d)\.layer\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.", key)
    key = re.sub(r"\.bn(\d)\.", r".norm\1.", key).replace(".convShortcut.", ".downsample.conv.")
    return re.sub(r"^conv1\.", "stem.conv.", re.sub(r"^bn1\.", "norm.", key))


@pytest.fixture(scope="module")
def wrn16_4():
    """(ours, the reference with ours's weights): WRN-16-4 with dropout 0.3, as the paper trains it."""
    torch.manual_seed(0)
    reference = WideResNet(16, 10, widen_factor=4, dropRate=0.3)
    randomize_batchnorm(reference)
    ours = archsmith.create_model("wrn16_4")
    state = {ours_key(k): v for k, v in reference.state_dict().items()}
    our_state = ours.state_dict()
    assert set(state) == set(our_state) and len(state) == len(reference.state_dict())
    assert all(state[k].shape == our_state[k].shape for k in state)
    ours.load_state_dict(state)
    return ours, reference


def test_wrn16_4_equals_the_official_reference(wrn16_4):
    ours, reference = wrn16_4
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters()) \
        == CIFAR["wrn16_4"]
    ours.eval()
    reference.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == (2, 10)
    assert relative_error(actual, expected) < 1e-4


def test_wrn16_4_drops_out_between_the_convs_as_the_reference(wrn16_4):
    """In training, the same random draws drop the same units: the dropout is where the reference has it."""
    ours, reference = wrn16_4
    ours.train()
    reference.train()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        expected = reference(x)
        torch.manual_seed(1)
        actual = ours(x)
        torch.manual_seed(2)
        other = ours(x)
    assert relative_error(actual, expected) < 1e-4
    assert relative_error(other, expected) > 1e-3  # dropout is on
    assert [block.dropout for stage in ours.stages for block in stage.blocks] == [0.3] * 6


def test_drop_path_rate_grows_linearly_over_the_blocks():
    model = archsmith.create_model("wrn16_4", drop_path_rate=0.25)
    rates = [block.drop_path_rate for stage in model.stages for block in stage.blocks]
    assert rates == pytest.approx([0.25 * j / 5 for j in range(6)])


def test_one_class_takes_depth_and_width_and_refuses_a_depth_that_is_not_6n_plus_4():
    source = archsmith.compile(str(SPEC))
    assert source.count("class WideResNet(nn.Module):") == 1
    for depth, k in [(16, 4), (16, 8), (22, 8), (28, 10), (40, 4)]:
        assert f"    return WideResNet({depth}, {k}, **kwargs)\n" in source
    with pytest.raises(archsmith.SpecError) as e:
        archsmith.compile("wrn16_4", depth=15)
    err = e.value
    lines = SPEC.read_text().splitlines()
    assert err.message == "the depth of a Wide ResNet is 6n + 4" and err.hint == "here `depth` is 15"
    assert err.path.endswith("wide_resnet.arch")
    assert lines[err.line - 1][err.column - 1:].startswith("(depth - 4) % 6 == 0")
    namespace = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    with pytest.raises(ValueError):
        namespace["WideResNet"](15, 4)
    small = namespace["WideResNet"](10, 2)  # n = 1: WRN-10-2
    assert [len(stage.blocks) for stage in small.stages] == [1, 1, 1]
    assert small(torch.randn(1, 3, 32, 32)).shape == (1, 10)
