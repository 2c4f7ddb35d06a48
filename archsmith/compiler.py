"""The pipeline: spec -> syntax tree -> elaborated graph -> passes -> a backend."""
from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass

from . import ast
from .elaborate import Elaborator
from .errors import SpecError, did_you_mean
from .evaluate import Evaluator
from .loader import Loader, bundled_dir, resolve_spec
from .passes import check_inplace, validate


def elaborate_models(spec: str, model=None, input_shape=None, input_channels=None, **params) -> list:
    """Every model `compile` would emit, elaborated and validated. `input_shape` replaces the
    declared one, e.g. [1, 28, 28] for a one-channel input; `input_channels` its channels only."""
    return elaborate_and_read(spec, model, input_shape, input_channels, params)[0]


def elaborate_and_read(spec: str, model, input_shape, input_channels, params: dict) -> tuple:
    """`elaborate_models`, and the files it read: (models, their absolute paths, or `<string>` for text)."""
    with collecting_later():
        loader, file, bundled = resolve_spec(spec)
        models = _elaborate(loader, file, model or bundled, input_shape, params, input_channels)
    return models, list(loader.files)


@contextlib.contextmanager
def collecting_later():
    """Python's cycle collector paused: compiling makes many objects and frees few, so each collection
    would walk all those made so far, and compile time would grow faster than the graph."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def bundled_models(loader: Loader = None):
    """(family, model) for every bundled model, elaborated, in the order of `list_bundled`; the family
    is the name of its spec file. One loader reads each file once."""
    loader = loader or Loader()
    for path in sorted(bundled_dir().glob("*.arch")):
        file = loader.load_path(path)
        if file.models:
            for model in _elaborate(loader, file, None, None, {}):
                yield path.stem, model


def check(spec: str, model=None, input_shape=None, **params):
    """What `archsmith check` checks: the models as `elaborate_models` gives them, or, for a file
    without models and nothing asked of one (a library), its constants evaluated -> `Library`."""
    loader, file, bundled = resolve_spec(spec)
    if file.models or model or bundled or input_shape is not None or params:
        return _elaborate(loader, file, model or bundled, input_shape, params)
    evaluator = Evaluator(loader)
    for constant in file.constants:
        evaluator._constant(constant)
    return Library(file.path, len(file.blocks), len(file.layer_defs), len(file.constants))


@dataclass
class Library:
    """A checked file without models."""
    path: str
    blocks: int
    defs: int
    constants: int

    def summary(self) -> str:
        counts = [_count(self.blocks, "block"), _count(self.defs, "def"), _count(self.constants, "constant")]
        return f"{self.path}: ok, {', '.join(counts)}, no models"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _elaborate(loader, file, name, input_shape, params, input_channels=None) -> list:
    if name is not None:
        if name not in file.models:
            raise SpecError(f"no model `{name}` in {file.path}", hint=did_you_mean(name, file.models)
                            or (f"it defines {', '.join(file.models)}" if file.models else None))
        defs = [file.models[name]]
    else:
        defs = list(file.models.values())
        if not defs:
            raise _no_model(file)
    elaborator = Elaborator(loader)
    models = []
    for d in defs:
        try:
            if not models:
                for loaded in list(loader.files.values()):  # what no model uses is checked too
                    elaborator.check_definitions(loaded)
            m = elaborator.elaborate(d, params, input_shape, input_channels)
        except RecursionError:  # within the limits, but not within Python's stack
            raise SpecError(f"`{d.name}` nests expressions, constants or blocks too deeply to evaluate", d.span,
                            source=d.file.text,
                            hint="lower the `nesting` limit (`--limit nesting=N`) to find where") from None
        validate(m.graph)
        check_inplace(m.graph)
        models.append(m)
    return models


def to_python(spec: str, model=None, input_shape=None, deploy=False, **params) -> str:
    """The generated source; with `deploy`, of the models' inference networks."""
    models = elaborate_models(spec, model, input_shape, **params)
    with collecting_later():
        if deploy:
            from .backends.inference import generate_deployed
            return generate_deployed(models)
        from .backends.pytorch import generate
        return generate(models)


def _no_model(file) -> SpecError:
    """A file of blocks has nothing to compile: the error points at its first line."""
    block = next(iter(file.blocks), "Block")
    return SpecError(f"{file.path} defines no model to compile", ast.Span(file.path, 1, 1, 1, 1), source=file.text,
                     hint=f"add a line like `model net = {block}(...) input [3, 224, 224]`; "
                          "a file without one is a library, to import")
