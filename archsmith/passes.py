"""Passes over an elaborated graph: pure functions that check it or measure it."""
from __future__ import annotations

import math

import networkx as nx

from .errors import SpecError
from .primitives import primitive_of


class GraphError(Exception):
    """The graph breaks an invariant: a bug in archsmith, never a mistake in a spec."""


def validate(graph: nx.DiGraph) -> None:
    """Check what every later phase relies on (after torch.fx's Graph.lint): the graph is acyclic, every
    op's inputs come before it, every module path is unique, and each stored shape is what the op's
    shape rule gives for its inputs' shapes."""
    if not nx.is_directed_acyclic_graph(graph):
        raise GraphError("the graph has a cycle")
    modules = {}
    for n, data in graph.nodes(data=True):
        for src, index in data["inputs"]:
            if src >= n:
                raise GraphError(f"node {n} reads node {src}, which comes after it")
        op = data["op"]
        if op in ("input", "output"):
            continue
        shapes = [output_shape(graph, src, index) for src, index in data["inputs"]]
        expected = primitive_of(op).shape(data["attrs"], shapes)
        if _as_tuple(expected) != _as_tuple(data["shape"]):
            raise GraphError(f"node {n} ({op}) has shape {data['shape']}, its rule gives {expected}")
        module = data["module"]
        if module is not None:
            first = modules.setdefault(module, (op, data["attrs"]))
            if first != (op, data["attrs"]):
                raise GraphError(f"module path {module} names two different layers")


# Ops whose output may share memory with their first input: torch views, and ops that can return the
# input itself (identity; dropout and drop-path in eval). An in-place op's output is its input too.
ALIASING = {"slice", "split", "chunk", "flatten", "reshape", "permute", "transpose", "squeeze", "unsqueeze",
            "unflatten", "identity", "dropout", "drop_path"}


def check_inplace(graph: nx.DiGraph) -> None:
    """An op with inplace=true overwrites its input, and every view of it: reject it where a tensor
    sharing that memory, made before it, is read again later (nodes are numbered in the order they
    run), which would silently change the later result."""
    roots = {}  # (node, output index) -> the tensors whose memory it may share
    for n, data in graph.nodes(data=True):
        outputs = len(data["shape"]) if isinstance(data["shape"], list) else 1
        for index in range(outputs):
            if data["inputs"] and (data["op"] in ALIASING or data["attrs"].get("inplace")):
                roots[(n, index)] = roots.get(tuple(data["inputs"][0]), {tuple(data["inputs"][0])})
            else:
                roots[(n, index)] = {(n, index)}
        if not data["attrs"].get("inplace"):
            continue
        (source,) = data["inputs"]
        overwritten = roots[tuple(source)]
        later = sorted((m, value) for value, shared in roots.items() if value[0] < n and shared & overwritten
                       for m in graph.successors(value[0]) if m > n and list(value) in map(list, graph.nodes[m]["inputs"]))
        if later:
            m, value = later[0]
            reader = graph.nodes[m]
            if reader["op"] == "output":
                what, notes = "the model's output", ()
            else:
                what, notes = f"line {reader['span'].line}", [("read again here", reader["span"])]
            shared = "" if value == tuple(source) else " (a view, or the tensor it views, shares its memory)"
            raise SpecError(f"in-place {data['op']} overwrites a tensor that {what} reads afterwards{shared}",
                            data["span"], hint="drop `inplace=true` here", notes=notes)


def output_shape(graph, node, index):
    """The shape of output `index` of `node` (ops like split have several)."""
    shape = graph.nodes[node]["shape"]
    return shape[index] if isinstance(shape, list) else shape


def _as_tuple(shape):
    return [tuple(s) for s in shape] if isinstance(shape, list) else tuple(shape)


def _modules(graph: nx.DiGraph):
    """(node, primitive, attrs, input shape) of each module's first application, once however often
    it is applied."""
    seen = set()
    for n, data in graph.nodes(data=True):
        if data["op"] in ("input", "output") or data["module"] is None or data["module"] in seen:
            continue
        seen.add(data["module"])
        yield n, primitive_of(data["op"]), data["attrs"], _input_shape(graph, data)


def _input_shape(graph, data):
    return output_shape(graph, *data["inputs"][0]) if data["inputs"] else ()


def node_parameters(graph: nx.DiGraph) -> dict:
    """Trainable parameters per node: those of the module it applies, at its first application only."""
    counts = dict.fromkeys(graph.nodes, 0)
    for n, prim, attrs, in_shape in _modules(graph):
        counts[n] = sum(math.prod(shape) for shape, trainable in prim.state(attrs, in_shape).values() if trainable)
    return counts


def module_parameters(graph: nx.DiGraph) -> dict:
    """Module path (a checkpoint key prefix) -> its trainable parameters, for each module with state."""
    counts = node_parameters(graph)
    return {graph.nodes[n]["module"]: counts[n] for n, *_ in _modules(graph)}


def parameter_count(graph: nx.DiGraph) -> int:
    """Trainable parameters, counting each module once however often it is applied."""
    return sum(node_parameters(graph).values())


def node_macs(graph: nx.DiGraph) -> dict:
    """Multiply-accumulates of convolutions and linear layers per node, for one sample in eval mode
    (0 for what runs only in training)."""
    return {n: 0 if data["op"] in ("input", "output") or data.get("training")
            else primitive_of(data["op"]).macs(data["attrs"], _input_shape(graph, data), data["shape"])
            for n, data in graph.nodes(data=True)}


def mac_count(graph: nx.DiGraph) -> int:
    """Multiply-accumulates of convolutions and linear layers for one sample, in eval mode."""
    return sum(node_macs(graph).values())


def node_activation_bytes(graph: nx.DiGraph, bytes_per_value: int = 4) -> dict:
    """Bytes of the tensors each node makes for one sample in an eval forward pass: 0 for views,
    in-place ops and ops that may return their input (`ALIASING`), free parameters (which are not
    activations) and what runs only in training."""
    sizes = {}
    for n, data in graph.nodes(data=True):
        if (data["op"] in ("input", "output", "parameter") or data["op"] in ALIASING or data["attrs"].get("inplace")
                or data.get("training")):
            sizes[n] = 0
        else:
            shapes = data["shape"] if isinstance(data["shape"], list) else [data["shape"]]
            sizes[n] = bytes_per_value * sum(math.prod(shape) for shape in shapes)
    return sizes


def state_dict_size(graph: nx.DiGraph) -> int:
    """Entries the generated module's state_dict will have."""
    return sum(len(prim.state(attrs, in_shape)) for _, prim, attrs, in_shape in _modules(graph))
