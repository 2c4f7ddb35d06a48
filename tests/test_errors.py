"""Broken specs: every mistake is a SpecError that points at the right line and column.

Each case is a spec with one mistake, the 1-based line and column the error must point at, a fragment
of its message and, for some, its hint. Spec texts are built with `spec(...)`, one argument per line,
so that the n-th argument is line n; columns are counted on that line's text.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple, Optional

import pytest

import archsmith
from archsmith import SpecError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "errors"
MODEL = "model net = Net() input [3, 32, 32]"


def spec(*lines: str) -> str:
    """A spec text whose line n is the n-th argument."""
    return "\n".join(lines) + "\n"


class Case(NamedTuple):
    id: str
    spec: str  # spec text, or a path under FIXTURES
    line: int
    column: int
    message: str  # a fragment of err.message
    hint: Optional[str] = None  # a fragment of err.hint, when given
    file: Optional[str] = None  # the file the error must be in, for multi-file cases


# Blocks shared by several cases.
INNER = ("block Inner(c) {",
         "    return x | conv: conv2d(c, 1)",
         "}")

CASES = [
    # ------------------------------------------------------------------ syntax
    Case("syntax-missing-rparen-in-call",
         spec("block Net(n = 8) {",
              "    x = x | conv: conv2d(n, 3, padding=1",
              "    x = x | relu",  # newlines inside (...) are dropped, so `x` is unexpected
              "    return x",
              "}",
              MODEL),
         3, 5, "expected `,` or `)` to close the `(` on line 2, found `x`"),
    Case("syntax-missing-rparen-in-params",
         spec("block Net(n {",
              "    return x",
              "}"),
         1, 13, "expected `,`, `=` or `)` to close the `(` on line 1, found `{`"),
    Case("syntax-missing-rbrace-at-eof",
         spec("block Net(n = 8) {",
              "    x = x | conv: conv2d(n, 3, padding=1) | bn: batchnorm2d()",
              "    return x"),
         3, 13, "expected a statement or `}` to close the `{` on line 1, found the end of the file"),
    Case("syntax-missing-rbrace-before-model",
         spec("block Net(n = 8) {",
              "    x = x | relu",
              "    return x",
              "",
              MODEL),
         5, 1, "expected a statement or `}` to close the `{` on line 1, found `model`",
         hint="is a `}` missing before this line?"),
    Case("syntax-single-quote",
         spec("block Net(n = 8) {",
              "    x = x | conv: conv2d(n, 3, padding='same')",
              "    return x",
              "}",
              MODEL),
         2, 40, "unexpected character `'`", hint="strings use double quotes"),
    Case("syntax-unexpected-token",
         spec("block Net(n = 8) {",
              "    x = x | | relu",
              "    return x",
              "}",
              MODEL),
         2, 13, "expected a layer, found `|`"),

    # ------------------------------------------------------------------ unknown names
    Case("unknown-layer",
         spec("block Net(n = 8) {",
              "    x = x | conv: conv3d(n, 3, padding=1)",
              "    return x",
              "}",
              MODEL),
         2, 19, "unknown layer `conv3d`", hint="did you mean `conv2d`?"),
    Case("unknown-keyword-argument",
         spec("block Net(n = 8) {",
              "    x = x | conv: conv2d(n, 3, strid=2)",
              "    return x",
              "}",
              MODEL),
         2, 32, "`conv2d` has no parameter `strid`", hint="did you mean `stride`?"),
    Case("unknown-variable",
         spec("block Net(width = 8) {",
              "    x = x | conv: conv2d(widht, 3)",
              "    return x",
              "}",
              MODEL),
         2, 26, "unknown name `widht`", hint="did you mean `width`?"),
    Case("unknown-block-in-model",
         spec("block Net() {",
              "    return x | relu",
              "}",
              "model net = Nett() input [3, 32, 32]"),
         4, 13, "unknown name `Nett`", hint="did you mean `Net`?"),
    Case("unknown-tensor-attribute",
         spec("block Net() {",
              "    x = x | conv: conv2d(x.chanels, 3)",
              "    return x",
              "}",
              MODEL),
         2, 26, "a tensor has no attribute `chanels`", hint="did you mean `channels`?"),
    Case("missing-import",
         spec("import \"nosuchlib\"",
              "block Net() {",
              "    return x",
              "}",
              MODEL),
         1, 1, "cannot find `nosuchlib` to import"),

    # ------------------------------------------------------------------ arity
    Case("too-many-positional-to-primitive",
         spec("block Net() {",
              "    x = x | relu(true, 2)",
              "    return x",
              "}",
              MODEL),
         2, 24, "`relu` takes at most 1 argument, got 2"),
    Case("too-many-positional-to-block",
         spec(*INNER,
              "block Net() {",
              "    x = x | a: Inner(8, 16)",
              "    return x",
              "}",
              MODEL),
         5, 25, "`Inner` takes at most 1 argument, got 2"),
    Case("missing-required-primitive-argument",
         spec("block Net(n = 8) {",
              "    x = x | conv: conv2d(n)",
              "    return x",
              "}",
              MODEL),
         2, 19, "`conv2d` needs `kernel_size`"),
    Case("missing-required-block-argument",
         spec(*INNER,
              "block Net() {",
              "    x = x | a: Inner()",
              "    return x",
              "}",
              MODEL),
         5, 16, "`Inner` needs `c`"),
    Case("argument-given-twice",
         spec("block Net(n = 8) {",
              "    x = x | conv: conv2d(n, 3, kernel_size=5)",
              "    return x",
              "}",
              MODEL),
         2, 32, "`conv2d` got `kernel_size` twice"),

    # ------------------------------------------------------------------ types and values
    Case("string-where-int-expected",
         spec("block Net() {",
              "    x = x | conv: conv2d(\"a\", 3)",
              "    return x",
              "}",
              MODEL),
         2, 26, "`out_channels` of `conv2d` must be an int, not a string"),
    Case("non-positive-stride",
         spec("block Net() {",
              "    x = x | conv: conv2d(8, 3, stride=0)",
              "    return x",
              "}",
              MODEL),
         2, 39, "`stride` of `conv2d` must be positive, got 0"),
    Case("bad-input-shape",
         spec("block Net() {",
              "    return x | relu",
              "}",
              "model net = Net() input [3, 0, 32]"),
         4, 25, "the input shape must be a list of positive ints"),
    Case("index-out-of-range",
         spec("widths = [16, 32]",
              "block Net() {",
              "    x = x | conv: conv2d(widths[2], 3)",
              "    return x",
              "}",
              MODEL),
         3, 33, "index 2 is out of range for a list of length 2"),
    Case("division-by-zero",
         spec("block Net(n = 8, groups = 0) {",
              "    x = x | conv: conv2d(n // groups, 3)",
              "    return x",
              "}",
              MODEL),
         2, 26, "division by zero"),
    Case("constant-depends-on-itself",
         spec("a = b + 1",
              "b = a * 2",
              "block Net() {",
              "    x = x | conv: conv2d(a, 3)",
              "    return x",
              "}",
              MODEL),
         1, 1, "constant `a` depends on itself"),

    # ------------------------------------------------------------------ shapes
    Case("add-different-channels",
         spec("block Net() {",
              "    a = x | c1: conv2d(256, 1)",
              "    b = x | c2: conv2d(128, 1)",
              "    return a + b",
              "}",
              MODEL),
         4, 12, "channels differ (256 vs 128)"),
    Case("concat-different-spatial-sizes",
         spec("block Net() {",
              "    a = x | c1: conv2d(8, 3, padding=1)",
              "    b = x | c2: conv2d(8, 3, stride=2, padding=1)",
              "    return concat(a, b)",
              "}",
              MODEL),
         4, 12, "concat of [8, 32, 32] and [8, 16, 16]: all but dim 1 must match"),
    Case("transpose-of-the-batch",
         spec("block Net() {",
              "    return x | transpose(0, 1)",
              "}",
              MODEL),
         2, 16, "transpose dim0=0 is the batch dimension; a spec works on dimensions 1 to 3"),
    Case("permute-moving-the-batch",
         spec("block Net() {",
              "    return x | permute([1, 0, 2, 3])",
              "}",
              MODEL),
         2, 16, "permute dims [1, 0, 2, 3] must keep the batch dimension 0 first"),
    Case("parameter-piped-into-a-layer",
         spec("block Net() {",
              "    param gamma = ones([3, 1, 1])",
              "    return gamma | relu",
              "}",
              MODEL),
         3, 20, "a free parameter has no batch dimension, so only arithmetic applies to it"),
    Case("reshape-losing-elements",
         spec("block Net() {",
              "    return x | reshape([3, 1000])",
              "}",
              MODEL),
         2, 16, "reshape sizes [3, 1000] hold 3000 elements, not the 3072 of the [3, 32, 32] per sample, of size"),
    Case("linear-reapplied-to-wrong-width",
         spec("block Net() {",
              "    x = x | flatten() | fc: linear(64)",
              "    x = x | fc",
              "    return x",
              "}",
              MODEL),
         3, 13, "`fc` was built for input [3072] but is applied to [64] (in_features differs)"),
    Case("conv-groups-do-not-divide-channels",
         spec("block Net() {",
              "    x = x | conv: conv2d(8, 3, groups=2)",
              "    return x",
              "}",
              MODEL),
         2, 19, "conv2d groups=2 does not divide the 3 input channels"),
    Case("pool-window-larger-than-input",
         spec("block Net() {",
              "    return x | maxpool2d(8)",
              "}",
              "model net = Net() input [3, 4, 4]"),
         2, 16, "maxpool2d window 8 (padding 0) does not fit the input height 4"),

    # ------------------------------------------------------------------ imports (files under fixtures/errors)
    Case("import-cycle", "cycle_a.arch",
         3, 1, "import cycle: cycle_a.arch -> cycle_b.arch -> cycle_a.arch", file="cycle_b.arch"),
    Case("import-self", "self_import.arch",
         2, 1, "import cycle: self_import.arch -> self_import.arch", file="self_import.arch"),
    Case("imported-twice", "twice_main.arch",
         3, 1, "`ConvBnAct` is imported twice", hint="or define `ConvBnAct` in this file", file="twice_main.arch"),

    # ------------------------------------------------------------------ blocks and layers
    Case("block-instantiates-itself",
         spec("block A(n = 8) {",
              "    x = x | inner: A(n)",
              "    return x",
              "}",
              "model net = A() input [3, 32, 32]"),
         2, 20, "`A` uses itself: A -> A", hint="cannot contain an instance of itself"),
    Case("blocks-instantiate-each-other",
         spec("block A() {",
              "    x = x | b: B()",
              "    return x",
              "}",
              "block B() {",
              "    x = x | a: A()",
              "    return x",
              "}",
              "model net = A() input [3, 32, 32]"),
         6, 16, "`A` uses itself: A -> B -> A"),
    Case("block-without-return",
         spec("# a block that never returns",
              "block Net() {",
              "    x = x | relu",
              "}",
              MODEL),
         2, 1, "block `Net` has no `return`", hint="end the block with `return`"),
    Case("block-returns-non-tensor",
         spec("block Net() {",
              "    return x.channels",
              "}",
              MODEL),
         2, 12, "block `Net` must return a tensor, not an int"),
    Case("layer-with-weights-without-name",
         spec("block Net() {",
              "    x = x | conv2d(8, 3)",
              "    return x",
              "}",
              MODEL),
         2, 13, "a `conv2d` has weights, so it needs a name", hint="write `name: conv2d(...)`"),
    Case("block-instance-without-name",
         spec(*INNER,
              "block Net() {",
              "    x = x | Inner(8)",
              "    return x",
              "}",
              MODEL),
         5, 13, "an instance of `Inner` needs a name"),
    Case("duplicate-layer-name",
         spec("block Net() {",
              "    x = x | conv: conv2d(8, 3, padding=1)",
              "    x = x | conv: conv2d(8, 3, padding=1)",  # points at the second layer's name
              "    return x",
              "}",
              MODEL),
         3, 13, "a layer named `conv` is already declared in `Net`"),
    Case("duplicate-top-level-definition",
         spec("block Net() {",
              "    return x | relu",
              "}",
              "block Net() {",
              "    return x",
              "}",
              MODEL),
         4, 1, "`Net` is already defined in this file"),
    Case("reserved-layer-name",
         spec("block Net() {",
              "    x = x | forward: conv2d(8, 3)",
              "    return x",
              "}",
              MODEL),
         2, 13, "a layer named `forward` would hide nn.Module.forward"),
    Case("layer-on-its-own-line-in-block",
         spec("block Net() {",
              "    relu()",
              "    return x",
              "}",
              MODEL),
         2, 5, "a layer on its own line has no input here"),

    # a nested block's `return` must not take over the outer block's error location
    Case("nested-block-return-non-tensor",
             spec(*INNER,
                  "block Net() {",
                  "    return (x | a: Inner(8)).channels",
                  "}",
                  MODEL),
             5, 12, "block `Net` must return a tensor, not an int"),
    Case("negative-padding",
             spec("block Net() {",
                  "    x = x | conv: conv2d(8, 3, padding=-1)",
                  "    return x",
                  "}",
                  MODEL),
             2, 40, "`padding` of `conv2d` must be at least 0"),
    Case("inplace-overwrites-a-tensor-read-later",
         spec("block Net() {",
              "    identity = x | conv: conv2d(8, 3, padding=1)",
              "    out = identity | act: relu(inplace=true)",
              "    return out + identity",
              "}",
              MODEL),
         3, 27, "in-place relu overwrites a tensor that line 4 reads afterwards", hint="drop `inplace=true` here"),
    # a view shares its tensor's memory, and identity, dropout and drop-path in eval return their input
    Case("inplace-overwrites-the-tensor-of-a-view",
         spec("block Net() {",
              "    y = x | conv: conv2d(8, 3, padding=1)",
              "    s = slice(y, 0, 2) | relu(inplace=true)",
              "    return concat(s, y)",
              "}",
              MODEL),
         3, 26, "in-place relu overwrites a tensor that line 4 reads afterwards (a view, or the tensor it views, shares its memory)"),
    Case("inplace-overwrites-a-view-taken-before",
         spec("block Net() {",
              "    y = x | conv: conv2d(8, 3, padding=1)",
              "    s = slice(y, 0, 2)",
              "    z = y | relu(inplace=true)",
              "    return concat(s, z)",
              "}",
              MODEL),
         4, 13, "in-place relu overwrites a tensor that line 5 reads afterwards (a view, or the tensor it views, shares its memory)"),
    Case("inplace-after-dropout-overwrites-its-input-in-eval",
         spec("block Net() {",
              "    y = x | conv: conv2d(8, 3, padding=1)",
              "    z = y | dropout(0.5) | relu(inplace=true)",
              "    return y + z",
              "}",
              MODEL),
         3, 28, "in-place relu overwrites a tensor that line 4 reads afterwards (a view, or the tensor it views, shares its memory)"),
    # the compiler's own limits: a spec cannot make it hang or exhaust memory
    Case("list-too-long",
         spec("A = [0] * 99999 * 99999",
              "block Net(n = len(A)) {",
              "    return x",
              "}",
              MODEL),
         1, 5, "the result has more than 1,000,000 items"),
    Case("loops-too-long",
         spec("block Net() {",
              "    for i in range(1000) {",
              "        for j in range(1000) {",
              "            for k in range(1000) { b = 1 }",
              "        }",
              "    }",
              "    return x",
              "}",
              MODEL),
         4, 22, "the loops of this model run more than 1,000,000 times"),
    Case("number-too-large",
         spec("block Net(n = 10 ** 30) {",
              "    return x",
              "}",
              MODEL),
         1, 15, "too large a number"),
    # ------------------------------------------------------------------ names from other languages
    Case("python-literal",
         spec("block Net(relu_last = False) {",
              "    return x",
              "}",
              MODEL),
         1, 23, "unknown name `False`", hint="did you mean `false`?"),
    Case("null-literal",
         spec("block Net(skip = null) {",
              "    return x",
              "}",
              MODEL),
         1, 18, "unknown name `null`", hint="did you mean `none`?"),
    Case("python-function-not-a-primitive",
         spec("block Net(ws = sorted([2, 1])) {",
              "    return x",
              "}",
              MODEL),
         1, 16, "unknown function `sorted`", hint="`sorted` is a Python function; the built-in functions here are range"),
    Case("torch-class-name-as-layer",
         spec("block Net() {",
              "    x = x | conv: Conv2d(8, 3)",
              "    return x",
              "}",
              MODEL),
         2, 19, "unknown layer `Conv2d`", hint="did you mean `conv2d`?"),
    Case("torch-class-name-in-other-capitals",
         spec("block Net() {",
              "    x = x | act: ReLU()",
              "    return x",
              "}",
              MODEL),
         2, 18, "unknown layer `ReLU`", hint="did you mean `relu`?"),

    # ------------------------------------------------------------------ arguments of primitives
    Case("inferred-argument-given",
         spec("block Net() {",
              "    x = x | conv: conv2d(8, 3, in_channels=3)",
              "    return x",
              "}",
              MODEL),
         2, 32, "`in_channels` of `conv2d` is inferred from its input's channels; drop it"),
    Case("input-channels-given-by-position",
         spec("block Net() {",
              "    x = x | conv: conv2d(3, 8, 3, stride=2)",
              "    return x",
              "}",
              MODEL),
         2, 35, "`conv2d` got `stride` twice: as argument 3 and by name",
         hint="(`in_channels` is inferred from its input)"),
    Case("too-many-positional-to-linear",
         spec("block Net() {",
              "    x = x | flatten() | fc: linear(3072, 10, true)",
              "    return x",
              "}",
              MODEL),
         2, 46, "`linear` takes at most 2 arguments, got 3",
         hint="`linear` takes, in order: out_features, bias (`in_features` is inferred from its input)"),
    Case("torchvision-name-of-a-primitive",
         spec("block Net() {",
              "    return x | stochastic_depth(0.1)",
              "}",
              MODEL),
         2, 16, "unknown layer `stochastic_depth`", hint="did you mean `drop_path`?"),
    Case("torch-class",
         spec("block Net() {",
              "    return x | c: nn.Conv2d(8, 3)",
              "}",
              MODEL),
         2, 19, "`nn.Conv2d` is a PyTorch name; layers are the language's primitives", hint="did you mean `conv2d`?"),
    Case("interpolated-name-with-a-dot",
         spec("block Net() {",
              "    x = x | block{\".0\"}: conv2d(8, 3)",
              "    return x",
              "}",
              MODEL),
         2, 13, "a layer named `block.0` contains a `.`, which separates the names in a checkpoint key"),
    Case("file-without-model",
         spec("# a library",
              "block Net() {",
              "    return x",
              "}"),
         1, 1, "<string> defines no model to compile", hint="add a line like `model net = Net(...) input"),
    Case("pool-padding-over-half-the-window",
         spec("block Net() {",
              "    x = x | pool: maxpool2d(2, padding=3)",
              "    return x",
              "}",
              MODEL),
         2, 19, "maxpool2d padding 3 is more than half the window 2"),
    # ------------------------------------------------------------------ declare
    # ------------------------------------------------------------------ if training
    Case("training-name-read-in-eval",
         spec("block Net() {",
              "    if training { a = x | aux: conv2d(4, 1) }",
              "    x = x | conv: conv2d(8, 1)",
              "    return concat(x, a)",
              "}",
              MODEL),
         4, 22, "`a` is assigned only in training, so only `if training` can read it", hint="read it under"),
    Case("training-in-an-expression",
         spec("block Net(aux = true) {",
              "    if aux and training { x = x | conv: conv2d(8, 1) }",
              "    return x",
              "}",
              MODEL),
         2, 16, "`training` is the module's mode", hint="`if aux { if training { ... } }`"),
    Case("training-with-else",
         spec("block Net() {",
              "    if training { x = x | relu } else { x = x | relu6 }",
              "    return x",
              "}",
              MODEL),
         2, 5, "`if training` has no `elif` or `else`"),
    Case("training-in-a-seq",
         spec("block Net() {",
              "    return x | body: seq { if training { relu } }",
              "}",
              MODEL),
         2, 28, "`if training` stands in a block body"),
    Case("several-outputs-in-eval",
         spec("block Net() {",
              "    y = x | conv: conv2d(8, 1)",
              "    return y, x",
              "}",
              MODEL),
         3, 5, "several are returned only in training", hint="under `if training"),
    Case("several-training-outputs-of-a-child",
         spec("block Aux() {",
              "    if training { return x, x }",
              "    return x",
              "}",
              "block Net() {",
              "    return x | aux: Aux()",
              "}",
              MODEL),
         6, 21, "`Aux` returns 2 tensors in training, so it can only be a model's block"),
    Case("training-output-of-another-shape",
         spec("block Net() {",
              "    if training { return x | conv: conv2d(8, 1) }",
              "    return x",
              "}",
              MODEL),
         2, 26, "returns [8, 32, 32] in training but [3, 32, 32] in eval"),
    Case("declare-a-name-no-layer-has",
         spec("block Net() {",
              "    declare cnv",
              "    return x | conv: conv2d(8, 1)",
              "}",
              MODEL),
         2, 13, "block `Net` declares no layer `cnv`", hint="did you mean `conv`?"),
    Case("declare-twice",
         spec("block Net() {",
              "    declare conv, conv",
              "    return x | conv: conv2d(8, 1)",
              "}",
              MODEL),
         2, 19, "`conv` is in a `declare` already"),
    Case("declare-in-a-seq",
         spec("block Net() {",
              "    return x | s: seq { declare conv; conv: conv2d(8, 1) }",
              "}",
              MODEL),
         2, 25, "`declare` places a layer of a block; a `seq`'s children are in the order written"),
    Case("two-names-not-a-statement",
         spec("block Net() {",
              "    layers conv",
              "    return x | conv: conv2d(8, 1)",
              "}",
              MODEL),
         2, 12, "unexpected `conv` after `layers`", hint="`declare name`"),
    # ------------------------------------------------------------------ assert
    Case("assert-in-a-block",
         spec("block Net(depth = 15) {",
              "    assert (depth - 4) % 6 == 0, \"the depth is 6n + 4\"",
              "    return x",
              "}",
              MODEL),
         2, 12, "the depth is 6n + 4", hint="here `depth` is 15"),
    Case("assert-in-a-seq",
         spec("block Net(width = 3) {",
              "    x = x | body: seq {",
              "        assert width % 2 == 0 and x.channels > 0, \"an even width\"",
              "        conv2d(width, 1)",
              "    }",
              "    return x",
              "}",
              MODEL),
         3, 16, "an even width", hint="here `width` is 3"),
    Case("assert-in-a-fn",
         spec("fn blocks(depth) {",
              "    assert depth >= 4",
              "    return depth - 4",
              "}",
              "block Net() {",
              "    return x | conv: conv2d(blocks(2), 1)",
              "}",
              MODEL),
         2, 12, "assertion failed", hint="here `depth` is 2"),
    Case("assert-message-not-a-string",
         spec("block Net() {",
              "    assert false, 42",
              "    return x",
              "}",
              MODEL),
         2, 19, "a message is a string literal", hint='values go between braces in it: "depth {depth} is not 6n + 4"'),
    # ------------------------------------------------------------------ a list of tensors into a block
    Case("list-into-a-primitive",
         spec("block Net() {",
              "    y = [x, x] | conv: conv2d(8, 1)",
              "    return y",
              "}",
              MODEL),
         2, 24, "a list of tensors goes only into a block", hint="`concat(features) | ...`"),
    Case("list-into-a-seq",
         spec("block Net() {",
              "    return [x, x] | s: seq { conv2d(8, 1) }",
              "}",
              MODEL),
         2, 21, "a list of tensors goes only into a block"),
    Case("list-of-different-sizes",
         spec("block Cat() {",
              "    return concat(x)",
              "}",
              "block Net() {",
              "    return [x, x | maxpool2d(2)] | cat: Cat()",
              "}",
              MODEL),
         5, 36, "concat joins on channels; [3, 32, 32] and [3, 16, 16] differ in more than the channels"),
    # ------------------------------------------------------------------ recompute
    Case("recompute-misspelt",
         spec("block Net() {",
              "    recomput r { y = x | conv: conv2d(8, 1) }",
              "    return y",
              "}",
              MODEL),
         2, 14, "unexpected `r` after `recomput`", hint="`recompute name if cond { ... }`"),
    Case("recompute-holds-an-if",
         spec("block Net(deep = true) {",
              "    recompute r {",
              "        if deep { x = x | conv: conv2d(8, 1) }",
              "    }",
              "    return x",
              "}",
              MODEL),
         3, 9, "a `recompute` region holds assignments", hint="put conditions and loops around the region"),
    Case("recompute-reads-no-tensor",
         spec("block Net() {",
              "    recompute r { n = 3 }",
              "    return x",
              "}",
              MODEL),
         2, 5, "this `recompute` region reads no tensor computed before it"),
    Case("recompute-computes-no-tensor",
         spec("block Net() {",
              "    recompute r { n = x.channels }",
              "    return x",
              "}",
              MODEL),
         2, 5, "this `recompute` region computes no tensor"),
    Case("recompute-named-like-a-layer",
         spec("block Net() {",
              "    recompute conv { y = x | conv: conv2d(8, 1) }",
              "    return y",
              "}",
              MODEL),
         2, 15, "`conv` names a layer or parameter of `Net` already"),
    Case("recompute-named-forward",
         spec("block Net() {",
              "    recompute forward { y = x | conv: conv2d(8, 1) }",
              "    return y",
              "}",
              MODEL),
         2, 15, "a region named `forward` would hide nn.Module.forward"),
    Case("recompute-in-a-loop",
         spec("block Net() {",
              "    for i in range(2) {",
              "        recompute r { x = x | conv{i}: conv2d(8, 1) }",
              "    }",
              "    return x",
              "}",
              MODEL),
         3, 9, "`recompute r` runs again", hint="put the loop inside the region"),
    Case("recompute-in-a-seq",
         spec("block Net() {",
              "    return x | s: seq { recompute r { conv2d(8, 1) } }",
              "}",
              MODEL),
         2, 25, "`recompute` is a statement of block bodies"),
    Case("recompute-on-a-tensor",
         spec("block Net() {",
              "    recompute r if x { y = x | conv: conv2d(8, 1) }",
              "    return y",
              "}",
              MODEL),
         2, 20, "a tensor is not a condition"),
]


# ---------------------------------------------------------------------- syntax: what was expected, in words

def block(*body: str) -> str:
    """A block `Net` whose body lines are the arguments, so that argument n is line n + 1."""
    return spec("block Net() {", *("    " + b for b in body), "}")


class Syntax(NamedTuple):
    id: str
    spec: str
    line: int
    column: int
    message: str  # the whole message
    hint: Optional[str]  # a fragment of the hint, when there must be one


SYNTAX = [Syntax(*case) for case in [
    ("missing-rparen", block("v = (1 + 2", "return x"), 3, 5, "expected `)` to close the `(` on line 2, found `return`", None),
    ("missing-rsqb", block("v = [1, 2", "return x"), 3, 5, "expected `,` or `]` to close the `[` on line 2, found `return`", None),
    ("two-statements-on-a-line", block("v = 1 w = 2"), 2, 11, "expected a newline or `;` after the statement, found `w`", None),
    ("missing-expression", block("v = "), 2, 9, "expected an expression, found the end of the line", None),
    ("missing-operand", block("v = 1 +"), 2, 12, "expected an expression, found the end of the line", None),
    ("missing-return-value", block("return"), 2, 11, "expected an expression, found the end of the line", None),
    ("missing-layer-after-pipe", block("x = x | "), 2, 13, "expected a layer, found the end of the line", None),
    ("missing-layer-after-name", block("x = x | c: ;"), 2, 16, "expected a layer, found `;`", None),
    ("colon-body", block("if x > 1: v = 1"), 2, 13, "expected `{`, found `:`", "a body is written in braces"),
    ("for-without-in", block("for i range(3) { }"), 2, 11, "expected `,` or `in`, found `range`", None),
    ("for-without-name", block("for in range(3) { }"), 2, 9, "expected `(` or a name, found `in`", None),
    ("empty-comprehension-source", block("v = [w for w in]"), 2, 20, "expected an expression, found `]`", None),
    ("slice-step", block("v = [1, 2][1:2:3]"), 2, 19, "expected `]` to close the `[` on line 2, found `:`", None),
    ("attribute-number", block("v = x.1"), 2, 11, "expected a name, found `1`", None),
    ("unclosed-params", "block Net( {\n}\n", 1, 12, "expected a name or `)` to close the `(` on line 1, found `{`", None),
    ("body-on-next-line", "block Net()\n{ return x }\n", 1, 12, "expected `{`, found the end of the line", None),
    ("block-without-name", "block (\n", 1, 7, "expected a name, found `(`", None),
    ("model-without-name", "model = Net() input [1]\n", 1, 7, "expected a name, found `=`", None),
    ("model-without-input", "model m = Net() [1]\n", 1, 17, "expected `input`, found `[`", None),
    ("model-without-input-at-eol", "model m = Net()\nmodel n = Net() input [1]\n", 1, 16,
     "expected `input`, found the end of the line", None),
    ("model-block-without-call", "model m = Net input [1]\n", 1, 15, "expected `(`, found `input`", None),
    ("import-without-quotes", "import foo\n", 1, 8, "expected a string in double quotes, found `foo`", None),
    ("def-without-equals", "def f(a) relu()\n", 1, 10, "expected `=`, found `relu`", None),
    ("extra-rbrace", "block Net() { return x }}\n", 1, 25, "expected a newline or `;` after the statement, found `}`", None),
    ("unclosed-body-at-eof", "block Net() {\n    return x\n", 2, 13,
     "expected a statement or `}` to close the `{` on line 1, found the end of the file", None),
    ("unclosed-seq", block("x = x | s: seq { relu()") + "model m = Net() input [1]\n", 4, 1,
     "expected a statement or `}` to close the `{` on line 1, found `model`", "is a `}` missing before this line?"),
    # constructs of other languages
    ("is-not", block("if x.channels is not none { x = x }"), 2, 19, "`is` is not an operator here",
     "compare with `==` or `!=`"),
    ("method-call", block("return x.mean([2, 3])"), 2, 14,
     "`.mean(...)` calls a method; the language has functions, which take the value first", "`mean(x, [2, 3])`"),
    ("scaled-param", block("param g = ones([x.channels, 1, 1]) * 2"), 2, 40, "a `param` is made by one initializer call",
     "`full([dim, 1, 1], scale)`"),
    ("unquoted-name-with-dash", block("x = x | block1-0: conv2d(8, 3)"), 2, 19,
     "a layer name with `-` is written in double quotes", '`"block1-0": ...`'),
    ("else-if", block("if true { v = 1 } else if false { v = 2 }"), 2, 23, "`else if` is written `elif`", None),
    ("double-bar", block("v = true || false"), 2, 14, "`||` is written `or`", None),
    ("double-ampersand", block("v = true && false"), 2, 14, "unexpected character `&`", "`&&` is written `and`"),
    ("exclamation", block("v = !true"), 2, 9, "unexpected character `!`", "`!` is written `not`"),
    ("single-quote", block("v = 'a'"), 2, 9, "unexpected character `'`", "strings use double quotes"),
    ("nul-byte", block("v = 1\x00"), 2, 10, "unexpected character U+0000", "is this the right file?"),
    ("def-in-block", block("def f(a) = relu()"), 2, 5,
     "`def` starts a definition at the top level of a file, not inside a block", "move the `def` out"),
    ("lambda", block("f = lambda a: a"), 2, 9, "there is no `lambda`", "top-level `def`"),
    ("assert-is-reserved", block("assert = 1"), 2, 12, "expected an expression, found `=`", None),
]]


@pytest.mark.parametrize("case", SYNTAX, ids=[c.id for c in SYNTAX])
def test_syntax_error_says_what_was_expected(case: Syntax):
    with pytest.raises(SpecError) as info:
        archsmith.compile(case.spec)
    err = info.value
    assert (err.message, err.line, err.column) == (case.message, case.line, case.column), err.render()
    if case.hint is not None:
        assert err.hint is not None and case.hint in err.hint, err.render()
    assert "unexpected `" not in err.message and "$END" not in err.message and "_NL" not in err.message


def _ids(cases):
    return [c.id for c in cases]  # a Case's id, or a pytest.param's


def _compile(case: Case):
    if case.file is not None:
        return archsmith.compile(str(FIXTURES / case.spec))
    return archsmith.compile(case.spec)


def _raised(case: Case) -> SpecError:
    with pytest.raises(SpecError) as info:
        _compile(case)
    return info.value


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_broken_spec_is_located(case: Case):
    err = _raised(case)
    assert case.message in err.message
    assert (err.line, err.column) == (case.line, case.column), err.render()
    if case.hint is not None:
        assert err.hint is not None and case.hint in err.hint, err.render()
    if case.file is not None:
        assert os.path.basename(err.path) == case.file
    else:
        assert err.path == "<string>"


def test_there_are_enough_cases():
    assert len(CASES) >= 24
    assert len(set(_ids(CASES))) == len(CASES)


# ---------------------------------------------------------------------- rendering

def _case(case_id: str) -> Case:
    for c in CASES:
        if isinstance(c, Case) and c.id == case_id:
            return c
    raise KeyError(case_id)


@pytest.mark.parametrize("case_id", ["unknown-keyword-argument", "unknown-layer", "add-different-channels",
                                     "syntax-single-quote", "syntax-missing-rbrace-at-eof"])
def test_rendered_error_shows_the_line_and_a_caret(case_id):
    case = _case(case_id)
    err = _raised(case)
    text = str(err)
    lines = text.splitlines()
    assert lines[0] == f"<string>:{case.line}:{case.column}: error: {err.message}"
    source_line = case.spec.splitlines()[case.line - 1]
    assert lines[1] == f"{case.line:>4} | {source_line}"
    # The caret line starts under the reported column.
    caret = lines[2]
    prefix = f"{'':>4} | "
    assert caret.startswith(prefix) and "^" in caret
    assert caret.index("^") - len(prefix) == case.column - 1
    if case.hint:
        assert f"hint: {err.hint}" in lines


def test_rendered_hint_for_unknown_keyword():
    err = _raised(_case("unknown-keyword-argument"))
    assert err.hint == "did you mean `stride`?"
    text = str(err)
    assert "    x = x | conv: conv2d(n, 3, strid=2)" in text
    assert text.splitlines()[-1] == "hint: did you mean `stride`?"
    # the caret underlines the whole argument `strid=2`
    assert "^" * len("strid=2") in text


def test_rendered_import_cycle_names_the_file():
    err = _raised(_case("import-cycle"))
    text = str(err)
    first = text.splitlines()[0]
    assert first.endswith("cycle_b.arch:3:1: error: import cycle: cycle_a.arch -> cycle_b.arch -> cycle_a.arch")
    assert '   3 | import "cycle_a"' in text
    assert "^" in text


def test_duplicate_layer_notes_the_first_declaration():
    err = _raised(_case("duplicate-layer-name"))
    assert [(msg, span.line, span.column) for msg, span in err.notes] == [("declared here", 2, 19)]
    assert "<string>:2:19: note: declared here" in str(err)


WIDTH_NET = spec("block Net(width = 8) {",
                 "    x = x | conv: conv2d(width, 3)",
                 "    return x",
                 "}",
                 MODEL)


def test_unknown_override_is_the_callers_mistake_not_a_line_of_the_file():
    text = WIDTH_NET
    with pytest.raises(SpecError) as info:
        archsmith.compile(text, widht=16)
    err = info.value
    assert err.message == "the override `widht=16` names no parameter of `Net`"
    assert err.hint == "did you mean `width`?"
    assert err.line is None
    assert "note: `Net` is defined here" in str(err)


def test_bad_override_type_is_reported_at_the_primitive():
    text = WIDTH_NET
    with pytest.raises(SpecError) as info:
        archsmith.compile(text, width="wide")
    err = info.value
    assert "`out_channels` of `conv2d` must be an int, not a string" in err.message
    assert (err.line, err.column) == (2, 26)


def test_deeply_nested_expression_is_a_spec_error():
    # 1000 terms, the last a string: the sum is a type error
    text = spec("block Net() {",
                "    x = x | conv: conv2d(" + " + ".join(["1"] * 999) + ' + "a", 3)',
                "    return x",
                "}",
                MODEL)
    with pytest.raises(SpecError):
        archsmith.compile(text)


# ---------------------------------------------------------------------- the command line

def test_cli_check_reports_errors_without_traceback(tmp_path):
    path = tmp_path / "file.arch"
    path.write_text(_case("unknown-keyword-argument").spec, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-m", "archsmith", "check", str(path)], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode != 0
    assert "file.arch:2:32: error:" in result.stderr, result.stderr
    assert "`conv2d` has no parameter `strid`" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


def _check(path: Path, *command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "archsmith", *(command or ("check",)), str(path)],
                          capture_output=True, text=True, cwd=path.parent, env=env, timeout=120)


@pytest.mark.parametrize("content, located, message", [
    (bytes(range(128, 256)), "bytes.arch:1:1:", "is not UTF-8 text: byte 0x80 at offset 0"),
    ("x = 1\n# café ".encode() + b"\xff\n", "bytes.arch:2:8:", "byte 0xff at offset 14"),
    (b"x = 1\x00\n", "bytes.arch:1:6:", "unexpected character U+0000"),
])
def test_cli_check_locates_what_is_not_text(tmp_path, content, located, message):
    path = tmp_path / "bytes.arch"
    path.write_bytes(content)
    result = _check(path)
    assert result.returncode == 1
    assert result.stderr.startswith(located) and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_cli_check_of_a_directory_is_an_error(tmp_path):
    (tmp_path / "specs.arch").mkdir()
    result = _check(tmp_path / "specs.arch")
    assert (result.returncode, result.stderr) == (1, "error: `specs.arch` is a directory, not a .arch file\n")


def test_a_library_passes_check_and_is_not_compiled(tmp_path):
    path = tmp_path / "lib.arch"
    path.write_text(spec("WIDTHS = [8, 16]", "def conv1x1(c) = conv2d(c, 1)", *INNER))
    result = _check(path)
    assert (result.returncode, result.stdout) == (0, "lib.arch: ok, 1 block, 1 def, 1 constant, no models\n")
    result = _check(path, "compile")
    assert result.returncode == 1
    assert result.stderr.startswith("lib.arch:1:1: error: lib.arch defines no model to compile"), result.stderr


def test_check_of_a_library_evaluates_its_constants(tmp_path):
    path = tmp_path / "lib.arch"
    path.write_text(spec("WIDTHS = [8, 16] + 1", *INNER))
    result = _check(path)
    assert result.returncode == 1
    assert "lib.arch:1:10: error: `+` cannot combine a list and an int" in result.stderr, result.stderr


@pytest.mark.parametrize("word, candidates, hint", [
    ("strid", ["stride", "padding"], "did you mean `stride`?"),
    ("LayerNorm", ["layernorm", "linear"], "did you mean `layernorm`?"),
    ("list", ["split", "len"], None),  # a different short word, not a typo
    ("lenght", ["len", "linear"], None),
])
def test_did_you_mean_suggests_typos_only(word, candidates, hint):
    assert archsmith.errors.did_you_mean(word, candidates) == hint


def test_an_error_inside_a_library_shows_where_each_file_used_it(tmp_path):
    """The mistake is often in the arguments: `downsample(shortcut, ...)` with `shortcut` a tensor fails
    inside std.arch, and the note points at the user's line (and the library's own use of it)."""
    (tmp_path / "mylib.arch").write_text(
        'import "std"\n'
        "block Unit(planes, stride = 1) {\n"
        "    shortcut = x\n"
        "    shortcut = x | downsample: downsample(shortcut, planes, stride)\n"
        "    return (x | conv: conv3x3(planes, stride)) + shortcut\n"
        "}\n")
    (tmp_path / "net.arch").write_text(
        'import "mylib"\n'
        "block Net() {\n"
        "    return x | unit: Unit(8, 2)\n"
        "}\n"
        "model net = Net() input [4, 8, 8]\n")
    with pytest.raises(archsmith.SpecError) as e:
        archsmith.compile(str(tmp_path / "net.arch"))
    assert e.value.span.path.endswith("std.arch") and e.value.message == "`==` cannot combine a tensor and a string"
    assert [(note, span.path.rpartition("/")[2], span.line) for note, span in e.value.notes] == [
        ("in `downsample`, used here", "mylib.arch", 4), ("in `Unit`, used here", "net.arch", 3)]


def test_a_size_mismatch_names_the_dimension_in_the_plural():
    with pytest.raises(archsmith.SpecError) as e:
        archsmith.compile("block Net() {\n    return x + (x | pool: maxpool2d(2))\n}\nmodel net = Net() input [4, 8, 8]\n")
    assert e.value.message.endswith(": heights differ (8 vs 4)")


def test_a_name_two_imports_define_is_no_clash_where_the_file_defines_it(tmp_path):
    for lib in ("a", "b"):
        (tmp_path / f"{lib}.arch").write_text(f"def stage(out) = conv2d(out, {1 if lib == 'a' else 3}, padding=0)\n")
    (tmp_path / "net.arch").write_text('import "a"\nimport "b"\ndef stage(out) = conv2d(out, 5, padding=2)\n'
                                       "block Net() {\n    return x | s: stage(4)\n}\nmodel net = Net() input [3, 8, 8]\n")
    assert "kernel_size=5" in archsmith.compile(str(tmp_path / "net.arch"))


def test_a_block_the_generator_cannot_write_is_a_located_error_not_a_traceback():
    spec = "block B() {\n    return x[0]\n}\nblock Net() {\n    return [x, x] | b1: B()\n}\nmodel net = Net() input [4, 8, 8]\n"
    archsmith.compile(spec.replace("x[0]", "concat(x)"))
    with pytest.raises(archsmith.SpecError) as e:
        archsmith.compile(spec)
    assert e.value.message.startswith("`B` cannot be written as a Python class")
    assert (e.value.span.line, e.value.span.column) == (1, 1)
