"""Every primitive against torch: a one-op block, compiled and run, equals the torch call written by
hand here, with the module's own (randomized) weights; its state_dict is what torch's module has; and
its shape rule agrees with the shape torch produces."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archsmith
from archsmith.compiler import elaborate_models
from archsmith.passes import parameter_count
from archsmith.primitives import PRIMITIVES

# id: (block body, input shape, reference(module, x), the torch module that has the same state_dict or None)
CASES = {
    "conv2d": ("return x | c: conv2d(8, 3, stride=2, padding=1, groups=2, bias=false)", [4, 9, 9],
               lambda m, x: F.conv2d(x, m.c.weight, None, 2, 1, 1, 2), lambda: nn.Conv2d(4, 8, 3, groups=2, bias=False)),
    "conv1d": ("return x | c: conv1d(6, 3, dilation=2)", [4, 20],
               lambda m, x: F.conv1d(x, m.c.weight, m.c.bias, dilation=2), lambda: nn.Conv1d(4, 6, 3, dilation=2)),
    "maxpool2d": ("return x | maxpool2d(3, stride=2, padding=1, ceil_mode=true)", [3, 10, 10],
                  lambda m, x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), None),
    "avgpool2d": ("return x | avgpool2d(3, stride=2, padding=1, count_include_pad=false)", [3, 10, 10],
                  lambda m, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), None),
    "maxpool1d": ("return x | maxpool1d(2)", [3, 10], lambda m, x: F.max_pool1d(x, 2), None),
    "avgpool1d": ("return x | avgpool1d(3, stride=1, padding=1, ceil_mode=true)", [3, 10],
                  lambda m, x: F.avg_pool1d(x, 3, 1, 1, ceil_mode=True), None),
    "adaptive_avgpool2d": ("return x | adaptive_avgpool2d([2, 3])", [3, 8, 9],
                           lambda m, x: F.adaptive_avg_pool2d(x, (2, 3)), None),
    "adaptive_maxpool2d": ("return x | adaptive_maxpool2d(1)", [3, 8, 9], lambda m, x: F.adaptive_max_pool2d(x, 1), None),
    "adaptive_avgpool1d": ("return x | adaptive_avgpool1d(4)", [3, 8], lambda m, x: F.adaptive_avg_pool1d(x, 4), None),
    "adaptive_maxpool1d": ("return x | adaptive_maxpool1d(2)", [3, 8], lambda m, x: F.adaptive_max_pool1d(x, 2), None),
    "batchnorm2d": ("return x | bn: batchnorm2d(eps=1e-3)", [4, 5, 5],
                    lambda m, x: F.batch_norm(x, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias, eps=1e-3),
                    lambda: nn.BatchNorm2d(4)),
    "batchnorm1d": ("return x | bn: batchnorm1d()", [4, 7],
                    lambda m, x: F.batch_norm(x, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias),
                    lambda: nn.BatchNorm1d(4)),
    "layernorm": ("return x | transpose(1, 2) | ln: layernorm(eps=1e-6)", [4, 7],
                  lambda m, x: F.layer_norm(x.transpose(1, 2), (4,), m.ln.weight, m.ln.bias, 1e-6), lambda: nn.LayerNorm(4)),
    "layernorm2d": ("return x | ln: layernorm2d(eps=1e-6)", [4, 3, 5],
                    lambda m, x: F.layer_norm(x.permute(0, 2, 3, 1), (4,), m.ln.weight, m.ln.bias, 1e-6).permute(0, 3, 1, 2),
                    lambda: nn.LayerNorm(4)),
    "groupnorm": ("return x | gn: groupnorm(2)", [4, 3, 3],
                  lambda m, x: F.group_norm(x, 2, m.gn.weight, m.gn.bias), lambda: nn.GroupNorm(2, 4)),
    "instancenorm2d": ("return x | inorm: instancenorm2d(affine=true)", [4, 3, 3],
                       lambda m, x: F.instance_norm(x, weight=m.inorm.weight, bias=m.inorm.bias),
                       lambda: nn.InstanceNorm2d(4, affine=True)),
    "localresponsenorm": ("return x | localresponsenorm(3, alpha=1e-3)", [6, 3, 3],
                          lambda m, x: F.local_response_norm(x, 3, alpha=1e-3), None),
    "relu": ("return x | relu", [5], lambda m, x: torch.clamp(x, min=0), None),
    "relu6": ("return x * 4 | relu6", [5], lambda m, x: torch.clamp(x * 4, 0, 6), None),
    "silu": ("return x | silu", [5], lambda m, x: x * torch.sigmoid(x), None),
    "hardswish": ("return x | hardswish", [5], lambda m, x: F.hardswish(x), None),
    "hardsigmoid": ("return x | hardsigmoid", [5], lambda m, x: F.hardsigmoid(x), None),
    "leaky_relu": ("return x | leaky_relu(0.2)", [5], lambda m, x: torch.where(x > 0, x, 0.2 * x), None),
    "elu": ("return x | elu(alpha=0.5)", [5], lambda m, x: F.elu(x, 0.5), None),
    "selu": ("return x | selu", [5], lambda m, x: torch.selu(x), None),
    "mish": ("return x | mish", [5], lambda m, x: x * torch.tanh(F.softplus(x)), None),
    "sigmoid": ("return x | sigmoid", [5], lambda m, x: 1 / (1 + torch.exp(-x)), None),
    "tanh": ("return x | tanh", [5], lambda m, x: torch.tanh(x), None),
    "gelu": ("return x | gelu(approximate=\"tanh\")", [5], lambda m, x: F.gelu(x, approximate="tanh"), None),
    "softplus": ("return x | softplus(beta=2.0)", [5], lambda m, x: F.softplus(x, 2.0), None),
    "prelu": ("return x | act: prelu(4)", [4, 3], lambda m, x: torch.where(x > 0, x, m.act.weight[:, None] * x),
              lambda: nn.PReLU(4)),
    "linear": ("return x | fc: linear(6)", [3, 4], lambda m, x: x @ m.fc.weight.T + m.fc.bias, lambda: nn.Linear(4, 6)),
    "dropout": ("return x | dropout(0.3)", [5], lambda m, x: x, None),
    "drop_path": ("return x | drop_path(0.3)", [5], lambda m, x: x, None),
    "identity": ("return x | identity", [5], lambda m, x: x, None),
    "flatten": ("return x | flatten(1, 2)", [2, 3, 4], lambda m, x: x.reshape(-1, 6, 4), None),
    "unflatten": ("return x | unflatten(1, [2, -1])", [6, 4], lambda m, x: x.reshape(-1, 2, 3, 4), None),
    "reshape": ("return x | reshape([4, -1])", [2, 3, 4], lambda m, x: x.reshape(x.shape[0], 4, 6), None),
    "permute": ("return x | permute([0, 2, 3, 1])", [2, 3, 4], lambda m, x: x.permute(0, 2, 3, 1), None),
    "transpose": ("return x | transpose(-1, 1)", [2, 3, 4], lambda m, x: x.transpose(1, 3), None),
    "squeeze": ("return x | squeeze(2)", [2, 1, 4], lambda m, x: x[:, :, 0], None),
    "unsqueeze": ("return x | unsqueeze(-1)", [2, 4], lambda m, x: x[..., None], None),
    "channel_shuffle": ("return x | channel_shuffle(2)", [6, 2, 2],
                        lambda m, x: x.reshape(-1, 2, 3, 2, 2).transpose(1, 2).reshape(-1, 6, 2, 2), None),
    "pixel_shuffle": ("return x | pixel_shuffle(2)", [8, 2, 3], lambda m, x: F.pixel_shuffle(x, 2), None),
    "pixel_unshuffle": ("return x | pixel_unshuffle(2)", [2, 4, 6], lambda m, x: F.pixel_unshuffle(x, 2), None),
    "upsample": ("return x | upsample(scale_factor=2.0, mode=\"bilinear\", align_corners=false)", [2, 3, 4],
                 lambda m, x: F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), None),
    "pad": ("return x | pad([1, 2, 0, 1], value=0.5)", [2, 3, 4], lambda m, x: F.pad(x, (1, 2, 0, 1), value=0.5), None),
    "add": ("return x + 1 + (x | exp)", [2, 3], lambda m, x: x + 1 + torch.exp(x), None),
    "sub": ("return 1 - x - x * 2", [2, 3], lambda m, x: 1 - x - x * 2, None),
    "mul": ("return mul(x, x, x) * 0.5", [2, 3], lambda m, x: x * x * x * 0.5, None),
    "div": ("return x / (abs(x) + 1) / 2", [2, 3], lambda m, x: x / (x.abs() + 1) / 2, None),
    "matmul": ("param w = normal([4, 5])\n    return x @ (x | transpose(1, 2)) @ x @ w", [3, 4],
               lambda m, x: x @ x.transpose(1, 2) @ x @ m.w, None),
    "neg": ("return -x - -(x * 2)", [2, 3], lambda m, x: -x + x * 2, None),
    "pow": ("return x ** 2 + -x ** 3", [2, 3], lambda m, x: x ** 2 - x ** 3, None),
    "sqrt": ("return sqrt(abs(x))", [2, 3], lambda m, x: x.abs().sqrt(), None),
    "rsqrt": ("return rsqrt(x * x + 1)", [2, 3], lambda m, x: 1 / torch.sqrt(x * x + 1), None),
    "exp": ("return exp(x)", [2, 3], lambda m, x: torch.exp(x), None),
    "log": ("return log(x * x + 1)", [2, 3], lambda m, x: torch.log(x * x + 1), None),
    "abs": ("return abs(x)", [2, 3], lambda m, x: x.abs(), None),
    "mean": ("return mean(x, -1, keepdim=true)", [2, 3, 4], lambda m, x: x.mean(-1, keepdim=True), None),
    "sum": ("return sum(x, [1, 3])", [2, 3, 4], lambda m, x: x.sum((1, 3)), None),
    "amax": ("return amax(x, 2)", [2, 3, 4], lambda m, x: x.amax(2), None),
    "softmax": ("return softmax(x, -1)", [2, 3], lambda m, x: torch.softmax(x, -1), None),
    "log_softmax": ("return x | log_softmax", [2, 3], lambda m, x: torch.log_softmax(x, 1), None),
    "concat": ("return concat(x, x * 2, dim=-1)", [2, 3], lambda m, x: torch.cat([x, x * 2], -1), None),
    "stack": ("return stack(x, x * 2, dim=-1)", [2, 3], lambda m, x: torch.stack([x, x * 2], -1), None),
    "split": ("p = split(x, [1, 2], dim=2)\n    return p[1]", [2, 3], lambda m, x: x[:, :, 1:], None),
    "chunk": ("p = chunk(x, 3, dim=-1)\n    return p[2]", [2, 3], lambda m, x: x[:, :, 2:], None),
    "slice": ("return slice(x, 1, 2)", [3, 2], lambda m, x: x[:, 1:2], None),
}


def test_every_primitive_is_tested():
    assert sorted(CASES) == sorted(PRIMITIVES)


def _randomize(module):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "var" in name else torch.randn(t.shape, generator=g))


@pytest.mark.parametrize("op", sorted(CASES))
def test_primitive_equals_torch(op):
    body, shape, reference, torch_module = CASES[op]
    spec = f"block Op() {{\n    {body}\n}}\nmodel op = Op() input {shape}\n"
    module = archsmith.build(spec).eval()
    _randomize(module)
    x = torch.randn([2] + shape, generator=torch.Generator().manual_seed(0))
    if op in ("log", "sqrt", "rsqrt"):
        x = x.abs() + 0.1
    with torch.no_grad():
        out, want = module(x), reference(module, x)
    torch.testing.assert_close(out, want)
    (model,) = elaborate_models(spec)
    assert tuple(out.shape[1:]) == tuple(model.output_shape)
    if torch_module is not None:
        (layer,) = [m for m in module.children()]
        assert {k: v.shape for k, v in layer.state_dict().items()} == \
               {k: v.shape for k, v in torch_module().state_dict().items()}
    assert parameter_count(model.graph) == sum(p.numel() for p in module.parameters())


def test_free_parameters_and_buffers_are_state_under_their_names():
    spec = """
