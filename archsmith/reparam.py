"""The deploy pass: an elaborated graph -> the graph of an inference network computing the same
eval-mode function, with fewer, larger ops (structural re-parameterization, RepVGG's and others').

Pure, over the graph alone, for any model:
- what runs only in training (`if training`), dropout, drop-path, identity and a concat of one tensor
  are removed;
- a batchnorm that reads a conv (or a linear layer giving features) and nothing else is folded into
  it: the conv gains a bias, the batchnorm's readers read the conv;
- an add whose terms are convs of one tensor, batchnorms of that tensor or the tensor itself is
  merged into one conv of the largest kernel: a smaller kernel is its centre, the identity is a conv
  of the identity kernel (grouped convs too), a batchnorm is folded into its term;
- what the output no longer reads is removed.

Besides the graph it returns the recipe of each layer whose weights change: `fused[path]` is a list
of terms (conv path or None for the identity, batchnorm path or None, batchnorm eps) summed into the
layer at `path`, every other layer keeping its weights under its checkpoint key. The generated
inference module applies the recipe to a trained model's state_dict (`backends.inference`)."""
from __future__ import annotations

import math
from collections import defaultdict

import networkx as nx

from .passes import check_inplace, output_shape, validate
from .primitives import pair

REMOVED = {"dropout", "drop_path", "identity"}  # the identity in eval
CONVS = {"conv1d", "conv2d"}
NORMS = {"batchnorm1d", "batchnorm2d"}


def deploy_graph(graph: nx.DiGraph) -> tuple:
    """(inference graph, fused recipes): see the module's docstring. The input graph is not changed."""
    g = nx.DiGraph()
    g.add_nodes_from((n, dict(d, inputs=[tuple(i) for i in d["inputs"]], attrs=dict(d["attrs"])))
                     for n, d in graph.nodes(data=True) if not d.get("training"))
    fused = {}
    _bypass_aliases(g)
    _fold_batchnorms(g, fused)
    _flatten_sums(g)
    _merge_sums(g, fused)
    _remove_dead(g)
    _rebuild_edges(g)
    validate(g)
    check_inplace(g)
    return g, fused


def _readers(g) -> dict:
    """(node, index) -> the nodes that read it, once per read."""
    out = defaultdict(list)
    for n, d in g.nodes(data=True):
        for key in d["inputs"]:
            out[key].append(n)
    return out


def _replace(g, replaced: dict):
    """Read `replaced[key]` wherever `key` was read, and remove the nodes whose output was replaced."""
    def final(key):
        while key in replaced:
            key = replaced[key]
        return key
    for _, d in g.nodes(data=True):
        d["inputs"] = [final(key) for key in d["inputs"]]
    g.remove_nodes_from({key[0] for key in replaced})


def _applications(g) -> dict:
    """module path -> how many nodes apply it."""
    out = defaultdict(int)
    for _, d in g.nodes(data=True):
        if d["module"] is not None:
            out[d["module"]] += 1
    return out


def _bypass_aliases(g):
    """Remove the ops that are the identity in eval, and a concat of one tensor, which is a copy: where
    nothing overwrites the copy in place."""
    inplace = {key for _, d in g.nodes(data=True) if d["attrs"].get("inplace") for key in d["inputs"][:1]}
    _replace(g, {(n, 0): d["inputs"][0] for n, d in g.nodes(data=True)
                 if d["op"] in REMOVED or d["op"] == "concat" and len(d["inputs"]) == 1 and (n, 0) not in inplace})


def _foldable(d, readers, n) -> bool:
    """Whether node n (data d) is a conv, or a linear layer giving features, that only one node reads."""
    if len(readers[(n, 0)]) != 1:
        return False
    return d["op"] in CONVS or d["op"] == "linear" and len(d["shape"]) == 1


def _fold_batchnorms(g, fused):
    readers, applied, replaced = _readers(g), _applications(g), {}
    for n, d in g.nodes(data=True):
        if d["op"] not in NORMS:
            continue
        (source, index), = d["inputs"]
        layer = g.nodes[source]
        # a layer applied twice keeps one set of weights: fold neither application
        if index != 0 or not _foldable(layer, readers, source) or applied[layer["module"]] != 1:
            continue
        layer["attrs"]["bias"] = True
        fused[layer["module"]] = [(layer["module"], d["module"], d["attrs"]["eps"])]
        replaced[(n, 0)] = (source, 0)
    _replace(g, replaced)


def _flatten_sums(g):
    """`(a + b) + c` as one sum of a, b and c where the inner sum is read only there."""
    readers = _readers(g)
    for n in sorted(g.nodes):
        d = g.nodes[n]
        if not _plain_sum(d):
            continue
        terms = []
        for key in d["inputs"]:
            inner = g.nodes[key[0]]
            if _plain_sum(inner) and readers[key] == [n] and inner["shape"] == d["shape"]:
                terms += inner["inputs"]
            else:
                terms.append(key)
        d["inputs"] = terms
    _remove_dead(g)


def _plain_sum(d) -> bool:
    return d["op"] == "add" and d["attrs"].get("scalar") is None and not d["attrs"].get("batched")


