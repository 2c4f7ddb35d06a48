"""The bounds on what a spec may make the compiler do. A spec is input from someone else, so every
resource it can grow (text, nesting, values, loops, graph) has a limit, and reaching one is a located
error rather than a hang, a crash or exhausted memory. The defaults are far above what real networks
need; `override` raises or lowers them for a region of code, `archsmith ... --limit KEY=VALUE` for a run."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    file_bytes: int = 256 << 10  # the size of one .arch file: the largest bundled spec is 15 KB
    nesting: int = 100  # brackets and operators inside one another in an expression or statement
    imports: int = 64  # files importing files importing files
    value_size: int = 1_000_000  # items, characters and record fields in one value, counted through nesting
    range_items: int = 100_000  # items in one `range(...)`
    loop_iterations: int = 1_000_000  # iterations of all the loops of one model
    call_depth: int = 64  # calls of fns inside calls of fns
    block_depth: int = 64  # blocks instantiated inside blocks
    graph_nodes: int = 50_000  # ops in one model: the largest bundled model has 4,811

    def describe(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))


NAMES = tuple(f.name for f in dataclasses.fields(Limits))

_current = contextvars.ContextVar("archsmith_limits", default=Limits())


def current() -> Limits:
    """The limits in force here."""
    return _current.get()


def changed(**changes) -> Limits:
    """The limits in force here with `changes`; a TypeError for a name that is no limit, a ValueError
    for a value that is not a positive int."""
    unknown = sorted(set(changes) - set(NAMES))
    if unknown:
        raise TypeError(f"no limit named {', '.join(unknown)}; the limits are {', '.join(NAMES)}")
    for name, value in changes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"limit {name} must be a positive int, not {value!r}")
    return dataclasses.replace(current(), **changes)


@contextlib.contextmanager
def override(**changes):
    """Compile under other limits inside a `with` block: ``with override(graph_nodes=1_000_000): ...``."""
    token = _current.set(changed(**changes))
    try:
        yield current()
    finally:
        _current.reset(token)


def hint(name: str) -> str:
    """How to raise limit `name`, for an error that reports reaching it."""
    return f"this limit ({name}={getattr(current(), name):,}) guards against runaway specs; raise it with " \
           f"`--limit {name}=N` or `archsmith.limits.override({name}=N)` if the spec really needs more"
