"""What elaboration produces: a tree of block instances, each with its layers and its forward steps,
over one networkx DiGraph of primitive ops (nodes) and tensors (edges)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import networkx as nx


@dataclass
class Tensor:
    """A value in the dataflow: output `index` of graph node `node`."""
    node: int
    index: int
    shape: tuple
    origin: Optional[str] = None  # the owning block's symbol for its channel count, if any
    via: Optional[str] = None  # the spec variable it was read from, where it was read from one

    @property
    def key(self):
        return (self.node, self.index)


@dataclass
class Layer:
    """A module with a name: a primitive, a `seq`, or an instance of a block."""
    name: str
    kind: str  # "prim", "seq" or "block"
    span: object
    path: str  # dotted module path from the model: the checkpoint key prefix
    prim: object = None
    attrs: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)  # attr -> symbol of the owning block it came from
    children: list = field(default_factory=list)  # seq
    instance: Optional["Instance"] = None  # block
    in_shape: tuple = ()
    out_shape: tuple = ()
    conds: tuple = ()  # the (If, branch taken) it was declared under in its block


@dataclass
class Step:
    """One line of a forward: apply `layer` (or functional `prim`) to `inputs`, giving `outputs`."""
    kind: str  # "apply", "func" or "alias"
    var: str  # the spec variable the result is assigned to
    inputs: list  # tensor keys; for "alias", the aliased key
    outputs: list  # tensor keys (several for split/chunk)
    input_vars: list = field(default_factory=list)  # the spec variables the inputs were read from
    layer: Optional[Layer] = None
    prim: object = None
    attrs: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)
    listed: bool = False  # the op returns a list (split/chunk)
    span: object = None
    conds: tuple = ()  # the (If, branch taken) it ran under in its block


@dataclass
class Instance:
    """One instantiation of a block definition."""
    block: object  # ast.BlockDef
    path: str
    params: dict
    lets: dict = field(default_factory=dict)  # symbol name -> (value, expression) for single-assignment scalars
    layers: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    input: Optional[Tensor] = None
    output: Optional[Tensor] = None
    input_symbol: str = "in_channels"


@dataclass
class Model:
    name: str
    definition: object  # ast.ModelDef
    root: Instance
    graph: nx.DiGraph
    input_shape: tuple
    output_shape: tuple
    params: dict  # the root block's bound parameters
    overrides: dict = field(default_factory=dict)  # the parameters given to `compile`
    elaborator: object = None  # what made it, to make it again with other parameters
