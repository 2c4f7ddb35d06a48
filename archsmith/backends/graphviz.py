"""Graphviz backend: a model drawn at the level of its blocks, every tensor's shape on its edge.

`depth` chooses how far the drawing opens the model's containers (its seqs and block instances):
at 0 each stage and block of the model's own forward is one node; each level more opens the
containers of the level before into clusters of what they hold, down to primitive ops. Consecutive
identical blocks (one block, with the same arguments and optional layers) and consecutive identical
ops (VGG's conv, batch norm and ReLU) are drawn once, as "Name ×N". A convolution or linear layer
is one node with the normalisation, activation and dropout right after it, as in the papers'
figures, or the normalisation and activation right before it (pre-activation). Merges (add,
concat, gate) and splits have shapes of their own, explained in a legend. Building the DOT source
needs no binary; rendering needs Graphviz's `dot`."""
from __future__ import annotations

import html
import itertools
from dataclasses import dataclass, field

from graphviz import Digraph, ExecutableNotFound

from ..evaluate import spec_literal
from ..ir import Instance, Layer, Model
from ..passes import module_parameters, output_shape
from ..primitives import PRIMITIVES, fmt_shape

# ops drawn in the node of the layer before them: normalisations, activations, dropout
_FOLLOWERS = {name for name, prim in PRIMITIVES.items() if prim.group in ("normalization", "activations")} | {
    "dropout", "drop_path"}
_WEIGHTED = {"conv2d", "conv1d", "linear"}  # the layers a pre-activation chain ends with


@dataclass(frozen=True)
class _Style:
    symbol: str
    shape: str
    fill: str
    meaning: str


# ops where branches meet or part, each with a shape of its own
_MERGES = {
    "add": _Style("+", "circle", "#c9e8c9", "add: residual or summed branches"),
    "sub": _Style("\u2212", "circle", "#ffffff", "subtract"),
    "mul": _Style("\u00d7", "circle", "#fcd5b0", "multiply: a gate (attention, SE)"),
    "div": _Style("\u00f7", "circle", "#ffffff", "divide"),
    "matmul": _Style("@", "circle", "#ffffff", "matrix product"),
    "concat": _Style("concat", "invtrapezium", "#cfe0f5", "concatenate branches"),
    "stack": _Style("stack", "invtrapezium", "#cfe0f5", "stack branches"),
    "split": _Style("split", "trapezium", "#e6d5f0", "split into parts"),
    "chunk": _Style("chunk", "trapezium", "#e6d5f0", "split into equal parts"),
}
_FILLS = {"ops": "#eef3fb", "block": "#fdf1dc", "seq": "#e9edf5", "param": "#f5f5f5"}
_RUN = _Style("Name \u00d7N", "box", _FILLS["block"], "N identical in a row, drawn once")


class Diagram:
    """A drawn model. `source` is its DOT text (no binary needed); `render(path)` writes it as
    .svg, .png, .pdf or .dot; in Jupyter it displays inline where Graphviz is installed."""

    def __init__(self, graph: Digraph):
        self.graph = graph

    @property
    def source(self) -> str:
        return self.graph.source

    def render(self, path: str) -> None:
        from ..cli import render
        render(self, path)

    def pipe(self, fmt: str) -> bytes:
        return self.graph.pipe(format=fmt)

    def _repr_svg_(self):
        try:
            return self.pipe("svg").decode("utf-8")
        except ExecutableNotFound:
            return None  # Jupyter falls back to the text repr


def draw(model: Model, depth: int = 1) -> Diagram:
    """The diagram of `model`, its containers opened `depth` levels deep (1: its stages, each block
    in them one node)."""
    g = Digraph(model.name, graph_attr={"rankdir": "TB", "fontname": "Helvetica", "label": model.name,
                                        "labelloc": "t", "fontsize": "16", "nodesep": "0.3", "ranksep": "0.35"},
                node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10",
                           "margin": "0.12,0.04"},
                edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#555555", "arrowsize": "0.6"})
    _Drawer(model, depth).draw(g)
    return Diagram(g)


