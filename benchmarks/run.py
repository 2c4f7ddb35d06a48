"""Every performance goal of archsmith in one run, each against a reference measured side by side;
prints each row as it goes and writes the tables to docs/benchmarks.md.

    ./bench.sh [--quick] [--only cli,scaling,build,forward,train,memory] [--out docs/benchmarks.md]

Each figure is a median of runs that alternate the reference and archsmith (reference, ours,
reference, ours, ...), so that drift in a shared machine's speed hits both alike. `--quick` checks
that the script works, in about a minute: one run, batch 1, 64x64 inputs, one model per section.
"""
import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import sys
import types
from collections.abc import Callable
from importlib.metadata import version

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import timm  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import archsmith  # noqa: E402
import compile_scaling  # noqa: E402
import compile_time  # noqa: E402
import forward_time  # noqa: E402
from archsmith.compiler import elaborate_models  # noqa: E402
from archsmith.files import write_atomic  # noqa: E402
from timing import alternate, fresh_process, peak_rss_rise, seconds, training_step  # noqa: E402

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Reference:
    library: str
    construct: Callable  # a model with random weights
    side: int  # the model's input height and width


REFERENCES = {
    "resnet50": Reference("torchvision", torchvision.models.resnet50, 224),
    "densenet121": Reference("torchvision", torchvision.models.densenet121, 224),
    "efficientnet_b0": Reference("torchvision", torchvision.models.efficientnet_b0, 224),
    "dpn68": Reference("timm", functools.partial(timm.create_model, "dpn68"), 224),
    # init_weights defaults to None, which warns and then initializes as True does
    "inception_v3": Reference("torchvision", functools.partial(torchvision.models.inception_v3, init_weights=True),
                              299),
}
TRAINED = ["resnet50", "densenet121"]  # the models of the train and memory sections


@dataclasses.dataclass(frozen=True)
class Settings:
    cli_runs: int = 7
    compile_runs: int = 5
    synthetic_blocks: tuple = (1_000, 10_000)  # 10,000 blocks are 20,002 nodes: under the default limit
    build_runs: int = 5
    forward_rounds: int = 3
    forward_repeat: int = 5
    forward_batches: tuple = (1, 8)
    train_runs: int = 5
    train_batch: int = 8
    memory_runs: int = 3
    side: int = None  # the input's height and width; None: each model's own
    models_per_section: int = None  # None: all

    def models(self, names):
        return list(names)[:self.models_per_section]

    def side_of(self, name):
        return self.side or REFERENCES[name].side


QUICK = Settings(cli_runs=2, compile_runs=1, synthetic_blocks=(100, 1_000), build_runs=1, forward_rounds=1,
                 forward_repeat=1, forward_batches=(1,), train_runs=1, train_batch=1, memory_runs=1, side=64,
                 models_per_section=1)


@dataclasses.dataclass(frozen=True)
class Row:
    measurement: str
    reference: str
    reference_median: str
    ours_median: str
    ratio: str
    goal: str
    holds: bool

    def markdown(self):
        cells = (self.measurement, self.reference, self.reference_median, self.ours_median, self.ratio, self.goal,
                 "✓" if self.holds else "✗")
        return "| " + " | ".join(cells) + " |"

    def line(self):
        return (f"  {self.measurement} vs {self.reference}: {self.reference_median} -> {self.ours_median}, "
                f"ratio {self.ratio} (goal {self.goal}) {'✓' if self.holds else '✗'}")


HEADER = ("| Measurement | Reference | Reference (median) | archsmith (median) | Ratio | Goal | Holds |\n"
          "|---|---|---:|---:|---:|---:|:---:|")


SECONDS, MILLISECONDS, MEBIBYTES = ("s", 3), ("ms", 1), ("MiB", 0)  # (unit, decimals shown)


def ratio_row(measurement, reference, reference_value, ours_value, unit, goal):
    """A row for a ratio ours / reference that is to stay at or under `goal`."""
    name, decimals = unit
    ratio = ours_value / reference_value
    return Row(measurement, reference, f"{reference_value:.{decimals}f} {name}", f"{ours_value:.{decimals}f} {name}",
               f"{ratio:.3f}", f"≤ {goal}", ratio <= goal)


def cli(settings):
    reference, ours = compile_time.compare("resnet50", settings.cli_runs)
    yield ratio_row("`python -m archsmith compile resnet50`", '`python -c "import torch"`', reference, ours,
                    SECONDS, 0.5)


