"""The pipeline: spec -> syntax tree -> elaborated graph -> passes -> a backend."""
from __future__ import annotations

from .elaborate import Elaborator
from .errors import SpecError, did_you_mean
from .loader import resolve_spec
from .passes import check_inplace, validate


def elaborate_models(spec: str, model=None, input_shape=None, **params) -> list:
    """Every model `compile` would emit, elaborated and validated. `input_shape` replaces the
    declared one, e.g. [1, 28, 28] for a one-channel input."""
    loader, file, bundled = resolve_spec(spec)
    name = model or bundled
    if name is not None:
        if name not in file.models:
            raise SpecError(f"no model `{name}` in {file.path}", hint=did_you_mean(name, file.models)
                            or (f"it defines {', '.join(file.models)}" if file.models else None))
        defs = [file.models[name]]
    else:
        defs = list(file.models.values())
        if not defs:
            raise SpecError(f"{file.path} defines no model", hint="add `model name = Block(...) input [3, 224, 224]`")
    elaborator = Elaborator(loader)
    for loaded in list(loader.files.values()):  # what no model uses is checked too
        elaborator.check_definitions(loaded)
    models = []
    for d in defs:
        try:
            m = elaborator.elaborate(d, params, input_shape)
        except RecursionError:
            raise SpecError(f"`{d.name}` nests expressions or blocks too deeply to evaluate", d.span,
                            source=d.file.text) from None
        validate(m.graph)
        check_inplace(m.graph)
        models.append(m)
    return models


def to_python(spec: str, model=None, input_shape=None, **params) -> str:
    from .backends.pytorch import generate
    return generate(elaborate_models(spec, model, input_shape, **params))
