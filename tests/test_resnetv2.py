"""Pre-activation ResNet (specs/resnetv2.arch): timm's resnetv2_50 and resnetv2_101 (keys, shapes,
outputs, the drop-path schedule), and the identity-mappings paper's CIFAR networks (published sizes,
a hand-written reference, the depth rule)."""
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archsmith
from archsmith.compiler import elaborate_models
from archsmith.passes import mac_count, parameter_count, state_dict_size

from test_equivalence import randomize_batchnorm, relative_error

# model: (parameters, state_dict entries, GMACs at 224x224), from shared/REFERENCE.md (timm 1.0.31)
PUBLISHED = {"resnetv2_50": (25_549_352, 300, 4.089), "resnetv2_101": (44_541_480, 606, 7.801)}
# the paper's CIFAR networks, 10 classes, 32x32 input
CIFAR = {"preact_resnet164": 1_703_258, "preact_resnet1001": 10_327_706}


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


def _compare(ours, reference, x):
    """Ours loads the reference's state_dict and gives its eval outputs."""
    ours.load_state_dict(reference.state_dict())
    ours.eval()
    reference.eval()
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == expected.shape
    return relative_error(actual, expected)


@pytest.mark.parametrize("name", ["resnetv2_50", "resnetv2_101"])
def test_matches_timm(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model(name)
    randomize_batchnorm(reference)
    ours = archsmith.create_model(name)
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert list(our_state) == list(ref_state)  # the same keys, in timm's order
    assert all(our_state[k].shape == ref_state[k].shape for k in ref_state)
    assert _compare(ours, reference, torch.randn(2, 3, 64, 64)) < 1e-4


def test_drop_path_follows_timms_schedule():
    """Block j of N drops its branch with rate drop_path_rate * j / (N - 1), as timm's; in training
    the same random draws drop the same samples, and in eval nothing is dropped."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model("resnetv2_50", drop_path_rate=0.1)
    randomize_batchnorm(reference)
    ours = archsmith.create_model("resnetv2_50", drop_path_rate=0.1)
    rates = [block.drop_path_rate for stage in ours.stages for block in stage.blocks]
    theirs = [getattr(block.drop_path, "drop_prob", 0.0) for stage in reference.stages for block in stage.blocks]
    assert rates == pytest.approx(theirs) and rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    x = torch.randn(4, 3, 64, 64)
    assert _compare(ours, reference, x) < 1e-4
    ours.train()
    reference.train()
    torch.manual_seed(1)
    actual = ours(x)
    torch.manual_seed(1)
    expected = reference(x)
    assert relative_error(actual.detach(), expected.detach()) < 1e-4
    torch.manual_seed(1)
    undropped = archsmith.create_model("resnetv2_50")
    undropped.load_state_dict(reference.state_dict())
    assert relative_error(undropped.train()(x).detach(), expected.detach()) > 1e-3  # the rate took effect


# ------------------------------------------------------------------ the paper's CIFAR networks


class PreActBottleneck(nn.Module):
    """kuangliu/pytorch-cifar's PreActBottleneck (models/preact_resnet.py)."""
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class CifarPreActResNet(nn.Module):
    """The paper's CIFAR network: a 3x3 conv, three stages of n bottlenecks at 16, 32 and 64 planes,
    the final BN-ReLU, global pooling and a linear classifier (kuangliu's layout)."""

    def __init__(self, depth, num_classes=10):
        super().__init__()
        n = (depth - 2) // 9
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.bn = nn.BatchNorm2d(64 * PreActBottleneck.expansion)
        self.linear = nn.Linear(64 * PreActBottleneck.expansion, num_classes)

    def _make_layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(PreActBottleneck(self.in_planes, planes, s))
            self.in_planes = planes * PreActBottleneck.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def ours_key(key: str) -> str:
    """The reference's checkpoint key in timm's names, which the spec uses."""
    key = re.sub(r"^layer(\d)\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.", key)
    key = re.sub(r"\.bn(\d)\.", r".norm\1.", key)
    key = key.replace(".shortcut.0.", ".downsample.conv.")
    return re.sub(r"^conv1\.", "stem.conv.", re.sub(r"^bn\.", "norm.", re.sub(r"^linear\.", "fc.", key)))


def test_preact_resnet164_equals_a_hand_written_reference():
    torch.manual_seed(0)
    reference = CifarPreActResNet(164)
    randomize_batchnorm(reference)
    ours = archsmith.create_model("preact_resnet164")
    state = {ours_key(k): v for k, v in reference.state_dict().items()}
    our_state = ours.state_dict()
    assert set(state) == set(our_state) and len(state) == len(reference.state_dict())
    assert all(state[k].shape == our_state[k].shape for k in state)
    assert sum(p.numel() for p in ours.parameters()) == CIFAR["preact_resnet164"]
    ours.load_state_dict(state)
    ours.eval()
    reference.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == (2, 10)
    assert relative_error(actual, expected) < 1e-4


def test_preact_resnet1001_builds_and_runs():
    model = archsmith.create_model("preact_resnet1001").eval()
    assert sum(p.numel() for p in model.parameters()) == CIFAR["preact_resnet1001"]
    assert [len(stage.blocks) for stage in model.stages] == [111, 111, 111]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


def test_one_class_takes_the_depth_and_refuses_one_that_is_not_9n_plus_2():
    source = archsmith.compile("specs/resnetv2.arch")
    assert "def preact_resnet164(**kwargs) -> PreActResNet:\n" in source
    assert "    return PreActResNet(164, **kwargs)\n" in source and "    return PreActResNet(1001, **kwargs)\n" in source
    assert "    return ResNetV2([3, 4, 23, 3], **kwargs)\n" in source
    with pytest.raises(archsmith.SpecError) as e:
        archsmith.compile("preact_resnet164", depth=165)
    assert e.value.message == "the depth of a CIFAR pre-activation ResNet is 9n + 2"
    assert e.value.path.endswith("resnetv2.arch") and e.value.hint == "here `depth` is 165"
    namespace = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    with pytest.raises(ValueError):
        namespace["PreActResNet"](165)
    small = namespace["PreActResNet"](11)  # n = 1
    assert [len(stage.blocks) for stage in small.stages] == [1, 1, 1]