@dataclass
class _Unit:
    """What one node or cluster stands for: a chain of ops (a layer and its followers), a block
    instance, a seq, a merge or split, or a free parameter. `members` are the identical units in a
    row it stands for (itself first)."""
    kind: str  # "ops", "block", "seq", "merge" or "param"
    name: str  # the layer's name, "" for a functional op or a seq's numbered child
    ops: list  # "ops": what each op is; "merge": the op
    in_shape: tuple
    out_shape: tuple
    layer: Layer = None  # for "block", "seq" and "param"
    modules: list = field(default_factory=list)  # checkpoint paths of the layers whose parameters it has
    prims: list = field(default_factory=list)  # "ops": the primitives' names
    inputs: list = field(default_factory=list)  # tensor keys read; none inside a seq, whose order says
    outputs: list = field(default_factory=list)
    members: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.members)


class _Drawer:
    def __init__(self, model: Model, depth: int):
        self.model = model
        self.depth = depth
        self.parameters = module_parameters(model.graph)
        self.parameters_below = _parameters_below(self.parameters)
        self.extras, self.varying = _variation(model.root)
        self.producer = {}  # tensor key -> the node drawn for what made it
        self.passthrough = {}  # output key of an op not drawn -> the key it passes on
        self.edges = {}  # (tail, head) -> shapes of the tensors it carries
        self.legend = {}  # symbol -> style, of what was drawn
        self.ids = itertools.count()

    def draw(self, g: Digraph) -> None:
        root = self.model.root
        start = self.node(g, f"input<BR/>{fmt_shape(self.model.input_shape)}", shape="oval", fillcolor="#ffffff")
        for key in root.input_keys:
            self.producer[key] = start
        last = self.forward(g, root, 1)
        end = self.node(g, f"output<BR/>{fmt_shape(self.model.output_shape)}", shape="oval", fillcolor="#ffffff")
        self.edge(last, end, self.model.output_shape)
        if root.training_output is not None:  # auxiliary heads: where their outputs go
            returned, _ = root.training_output
            extra = [t for t in (returned if isinstance(returned, list) else [returned]) if t.key != root.output.key]
            if extra:
                aux = self.node(g, "returned in training", shape="oval", style="dashed")
                for t in extra:
                    self.edge(self.producer[self.source(t.key)], aux, t.shape)
        for (tail, head), shapes in self.edges.items():
            g.edge(tail, head, label=_edge_label(shapes))
        if self.legend:
            self.draw_legend(g)

    # ---------------------------------------------------------------- structure

    def forward(self, graph, inst: Instance, level: int) -> str:
        """An instance's forward, its units at `level`; returns the node giving its output."""
        for run in _runs(self.forward_units(inst), sequential=False):
            made = {k for m in run.members for k in m.outputs}
            read = dict.fromkeys(k for m in run.members for k in m.inputs if k not in made)
            exit_ = self.unit(graph, run, [(self.producer[k], self.shape(k)) for k in read], level)
            for k in made:
                self.producer[k] = exit_
        return self.producer[self.source(inst.output.key)]

    def source(self, key):
        """The tensor a key stands for, past the ops not drawn."""
        return self.passthrough.get(key, key)

    def seq(self, graph, seq: Layer, incoming: list, level: int) -> str:
        """A seq's children one after another; returns the last one's node."""
        exit_ = incoming[0][0]
        for run in _runs([self.layer_unit(child) for child in _followed(seq.children)], sequential=True):
            exit_ = self.unit(graph, run, incoming, level)
            incoming = [(exit_, run.members[-1].out_shape)]
        return exit_

    def unit(self, graph, run: _Unit, incoming: list, level: int) -> str:
        """A run drawn as one node, or opened into a cluster; returns the node giving its output."""
        if run.count > 1:
            self.legend[_RUN.symbol] = _RUN
        if level <= self.depth and self.opens(run):
            with graph.subgraph(name=f"cluster_{next(self.ids)}") as c:
                # left-aligned lines keep the label clear of the edges coming in at the middle
                label = "".join(f'{line}<BR ALIGN="LEFT"/>' for line in self.lines(run, shapes=False))
                c.attr(label=f"<{label}>", style="rounded,dashed" if run.kind == "block" else "rounded",
                       color="#8899bb", fontname="Helvetica", fontsize="11", labeljust="l")
                if run.kind == "seq":
                    return self.seq(c, run.layer, incoming, level + 1)
                inst = run.layer.instance
                if len(incoming) == 1:  # in a seq, where the keys are not drawn yet
                    for k in inst.input_keys:
                        self.producer[k] = incoming[0][0]
                return self.forward(c, inst, level + 1)
        if run.kind == "merge":
            style = _MERGES[run.ops[0]]
            self.legend[style.symbol] = style
            nid = self.node(graph, html.escape(style.symbol), shape=style.shape, fillcolor=style.fill,
                            **({"width": "0.3", "fixedsize": "true"} if style.shape == "circle" else {}))
        else:
            nid = self.node(graph, "<BR/>".join(self.lines(run)), fillcolor=_FILLS[run.kind],
                            **({"shape": "note"} if run.kind == "param" else {}))
        for tail, shape in incoming:
            self.edge(tail, nid, shape)
        return nid

    def opens(self, run: _Unit) -> bool:
        """Whether the unit has more to show inside than its node says."""
        return run.kind in ("block", "seq") and self.leaf_ops(run) is None

    # ---------------------------------------------------------------- units

    def forward_units(self, inst: Instance) -> list:
        readers = {inst.output.key: 1}
        for step in inst.steps:
            for k in step.inputs:
                readers[k] = readers.get(k, 0) + 1
        units = []
        for step in inst.steps:
            op = step.prim.name if step.kind == "func" else (
                step.layer.prim.name if step.kind == "apply" and step.layer.kind == "prim" else None)
            if step.kind == "alias":
                continue
            if _does_nothing(op, step.attrs if step.kind == "func" else step.layer.attrs):
                self.passthrough[step.outputs[0]] = self.source(step.inputs[0])
                continue
            last = units[-1] if units else None
            if (last is not None and last.kind == "ops" and _takes(last.prims, op) and len(step.inputs) == 1
                    and self.source(step.inputs[0]) == last.outputs[-1] and readers[step.inputs[0]] == 1):
                attrs = step.attrs if step.kind == "func" else step.layer.attrs
                self.follow(last, step.layer, op, attrs, self.shape(step.outputs[0]))
                last.outputs = step.outputs
                continue
            if step.kind == "func":
                shape = self.shape(step.outputs[0])
                unit = _Unit("merge" if op in _MERGES else "ops", "", [_describe(op, step.attrs, shape)] if
                             op not in _MERGES else [op], self.shape(step.inputs[0]) if step.inputs else (), shape,
                             prims=[op])
            else:
                unit = self.layer_unit(step.layer)
            unit.inputs, unit.outputs = [self.source(k) for k in step.inputs], list(step.outputs)
            units.append(unit)
        return units

    def layer_unit(self, layer) -> _Unit:
        """A seq's child (or a group of a layer and its followers, from `_followed`) as a unit."""
        group = layer if isinstance(layer, list) else [layer]
        first = group[0]
        name = "" if first.name.isdigit() else first.name
        if first.kind == "prim":
            unit = _Unit("ops", name, [_describe(first.prim.name, first.attrs, first.out_shape)], first.in_shape,
                         first.out_shape, modules=[first.path], prims=[first.prim.name])
            for follower in group[1:]:
                self.follow(unit, follower, follower.prim.name, follower.attrs, follower.out_shape)
            return unit
        if first.kind == "param":
            what = "buffer" if first.attrs["buffer"] else "param"
            return _Unit("param", name, [f"{what} {fmt_shape(first.out_shape)}"], (), first.out_shape, first,
                         [first.path])
        return _Unit(first.kind, name, [], first.in_shape, first.out_shape, first, [first.path])

    def follow(self, unit: _Unit, layer, op: str, attrs: dict, shape) -> None:
        if op not in _FOLLOWERS and layer is not None and not layer.name.isdigit():
            unit.name = layer.name  # a pre-activation chain is named after its conv, not its norm
        unit.prims.append(op)
        if not _does_nothing(op, attrs):
            unit.ops.append(_describe(op, attrs, shape))
        unit.out_shape = shape
        if layer is not None:
            unit.modules.append(layer.path)

    def leaf_ops(self, unit: _Unit):
        """The ops of a block or seq that is one chain of them (a conv with its norm and activation),
        else None."""
        if unit.kind == "block":
            units = self.forward_units(unit.layer.instance)
        else:
            units = [self.layer_unit(group) for group in _followed(unit.layer.children)]
        if len(units) == 1 and units[0].kind == "ops":
            return units[0].ops
        return None

    # ---------------------------------------------------------------- labels

    def lines(self, run: _Unit, shapes: bool = True) -> list:
        """The label of a run: its name, what it is (×N), what distinguishes it, shapes, parameters."""
        first, last = run.members[0], run.members[-1]
        times = f" \u00d7{run.count}" if run.count > 1 else ""
        out = [f"<B>{html.escape(_name_range(first.name, last.name, run.count))}</B>"] if first.name else []
        ops = first.ops if first.kind in ("ops", "param") else self.leaf_ops(first)
        if first.kind == "block":
            inst = first.layer.instance
            out.append(html.escape(self.block_kind(inst)) + times)
            varying = [f"{k}={_value_range([m.layer.instance.params[k] for m in run.members])}"
                       for k in inst.params if k in self.varying.get(inst.block.name, ())]
            varying = [text for text in varying if len(text) <= 30]  # a list or a table would not fit
            if varying and ops is None:  # a chain of ops says more
                out.append(html.escape(", ".join(varying)))
        elif first.kind == "seq" and ops is None and shapes:  # a node, not a cluster, which draws it all
            runs = _runs([self.layer_unit(c) for c in _followed(first.layer.children)], sequential=True)
            out.append(html.escape(self.contents(runs)))
        if ops is not None:
            if first.kind == "ops" and ops == [first.name]:  # `relu: relu()` says relu once
                out = []
            # a run of chains: the count, in bold, is of the whole chain
            count = f" <B>\u00d7{run.count}</B>" if run.count > 1 and first.kind != "block" else ""
            out.append(html.escape(_ops_line(ops)) + count)
            shapes = shapes and run.count > 1
        if shapes:
            out.append(f"{fmt_shape(first.in_shape)} \u2192 {fmt_shape(last.out_shape)}")
        params = sum(self.parameters_of(m) for m in run.members)
        if params and first.kind in ("block", "seq"):
            out.append(f"{_amount(params)} params")
        return out

    def block_kind(self, inst: Instance) -> str:
        """`Bottleneck + downsample`: the block, with the layers that not all its instances have."""
        return " + ".join([inst.block.name] + self.extras.get(id(inst), []))

    def contents(self, runs: list) -> str:
        """`Bottleneck + downsample, Bottleneck ×35`: what a seq holds, its first few runs."""
        names = []
        for run in runs:
            first = run.members[0]
            what = self.block_kind(first.layer.instance) if first.kind == "block" else (
                first.name or "seq" if first.kind == "seq" else first.ops[0])
            names.append(what + (f" \u00d7{run.count}" if run.count > 1 else ""))
        return ", ".join(names[:3]) + (f", \u2026 ({len(names)} in all)" if len(names) > 3 else "")

    def parameters_of(self, unit: _Unit) -> int:
        if unit.kind in ("ops", "param"):
            return sum(self.parameters.get(path, 0) for path in unit.modules)
        return self.parameters_below.get(unit.layer.path, 0)

    # ---------------------------------------------------------------- output

    def shape(self, key):
        return output_shape(self.model.graph, *key)

    def node(self, graph, label: str, **attrs) -> str:
        nid = f"n{next(self.ids)}"
        graph.node(nid, f"<{label}>", **attrs)
        return nid

    def edge(self, tail: str, head: str, shape) -> None:
        self.edges.setdefault((tail, head), []).append(tuple(shape))

    def draw_legend(self, g: Digraph) -> None:
        """One table of what was drawn: each symbol in its colour, and what it means."""
        rows = "".join(f'<TR><TD BGCOLOR="{style.fill}" BORDER="1">{html.escape(style.symbol)}</TD>'
                       f'<TD ALIGN="LEFT">{html.escape(style.meaning)}</TD></TR>' for style in self.legend.values())
        g.node("legend", f'<<TABLE BORDER="1" COLOR="#bbbbbb" CELLBORDER="0" CELLSPACING="4" CELLPADDING="3">'
                         f'<TR><TD COLSPAN="2"><B>legend</B></TD></TR>{rows}</TABLE>>', shape="plain", style="")


