"""Summary backend: one Markdown table row per model, from the graph passes."""
from __future__ import annotations

from ..passes import mac_count, parameter_count, state_dict_size
from ..primitives import fmt_shape


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


def markdown(table: list) -> str:
    head = ("| model | input | output | parameters | state_dict entries | GMACs | ops | generated lines |\n"
            "|---|---|---|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {r['model']} | {r['input']} | {r['output']} | {r['parameters']:,} | {r['state_dict']} | "
                   f"{r['gmacs']:.3f} | {r['ops']} | {r['lines']} |\n" for r in table)
    return "# archsmith: bundled models\n\n" + head + body
