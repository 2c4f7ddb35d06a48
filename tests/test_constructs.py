"""Graph constructs of the language, checked numerically against hand-written torch.

Each test compiles a small spec, builds the generated module, and compares its output with the same
function written directly with torch.nn.functional over the module's own weights (eval mode, fixed
seeds, small inputs). Also: the generated source is deterministic, within and across processes."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archsmith

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers

def make(spec: str, model: str = None, seed: int = 0, **params) -> nn.Module:
    """Build the module, give every batch norm non-trivial statistics, and put it in eval mode."""
    torch.manual_seed(seed)
    m = archsmith.build(spec, model, **params)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.copy_(torch.randn_like(mod.running_mean) * 0.1)
                mod.running_var.copy_(torch.rand_like(mod.running_var) + 0.5)
                mod.weight.copy_(torch.randn_like(mod.weight))
                mod.bias.copy_(torch.randn_like(mod.bias))
    return m.eval()


def inp(*shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def bn(x, b: nn.BatchNorm2d):
    return F.batch_norm(x, b.running_mean, b.running_var, b.weight, b.bias, False, 0.0, b.eps)


def run(m, x):
    with torch.no_grad():
        return m(x.clone())


# ---------------------------------------------------------------- 1. residual with projection shortcut

RESIDUAL = """
block Res(out, stride = 1) {
    identity = x
    y = x | conv1: conv2d(out, 3, stride=stride, padding=1, bias=false) | bn1: batchnorm2d() | relu: relu(inplace=true)
    y = y | conv2: conv2d(out, 3, padding=1, bias=false) | bn2: batchnorm2d()
    if stride != 1 or x.channels != out {
        identity = x | downsample: seq { conv2d(out, 1, stride=stride, bias=false); batchnorm2d() }
    }
    return relu(y + identity)
}

block Net(out = 8, stride = 1) {
    x = x | b: Res(out, stride)
    return x
}

# a projection block followed by an identity block of the same definition
block Two(out = 16, stride = 2) {
    x = x | b1: Res(out, stride)
    x = x | b2: Res(out)
    return x
}

model net = Net() input [8, 16, 16]
model two = Two() input [8, 16, 16]
"""


def ref_res(b, x, stride, project):
    y = F.relu(bn(F.conv2d(x, b.conv1.weight, None, stride, 1), b.bn1))
    y = bn(F.conv2d(y, b.conv2.weight, None, 1, 1), b.bn2)
    if project:
        ds_conv, ds_bn = b.downsample[0], b.downsample[1]
        identity = bn(F.conv2d(x, ds_conv.weight, None, stride, 0), ds_bn)
    else:
        identity = x
    return F.relu(y + identity)


@pytest.mark.parametrize("out,stride", [(8, 1), (8, 2), (16, 1), (16, 2)])
def test_residual_identity_and_projection(out, stride):
    m = make(RESIDUAL, "net", out=out, stride=stride)
    project = stride != 1 or out != 8
    assert (getattr(m.b, "downsample", None) is not None) == project
    assert m.b.conv1.stride == (stride, stride)
    if project:
        assert isinstance(m.b.downsample, nn.Sequential) and len(m.b.downsample) == 2
        assert m.b.downsample[0].stride == (stride, stride)
        assert m.b.downsample[0].kernel_size == (1, 1)
        assert m.b.downsample[0].bias is None
    x = inp(2, 8, 16, 16)
    y = run(m, x)
    assert y.shape == (2, out, 16 // stride, 16 // stride)
    torch.testing.assert_close(y, ref_res(m.b, x, stride, project))


def test_residual_projection_then_identity_in_one_model():
    m = make(RESIDUAL, "two")
    assert m.b1.downsample is not None and m.b2.downsample is None  # one class, like torchvision's
    x = inp(2, 8, 16, 16)
    expected = ref_res(m.b2, ref_res(m.b1, x, 2, True), 1, False)
    torch.testing.assert_close(run(m, x), expected)


def test_residual_state_dict_keys():
    m = make(RESIDUAL, "net", out=16, stride=2)
    keys = set(m.state_dict())
    assert {"b.conv1.weight", "b.bn1.running_mean", "b.downsample.0.weight", "b.downsample.1.weight",
            "b.downsample.1.running_var"} <= keys


# ---------------------------------------------------------------- 2. dense concatenation

DENSE = """
block DenseLayer(growth) {
    y = x | norm: batchnorm2d() | relu: relu() | conv: conv2d(growth, 3, padding=1, bias=false)
    return y
}

