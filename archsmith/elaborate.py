"""Elaboration: run a model's blocks, layers, seqs and defs into a tree of `ir.Instance`s over one
networkx graph of primitive ops, inferring every shape as it goes (blocks may read their input's
shape, so shapes are known while the graph is built). Expressions are evaluated by the `Evaluator`
this builds on (`evaluate.py`)."""
from __future__ import annotations

import keyword
from typing import Optional

import networkx as nx

from . import ast, limits
from .errors import SpecError, did_you_mean
from .queries import walk
from .evaluate import (BUILTINS, MISSING, BlockRef, Evaluator, Scope, find_layer, format_value, has_tensor, spec_literal,
                       is_int, layer_hint, target_names, type_name)
from .ir import Instance, Layer, Model, Step, Tensor
from .primitives import INITIALIZERS, PRIMITIVES, REQUIRED, ShapeError, fmt_shape


# Attributes of nn.Module (torch 2.13: its methods and what its constructor sets) that a submodule
# name would shadow; kept here so that checking a spec needs no torch.
RESERVED_LAYER_NAMES = frozenset("""
T_destination _apply _backward_hooks _backward_pre_hooks _buffers _call_impl _compiled_call_impl
_forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks
_forward_pre_hooks_with_kwargs _get_backward_hooks _get_backward_pre_hooks _get_name
_is_full_backward_hook _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
_maybe_warn_non_full_backward_hook _modules _named_members _non_persistent_buffers_set _parameters
_register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel
_save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version
_wrapped_call_impl add_module apply bfloat16 buffers call_super_init children compile cpu cuda
double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
get_submodule half ipu load_state_dict modules mtia named_buffers named_children named_modules
named_parameters parameters register_backward_hook register_buffer register_forward_hook
register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_
set_extra_state set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
""".split())


def layer_name_problem(name: str):
    """The error for a name that cannot be a submodule's (nn.Module.add_module's rules), or None."""
    if not name:
        return "a layer name cannot be empty"
    if "." in name:
        return f"a layer named `{name}` contains a `.`, which separates the names in a checkpoint key"
    if name in RESERVED_LAYER_NAMES or (name.startswith("__") and name.endswith("__") and len(name) > 4):
        return f"a layer named `{name}` would hide nn.Module.{name}"
    return None


def _layer_names(block, file) -> tuple:
    """(the layer names a block's body writes, whether it also makes names only known when it runs)."""
    names, dynamic = set(), False
    for node in walk(block.body):
        if not isinstance(node, ast.LayerItem):
            continue
        name = node.name
        if name is None and isinstance(node.target, ast.Call):  # a def may name its layer
            defn = file.scope.get(node.target.func)
            name = defn.layer.name if isinstance(defn, ast.LayerDef) else None
        if name is not None:
            if all(isinstance(p, str) for p in name.parts):
                names.add("".join(name.parts))
            else:
                dynamic = True
    return names, dynamic


def plain_layer_name(name: str) -> bool:
    """Whether the generated code can write the layer as `self.<name>` (else add_module and getattr):
    not a keyword, not renamed by Python (`__x` in a class, non-ASCII letters by NFKC)."""
    return name.isascii() and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("__")


def joined_shape(tensors: list, span, scope, evaluator) -> tuple:
    """The shape of a list of tensors a block takes as its input: theirs joined on channels, as
    `concat` joins them. They must be batched and agree in every other dimension."""
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise evaluator._err(f"`|` sends a tensor (or a list of tensors) into a layer, but this is "
                             f"{type_name(tensors)}", span, scope.file)
    if not all(t.batched for t in tensors):
        raise evaluator._unbatched(span, scope)
    first = tensors[0].shape
    for t in tensors[1:]:
        if len(t.shape) != len(first) or t.shape[1:] != first[1:]:
            raise evaluator._err(f"a block's input list holds tensors that concat joins on channels; "
                                 f"{fmt_shape(first)} and {fmt_shape(t.shape)} differ in more than the channels",
                                 span, scope.file)
    return (sum(t.shape[0] for t in tensors),) + tuple(first[1:])