def _runs(units: list, sequential: bool) -> list:
    """Consecutive identical units as one, its `members`: blocks with the same arguments and optional
    layers, or the same ops giving the same shape. Outside a seq, each must read what the one before
    it made (parallel branches are not a run)."""
    runs = []
    for unit in units:
        unit.members = [unit]
        last = runs[-1] if runs else None
        if (last is not None and _identity(unit) is not None and _identity(unit) == _identity(last)
                and (sequential or set(unit.inputs) & set(last.members[-1].outputs))):
            last.members.append(unit)
        else:
            runs.append(unit)
    return runs


def _identity(unit: _Unit):
    """What identical units share; None for a unit never collapsed."""
    if unit.kind == "ops":
        return tuple(unit.ops), tuple(unit.out_shape)
    if unit.kind == "block":
        inst = unit.layer.instance
        # a float may change block by block (timm's drop-path schedule): the label gives its range
        fixed = tuple((k, spec_literal(v)) for k, v in inst.params.items() if not isinstance(v, float))
        return inst.block.name, fixed, tuple(layer.name for layer in inst.layers)
    return None


def _does_nothing(op: str, attrs: dict) -> bool:
    """A dropout or drop-path of 0 (the bundled ResNets' default): not worth a word in a diagram."""
    return op in ("dropout", "drop_path") and attrs.get("p") == 0