# DenseNet-style: each layer sees the concatenation of all earlier feature maps
block DenseBlock(n = 3, growth = 4) {
    for i in range(n) {
        y = x | layer{i + 1}: DenseLayer(growth)
        x = concat(x, y)
    }
    return x
}

# the same, with torchvision's list of features
block DenseList(n = 3, growth = 4) {
    features = [x]
    for i in range(n) {
        y = concat(features) | conv{i}: conv2d(growth, 3, padding=1)
        features = features + [y]
    }
    return concat(features)
}

model dense = DenseBlock() input [8, 16, 16]
model dense_list = DenseList() input [8, 16, 16]
"""


@pytest.mark.parametrize("n,growth", [(1, 4), (3, 4), (4, 6)])
def test_dense_concat(n, growth):
    m = make(DENSE, "dense", n=n, growth=growth)
    x = inp(2, 8, 16, 16)
    y = run(m, x)
    assert y.shape == (2, 8 + n * growth, 16, 16)
    feats = x
    for i in range(n):
        layer = getattr(m, f"layer{i + 1}")
        assert layer.conv.in_channels == 8 + i * growth
        assert layer.norm.num_features == 8 + i * growth
        new = F.conv2d(F.relu(bn(feats, layer.norm)), layer.conv.weight, None, 1, 1)
        feats = torch.cat([feats, new], 1)
    torch.testing.assert_close(y, feats)
    # the input passes through unchanged in the first channels
    torch.testing.assert_close(y[:, :8], x)


def test_dense_concat_of_list():
    n, growth = 3, 4
    m = make(DENSE, "dense_list", n=n, growth=growth)
    x = inp(2, 8, 16, 16)
    y = run(m, x)
    assert y.shape == (2, 8 + n * growth, 16, 16)
    feats = [x]
    for i in range(n):
        c = getattr(m, f"conv{i}")
        assert c.in_channels == 8 + i * growth
        feats.append(F.conv2d(torch.cat(feats, 1), c.weight, c.bias, 1, 1))
    torch.testing.assert_close(y, torch.cat(feats, 1))


# ---------------------------------------------------------------- 3. parallel branches, split-transform-merge

BRANCHES = """
block InceptionCat(c1 = 4, c3 = 6, c5 = 2) {
    a = x | b1: conv2d(c1, 1)
    b = x | b3: conv2d(c3, 3, padding=1)
    c = x | b5: conv2d(c5, 5, padding=2)
    return concat(a, b, c)
}

block InceptionAdd(width = 6) {
    a = x | b1: conv2d(width, 1)
    b = x | b3: conv2d(width, 3, padding=1)
    c = x | b5: conv2d(width, 5, padding=2)
    return add(a, b, c)
}

block InceptionPlus(width = 8) {
    a = x | b1: conv2d(width, 1)
    b = x | b3: conv2d(width, 3, padding=1)
    return a + b + x | b5: conv2d(width, 5, padding=2)
}

block SplitMerge(first = 3) {
    parts = split(x, [first, x.channels - first])
    p = parts[0] | left: conv2d(first, 3, padding=1)
    q = parts[1] | right: conv2d(5, 1)
    return concat(p, q)
}

# Res2Net-like: chunks processed hierarchically, indexed by the loop variable
block ChunkMerge(n = 4) {
    parts = chunk(x, n)
    width = x.channels // n
    prev = parts[0]
    outs = [prev]
    for i in range(1, n) {
        prev = parts[i] + prev | conv{i}: conv2d(width, 3, padding=1)
        outs = outs + [prev]
    }
    return concat(outs) + x
}

