"""The `archsmith` command. Spec errors are printed as `file:line:col: error: ...`, never as tracebacks;
a mistake in the command line, with the subcommand's usage. `check`, `compile`, `summary`, `diagram`,
`list` and `build` do not import torch."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from . import __version__, limits, terminal
from .errors import SpecError, shorten
from .files import same_file, write_atomic
from .loader import SpecText


class UsageError(Exception):
    """A mistake in the command line rather than in a spec."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="archsmith", description="Compile .arch architecture specs to PyTorch.")
    parser.add_argument("--version", action="version", version=f"archsmith {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python's traceback for an internal error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="parse, elaborate and shape-check specs")
    _spec_arguments(p)
    p.add_argument("--show-params", action="store_true",
                   help="print each block instance's path, block and resolved parameters")

    p = sub.add_parser("compile", help="emit PyTorch source")
    _spec_arguments(p)
    p.add_argument("-o", "--output", help="write here instead of standard output; with several specs, a directory "
                                          "to write SPEC.py for each")
    p.add_argument("--deploy", action="store_true",
                   help="emit the inference network instead: batchnorms folded, parallel convs merged, dropout "
                        "and drop-path removed; build it with <Class>.from_trained(state_dict)")

    p = sub.add_parser("summary", help="a table of a model's ops or blocks: output shapes, parameters, MACs and "
                                       "activation memory, then the totals")
    _spec_arguments(p)
    p.add_argument("--depth", type=_depth, metavar="N",
                   help="a row per layer or block instance N levels down (1: layer1, 2: layer1.0) instead of per op")
    p.add_argument("--json", action="store_true",
                   help='print {"params": ..., "macs": ..., "nodes": [...]}, one line per model')

    p = sub.add_parser("diagram", help="draw a model with Graphviz")
    p.add_argument("spec", help="a .arch file or a bundled model name")
    p.add_argument("--model", help="the model to draw (default: the only one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model parameter")
    p.add_argument("--input", metavar="C,H,W", help="replace the declared input shape, e.g. 1,28,28")
    _limit_argument(p)
    p.add_argument("-o", "--output", required=True, help="output file: .svg, .png, .pdf or .dot")
    p.add_argument("--depth", type=_depth, default=1, metavar="N",
                   help="how many levels of stages and blocks to open: 0 draws each stage as one node, "
                        "1 its blocks, 2 their ops, more the blocks inside blocks (default: 1)")

    p = sub.add_parser("list", help="list the bundled models with their family, parameters and GMACs")
    p.add_argument("pattern", nargs="?", default="*", help="only the names matching this glob, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="print a JSON list of the models and their figures")
    sub.add_parser("primitives", help="print the table of primitives (markdown)")

    p = sub.add_parser("build", help="compile every bundled spec: modules, diagrams and a summary")
    p.add_argument("-o", "--output", default="build", help="output directory (default: build)")
    p.add_argument("--no-diagrams", action="store_true", help="skip rendering diagrams")
    _limit_argument(p)

    p = sub.add_parser("fmt", help="rewrite specs in the canonical style")
    p.add_argument("specs", nargs="+", metavar="SPEC",
                   help=".arch files or directories of them; - reads standard input and writes standard output")
    p.add_argument("--check", action="store_true",
                   help="change nothing: list the files that would change and exit with status 1 if any")

    sub.add_parser("lsp", help="run the language server on standard input and output (needs archsmith[lsp])")

    for p in sub.choices.values():  # `archsmith compile --debug ...` as well as `archsmith --debug compile ...`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would print the top-level usage for these
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        with limits.override(**_limits(getattr(args, "limit", []))):
            return _COMMANDS[args.command](args)
    except UsageError as e:
        sub.choices[args.command].error(str(e))  # its usage, then the message; exits with status 2
    except SpecError as e:
        _report(e)
        return 1
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail
        return 0
    except OSError as e:
        print(terminal.diagnostic(f"error: {e}", sys.stderr), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: no output was left half-written", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: say so in a line, not a traceback, unless asked for one
        if args.debug:
            raise
        print(terminal.diagnostic(f"error: internal error in archsmith, not in your spec: {type(e).__name__}: {e}",
                                  sys.stderr), file=sys.stderr)
        print("hint: run again with --debug for the traceback, and please report it", file=sys.stderr)
        return 3


def _spec_arguments(p) -> None:
    """The arguments of the commands that take any number of specs and elaborate their models."""
    p.add_argument("spec", nargs="+", help="a .arch file, a bundled model's name, or - for standard input")
    p.add_argument("--model", help="only this model of each file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model parameter")
    p.add_argument("--input", metavar="C,H,W", help="replace the declared input shape, e.g. 1,28,28")
    _limit_argument(p)


def _limit_argument(p) -> None:
    p.add_argument("--limit", action="append", default=[], metavar="KEY=N",
                   help=f"raise or lower one of the limits that bound what a spec may make the compiler do "
                        f"({limits.Limits().describe()})")


def _limits(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        out[key] = int(text) if text.isdigit() else text
        try:
            limits.changed(**{key: out[key]})
        except (TypeError, ValueError):
            raise UsageError(f"--limit takes KEY=N with N a positive number and KEY one of "
                             f"{', '.join(limits.NAMES)}; got `{pair}`") from None
    return out


def _report(error: SpecError) -> None:
    print(terminal.diagnostic(error.render(), sys.stderr), file=sys.stderr)


def _each_spec(args, work) -> int:
    """`work(spec)` for every spec on the command line, `-` read from standard input; a spec's error
    is reported and the next one goes on, as a compiler does with files. Status 1 if any failed."""
    stdin = None
    failed = False
    for spec in args.spec:
        if spec == "-":
            stdin = stdin or SpecText(sys.stdin.read(), "<stdin>")
            spec = stdin
        try:
            work(spec)
        except SpecError as e:
            _report(e)
            failed = True
    return int(failed)


def _params(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--set takes KEY=VALUE, got `{pair}`")
        out[key] = _value(text)
    return out


def _shape(text):
    if text is None:
        return None
    try:
        return [int(d) for d in text.split(",")]
    except ValueError:
        raise UsageError(f"--input takes sizes separated by commas, like 3,224,224, not `{text}`") from None


def _depth(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"takes a number of levels, 0 or more, not `{text}`")
    return int(text)


def _value(text: str):
    """A --set value, read as a .arch expression: an int, float, bool, string or list."""
    from .evaluate import evaluate
    try:
        return evaluate(text)
    except SpecError as e:
        raise UsageError(f"--set value `{shorten(text)}` is not a number, bool, string or list: "
                         f"{shorten(e.message, 200)}") from None


def _check(args) -> int:
    from .compiler import Library, check
    from .evaluate import spec_literal
    from .passes import parameter_count
    shape, params = _shape(args.input), _params(args.set)

    def check_one(spec):
        checked = check(spec, args.model, shape, **params)
        if isinstance(checked, Library):
            print(checked.summary())
            return
        for m in checked:
            print(f"{m.name}: ok, input {list(m.input_shape)} -> output {list(m.output_shape)}, "
                  f"{parameter_count(m.graph):,} parameters")
            if args.show_params:
                for inst in m.root.instances():
                    params_text = ", ".join(f"{k}={spec_literal(v)}" for k, v in inst.params.items())
                    print(f"  {inst.path or '(root)'}: {inst.block.name}({params_text})")
    return _each_spec(args, check_one)


def _compile(args) -> int:
    from .compiler import to_python
    shape, params = _shape(args.input), _params(args.set)
    several = len(args.spec) > 1
    if several:
        if not args.output:
            raise UsageError("several specs need -o DIRECTORY, to write one module for each")
        stems = [_stem(spec) for spec in args.spec]
        twice = sorted({stem for stem in stems if stems.count(stem) > 1})
        if twice:
            raise UsageError(f"two specs would both be written to {twice[0]}.py; compile them one at a time")

    def compile_one(spec):
        output = str(Path(args.output) / f"{_stem(spec)}.py") if several else args.output
        if output is not None:
            _not_an_input(output, args.spec)
        source = to_python(spec, args.model, shape, deploy=args.deploy, **params)
        if output is not None:
            write_atomic(output, source)
        else:
            sys.stdout.write(source)
    return _each_spec(args, compile_one)


def _not_an_input(output: str, specs) -> None:
    """Refuse to write where a spec is: a typo such as `-o net.arch` must not overwrite the spec."""
    if output.endswith(".arch") or any(isinstance(spec, str) and same_file(output, spec) for spec in specs):
        raise UsageError(f"-o {output} would overwrite a spec; the output is Python source, name a .py file")


def _stem(spec) -> str:
    """The name of a spec's module: its file's, or the bundled model's; `stdin` for `-`."""
    return "stdin" if isinstance(spec, SpecText) or spec == "-" else Path(spec).stem


def _summary(args) -> int:
    from .backends.summary import summarize
    from .compiler import elaborate_models
    shape, params = _shape(args.input), _params(args.set)
    shown = []  # the tables printed so far, to put a blank line between two

    def summarize_one(spec):
        for model in elaborate_models(spec, args.model, shape, **params):
            summary = summarize(model, args.depth)
            if args.json:
                print(summary.to_json())
            else:
                print(("\n" if shown else "") + summary.table(heading=_bold_on_stdout))
                shown.append(summary)
    return _each_spec(args, summarize_one)


def _bold_on_stdout(text: str) -> str:
    return terminal.paint(text, "bold", sys.stdout)


def _diagram(args) -> int:
    from .backends.graphviz import draw
    from .compiler import elaborate_models
    _diagram_format(args.output)  # a wrong name fails before the work
    models = elaborate_models(args.spec, args.model, _shape(args.input), **_params(args.set))
    if len(models) != 1:
        raise SpecError(f"the spec defines {len(models)} models; pick one with --model")
    render(draw(models[0], args.depth), args.output)
    return 0


def render(diagram, output: str) -> None:
    """Write a diagram; the format follows the extension, in any case. Nothing is left behind on
    failure; without Graphviz's `dot`, the DOT source is written beside `output` instead."""
    fmt = _diagram_format(output)
    if fmt == "dot":
        write_atomic(output, diagram.source)
        return
    import graphviz
    try:
        data = diagram.pipe(fmt)
    except graphviz.ExecutableNotFound:
        dot = str(Path(output).with_suffix(".dot"))
        write_atomic(dot, diagram.source)
        raise OSError(f"Graphviz's `dot` is not installed, so {output} was not drawn; wrote {dot} instead. "
                      f"Install Graphviz (apt-get install graphviz, brew install graphviz) and run "
                      f"`dot -T{fmt} {dot} -o {output}`") from None
    write_atomic(output, data)


def _diagram_format(output: str) -> str:
    fmt = Path(output).suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise SpecError(f"cannot draw `{output}`: name a .svg, .png, .pdf or .dot file")
    return fmt


def _list(args) -> int:
    from . import list_models
    from .catalog import bundled_figures
    from .primitives import fmt_shape
    names = list_models(args.pattern)
    if not names:
        raise SpecError(f"no bundled model matches `{args.pattern}`", hint="`archsmith list` lists them all")
    figures = bundled_figures()
    if args.json:
        print(json.dumps([{"name": name, "family": figures[name]["family"], "input": figures[name]["input"],
                           "params": figures[name]["params"], "macs": figures[name]["macs"]} for name in names]))
        return 0
    rows = [(name, figures[name]["family"], f"{figures[name]['params']:,}", f"{figures[name]['macs'] / 1e9:.3f}",
             fmt_shape(figures[name]["input"])) for name in names]
    head = ("model", "family", "parameters", "GMACs", "input")
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    for i, row in enumerate([head] + rows):
        line = "  ".join(cell.rjust(w) if 2 <= j <= 3 else cell.ljust(w)
                         for j, (cell, w) in enumerate(zip(row, widths))).rstrip()
        print(_bold_on_stdout(line) if i == 0 else line)
    return 0


def _build(args) -> int:
    """Compile every bundled model into `output`: <model>.py, <model>.svg, <model>.txt (its summary),
    and summary.md and index.html over all of them. The files are written to a new directory that
    replaces `output` at the end, so an interrupted or failed build leaves the last one as it was."""
    from .files import replace_directory, staging_directory
    out = Path(args.output)
    _check_build_directory(out)
    staged = Path(staging_directory(str(out)))
    try:
        _build_into(staged, out, args.no_diagrams)
        (staged / BUILD_MARK).write_text("made by `archsmith build`; the whole directory is replaced by the next\n")
        replace_directory(str(staged), str(out))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    print(f"summary: {out / 'summary.md'}; index: {out / 'index.html'}")
    return 0


BUILD_MARK = ".archsmith-build"
BUILD_SUFFIXES = {".py", ".svg", ".txt", ".md", ".html", ".dot"}


def _check_build_directory(out: Path) -> None:
    """`build` replaces its output directory: only one it made, or one holding nothing else."""
    if not out.exists():
        return
    if not out.is_dir() or out.is_symlink():
        raise UsageError(f"-o {out} exists and is not a directory")
    if (out / BUILD_MARK).exists():
        return
    foreign = [p.name for p in out.iterdir() if p.is_dir() or p.suffix not in BUILD_SUFFIXES]
    if foreign:
        raise UsageError(f"-o {out} holds files that `archsmith build` did not write ({', '.join(sorted(foreign)[:3])}), "
                         "and a build replaces the whole directory; name another directory")


def _build_into(staged: Path, out: Path, no_diagrams: bool) -> None:
    from .backends import summary
    from .backends.graphviz import draw
    from .backends.pytorch import emit
    from .compiler import bundled_models
    from .loader import Loader, list_bundled
    models, lines = [], {}
    loader = Loader()  # each file read once
    progress = terminal.Progress(len(list_bundled()))
    progress.update(0)
    try:
        for done, (_, model) in enumerate(bundled_models(loader), 1):
            name = model.name
            gen = emit([model])
            write_atomic(str(staged / f"{name}.py"), gen.source)
            lines[name] = gen.source.count("\n")
            if not no_diagrams:
                render(draw(model), str(staged / f"{name}.svg"))
            write_atomic(str(staged / f"{name}.txt"), summary.summarize(model, depth=2).table() + "\n")
            models.append(model)
            progress.clear()
            print(f"{name}: {out / (name + '.py')}")
            progress.update(done, name)
    finally:
        progress.clear()
    table = summary.rows(models, lines)
    write_atomic(str(staged / "summary.md"), summary.markdown(table))
    write_atomic(str(staged / "index.html"), summary.index_html(table, diagrams=not no_diagrams))


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


def _lsp(args) -> int:
    from .lsp import server
    try:
        lsp = server()
    except ImportError:
        print("error: the language server needs pygls: pip install 'archsmith[lsp]'", file=sys.stderr)
        return 1
    lsp.start_io()
    return 0


_COMMANDS = {"check": _check, "compile": _compile, "summary": _summary, "diagram": _diagram, "list": _list,
             "primitives": _primitives, "build": _build, "fmt": _fmt, "lsp": _lsp}