def _takes(chain: list, op: str) -> bool:
    """Whether `op` is drawn in one node with the chain of primitives before it: a norm, activation
    or dropout after a layer (conv, bn, relu), or the layer after norms and activations (bn, relu,
    conv: pre-activation)."""
    if chain[0] in _FOLLOWERS:
        # such a chain is built only here: followers, then at most one layer, which ends it; so its last
        # op says whether all are followers (asking each would make a long run quadratic)
        return chain[-1] in _FOLLOWERS and (op in _FOLLOWERS or op in _WEIGHTED)
    return op in _FOLLOWERS


def _followed(children: list) -> list:
    """A seq's children, each primitive layer grouped with the ops drawn in its node (`_takes`)."""
    groups = []
    for child in children:
        last = groups[-1] if groups else None
        if child.kind == "prim" and last and last[0].kind == "prim" and \
                _takes([layer.prim.name for layer in last], child.prim.name):
            last.append(child)
        else:
            groups.append([child])
    return groups


def _variation(root: Instance):
    """What tells instances of one block apart: id(instance) -> the layers it has that not every
    instance of its block has (an `if`'s, `downsample`), and block name -> the parameters whose values
    differ between its instances."""
    by_block = {}
    for inst in root.instances():
        by_block.setdefault(inst.block.name, []).append(inst)
    extras, varying = {}, {}
    for name, insts in by_block.items():
        # a layer is where the spec declares it: a loop's layers share their declaration
        common = set.intersection(*[{_where(layer) for layer in i.layers} for i in insts])
        for i in insts:
            extra = [layer.name for layer in i.layers if _where(layer) not in common]
            if extra:
                extras[id(i)] = extra
        varying[name] = {k for k in insts[0].params if len({spec_literal(i.params.get(k)) for i in insts}) > 1}
    return extras, varying


