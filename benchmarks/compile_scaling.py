"""Compile time against the size of the graph: each phase (elaborate, generate source, summary,
diagram) at N and 2N layers, printing the ratio, which is 2 where the phase is linear.

    .venv/bin/python benchmarks/compile_scaling.py [--sizes 2500 5000 10000 20000]
"""
import argparse
import time

from archsmith.backends.graphviz import draw
from archsmith.backends.pytorch import generate
from archsmith.backends.summary import summarize
from archsmith.compiler import elaborate_models

SPECS = {
    "named convs": "block Net() {{\n    for i in range({n}) {{ x = x | c{{i}}: conv2d(3, 1) }}\n    return x\n}}\n",
    "functional relus, 100 params": "block Net({params}) {{\n    for i in range({n}) {{ x = x | relu() }}\n"
                                    "    return x\n}}\n",
    "residual blocks": "block Res() {{\n    return x + (x | conv: conv2d(3, 1))\n}}\n"
                       "block Net() {{\n    return x | blocks: seq {{\n        for i in range({n}) {{ Res() }}\n    }}\n}}\n",
}
PARAMS = ", ".join(f"p{i} = {i}" for i in range(100))


def spec_text(label, n):
    """The spec of `SPECS[label]` at `n` layers, with its model `net`."""
    return SPECS[label].format(n=n, params=PARAMS) + "model net = Net() input [3, 8, 8]\n"


def phases(text):
    times = {}
    start = time.perf_counter()
    [model] = elaborate_models(text)
    times["elaborate"] = time.perf_counter() - start
    for name, run in (("source", lambda: generate([model])), ("summary", lambda: summarize(model).table()),
                      ("diagram", lambda: draw(model).source)):
        start = time.perf_counter()
        run()
        times[name] = time.perf_counter() - start
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000, 20000])
    args = parser.parse_args()
    for label in SPECS:
        print(f"{label}:")
        previous = None
        for n in args.sizes:
            times = phases(spec_text(label, n))
            cells = []
            for phase, t in times.items():
                ratio = f" (x{t / previous[phase]:.1f})" if previous else ""
                cells.append(f"{phase} {t:6.2f} s{ratio}")
            print(f"  {n:>6} layers: " + ", ".join(cells))
            previous = times


if __name__ == "__main__":
    main()