class Elaborator(Evaluator):
    """Builds one model's graph and instance tree from its `model` line."""

    def __init__(self, loader):
        super().__init__(loader)
        self.graph: nx.DiGraph = None
        self.stack: list = []  # block definitions being instantiated, to catch recursion
        self.training = 0  # how many `if training` bodies are being run: their ops run only in training
        self.layer_names: dict = {}  # id(block) -> `_layer_names` of it, read once per block however often it runs

    # ---------------------------------------------------------------- entry point

    def elaborate(self, model: ast.ModelDef, overrides: dict, input_shape: Optional[list] = None,
                  input_channels: Optional[int] = None) -> Model:
        """`input_shape` replaces the declared input shape; `input_channels` just its first dimension."""
        self.graph = nx.DiGraph()
        file = model.file
        defn = self._lookup_definition(model.block, model.block_span, file)
        if not isinstance(defn, ast.BlockDef):
            raise self._err(f"`{model.block}` is not a block", model.block_span, file)
        scope = Scope(file)
        given = input_shape is not None
        if not given:
            input_shape = self.eval(model.input, scope)
        if not (isinstance(input_shape, (list, tuple)) and input_shape
                and all(is_int(d) and d > 0 for d in input_shape)):
            message = f"the input shape must be a list of positive ints, like [3, 224, 224], not {input_shape!r}"
            raise self._err(message, None if given else model.input.span, file)
        input_shape = tuple(input_shape)
        if input_channels is not None:
            input_shape = (input_channels,) + input_shape[1:]
        node = self._add_node("input", {}, [], input_shape, model.span, "", None)
        x = Tensor(node, 0, input_shape)
        args = self._eval_args(model.args, scope)
        names = [p.name for p in defn.params]
        for name, value in overrides.items():
            if name not in names:  # a mistake of the command line or the call, not of the file
                raise self._err(f"the override `{name}={spec_literal(value)}` names no parameter of `{defn.name}`",
                                None, hint=did_you_mean(name, names) or f"its parameters: {', '.join(names)}",
                                notes=[(f"`{defn.name}` is defined here", defn.span)])
            given = [i for i, a in enumerate(args)
                     if a[0] == name or (a[0] is None and i < len(names) and names[i] == name)]
            if given:  # an override replaces what the model line passes
                i = given[0]
                args[i] = (args[i][0], value, args[i][2], None)
            else:
                args.append((name, value, None, None))
        root = self._instantiate(defn, args, x, "", model.span, scope)
        self._add_node("output", {}, [root.output], root.output.shape, model.span, "", None)
        return Model(model.name, model, root, self.graph, input_shape, root.output.shape, root.params, self)


    def _lookup_definition(self, name, span, file):
        if name in file.scope:
            return file.scope[name]
        candidates = list(file.scope) + list(PRIMITIVES) + list(BUILTINS)
        raise self._err(f"unknown name `{name}`", span, file, hint=did_you_mean(name, candidates))

    # ---------------------------------------------------------------- graph

    def _add_node(self, op, attrs, inputs, shape, span, scope_path, module_path):
        n = self.graph.number_of_nodes()
        if n >= limits.current().graph_nodes:
            raise self._err(f"the model has more than {limits.current().graph_nodes:,} ops; is a loop too long?",
                            span, hint=limits.hint("graph_nodes"))
        self.graph.add_node(n, op=op, attrs=dict(attrs), span=span, scope=scope_path, module=module_path,
                            shape=shape, inputs=[t.key for t in inputs], training=self.training > 0)
        for i, t in enumerate(inputs):
            if self.graph.has_edge(t.node, n):
                self.graph.edges[t.node, n]["ports"].append(i)
            else:
                self.graph.add_edge(t.node, n, ports=[i], shape=t.shape)
        return n

    # ---------------------------------------------------------------- layers

    def _apply_item(self, item: ast.LayerItem, x: Tensor, scope: Scope, seq: Optional[Layer] = None) -> Tensor:
        """Apply `name: target` (or a bare target) to x: in a block body, or as the next child of `seq`.
        x may be a list of tensors where the target is a block (its `x` is then the list)."""
        if isinstance(x, list):
            joined_shape(x, item.span, scope, self)
        elif not x.batched:
            raise self._unbatched(item.span, scope)
        name = self._layer_name(item.name, scope) if item.name else scope.layer_name
        if item.name and seq is None and scope.instance is not None:
            existing = find_layer(scope.instance, name)
            if existing is not None and not (isinstance(item.target, ast.Name) and item.target.id == name):
                raise self._err(f"a layer named `{name}` is already declared in `{scope.instance.block.name}`",
                                item.name.span, scope.file, notes=[("declared here", existing.span)])
        target = item.target
        if isinstance(target, ast.Name):
            existing = find_layer(scope.instance, target.id) if seq is None and scope.instance else None
            if existing is not None and name is None and target.id not in scope.vars:
                if isinstance(x, list):
                    raise self._listed(target.span, scope)
                return self._apply_layer(existing, x, target.span, scope)
            target = ast.Call(target.id, [], target.span, target.span)
        if isinstance(target, ast.Seq):
            if isinstance(x, list):
                raise self._listed(item.span, scope)
            return self._apply_seq(target, name, x, scope, seq, item.span)
        if isinstance(target, ast.ValueCall):
            return self._apply_value(target, name, x, scope, seq)
        return self._apply_call(target, name, x, scope, seq, item)


    def _layer_name(self, ln: ast.LayerName, scope) -> str:
        name = ""
        for part in ln.parts:
            if isinstance(part, str):
                name += part
                continue
            v = self.eval(part, scope)
            if not (is_int(v) or isinstance(v, str)):
                raise self._err(f"a layer name can interpolate an int or a string, not {type_name(v)}",
                                part.span, scope.file)
            name += format_value(v)
        problem = layer_name_problem(name)
        if problem is not None:
            raise self._err(problem, ln.span, scope.file, hint="choose another name")
        return name


    def _apply_value(self, call: ast.ValueCall, name, x, scope, seq):
        """A block, def or primitive held in a value, applied: `row.kind(row.out)`."""
        value = self.eval(call.func, scope)
        if not isinstance(value, BlockRef) or isinstance(value.defn, ast.FnDef):
            raise self._err(f"this is {type_name(value)}, not a layer to apply", call.func.span, scope.file)
        target = ast.Call(getattr(value.defn, "name", "layer"), call.args, call.span, call.func.span)
        return self._apply_target(value.defn, target, name, x, scope, seq)


    def _apply_call(self, call: ast.Call, name, x, scope, seq, item):
        fname = call.func
        if scope.instance is not None and seq is None and fname not in scope.vars:
            declared = find_layer(scope.instance, fname)
            if declared is not None:
                raise self._err(f"`{fname}` is a layer already declared here; apply it again with `| {fname}`",
                                call.span, scope.file, notes=[("declared here", declared.span)])
        target = None
        # a variable that is not a block does not hide a layer of its name: VGG's `dropout(dropout)`
        shadowed = fname in scope.vars and not isinstance(scope.vars[fname], BlockRef)
        if fname in scope.vars and not shadowed:
            target = scope.vars[fname].defn
        elif fname in scope.file.scope:
            target = scope.file.scope[fname]
            if isinstance(target, ast.Assign):
                value = self._constant(target)
                if not isinstance(value, BlockRef):
                    raise self._err(f"`{fname}` is a constant, not a layer", call.func_span, scope.file)
                target = value.defn
        elif fname in PRIMITIVES:
            target = PRIMITIVES[fname]
        if target is None:
            if shadowed:
                raise self._err(f"`{fname}` is {type_name(scope.vars[fname])}, not a layer", call.func_span,
                                scope.file)
            if fname in BUILTINS:
                raise self._err(f"`{fname}` is a function of numbers, not a layer", call.func_span, scope.file)
            candidates = list(scope.vars) + list(scope.file.scope) + list(PRIMITIVES)
            if scope.instance is not None:
                candidates += [l.name for l in scope.instance.layers]
            raise self._err(f"unknown layer `{fname}`", call.func_span, scope.file,
                            hint=layer_hint(fname, candidates))
        return self._apply_target(target, call, name, x, scope, seq)


    def _apply_target(self, target, call: ast.Call, name, x, scope, seq):
        """Apply the block, def or primitive `target`, called as `call`."""
        fname = call.func
        if isinstance(target, ast.FnDef):
            raise self._err(f"`{fname}` is a fn: it computes a value, and is not a layer", call.func_span, scope.file)
        args = self._eval_args(call.args, scope)
        if isinstance(target, ast.LayerDef):
            return self._expand_def(target, args, name, x, scope, seq, call)
        if isinstance(target, ast.BlockDef):
            if name is None and seq is None:
                raise self._err(f"an instance of `{fname}` needs a name, which becomes its checkpoint key",
                                call.span, scope.file, hint=f"write `x | name: {fname}(...)`")
            name = self._child_name(name, seq, call.span, scope)
            path = self._child_path(scope, seq, name)
            inst = self._instantiate(target, args, x, path, call.span, scope)
            layer = Layer(name, "block", call.span, path, instance=inst, in_shape=inst.in_shape,
                          out_shape=inst.output.shape)
            return self._register(layer, x, inst.output.shape, scope, seq, call.span, out=inst.output)
        return self._apply_primitive(target, args, name, x, scope, seq, call)


    def _expand_def(self, defn: ast.LayerDef, args, name, x, scope, seq, call):
        if defn in self.stack:
            raise self._recursion(defn, call.span, scope)
        params = self._param_defaults(defn)
        bound = self._bind(f"`{defn.name}`", params, args, call.span, scope)
        inner = Scope(defn.file, scope.instance)
        self._bind_params(defn, bound, inner, call.span, scope)
        item = defn.layer
        inner_name = name
        if inner_name is None and item.name is not None:
            inner_name = self._layer_name(item.name, inner)
        self.stack.append(defn)
        try:
            # the def's layer is declared in the caller's block (or seq), evaluated in the def's own names
            inner = inner.derive(layer_name=inner_name, site_span=call.span)
            return self._apply_item(ast.LayerItem(None, item.target, item.span), x, inner, seq)
        except SpecError as e:
            raise _used_here(e, defn, call.span)
        finally:
            self.stack.pop()


    def _listed(self, span, scope):
        return self._err("a list of tensors goes only into a block, whose `x` it becomes; a layer takes one tensor",
                         span, scope.file, hint="join the list first: `concat(features) | ...`")


    def _apply_primitive(self, prim, args, name, x, scope, seq, call):
        if isinstance(x, list):
            raise self._listed(call.span, scope)
        if scope.site_span is not None:  # a def's layer: its shape errors belong to where the def is used
            call = ast.Call(call.func, call.args, scope.site_span, scope.site_span)
        tensors = [a for a in args if isinstance(a[1], Tensor) or has_tensor(a[1])]
        if prim.inputs == "one" or prim.torch_class is not None:
            if tensors:
                raise self._err(f"`{prim.name}` takes its tensor from `|`, not as an argument", tensors[0][2],
                                scope.file)
            attrs = self._bind_primitive(prim, args, call, scope)
        else:
            extra = []
            for a in tensors:
                extra.extend(a[1] if isinstance(a[1], list) else [a[1]])
            attrs = self._bind_primitive(prim, [a for a in args if a not in tensors], call, scope)
            if name is not None:
                raise self._err(f"`{prim.name}` has no module, so it cannot be named", call.span, scope.file)
            return self._functional(prim.name, [x] + extra, attrs, call.span, scope)
        if prim.torch_class is None:
            if name is not None or seq is not None:
                raise self._err(f"`{prim.name}` is a function, not a layer, so it cannot be "
                                f"{'named' if name is not None else 'part of a seq'}", call.span, scope.file)
            return self._functional(prim.name, [x], attrs, call.span, scope)
        if name is None and seq is None:
            if prim.stateful(self._infer_attrs(prim, attrs, x), x.shape):
                raise self._err(f"a `{prim.name}` has weights, so it needs a name, which becomes its checkpoint key",
                                call.span, scope.file, hint=f"write `name: {prim.name}(...)`")
            return self._functional(prim.name, [x], attrs, call.span, scope)
        name = self._child_name(name, seq, call.span, scope)
        attrs = self._infer_attrs(prim, attrs, x)
        out_shape = self._shape(prim, attrs, [x.shape], call.span, scope)
        layer = Layer(name, "prim", call.span, self._child_path(scope, seq, name), prim=prim, attrs=attrs,
                      in_shape=x.shape, out_shape=out_shape)
        return self._register(layer, x, out_shape, scope, seq, call.span)


    def _infer_attrs(self, prim, attrs, x):
        attrs = dict(attrs)
        for attr, dim in prim.inferred:
            if -len(x.shape) <= dim < len(x.shape):
                attrs[attr] = x.shape[dim]
        return attrs


    def _shape(self, prim, attrs, shapes, span, scope):
        try:
            return prim.shape(attrs, shapes)
        except ShapeError as err:
            raise self._err(str(err), span, scope.file) from None


    def _child_name(self, name, seq, span=None, scope=None):
        if seq is None:
            return name
        if name is None:
            return str(len(seq.children))
        if any(c.name == name for c in seq.children):
            raise self._err(f"this seq already has a layer named `{name}`", span, scope.file if scope else None)
        return name


    def _child_path(self, scope, seq, name):
        base = seq.path if seq is not None else (scope.instance.path if scope.instance else "")
        return f"{base}.{name}" if base else name


    def _register(self, layer, x, out_shape, scope, seq, span, out=None):
        """Declare `layer` in its block or seq and apply it to x."""
        inst = scope.instance
        self._declare(layer, scope, seq, span)
        if layer.kind == "block":
            result = out
        else:
            result = self._run_layer(layer, x, layer.out_shape, span, scope)
        if seq is None:
            keys = [t.key for t in x] if isinstance(x, list) else [x.key]
            self._step(inst, Step("apply", keys, [result.key], layer=layer, span=span))
        return result


    def _run_layer(self, layer, x, out_shape, span, scope):
        """Add the graph node of a primitive layer applied to x."""
        node = self._add_node(layer.prim.name, layer.attrs, [x], out_shape, span,
                              scope.instance.path if scope.instance else "", layer.path)
        return Tensor(node, 0, out_shape)


    def _apply_layer(self, layer, x, span, scope):
        """Apply an already declared layer again (`| relu`)."""
        if layer.kind != "prim":
            raise self._err(f"`{layer.name}` is a {layer.kind}, which can be applied only where it is declared",
                            span, scope.file, notes=[("declared here", layer.span)])
        attrs = self._infer_attrs(layer.prim, layer.attrs, x)
        if attrs != layer.attrs:
            changed = [k for k in attrs if attrs[k] != layer.attrs.get(k)]
            raise self._err(f"`{layer.name}` was built for input {fmt_shape(layer.in_shape)} but is applied to "
                            f"{fmt_shape(x.shape)} ({changed[0]} differs)", span, scope.file,
                            notes=[("declared here", layer.span)])
        out_shape = self._shape(layer.prim, attrs, [x.shape], span, scope)
        result = self._run_layer(layer, x, out_shape, span, scope)
        self._step(scope.instance, Step("apply", [x.key], [result.key], layer=layer, span=span))
        return result


    def _apply_seq(self, body: ast.Seq, name, x, scope, parent_seq, span):
        if name is None and parent_seq is None:
            raise self._err("a `seq` needs a name, which becomes its checkpoint key", span, scope.file,
                            hint="write `x | name: seq { ... }`")
        name = self._child_name(name, parent_seq, span, scope)
        layer = Layer(name, "seq", span, self._child_path(scope, parent_seq, name), in_shape=x.shape)
        inst = scope.instance
        self._declare(layer, scope, parent_seq, span)
        y = self._run_seq_body(body.body, x, scope, layer)
        if not layer.children:
            raise self._err("this `seq` is empty", span, scope.file)
        layer.out_shape = y.shape
        if parent_seq is None:
            self._step(inst, Step("apply", [x.key], [y.key], layer=layer, span=span))
        return y


    def _run_seq_body(self, stmts, x, scope, seq):
        for s in stmts:
            if isinstance(s, ast.LayerStmt):
                # a seq's children: the block's names, without a def's layer name
                x = self._apply_item(s.item, x, scope.derive(layer_name=None, site_span=None), seq)
            elif isinstance(s, (ast.Assign, ast.Unpack)):
                value = self._assign(s, scope)
                if isinstance(value, Tensor) or has_tensor(value):
                    raise self._err("a `seq` holds layers; tensors are not assigned in it", s.span, scope.file)
            elif isinstance(s, ast.For):
                for v in self._iterable(s.iterable, scope):
                    self._bind_target(s.var, v, s.span, scope)
                    x = self._run_seq_body(s.body, x, scope, seq)
            elif isinstance(s, ast.Assert):
                self.check_assert(s, scope)
            elif isinstance(s, ast.If):
                x = self._run_seq_body(self._branch(s, scope), x, scope, seq)
            elif isinstance(s, ast.Fail):
                raise self.refusal(s, scope)
            elif isinstance(s, ast.Declare):
                raise self._err("`declare` places a layer of a block; a `seq`'s children are in the order written",
                                s.span, scope.file)
            elif isinstance(s, ast.Recompute):
                raise self._err("`recompute` is a statement of block bodies: a `seq` runs its children as they are",
                                s.span, scope.file)
            elif isinstance(s, ast.Training):
                raise self._err("`if training` stands in a block body; a `seq` is the same in both modes", s.span,
                                scope.file, hint="put the layers in a block, under `if training { ... }`")
            else:
                raise self._err("a `seq` holds layers, loops and conditions; `return` is not allowed", s.span,
                                scope.file)
        return x


    def _step(self, inst, step):
        inst.steps.append(step)


    def _declare(self, layer, scope, seq, span):
        """Add `layer` to its seq, or to its block under the conditions it was declared in."""
        if seq is not None:
            seq.children.append(layer)
            return
        inst = scope.instance
        existing = find_layer(inst, layer.name)
        if existing is not None:
            raise self._err(f"a layer named `{layer.name}` is already declared in `{inst.block.name}`", span,
                            scope.file, notes=[("declared here", existing.span)])
        inst.add_layer(layer)

    # ---------------------------------------------------------------- functional ops

    def _unbatched(self, span, scope):
        return self._err("a free parameter has no batch dimension, so only arithmetic applies to it", span,
                         scope.file, hint="combine it with a tensor first, as in `x * gamma`")

    def _functional(self, op, tensors, attrs, span, scope):
        prim = PRIMITIVES[op]
        inst = scope.instance
        if inst is None:
            raise self._err("tensors exist only inside a block", span, scope.file)
        for p in prim.params:
            attrs.setdefault(p.name, p.default if p.default is not REQUIRED else None)
        batched = [t.batched for t in tensors]
        if not all(batched):
            if not prim.elementwise:
                raise self._unbatched(span, scope)
            if len(tensors) > 1:
                attrs["batched"] = batched
        attrs = self._infer_attrs(prim, attrs, tensors[0])
        shapes = [t.shape for t in tensors]
        out = self._shape(prim, attrs, shapes, span, scope)
        node = self._add_node(op, attrs, tensors, out, span, inst.path if inst else "", None)
        listed = prim.inputs == "list"
        if listed:
            results = [Tensor(node, i, s) for i, s in enumerate(out)]
        else:
            results = [Tensor(node, 0, out, any(batched))]
        self._step(inst, Step("func", [t.key for t in tensors], [r.key for r in results], prim=prim, attrs=attrs,
                              span=span))
        return results if listed else results[0]

    # ---------------------------------------------------------------- blocks

    def _instantiate(self, defn: ast.BlockDef, args, x: Tensor, path, call_span, caller: Scope) -> Instance:
        if defn in self.stack:
            raise self._recursion(defn, call_span, caller)
        if len(self.stack) >= limits.current().block_depth:
            raise self._err(f"blocks are nested more than {limits.current().block_depth} deep", call_span,
                            caller.file, hint=limits.hint("block_depth"))
        bound = self._bind(f"`{defn.name}`", self._param_defaults(defn), args, call_span, caller)
        inst = Instance(defn, path, {})
        scope = Scope(defn.file, inst)
        self._bind_params(defn, bound, scope, call_span, caller)
        inst.params = dict(scope.vars)
        inst.input = x
        scope.vars["x"] = inst.input
        self.stack.append(defn)
        try:
            result = self._run_block_body(defn.body, scope)
        except SpecError as e:
            raise _used_here(e, defn, call_span)
        finally:
            self.stack.pop()
        if result is MISSING:
            raise self._err(f"block `{defn.name}` has no `return`", defn.span, defn.file,
                            hint="end the block with `return` and the tensor it outputs")
        result, span = result
        if not isinstance(result, Tensor):
            raise self._err(f"block `{defn.name}` must return a tensor, not {type_name(result)}", span, defn.file)
        inst.output_span = span
        inst.output = result
        if inst.training_output is not None:
            self._check_training_output(inst, path, call_span, caller)
        if inst.declared:  # each layer `declare`d at the place its statement stands
            place = {name: (before, -1, i) for i, (name, before) in enumerate(inst.declared)}
            order = sorted(range(len(inst.layers)), key=lambda i: place.get(inst.layers[i].name, (i, 0, 0)))
            inst.layers = [inst.layers[i] for i in order]
        return inst


    def _check_training_output(self, inst, path, call_span, caller):
        """Several tensors in training only from a model's block; one, of the eval output's shape."""
        value, span = inst.training_output
        name = inst.block.name
        if isinstance(value, list) and path != "":
            raise self._err(f"`{name}` returns {len(value)} tensors in training, so it can only be a model's block",
                            call_span, caller.file, notes=[("returned here", span)])
        if isinstance(value, Tensor) and value.shape != inst.output.shape:
            raise self._err(f"block `{name}` returns {fmt_shape(value.shape)} in training but "
                            f"{fmt_shape(inst.output.shape)} in eval", span, inst.block.file,
                            notes=[("the eval output", inst.output_span)])

    def _run_training(self, s: ast.Training, scope):
        """`if training { ... }`: run in every elaboration, so that its layers are declared and its shapes
        checked, with its ops marked as training's; a `return` in it is the instance's training output,
        and the block goes on with its eval path."""
        inner = scope.derive(training=True)
        self.training += 1
        try:
            result = self._run_block_body(s.body, inner)
        finally:
            self.training -= 1
        inst = scope.instance
        if result is MISSING or inst.training_output is not None:
            return
        value, span = result
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, Tensor) and v.batched for v in values):
            what = type_name(value) if not isinstance(value, list) else "a list with other values than tensors"
            raise self._err(f"block `{inst.block.name}` must return tensors, not {what}", span, scope.file)
        inst.training_output = (value, span)

    def _declare_place(self, s: ast.Declare, scope):
        """`declare name`: the layer `name`, declared further on or already, takes its place in the module
        here."""
        inst = scope.instance
        if id(inst.block) not in self.layer_names:
            self.layer_names[id(inst.block)] = _layer_names(inst.block, scope.file)
        known, dynamic = self.layer_names[id(inst.block)]
        for name, span in zip(s.names, s.spans):
            if any(name == n for n, _ in inst.declared):
                raise self._err(f"`{name}` is in a `declare` already", span, scope.file)
            if name not in known and not dynamic:
                raise self._err(f"block `{inst.block.name}` declares no layer `{name}`", span, scope.file,
                                hint=did_you_mean(name, known))
            inst.declared.append((name, len(inst.layers)))


    def _declare_parameter(self, s: ast.ParamDecl, scope) -> Tensor:
        """`param gamma = full([dim], 1e-6)`: a state_dict entry of the block, under the name written."""
        name = self._layer_name(ast.LayerName(s.name, None, s.name_span), scope)
        init = s.init
        if init.func not in INITIALIZERS:
            raise self._err(f"unknown initializer `{init.func}`", init.func_span, scope.file,
                            hint=did_you_mean(init.func, INITIALIZERS) or f"use one of {', '.join(INITIALIZERS)}")
        kind = INITIALIZERS[init.func]
        args = self._eval_args(init.args, scope)
        shape_param = ("shape", REQUIRED)
        bound = self._bind(f"`{kind.name}`", [shape_param] + [(p.name, p.default) for p in kind.params], args,
                           init.span, scope)
        if "shape" not in bound:
            raise self._err(f"`{kind.name}` needs the parameter's shape, as in `{kind.name}([64, 1, 1])`", init.span,
                            scope.file)
        shape, shape_expr = bound["shape"]
        if is_int(shape):
            shape = [shape]
        if not (isinstance(shape, list) and shape and all(is_int(d) and d > 0 for d in shape)):
            raise self._err(f"a parameter's shape must be a list of positive ints, not {shape!r}",
                            shape_expr.span if shape_expr is not None else init.span, scope.file)
        attrs = {"shape": list(shape), "init": kind.name, "buffer": s.buffer}
        for p in kind.params:
            if p.name in bound:
                value, expr = bound[p.name]
                attrs[p.name] = self._check_kind(kind, p, value, expr.span if expr is not None else init.span, scope)
            elif p.default is REQUIRED:
                raise self._err(f"`{kind.name}` needs `{p.name}`", init.span, scope.file)
            else:
                attrs[p.name] = p.default
        inst = scope.instance
        layer = Layer(name, "param", s.span, self._child_path(scope, None, name), attrs=attrs, out_shape=tuple(shape))
        self._declare(layer, scope, None, s.name_span)
        node = self._add_node("parameter", attrs, [], tuple(shape), s.span, inst.path, layer.path)
        tensor = Tensor(node, 0, tuple(shape), batched=False)
        self._step(inst, Step("param", [], [tensor.key], layer=layer, span=s.span))
        return tensor

    def _recompute(self, s: ast.Recompute, scope):
        """`recompute name if cond { ... }`: its statements run as written (recomputing them in the
        backward pass changes no value), so only what the generated method needs is checked."""
        inst = scope.instance
        if s.cond is not None:
            self._truth(self.eval(s.cond, scope), s.cond.span, scope)
        problem = layer_name_problem(s.name)
        if problem is None and (not plain_layer_name(s.name) or s.name in ("x", "self")):
            problem = f"`{s.name}` cannot name a method of the generated class"
        if problem is not None:
            raise self._err(problem.replace("a layer named", "a region named"), s.name_span, scope.file,
                            hint="choose another name")
        if s.name in inst.recomputed:
            raise self._err(f"`recompute {s.name}` runs again; each region is one method of the class, run once",
                            s.span, scope.file, hint="put the loop inside the region, or name each region")
        for stmt in s.body:
            if not isinstance(stmt, (ast.Assign, ast.Unpack)):
                raise self._err("a `recompute` region holds assignments: the tensors it computes", stmt.span,
                                scope.file, hint="put conditions and loops around the region, not in it")
        before = dict(scope.vars)
        reads = [n.id for n in walk(s.body) if isinstance(n, ast.Name)]
        if not any(n in before and (isinstance(before[n], Tensor) or has_tensor(before[n])) for n in reads):
            raise self._err("this `recompute` region reads no tensor computed before it", s.span, scope.file,
                            hint="a region recomputes from the tensors it is given")
        self._run_block_body(s.body, scope)
        assigned = set().union(*[target_names(t.targets if isinstance(t, ast.Unpack) else t.target) for t in s.body])
        if not any(isinstance(scope.vars.get(n), Tensor) and scope.vars[n] is not before.get(n) for n in assigned):
            raise self._err("this `recompute` region computes no tensor", s.span, scope.file,
                            hint="assign the tensors it computes, as in `y = x | conv: conv2d(...)`")
        if find_layer(inst, s.name) is not None or s.name in inst.params:
            raise self._err(f"`{s.name}` names a layer or parameter of `{inst.block.name}` already", s.name_span,
                            scope.file, hint="a region's name becomes a method of the class: choose another")
        inst.recomputed[s.name] = s

    def _recursion(self, defn, span, scope):
        chain = [d.name for d in self.stack[self.stack.index(defn):]] + [defn.name]
        return self._err(f"`{defn.name}` uses itself: {' -> '.join(chain)}", span, scope.file,
                         hint="a block cannot contain an instance of itself")


    def _run_block_body(self, stmts, scope):
        for s in stmts:
            if isinstance(s, (ast.Assign, ast.Unpack)):
                value = self._assign(s, scope)
                if isinstance(value, Tensor) and isinstance(s.value, ast.Name):
                    self._step(scope.instance, Step("alias", [value.key], [value.key], span=s.span))
            elif isinstance(s, ast.Return):
                if s.outputs is not None and not scope.training:
                    raise self._err("a block returns one tensor; several are returned only in training, as a model's "
                                    "auxiliary outputs", s.span, scope.file,
                                    hint="return them under `if training { ... }`, and the main output after it")
                if s.outputs is not None:
                    return [self.eval(e, scope) for e in s.outputs], s.span
                return self.eval(s.value, scope), s.value.span
            elif isinstance(s, ast.Training):
                self._run_training(s, scope)
            elif isinstance(s, ast.Assert):
                self.check_assert(s, scope)
            elif isinstance(s, ast.Declare):
                self._declare_place(s, scope)
            elif isinstance(s, ast.If):
                result = self._run_block_body(self._branch(s, scope), scope)
                if result is not MISSING:
                    return result
            elif isinstance(s, ast.For):
                for v in self._iterable(s.iterable, scope):
                    self._bind_target(s.var, v, s.span, scope)
                    result = self._run_block_body(s.body, scope)
                    if result is not MISSING:
                        return result
            elif isinstance(s, ast.ParamDecl):
                scope.vars[s.name] = self._declare_parameter(s, scope)
            elif isinstance(s, ast.Recompute):
                self._recompute(s, scope)
            elif isinstance(s, ast.Fail):
                raise self.refusal(s, scope)
            elif isinstance(s, ast.LayerStmt):
                raise self._err("a layer on its own line has no input here", s.span, scope.file,
                                hint="apply it to a tensor: `x = x | name: ...`, or put it in a `seq { ... }`")
        return MISSING


def _used_here(error: SpecError, defn, call_span) -> SpecError:
    """An error inside a definition of another file (a library's block) also shows where this file
    used it, once per file on the way: the mistake is often in the arguments."""
    if error.span is not None and call_span is not None and error.span.path != call_span.path \
            and all(span.path != call_span.path for _, span in error.notes if span is not None):
        error.notes.append((f"in `{defn.name}`, used here", call_span))
    return error
