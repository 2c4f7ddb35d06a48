"""The examples run: a spec trained on scikit-learn's digits (on a short budget), a torchvision
checkpoint loaded into a generated model, and a diagram and summary from Python and in a notebook."""
import ast
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import archsmith

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_digits_spec_trains_and_its_checkpoint_loads_back(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "digits.pt"
    accuracy = example("train_digits").main(["--epochs", "3", "--out", str(out)])
    assert accuracy >= 0.97
    assert "test accuracy" in capsys.readouterr().out
    model = archsmith.create_model(str(EXAMPLES / "digits.arch"), weights=str(out))
    assert torch.equal(model.state_dict()["fc.weight"], torch.load(out)["fc.weight"])


def test_a_torchvision_checkpoint_loads_unmodified():
    pytest.importorskip("torchvision")
    assert example("load_torchvision_weights").main(["resnet18"]) == 0.0


def test_diagram_and_summary_from_python(tmp_path, capsys):
    out = tmp_path / "resnet18.svg"
    summary = example("diagram_and_summary").main(["resnet18", "--out", str(out)])
    assert summary.params == 11_689_512
    assert out.read_text().lstrip().startswith("<?xml") and "resnet18" in capsys.readouterr().out


def test_the_notebook_runs_and_its_diagrams_display(tmp_path):
    """Each code cell runs in order, as Jupyter would; a cell ending in a diagram displays SVG."""
    notebook = json.loads((EXAMPLES / "diagram_and_summary.ipynb").read_text())
    namespace, shown = {}, []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        last = tree.body.pop() if isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<cell>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
            if hasattr(value, "_repr_svg_"):
                shown.append(value._repr_svg_())
    assert len(shown) == 2 and all(svg.lstrip().startswith("<?xml") for svg in shown)
    assert namespace["summary"].macs == 4_089_184_256
