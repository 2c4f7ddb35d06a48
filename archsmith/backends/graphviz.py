"""Graphviz backend: a diagram of a model's top-level dataflow, with each stage as a cluster and runs
of identical blocks collapsed into one box ("Bottleneck x5"). Building the DOT source needs no binary;
rendering needs `dot`."""
from __future__ import annotations

from graphviz import Digraph, escape

from ..ir import Instance, Layer, Model
from ..primitives import fmt_shape


def diagram(model: Model, class_names: dict = None) -> Digraph:
    """`class_names`: id(instance) -> generated class name, to label blocks as the code names them."""
    if class_names is None:
        from .pytorch import class_names as names_of
        class_names = names_of([model])
    g = Digraph(model.name, graph_attr={"rankdir": "TB", "fontname": "Helvetica", "label": model.name,
                                        "labelloc": "t"},
                node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "#eef3fb",
                           "fontname": "Helvetica", "fontsize": "10"},
                edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#555555"})
    root = model.root
    g.node("input", f"input\n{fmt_shape(model.input_shape)}", shape="oval", fillcolor="#ffffff")
    producer = {root.input.key: "input"}
    for i, step in enumerate(root.steps):
        if step.kind == "alias":
            continue
        node = f"s{i}"
        if step.kind == "apply" and step.layer.kind == "seq" and any(c.kind == "block" for c in step.layer.children):
            first, last = _stage(g, node, step.layer, class_names)
            entry, exit_ = first, last
        else:
            label = _label(step)
            g.node(node, label)
            entry = exit_ = node
        for k in step.inputs:
            g.edge(producer[k], entry, label=_edge_shape(model, k))
        for k in step.outputs:
            producer[k] = exit_
    g.node("output", f"output\n{fmt_shape(model.output_shape)}", shape="oval", fillcolor="#ffffff")
    g.edge(producer[root.output.key], "output", label=fmt_shape(model.output_shape))
    return g


def _label(step) -> str:
    if step.kind == "func":
        return step.prim.name
    layer = step.layer
    if layer.kind == "prim":
        return f"{layer.name}\n{layer.prim.name}{_args(layer)}"
    return f"{layer.name}\n{layer.kind}"


def _args(layer: Layer) -> str:
    a = layer.attrs
    if layer.prim.name == "conv2d":
        k = a["kernel_size"]
        k = f"{k}x{k}" if isinstance(k, int) else "x".join(map(str, k))
        s = f", /{a['stride']}" if a["stride"] != 1 else ""
        return f" {k}, {a['out_channels']}{s}"
    if layer.prim.name == "linear":
        return f" {a['out_features']}"
    return ""


def _stage(g, node, seq: Layer, class_names):
    """A seq of blocks as a cluster; consecutive blocks of one class are one box."""
    runs = []
    for child in seq.children:
        name = class_names.get(id(child.instance), child.instance.block.name) if child.kind == "block" else child.name
        if runs and runs[-1][0] == name and child.kind == "block":
            runs[-1][1].append(child)
        else:
            runs.append((name, [child]))
    ids = []
    with g.subgraph(name=f"cluster_{node}") as c:
        c.attr(label=seq.name, style="rounded", color="#8899bb")
        for j, (name, children) in enumerate(runs):
            nid = f"{node}_{j}"
            count = f" \u00d7{len(children)}" if len(children) > 1 else ""
            first = children[0]
            c.node(nid, f"{escape(name)}{count}\n{fmt_shape(first.in_shape)} \u2192 {fmt_shape(children[-1].out_shape)}",
                   fillcolor="#fdf1dc")
            if ids:
                c.edge(ids[-1], nid)
            ids.append(nid)
    return ids[0], ids[-1]


def _edge_shape(model, key):
    shape = model.graph.nodes[key[0]]["shape"]
    return fmt_shape(shape[key[1]] if isinstance(shape, list) else shape)