model inception_cat = InceptionCat() input [8, 16, 16]
model inception_add = InceptionAdd() input [8, 16, 16]
model inception_plus = InceptionPlus() input [8, 16, 16]
model split_merge = SplitMerge() input [8, 16, 16]
model chunk_merge = ChunkMerge() input [8, 16, 16]
"""


def test_inception_concat():
    m = make(BRANCHES, "inception_cat")
    x = inp(2, 8, 16, 16)
    y = run(m, x)
    assert y.shape == (2, 4 + 6 + 2, 16, 16)
    assert (m.b1.kernel_size, m.b3.kernel_size, m.b5.kernel_size) == ((1, 1), (3, 3), (5, 5))
    expected = torch.cat([F.conv2d(x, m.b1.weight, m.b1.bias),
                          F.conv2d(x, m.b3.weight, m.b3.bias, padding=1),
                          F.conv2d(x, m.b5.weight, m.b5.bias, padding=2)], 1)
    torch.testing.assert_close(y, expected)


def test_inception_sum():
    m = make(BRANCHES, "inception_add")
    x = inp(2, 8, 16, 16)
    expected = (F.conv2d(x, m.b1.weight, m.b1.bias) + F.conv2d(x, m.b3.weight, m.b3.bias, padding=1)
                + F.conv2d(x, m.b5.weight, m.b5.bias, padding=2))
    torch.testing.assert_close(run(m, x), expected)


def test_inception_sum_with_plus():
    # `a + b + x | b5: ...`: the pipe binds loosest, so b5 takes the three-way sum
    m = make(BRANCHES, "inception_plus")
    assert m.b5.in_channels == 8
    x = inp(2, 8, 16, 16)
    s = F.conv2d(x, m.b1.weight, m.b1.bias) + F.conv2d(x, m.b3.weight, m.b3.bias, padding=1) + x
    torch.testing.assert_close(run(m, x), F.conv2d(s, m.b5.weight, m.b5.bias, padding=2))


def test_split_transform_merge():
    m = make(BRANCHES, "split_merge")
    x = inp(2, 8, 16, 16)
    y = run(m, x)
    assert y.shape == (2, 3 + 5, 16, 16)
    assert m.left.in_channels == 3 and m.right.in_channels == 5
    a, b = torch.split(x, [3, 5], dim=1)
    expected = torch.cat([F.conv2d(a, m.left.weight, m.left.bias, padding=1),
                          F.conv2d(b, m.right.weight, m.right.bias)], 1)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("n", [
    2, 4, "param"])
def test_chunk_hierarchical(n):
    if n == "param":  # the spec as written: chunk(x, n), with n a block parameter
        n, spec = 4, BRANCHES
    else:  # the same with the count as a literal, which avoids the bug
        spec = BRANCHES.replace("chunk(x, n)", f"chunk(x, {n})")
    m = make(spec, "chunk_merge", n=n)
    x = inp(2, 8, 16, 16)
    parts = torch.chunk(x, n, dim=1)
    prev = parts[0]
    outs = [prev]
    for i in range(1, n):
        c = getattr(m, f"conv{i}")
        assert c.in_channels == c.out_channels == 8 // n
        prev = F.conv2d(parts[i] + prev, c.weight, c.bias, padding=1)
        outs.append(prev)
    torch.testing.assert_close(run(m, x), torch.cat(outs, 1) + x)


# ---------------------------------------------------------------- 4. elementwise gating

GATES = """
import "std"

block WithSE(reduction = 4) {
    x = x | se: SqueezeExcite(reduction)
    return x
}

block Gate(hidden = 4) {
    s = mean(x, keepdim=true) | fc1: conv2d(hidden, 1) | act: relu() | fc2: conv2d(x.channels, 1) | sigmoid
    return x * s
}

