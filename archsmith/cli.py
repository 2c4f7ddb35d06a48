"""The `archsmith` command. Spec errors are printed as `file:line:col: error: ...`, never as tracebacks.
`check`, `compile`, `diagram` and `build` do not import torch."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .errors import SpecError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="archsmith", description="Compile .arch architecture specs to PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="parse, elaborate and shape-check a spec")
    p.add_argument("spec", help="a .arch file or a bundled model name")
    p.add_argument("--model", help="only this model of the file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model parameter")
    p.add_argument("--input", metavar="C,H,W", help="replace the declared input shape, e.g. 1,28,28")
    p.add_argument("--show-params", action="store_true",
                   help="print each block instance's path, block and resolved parameters")

    p = sub.add_parser("compile", help="emit PyTorch source")
    p.add_argument("spec", help="a .arch file or a bundled model name")
    p.add_argument("--model", help="only this model of the file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model parameter")
    p.add_argument("--input", metavar="C,H,W", help="replace the declared input shape, e.g. 1,28,28")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.add_argument("--deploy", action="store_true",
                   help="emit the inference network instead: batchnorms folded, parallel convs merged, dropout "
                        "and drop-path removed; build it with <Class>.from_trained(state_dict)")

    p = sub.add_parser("diagram", help="draw a model with Graphviz")
    p.add_argument("spec", help="a .arch file or a bundled model name")
    p.add_argument("--model", help="the model to draw (default: the only one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model parameter")
    p.add_argument("--input", metavar="C,H,W", help="replace the declared input shape, e.g. 1,28,28")
    p.add_argument("-o", "--output", required=True, help="output file: .svg, .png, .pdf or .dot")
    p.add_argument("--expand", action="store_true", help="also draw the inside of each distinct block")

    sub.add_parser("list", help="list the bundled models")
    sub.add_parser("primitives", help="print the table of primitives (markdown)")

    p = sub.add_parser("build", help="compile every bundled spec: modules, diagrams and a summary")
    p.add_argument("-o", "--output", default="build", help="output directory (default: build)")
    p.add_argument("--no-diagrams", action="store_true", help="skip rendering diagrams")

    p = sub.add_parser("fmt", help="rewrite specs in the canonical style")
    p.add_argument("specs", nargs="+", metavar="SPEC",
                   help=".arch files or directories of them; - reads standard input and writes standard output")
    p.add_argument("--check", action="store_true",
                   help="change nothing: list the files that would change and exit with status 1 if any")

    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except SpecError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _params(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SpecError(f"--set takes KEY=VALUE, got `{pair}`")
        out[key] = _value(text)
    return out


def _shape(text):
    if text is None:
        return None
    try:
        return [int(d) for d in text.split(",")]
    except ValueError:
        raise SpecError(f"--input takes sizes separated by commas, like 3,224,224, not `{text}`") from None


def _value(text: str):
    """A --set value, read as a .arch expression: an int, float, bool, string or list."""
    from .evaluate import evaluate
    try:
        return evaluate(text)
    except SpecError:
        raise SpecError(f"--set value `{text}` is not a number, bool, string or list") from None


def _check(args) -> int:
    from .compiler import Library, check
    from .evaluate import spec_literal
    from .passes import parameter_count
    checked = check(args.spec, args.model, _shape(args.input), **_params(args.set))
    if isinstance(checked, Library):
        print(checked.summary())
        return 0
    for m in checked:
        print(f"{m.name}: ok, input {list(m.input_shape)} -> output {list(m.output_shape)}, "
              f"{parameter_count(m.graph):,} parameters")
        if args.show_params:
            for inst in _instances(m.root):
                params = ", ".join(f"{k}={spec_literal(v)}" for k, v in inst.params.items())
                print(f"  {inst.path or '(root)'}: {inst.block.name}({params})")
    return 0


def _instances(inst):
    """Every block instance under `inst`, in the order they were declared, `inst` first."""
    yield inst
    stack = list(reversed(inst.layers))
    while stack:
        layer = stack.pop()
        if layer.kind == "block":
            yield from _instances(layer.instance)
        elif layer.kind == "seq":
            stack.extend(reversed(layer.children))


def _compile(args) -> int:
    from .compiler import to_python
    source = to_python(args.spec, args.model, _shape(args.input), deploy=args.deploy, **_params(args.set))
    if args.output:
        write_atomic(args.output, source)
    else:
        sys.stdout.write(source)
    return 0


def _diagram(args) -> int:
    from .backends.graphviz import diagram
    from .compiler import elaborate_models
    models = elaborate_models(args.spec, args.model, _shape(args.input), **_params(args.set))
    if len(models) != 1:
        raise SpecError(f"the spec defines {len(models)} models; pick one with --model")
    render(diagram(models[0], expand=args.expand), args.output)
    return 0


def render(graph, output: str) -> None:
    """Write a diagram; the format follows the extension. Nothing is left behind on failure."""
    fmt = Path(output).suffix.lstrip(".") or "svg"
    if fmt in ("dot", "gv"):
        write_atomic(output, graph.source)
        return
    import graphviz
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise OSError("Graphviz's `dot` is not installed (apt-get install graphviz); write a .dot file instead") from None
    write_atomic(output, data)


def write_atomic(path: str, data) -> None:
    """Write via a temporary file and rename, so a failure never leaves a half-written file."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".archsmith-")
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _list(args) -> int:
    from .loader import list_bundled
    for name in sorted(list_bundled()):
        print(name)
    return 0


def _build(args) -> int:
    """Compile every bundled model into `output`: <model>.py, <model>.svg and summary.md."""
    from .backends import summary
    from .backends.graphviz import diagram
    from .backends.pytorch import emit
    from .compiler import elaborate_models
    from .loader import list_bundled
    out = Path(args.output)
    models, lines = [], {}
    for name in list_bundled():
        (model,) = elaborate_models(name)
        gen = emit([model])
        write_atomic(str(out / f"{name}.py"), gen.source)
        lines[name] = gen.source.count("\n")
        if not args.no_diagrams:
            render(diagram(model, class_names=gen.labels()), str(out / f"{name}.svg"))
        models.append(model)
        print(f"{name}: {out / (name + '.py')}")
    write_atomic(str(out / "summary.md"), summary.markdown(summary.rows(models, lines)))
    print(f"summary: {out / 'summary.md'}")
    return 0


def _primitives(args) -> int:
    from .reference import primitive_table
    print(primitive_table(), end="")
    return 0


def _fmt(args) -> int:
    """Format every file first, so that a file that does not parse leaves all of them as they were."""
    from .format import format_spec
    from .loader import _read_text
    paths = [str(f) for spec in args.specs for f in (sorted(Path(spec).rglob("*.arch")) if Path(spec).is_dir()
                                                      else [spec])]
    changed = []
    for path in paths:
        if path == "-":
            path, text = "<stdin>", sys.stdin.read()
        else:
            text = _read_text(path, path)
        formatted = format_spec(text, path)
        if path == "<stdin>" and not args.check:
            sys.stdout.write(formatted)
        elif formatted != text:
            changed.append((path, formatted))
    for path, formatted in changed:
        if args.check:
            print(f"would reformat {path}")
        elif path != "<stdin>":
            write_atomic(path, formatted)
            print(f"reformatted {path}")
    return 1 if args.check and changed else 0


_COMMANDS = {"check": _check, "compile": _compile, "diagram": _diagram, "list": _list, "primitives": _primitives,
             "build": _build, "fmt": _fmt}
