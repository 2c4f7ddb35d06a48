"""ResNeXt, SE-ResNet and the CIFAR ResNets equal their references; stochastic depth drops each
residual branch at the rate timm schedules for it."""
import math

import pytest
import torch

import archsmith

from test_equivalence import randomize_batchnorm, relative_error

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


def assert_equal_models(ours, reference, size=64):
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert list(our_state) == list(ref_state)
    assert all(our_state[k].shape == ref_state[k].shape for k in ref_state)
    ours.load_state_dict(ref_state)
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) < 1e-4


@pytest.mark.parametrize("name", ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"])
def test_resnext_matches_torchvision(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    randomize_batchnorm(reference)
    assert_equal_models(archsmith.create_model(name), reference)


@pytest.mark.parametrize("name", ["seresnet50", "seresnet101"])
def test_seresnet_matches_timm(name):
    torch.manual_seed(0)
    reference = timm.create_model(name)
    randomize_batchnorm(reference)
    assert_equal_models(archsmith.create_model(name), reference)


def test_resnet_with_drop_path_matches_timm_in_eval():
    torch.manual_seed(0)
    reference = timm.create_model("resnet50", drop_path_rate=0.2)
    randomize_batchnorm(reference)
    assert_equal_models(archsmith.create_model("resnet50", drop_path_rate=0.2), reference)


CIFAR = {"cifar_resnet20": 269_722, "cifar_resnet32": 464_154, "cifar_resnet44": 658_586,
         "cifar_resnet56": 853_018, "cifar_resnet110": 1_727_962, "cifar_resnet1202": 19_421_274}


@pytest.mark.parametrize("name,count", CIFAR.items())
def test_cifar_resnet_has_the_papers_parameter_count(name, count):
    model = archsmith.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


class OptionABlock(torch.nn.Module):
    """The CIFAR basic block as it is usually written by hand (akamaster/pytorch_resnet_cifar10)."""

    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.pad = planes // 4 if stride != 1 or in_planes != planes else 0

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.pad:
            shortcut = torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return torch.relu(out + shortcut)


class HandWrittenCifarResNet(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(16)
        blocks, width = [], 16
        for planes in (16, 32, 64):
            stage = [OptionABlock(width, planes, 1 if planes == 16 else 2)]
            stage += [OptionABlock(planes, planes, 1) for _ in range(n - 1)]
            blocks.append(torch.nn.Sequential(*stage))
            width = planes
        self.layer1, self.layer2, self.layer3 = blocks
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


def test_cifar_resnet20_equals_the_usual_hand_written_module():
    torch.manual_seed(0)
    reference = HandWrittenCifarResNet(3)
    randomize_batchnorm(reference)
    ours = archsmith.create_model("cifar_resnet20")
    assert_equal_models(ours, reference, size=32)


def test_a_depth_the_cifar_resnet_cannot_have_is_refused_by_spec_and_class():
    spec = 'import "cifar_resnet"\nmodel bad = CifarResNet(21) input [3, 32, 32]\n'
    with pytest.raises(archsmith.SpecError, match="6n . 2 layers: depth 21 is not"):
        archsmith.compile(spec)
    cls = type(archsmith.create_model("cifar_resnet20"))
    with pytest.raises(ValueError, match="depth 21 is not"):
        cls(21)
    assert sum(p.numel() for p in cls(56).parameters()) == CIFAR["cifar_resnet56"]


def drop_path_log(model, monkeypatch):
    """Every call of the generated module's `drop_path`: (p, fraction of the samples it zeroed)."""
    module = __import__(type(model).__module__, fromlist=["drop_path"])
    original, calls = module.drop_path, []

    def recording(x, p, training):
        y = original(x, p, training)
        zeroed = (y.flatten(1).abs().sum(1) == 0) & (x.flatten(1).abs().sum(1) != 0)
        calls.append((p, zeroed.float().mean().item()))
        return y

    monkeypatch.setattr(module, "drop_path", recording)
    return calls


@pytest.mark.parametrize("name,blocks", [("cifar_resnet110", 54), ("resnet50", 16)])
def test_stochastic_depth_drops_each_block_at_its_scheduled_rate(name, blocks, monkeypatch):
    rate = 0.5
    torch.manual_seed(0)
    model = archsmith.create_model(name, drop_path_rate=rate).train()
    calls = drop_path_log(model, monkeypatch)
    batch, size = (4000, 8) if name.startswith("cifar") else (1000, 16)
    with torch.no_grad():
        model(torch.randn(batch, 3, size, size))
    assert len(calls) == blocks
    for j, (p, dropped) in enumerate(calls):
        scheduled = rate * j / (blocks - 1)  # timm's rule: 0 at the first block, `rate` at the last
        assert p == pytest.approx(scheduled)
        sigma = math.sqrt(scheduled * (1 - scheduled) / batch)
        assert abs(dropped - scheduled) <= 3 * sigma + 1e-9, (j, dropped, scheduled)


def test_stochastic_depth_is_the_identity_in_eval_and_rescales_survivors_in_training():
    torch.manual_seed(0)
    model = archsmith.create_model("cifar_resnet20", drop_path_rate=0.5)
    plain = archsmith.create_model("cifar_resnet20")
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), plain.eval()(x))
    module = __import__(type(model).__module__, fromlist=["drop_path"])
    branch = torch.ones(10000, 3)
    kept = module.drop_path(branch, 0.25, True)
    assert set(kept[:, 0].unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert kept.mean().item() == pytest.approx(1.0, abs=0.03)  # survivors rescaled: the mean is kept