model with_se = WithSE() input [32, 8, 8]
model gate = Gate() input [8, 16, 16]
"""


def ref_gate(x, fc1, fc2):
    s = x.mean((2, 3), keepdim=True)
    s = torch.sigmoid(F.conv2d(F.relu(F.conv2d(s, fc1.weight, fc1.bias)), fc2.weight, fc2.bias))
    return x * s


@pytest.mark.parametrize("reduction,hidden", [(4, 8), (2, 16), (16, 8)])  # hidden = max(32 // r, 8)
def test_squeeze_excite_from_std(reduction, hidden):
    m = make(GATES, "with_se", reduction=reduction)
    se = m.se
    assert se.fc1.in_channels == 32 and se.fc1.out_channels == hidden
    assert se.fc2.in_channels == hidden and se.fc2.out_channels == 32
    x = inp(2, 32, 8, 8)
    y = run(m, x)
    torch.testing.assert_close(y, ref_gate(x, se.fc1, se.fc2))


def test_own_gate():
    m = make(GATES, "gate")
    assert m.fc1.out_channels == 4 and m.fc2.out_channels == 8
    x = inp(2, 8, 16, 16)
    y = run(m, x)
    torch.testing.assert_close(y, ref_gate(x, m.fc1, m.fc2))
    # the gate is in (0, 1): the output never exceeds the input in magnitude
    assert torch.all(y.abs() <= x.abs())


# ---------------------------------------------------------------- 5. drop-path

DROP = """
block DPRes(out = 8, p = 0.25) {
    y = x | conv: conv2d(out, 3, padding=1) | drop: drop_path(p)
    return x + y
}

block DPFunc(out = 8, p = 0.25) {
    y = x | conv: conv2d(out, 3, padding=1)
    return x + drop_path(y, p)
}

model dp = DPRes() input [8, 4, 4]
model dp_func = DPFunc() input [8, 4, 4]
"""


def drop_model(model, p):
    """DPFunc passes its parameter p to the functional drop_path (which forward reads from self):
    `dp_func` writes p as a literal instead, `dp_func_param` keeps the parameter."""
    spec = DROP
    if model == "dp_func":
        spec = DROP.replace("drop_path(y, p)", f"drop_path(y, {float(p)!r})")
    return make(spec, "dp_func" if model == "dp_func_param" else model, p=p)


def _branch(m, x):
    return F.conv2d(x, m.conv.weight, m.conv.bias, padding=1)


@pytest.mark.parametrize("model", ["dp", "dp_func", "dp_func_param"])
def test_drop_path_eval_is_identity(model):
    m = drop_model(model, 0.5)
    if model == "dp":
        assert type(m.drop).__name__ == "DropPath" and m.drop.p == 0.5
    x = inp(16, 8, 4, 4)
    torch.testing.assert_close(run(m, x), x + _branch(m, x))


@pytest.mark.parametrize("model", ["dp", "dp_func", "dp_func_param"])
@pytest.mark.parametrize("p", [0.25, 0.5])
def test_drop_path_train(model, p):
    m = drop_model(model, p).train()
    x = inp(64, 8, 4, 4)
    torch.manual_seed(1234)
    y = run(m, x)
    # the reference: one Bernoulli(1 - p) draw per sample, the kept samples scaled by 1 / (1 - p)
    torch.manual_seed(1234)
    mask = torch.empty(64, 1, 1, 1).bernoulli_(1 - p)
    with torch.no_grad():
        branch = _branch(m, x)
        torch.testing.assert_close(y, x + branch * mask / (1 - p))
    # per sample, the branch is either all dropped or all kept and rescaled
    delta = (y - x).flatten(1)
    dropped = delta.abs().amax(1) == 0
    kept = ~dropped
    assert dropped.any() and kept.any()
    torch.testing.assert_close(delta[kept], branch.flatten(1)[kept] / (1 - p))
    # and the kept fraction is near 1 - p
    assert abs(kept.float().mean().item() - (1 - p)) < 0.2
    # different draws differ
    with torch.no_grad():
        ys = [m(x) for _ in range(4)]
    assert any(not torch.equal(ys[0], other) for other in ys[1:])


@pytest.mark.parametrize("model", ["dp", "dp_func", "dp_func_param"])
def test_drop_path_zero_in_train_is_identity(model):
    m = drop_model(model, 0.0).train()
    x = inp(16, 8, 4, 4)
    state = torch.get_rng_state()
    y = run(m, x)
    assert torch.equal(torch.get_rng_state(), state)  # no random draw at all
    torch.testing.assert_close(y, x + _branch(m, x))


def test_drop_path_one_in_train_drops_the_branch():
    m = make(DROP, "dp", p=1.0).train()
    x = inp(4, 8, 4, 4)
    torch.testing.assert_close(run(m, x), x)


# ---------------------------------------------------------------- 6. repetition with the instance index

STAGES = """
block Blk(out, stride = 1, dp = 0.0, dilation = 1) {
    y = x | conv: conv2d(out, 3, stride=stride, padding=dilation, dilation=dilation) | drop: drop_path(dp)
    if stride != 1 or x.channels != out {
        x = x | down: conv2d(out, 1, stride=stride)
    }
    return x + y
}

