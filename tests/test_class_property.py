"""Property test of the generated classes: each is right for every argument it takes.

For every class generated from the bundled specs, the examples, the docs' examples and the specs of
the construct tests, and for each constructor parameter, the class is instantiated at other values
(each other instance's value and perturbations of the first's) and compared with elaborating the
block at those values: the same state_dict keys and shapes, and the same outputs with the same
weights. The reference runs the elaborated graph op by op (`graph_reference`), not generated code.
Values the elaborator rejects (a width that groups do not divide, say) are not cases."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import archsmith
from archsmith.backends.pytorch import emit
from archsmith.compiler import elaborate_models
from archsmith.evaluate import BlockRef, Record

from graph_reference import expected_state, run_graph
import test_constructs as constructs
import test_docs as docs

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "classes"

SOURCES = {
    **{p.name: str(p) for p in sorted((ROOT / "specs").glob("*.arch"))},
    "tiny_resnet.arch": str(ROOT / "examples" / "tiny_resnet.arch"),
    **{p.name: str(p) for p in sorted(FIXTURES.glob("*.arch"))},
    **{f"constructs.{name}": getattr(constructs, name)
       for name in ("RESIDUAL", "DENSE", "BRANCHES", "GATES", "DROP", "STAGES")},
    **{f"docs[{i}]": e for i, e in enumerate(docs.EXAMPLES)
       if "\nmodel " in "\n" + e and not docs.FILE_COMMENT.match(e) and "error:" not in e},
}
SMALL = 64  # the height and width a root is tried at when its class does not fix the input size


def perturbed(value) -> list:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value * 2] + ([value - 1] if value > 1 else [])
    if isinstance(value, float):
        return [value / 2, value / 2 + 0.25]
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [[v + 1 for v in value], value + value[-1:]] + ([value[:-1]] if len(value) > 1 else [])
    if isinstance(value, list) and len(value) > 2:
        return [value[:-2], value + value[-2:]]
    return []


def cases(name: str):
    """(class, spec parameter, value) for every class of the source and each parameter's other values."""
    try:
        models = elaborate_models(SOURCES[name])
    except archsmith.SpecError:
        return []
    gen = emit(models)
    out = []
    for info in gen.order:
        if not info.instances:
            continue
        first = info.instances[0]
        for sig in info.source.params:
            base = first.in_shape[0] if sig.spec == "" else first.params[sig.spec]
            others = [i.in_shape[0] if sig.spec == "" else i.params[sig.spec] for i in info.instances[1:]]
            values = []
            for v in others + perturbed(base):
                if not any(type(v) is type(w) and v == w for w in values + [base]):
                    values.append(v)
            out += [(info.name, sig.spec or "in_channels", v) for v in values[:4]]
    return out


def _python(v, namespace, gen):
    """The constructor argument for a spec value: a block's class, a record's dict."""
    if isinstance(v, BlockRef):
        return namespace[gen.class_name(v.defn)]
    if isinstance(v, Record):
        return {k: _python(i, namespace, gen) for k, i in v.fields.items()}
    if isinstance(v, list):
        return [_python(i, namespace, gen) for i in v]
    return v


def _ids(case):
    return f"{case[0]}.{case[1]}={case[2]!r}"[:80]


ALL = [(src, *case) for src in SOURCES for case in cases(src)]


def test_the_property_covers_every_class():
    assert len(ALL) >= 150, len(ALL)
    classes = {(src, cls) for src, cls, _, _ in ALL}
    assert {("resnet.arch", "Bottleneck"), ("resnet.arch", "BasicBlock"), ("vgg.arch", "VGG")} <= classes


@pytest.mark.parametrize("source,cls,param,value", ALL, ids=[f"{c[0]}:{_ids(c[1:])}" for c in ALL])
def test_class_equals_the_block_elaborated_at_other_arguments(source, cls, param, value):
    models = elaborate_models(SOURCES[source])
    gen = emit(models)
    namespace = {}
    exec(compile(gen.source, "<generated>", "exec"), namespace)
    info = next(i for i in gen.order if i.name == cls)
    first = info.instances[0]
    params = dict(first.params)
    channels = first.in_shape[0]
    if param == "in_channels":
        channels = value
    else:
        params[param] = value
    spatial = list(first.in_shape[1:])
    if first in [m.root for m in models] and len(spatial) == 2 and min(spatial) > SMALL \
            and "@spatial" not in info.fixed:
        spatial = [SMALL, SMALL]
    elaborator = models[0].elaborator
    try:
        reference = elaborator.elaborate(_model_def(info.block), params, [channels] + spatial)
    except archsmith.SpecError as e:
        pytest.skip(f"the elaborator rejects it: {e.message}")
    kwargs = {}
    for sig in info.source.params:
        v = channels if sig.spec == "" else params[sig.spec]
        kwargs[sig.name] = _python(v, namespace, gen)
    torch.manual_seed(0)
    module = namespace[cls](**kwargs)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
    module.eval()
    got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert got == expected_state(reference.graph)
    x = torch.randn(2, channels, *spatial, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # a block that takes a list of tensors is elaborated at one tensor, and given the list of it
        given = [x.clone()] if info.listed else x.clone()
        torch.testing.assert_close(module(given), run_graph(reference.graph, module, x.clone()))


def _model_def(block):
    from archsmith import ast
    return ast.ModelDef("case", block.name, [], None, block.span, block.span, file=block.file)


@pytest.mark.parametrize("source", [s for s in SOURCES if s not in ("resnet.arch", "vgg.arch", "resnetv2.arch",
                                                                  "wide_resnet.arch", "efficientnet.arch")])
def test_each_factory_builds_its_own_model(source):
    """A file's models may share classes; each factory still builds its own model (`wide()` is not
    `small()`)."""
    from test_names import check_source
    try:
        models = elaborate_models(SOURCES[source])
    except archsmith.SpecError as e:  # the docs' example of an error
        pytest.skip(e.message)
    check_source(models)
