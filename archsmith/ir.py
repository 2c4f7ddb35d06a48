"""What elaboration hands to the passes and backends: a tree of block instances, each with its
layers and its forward steps, over one networkx DiGraph of primitive ops (nodes) and tensors (edges).

Everything here is a value of one model: sizes are numbers, conditions have been decided, loops
unrolled. The PyTorch backend writes classes from the syntax tree instead (`backends.classgen`);
it uses instances only to know which blocks are used with which arguments.

Graph nodes are numbered in the order they were added (a topological order) and carry: `op` (a
primitive's name, or "input"/"output"), `attrs` (its bound arguments, with those taken from the input
shape, such as a conv's `in_channels`), `inputs` (the keys of the tensors it reads, in order),
`shape` (the per-sample output shape; a list of them for split/chunk), `span` (where the spec wrote
it), `scope` (the dotted path of the block instance it belongs to), `module` (the checkpoint-key
prefix of the layer it applies, None for a functional op) and `training` (whether it runs only in
training mode, under `if training`). An edge carries the tensor's `shape` and
the input `ports` of the reader it feeds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import networkx as nx


@dataclass
class Tensor:
    """A value in the dataflow: output `index` of graph node `node`, of per-sample `shape`. A block's
    free parameter is not `batched`: its shape is its whole torch shape."""
    node: int
    index: int
    shape: tuple
    batched: bool = True

    @property
    def key(self):
        return (self.node, self.index)


@dataclass
class Layer:
    """A module with a name: a primitive, a `seq`, or an instance of a block; or a block's free
    parameter or buffer (kind "param": `attrs` as its graph node's, `out_shape` its shape)."""
    name: str
    kind: str  # "prim", "seq", "block" or "param"
    span: object
    path: str  # dotted module path from the model: the checkpoint key prefix
    prim: object = None  # primitives.Primitive, for kind "prim"
    attrs: dict = field(default_factory=dict)  # the primitive's arguments, as in the graph node
    children: list = field(default_factory=list)  # Layers, for kind "seq"
    instance: Optional["Instance"] = None  # for kind "block"
    in_shape: tuple = ()
    out_shape: tuple = ()


@dataclass
class Step:
    """One line of a forward: apply `layer` (or the functional `prim`) to `inputs`, giving `outputs`;
    an "alias" step is `y = x` between tensor variables; a "param" step declares the free parameter
    `layer`, its one output."""
    kind: str  # "apply", "func", "alias" or "param"
    inputs: list  # tensor keys; for "alias", the aliased key
    outputs: list  # tensor keys (several for split/chunk)
    layer: Optional[Layer] = None
    prim: object = None
    attrs: dict = field(default_factory=dict)  # a functional op's arguments
    span: object = None


@dataclass
class Instance:
    """One instantiation of a block definition: the arguments it was bound to (after defaults), the
    layers it declared in order, and the steps its body ran."""
    block: object  # ast.BlockDef
    path: str  # dotted module path from the model ("" for the root)
    params: dict  # parameter name -> value (ints, floats, bools, strings, lists, elaborate.BlockRef)
    layers: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    input: object = None  # a Tensor, or the list of Tensors a block is given (DenseNet's features)
    declared: list = field(default_factory=list)  # (name, how many layers came before) of `declare`
    output: Optional[Tensor] = None
    output_span: object = None
    training_output: object = None  # (a Tensor or a list of them, span): what `if training` returns
    recomputed: dict = field(default_factory=dict)  # name -> ast.Recompute: the regions its body ran
    named: dict = field(default_factory=dict, repr=False)  # name -> Layer: `layers` by name

    def add_layer(self, layer: Layer) -> None:
        self.layers.append(layer)
        self.named.setdefault(layer.name, layer)

    @property
    def listed(self) -> bool:
        """Whether the block's input is a list of tensors."""
        return isinstance(self.input, list)

    @property
    def in_shape(self) -> tuple:
        """The input's shape; of a list, its tensors' joined on channels (what `concat` makes)."""
        if self.listed:
            return (sum(t.shape[0] for t in self.input),) + tuple(self.input[0].shape[1:])
        return self.input.shape

    @property
    def input_keys(self) -> list:
        return [t.key for t in self.input] if self.listed else [self.input.key]

    def instances(self):
        """This instance and every block instance under it, in the order they were declared."""
        yield self
        stack = list(reversed(self.layers))
        while stack:
            layer = stack.pop()
            if layer.kind == "block":
                yield from layer.instance.instances()
            elif layer.kind == "seq":
                stack.extend(reversed(layer.children))


@dataclass
class Model:
    """One `model` line elaborated."""
    name: str
    definition: object  # ast.ModelDef
    root: Instance
    graph: nx.DiGraph
    input_shape: tuple
    output_shape: tuple
    params: dict  # the root block's bound parameters
    elaborator: object = None  # what made it, to make it again with other parameters
