"""A model's diagram and summary from Python, without torch and without running it.

    .venv/bin/python examples/diagram_and_summary.py [resnet50] [--depth 1] [--out resnet50.svg]

In a notebook, `archsmith.diagram(...)` displays itself (see diagram_and_summary.ipynb).
"""
import argparse

import archsmith


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default="resnet50", help="a bundled model or a .arch file")
    parser.add_argument("--depth", type=int, default=1, help="how many levels of stages and blocks to open")
    parser.add_argument("--out", help="where to draw the diagram (.svg, .png, .pdf or .dot)")
    args = parser.parse_args(argv)
    summary = archsmith.summary(args.model, depth=args.depth)
    print(summary)  # the table; summary.params, summary.macs and summary.to_json() hold the same
    diagram = archsmith.diagram(args.model, depth=args.depth)
    out = args.out or f"{args.model.rsplit('/', 1)[-1].removesuffix('.arch')}.svg"
    diagram.render(out)
    print(f"drew {out} ({len(diagram.source.splitlines())} lines of DOT)")
    return summary


if __name__ == "__main__":
    main()
