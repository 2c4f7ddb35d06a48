"""The examples run: a spec trained on scikit-learn's digits (on a short budget), and a torchvision
checkpoint loaded into a generated model."""
import importlib.util
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
