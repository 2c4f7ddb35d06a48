"""The primitives of the language: one primitive is one torch op.

Each entry says which arguments the op takes, how it maps a per-sample input shape (C, H, W) or (F,)
to its output shape, what it costs (parameters, multiply-accumulates) and how it is written in torch.
Shape rules raise `ShapeError`; elaboration attaches the span.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

REQUIRED = object()


class ShapeError(Exception):
    """An op cannot take the shapes it is given; the message names what is wrong."""


@dataclass(frozen=True)
class P:
    """One argument of a primitive: name, default (REQUIRED if none) and accepted kind."""
    name: str
    default: object = REQUIRED
    kind: str = "int"  # int, float, bool, pair (int or [h, w]), ints (list), str
    least: int = 1  # the smallest value an int argument takes


@dataclass
class Primitive:
    name: str
    params: tuple
    shape: Callable  # (attrs, input shapes) -> output shape (or a list of shapes)
    torch_class: Optional[str] = None  # nn.<class> for the module form; None: functional only
    ctor: Optional[Callable] = None  # (attrs exprs, in shape) -> constructor argument source
    functional: Optional[Callable] = None  # (attrs exprs, input sources) -> expression source
    inputs: str = "one"  # "one", "many" (n-ary tensor ops) or "list" (returns a list)
    weights: Callable = lambda a, s: 0  # parameter count from attrs and input shape
    macs: Callable = lambda a, s, o: 0  # multiply-accumulates for one sample
    inferred: tuple = ()  # attrs taken from the input shape: (attr name, dimension index)
    doc: str = ""
    inplace: bool = False  # has an `inplace` argument

    @property
    def has_weights(self) -> bool:
        return self.name in ("conv2d", "batchnorm2d", "batchnorm1d", "linear")


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _need_image(shape, op):
    if len(shape) != 3:
        raise ShapeError(f"{op} needs a (channels, height, width) input, got {fmt_shape(shape)}")


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _window_out(size, k, s, p, d, ceil_mode, what, op):
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    if out <= 0:
        raise ShapeError(f"{op} window {k} (padding {p}) does not fit the input {what} {size}")
    return out


def _spatial(attrs, shape, op, dilation=True, ceil=False):
    _need_image(shape, op)
    k = pair(attrs["kernel_size"])
    s = pair(attrs["stride"] if attrs.get("stride") is not None else attrs["kernel_size"])
    p = pair(attrs.get("padding", 0))
    d = pair(attrs.get("dilation", 1)) if dilation else (1, 1)
    cm = attrs.get("ceil_mode", False) if ceil else False
    for v, what in ((k, "kernel_size"), (s, "stride")):
        if min(v) < 1:
            raise ShapeError(f"{op} {what} must be at least 1, got {v[0] if v[0] == v[1] else list(v)}")
    h = _window_out(shape[1], k[0], s[0], p[0], d[0], cm, "height", op)
    w = _window_out(shape[2], k[1], s[1], p[1], d[1], cm, "width", op)
    return h, w


def _conv_shape(a, shapes):
    (shape,) = shapes
    _need_image(shape, "conv2d")
    c, g = shape[0], a["groups"]
    if g < 1 or c % g:
        raise ShapeError(f"conv2d groups={g} does not divide the {c} input channels")
    if a["out_channels"] < 1 or a["out_channels"] % g:
        raise ShapeError(f"conv2d groups={g} does not divide the {a['out_channels']} output channels")
    return (a["out_channels"],) + _spatial(a, shapes[0], "conv2d")


def _conv_weights(a, s):
    k = pair(a["kernel_size"])
    return a["out_channels"] * (s[0] // a["groups"]) * k[0] * k[1] + (a["out_channels"] if a["bias"] else 0)


def _conv_macs(a, s, o):
    k = pair(a["kernel_size"])
    return o[0] * o[1] * o[2] * (s[0] // a["groups"]) * k[0] * k[1]


def _same(a, shapes):
    return shapes[0]


def _bn_shape(dims, op):
    def rule(a, shapes):
        if len(shapes[0]) != dims:
            want = "(channels, height, width)" if dims == 3 else "(features,)"
            raise ShapeError(f"{op} needs a {want} input, got {fmt_shape(shapes[0])}")
        return shapes[0]
    return rule


def _pool_shape(op, dilation):
    def rule(a, shapes):
        k, p = pair(a["kernel_size"]), pair(a["padding"])
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:  # torch's rule for pooling
            raise ShapeError(f"{op} padding {max(p)} is more than half the window {max(k)}")
        return (shapes[0][0],) + _spatial(a, shapes[0], op, dilation=dilation, ceil=True)
    return rule


def _adaptive_shape(a, shapes):
    _need_image(shapes[0], "adaptive pooling")
    return (shapes[0][0],) + pair(a["output_size"])


def _linear_shape(a, shapes):
    if len(shapes[0]) != 1:
        raise ShapeError(f"linear needs a flat (features,) input, got {fmt_shape(shapes[0])}; flatten it first")
    return (a["out_features"],)


def _flatten_shape(a, shapes):
    return (math.prod(shapes[0]),)


def _broadcast(op):
    def rule(a, shapes):
        out = list(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(out):
                raise ShapeError(f"{op} of {fmt_shape(shapes[0])} and {fmt_shape(s)}: ranks differ")
            for i, (x, y) in enumerate(zip(out, s)):
                if x != y and 1 not in (x, y):
                    what = ("channels", "height", "width")[i] if len(out) == 3 else "features"
                    raise ShapeError(f"{op} of {fmt_shape(shapes[0])} and {fmt_shape(s)}: {what} differ ({x} vs {y})")
                out[i] = max(x, y)
        return tuple(out)
    return rule


def _concat_shape(a, shapes):
    dim = a["dim"] - 1  # torch dim without the batch
    first = shapes[0]
    if not 0 <= dim < len(first):
        raise ShapeError(f"concat dim={a['dim']} is out of range for {fmt_shape(first)}")
    total = 0
    for s in shapes:
        if len(s) != len(first) or any(x != y for i, (x, y) in enumerate(zip(s, first)) if i != dim):
            raise ShapeError(f"concat of {fmt_shape(first)} and {fmt_shape(s)}: all but dim {a['dim']} must match")
        total += s[dim]
    return first[:dim] + (total,) + first[dim + 1:]


def _split_shape(a, shapes):
    c = shapes[0][0]
    sizes = a["sizes"]
    if sum(sizes) != c:
        raise ShapeError(f"split sizes {list(sizes)} add up to {sum(sizes)}, not the {c} input channels")
    return [(n,) + tuple(shapes[0][1:]) for n in sizes]


def _chunk_shape(a, shapes):
    c, n = shapes[0][0], a["chunks"]
    if n < 1 or c % n:
        raise ShapeError(f"chunk into {n} does not divide the {c} input channels")
    return [(c // n,) + tuple(shapes[0][1:])] * n


def _slice_shape(a, shapes):
    c = shapes[0][0]
    start, stop = a["start"], a["stop"]
    if not 0 <= start < stop <= c:
        raise ShapeError(f"channel slice [{start}:{stop}] is outside the {c} input channels")
    return (stop - start,) + tuple(shapes[0][1:])


def _mean_shape(a, shapes):
    s = list(shapes[0])
    dims = sorted(d - 1 for d in a["dim"])
    if any(not 0 <= d < len(s) for d in dims):
        raise ShapeError(f"mean over dim {a['dim']} is out of range for {fmt_shape(shapes[0])}")
    if a["keepdim"]:
        return tuple(1 if i in dims else v for i, v in enumerate(s))
    return tuple(v for i, v in enumerate(s) if i not in dims)


def _pad_shape(a, shapes):
    p = list(a["padding"])
    if len(p) not in (2, 4):
        raise ShapeError("pad takes [left, right] or [left, right, top, bottom]")
    s = list(shapes[0])
    s[-1] += p[0] + p[1]
    if len(p) == 4:
        _need_image(shapes[0], "pad")
        s[-2] += p[2] + p[3]
    return tuple(s)


def _softmax_shape(a, shapes):
    if not 1 <= a["dim"] <= len(shapes[0]):
        raise ShapeError(f"softmax dim={a['dim']} is out of range for {fmt_shape(shapes[0])}")
    return shapes[0]


def _p(a):
    if not 0 <= a["p"] <= 1:
        raise ShapeError(f"probability p={a['p']} is not between 0 and 1")


def _dropout_shape(a, shapes):
    _p(a)
    return shapes[0]


# -- how each op is written in torch ------------------------------------------------------------
# `e` maps argument name -> source text; `kw` renders keyword arguments that differ from defaults.

def _activation(name, torch_class, fn, inplace=True, extra=()):
    params = tuple(extra) + ((P("inplace", False, "bool"),) if inplace else ())
    return Primitive(
        name, params, _same, torch_class,
        ctor=lambda e, s: ", ".join(e.kw(*[p.name for p in params])),
        functional=lambda e, xs: f"{fn}({', '.join([xs[0]] + e.kw(*[p.name for p in params]))})",
        inplace=inplace, doc=f"nn.{torch_class}")


PRIMITIVES = {p.name: p for p in [
    Primitive(
        "conv2d",
        (P("out_channels"), P("kernel_size", kind="pair"), P("stride", 1, "pair"), P("padding", 0, "pair", least=0),
         P("dilation", 1, "pair"), P("groups", 1), P("bias", True, "bool")),
        _conv_shape, "Conv2d",
        ctor=lambda e, s: ", ".join([e["in_channels"], e["out_channels"], f"kernel_size={e['kernel_size']}"]
                                    + e.kw("stride", "padding", "dilation", "groups", "bias")),
        weights=_conv_weights, macs=_conv_macs, inferred=(("in_channels", 0),), doc="nn.Conv2d"),
    Primitive(
        "batchnorm2d", (P("eps", 1e-5, "float"), P("momentum", 0.1, "float")), _bn_shape(3, "batchnorm2d"),
        "BatchNorm2d", ctor=lambda e, s: ", ".join([e["num_features"]] + e.kw("eps", "momentum")),
        weights=lambda a, s: 2 * s[0], inferred=(("num_features", 0),), doc="nn.BatchNorm2d"),
    Primitive(
        "batchnorm1d", (P("eps", 1e-5, "float"), P("momentum", 0.1, "float")), _bn_shape(1, "batchnorm1d"),
        "BatchNorm1d", ctor=lambda e, s: ", ".join([e["num_features"]] + e.kw("eps", "momentum")),
        weights=lambda a, s: 2 * s[0], inferred=(("num_features", 0),), doc="nn.BatchNorm1d"),
    _activation("relu", "ReLU", "F.relu"),
    _activation("relu6", "ReLU6", "F.relu6"),
    _activation("silu", "SiLU", "F.silu"),
    _activation("hardswish", "Hardswish", "F.hardswish"),
    _activation("hardsigmoid", "Hardsigmoid", "F.hardsigmoid"),
    _activation("leaky_relu", "LeakyReLU", "F.leaky_relu", extra=(P("negative_slope", 0.01, "float"),)),
    _activation("elu", "ELU", "F.elu", extra=(P("alpha", 1.0, "float"),)),
    _activation("sigmoid", "Sigmoid", "torch.sigmoid", inplace=False),
    _activation("tanh", "Tanh", "torch.tanh", inplace=False),
    _activation("gelu", "GELU", "F.gelu", inplace=False),
    Primitive(
        "maxpool2d",
        (P("kernel_size", kind="pair"), P("stride", None, "pair"), P("padding", 0, "pair", least=0), P("dilation", 1, "pair"),
         P("ceil_mode", False, "bool")),
        _pool_shape("maxpool2d", True), "MaxPool2d",
        ctor=lambda e, s: ", ".join([f"kernel_size={e['kernel_size']}"] + e.kw("stride", "padding", "dilation", "ceil_mode")),
        functional=lambda e, xs: f"F.max_pool2d({', '.join([xs[0], e['kernel_size']] + e.kw('stride', 'padding', 'dilation', 'ceil_mode'))})",
        doc="nn.MaxPool2d"),
    Primitive(
        "avgpool2d",
        (P("kernel_size", kind="pair"), P("stride", None, "pair"), P("padding", 0, "pair", least=0), P("ceil_mode", False, "bool"),
         P("count_include_pad", True, "bool")),
        _pool_shape("avgpool2d", False), "AvgPool2d",
        ctor=lambda e, s: ", ".join([f"kernel_size={e['kernel_size']}"] + e.kw("stride", "padding", "ceil_mode", "count_include_pad")),
        functional=lambda e, xs: f"F.avg_pool2d({', '.join([xs[0], e['kernel_size']] + e.kw('stride', 'padding', 'ceil_mode', 'count_include_pad'))})",
        doc="nn.AvgPool2d"),
    Primitive(
        "adaptive_avgpool2d", (P("output_size", kind="pair"),), _adaptive_shape, "AdaptiveAvgPool2d",
        ctor=lambda e, s: e.tuple("output_size"),
        functional=lambda e, xs: f"F.adaptive_avg_pool2d({xs[0]}, {e.tuple('output_size')})", doc="nn.AdaptiveAvgPool2d"),
    Primitive(
        "adaptive_maxpool2d", (P("output_size", kind="pair"),), _adaptive_shape, "AdaptiveMaxPool2d",
        ctor=lambda e, s: e.tuple("output_size"),
        functional=lambda e, xs: f"F.adaptive_max_pool2d({xs[0]}, {e.tuple('output_size')})", doc="nn.AdaptiveMaxPool2d"),
    Primitive(
        "linear", (P("out_features"), P("bias", True, "bool")), _linear_shape, "Linear",
        ctor=lambda e, s: ", ".join([e["in_features"], e["out_features"]] + e.kw("bias")),
        weights=lambda a, s: a["out_features"] * s[0] + (a["out_features"] if a["bias"] else 0),
        macs=lambda a, s, o: a["out_features"] * s[0], inferred=(("in_features", 0),), doc="nn.Linear"),
    Primitive(
        "dropout", (P("p", 0.5, "float"), P("inplace", False, "bool")), _dropout_shape, "Dropout",
        ctor=lambda e, s: ", ".join(e.kw("p", "inplace")),
        functional=lambda e, xs: f"F.dropout({xs[0]}, {e['p']}, self.training)", inplace=True, doc="nn.Dropout"),
    Primitive(
        "drop_path", (P("p", 0.0, "float"),), _dropout_shape, "DropPath",
        ctor=lambda e, s: e["p"], functional=lambda e, xs: f"drop_path({xs[0]}, {e['p']}, self.training)",
        doc="stochastic depth: drops whole samples of a residual branch"),
    Primitive(
        "flatten", (P("start_dim", 1),), _flatten_shape, "Flatten",
        ctor=lambda e, s: ", ".join(e.kw("start_dim")),
        functional=lambda e, xs: f"torch.flatten({xs[0]}, {e['start_dim']})", doc="torch.flatten"),
    Primitive(
        "identity", (), _same, "Identity", ctor=lambda e, s: "", functional=lambda e, xs: xs[0], doc="nn.Identity"),
    Primitive(
        "softmax", (P("dim", 1),), _softmax_shape, "Softmax", ctor=lambda e, s: f"dim={e['dim']}",
        functional=lambda e, xs: f"torch.softmax({xs[0]}, dim={e['dim']})", doc="torch.softmax"),
    Primitive(
        "mean", (P("dim", [2, 3], "ints"), P("keepdim", False, "bool")), _mean_shape,
        functional=lambda e, xs: f"{xs[0]}.mean({e.tuple('dim')}{', keepdim=True' if e.value('keepdim') else ''})",
        doc="Tensor.mean: global average pooling over height and width by default"),
    Primitive(
        "pad", (P("padding", kind="ints"), P("value", 0.0, "float")), _pad_shape,
        functional=lambda e, xs: f"F.pad({', '.join([xs[0], e.tuple('padding')] + e.kw('value'))})", doc="F.pad"),
    Primitive("add", (), _broadcast("add"), inputs="many",
              functional=lambda e, xs: " + ".join(xs), doc="elementwise sum (residual, sum-merge)"),
    Primitive("mul", (), _broadcast("mul"), inputs="many",
              functional=lambda e, xs: " * ".join(xs), doc="elementwise product (gating)"),
    Primitive("concat", (P("dim", 1),), _concat_shape, inputs="many",
              functional=lambda e, xs: f"torch.cat([{', '.join(xs)}], {e['dim']})", doc="torch.cat"),
    Primitive("split", (P("sizes", kind="ints"),), _split_shape, inputs="list",
              functional=lambda e, xs: f"torch.split({xs[0]}, {e['sizes']}, dim=1)", doc="torch.split on channels"),
    Primitive("chunk", (P("chunks"),), _chunk_shape, inputs="list",
              functional=lambda e, xs: f"torch.chunk({xs[0]}, {e['chunks']}, dim=1)", doc="torch.chunk on channels"),
    Primitive("slice", (P("start", least=0), P("stop")), _slice_shape,
              functional=lambda e, xs: f"{xs[0]}[:, {e['start']}:{e['stop']}]", doc="a range of channels"),
]}
