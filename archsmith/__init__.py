"""archsmith: a compiler from .arch architecture specs to PyTorch modules and diagrams.

    >>> import archsmith
    >>> source = archsmith.compile("resnet50")        # Python source, importing only torch
    >>> model = archsmith.create_model("resnet50")    # the nn.Module, torchvision's keys

torch is imported only by `build` and `create_model`.
"""
from __future__ import annotations

from .errors import SpecError

__all__ = ["SpecError", "compile", "build", "create_model", "deploy", "diagram", "list_models", "summary"]
__version__ = "0.1.0"


def compile(spec: str, model: str = None, input_shape=None, deploy: bool = False, **params) -> str:  # noqa: A001
    """Python source for the models in `spec` (a path, .arch text or a bundled model's name).

    `model` picks one model of the file (default: all of them); `input_shape` replaces the declared
    input, e.g. ``[1, 28, 28]``; `params` override the parameters of the model's top block, e.g.
    ``num_classes=10``; `deploy=True` writes the inference networks instead (see `deploy`). Raises
    SpecError for any mistake in the spec."""
    from .compiler import to_python
    return to_python(spec, model, input_shape, deploy=deploy, **params)


def build(spec: str, model: str = None, input_shape=None, in_chans: int = None, **params):
    """An instance of the module that `compile(spec, model, input_shape, **params)` defines;
    `in_chans` replaces the input's channels only (timm's name). The source is kept for the process:
    building the same model again, while the files it read are unchanged, costs what the class's
    constructor costs."""
    import os
    from .generated import load
    from .limits import current
    from .loader import file_stamp
    key = (spec, model, repr(input_shape), in_chans, repr(sorted(params.items())), current(), os.getcwd())
    written = _WRITTEN.get(key)
    if written is None or any(file_stamp(path) != stamp for path, stamp in written.stamps):
        from .backends.pytorch import emit
        from .compiler import collecting_later, elaborate_and_read
        models, paths = elaborate_and_read(spec, model, input_shape, in_chans, params)
        chosen = _one_model(models)
        with collecting_later():
            gen = emit([chosen])
        written = _Written([(path, file_stamp(path)) for path in paths if os.path.isabs(path)], gen.source,
                           gen.factory_names[chosen.name], chosen.name)
        if len(_WRITTEN) >= 64:  # the oldest goes: a search over many arguments must not grow memory
            del _WRITTEN[next(iter(_WRITTEN))]
        _WRITTEN[key] = written
    module = load(written.source)  # our generated source, as a module importable by name
    instance = getattr(module, written.factory)()
    instance._archsmith_origin = (spec, written.model, input_shape, dict(params, input_channels=in_chans))
    return instance


class _Written:
    """What `build` wrote for one set of arguments, and the files it read with their `file_stamp`s."""

    def __init__(self, stamps: list, source: str, factory: str, model: str):
        self.stamps, self.source, self.factory, self.model = stamps, source, factory, model


_WRITTEN: dict = {}  # build's arguments -> _Written


def create_model(name: str, weights: str = None, model: str = None, input_shape=None, in_chans: int = None,
                 **params):
    """A model, as timm's `create_model`: a bundled one by its torchvision/timm name
    (``create_model("resnet50", num_classes=10)``), or one of a spec file (``create_model("net.arch")``,
    ``model="small"`` to pick one of several). Keyword arguments set the parameters of the model's
    top block (``num_classes``, ``drop_path_rate``, ...); ``in_chans=1`` makes the stem take one
    channel, ``input_shape=[1, 28, 28]`` replaces the whole input. ``weights`` loads a state_dict
    (a torchvision or timm checkpoint of the same name loads unmodified) from a path, or from a URL
    through torch.hub's cache (``https://...``, ``file:///...``)."""
    import os
    from .loader import list_bundled
    is_file = name.endswith(".arch") or os.sep in name or os.path.isfile(name)
    if not is_file and name not in list_bundled():
        raise SpecError(f"no bundled model `{name}`", hint=_hint(name))
    instance = build(name, model, input_shape=input_shape, in_chans=in_chans, **params)
    if weights is not None:
        instance.load_state_dict(_load_weights(weights))
    return instance


def _load_weights(weights: str) -> dict:
    import torch
    if "://" in weights:
        state = torch.hub.load_state_dict_from_url(weights, map_location="cpu", check_hash=False)
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a training checkpoint
        state = state["state_dict"]
    return state


def summary(spec: str, model: str = None, input_shape=None, depth: int = None, **params):
    """A table of `spec`'s model, as torchinfo's but read from the graph, without torch: a row per op,
    or with `depth`, per layer or block instance that many levels down (1: `layer1`, 2: `layer1.0`),
    each with its output shape, parameters, MACs and activation memory; then the totals. `str()` of
    the result is the table; `.params`, `.macs`, `.param_bytes`, `.activation_bytes` the totals;
    `.rows` the rows; `.to_json()` all of it. Arguments as `build`'s."""
    from .backends.summary import summarize
    from .compiler import elaborate_models
    return summarize(_one_model(elaborate_models(spec, model, input_shape, **params)), depth)


def deploy(model, spec: str = None, model_name: str = None, input_shape=None, **params):
    """The inference network of a trained `model`: the same eval-mode function in fewer ops, with each
    batchnorm folded into the conv or linear layer before it, summed parallel convs of one input (and
    the input itself, RepVGG's branches) merged into one conv, and dropout and drop-path removed.

    A model made by `create_model` or `build` knows its spec; for one built from a generated class
    directly, pass what `build` would take: `deploy(model, "net.arch", "net", num_classes=10)`. The
    result is in eval mode, on the model's device, with its dtype."""
    from .compiler import elaborate_models
    from .backends.inference import deployed_class_name, generate_deployed
    from .generated import load
    if spec is None:
        origin = getattr(model, "_archsmith_origin", None)
        if origin is None:
            raise ValueError("this model was not made by archsmith.build or create_model: pass its spec, "
                             "e.g. deploy(model, 'net.arch', model_name='net', num_classes=10)")
        spec, model_name, input_shape, params = origin
    chosen = _one_model(elaborate_models(spec, model_name, input_shape, **params), "model_name")
    module = load(generate_deployed([chosen]))
    return getattr(module, deployed_class_name(chosen.name)).from_trained(model.state_dict())


def diagram(spec: str, model: str = None, depth: int = 1, input_shape=None, **params):
    """The Graphviz diagram of a model of `spec`: ``.source`` is its DOT text, ``.render("net.svg")``
    writes it (.svg, .png, .pdf or .dot), and Jupyter shows it inline. `depth` is how many levels of
    stages and blocks it opens (0: each stage one node; 1: their blocks; 2: the blocks' ops; ...);
    `input_shape` and `params` as for `compile`. Needs no torch, and no Graphviz but to render."""
    from .backends.graphviz import draw
    from .compiler import elaborate_models
    return draw(_one_model(elaborate_models(spec, model, input_shape, **params)), depth)


def list_models(pattern: str = "*") -> list:
    """Names of the bundled models matching a glob pattern (``"resnet*"``), sorted naturally: resnet18
    before resnet101."""
    import fnmatch
    import re
    from .loader import list_bundled
    def natural(name):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return sorted(fnmatch.filter(list_bundled(), pattern), key=natural)


def _one_model(models: list, argument: str = "model"):
    if len(models) != 1:
        names = ", ".join(m.name for m in models)
        raise ValueError(f"the spec defines several models ({names}); pass {argument}= to pick one")
    return models[0]


def _hint(name):
    from .errors import did_you_mean
    return did_you_mean(name, list_models()) or "archsmith.list_models() lists them"

