"""Syntax tree of a .arch file. Every node carries the span of the text it came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


@dataclass(frozen=True)
class Span:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int


# ---- expressions ---------------------------------------------------------------

@dataclass
class Literal:
    value: object
    span: Span


@dataclass
class Name:
    id: str
    span: Span


@dataclass
class ListExpr:
    items: list
    span: Span


@dataclass
class CompFor:
    target: object  # a name, or a list of targets to unpack into
    iterable: object
    span: Span


@dataclass
class CompIf:
    cond: object
    span: Span


@dataclass
class ListComp:
    item: object
    clauses: list  # CompFor and CompIf, the first a CompFor
    span: Span


@dataclass
class Record:
    """`{out: 64, stride: 2}`: named fields, read as `r.out`."""
    fields: list  # [(name, expr)]
    span: Span


@dataclass
class BinOp:
    op: str
    left: object
    right: object
    span: Span


@dataclass
class UnaryOp:
    op: str  # "-" or "not"
    operand: object
    span: Span


@dataclass
class BoolOp:
    op: str  # "and" / "or"
    left: object
    right: object
    span: Span


@dataclass
class Ternary:
    then: object
    cond: object
    orelse: object
    span: Span


@dataclass
class Index:
    target: object
    index: object
    span: Span


@dataclass
class Slice:
    target: object
    start: Optional[object]
    stop: Optional[object]
    span: Span


@dataclass
class Attr:
    target: object
    name: str
    span: Span


@dataclass
class Arg:
    name: Optional[str]  # None for positional
    value: object
    span: Span


@dataclass
class Call:
    func: str
    args: list
    span: Span
    func_span: Span


@dataclass
class Seq:
    body: list
    span: Span


@dataclass
class LayerName:
    parts: list  # strings and the expressions interpolated between them: conv{i} is ["conv", <i>]
    span: Span
    quoted: bool = False  # written as a string: "block1-0"


@dataclass
class LayerItem:
    """`name: target` or a bare target; target is a Call, Seq, Name or ValueCall."""
    name: Optional[LayerName]
    target: object
    span: Span


@dataclass
class ValueCall:
    """A layer held in a value, applied: `row.kind(row.out)`, `cfg[0](cfg[1])`, `row.kind`."""
    func: object  # the expression giving the block, def or primitive
    args: list
    span: Span


@dataclass
class Pipe:
    source: object
    layer: LayerItem
    span: Span


Expr = Union[Literal, Name, ListExpr, ListComp, BinOp, UnaryOp, BoolOp, Ternary, Index, Slice,
             Attr, Call, Pipe, Record]


# ---- statements ----------------------------------------------------------------

@dataclass
class Assign:
    target: str
    value: object
    span: Span
    file: "SourceFile" = field(default=None, repr=False, compare=False)


@dataclass
class Unpack:
    """`a, b = value`: each target a name or a (nested) list of targets."""
    targets: list
    value: object
    span: Span


@dataclass
class Return:
    value: object
    span: Span


@dataclass
class Fail:
    """`error("depth {depth} is not 6n + 4")`: the spec refuses the values that reach it."""
    parts: list  # strings and the expressions interpolated between them, as in a LayerName
    span: Span


@dataclass
class Assert:
    """`assert cond, "message {n}"`: the refusal `failure` where `cond` does not hold."""
    cond: object
    failure: Fail
    span: Span


@dataclass
class If:
    branches: list  # [(cond, body)], the first is `if`, the rest `elif`
    orelse: Optional[list]
    span: Span


@dataclass
class For:
    var: object  # a name, or a list of targets to unpack into: `for i, w in enumerate(ws)`
    iterable: object
    body: list
    span: Span


@dataclass
class ParamDecl:
    """`param gamma = full([dim], 1e-6)`: a learned tensor of the block (a buffer if `buffer`)."""
    buffer: bool
    name: str
    init: "Call"
    span: Span
    name_span: Span


@dataclass
class Declare:
    """`declare downsample, norm`: the layers' place in the block's module order (and so in its
    checkpoint) is here, though they are declared where they are first applied, further on."""
    names: list
    spans: list
    span: Span


@dataclass
class Recompute:
    """`recompute name if cond { statements }`: where `cond` holds, the statements' intermediate tensors
    are not kept for the backward pass but computed again there (gradient checkpointing); the
    generated class writes them as the method `name`."""
    name: str
    cond: object  # an expression, or None: always
    body: list
    span: Span
    name_span: Span


@dataclass
class LayerStmt:
    item: LayerItem
    span: Span


# ---- definitions ---------------------------------------------------------------

@dataclass
class Param:
    name: str
    default: Optional[object]
    span: Span


@dataclass
class BlockDef:
    name: str
    params: list
    body: list
    span: Span
    file: "SourceFile" = field(default=None, repr=False, compare=False)
    doc: str = ""  # the comment lines right above it


@dataclass
class LayerDef:
    """`def name(params) = layer`: a named, parametrised layer expression."""
    name: str
    params: list
    layer: LayerItem
    span: Span
    file: "SourceFile" = field(default=None, repr=False, compare=False)
    doc: str = ""


@dataclass
class FnDef:
    """`fn name(params) { ... return value }`: a function of values."""
    name: str
    params: list
    body: list
    span: Span
    file: "SourceFile" = field(default=None, repr=False, compare=False)
    doc: str = ""


@dataclass
class ModelDef:
    name: str
    block: str
    args: list
    input: object
    span: Span
    block_span: Span
    file: "SourceFile" = field(default=None, repr=False, compare=False)
    doc: str = ""


@dataclass
class Import:
    path: str
    span: Span


@dataclass
class SourceFile:
    path: str
    text: str
    imports: list
    constants: list  # top-level Assign
    blocks: dict
    layer_defs: dict
    models: dict
    fns: dict = field(default_factory=dict)
    scope: dict = field(default_factory=dict, repr=False)  # name -> definition, after imports resolve
    doc: str = ""  # the comment at the top of the file
