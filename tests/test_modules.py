"""Models from `create_model`/`build` are ordinary modules: their classes import by name, so they
pickle, deepcopy, `torch.save` whole and load in a fresh process, and `torch.jit.script`,
`torch.fx.symbolic_trace` and `torch.compile(fullgraph=True)` (with no graph break) take them."""
import copy
import inspect
import pickle
import subprocess
import sys

import pytest
import torch
import torch._dynamo

import archsmith
import test_constructs as constructs

CONSTRUCTS = [(constructs.STAGES, "seq_stage"), (constructs.STAGES, "loop_stage"), (constructs.BRANCHES, None),
              (constructs.GATES, None), (constructs.DENSE, "dense"), (constructs.RESIDUAL, "two")]


def _check(m, x, script=True):
    m.eval()
    with torch.no_grad():
        y = m(x)
        assert torch.equal(pickle.loads(pickle.dumps(m))(x), y)
        assert torch.equal(copy.deepcopy(m)(x), y)
        if script and "getattr(self, f" not in inspect.getsource(inspect.getmodule(m)):
            # TorchScript cannot look a layer up by a computed name: a loop over named layers
            torch.testing.assert_close(torch.jit.script(m)(x), y)
        torch.testing.assert_close(torch.fx.symbolic_trace(m)(x), y)
        torch._dynamo.reset()
        assert torch._dynamo.explain(m)(x).graph_break_count == 0
        torch.testing.assert_close(torch.compile(m, fullgraph=True, backend="eager")(x), y)


# A model whose generated classes are another's, at other depths, widths, groups or scales (checked
# below), is that one's code: its own minutes of scripting, compiling and exporting would test nothing
# more. Each family is tested through its smallest member (VGG's with batchnorm).
_FAMILIES = [
    ["cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56", "cifar_resnet110", "cifar_resnet1202"],
    ["densenet121", "densenet161", "densenet169", "densenet201"],
    ["dpn68", "dpn68b", "dpn92", "dpn98", "dpn107", "dpn131"],
    [f"efficientnet_b{i}" for i in range(8)],
    ["preact_resnet164", "preact_resnet1001"],
    ["repvgg_a0"] + [f"repvgg_{v}" for v in ("a1", "a2", "b0", "b1", "b1g4", "b2", "b2g4", "b3", "b3g4")],
    ["resnest14d", "resnest26d", "resnest50d_1s4x24d", "resnest50d", "resnest50d_4s2x40d", "resnest101e",
     "resnest200e", "resnest269e"],
    ["resnet18", "resnet34"],
    ["resnet50", "resnext50_32x4d", "wide_resnet50_2", "resnet101", "resnext101_32x8d", "resnext101_64x4d",
     "wide_resnet101_2", "resnet152"],
    ["resnetv2_50", "resnetv2_101"],
    ["seresnet50", "seresnet101"],
    ["vgg11_bn", "vgg11", "vgg13", "vgg16", "vgg13_bn", "vgg19", "vgg16_bn", "vgg19_bn"],
    ["wrn16_4", "wrn16_8", "wrn22_8", "wrn28_10", "wrn40_4"],
]
SAME_CLASSES = {name: family[0] for family in _FAMILIES for name in family[1:]}
# The smallest input a model takes where 64x64 is too small (Inception v3's auxiliary head needs 299).
INPUT_SIZE = {"inception_v3": 299, "inception_v4": 75, "inception_resnet_v2": 75}


@pytest.mark.parametrize("name", [n for n in archsmith.list_models() if n not in SAME_CLASSES])
def test_bundled_models_are_ordinary_modules(name):
    m = archsmith.create_model(name, num_classes=10)
    assert type(m).__module__.startswith("archsmith.generated.")
    source = inspect.getsource(type(m))
    training_outputs = "-> Union[Tensor, tuple[" in source  # a tuple in training: TorchScript cannot type it
    assert training_outputs or "def forward(self, x: Tensor) -> Tensor:" in source
    size = INPUT_SIZE.get(name, 64)
    _check(m, torch.randn(1, 3, size, size), script=not training_outputs)


@pytest.mark.parametrize("name,sibling", sorted(SAME_CLASSES.items()))
def test_a_model_left_out_above_is_its_siblings_classes(name, sibling):
    def classes(model):
        source = archsmith.compile(model)
        return source[source.index("\n\n\n"):source.rindex(f"\n\n\ndef {model}(")]
    assert classes(name) == classes(sibling)


@pytest.mark.parametrize("spec,model", CONSTRUCTS)
def test_construct_models_are_ordinary_modules(spec, model):
    m = archsmith.build(spec, model) if model else None
    if m is None:
        from archsmith.compiler import elaborate_models
        model = elaborate_models(spec)[0].name
        m = archsmith.build(spec, model)
    from archsmith.compiler import elaborate_models
    shape = elaborate_models(spec, model)[0].input_shape
    _check(m, torch.randn(2, *shape))


def test_saved_whole_and_loaded_in_a_fresh_process(tmp_path):
    models = {name: archsmith.create_model(name, num_classes=10).eval() for name in ("resnet18", "resnet50")}
    models["stages"] = archsmith.build(constructs.STAGES, "loop_stage").eval()
    x = {"resnet18": torch.randn(1, 3, 32, 32), "resnet50": torch.randn(1, 3, 32, 32),
         "stages": torch.randn(1, 8, 16, 16)}
    for name, m in models.items():
        torch.save({"model": m, "x": x[name], "y": m(x[name]).detach()}, tmp_path / f"{name}.pt")
    code = (
        "import sys, torch\n"
        "for name in sys.argv[1:]:\n"
        "    saved = torch.load(name, weights_only=False)\n"
        "    m = saved['model'].eval()\n"
        "    assert type(m).__module__.startswith('archsmith.generated.'), type(m).__module__\n"
        "    with torch.no_grad():\n"
        "        torch.testing.assert_close(m(saved['x']), saved['y'])\n"
        "print('loaded', len(sys.argv) - 1)\n")
    files = [str(tmp_path / f"{name}.pt") for name in models]
    proc = subprocess.run([sys.executable, "-c", code, *files], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "loaded 3"
