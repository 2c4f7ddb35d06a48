"""Every bundled DenseNet has torchvision's state_dict keys and, with its weights, its outputs; with
`memory_efficient` the concatenation and bottleneck of each dense layer are recomputed in the backward
pass, giving the same outputs and gradients."""
import ast
from pathlib import Path

import pytest
import torch
import torchvision

import archsmith

from test_equivalence import randomize_batchnorm, relative_error

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "specs" / "densenet.arch")

# name -> (parameters, state_dict entries, GMACs at 224x224), from shared/REFERENCE.md
MODELS = {
    "densenet121": (7_978_856, 727, 2.834),
    "densenet161": (28_681_000, 967, 7.728),
    "densenet169": (14_149_480, 1015, 3.360),
    "densenet201": (20_013_928, 1207, 4.291),
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
def test_matches_torchvision(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    ours = archsmith.create_model(name)
    params, entries, _ = MODELS[name]
    assert sum(p.numel() for p in ours.parameters()) == params
    assert len(ours.state_dict()) == entries
    assert "features.denseblock1.denselayer1.norm1.weight" in ours.state_dict()
    assert_matches(ours, reference, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("name", MODELS)
def test_published_figures_at_compile_time(name):
    from archsmith.compiler import elaborate_models
    from archsmith.passes import mac_count, parameter_count, state_dict_size
    (model,) = elaborate_models(name, input_shape=[3, 224, 224])
    params, entries, gmacs = MODELS[name]
    assert parameter_count(model.graph) == params
    assert state_dict_size(model.graph) == entries
    assert mac_count(model.graph) / 1e9 == pytest.approx(gmacs, abs=5e-4)


def _train_step(model, x):
    """Outputs, parameter gradients and input gradient of one training-mode forward and backward."""
    model.train()
    x = x.clone().requires_grad_(True)
    y = model(x)
    (y * torch.linspace(-1, 1, y.shape[1])).square().sum().backward()
    return y.detach(), {k: p.grad for k, p in model.named_parameters()}, x.grad


def test_memory_efficient_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = archsmith.create_model("densenet121", num_classes=10)
    efficient = archsmith.create_model("densenet121", num_classes=10, memory_efficient=True)
    randomize_batchnorm(plain)
    assert list(efficient.state_dict()) == list(plain.state_dict())  # the checkpoint is the same either way
    efficient.load_state_dict(plain.state_dict())
    reference = torchvision.models.densenet121(num_classes=10, memory_efficient=True)
    reference.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for model in (plain, efficient):
        model.eval()
    with torch.no_grad():
        assert torch.equal(efficient(x), plain(x))
    y, grads, x_grad = _train_step(plain, x)
    for model in (efficient, reference):
        y2, grads2, x_grad2 = _train_step(model, x)
        assert torch.equal(y2, y)
        assert grads2.keys() == grads.keys()
        assert all(torch.allclose(grads2[k], grads[k], rtol=1e-5, atol=1e-7) for k in grads)
        assert torch.allclose(x_grad2, x_grad, rtol=1e-5, atol=1e-7)
    # norm1 runs again in the backward pass, as in torchvision: the same running statistics as its
    ours, theirs = efficient.state_dict(), reference.state_dict()
    assert all(torch.allclose(ours[k], theirs[k]) for k in ours if "running" in k)


def _norm1_calls(model, x, grad: bool) -> int:
    """How many times the first dense layer's norm1 runs in a forward (and backward, with `grad`)."""
    calls = []
    layer = model.features.denseblock1.denselayer1
    handle = layer.norm1.register_forward_hook(lambda *_: calls.append(1))
    try:
        if grad:
            model(x).sum().backward()
        else:
            with torch.no_grad():
                model(x)
    finally:
        handle.remove()
    return len(calls)


def test_memory_efficient_recomputes_the_bottleneck_in_backward_only_where_gradients_flow():
    x = torch.randn(2, 3, 32, 32)
    small = {"block_config": [2, 2, 2, 2], "num_classes": 10}
    efficient = archsmith.create_model("densenet121", memory_efficient=True, **small).train()
    plain = archsmith.create_model("densenet121", **small).train()
    assert _norm1_calls(efficient, x, grad=True) == 2  # once forward, once more in backward
    assert _norm1_calls(plain, x, grad=True) == 1
    assert _norm1_calls(efficient, x, grad=False) == 1  # nothing to recompute for
    layer = efficient.features.denseblock1.denselayer1
    assert layer.memory_efficient and not plain.features.denseblock1.denselayer1.memory_efficient


def test_other_arguments_and_dropout_after_each_dense_layer_are_torchvisions():
    torch.manual_seed(0)
    reference = torchvision.models.DenseNet(growth_rate=12, block_config=(3, 4, 5), num_init_features=24,
                                            bn_size=2, drop_rate=0.3, num_classes=10)
    ours = archsmith.create_model("densenet121", growth_rate=12, block_config=[3, 4, 5], num_init_features=24,
                                  bn_size=2, drop_rate=0.3, num_classes=10)
    assert_matches(ours, reference, torch.randn(2, 3, 32, 32))
    assert ours.features.denseblock2.denselayer4.drop_rate == 0.3
    x = torch.randn(2, 3, 32, 32)
    outputs = []
    for model in (reference, ours):
        model.train()
        torch.manual_seed(1)
        with torch.no_grad():
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])


def test_dense_layers_see_every_earlier_feature_map():
    model = archsmith.create_model("densenet161")
    block = model.features.denseblock3
    widths = [getattr(block, f"denselayer{i + 1}").norm1.num_features for i in range(36)]
    first = model.features.transition2.conv.out_channels
    assert widths == [first + 48 * i for i in range(36)]
    assert model.features.transition3.conv.out_channels == (first + 48 * 36) // 2


def test_num_classes_override():
    model = archsmith.create_model("densenet169", num_classes=10)
    assert model.classifier.out_features == 10
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_generated_source_reads_like_torchvisions():
    source = archsmith.compile(SPEC)
    tree = ast.parse(source)
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == \
        ["DenseLayer", "DenseBlock", "Transition", "DenseNet"]  # one per block, every model
    assert "from torch.utils.checkpoint import checkpoint" in source
    assert "    def bn_function(self, x: list[Tensor]) -> Tensor:\n" \
           '        """Recomputed in the backward pass where `memory_efficient` holds."""\n' \
           "        y = torch.cat(x, 1)\n" in source
    assert "    def forward(self, x: list[Tensor]) -> Tensor:\n" \
           "        if self.memory_efficient and any(t.requires_grad for t in x):\n" \
           "            y = checkpoint(self.bn_function, x, use_reentrant=False)\n" \
           "        else:\n" \
           "            y = self.bn_function(x)\n" in source
    assert '            y = getattr(self, f"denselayer{i + 1}")(features)\n' in source
    assert "def densenet161(*, growth_rate=48, num_init_features=96, **kwargs) -> DenseNet:" in source
    assert "return DenseNet(block_config=[6, 12, 36, 24], growth_rate=growth_rate, num_init_features=" \
        "num_init_features, **kwargs)" in " ".join(source.split())
    r121 = archsmith.compile(SPEC, model="densenet121")
    r201 = archsmith.compile(SPEC, model="densenet201")
    def classes(source):  # all but the factory, whose signature lists the model's own arguments
        return source[:source.rindex("\n\n\ndef ")]
    assert len(classes(r201).splitlines()) == len(classes(r121).splitlines())
