"""Graphviz backend: a model's dataflow with shapes on the edges.

Each `seq` is a cluster. A convolution or linear layer and the normalisation, activation and dropout
after it are one node, as in the papers' figures. Block instances are one node each, and runs of
instances of one class are collapsed ("Bottleneck x5"); with `expand=True` the inside of every
distinct block is drawn too, once. Building the DOT source needs no binary; rendering needs `dot`."""
from __future__ import annotations

import html
import itertools

from graphviz import Digraph

from ..ir import Instance, Layer, Model
from ..passes import output_shape
from ..primitives import PRIMITIVES, fmt_shape

# ops drawn inside the node of the layer before them: normalisations, activations, dropout
_FOLLOWERS = {name for name, prim in PRIMITIVES.items() if prim.group in ("normalization", "activations")} | {
    "dropout", "drop_path"}
_SYMBOLS = {"add": "+", "sub": "\u2212", "mul": "\u00d7", "div": "\u00f7"}
_COLORS = {"layer": "#eef3fb", "block": "#fdf1dc", "op": "#ffffff"}


def diagram(model: Model, expand: bool = False, class_names: dict = None) -> Digraph:
    """`class_names`: id(instance) -> its label, by default the generated class names."""
    if class_names is None:
        from .pytorch import class_names as names_of
        class_names = names_of([model])
    g = Digraph(model.name, graph_attr={"rankdir": "TB", "fontname": "Helvetica", "label": model.name,
                                        "labelloc": "t", "fontsize": "14"},
                node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10"},
                edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#555555"})
    drawer = _Drawer(g, class_names, model.graph)
    drawer.instance(g, model.root, f"input<BR/>{fmt_shape(model.input_shape)}",
                    f"output<BR/>{fmt_shape(model.output_shape)}")
    if expand:
        drawn = set()
        for inst in _instances(model.root):
            label = class_names.get(id(inst), inst.block.name)
            if label in drawn:
                continue
            drawn.add(label)
            with g.subgraph(name=f"cluster_{drawer.fresh()}") as c:
                c.attr(label=f"{label} (as {inst.path})", style="rounded,dashed", color="#999999")
                drawer.instance(c, inst, "x", "out")
    return g


def _instances(inst: Instance):
    for layer in inst.layers:
        yield from _layer_instances(layer)


def _layer_instances(layer: Layer):
    if layer.kind == "block":
        yield layer.instance
        yield from _instances(layer.instance)
    elif layer.kind == "seq":
        for child in layer.children:
            yield from _layer_instances(child)


class _Drawer:
    def __init__(self, g, class_names, graph):
        self.g = g
        self.class_names = class_names
        self.graph = graph  # the model's op graph, where every tensor's shape is
        self.counter = itertools.count()

    def shape(self, key):
        return output_shape(self.graph, *key)

    def fresh(self) -> str:
        return f"n{next(self.counter)}"

    def node(self, graph, label: str, kind: str, **attrs) -> str:
        nid = self.fresh()
        graph.node(nid, f"<{label}>", fillcolor=_COLORS[kind], **attrs)
        return nid

    def instance(self, graph, inst: Instance, in_label, out_label):
        """An instance's forward: its steps, from an input node to an output node."""
        entry = self.node(graph, in_label, "op", shape="oval")
        producer = {k: entry for k in inst.input_keys}
        for chain in _chains(inst):
            first, last = chain[0], chain[-1]
            if first.kind == "apply" and first.layer.kind == "seq":
                entry, exit_ = self.seq(graph, first.layer)
            elif first.kind == "param":
                entry = exit_ = self.node(graph, self.layer_label(first.layer), "layer", shape="note")
            elif first.kind == "apply":
                label = "<BR/>".join([self.layer_label(first.layer)] +
                                     [html.escape(_describe(s.layer) if s.layer else s.prim.name) for s in chain[1:]])
                entry = exit_ = self.node(graph, label, self.kind_of(first.layer))
            else:
                symbol = _SYMBOLS.get(first.prim.name)
                entry = exit_ = self.node(graph, html.escape(symbol or first.prim.name), "op",
                                          **({"shape": "circle"} if symbol else {}))
            for k in first.inputs:
                graph.edge(producer[k], entry, label=fmt_shape(self.shape(k)))
            for k in last.outputs:
                producer[k] = exit_
        out = self.node(graph, out_label, "op", shape="oval")
        graph.edge(producer[inst.output.key], out, label=fmt_shape(self.shape(inst.output.key)))

    def kind_of(self, layer):
        return "block" if layer.kind == "block" else "layer"

    def layer_label(self, layer: Layer, count: int = 1) -> str:
        """Its name (unless a seq numbers it) in bold, then what it is."""
        name = "" if layer.name.isdigit() else f"<B>{html.escape(layer.name)}</B><BR/>"
        if layer.kind == "block":
            label = html.escape(self.class_names.get(id(layer.instance), layer.instance.block.name))
            times = f" \u00d7{count}" if count > 1 else ""
            return f"{name}{label}{times}"
        return f"{name}{html.escape(_describe(layer))}"

    def seq(self, graph, seq: Layer):
        """A seq as a cluster of its children; returns its first and last node."""
        nodes = []
        with graph.subgraph(name=f"cluster_{self.fresh()}") as c:
            c.attr(label=seq.name, style="rounded", color="#8899bb", fontname="Helvetica")
            for group in _groups(seq.children, self.class_names):
                first = group[0]
                if first.kind == "seq":
                    entry, exit_ = self.seq(c, first)
                elif first.kind == "block":
                    label = self.layer_label(first, len(group))
                    if len(group) > 1:
                        label += f"<BR/>{fmt_shape(first.in_shape)} \u2192 {fmt_shape(group[-1].out_shape)}"
                    entry = exit_ = self.node(c, label, "block")
                else:
                    text = "<BR/>".join(html.escape(_describe(l)) for l in group)
                    entry = exit_ = self.node(c, text, "layer")
                if nodes:
                    c.edge(nodes[-1][1], entry, label=fmt_shape(nodes[-1][2]))
                nodes.append((entry, exit_, group[-1].out_shape))
        return nodes[0][0], nodes[-1][1]


def _chains(inst: Instance) -> list:
    """The steps of a forward as the nodes to draw: a primitive layer takes the followers that
    directly consume its output (conv1, bn1, relu: one node)."""
    readers = {}
    for step in inst.steps:
        for k in step.inputs:
            readers[k] = readers.get(k, 0) + 1
    readers[inst.output.key] = readers.get(inst.output.key, 0) + 1
    chains = []
    for step in inst.steps:
        if step.kind == "alias":
            continue
        last = chains[-1][-1] if chains else None
        op = step.layer.prim.name if step.kind == "apply" and step.layer.kind == "prim" else (
            step.prim.name if step.kind == "func" else None)
        follows = (op in _FOLLOWERS and len(step.inputs) == 1
                   and last is not None and last.kind == "apply" and last.layer.kind == "prim"
                   and step.inputs == last.outputs and readers[step.inputs[0]] == 1)
        if follows:
            chains[-1].append(step)
        else:
            chains.append([step])
    return chains


def _groups(children, class_names):
    """Consecutive blocks of one class together; a layer with the followers after it together."""
    groups = []
    for child in children:
        last = groups[-1] if groups else None
        if child.kind == "block" and last and last[0].kind == "block" and \
                class_names.get(id(child.instance)) == class_names.get(id(last[0].instance)):
            last.append(child)
        elif child.kind == "prim" and child.prim.name in _FOLLOWERS and last and last[0].kind == "prim":
            last.append(child)
        else:
            groups.append([child])
    return groups


def _describe(layer: Layer) -> str:
    """`conv 3x3, 64, /2`: a primitive layer as the papers' figures write it."""
    if layer.kind == "param":
        return f"{'buffer' if layer.attrs['buffer'] else 'param'} {fmt_shape(layer.out_shape)}"
    a, op = layer.attrs, layer.prim.name
    if op in ("conv2d", "conv1d"):
        k = a["kernel_size"]
        k = f"{k}x{k}" if isinstance(k, int) and op == "conv2d" else "x".join(map(str, k)) if op == "conv2d" else k
        extra = "".join([f", /{a['stride']}" if a["stride"] != 1 else "",
                         f", groups {a['groups']}" if a["groups"] != 1 else ""])
        return f"conv {k}, {a['out_channels']}{extra}"
    if op == "linear":
        return f"fc, {a['out_features']}"
    if op[:-2] in ("maxpool", "avgpool"):
        return f"{op[:3]} pool {a['kernel_size']}, /{a['stride'] if a['stride'] is not None else a['kernel_size']}"
    if op.startswith("adaptive"):
        return f"adaptive {op.split('_')[1][:3]} pool {fmt_shape(layer.out_shape[1:])}"
    if op in ("dropout", "drop_path"):
        return f"{op} {a['p']}"
    return op