def scaling(settings):
    small, large = settings.synthetic_blocks
    pairs = [("preact_resnet164", "preact_resnet164", "preact_resnet1001", "preact_resnet1001"),
             (f"{small:,} residual blocks", compile_scaling.spec_text("residual blocks", small),
              f"{large:,} residual blocks", compile_scaling.spec_text("residual blocks", large))]
    for small_label, small_spec, large_label, large_spec in pairs:
        # elaborating first also loads and parses each spec, so that no compile timed is the first
        [small_model], [large_model] = elaborate_models(small_spec), elaborate_models(large_spec)
        small_nodes, large_nodes = small_model.graph.number_of_nodes(), large_model.graph.number_of_nodes()
        small_s, large_s = alternate(lambda: seconds(lambda: archsmith.compile(small_spec)),
                                     lambda: seconds(lambda: archsmith.compile(large_spec)), settings.compile_runs)
        time_ratio, node_ratio = large_s / small_s, large_nodes / small_nodes
        yield Row(f"`archsmith.compile` {large_label} ({large_nodes:,} nodes): time ratio / node ratio",
                  f"{small_label} ({small_nodes:,} nodes)", f"{small_s:.3f} s", f"{large_s:.3f} s",
                  f"{time_ratio:.2f} / {node_ratio:.2f} = {time_ratio / node_ratio:.2f}", "≤ 1.5",
                  time_ratio / node_ratio <= 1.5)
        if large_label == "preact_resnet1001":
            yield Row("`archsmith.compile` preact_resnet1001", "—", "—", f"{large_s:.3f} s", "—", "< 0.25 s",
                      large_s < 0.25)


def build(settings):
    for name in settings.models(REFERENCES):
        reference = REFERENCES[name]
        # the first create_model of a name compiles the spec: timed apart from the later ones, which reuse it
        first_reference_s, first_s = seconds(reference.construct), seconds(lambda: archsmith.create_model(name))
        yield ratio_row(f"`create_model(\"{name}\")` (first call: compiles)", f"{reference.library} `{name}`",
                        first_reference_s, first_s, SECONDS, 1.1)
        reference_s, ours_s = alternate(lambda: seconds(reference.construct),
                                        lambda: seconds(lambda: archsmith.create_model(name)), settings.build_runs)
        yield ratio_row(f"`create_model(\"{name}\")` (warm)", f"{reference.library} `{name}`", reference_s, ours_s,
                        SECONDS, 1.1)


def forward(settings):
    for name in settings.models(REFERENCES):
        reference = REFERENCES[name].construct().eval()
        ours = forward_time.with_weights_of(reference, archsmith.create_model(name).eval())
        side = settings.side_of(name)
        for batch in settings.forward_batches:
            x = torch.randn(batch, 3, side, side)
            reference_ms, ours_ms = forward_time.compare(reference, ours, x, settings.forward_repeat,
                                                         settings.forward_rounds)
            yield ratio_row(f"{name}, batch {batch}, {side}×{side}", f"{REFERENCES[name].library} `{name}`",
                            reference_ms, ours_ms, MILLISECONDS, 1.03)