def _merge_sums(g, fused):
    readers, applied = _readers(g), _applications(g)
    for n in [n for n, d in g.nodes(data=True) if _plain_sum(d)]:
        d = g.nodes[n]
        groups = defaultdict(list)  # the tensor a term transforms -> [(term, kind)]
        for key in d["inputs"]:
            src = g.nodes[key[0]]
            alone = readers[key] == [n] and src["module"] is not None and applied[src["module"]] == 1
            if src["op"] in CONVS and alone:
                groups[src["inputs"][0]].append((key, "conv"))
            elif src["op"] in NORMS and alone:
                groups[src["inputs"][0]].append((key, "norm"))
            else:
                groups[key].append((key, "identity"))
        for source, terms in groups.items():
            convs = [g.nodes[key[0]] for key, kind in terms if kind == "conv"]
            if convs and len(terms) > 1 and _mergeable(convs, [k for _, k in terms], output_shape(g, *source)):
                _merge(g, n, source, terms, fused)
    _replace(g, {(n, 0): d["inputs"][0] for n, d in g.nodes(data=True) if _plain_sum(d) and len(d["inputs"]) == 1})


def _mergeable(convs, kinds, in_shape) -> bool:
    """Whether the convs (one input, one output shape) and identity terms are one conv: the same op,
    stride, dilation and groups, kernels centred on one another, and, for an identity, a kernel with
    a centre that reads each channel itself."""
    first = convs[0]["attrs"]
    rank = len(convs[0]["shape"]) - 1
    same = ("stride", "dilation", "groups", "out_channels")
    if any(c["op"] != convs[0]["op"] or any(_n(c["attrs"][k], rank) != _n(first[k], rank) for k in same)
           for c in convs):
        return False
    kernel = [max(_n(c["attrs"]["kernel_size"], rank)[i] for c in convs) for i in range(rank)]
    dilation = _n(first["dilation"], rank)
    reach = set()
    for c in convs:
        k, p = _n(c["attrs"]["kernel_size"], rank), _n(c["attrs"]["padding"], rank)
        if any((kernel[i] - k[i]) % 2 for i in range(rank)):
            return False
        reach.add(tuple(p[i] + (kernel[i] - k[i]) // 2 * dilation[i] for i in range(rank)))
    if len(reach) != 1:
        return False
    if any(k != "conv" for k in kinds):
        centre = tuple(dilation[i] * (kernel[i] // 2) for i in range(rank))
        square = all(k % 2 for k in kernel) and reach == {centre}
        if not square or set(_n(first["stride"], rank)) != {1} or first["out_channels"] != in_shape[0]:
            return False
    return True


def _n(v, rank) -> tuple:
    return pair(v) if rank == 2 else ((v,) if isinstance(v, int) else tuple(v))


def _merge(g, n, source, terms, fused):
    """Replace the terms of sum n that transform `source` by one conv: the layer of the first conv
    term with the largest kernel."""
    keys = [key for key, _ in terms]
    rank = len(output_shape(g, *source)) - 1
    size = {key[0]: _n(g.nodes[key[0]]["attrs"]["kernel_size"], rank) for key, kind in terms if kind == "conv"}
    convs = sorted(size, key=lambda c: -math.prod(size[c]))  # stable: the first of the largest
    target = g.nodes[convs[0]]
    kernel = [max(size[c][i] for c in convs) for i in range(rank)]
    a = target["attrs"]
    padding = [_n(a["padding"], rank)[i] + (kernel[i] - _n(a["kernel_size"], rank)[i]) // 2 * _n(a["dilation"], rank)[i]
               for i in range(rank)]
    recipe = []
    for key, kind in terms:
        node = g.nodes[key[0]]
        if kind == "conv":
            recipe += fused.pop(node["module"], [(node["module"], None, None)])
        elif kind == "norm":
            recipe.append((None, node["module"], node["attrs"]["eps"]))
        else:
            recipe.append((None, None, None))
    a["kernel_size"] = kernel[0] if rank == 1 or kernel[0] == kernel[1] else kernel
    a["padding"] = padding[0] if rank == 1 or padding[0] == padding[1] else padding
    a["bias"] = True
    fused[target["module"]] = recipe
    d = g.nodes[n]
    d["inputs"] = [key for key in d["inputs"] if key not in keys or key == (convs[0], 0)]
    for key in keys:
        if key[0] != convs[0] and key[0] != source[0] and key[0] in g:
            g.remove_node(key[0])


def _remove_dead(g):
    live = {n for n, d in g.nodes(data=True) if d["op"] == "output"}
    for n in sorted(g.nodes, reverse=True):
        if n in live:
            live.update(key[0] for key in g.nodes[n]["inputs"])
    g.remove_nodes_from([n for n in list(g.nodes) if n not in live])


def _rebuild_edges(g):
    g.remove_edges_from(list(g.edges))
    for n, d in g.nodes(data=True):
        for port, (src, index) in enumerate(d["inputs"]):
            if g.has_edge(src, n):
                g.edges[src, n]["ports"].append(port)
            else:
                g.add_edge(src, n, ports=[port], shape=output_shape(g, src, index))
