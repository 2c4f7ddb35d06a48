"""A reference that does not go through the code generator: the elaborated graph run op by op with
torch.nn.functional, reading each layer's weights from a module by its checkpoint key, and the
state_dict that graph implies."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _n(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _norm_entries(c, affine, running, bias=True):
    out = {}
    if affine:
        out["weight"] = (c,)
        if bias:
            out["bias"] = (c,)
    if running:
        out.update(running_mean=(c,), running_var=(c,), num_batches_tracked=())
    return out


def _state_of(op, a, in_shape):
    """{key under the layer: shape} of one layer with state."""
    if op in ("conv2d", "conv1d"):
        n = int(op[-2])
        out = {"weight": (a["out_channels"], a["in_channels"] // a["groups"]) + _n(a["kernel_size"], n)}
        if a["bias"]:
            out["bias"] = (a["out_channels"],)
        return out
    if op in ("batchnorm2d", "batchnorm1d"):
        return _norm_entries(a["num_features"], True, True)
    if op in ("layernorm", "layernorm2d"):
        return _norm_entries(a["normalized_shape"], a["elementwise_affine"], False, a["bias"])
    if op == "groupnorm":
        return _norm_entries(a["num_channels"], a["affine"], False)
    if op == "instancenorm2d":
        return _norm_entries(a["num_features"], a["affine"], a["track_running_stats"])
    if op == "linear":
        out = {"weight": (a["out_features"], a["in_features"])}
        if a["bias"]:
            out["bias"] = (a["out_features"],)
        return out
    if op == "prelu":
        return {"weight": (a["num_parameters"],)}
    if op == "parameter":
        return {"": tuple(a["shape"])}
    return {}


def expected_state(graph) -> dict:
    """{checkpoint key: shape} of every layer with state in the graph."""
    out = {}
    for _, node in graph.nodes(data=True):
        path = node["module"]
        if path is None:
            continue
        for key, shape in _state_of(node["op"], node["attrs"], None).items():
            out[f"{path}.{key}" if key else path] = shape
    return out


_ACTIVATIONS = {
    "relu": F.relu, "relu6": F.relu6, "silu": F.silu, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "selu": F.selu, "mish": F.mish,
    "gelu": lambda x, a: F.gelu(x, approximate=a["approximate"]),
    "leaky_relu": lambda x, a: F.leaky_relu(x, a["negative_slope"]),
    "elu": lambda x, a: F.elu(x, a["alpha"]),
    "softplus": lambda x, a: F.softplus(x, a["beta"], a["threshold"]),
    "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "exp": torch.exp, "log": torch.log, "abs": torch.abs,
    "neg": torch.neg,
}
_TAKES_ATTRS = {"gelu", "leaky_relu", "elu", "softplus"}


def _arith(op, ins, a):
    fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[op]
    operands = list(ins)
    if a.get("scalar") is not None:
        operands.insert(0 if a["scalar_first"] else len(operands), torch.tensor(a["scalar"]))
    out = operands[0]
    for t in operands[1:]:
        out = fn(out, t)
    return out


def _op(op, a, ins, w, x):
    """The output of one graph node, by torch.nn.functional."""
    if op == "input":
        return x
    if op == "output":
        return ins[0]
    if op == "parameter":
        return w("")
    if op in ("conv2d", "conv1d"):
        conv = F.conv2d if op == "conv2d" else F.conv1d
        return conv(ins[0], w("weight"), w("bias"), a["stride"], a["padding"], a["dilation"], a["groups"])
    if op in ("batchnorm2d", "batchnorm1d"):
        return F.batch_norm(ins[0], w("running_mean"), w("running_var"), w("weight"), w("bias"), False, 0.0, a["eps"])
    if op == "layernorm":
        return F.layer_norm(ins[0], (a["normalized_shape"],), w("weight"), w("bias"), a["eps"])
    if op == "layernorm2d":
        t = F.layer_norm(ins[0].permute(0, 2, 3, 1), (a["normalized_shape"],), w("weight"), w("bias"), a["eps"])
        return t.permute(0, 3, 1, 2)
    if op == "groupnorm":
        return F.group_norm(ins[0], a["num_groups"], w("weight"), w("bias"), a["eps"])
    if op == "instancenorm2d":
        use_stats = a["track_running_stats"]
        return F.instance_norm(ins[0], w("running_mean") if use_stats else None,
                               w("running_var") if use_stats else None, w("weight"), w("bias"),
                               not use_stats, 0.0, a["eps"])
    if op == "localresponsenorm":
        return F.local_response_norm(ins[0], a["size"], a["alpha"], a["beta"], a["k"])
    if op == "linear":
        return F.linear(ins[0], w("weight"), w("bias"))
    if op == "prelu":
        return F.prelu(ins[0], w("weight"))
    if op in _ACTIVATIONS:
        fn = _ACTIVATIONS[op]
        return fn(ins[0], a) if op in _TAKES_ATTRS else fn(ins[0])
    if op in ("maxpool2d", "maxpool1d"):
        pool = F.max_pool2d if op == "maxpool2d" else F.max_pool1d
        stride = a["stride"] if a["stride"] is not None else a["kernel_size"]
        return pool(ins[0], a["kernel_size"], stride, a["padding"], a["dilation"], a["ceil_mode"])
    if op in ("avgpool2d", "avgpool1d"):
        pool = F.avg_pool2d if op == "avgpool2d" else F.avg_pool1d
        stride = a["stride"] if a["stride"] is not None else a["kernel_size"]
        return pool(ins[0], a["kernel_size"], stride, a["padding"], a["ceil_mode"], a["count_include_pad"])
    if op.startswith("adaptive_"):
        return getattr(F, op.replace("pool", "_pool"))(ins[0], a["output_size"])
    if op in ("dropout", "drop_path", "identity"):
        return ins[0]
    if op == "flatten":
        return torch.flatten(ins[0], a["start_dim"], a["end_dim"])
    if op == "unflatten":
        return torch.unflatten(ins[0], a["dim"], a["sizes"])
    if op == "reshape":
        return torch.reshape(ins[0], [ins[0].shape[0]] + list(a["shape"]))
    if op == "permute":
        return torch.permute(ins[0], a["dims"])
    if op == "transpose":
        return torch.transpose(ins[0], a["dim0"], a["dim1"])
    if op == "squeeze":
        return torch.squeeze(ins[0], a["dim"])
    if op == "unsqueeze":
        return torch.unsqueeze(ins[0], a["dim"])
    if op == "channel_shuffle":
        n, c = ins[0].shape[:2]
        g = a["groups"]
        rest = ins[0].shape[2:]
        return ins[0].reshape(n, g, c // g, *rest).transpose(1, 2).reshape(n, c, *rest)
    if op == "pixel_shuffle":
        return F.pixel_shuffle(ins[0], a["upscale_factor"])
    if op == "pixel_unshuffle":
        return F.pixel_unshuffle(ins[0], a["downscale_factor"])
    if op == "upsample":
        return F.interpolate(ins[0], a["size"], a["scale_factor"], a["mode"], a["align_corners"])
    if op == "pad":
        return F.pad(ins[0], tuple(a["padding"]), value=a["value"])
    if op in ("add", "sub", "mul", "div"):
        return _arith(op, ins, a)
    if op == "matmul":
        return torch.matmul(*ins)
    if op == "pow":
        return torch.pow(ins[0], a["exponent"])
    if op in ("mean", "sum", "amax"):
        return getattr(torch, op)(ins[0], a["dim"], keepdim=a["keepdim"])
    if op == "softmax":
        return F.softmax(ins[0], a["dim"])
    if op == "log_softmax":
        return F.log_softmax(ins[0], a["dim"])
    if op == "concat":
        return torch.cat(ins, a["dim"])
    if op == "stack":
        return torch.stack(ins, a["dim"])
    if op == "split":
        return torch.split(ins[0], list(a["sizes"]), a["dim"])
    if op == "chunk":
        return torch.chunk(ins[0], a["chunks"], a["dim"])
    if op == "slice":
        return ins[0][:, a["start"]:a["stop"]]
    raise NotImplementedError(op)


def run_graph(graph, module, x: torch.Tensor) -> torch.Tensor:
    """The graph's eval-mode output for input x, with `module`'s weights."""
    state = module.state_dict()
    values = {}
    result = None
    for n in sorted(graph.nodes):
        node = graph.nodes[n]
        op, a, path = node["op"], node["attrs"], node["module"]
        ins = [values[k] for k in node["inputs"]]

        def w(k, path=path):
            return state.get(f"{path}.{k}" if k else path) if path else None
        out = _op(op, a, ins, w, x)
        if isinstance(out, (tuple, list)):
            for i, t in enumerate(out):
                values[(n, i)] = t
        else:
            values[(n, 0)] = out
        result = out
    return result