# blocks as the children of a seq (like ResNet's stage)
block SeqStage(out = 16, n = 4, stride = 2, rate = 0.3) {
    x = x | blocks: seq {
        for i in range(n) {
            Blk(out, stride if i == 0 else 1, rate * i / (n - 1), dilation=1 + i)
        }
    }
    return x
}

# blocks as named layers of the block itself
block LoopStage(out = 16, n = 4, stride = 2, rate = 0.3) {
    for i in range(n) {
        x = x | blk{i}: Blk(out, stride=stride if i == 0 else 1, dp=rate * i / (n - 1), dilation=1 + i)
    }
    return x
}

model seq_stage = SeqStage() input [8, 16, 16]
model loop_stage = LoopStage() input [8, 16, 16]
"""



def ref_blk(b, x, stride, dilation):
    y = F.conv2d(x, b.conv.weight, b.conv.bias, stride, dilation, dilation)
    if stride != 1 or x.shape[1] != b.conv.out_channels:
        x = F.conv2d(x, b.down.weight, b.down.bias, stride)
    return x + y


@pytest.mark.parametrize("model", ["seq_stage", "loop_stage"])
@pytest.mark.parametrize("n,stride,rate", [(4, 2, 0.3), (3, 1, 0.1), (5, 2, 0.2)])
def test_stage_index_schedule(model, n, stride, rate):
    m = make(STAGES, model, n=n, stride=stride, rate=rate)
    blocks = list(m.blocks) if model == "seq_stage" else [getattr(m, f"blk{i}") for i in range(n)]
    assert len(blocks) == n
    if model == "seq_stage":
        assert len(list(m.blocks.children())) == n
    for i, b in enumerate(blocks):
        s = stride if i == 0 else 1
        assert b.conv.stride == (s, s), i
        assert b.conv.dilation == (1 + i, 1 + i), i
        assert b.conv.padding == (1 + i, 1 + i), i
        assert b.drop.p == rate * i / (n - 1), (i, b.drop.p)
        assert (b.down is not None) == (i == 0), i  # one class; the projection is built where needed
    assert blocks[0].conv.in_channels == 8 and all(b.conv.in_channels == 16 for b in blocks[1:])
    x = inp(2, 8, 16, 16)
    expected = x
    for i, b in enumerate(blocks):
        expected = ref_blk(b, expected, stride if i == 0 else 1, 1 + i)
    y = run(m, x)
    assert y.shape == (2, 16, 16 // stride, 16 // stride)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("expr,value", [
    ("7 + 2", 9), ("7 * 2", 14), ("7 // 2", 3), ("7 % 2", 1), ("7 / 2", 3.5), ("-7", -7), ("7 + -2", 5),
    ("7 - 2", 5), ("[4, 8 - 3]", [4, 5]), ("7 ** 2", 49), ("2 ** 3 ** 2", 512), ("-2 ** 2", -4),
])
def test_binary_operators_parse(expr, value):
    # the value reaches the module as a conv's channel count (scalars) or a split's sizes (lists)
    if isinstance(value, list):
        spec = f"block B() {{\n    p = split(x, {expr})\n    return concat(p[1], p[0])\n}}\nmodel m = B() input [9, 4, 4]\n"
        m = make(spec)
        x = inp(2, 9, 4, 4)
        torch.testing.assert_close(run(m, x), torch.cat([x[:, value[0]:], x[:, :value[0]]], 1))
    else:
        spec = f"block B() {{\n    v = {expr}\n    return x | c: conv2d(int(v * 0 + 3), 1, padding=int(abs(v)))\n}}\n" \
               f"model m = B() input [2, 4, 4]\n"
        m = make(spec)
        assert m.c.padding == (int(abs(value)), int(abs(value)))


def test_stage_schedule_in_train_mode_uses_each_rate():
    # block 0 has rate 0: its branch is always kept, unscaled
    n, rate = 3, 0.5
    m = make(STAGES, "loop_stage", n=n, rate=rate).train()
    assert [m.blk0.drop.p, m.blk1.drop.p, m.blk2.drop.p] == [0.0, 0.25, 0.5]
    x = inp(8, 8, 16, 16)
    with torch.no_grad():
        y0 = m.blk0(x)
        torch.testing.assert_close(y0, ref_blk(m.blk0, x, 2, 1))


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize("spec", [RESIDUAL, DENSE, BRANCHES, GATES, DROP, STAGES])
def test_compile_twice_is_identical(spec):
    a = archsmith.compile(spec)
    b = archsmith.compile(spec)
    assert a.encode() == b.encode()


def test_generated_source_runs_standalone():
    src = archsmith.compile(STAGES, "loop_stage")
    ns = {}
    exec(compile(src, "<generated>", "exec"), ns)
    m = ns["loop_stage"]()
    assert [b.drop.p for b in (m.blk0, m.blk1, m.blk2, m.blk3)] == [0.3 * i / 3 for i in range(4)]


def test_resnet50_source_independent_of_hash_seed():
    code = "import sys, archsmith; sys.stdout.write(archsmith.compile('resnet50'))"
    outs = []
    for seed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        outs.append(proc.stdout)
    assert outs[0], "no source was written"
    assert hashlib.sha256(outs[0]).hexdigest() == hashlib.sha256(outs[1]).hexdigest()
    assert outs[0] == outs[1]


# ---------------------------------------------------------------- generated constructor parameters

@pytest.mark.parametrize("spec,model,cls,kwargs", [
    (RESIDUAL, "two", "Two", {"out": 32}),
])
def test_root_class_constructor_parameters(spec, model, cls, kwargs):
    """A parameter the root class takes builds what compiling with that value builds."""
    ns = {}
    exec(compile(archsmith.compile(spec, model), "<generated>", "exec"), ns)
    torch.manual_seed(0)
    m = ns[cls](**kwargs).eval()
    expected = archsmith.build(spec, model, **kwargs)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in expected.state_dict().items()}
    expected.load_state_dict(m.state_dict())
    x = inp(2, 8, 16, 16)
    torch.testing.assert_close(run(m, x), run(expected.eval(), x))


def test_root_class_takes_the_parameters_the_structure_depends_on():
    """`n` is the length of a loop over named layers and `growth` the width every later layer's
    input grows by: the class takes both, as a Python loop in __init__ and forward."""
    import inspect
    ns = {}
    exec(compile(archsmith.compile(DENSE, "dense"), "<generated>", "exec"), ns)
    assert list(inspect.signature(ns["DenseBlock"]).parameters) == ["in_channels", "n", "growth"]
    wider = ns["DenseBlock"](n=4, growth=6)
    assert [getattr(wider, f"layer{i}").conv.in_channels for i in range(1, 5)] == [8, 14, 20, 26]
    built = archsmith.build(DENSE, "dense", n=4, growth=6)
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in wider.state_dict().items()}
