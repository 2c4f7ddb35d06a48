"""The reference table of the primitives (docs/language.md section 9, and `archsmith primitives`),
written from `primitives.PRIMITIVES` so that it cannot drift from them."""
from __future__ import annotations

from .primitives import INITIALIZERS, PRIMITIVES, REQUIRED, Primitive

GROUPS = ("convolution and pooling", "normalization", "activations", "linear and dropout", "reshaping",
          "arithmetic", "joining and splitting")


class _Names:
    """Stands in for a primitive's argument sources: each argument written as its name."""

    def __init__(self, prim: Primitive):
        self.prim = prim

    def __getitem__(self, name):
        return name

    def kw(self, *names):
        return ["…"] if names else []

    def tuple(self, name):
        return name

    dims = tuple

    def splat(self, name):
        return f"*{name}"

    def value(self, name):
        return next(p.default for p in self.prim.params if p.name == name)

    def known(self, name):
        return []


def _value(v) -> str:
    if v is True or v is False:
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def _arguments(prim: Primitive) -> str:
    out = [f"`{p.name}`" if p.default is REQUIRED else f"`{p.name}={_value(p.default)}`" for p in prim.user_params]
    return ", ".join(out) or "—"


def _module(prim: Primitive) -> str:
    if prim.torch_class is None:
        return "— (function only)"
    inferred = ", ".join(f"`{a}`" for a, _ in prim.inferred)
    return f"`{prim.module_class}`" + (f" (infers {inferred})" if inferred else "")


def _anonymous(prim: Primitive) -> str:
    if prim.functional is None:
        return "needs a name"
    inputs = ["x"] if prim.inputs != "many" else ["x", "y"] if prim.max_inputs == 2 else ["x", "y", "…"]
    return f"`{prim.functional(_Names(prim), inputs)}`"


def primitive_table() -> str:
    """The markdown tables of every primitive, by group."""
    out = []
    for group in GROUPS:
        out += [f"**{group.capitalize()}**", "",
                "| primitive | arguments | shape | named layer | anonymous, in a block |", "|---|---|---|---|---|"]
        for prim in (p for p in PRIMITIVES.values() if p.group == group):
            out.append(f"| `{prim.name}` | {_arguments(prim)} | {prim.rule} | {_module(prim)} | {_anonymous(prim)} |")
        out.append("")
    out += ["**Initializers of `param` and `buffer`**", "", "| initializer | arguments | torch |", "|---|---|---|"]
    for init in INITIALIZERS.values():
        args = ", ".join(["`shape`"] + [f"`{p.name}`" if p.default is REQUIRED else f"`{p.name}={_value(p.default)}`"
                                        for p in init.params])
        out.append(f"| `{init.name}` | {args} | `{init.doc}` |")
    return "\n".join(out) + "\n"