def step_of(model, batch, side):
    """One training step of `model` on a fixed random batch, with SGD, as a call without arguments."""
    x, labels = torch.randn(batch, 3, side, side), torch.randint(1000, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return functools.partial(training_step, model.train(), optimizer, x, labels)


def train(settings):
    batch = settings.train_batch
    for name in settings.models(TRAINED):
        side = settings.side_of(name)
        reference = REFERENCES[name].construct()
        ours = forward_time.with_weights_of(reference, archsmith.create_model(name))
        reference_step, ours_step = step_of(reference, batch, side), step_of(ours, batch, side)
        reference_step(), ours_step()  # warm-up: the first step also allocates SGD's momentum buffers
        reference_s, ours_s = alternate(lambda: seconds(reference_step), lambda: seconds(ours_step),
                                        settings.train_runs)
        yield ratio_row(f"{name}, batch {batch}, {side}×{side}", f"{REFERENCES[name].library} `{name}`",
                        reference_s * 1000, ours_s * 1000, MILLISECONDS, 1.03)


def memory_of_step(source, name, batch, side):
    """In this process, which must be fresh: the figures of `peak_rss_rise` for the training step of
    `name` (source "reference" or "archsmith"), measured after a warm-up step."""
    torch.manual_seed(0)
    model = REFERENCES[name].construct() if source == "reference" else archsmith.create_model(name)
    return peak_rss_rise(step_of(model, batch, side), warm_up=True)


def memory(settings):
    batch = settings.train_batch
    for name in settings.models(TRAINED):
        side = settings.side_of(name)
        resets = []

        def step_mib(source):
            figures = fresh_process([sys.executable, __file__, "--memory-of-step", source, name, str(batch),
                                     str(side)])
            resets.append(figures["reset"])
            return figures["step_rss"] / MiB

        reference_mib, ours_mib = alternate(lambda: step_mib("reference"), lambda: step_mib("archsmith"),
                                            settings.memory_runs)
        # where the kernel's high-water mark cannot be reset, an earlier peak may stand for the step's
        caveat = "" if all(resets) else " (high-water mark not reset: an earlier peak may count)"
        yield ratio_row(f"{name}, batch {batch}, {side}×{side}{caveat}",
                        f"{REFERENCES[name].library} `{name}`", reference_mib, ours_mib, MEBIBYTES, 1.0)


SECTIONS = {  # name: (title, what it measures, its rows)
    "cli": ("Command-line compile",
            "Wall time of `python -m archsmith compile resnet50` (stdout discarded) against "
            "`python -c \"import torch\"`, each a fresh process, median of {cli_runs}.", cli),
    "scaling": ("Compile time against graph size",
                "In-process `archsmith.compile` (the generated source), median of {compile_runs}: a larger "
                "network against a smaller one of the same family, the time ratio divided by the ratio of "
                "their op counts (graph nodes); 1.0 is linear.", scaling),
    "build": ("Building a model",
              "`archsmith.create_model(name)` against the reference's constructor, random weights in both, "
              "median of {build_runs}. The first `create_model` of a name in a process compiles the spec: it is "
              "timed on its own; later calls reuse the source while the spec files are unchanged (warm). The "
              "generated classes initialize as PyTorch's layers do; torchvision's and timm's constructors "
              "then re-initialize every conv (kaiming_normal_): more work than ours.", build),
    "forward": ("Forward pass",
                "Eval mode under `torch.inference_mode()` on the CPU, with the reference's weights loaded into "
                "ours: milliseconds per batch, the median of {forward_rounds} alternating rounds, each the "
                "median of {forward_repeat} runs after 3 warm-up runs.", forward),
    "train": ("Training step",
              "Forward, cross-entropy on random labels, backward, `SGD(lr=0.01, momentum=0.9).step()`, "
              "`zero_grad()` in train mode with the same weights: milliseconds per step after a warm-up "
              "step, median of {train_runs}.", train),
    "memory": ("Training step memory",
               "The same step, each model in a fresh process: the peak resident set during a step after a "
               "warm-up step (the kernel's high-water mark VmHWM, reset through /proc/self/clear_refs "
               "between the two), over the resident set when the model and its input existed and no step had "
               "run. It counts gradients and SGD's momentum buffers. Median of {memory_runs} processes.",
               memory),
}


def cpu_model():
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def preamble(quick):
    lines = ["# Benchmarks", "",
             "Written by `./bench.sh` (`benchmarks/run.py`); each ratio is archsmith / reference, lower is better.",
             "",
             f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
             f"- Machine: {cpu_model()}, {os.cpu_count()} cores (torch uses {torch.get_num_threads()} threads)",
             f"- Python {platform.python_version()}, torch {version('torch')}, torchvision {version('torchvision')}, "
             f"timm {version('timm')}, archsmith {archsmith.__version__}",
             "- CPU timings on a shared machine: every figure is the median of runs alternating the reference and "
             "archsmith (reference, ours, reference, ours, ...), so that drift in the machine's speed hits both "
             "alike."]
    if quick:
        lines.append("- **Quick mode** (`--quick`): one run, batch 1, 64×64 inputs, one model per section; "
                     "it checks that the script works, its figures mean little.")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs, to check that the script works")
    parser.add_argument("--out", default="docs/benchmarks.md", help="the Markdown to write")
    parser.add_argument("--only", metavar="SECTION[,SECTION]", help=f"a subset of {', '.join(SECTIONS)}")
    parser.add_argument("--memory-of-step", nargs=4, metavar=("SOURCE", "MODEL", "BATCH", "SIDE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of_step:  # a child of the memory section: measure one model and print the figures
        source, name, batch, side = args.memory_of_step
        print(json.dumps(memory_of_step(source, name, int(batch), int(side))))
        return
    chosen = args.only.split(",") if args.only else list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"no section {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}")
    settings = QUICK if args.quick else Settings()
    document = [preamble(args.quick)]
    for name in chosen:
        title, description, rows_of = SECTIONS[name]
        print(f"{name}: {title}", flush=True)
        rows = []
        for row in rows_of(settings):
            print(row.line(), flush=True)
            rows.append(row.markdown())
        document.append(f"## {title} (`{name}`)\n\n{description.format(**dataclasses.asdict(settings))}\n\n"
                        + HEADER + "\n" + "\n".join(rows) + "\n")
    write_atomic(args.out, "\n".join(document))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
