"""Summary backend: a model's table of layers with shapes, parameters, MACs and activation memory,
read from the elaborated graph (no torch, no forward pass); and the Markdown table of every bundled
model that `build` writes."""
from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from typing import Optional

from ..passes import mac_count, node_activation_bytes, node_macs, node_parameters, parameter_count, state_dict_size
from ..primitives import fmt_shape

BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class Row:
    """One line of a summary: a graph node, or at a depth, every node of one layer or block instance.
    `kind` is "layer" (a module, named by its checkpoint path), "block" or "seq" (named by their path,
    "" for the model), or "op" (a functional op, named by the block instance it runs in). `op` is the
    primitive, the block's class or `seq`. `training`: the row runs only in training, so it has no
    MACs or activations in eval."""
    name: str
    kind: str
    op: str
    shape: list  # the per-sample output shape; a list of them for split and chunk
    params: int
    macs: int
    activation_bytes: int
    training: bool


@dataclass(frozen=True)
class Summary:
    """A model's summary: `str()` is the table, `to_json()` the same as JSON. Totals are for one
    sample in eval mode; `activation_bytes` counts the tensors a forward pass makes (float32), views
    and in-place results not included."""
    model: str
    input_shape: tuple
    output_shape: tuple
    rows: tuple
    params: int
    macs: int
    activation_bytes: int

    @property
    def param_bytes(self) -> int:
        return self.params * BYTES_PER_VALUE

    def to_dict(self) -> dict:
        return {"model": self.model, "input": list(self.input_shape), "output": list(self.output_shape),
                "params": self.params, "macs": self.macs, "param_bytes": self.param_bytes,
                "activation_bytes": self.activation_bytes, "nodes": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def table(self, heading=str) -> str:
        """The table; `heading` styles the header line (bold on a terminal)."""
        head = ("name", "op", "output", "params", "MACs", "activations")
        body = [(r.name or "(root)", r.op + ("*" if r.training else ""), _shape(r.shape), _count(r.params),
                 "--" if r.training else _count(r.macs), "--" if r.training else _size(r.activation_bytes) if r.activation_bytes else "--")
                for r in self.rows]
        widths = [max(len(line[i]) for line in [head] + body) for i in range(len(head))]

        def line(cells):
            left = "  ".join(c.ljust(w) for c, w in zip(cells[:3], widths))
            return (left + "  " + "  ".join(c.rjust(w) for c, w in zip(cells[3:], widths[3:]))).rstrip()
        rule = "-" * len(line(head))
        out = [f"{self.model}: input {fmt_shape(self.input_shape)} -> output {fmt_shape(self.output_shape)}",
               heading(line(head)), rule, *map(line, body), rule,
               f"parameters   {self.params:,} ({_size(self.param_bytes)} as float32)",
               f"MACs         {self.macs:,} ({_si(self.macs)})",
               f"activations  {_size(self.activation_bytes)} for one sample (float32, eval forward)"]
        if any(r.training for r in self.rows):
            out.append("* runs only in training: no MACs or activations in eval")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def summarize(model, depth: Optional[int] = None) -> Summary:
    """`model`'s summary: one row per graph node in the order they run, or with `depth`, one per layer
    or block instance at most `depth` levels below the model (depth 1: `layer1`, 2: `layer1.0`, 3:
    `layer1.0.conv1`; 0: the whole model), each with the totals of everything inside it."""
    graph = model.graph
    params, macs, activations = node_parameters(graph), node_macs(graph), node_activation_bytes(graph, BYTES_PER_VALUE)
    containers = _containers(model)
    groups = {}  # row key -> its nodes, in the order the first of each runs
    for n, data in graph.nodes(data=True):
        if data["op"] not in ("input", "output"):
            groups.setdefault(n if depth is None else _row_key(data, n, depth), []).append(n)
    rows = []
    for key, nodes in groups.items():
        last = graph.nodes[nodes[-1]]
        if key in containers:
            kind, op, shape = containers[key]
            name = key
        else:
            kind, op, shape = ("op" if last["module"] is None else "layer"), last["op"], last["shape"]
            name = last["module"] or last["scope"]
        rows.append(Row(name, kind, op, _plain(shape), params=sum(params[n] for n in nodes),
                        macs=sum(macs[n] for n in nodes), activation_bytes=sum(activations[n] for n in nodes),
                        training=all(graph.nodes[n].get("training") for n in nodes)))
    return Summary(model.name, tuple(model.input_shape), tuple(model.output_shape), tuple(rows),
                   parameter_count(graph), mac_count(graph), sum(activations.values()))


def _row_key(data, node, depth):
    """The row a node belongs to at `depth`: the module or instance path it falls in, cut to `depth`
    parts; a functional op no deeper than `depth` is a row of its own (its node)."""
    if data["module"] is not None:
        return ".".join(data["module"].split(".")[:depth])
    scope = data["scope"].split(".") if data["scope"] else []
    return node if len(scope) < depth else ".".join(scope[:depth])


def _containers(model) -> dict:
    """Path -> (kind, class, output shape) of every block instance and seq of the model, the root's ""."""
    found = {"": ("block", model.root.block.name, tuple(model.output_shape))}
    stack = list(model.root.layers)
    while stack:
        layer = stack.pop()
        if layer.kind == "block":
            found[layer.path] = ("block", layer.instance.block.name, layer.out_shape)
            stack.extend(layer.instance.layers)
        elif layer.kind == "seq":
            found[layer.path] = ("seq", "seq", layer.out_shape)
            stack.extend(layer.children)
    return found


def _plain(shape):
    return [list(s) for s in shape] if isinstance(shape, list) else list(shape)


def _shape(shape) -> str:
    if shape and isinstance(shape[0], list):
        return " ".join(fmt_shape(s) for s in shape)
    return fmt_shape(shape)


def _count(n: int) -> str:
    return f"{n:,}" if n else "--"


def _size(n: int) -> str:
    return _si(n, "B")


def _si(n: int, unit: str = "") -> str:
    """`n` with a decimal prefix, as torchinfo writes sizes: 4.09 G, 102.23 MB."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n} {unit}".rstrip()


def rows(models, source_lines: dict) -> list:
    out = []
    for m in models:
        out.append({
            "model": m.name,
            "input": fmt_shape(m.input_shape),
            "output": fmt_shape(m.output_shape),
            "parameters": parameter_count(m.graph),
            "state_dict": state_dict_size(m.graph),
            "gmacs": mac_count(m.graph) / 1e9,
            "ops": m.graph.number_of_nodes() - 2,
            "lines": source_lines.get(m.name, 0),
        })
    return out


def index_html(table: list, diagrams: bool) -> str:
    """`build`'s index.html: each model with its figures and links to its source, diagram and summary."""
    def link(path):
        return f'<a href="{html.escape(path)}">{html.escape(path)}</a>'
    head = ["model", "input", "parameters", "GMACs", "source", "diagram", "summary"]
    lines = ['<!DOCTYPE html>', '<html lang="en">', '<head><meta charset="utf-8">',
             "<title>archsmith: bundled models</title>",
             "<style>body { font-family: sans-serif } td, th { padding: 2px 10px; text-align: left } "
             "td.number { text-align: right }</style>", "</head>", "<body>", "<h1>archsmith: bundled models</h1>",
             "<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in table:
        name = r["model"]
        cells = [f"<td>{html.escape(name)}</td>", f"<td>{html.escape(r['input'])}</td>",
                 f'<td class="number">{r["parameters"]:,}</td>', f'<td class="number">{r["gmacs"]:.3f}</td>',
                 f"<td>{link(name + '.py')}</td>", f"<td>{link(name + '.svg') if diagrams else ''}</td>",
                 f"<td>{link(name + '.txt')}</td>"]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines += ["</table>", f"<p>{link('summary.md')}: every model in one table.</p>", "</body>", "</html>"]
    return "\n".join(lines) + "\n"


def markdown(table: list) -> str:
    head = ("| model | input | output | parameters | state_dict entries | GMACs | ops | generated lines |\n"
            "|---|---|---|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['model']} | {r['input']} | {r['output']} | {r['parameters']:,} | {r['state_dict']} | "
                   f"{r['gmacs']:.3f} | {r['ops']} | {r['lines']} |\n" for r in table)
    return "# archsmith: bundled models\n\n" + head + body
