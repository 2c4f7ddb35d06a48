"""A reference that does not go through the code generator: the elaborated graph run op by op with
torch.nn.functional, reading each layer's weights from a module by its checkpoint key, and the
state_dict that graph implies."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def expected_state(graph) -> dict:
    """{checkpoint key: shape} of every layer with weights in the graph."""
    out = {}
    for _, node in graph.nodes(data=True):
        path, op, a = node["module"], node["op"], node["attrs"]
        if path is None:
            continue
        if op == "conv2d":
            kh, kw = _pair(a["kernel_size"])
            out[f"{path}.weight"] = (a["out_channels"], a["in_channels"] // a["groups"], kh, kw)
            if a["bias"]:
                out[f"{path}.bias"] = (a["out_channels"],)
        elif op in ("batchnorm2d", "batchnorm1d"):
            c = a["num_features"]
            for k in ("weight", "bias", "running_mean", "running_var"):
                out[f"{path}.{k}"] = (c,)
            out[f"{path}.num_batches_tracked"] = ()
        elif op == "linear":
            out[f"{path}.weight"] = (a["out_features"], a["in_features"])
            if a["bias"]:
                out[f"{path}.bias"] = (a["out_features"],)
    return out


_ACTIVATIONS = {
    "relu": F.relu, "relu6": F.relu6, "silu": F.silu, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": F.gelu,
    "leaky_relu": lambda x, a: F.leaky_relu(x, a["negative_slope"]),
    "elu": lambda x, a: F.elu(x, a["alpha"]),
}


def run_graph(graph, module, x: torch.Tensor) -> torch.Tensor:
    """The graph's eval-mode output for input x, with `module`'s weights."""
    state = module.state_dict()
    values = {}
    for n in sorted(graph.nodes):
        node = graph.nodes[n]
        op, a, path = node["op"], node["attrs"], node["module"]
        ins = [values[k] for k in node["inputs"]]
        w = (lambda k: state.get(f"{path}.{k}")) if path else None
        if op == "input":
            out = x
        elif op == "output":
            out = ins[0]
        elif op == "conv2d":
            out = F.conv2d(ins[0], w("weight"), w("bias"), _pair(a["stride"]), _pair(a["padding"]),
                           _pair(a["dilation"]), a["groups"])
        elif op in ("batchnorm2d", "batchnorm1d"):
            out = F.batch_norm(ins[0], w("running_mean"), w("running_var"), w("weight"), w("bias"), False, 0.0,
                               a["eps"])
        elif op == "linear":
            out = F.linear(ins[0], w("weight"), w("bias"))
        elif op in _ACTIVATIONS:
            fn = _ACTIVATIONS[op]
            out = fn(ins[0], a) if op in ("leaky_relu", "elu") else fn(ins[0])
        elif op == "maxpool2d":
            out = F.max_pool2d(ins[0], a["kernel_size"], a["stride"] if a["stride"] is not None else a["kernel_size"],
                               a["padding"], a["dilation"], a["ceil_mode"])
        elif op == "avgpool2d":
            out = F.avg_pool2d(ins[0], a["kernel_size"], a["stride"] if a["stride"] is not None else a["kernel_size"],
                               a["padding"], a["ceil_mode"], a["count_include_pad"])
        elif op == "adaptive_avgpool2d":
            out = F.adaptive_avg_pool2d(ins[0], a["output_size"])
        elif op == "adaptive_maxpool2d":
            out = F.adaptive_max_pool2d(ins[0], a["output_size"])
        elif op in ("dropout", "drop_path", "identity"):
            out = ins[0]
        elif op == "flatten":
            out = torch.flatten(ins[0], a["start_dim"])
        elif op == "softmax":
            out = torch.softmax(ins[0], a["dim"])
        elif op == "mean":
            out = ins[0].mean(tuple(a["dim"]), keepdim=a["keepdim"])
        elif op == "pad":
            out = F.pad(ins[0], tuple(a["padding"]), value=a["value"])
        elif op == "add":
            out = ins[0]
            for t in ins[1:]:
                out = out + t
        elif op == "mul":
            out = ins[0]
            for t in ins[1:]:
                out = out * t
        elif op == "concat":
            out = torch.cat(ins, a["dim"])
        elif op == "split":
            out = torch.split(ins[0], list(a["sizes"]), 1)
        elif op == "chunk":
            out = torch.chunk(ins[0], a["chunks"], 1)
        elif op == "slice":
            out = ins[0][:, a["start"]:a["stop"]]
        else:
            raise NotImplementedError(op)
        if isinstance(out, (tuple, list)):
            for i, t in enumerate(out):
                values[(n, i)] = t
        else:
            values[(n, 0)] = out
        result = out
    return result
