"""The primitives of the language: one primitive is one torch op or module.

Each entry says which arguments the op takes, how it maps per-sample input shapes (the batch
dimension left out: (C, H, W), (C, L), (F,) or any other rank) to its output shape, which state a
module of it holds (its state_dict entries), what it costs (multiply-accumulates) and how it is written
in torch. Shape rules raise `ShapeError`; elaboration attaches the span.

`dim` arguments count torch's dimensions, batch included (`dim=1` is the channels, `-1` the last), and
may not name the batch dimension 0.
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
    # int, float, number (int or float, kept as written), bool, pair (int or [h, w]), ints (list), dim (a
    # torch dimension, may be negative), dims (one or a list), sizes (ints, one may be -1), str, size
    # (int, or a list of ints, or none); "hidden": set by elaboration, not by a spec
    kind: str = "int"
    least: int = 1  # the smallest value an int argument takes
    choices: tuple = ()  # for a str argument: the values it accepts


@dataclass
class Primitive:
    name: str
    params: tuple
    shape: Callable  # (attrs, input shapes) -> output shape (or a list of shapes)
    torch_class: Optional[str] = None  # the module's class: nn.<class>, or a helper of the generated file
    ctor: Optional[Callable] = None  # (attrs exprs, in shape) -> constructor argument source
    functional: Optional[Callable] = None  # (attrs exprs, input sources) -> expression source
    inputs: str = "one"  # "one", "many" (n-ary tensor ops) or "list" (returns a list)
    max_inputs: Optional[int] = None  # for "many": the most operands it takes
    state: Callable = lambda a, s: {}  # (attrs, in shape) -> {state_dict key: (shape, trainable)}
    macs: Callable = lambda a, s, o: 0  # multiply-accumulates for one sample
    inferred: tuple = ()  # attrs taken from the input shape: (attr name, dimension index)
    doc: str = ""
    inplace: bool = False  # has an `inplace` argument
    elementwise: bool = False  # also applies to a block's free parameters, which have no batch dimension
    support: bool = False  # its module is a class the generated file defines (DropPath), not torch's
    group: str = ""  # its section of the docs' table
    keeps_shape: bool = False  # its output has its (first) input's shape
    rule: str = ""  # the shape rule in words, for the reference table
    aliases: tuple = ()  # what torch or timm call it besides torch_class, for "did you mean" hints
    method: bool = False  # written as a method of its input (`x.mean(...)`), which may need parentheses

    def stateful(self, attrs, in_shape) -> bool:
        """Whether a module of it, so built, has state_dict entries (and so needs a name)."""
        return bool(self.state(attrs, in_shape))

    @property
    def module_class(self) -> Optional[str]:
        """The constructor as the generated file writes it: `nn.Conv2d`, or a helper class `DropPath`."""
        if self.torch_class is None:
            return None
        return self.torch_class if self.support else f"nn.{self.torch_class}"

    @property
    def user_params(self) -> tuple:
        return tuple(p for p in self.params if p.kind != "hidden")


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _batched(shape) -> str:
    return "[N" + "".join(f", {d}" for d in shape) + "]"


def _need_rank(shape, rank, op, what):
    if len(shape) != rank:
        raise ShapeError(f"{op} needs a {what} input, got {fmt_shape(shape)}")


_IMAGE = "(channels, height, width)"
_SEQUENCE = "(channels, length)"


def dim_index(d, shape, op, what="dim", extra=0):
    """The per-sample index of torch dimension `d` of a tensor of per-sample `shape` (of a result one
    longer, with extra=1, for unsqueeze and stack)."""
    rank = len(shape) + extra
    full = d + rank + 1 if d < 0 else d
    if full == 0:
        raise ShapeError(f"{op} {what}={d} is the batch dimension; a spec works on dimensions 1 to {rank}")
    if not 1 <= full <= rank:
        raise ShapeError(f"{op} {what}={d} is out of range for a tensor of shape {_batched(shape)}")
    return full - 1


def _dims(a, shape, op):
    dims = a["dim"] if isinstance(a["dim"], list) else [a["dim"]]
    out = [dim_index(d, shape, op) for d in dims]
    if len(set(out)) != len(out):
        raise ShapeError(f"{op} names a dimension twice in dim={a['dim']}")
    return out


# ---------------------------------------------------------------------- shape rules

def _window_out(size, k, s, p, d, ceil_mode, what, op):
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    if out <= 0:
        raise ShapeError(f"{op} window {k} (padding {p}) does not fit the input {what} {size}")
    return out


def _as_n(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def spatial_out(attrs, shape, op, n, dilation=True, ceil=False):
    """The n spatial sizes after a window op (conv, pool) over the last n dimensions of `shape`."""
    k = _as_n(attrs["kernel_size"], n)
    s = _as_n(attrs["stride"] if attrs.get("stride") is not None else attrs["kernel_size"], n)
    p = _as_n(attrs.get("padding", 0), n)
    d = _as_n(attrs.get("dilation", 1), n) if dilation else (1,) * n
    cm = attrs.get("ceil_mode", False) if ceil else False
    for v, what in ((k, "kernel_size"), (s, "stride")):
        if min(v) < 1:
            raise ShapeError(f"{op} {what} must be at least 1, got {v[0] if len(set(v)) == 1 else list(v)}")
    names = ("height", "width") if n == 2 else ("length",)
    return tuple(_window_out(shape[1 + i], k[i], s[i], p[i], d[i], cm, names[i], op) for i in range(n))


def _conv_shape(n):
    op = f"conv{n}d"

    def rule(a, shapes):
        (shape,) = shapes
        _need_rank(shape, n + 1, op, _IMAGE if n == 2 else _SEQUENCE)
        c, g = shape[0], a["groups"]
        if g < 1 or c % g:
            raise ShapeError(f"{op} groups={g} does not divide the {c} input channels")
        if a["out_channels"] < 1 or a["out_channels"] % g:
            raise ShapeError(f"{op} groups={g} does not divide the {a['out_channels']} output channels")
        return (a["out_channels"],) + spatial_out(a, shape, op, n)
    return rule


def _conv_state(n):
    def state(a, s):
        k = _as_n(a["kernel_size"], n)
        out = {"weight": ((a["out_channels"], s[0] // a["groups"]) + k, True)}
        if a["bias"]:
            out["bias"] = ((a["out_channels"],), True)
        return out
    return state


def _conv_macs(n):
    def macs(a, s, o):
        return math.prod(o) * (s[0] // a["groups"]) * math.prod(_as_n(a["kernel_size"], n))
    return macs


def _same(a, shapes):
    return shapes[0]


def _rank_rule(ranks, op):
    def rule(a, shapes):
        if len(shapes[0]) not in ranks:
            want = " or ".join({3: _IMAGE, 2: _SEQUENCE, 1: "(features,)"}[r] for r in ranks)
            raise ShapeError(f"{op} needs a {want} input, got {fmt_shape(shapes[0])}")
        return shapes[0]
    return rule


def _norm_state(size_attr, affine_attr, running):
    """weight and bias of size `a[size_attr]` when `affine_attr` holds; running statistics when
    `running(a)` does."""
    def state(a, s):
        c = (a[size_attr],)
        out = {}
        if affine_attr is None or a[affine_attr]:
            out["weight"] = (c, True)
            if a.get("bias", True):
                out["bias"] = (c, True)
        if running(a):
            out.update(running_mean=(c, False), running_var=(c, False), num_batches_tracked=((), False))
        return out
    return state


def _groupnorm_shape(a, shapes):
    c, g = shapes[0][0], a["num_groups"]
    if c % g:
        raise ShapeError(f"groupnorm num_groups={g} does not divide the {c} channels")
    return shapes[0]


def _layernorm2d_shape(a, shapes):
    _need_rank(shapes[0], 3, "layernorm2d", _IMAGE)
    return shapes[0]


def _pool_shape(op, n, dilation):
    def rule(a, shapes):
        _need_rank(shapes[0], n + 1, op, _IMAGE if n == 2 else _SEQUENCE)
        k, p = _as_n(a["kernel_size"], n), _as_n(a["padding"], n)
        if any(pi > ki // 2 for pi, ki in zip(p, k)):  # torch's rule for pooling
            raise ShapeError(f"{op} padding {max(p)} is more than half the window {max(k)}")
        return (shapes[0][0],) + spatial_out(a, shapes[0], op, n, dilation=dilation, ceil=True)
    return rule


def _adaptive_shape(op, n):
    def rule(a, shapes):
        _need_rank(shapes[0], n + 1, op, _IMAGE if n == 2 else _SEQUENCE)
        return (shapes[0][0],) + _as_n(a["output_size"], n)
    return rule


def _linear_shape(a, shapes):
    if not shapes[0]:
        raise ShapeError("linear needs a tensor with at least one dimension besides the batch")
    return tuple(shapes[0][:-1]) + (a["out_features"],)


def _flatten_shape(a, shapes):
    s = shapes[0]
    start = dim_index(a["start_dim"], s, "flatten", "start_dim")
    end = dim_index(a["end_dim"], s, "flatten", "end_dim")
    if end < start:
        raise ShapeError(f"flatten end_dim={a['end_dim']} comes before start_dim={a['start_dim']}")
    return tuple(s[:start]) + (math.prod(s[start:end + 1]),) + tuple(s[end + 1:])


def _resolve_sizes(sizes, total, op, what):
    """`sizes` with its one -1 replaced so that they multiply to `total`."""
    sizes = list(sizes)
    free = [i for i, v in enumerate(sizes) if v == -1]
    if len(free) > 1 or any(v < 1 for v in sizes if v != -1):
        raise ShapeError(f"{op} sizes {sizes} must be positive, with at most one -1")
    known = math.prod(v for v in sizes if v != -1)
    if free:
        if total % known:
            raise ShapeError(f"{op} cannot split {what} {total} into {sizes}: {known} does not divide it")
        sizes[free[0]] = total // known
    if math.prod(sizes) != total:
        raise ShapeError(f"{op} sizes {sizes} hold {math.prod(sizes)} elements, not the {total} of {what}")
    return tuple(sizes)


def _unflatten_shape(a, shapes):
    s = shapes[0]
    i = dim_index(a["dim"], s, "unflatten")
    return tuple(s[:i]) + _resolve_sizes(a["sizes"], s[i], "unflatten", f"dimension {a['dim']} of size") + tuple(s[i + 1:])


def _reshape_shape(a, shapes):
    s = shapes[0]
    return _resolve_sizes(a["shape"], math.prod(s), "reshape", f"the {fmt_shape(s)} per sample, of size")


def _permute_shape(a, shapes):
    s, dims = shapes[0], list(a["dims"])
    if sorted(dims) != list(range(len(s) + 1)):
        raise ShapeError(f"permute dims {dims} must order all of 0 to {len(s)} once")
    if dims[0] != 0:
        raise ShapeError(f"permute dims {dims} must keep the batch dimension 0 first")
    return tuple(s[d - 1] for d in dims[1:])


def _transpose_shape(a, shapes):
    s = list(shapes[0])
    i, j = dim_index(a["dim0"], s, "transpose", "dim0"), dim_index(a["dim1"], s, "transpose", "dim1")
    s[i], s[j] = s[j], s[i]
    return tuple(s)


def _squeeze_shape(a, shapes):
    s = shapes[0]
    i = dim_index(a["dim"], s, "squeeze")
    if s[i] != 1:
        raise ShapeError(f"squeeze dim={a['dim']} has size {s[i]}, not 1, in {_batched(s)}")
    return tuple(s[:i]) + tuple(s[i + 1:])


def _unsqueeze_shape(a, shapes):
    s = shapes[0]
    i = dim_index(a["dim"], s, "unsqueeze", extra=1)
    return tuple(s[:i]) + (1,) + tuple(s[i:])


def _pixel_shuffle_shape(a, shapes):
    s, r = shapes[0], a["upscale_factor"]
    _need_rank(s, 3, "pixel_shuffle", _IMAGE)
    if s[0] % (r * r):
        raise ShapeError(f"pixel_shuffle by {r} needs channels divisible by {r * r}, got {s[0]}")
    return (s[0] // (r * r), s[1] * r, s[2] * r)


def _pixel_unshuffle_shape(a, shapes):
    s, r = shapes[0], a["downscale_factor"]
    _need_rank(s, 3, "pixel_unshuffle", _IMAGE)
    if s[1] % r or s[2] % r:
        raise ShapeError(f"pixel_unshuffle by {r} needs height and width divisible by {r}, got {s[1]}x{s[2]}")
    return (s[0] * r * r, s[1] // r, s[2] // r)


def _channel_shuffle_shape(a, shapes):
    s = shapes[0]
    if len(s) < 2:
        raise ShapeError(f"channel_shuffle needs channels and at least one more dimension, got {fmt_shape(s)}")
    if s[0] % a["groups"]:
        raise ShapeError(f"channel_shuffle groups={a['groups']} does not divide the {s[0]} channels")
    return s


def _upsample_shape(a, shapes):
    s = shapes[0]
    n = len(s) - 1
    if n not in (1, 2):
        raise ShapeError(f"upsample needs a {_IMAGE} or {_SEQUENCE} input, got {fmt_shape(s)}")
    size, scale = a["size"], a["scale_factor"]
    if (size is None) == (scale is None):
        raise ShapeError("upsample takes either `size` or `scale_factor`")
    if a["mode"] not in (("nearest", "linear") if n == 1 else ("nearest", "bilinear", "bicubic")):
        raise ShapeError(f"upsample mode \"{a['mode']}\" does not fit a tensor of shape {fmt_shape(s)}")
    if a["align_corners"] is not None and a["mode"] == "nearest":
        raise ShapeError("align_corners applies only to the linear modes, not \"nearest\"")
    if size is not None:
        size = _as_n(size, n)
        if len(size) != n or min(size) < 1:
            raise ShapeError(f"upsample size {a['size']} does not fit a tensor of shape {fmt_shape(s)}")
        return (s[0],) + size
    scale = (scale,) * n if not isinstance(scale, list) else tuple(scale)
    if len(scale) != n or min(scale) <= 0:
        raise ShapeError(f"upsample scale_factor {a['scale_factor']} does not fit a tensor of shape {fmt_shape(s)}")
    return (s[0],) + tuple(math.floor(d * f) for d, f in zip(s[1:], scale))


def broadcast(shapes, batched, op):
    """torch's broadcasting of per-sample shapes; `batched[i]` is False for a free parameter, whose shape
    is its whole torch shape (a leading 1 of one longer than the tensors is the batch's)."""
    rank = max((len(s) for s, b in zip(shapes, batched) if b), default=None)
    sized = []
    for s, b in zip(shapes, batched):
        s = tuple(s)
        if not b and rank is not None and len(s) > rank:
            if len(s) > rank + 1 or s[0] != 1:
                raise ShapeError(f"{op} of a tensor {_batched(shapes[batched.index(True)])} and a parameter of "
                                 f"shape {fmt_shape(s)}: the parameter has more dimensions than the tensor")
            s = s[1:]
        sized.append(s)
    width = max(len(s) for s in sized)
    out = [1] * width
    for s in sized:
        for i, d in enumerate(s):
            j = width - len(s) + i
            if out[j] != d and 1 not in (out[j], d):
                shown = [fmt_shape(x) for x in shapes]
                what = ("channels differ", "heights differ", "widths differ")[j] if width == 3 \
                    else f"dimension {j + 1} differs"
                raise ShapeError(f"{op} of {' and '.join(shown)}: {what} ({out[j]} vs {d})")
            out[j] = max(out[j], d) if 1 in (out[j], d) else d
    return tuple(out)


def _broadcast(op, binary=False):
    def rule(a, shapes):
        operands = len(shapes) + (a.get("scalar") is not None)
        if operands < 2 or (binary and operands > 2):
            raise ShapeError(f"{op} takes {'two' if binary else 'two or more'} operands, got {operands}")
        batched = a.get("batched") or [True] * len(shapes)
        return broadcast(shapes, list(batched), op)
    return rule


def _matmul_shape(a, shapes):
    """Matrix products over the last two dimensions; the dimensions before them broadcast."""
    if len(shapes) != 2:
        raise ShapeError(f"matmul takes two tensors, got {len(shapes)}")
    (x, y), batched = shapes, list(a.get("batched") or [True, True])
    for s in (x, y):
        if len(s) < 2:
            raise ShapeError(f"matmul needs tensors with two dimensions besides the batch, got {fmt_shape(s)}")
    if x[-1] != y[-2]:
        raise ShapeError(f"matmul of {fmt_shape(x)} and {fmt_shape(y)}: {x[-1]} columns against {y[-2]} rows")
    return broadcast([x[:-2], y[:-2]], batched, "matmul") + (x[-2], y[-1])


def _concat_shape(op, stack=False):
    def rule(a, shapes):
        first = shapes[0]
        dim = dim_index(a["dim"], first, op, extra=1 if stack else 0)
        for s in shapes[1:]:
            if stack and tuple(s) != tuple(first):
                raise ShapeError(f"stack of {fmt_shape(first)} and {fmt_shape(s)}: all shapes must be equal")
            if not stack and (len(s) != len(first) or any(x != y for i, (x, y) in enumerate(zip(s, first))
                                                          if i != dim)):
                raise ShapeError(f"concat of {fmt_shape(first)} and {fmt_shape(s)}: all but dim {a['dim']} must match")
        if stack:
            return tuple(first[:dim]) + (len(shapes),) + tuple(first[dim:])
        return tuple(first[:dim]) + (sum(s[dim] for s in shapes),) + tuple(first[dim + 1:])
    return rule


def _split_shape(a, shapes):
    s = shapes[0]
    i = dim_index(a["dim"], s, "split")
    sizes = a["sizes"]
    if sum(sizes) != s[i]:
        raise ShapeError(f"split sizes {list(sizes)} add up to {sum(sizes)}, not the size {s[i]} of dim {a['dim']}")
    return [tuple(s[:i]) + (n,) + tuple(s[i + 1:]) for n in sizes]


def _chunk_shape(a, shapes):
    s, n = shapes[0], a["chunks"]
    i = dim_index(a["dim"], s, "chunk")
    if n < 1 or s[i] % n:
        raise ShapeError(f"chunk into {n} does not divide the size {s[i]} of dim {a['dim']}")
    return [tuple(s[:i]) + (s[i] // n,) + tuple(s[i + 1:])] * n


def _slice_shape(a, shapes):
    c = shapes[0][0]
    start, stop = a["start"], a["stop"]
    if not 0 <= start < stop <= c:
        raise ShapeError(f"channel slice [{start}:{stop}] is outside the {c} input channels")
    return (stop - start,) + tuple(shapes[0][1:])


def _reduce_shape(op):
    def rule(a, shapes):
        s = shapes[0]
        dims = _dims(a, s, op)
        if a["keepdim"]:
            return tuple(1 if i in dims else v for i, v in enumerate(s))
        return tuple(v for i, v in enumerate(s) if i not in dims)
    return rule


def _pad_shape(a, shapes):
    p = list(a["padding"])
    s = list(shapes[0])
    if len(p) % 2 or not p or len(p) // 2 > len(s):
        raise ShapeError(f"pad takes [left, right] pairs for at most {len(s)} trailing dimensions, got {p}")
    for k in range(len(p) // 2):
        s[-1 - k] += p[2 * k] + p[2 * k + 1]
        if s[-1 - k] < 1:
            raise ShapeError(f"pad {p} leaves no elements in dimension {len(s) - k}")
    return tuple(s)


def _softmax_shape(op):
    def rule(a, shapes):
        dim_index(a["dim"], shapes[0], op)
        return shapes[0]
    return rule


def _dropout_shape(a, shapes):
    if not 0 <= a["p"] <= 1:
        raise ShapeError(f"probability p={a['p']} is not between 0 and 1")
    return shapes[0]


# -- how each op is written in torch ------------------------------------------------------------
# `e` maps argument name -> source text; `e.kw(...)` renders keyword arguments that differ from defaults.

def _activation(name, torch_class, fn, inplace=True, extra=()):
    params = tuple(extra) + ((P("inplace", False, "bool"),) if inplace else ())
    return Primitive(
        name, params, _same, torch_class,
        ctor=lambda e, s: ", ".join(e.kw(*[p.name for p in params])),
        functional=lambda e, xs: f"{fn}({', '.join([xs[0]] + e.kw(*[p.name for p in params]))})",
        inplace=inplace, doc=f"nn.{torch_class}", group="activations", keeps_shape=True)


def _math(name, fn, doc):
    """An elementwise function of one tensor, with no module: `torch.exp(x)`."""
    return Primitive(name, (), _same, functional=lambda e, xs: f"{fn}({xs[0]})", doc=doc, elementwise=True,
                     group="arithmetic", keeps_shape=True)


_SCALAR = (P("scalar", None, "hidden"), P("scalar_first", False, "hidden"), P("batched", None, "hidden"))


def _arith(name, symbol, doc, many):
    """`+ - * /` of tensors (broadcast) or of a tensor and a number (the hidden `scalar`)."""
    return Primitive(name, _SCALAR, _broadcast(name, binary=not many), inputs="many", max_inputs=None if many else 2,
                     functional=lambda e, xs: f" {symbol} ".join(xs), doc=doc, elementwise=True, group="arithmetic")


def _window(n, pool):
    """kernel_size, stride, padding (, dilation) of an n-d conv or pool."""
    kind = "pair" if n == 2 else "int"
    stride = P("stride", None if pool else 1, kind)
    return (P("kernel_size", kind=kind), stride, P("padding", 0, kind, least=0))


def _conv(n):
    return Primitive(
        f"conv{n}d",
        (P("out_channels"),) + _window(n, False) + (P("dilation", 1, "pair" if n == 2 else "int"), P("groups", 1),
                                                    P("bias", True, "bool")),
        _conv_shape(n), f"Conv{n}d",
        ctor=lambda e, s: ", ".join([e["in_channels"], e["out_channels"], f"kernel_size={e['kernel_size']}"]
                                    + e.kw("stride", "padding", "dilation", "groups", "bias")),
        state=_conv_state(n), macs=_conv_macs(n), inferred=(("in_channels", 0),), doc=f"nn.Conv{n}d",
        group="convolution and pooling")


def _pool(kind, n):
    """maxpool{n}d (with dilation) or avgpool{n}d (with count_include_pad)."""
    name, cls = f"{kind}pool{n}d", f"{kind.capitalize()}Pool{n}d"
    extra = ((P("dilation", 1, "pair" if n == 2 else "int"), P("ceil_mode", False, "bool")) if kind == "max"
             else (P("ceil_mode", False, "bool"), P("count_include_pad", True, "bool")))
    names = ("stride", "padding") + tuple(p.name for p in extra)
    return Primitive(
        name, _window(n, True) + extra, _pool_shape(name, n, kind == "max"), cls,
        ctor=lambda e, s: ", ".join([f"kernel_size={e['kernel_size']}"] + e.kw(*names)),
        functional=lambda e, xs: f"F.{kind}_pool{n}d({', '.join([xs[0], e['kernel_size']] + e.kw(*names))})",
        doc=f"nn.{cls}", group="convolution and pooling")


def _adaptive(kind, n):
    name = f"adaptive_{kind}pool{n}d"
    cls = f"Adaptive{kind.capitalize()}Pool{n}d"
    size = P("output_size", kind="pair" if n == 2 else "int")
    return Primitive(
        name, (size,), _adaptive_shape(name, n), cls, ctor=lambda e, s: e.tuple("output_size"),
        functional=lambda e, xs: f"F.{name.replace('pool', '_pool')}({xs[0]}, {e.tuple('output_size')})",
        doc=f"nn.{cls}", group="convolution and pooling")


def _batchnorm(n, ranks):
    return Primitive(
        f"batchnorm{n}d", (P("eps", 1e-5, "float"), P("momentum", 0.1, "float")), _rank_rule(ranks, f"batchnorm{n}d"),
        f"BatchNorm{n}d", ctor=lambda e, s: ", ".join([e["num_features"]] + e.kw("eps", "momentum")),
        state=_norm_state("num_features", None, lambda a: True), inferred=(("num_features", 0),), doc=f"nn.BatchNorm{n}d",
        group="normalization", keeps_shape=True)


def _reduction(name, method, doc):
    return Primitive(
        name, (P("dim", [2, 3], "dims"), P("keepdim", False, "bool")), _reduce_shape(name),
        functional=lambda e, xs: f"{xs[0]}.{method}({e.dims('dim')}{', keepdim=True' if e.value('keepdim') else ''})",
        doc=doc, group="arithmetic", method=True)


def _reshape_functional(e, xs):
    """`x.reshape(-1, 4, 8)`; with a -1 in the shape the batch size must be kept by flattening first."""
    shape = e.known("shape")
    if shape is not None and -1 not in shape:
        return f"{xs[0]}.reshape(-1, {e.splat('shape')})"
    return f"{xs[0]}.flatten(1).unflatten(1, {e.tuple('shape')})"


def _layer_norm_functional(e, xs):
    shape = f"({e['normalized_shape']},)"
    return f"F.layer_norm({', '.join([xs[0], shape] + e.kw('eps'))})"


PRIMITIVES = {p.name: p for p in [
    _conv(2), _conv(1),
    _pool("max", 2), _pool("avg", 2), _pool("max", 1), _pool("avg", 1),
    _adaptive("avg", 2), _adaptive("max", 2), _adaptive("avg", 1), _adaptive("max", 1),
    _batchnorm(2, (3,)), _batchnorm(1, (1, 2)),
    Primitive(
        "layernorm", (P("eps", 1e-5, "float"), P("elementwise_affine", True, "bool"), P("bias", True, "bool")),
        _same, "LayerNorm",
        ctor=lambda e, s: ", ".join([e["normalized_shape"]] + e.kw("eps", "elementwise_affine", "bias")),
        functional=_layer_norm_functional, state=_norm_state("normalized_shape", "elementwise_affine", lambda a: False),
        inferred=(("normalized_shape", -1),), doc="nn.LayerNorm over the last dimension", group="normalization", keeps_shape=True),
    Primitive(
        "layernorm2d", (P("eps", 1e-5, "float"), P("elementwise_affine", True, "bool"), P("bias", True, "bool")),
        _layernorm2d_shape, "LayerNorm2d",
        ctor=lambda e, s: ", ".join([e["normalized_shape"]] + e.kw("eps", "elementwise_affine", "bias")),
        functional=lambda e, xs: f"{_layer_norm_functional(e, [xs[0] + '.permute(0, 2, 3, 1)'])}.permute(0, 3, 1, 2)",
        state=_norm_state("normalized_shape", "elementwise_affine", lambda a: False),
        inferred=(("normalized_shape", 0),),
        support=True, doc="layer norm over the channels of an image (torchvision's LayerNorm2d)",
        group="normalization", keeps_shape=True),
    Primitive(
        "groupnorm", (P("num_groups"), P("eps", 1e-5, "float"), P("affine", True, "bool")), _groupnorm_shape,
        "GroupNorm", ctor=lambda e, s: ", ".join([e["num_groups"], e["num_channels"]] + e.kw("eps", "affine")),
        functional=lambda e, xs: f"F.group_norm({', '.join([xs[0], e['num_groups']] + e.kw('eps'))})",
        state=_norm_state("num_channels", "affine", lambda a: False), inferred=(("num_channels", 0),), doc="nn.GroupNorm",
        group="normalization", keeps_shape=True),
    Primitive(
        "instancenorm2d", (P("eps", 1e-5, "float"), P("momentum", 0.1, "float"), P("affine", False, "bool"),
                           P("track_running_stats", False, "bool")),
        _rank_rule((3,), "instancenorm2d"), "InstanceNorm2d",
        ctor=lambda e, s: ", ".join([e["num_features"]] + e.kw("eps", "momentum", "affine", "track_running_stats")),
        functional=lambda e, xs: f"F.instance_norm({', '.join([xs[0]] + e.kw('eps'))})",
        state=_norm_state("num_features", "affine", lambda a: a["track_running_stats"]), inferred=(("num_features", 0),),
        doc="nn.InstanceNorm2d", group="normalization", keeps_shape=True),
    Primitive(
        "localresponsenorm", (P("size"), P("alpha", 1e-4, "float"), P("beta", 0.75, "float"), P("k", 1.0, "float")),
        _rank_rule((2, 3), "localresponsenorm"), "LocalResponseNorm",
        ctor=lambda e, s: ", ".join([e["size"]] + e.kw("alpha", "beta", "k")),
        functional=lambda e, xs: f"F.local_response_norm({', '.join([xs[0], e['size']] + e.kw('alpha', 'beta', 'k'))})",
        doc="nn.LocalResponseNorm", group="normalization", keeps_shape=True),
    _activation("relu", "ReLU", "F.relu"),
    _activation("relu6", "ReLU6", "F.relu6"),
    _activation("silu", "SiLU", "F.silu"),
    _activation("hardswish", "Hardswish", "F.hardswish"),
    _activation("hardsigmoid", "Hardsigmoid", "F.hardsigmoid"),
    _activation("leaky_relu", "LeakyReLU", "F.leaky_relu", extra=(P("negative_slope", 0.01, "float"),)),
    _activation("elu", "ELU", "F.elu", extra=(P("alpha", 1.0, "float"),)),
    _activation("selu", "SELU", "F.selu"),
    _activation("mish", "Mish", "F.mish"),
    _activation("sigmoid", "Sigmoid", "torch.sigmoid", inplace=False),
    _activation("tanh", "Tanh", "torch.tanh", inplace=False),
    _activation("gelu", "GELU", "F.gelu", inplace=False,
                extra=(P("approximate", "none", "str", choices=("none", "tanh")),)),
    _activation("softplus", "Softplus", "F.softplus", inplace=False,
                extra=(P("beta", 1.0, "float"), P("threshold", 20.0, "float"))),
    Primitive(
        "prelu", (P("num_parameters", 1), P("init", 0.25, "float")), _same, "PReLU",
        ctor=lambda e, s: ", ".join(e.kw("num_parameters", "init")),
        state=lambda a, s: {"weight": ((a["num_parameters"],), True)}, doc="nn.PReLU: a learned negative slope",
        group="activations", keeps_shape=True),
    Primitive(
        "linear", (P("out_features"), P("bias", True, "bool")), _linear_shape, "Linear",
        ctor=lambda e, s: ", ".join([e["in_features"], e["out_features"]] + e.kw("bias")),
        state=lambda a, s: {"weight": ((a["out_features"], s[-1]), True),
                            **({"bias": ((a["out_features"],), True)} if a["bias"] else {})},
        macs=lambda a, s, o: math.prod(o) * s[-1], inferred=(("in_features", -1),),
        doc="nn.Linear on the last dimension", group="linear and dropout"),
    Primitive(
        "dropout", (P("p", 0.5, "float"), P("inplace", False, "bool")), _dropout_shape, "Dropout",
        ctor=lambda e, s: ", ".join(e.kw("p", "inplace")),
        functional=lambda e, xs: f"F.dropout({xs[0]}, {e['p']}, self.training)", inplace=True, doc="nn.Dropout",
        group="linear and dropout", keeps_shape=True),
    Primitive(
        "drop_path", (P("p", 0.0, "float"),), _dropout_shape, "DropPath",
        ctor=lambda e, s: e["p"], functional=lambda e, xs: f"drop_path({xs[0]}, {e['p']}, self.training)",
        support=True, doc="stochastic depth: drops whole samples of a residual branch",
        aliases=("StochasticDepth", "stochastic_depth"),
        group="linear and dropout", keeps_shape=True),
    Primitive(
        "identity", (), _same, "Identity", ctor=lambda e, s: "", functional=lambda e, xs: xs[0], doc="nn.Identity",
        group="linear and dropout", keeps_shape=True),
    Primitive(
        "flatten", (P("start_dim", 1, "dim"), P("end_dim", -1, "dim")), _flatten_shape, "Flatten",
        ctor=lambda e, s: ", ".join(e.kw("start_dim", "end_dim")),
        functional=lambda e, xs: f"torch.flatten({', '.join([xs[0], e['start_dim']] + e.kw('end_dim'))})",
        doc="torch.flatten", group="reshaping"),
    Primitive(
        "unflatten", (P("dim", kind="dim"), P("sizes", kind="sizes")), _unflatten_shape, "Unflatten",
        ctor=lambda e, s: f"{e['dim']}, {e.tuple('sizes')}",
        functional=lambda e, xs: f"{xs[0]}.unflatten({e['dim']}, {e.tuple('sizes')})",
        doc="Tensor.unflatten: one dimension into several", group="reshaping", method=True),
    Primitive(
        "reshape", (P("shape", kind="sizes"),), _reshape_shape,
        functional=_reshape_functional, doc="Tensor.reshape of each sample (the batch dimension stays)",
        group="reshaping", method=True),
    Primitive(
        "permute", (P("dims", kind="ints", least=0),), _permute_shape, "Permute", ctor=lambda e, s: e["dims"],
        functional=lambda e, xs: f"{xs[0]}.permute({e.splat('dims')})", support=True,
        doc="Tensor.permute (a module as torchvision's Permute)", group="reshaping", method=True),
    Primitive(
        "transpose", (P("dim0", kind="dim"), P("dim1", kind="dim")), _transpose_shape,
        functional=lambda e, xs: f"{xs[0]}.transpose({e['dim0']}, {e['dim1']})", doc="Tensor.transpose",
        group="reshaping", method=True),
    Primitive(
        "squeeze", (P("dim", kind="dim"),), _squeeze_shape,
        functional=lambda e, xs: f"{xs[0]}.squeeze({e['dim']})", doc="Tensor.squeeze of one dimension of size 1",
        group="reshaping", method=True),
    Primitive(
        "unsqueeze", (P("dim", kind="dim"),), _unsqueeze_shape,
        functional=lambda e, xs: f"{xs[0]}.unsqueeze({e['dim']})", doc="Tensor.unsqueeze", group="reshaping",
        method=True),
    Primitive(
        "channel_shuffle", (P("groups"),), _channel_shuffle_shape, "ChannelShuffle",
        ctor=lambda e, s: e["groups"], functional=lambda e, xs: f"F.channel_shuffle({xs[0]}, {e['groups']})",
        doc="nn.ChannelShuffle (ShuffleNet)", group="reshaping", keeps_shape=True),
    Primitive(
        "pixel_shuffle", (P("upscale_factor"),), _pixel_shuffle_shape, "PixelShuffle",
        ctor=lambda e, s: e["upscale_factor"],
        functional=lambda e, xs: f"F.pixel_shuffle({xs[0]}, {e['upscale_factor']})", doc="nn.PixelShuffle",
        group="reshaping"),
    Primitive(
        "pixel_unshuffle", (P("downscale_factor"),), _pixel_unshuffle_shape, "PixelUnshuffle",
        ctor=lambda e, s: e["downscale_factor"],
        functional=lambda e, xs: f"F.pixel_unshuffle({xs[0]}, {e['downscale_factor']})", doc="nn.PixelUnshuffle",
        group="reshaping"),
    Primitive(
        "upsample", (P("size", None, "pair"), P("scale_factor", None, "float"),
                     P("mode", "nearest", "str", choices=("nearest", "linear", "bilinear", "bicubic")),
                     P("align_corners", None, "bool")),
        _upsample_shape, "Upsample",
        ctor=lambda e, s: ", ".join(e.kw("size", "scale_factor", "mode", "align_corners")),
        functional=lambda e, xs: f"F.interpolate({', '.join([xs[0]] + e.kw('size', 'scale_factor', 'mode', 'align_corners'))})",
        doc="nn.Upsample (F.interpolate)", group="reshaping", aliases=("interpolate",)),
    Primitive(
        "pad", (P("padding", kind="ints", least=-(2 ** 31)), P("value", 0.0, "float")), _pad_shape,
        functional=lambda e, xs: f"F.pad({', '.join([xs[0], e.tuple('padding')] + e.kw('value'))})", doc="F.pad",
        group="reshaping"),
    _arith("add", "+", "elementwise sum (residual, sum-merge)", many=True),
    _arith("sub", "-", "elementwise difference", many=False),
    _arith("mul", "*", "elementwise product (gating, scaling)", many=True),
    _arith("div", "/", "elementwise quotient", many=False),
    Primitive("matmul", (P("batched", None, "hidden"),), _matmul_shape, inputs="many", max_inputs=2,
              functional=lambda e, xs: f"{xs[0]} @ {xs[1]}", macs=lambda a, s, o: math.prod(o) * s[-1],
              doc="torch.matmul over the last two dimensions", elementwise=True, group="arithmetic"),
    Primitive("neg", (), _same, functional=lambda e, xs: f"-{xs[0]}", doc="-x", elementwise=True,
              group="arithmetic", keeps_shape=True),
    Primitive("pow", (P("exponent", kind="number"),), _same, functional=lambda e, xs: f"{xs[0]} ** {e['exponent']}",
              doc="x ** exponent", elementwise=True, group="arithmetic", keeps_shape=True),
    _math("sqrt", "torch.sqrt", "torch.sqrt"),
    _math("rsqrt", "torch.rsqrt", "torch.rsqrt: 1 / sqrt(x)"),
    _math("exp", "torch.exp", "torch.exp"),
    _math("log", "torch.log", "torch.log (natural)"),
    _math("abs", "torch.abs", "torch.abs"),
    _reduction("mean", "mean", "Tensor.mean: global average pooling over height and width by default"),
    _reduction("sum", "sum", "Tensor.sum over dims"),
    _reduction("amax", "amax", "Tensor.amax: the largest value over dims"),
    Primitive(
        "softmax", (P("dim", 1, "dim"),), _softmax_shape("softmax"), "Softmax", ctor=lambda e, s: f"dim={e['dim']}",
        functional=lambda e, xs: f"torch.softmax({xs[0]}, dim={e['dim']})", doc="torch.softmax", group="arithmetic", keeps_shape=True),
    Primitive(
        "log_softmax", (P("dim", 1, "dim"),), _softmax_shape("log_softmax"), "LogSoftmax",
        ctor=lambda e, s: f"dim={e['dim']}",
        functional=lambda e, xs: f"torch.log_softmax({xs[0]}, dim={e['dim']})", doc="torch.log_softmax",
        group="arithmetic", keeps_shape=True),
    Primitive("concat", (P("dim", 1, "dim"),), _concat_shape("concat"), inputs="many",
              functional=lambda e, xs: f"torch.cat([{', '.join(xs)}], {e['dim']})", doc="torch.cat", aliases=("cat",),
              group="joining and splitting"),
    Primitive("stack", (P("dim", 1, "dim"),), _concat_shape("stack", stack=True), inputs="many",
              functional=lambda e, xs: f"torch.stack([{', '.join(xs)}], {e['dim']})",
              doc="torch.stack: a new dimension", group="joining and splitting"),
    Primitive("split", (P("sizes", kind="ints"), P("dim", 1, "dim")), _split_shape, inputs="list",
              functional=lambda e, xs: f"torch.split({xs[0]}, {e['sizes']}, dim={e['dim']})", doc="torch.split",
              group="joining and splitting"),
    Primitive("chunk", (P("chunks"), P("dim", 1, "dim")), _chunk_shape, inputs="list",
              functional=lambda e, xs: f"torch.chunk({xs[0]}, {e['chunks']}, dim={e['dim']})", doc="torch.chunk",
              group="joining and splitting"),
    Primitive("slice", (P("start", least=0), P("stop")), _slice_shape,
              functional=lambda e, xs: f"{xs[0]}[:, {e['start']}:{e['stop']}]", doc="a range of channels",
              group="joining and splitting", method=True),
]}


@dataclass(frozen=True)
class Initializer:
    """How a block's free parameter (`param gamma = full([dim], 1e-6)`) is filled: its arguments after the
    shape, and the torch it is written as."""
    name: str
    params: tuple
    doc: str


INITIALIZERS = {i.name: i for i in [
    Initializer("zeros", (), "torch.zeros(shape)"),
    Initializer("ones", (), "torch.ones(shape)"),
    Initializer("full", (P("value", kind="float"),), "torch.full(shape, value)"),
    Initializer("normal", (P("std", 1.0, "float"), P("mean", 0.0, "float")), "nn.init.normal_(t, mean, std)"),
    Initializer("trunc_normal", (P("std", 1.0, "float"), P("mean", 0.0, "float")),
                "nn.init.trunc_normal_(t, mean, std, a=-2.0, b=2.0)"),
]}

# the graph op of a free parameter or buffer: no inputs; its shape is its whole torch shape; its state is
# itself, under its module path (attrs: shape, init, the initializer's arguments, buffer)
PARAMETER = Primitive("parameter", (), lambda a, shapes: tuple(a["shape"]),
                      state=lambda a, s: {"": (tuple(a["shape"]), not a["buffer"])})


def primitive_of(op: str) -> Primitive:
    """The primitive of a graph node's op."""
    return PARAMETER if op == "parameter" else PRIMITIVES[op]


# the shape rule of each primitive, in words, for the reference table (`archsmith primitives`)
_SAME = "same as its input"
_RULES = {
    "conv2d": "[C, H, W] → [out_channels, H', W']; `groups` divides both channel counts",
    "conv1d": "[C, L] → [out_channels, L']; `groups` divides both channel counts",
    "maxpool2d": "[C, H, W] → [C, H', W']; padding at most half the window",
    "avgpool2d": "[C, H, W] → [C, H', W']; padding at most half the window",
    "maxpool1d": "[C, L] → [C, L']", "avgpool1d": "[C, L] → [C, L']",
    "adaptive_avgpool2d": "[C, H, W] → [C, *output_size]", "adaptive_maxpool2d": "[C, H, W] → [C, *output_size]",
    "adaptive_avgpool1d": "[C, L] → [C, output_size]", "adaptive_maxpool1d": "[C, L] → [C, output_size]",
    "batchnorm2d": "[C, H, W], same", "batchnorm1d": "[C] or [C, L], same",
    "layernorm": "any, same; normalizes the last dimension",
    "layernorm2d": "[C, H, W], same; normalizes the channels at each position",
    "groupnorm": "[C, ...], same; `num_groups` divides C",
    "instancenorm2d": "[C, H, W], same",
    "localresponsenorm": "[C, L] or [C, H, W], same",
    "prelu": _SAME + "; `num_parameters` is 1 or C",
    "linear": "[..., F] → [..., out_features]",
    "dropout": _SAME, "drop_path": _SAME, "identity": _SAME,
    "flatten": "merges dims `start_dim` to `end_dim`",
    "unflatten": "splits dim `dim` into `sizes` (one may be -1)",
    "reshape": "any → `shape` (one may be -1), same number of elements per sample",
    "permute": "reorders the dims; `dims` starts with 0, the batch",
    "transpose": "swaps two dims", "squeeze": "removes dim `dim`, which has size 1",
    "unsqueeze": "inserts a dim of size 1 at `dim`",
    "channel_shuffle": "[C, ...], same; `groups` divides C",
    "pixel_shuffle": "[C, H, W] → [C / r², H·r, W·r]",
    "pixel_unshuffle": "[C, H, W] → [C·r², H / r, W / r]",
    "upsample": "[C, H, W] or [C, L] → `size`, or the sizes times `scale_factor` (one of the two)",
    "pad": "adds `[left, right]` pairs to the last dims, the last dim first",
    "add": "operands broadcast as in torch", "sub": "operands broadcast as in torch",
    "mul": "operands broadcast as in torch", "div": "operands broadcast as in torch",
    "matmul": "[..., n, k] and [..., k, m] → [..., n, m]; the leading dims broadcast",
    "neg": _SAME, "pow": _SAME, "sqrt": _SAME, "rsqrt": _SAME, "exp": _SAME, "log": _SAME, "abs": _SAME,
    "mean": "drops the dims `dim` (or keeps them as 1 with `keepdim`)",
    "sum": "drops the dims `dim` (or keeps them as 1 with `keepdim`)",
    "amax": "drops the dims `dim` (or keeps them as 1 with `keepdim`)",
    "softmax": _SAME, "log_softmax": _SAME,
    "concat": "sizes along `dim` add up; the other dims match",
    "stack": "equal shapes; a new dim of the operands' count at `dim`",
    "split": "a list: `sizes` along `dim`, adding up to its size",
    "chunk": "a list of `chunks` equal parts along `dim`",
    "slice": "[C, ...] → [stop - start, ...]",
}
for _name, _prim in PRIMITIVES.items():
    _prim.rule = _RULES.get(_name) or (_SAME if _prim.group == "activations" else "")
