"""Property test of the code generator: random architectures whose blocks are instantiated with
varying arguments (so classes are shared, parameters lifted, variants merged) build modules whose
every layer has the attributes the compiler inferred, and whose output has the inferred shape."""
import random

import pytest
import torch

import archsmith
from archsmith.compiler import elaborate_models

BRANCHES = [
    "y = x | conv1: conv2d(out, k, stride=stride, padding=k // 2, bias=false) | bn1: batchnorm2d() | relu: relu()",
    "y = x | conv1: conv2d(width, k + 0, stride=stride, padding=(k - 1) // 2) | relu: relu(inplace=true)",
    "y = x | conv1: conv2d(out, 1) | relu: relu() | conv1b: conv2d(out, 3, stride=stride, padding=1, groups=out // 4)",
]


def block_def(rng, name):
    lines = [f"block {name}(out, stride = 1, k = 3, deep = false) {{",
             "    width = out * 2 // 2",
             "    identity = x",
             "    " + rng.choice(BRANCHES)]
    if rng.random() < 0.5:
        lines += ["    if deep {", "        y = y | conv2: conv2d(out, 3, padding=1) | relu", "    }"]
    if rng.random() < 0.5:
        lines += ["    if stride != 1 or x.channels != out {",
                  "        identity = x | proj: seq { conv2d(out, 1, stride=stride, bias=false); batchnorm2d() }",
                  "    }",
                  "    return y + identity"]
    else:
        lines.append("    return y")
    return "\n".join(lines + ["}"])


def random_spec(rng):
    blocks = [block_def(rng, f"B{i}") for i in range(rng.randint(1, 2))]
    body = ["block Net(num_classes = 10, base = 8) {", "    x = x | stem: conv2d(base, 3, padding=1)"]
    for s in range(rng.randint(1, 3)):
        call = (f"{rng.choice([f'B{i}' for i in range(len(blocks))])}({rng.choice(['base', 'base * 2', '16', '8'])}, "
                f"{rng.choice(['1', '2'])} if i == 0 else 1, k={rng.choice(['1', '3', '5'])}, "
                f"deep={rng.choice(['true', 'false', 'i % 2 == 0'])})")
        n = rng.randint(1, 4)
        if rng.random() < 0.5:
            body.append(f"    x = x | stage{s}: seq {{ for i in range({n}) {{ {call} }} }}")
        else:
            body.append(f"    for i in range({n}) {{ x = x | s{s}b{{i}}: {call} }}")
    body += ["    return x | mean() | fc: linear(num_classes)", "}",
             f"model net = Net() input [3, {rng.choice([16, 24])}, {rng.choice([16, 24])}]"]
    return "\n".join(blocks + body) + "\n"


def as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("seed", range(6))
def test_generated_modules_have_the_inferred_layers_and_shapes(seed):
    rng = random.Random(seed)
    for _ in range(6):
        text = random_spec(rng)
        (model,) = elaborate_models(text)
        module = archsmith.build(text).eval()
        modules = dict(module.named_modules())
        for _, node in model.graph.nodes(data=True):
            a, layer = node["attrs"], modules.get(node["module"])
            if node["op"] == "conv2d":
                assert (layer.in_channels, layer.out_channels, layer.groups) == (
                    a["in_channels"], a["out_channels"], a["groups"]), (node["module"], text)
                assert (layer.kernel_size, layer.stride, layer.padding) == (
                    as_pair(a["kernel_size"]), as_pair(a["stride"]), as_pair(a["padding"])), (node["module"], text)
            elif node["op"] == "batchnorm2d":
                assert layer.num_features == a["num_features"]
            elif node["op"] == "linear":
                assert (layer.in_features, layer.out_features) == (a["in_features"], a["out_features"])
        with torch.no_grad():
            y = module(torch.randn((2,) + model.input_shape))
        assert tuple(y.shape[1:]) == model.output_shape