def _where(layer: Layer):
    span = layer.span
    return (span.path, span.line, span.column) if span is not None else layer.name


def _value_range(values: list) -> str:
    """`0.1` or, for a run whose blocks differ in a float, `0.0214…0.1`."""
    first, last = (f"{v:.3g}" if isinstance(v, float) else spec_literal(v) for v in (values[0], values[-1]))
    return first if first == last else f"{first}\u2026{last}"


def _ops_line(ops: list) -> str:
    return " \u00b7 ".join(ops)  # `conv 3x3, 64 · batchnorm2d · relu`: commas are the ops' own


def _name_range(first: str, last: str, count: int) -> str:
    """`denselayer1–48` for a run from denselayer1 to denselayer48."""
    if first == last:
        return first
    if count == 2:
        return f"{first}, {last}"
    stem = first.rstrip("0123456789")
    if stem and last.startswith(stem) and last[len(stem):].isdigit():
        return f"{first}\u2013{last[len(stem):]}"
    return f"{first} \u2026 {last}"


def _amount(n: int) -> str:
    """2,048 -> `2.0K`, 25,557,032 -> `25.6M`."""
    for size, suffix in ((10 ** 9, "G"), (10 ** 6, "M"), (10 ** 3, "K")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return str(n)


def _edge_label(shapes: list) -> str:
    distinct = list(dict.fromkeys(shapes))
    if len(distinct) == 1:
        return fmt_shape(distinct[0]) + (f" \u00d7{len(shapes)}" if len(shapes) > 1 else "")
    return ", ".join(fmt_shape(s) for s in distinct)


def _describe(op: str, a: dict, out_shape) -> str:
    """`conv 3x3, 64, /2`: an op as the papers' figures write it."""
    if op in ("conv2d", "conv1d"):
        k = a["kernel_size"]
        k = "x".join(map(str, k if isinstance(k, (list, tuple)) else [k] * (2 if op == "conv2d" else 1)))
        extra = "".join([f", /{a['stride']}" if a["stride"] not in (1, [1, 1], (1, 1)) else "",
                         f", groups {a['groups']}" if a["groups"] != 1 else ""])
        return f"conv {k}, {a['out_channels']}{extra}"
    if op == "linear":
        return f"fc, {a['out_features']}"
    if op[:-2] in ("maxpool", "avgpool"):
        stride = a["stride"] if a["stride"] is not None else a["kernel_size"]
        return f"{op[:3]} pool {a['kernel_size']}" + (f", /{stride}" if stride != 1 else "")
    if op.startswith("adaptive"):
        return f"adaptive {op.split('_')[1][:3]} pool {fmt_shape(out_shape[1:])}"
    if op in ("dropout", "drop_path"):
        return f"{op} {a['p']}"
    return op


def _parameters_below(parameters: dict) -> dict:
    """Module path -> the parameters of the modules under it (`layer1` -> those of `layer1.0.conv1`, ...)."""
    below: dict = {}
    for path, n in parameters.items():
        parts = path.split(".")
        for end in range(1, len(parts)):
            prefix = ".".join(parts[:end])
            below[prefix] = below.get(prefix, 0) + n
    return below