block LayerScale(dim, init = 1e-6) {
    param gamma = full([dim, 1, 1], init)
    param beta = trunc_normal([dim, 1, 1], std=0.02)
    buffer steps = zeros(1)
    return x * gamma + beta
}
block Net() {
    return x | ls: LayerScale(x.channels)
}
model net = Net() input [4, 3, 3]
"""
    torch.manual_seed(0)
    module = archsmith.build(spec).eval()
    state = module.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "ls.gamma": (4, 1, 1), "ls.beta": (4, 1, 1), "ls.steps": (1,)}
    assert torch.equal(state["ls.gamma"], torch.full((4, 1, 1), 1e-6))
    assert 0 < state["ls.beta"].abs().max() < 0.1  # drawn with std 0.02
    assert [n for n, _ in module.named_parameters()] == ["ls.gamma", "ls.beta"]
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(module(x), x * state["ls.gamma"] + state["ls.beta"])
    (model,) = elaborate_models(spec)
    assert parameter_count(model.graph) == 8


def test_a_parameter_broadcasts_over_the_batch_as_in_torch():
    spec = """
block Tokens() {
    t = x | flatten(2) | transpose(1, 2)
    param pos = normal([1, 6, 4], std=0.5)
    return t + pos
}
model tokens = Tokens() input [4, 2, 3]
"""
    torch.manual_seed(0)
    module = archsmith.build(spec).eval()
    x = torch.randn(3, 4, 2, 3)
    torch.testing.assert_close(module(x), x.flatten(2).transpose(1, 2) + module.pos)
    assert 0.2 < float(module.pos.detach().std()) < 0.9
