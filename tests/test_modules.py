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


def _check(m, x):
    m.eval()
    with torch.no_grad():
        y = m(x)
        assert torch.equal(pickle.loads(pickle.dumps(m))(x), y)
        assert torch.equal(copy.deepcopy(m)(x), y)
        if "getattr(self, f" not in inspect.getsource(inspect.getmodule(m)):
            # TorchScript cannot look a layer up by a computed name: a loop over named layers
            torch.testing.assert_close(torch.jit.script(m)(x), y)
        torch.testing.assert_close(torch.fx.symbolic_trace(m)(x), y)
        torch._dynamo.reset()
        assert torch._dynamo.explain(m)(x).graph_break_count == 0
        torch.testing.assert_close(torch.compile(m, fullgraph=True, backend="eager")(x), y)


@pytest.mark.parametrize("name", archsmith.list_models())
def test_bundled_models_are_ordinary_modules(name):
    m = archsmith.create_model(name, num_classes=10)
    assert type(m).__module__.startswith("archsmith.generated.")
    assert "def forward(self, x: Tensor) -> Tensor:" in inspect.getsource(type(m))
    _check(m, torch.randn(1, 3, 64, 64))


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
