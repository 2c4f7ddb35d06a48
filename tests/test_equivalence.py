"""Every bundled ResNet and VGG has torchvision's state_dict keys and, with its weights, its outputs."""
import pytest
import torch

import archsmith

torchvision = pytest.importorskip("torchvision")

MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
          "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]


def randomize_batchnorm(model):
    """Non-trivial BN weights and running statistics, so that a wrong branch cannot hide behind them."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


def relative_error(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@pytest.mark.parametrize("name", MODELS)
def test_matches_torchvision(name):
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


def test_num_classes_override():
    model = archsmith.create_model("resnet18", num_classes=10)
    assert model.fc.out_features == 10
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
