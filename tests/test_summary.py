"""`archsmith.summary`: rows at every depth add up to the totals, the totals are the built module's
parameters and the published MACs, each layer's row is that submodule's parameters, and the
activation memory is what a forward pass allocates."""
import json
import random
import re
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import archsmith
from archsmith.backends.summary import summarize
from archsmith.compiler import elaborate_models
from test_random_architectures import random_spec

TINY = str(Path(__file__).resolve().parent.parent / "examples" / "tiny_resnet.arch")

# torchvision's published GFLOPS (multiply-accumulates, in fact; rounded to two places) and parameters
PUBLISHED = {"resnet50": (4.09, 25_557_032, None), "densenet121": (2.83, 7_978_856, None),
             "efficientnet_b0": (0.39, 5_288_548, None), "vgg16": (15.47, 138_357_544, None),
             "googlenet": (1.50, 13_004_888, None), "inception_v3": (5.71, 27_161_264, [3, 299, 299])}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_totals_are_the_published_figures(name):
    gmacs, params, input_shape = PUBLISHED[name]
    summary = archsmith.summary(name, input_shape=input_shape)
    assert round(summary.macs / 1e9, 2) == gmacs  # efficientnet_b0's 0.3858 is 1.1% below its rounded 0.39
    assert summary.params == params
    assert summary.param_bytes == 4 * params


def _random_models(count=4):
    rng = random.Random(7)
    return [elaborate_models(random_spec(rng))[0] for _ in range(count)]


def _parts(name):
    return name.split(".") if name else []


def _max_depth(summary):
    return max(len(_parts(r.name)) for r in summary.rows) + 1


@pytest.mark.parametrize("model", [elaborate_models(n)[0] for n in ("resnet50", "googlenet", "densenet121", "dpn68")]
                         + _random_models(), ids=lambda m: m.name)
def test_rows_partition_the_model_at_every_depth(model):
    per_node = summarize(model)
    depths = [summarize(model, d) for d in range(_max_depth(per_node) + 1)]
    for summary in [per_node] + depths:
        assert sum(r.params for r in summary.rows) == summary.params == per_node.params
        assert sum(r.macs for r in summary.rows) == summary.macs == per_node.macs
        assert sum(r.activation_bytes for r in summary.rows) == summary.activation_bytes
    assert [(r.name, r.kind, r.op) for r in depths[0].rows] == [("", "block", model.root.block.name)]
    modules = {d["module"] for _, d in model.graph.nodes(data=True) if d["module"]}
    for depth, (coarse, fine) in enumerate(zip(depths, depths[1:])):
        for row in coarse.rows:
            assert (row.name in modules) == (row.kind == "layer"), row  # the rest are blocks, seqs and ops
            assert len(_parts(row.name)) < depth if row.kind == "op" else len(_parts(row.name)) <= depth
            if row.kind != "op" and len(_parts(row.name)) == depth:  # a cut: the next depth splits it
                inside = [r for r in fine.rows if _parts(r.name)[:depth] == _parts(row.name)]
                assert sum(r.params for r in inside) == row.params, row
                assert sum(r.macs for r in inside) == row.macs, row
                assert sum(r.activation_bytes for r in inside) == row.activation_bytes, row
    assert {r.name for r in depths[-1].rows if r.kind == "layer"} == modules


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "efficientnet_b0", "tiny"])
def test_each_row_is_its_submodules_parameters(name):
    spec = TINY if name == "tiny" else name
    built = archsmith.build(spec)
    (model,) = elaborate_models(spec)
    assert summarize(model).params == sum(p.numel() for p in built.parameters())
    for depth in (1, 2, 3):
        for row in summarize(model, depth).rows:
            if row.kind == "op":
                assert row.params == 0
            elif row.op == "parameter":
                assert row.params == built.get_parameter(row.name).numel()
            else:
                assert row.params == sum(p.numel() for p in built.get_submodule(row.name).parameters()), row


