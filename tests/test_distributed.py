"""Generated models under PyTorch's distributed engine: DistributedDataParallel with two processes
(Gloo, CPU) trains to the weights one process reaches on the same global batches, with
`find_unused_parameters=False`, auxiliary heads included; SyncBatchNorm conversion keeps every
bundled model's keys and eval function; the torchrun example runs."""
import copy
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import archsmith
from test_deploy import INPUT_SIZE  # the models that 32x32 is too small for, too
from test_modules import SAME_CLASSES

ROOT = Path(__file__).resolve().parent.parent
WORLD = 2

# A residual network with group norm (whose statistics are per sample, so that the global batch
# split in two normalizes as it does whole), drop-path (random, hence off here) and a learned scale.
SPEC = """
block Unit(width, drop = 0.0) {
    y = x | conv1: conv2d(width, 3, padding=1) | gn1: groupnorm(4) | relu
    y = y | conv2: conv2d(width, 3, padding=1) | gn2: groupnorm(4)
    return relu(x + (y | drop_path(drop)))
}
block Net(width = 8, num_classes = 5) {
    x = x | stem: conv2d(width, 3, padding=1) | relu
    x = x | units: seq { Unit(width); Unit(width) }
    return x | mean() | fc: linear(num_classes)
}
model net = Net() input [3, 8, 8]
"""
STEPS, GLOBAL_BATCH = 3, 8


def _batches(input_shape, num_classes):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(GLOBAL_BATCH, *input_shape, generator=g),
             torch.randint(0, num_classes, (GLOBAL_BATCH,), generator=g)) for _ in range(STEPS)]


def _loss(output, y):
    """Cross-entropy of the logits, and of each auxiliary head's (GoogLeNet's in training), as
    torchvision's recipe weighs them: every parameter takes part in every step."""
    if isinstance(output, torch.Tensor):
        return F.cross_entropy(output, y)
    main, *aux = output
    return F.cross_entropy(main, y) + 0.3 * sum(F.cross_entropy(a, y) for a in aux)


def _model(spec, train_mode):
    torch.manual_seed(0)
    model = archsmith.create_model(spec) if spec in archsmith.list_models() else archsmith.build(spec)
    model.train(train_mode == "train")
    return model


def _train(model, batches, rank=0, world=1):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    share = GLOBAL_BATCH // world
    for x, y in batches:
        loss = _loss(model(x[rank * share:(rank + 1) * share]), y[rank * share:(rank + 1) * share])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _worker(rank, port, spec, train_mode, input_shape, num_classes, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = _model(spec, train_mode)
        _train(DistributedDataParallel(model, find_unused_parameters=False), _batches(input_shape, num_classes),
               rank, WORLD)
        torch.save(model.state_dict(), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("spec,train_mode,input_shape,num_classes", [
    (SPEC, "train", (3, 8, 8), 5),
    # batchnorm normalizes each process's part of the batch on its own in training (SyncBatchNorm,
    # which would not, runs only on GPUs): in eval mode, as when fine-tuning, it is the same function
    ("resnet18", "eval", (3, 32, 32), 1000),
])
def test_ddp_with_two_processes_trains_to_the_weights_of_one(spec, train_mode, input_shape, num_classes, tmp_path):
    out = tmp_path / "weights"
    mp.spawn(_worker, args=(_free_port(), spec, train_mode, input_shape, num_classes, str(out)), nprocs=WORLD)
    single = _model(spec, train_mode)
    _train(single, _batches(input_shape, num_classes))
    expected = single.state_dict()
    for rank in range(WORLD):
        trained = torch.load(f"{out}.{rank}")
        assert trained.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(trained[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.equal(expected["fc.weight"], _model(spec, train_mode).state_dict()["fc.weight"])  # it trained


def test_auxiliary_heads_in_the_loss_need_no_unused_parameter_search(tmp_path):
    """GoogLeNet returns its auxiliary heads' logits in training; a loss over all of them uses every
    parameter, so DDP runs with `find_unused_parameters=False` (a loss of the main logits alone would
    need `find_unused_parameters=True`, or the model built with `aux_logits=False`)."""
    out = tmp_path / "weights"
    mp.spawn(_worker, args=(_free_port(), "googlenet", "train", (3, 64, 64), 1000, str(out)), nprocs=WORLD)
    first, second = (torch.load(f"{out}.{rank}") for rank in range(WORLD))
    assert "aux1.fc2.weight" in first
    for key in first:  # DDP keeps the replicas' parameters equal
        if not key.endswith(("running_mean", "running_var")):  # batch statistics are each process's own
            torch.testing.assert_close(first[key], second[key], msg=key)


@pytest.mark.parametrize("name", [n for n in archsmith.list_models() if n not in SAME_CLASSES])
def test_sync_batchnorm_conversion_keeps_keys_and_function(name):
    model = archsmith.create_model(name, num_classes=10).eval()
    norms = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not norms:
        pytest.skip(f"{name} has no batchnorm")
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules()) == norms
    assert list(synced.state_dict()) == list(model.state_dict())
    size = INPUT_SIZE.get(name, 32)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(synced(x), model(x))


def test_the_torchrun_example_trains_and_saves_a_checkpoint_the_class_loads(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "digits.pt"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(ROOT / "examples" / "train_ddp.py"), "--epochs", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch 1/1: loss" in done.stdout and "2 processes" in done.stdout
    model = archsmith.create_model(str(ROOT / "examples" / "digits.arch"), weights=str(out))
    assert torch.equal(model.state_dict()["fc.weight"], torch.load(out)["fc.weight"])
