"""Generated models work with what PyTorch users deploy to, for every bundled model's classes: ONNX
(`torch.onnx.export`, run by onnxruntime to the same outputs), the channels_last memory format, and
bfloat16 autocast on the CPU. (Pickling, TorchScript, torch.fx and torch.compile are in
test_modules.py; DDP and SyncBatchNorm in test_distributed.py.)"""
import pytest
import torch

import archsmith
from test_deploy import INPUT_SIZE, relative_error
from test_modules import SAME_CLASSES

MODELS = [n for n in archsmith.list_models() if n not in SAME_CLASSES]


def _model_and_input(name):
    torch.manual_seed(0)
    model = archsmith.create_model(name, num_classes=10).eval()
    size = INPUT_SIZE.get(name, 64)
    return model, torch.randn(2, 3, size, size)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_runs_in_onnxruntime_to_the_same_outputs(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")  # torch.onnx.export's exporter (torch.export based) needs it
    model, x = _model_and_input(name)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"], verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [ours] = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert relative_error(torch.from_numpy(ours), expected) < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_and_bfloat16_autocast_run(name):
    model, x = _model_and_input(name)
    with torch.no_grad():
        expected = model(x)
        last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(last, expected, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    assert relative_error(low.float(), expected) < 0.1  # bfloat16 keeps about 3 significant digits


def test_torch_compile_with_inductor_gives_eager_outputs():
    """`torch.compile`'s default backend generates and compiles C++ for the CPU: slow to build, so one
    model here (test_modules.py compiles every family with `fullgraph=True` through dynamo)."""
    model, x = _model_and_input("cifar_resnet20")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), rtol=1e-4, atol=1e-5)