def test_the_rows_of_resnet50():
    summary = archsmith.summary("resnet50", depth=1)
    names = [r.name for r in summary.rows]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "", "fc"]
    layer1 = summary.rows[4]
    assert (layer1.kind, layer1.op, layer1.shape, layer1.params) == ("seq", "seq", [256, 56, 56], 215_808)
    assert (summary.rows[9].kind, summary.rows[9].op) == ("op", "flatten")
    rows = archsmith.summary("resnet50", depth=2).rows
    assert [(r.name, r.op) for r in rows[4:7]] == [("layer1.0", "Bottleneck"), ("layer1.1", "Bottleneck"),
                                                   ("layer1.2", "Bottleneck")]
    conv1 = archsmith.summary("resnet50").rows[0]
    assert (conv1.name, conv1.kind, conv1.op, conv1.shape) == ("conv1", "layer", "conv2d", [64, 112, 112])
    assert (conv1.params, conv1.macs, conv1.activation_bytes) == (9408, 118_013_952, 4 * 64 * 112 * 112)


def test_the_table_and_the_json():
    summary = archsmith.summary(TINY, depth=1)
    lines = str(summary).splitlines()
    assert lines[0] == "tiny: input [3, 32, 32] -> output [10]"
    assert lines[1].split() == ["name", "op", "output", "params", "MACs", "activations"]
    assert lines[4].split() == ["(root)", "relu", "[16,", "32,", "32]", "--", "--", "65.54", "kB"]
    assert lines[5].split()[:6] == ["blocks", "seq", "[16,", "32,", "32]", "14,016"]
    assert "parameters   14,634 (58.54 kB as float32)" in lines
    assert "MACs         14,598,304 (14.60 M)" in lines
    data = json.loads(summary.to_json())
    assert (data["params"], data["macs"], data["input"], data["output"]) == (14_634, 14_598_304, [3, 32, 32], [10])
    assert data["nodes"][2] == {"name": "blocks", "kind": "seq", "op": "seq", "shape": [16, 32, 32], "params": 14_016,
                                "macs": 14_155_776, "activation_bytes": summary.rows[2].activation_bytes,
                                "training": False}


def test_training_only_rows_are_marked():
    summary = archsmith.summary("googlenet", depth=1)
    aux = [r for r in summary.rows if r.training]
    assert [r.name for r in aux] == ["aux1", "aux2"] and all(r.macs == r.activation_bytes == 0 for r in aux)
    assert "aux1         InceptionAux*" in str(summary)
    assert str(summary).endswith("* runs only in training: no MACs or activations in eval")


class _Allocations(TorchDispatchMode):
    """Bytes of the new float storages the ops of a forward pass make (views and in-place results share
    their input's; max pooling's int64 indices are torch's own). It keeps every output alive, so that
    no freed address is handed out again."""

    def __init__(self, known):
        super().__init__()
        self.seen, self.bytes, self.kept = set(known), 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if (isinstance(t, torch.Tensor) and t.is_floating_point()
                    and t.untyped_storage().data_ptr() not in self.seen):
                self.seen.add(t.untyped_storage().data_ptr())
                self.kept.append(t)
                self.bytes += t.untyped_storage().nbytes()
        return out


@pytest.mark.parametrize("name", ["tiny", "resnet18", "googlenet", "densenet121", "resnest14d", "dpn68"])
def test_activations_are_what_a_forward_pass_allocates(name):
    spec = TINY if name == "tiny" else name
    built = archsmith.build(spec).eval()
    x = torch.randn((1,) + tuple(elaborate_models(spec)[0].input_shape))
    known = {t.untyped_storage().data_ptr() for t in [x, *built.parameters(), *built.buffers()]}
    with torch.no_grad(), _Allocations(known) as allocations:
        built(x)
    assert archsmith.summary(spec).activation_bytes == allocations.bytes


def test_the_readme_shows_the_real_table():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    shown = re.search(r"\$ archsmith summary (\S+) --depth (\d)\n(.*?)```", readme, re.S)
    assert str(archsmith.summary(shown.group(1), depth=int(shown.group(2)))) + "\n" == shown.group(3)
