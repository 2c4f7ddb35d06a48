"""Networks we do not bundle, written from the docs alone, against their references: the generated
classes called directly at other arguments equal the reference built with those arguments."""
from pathlib import Path

import pytest
import torch
import torchvision

import archsmith

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "classes"


def generated(spec: str) -> dict:
    namespace = {}
    exec(compile(archsmith.compile(str(FIXTURES / spec)), "<generated>", "exec"), namespace)
    return namespace


def assert_equal_with_its_weights(ours, ref):
    """Same state_dict keys and shapes, and with the reference's weights (and batch-norm statistics
    that are not the defaults) the same eval outputs."""
    ours.eval(), ref.eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("width_mult", [1.0, 0.5, 1.4])
def test_mobilenet_v2_class_at_other_widths_equals_torchvision(width_mult):
    namespace = generated("mobilenetv2.arch")
    classes = [k for k, v in namespace.items() if isinstance(v, type) and issubclass(v, torch.nn.Module)]
    assert sorted(classes) == ["InvertedResidual", "MobileNetV2"]  # one class per block definition
    assert_equal_with_its_weights(namespace["MobileNetV2"](width_mult=width_mult, num_classes=10),
                                  torchvision.models.mobilenet_v2(width_mult=width_mult, num_classes=10))


@pytest.mark.parametrize("kwargs", [{}, dict(growth_rate=16, block_config=[2, 3, 4, 2], num_init_features=32),
                                    dict(growth_rate=12, block_config=[3, 1], num_init_features=24, bn_size=2)])
def test_densenet_class_at_other_arguments_equals_torchvision(kwargs):
    assert_equal_with_its_weights(generated("densenet.arch")["DenseNet"](num_classes=10, **kwargs),
                                  torchvision.models.DenseNet(num_classes=10, **kwargs))


@pytest.mark.parametrize("dim, layer_scale", [(16, 1e-6), (8, 0.5), (24, 1.0)])
def test_convnext_block_equals_torchvision_cnblock(dim, layer_scale):
    from torchvision.models.convnext import CNBlock
    ours = generated("convnext_block.arch")["CNBlock"](dim, layer_scale, 0.1).eval()
    ref = CNBlock(dim, layer_scale, 0.1).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    with torch.no_grad():
        for t in ref.state_dict().values():
            t.copy_(torch.randn(t.shape))
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, dim, 14, 14)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("setting", [
    [(96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3)],  # convnext_tiny
    [(32, 64, 1), (64, None, 2)],
])
def test_convnext_with_a_stage_table_of_records_equals_torchvision(setting):
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    table = [{"input_channels": i, "out_channels": o, "num_layers": n} for i, o, n in setting]
    ours = generated("convnext.arch")["ConvNeXt"](table, stochastic_depth_prob=0.1, num_classes=10).eval()
    ref = ConvNeXt([CNBlockConfig(i, o, n) for i, o, n in setting], stochastic_depth_prob=0.1, num_classes=10).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    with torch.no_grad():
        for t in ref.state_dict().values():
            t.copy_(torch.randn(t.shape) * 0.1)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)
