"""Fuzzing the compiler on spec input: a library for tests/test_fuzz.py and scripts/soak.py.

The requirement it checks: every failure on spec input is an `archsmith.SpecError` located at
`path:line:column`, never another exception from inside the compiler, in any phase (parsing, import
resolution, elaboration, shape inference, code generation), and every case ends quickly.

* `tokenize` splits spec text into tokens that join back into it exactly; the mutators (`MUTATORS`)
  edit token lists or text: delete, swap or duplicate tokens, truncate, insert punctuation, replace a
  number by an odd one (0, -3, 10**9, 1e308, NaN, 10**50, ...), insert unicode or a NUL byte, make a
  very long line, nest an expression thousands deep, ...
* `make_case(seed, index)` is case `index` of a run: a source (a bundled spec, an example, an `.arch`
  block of docs/language.md, or a generated spec), one to three mutations, the model to compile and
  how (`compile`, `check`, `deploy`, `format`, `lsp`, `file`). The same (seed, index) gives the same
  case on any machine and in any process, so a failure is replayed by its number.
* `run_case(text, model)` runs one case and classifies it (`Outcome.kind`): "ok", "located",
  "unlocated", "crash" or "slow".
* `random_spec(chooser)` writes a random, mostly well-formed spec (blocks of random layers and
  expressions); `generated_specs()`, `spliced_specs()` and `token_soup()` are hypothesis strategies.
* `minimize(case_text, ...)` shrinks a failing text (delta debugging over lines, then tokens) while
  it fails the same way.
"""
from __future__ import annotations

import functools
import os
import random
import re
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Union

ROOT = Path(__file__).resolve().parent.parent
ARCHSMITH_DIR = str(ROOT / "archsmith")  # where archsmith should be imported from (see `check_import`)

SLOW_SECONDS = 1.0  # a case is slow past max(SLOW_SECONDS, SLOW_FACTOR x its unmutated source's compile)
SLOW_FACTOR = 3.0
PARSE_SECONDS_PER_CHAR = 40e-6  # Lark's parser with positions per character of dense text, twice (format), with room
LIMIT_SECONDS = 4.0  # reaching a limit of archsmith.limits: the work up to it (a 50,000-op graph, a million iterations)
REACHED_A_LIMIT = re.compile(r"then located: .*(more than [\d,]+ (ops|times|items)|nest more than \d+|larger than the limit)")
HARD_TIMEOUT = 10.0  # a case still running then is stopped (SIGALRM) and counted slow
MEMORY_HEADROOM = 3 * 2 ** 30  # address space a case may add to the process (RLIMIT_AS); 0: no limit

# ------------------------------------------------------------------------------------------ tokens

TOKEN = re.compile(r"""
    (?P<nl>\r\n|\n|\r)
  | (?P<ws>[ \t\f\v]+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<string>"[^"\r\n]*"?)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[^\W\d]\w*)
  | (?P<punct>\*\*=?|//=?|==|!=|<=|>=|[-+*/%@]=|.)
""", re.X | re.S)


@dataclass(frozen=True)
class Token:
    kind: str  # nl, ws, comment, string, number, ident, punct
    text: str

    @property
    def significant(self) -> bool:
        return self.kind not in ("ws", "nl", "comment")


def tokenize(text: str) -> List[Token]:
    """Tokens whose texts join back into `text` exactly (any character is at worst a punct token)."""
    return [Token(m.lastgroup, m.group()) for m in TOKEN.finditer(text)]


def untokenize(tokens) -> str:
    return "".join(t.text if isinstance(t, Token) else t for t in tokens)


# ----------------------------------------------------------------------------------------- sources

@dataclass
class Source:
    name: str  # "specs/resnet.arch", "docs/language.md#12", ...
    text: str
    models: List[str]


MODEL_LINE = re.compile(r"^model (\w+)", re.M)


def models_in(text: str) -> List[str]:
    """The models a (mutated) text seems to define: `model NAME` at the start of a line."""
    return MODEL_LINE.findall(text)


@functools.lru_cache(maxsize=None)
def sources() -> tuple:
    """The texts mutations start from: specs/*.arch, examples/*.arch and the ```arch blocks of
    docs/language.md (small specs that use every construct of the language)."""
    out = []
    for pattern in ("specs/*.arch", "examples/*.arch"):
        for path in sorted(ROOT.glob(pattern)):
            text = path.read_text(encoding="utf-8")
            out.append(Source(str(path.relative_to(ROOT)), text, models_in(text)))
    docs = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    for i, m in enumerate(re.finditer(r"^```arch\n(.*?)^```", docs, re.M | re.S)):
        out.append(Source(f"docs/language.md#{i}", m.group(1), models_in(m.group(1))))
    return tuple(out)


def source_named(name: str) -> Source:
    for s in sources():
        if s.name == name:
            return s
    raise KeyError(name)


@functools.lru_cache(maxsize=None)
def vocabulary() -> tuple:
    """Every distinct significant token of the sources, plus keywords: what insertions draw from."""
    words = {t.text for s in sources() for t in tokenize(s.text) if t.significant and len(t.text) < 40}
    words |= set(KEYWORDS)
    return tuple(sorted(words))


KEYWORDS = ("if", "else", "elif", "for", "in", "and", "or", "not", "return", "true", "false", "none", "seq",
            "assert", "block", "def", "fn", "model", "import", "input", "declare", "param", "buffer",
            "recompute", "training", "error", "x")

# ---------------------------------------------------------------------------------- odd values

ODD_NUMBERS = ["0", "-3", "1", "-1", "10**9", "1000000000", "1e308", "-1e308", "(1e400 - 1e400)", "1e400",
               "-1e400", "10**50", "1" + "0" * 50, "2.5", "0.0", "-0.0", "1e-320", "2**63", "2**63 - 1",
               "-2**63", "9" * 40, "0.1", "3.0", "100000", "99999", "2**31", "007", "1.", ".5", "1e", "1e+",
               "0x10", "1_000", "nan", "inf", '"s"', '""', "none", "true", "false", "[]", "[1, 2]", "[[]]",
               "{}", "{a: 1}", "x", "[0] * 10**6", "range(10**5)", "-x.channels", "1 / 3", "2 ** -1"]

UNICODE = ["é", "ｘ", "\u2028", "\u2029", "\u200b", "\x0c", "\x0b", "\x85", "\ufeff", "😀", "𝑥", "ﬁ", "İ",
           "\u00a0", "\u202e", "\x7f", "\x1b[31m", "\t", "\r", "\u0301", "Ω", "中文", "\U000e0001", "\ud800",
           "\U0010ffff", "ß", "٣", "²", "\u3000"]

PUNCT = list("()[]{},:;|=.+-*/%@<>!#\"'\\`$?~^&") + ["**", "//", "==", "!=", "<=", ">=", "->", "...", "+=",
                                                      "//=", "**=", ":=", "=>", "::", "()", "[]", "{}"]

SNIPPETS = ["(", ")", "{", "}", "[", "]", ",", "|", ":", "=", "x", "0", "-1", "1e9", '"a"', "true", "none",
            "seq", "relu", "conv2d(3)", "x.channels", "**", "//", "if", "else", "for", "in", "return", "block",
            "model", "\n", ";", "[]", "2.5", "x + x", "concat(x)", "split(x, [1])", "mean(x)", "drop_path(2)",
            "linear(0)", "input", "def", 'import "nothing"', "x | relu", "x = x | c: conv2d(8, 3)",
            "for i in range(3) { x = x | relu }", "if x.channels > 3 { x = x | relu }", "x = y",
            "declare c", "param p = zeros([1])", "recompute r { x = x | relu }", "if training { x = x | relu }",
            "assert false", 'error("e")', "fn f() { return 1 }", "def d() = relu", "block B() { return x }",
            "model m = B() input [3, 8, 8]", "[i for i in range(3)]", "{a: 1}.a", "x.shape[5]", "x[0]",
            "x @ x", "-x", "not x", "x if true else x", "len(x)", "str(x)", "int(1e308)", "round(1e308)",
            "float(\"nan\")", "range(0, 10, 0)", "log(0)", "sqrt(-1)", "exp(1000)", "max()", "zip()",
            "enumerate(1)", "list(1)", "sum([[1]])", "min([])", "[1, 2][1:0]", "\"ab\"[5]", "1 < 2 < 3",
            "10 ** 10 ** 10", "2 ** 64", "1 // 0", "1 % 0", "1 / 0", "0 ** -1", "-1 ** 0.5", "(-8) ** (1 / 3)",
            "x.height", "x.width", "x.dim", "x.foo", "[[0] * 100000 for i in range(100000)]",
            "[str(i) * 10000 for i in range(100000)]", "self", "__class__", "lambda", "None", "True", "yield",
            "import", "param", "buffer", "training", "x, y = x", "a, = [1]", "x += 1", "x[0] = 1"]

IMPORTS = ["std", "resnet", "vgg", "nothing", "", "/", ".", "..", "std.arch", "../specs/std", "specs/std",
           "/dev/null", "/etc/passwd", "std\x00", "\x00", "a" * 300, "<string>", "é", "STD", "std ",
           "examples/tiny_resnet", "../examples/tiny_resnet", "case", "./case", "//", "~/std", "std.arch.arch",
           "densenet", "inception", "resnet.arch"]

INPUT_SHAPES = ["[]", "[0]", "[3, 0, 32]", "[3, -1, 32]", "[3, 10**9, 10**9]", "[1e308]", "[3, 32]",
                "[3, 32, 32, 32, 32, 32]", "[[3]]", "3", '"a"', "none", "[3, 2.5, 32]", "[3, 1, 1]",
                "[10**18, 1, 1]", "[3, 32, (1e400 - 1e400)]", "[3] * 1000", "[true, 1, 1]"]

# ------------------------------------------------------------------------------------- mutators


def _significant(tokens) -> List[int]:
    return [i for i, t in enumerate(tokens) if t.significant]


def _boundary(tokens, rng) -> int:
    """An insertion point: an index between tokens."""
    return rng.randrange(len(tokens) + 1)


def _expression_starts(tokens) -> List[int]:
    """Indexes of number or identifier tokens that follow `=`, `(`, `[`, `,`, `:`, an operator or
    `return`: where an expression starts, so that wrapping one there keeps the text parsable."""
    out, prev = [], None
    for i, t in enumerate(tokens):
        if not t.significant:
            continue
        if t.kind in ("number", "ident", "string") and prev is not None and (
                prev.text in ("=", "(", "[", ",", "+", "-", "*", "/", "//", "%", "**", "==", "<", ">", "return",
                              "and", "or", "not", "if", "else", "in", ":")):
            out.append(i)
        prev = t
    return out


def m_delete_tokens(text, rng):
    tokens = tokenize(text)
    sig = _significant(tokens)
    if not sig:
        return text[:-1]
    start = rng.choice(sig)
    n = rng.choice([1, 1, 1, 2, 3, 5])
    end = sig[min(len(sig) - 1, sig.index(start) + n - 1)] + 1
    return untokenize(tokens[:start] + tokens[end:])


def m_swap_tokens(text, rng):
    tokens = tokenize(text)
    sig = _significant(tokens)
    if len(sig) < 2:
        return text
    k = rng.randrange(len(sig))
    if rng.random() < 0.6:  # a neighbour
        j = min(len(sig) - 1, k + rng.randint(1, 3))
    else:
        j = rng.randrange(len(sig))
    a, b = sig[k], sig[j]
    tokens[a], tokens[b] = tokens[b], tokens[a]
    return untokenize(tokens)


def m_duplicate_tokens(text, rng):
    tokens = tokenize(text)
    if not tokens:
        return text
    start = rng.randrange(len(tokens))
    run = tokens[start:start + rng.choice([1, 1, 2, 3, 6, 12])]
    at = start if rng.random() < 0.7 else _boundary(tokens, rng)
    return untokenize(tokens[:at] + run + tokens[at:])


def m_truncate(text, rng):
    if rng.random() < 0.5:
        return text[:rng.randrange(len(text) + 1)]
    tokens = tokenize(text)
    return untokenize(tokens[:rng.randrange(len(tokens) + 1)])


def m_insert_punct(text, rng):
    tokens = tokenize(text)
    at = _boundary(tokens, rng)
    p = rng.choice(PUNCT)
    if rng.random() < 0.3:
        p = f" {p} "
    return untokenize(tokens[:at] + [p] + tokens[at:])


def m_insert_snippet(text, rng):
    tokens = tokenize(text)
    at = _boundary(tokens, rng)
    pick = rng.choice(SNIPPETS) if rng.random() < 0.6 else rng.choice(vocabulary())
    return untokenize(tokens[:at] + [" " + pick + " "] + tokens[at:])


def m_replace_token(text, rng):
    """A significant token replaced by a random word of the vocabulary."""
    tokens = tokenize(text)
    sig = _significant(tokens)
    if not sig:
        return text
    tokens[rng.choice(sig)] = Token("ident", rng.choice(vocabulary()))
    return untokenize(tokens)


def m_odd_number(text, rng):
    tokens = tokenize(text)
    numbers = [i for i, t in enumerate(tokens) if t.kind == "number"]
    if not numbers:
        return m_insert_snippet(text, rng)
    for i in rng.sample(numbers, min(len(numbers), rng.choice([1, 1, 1, 2, 4]))):
        tokens[i] = Token("number", rng.choice(ODD_NUMBERS))
    return untokenize(tokens)


def m_odd_input(text, rng):
    """The input shape of a model line replaced by an odd one."""
    spans = [m.span(1) for m in re.finditer(r"input\s*(\[[^\]\n]*\])", text)]
    if not spans:
        return m_odd_number(text, rng)
    start, end = rng.choice(spans)
    return text[:start] + rng.choice(INPUT_SHAPES) + text[end:]


def m_odd_argument(text, rng):
    """A keyword argument of a call (`stride=2`) given an odd value."""
    spans = [m.span(2) for m in re.finditer(r"(?<!\w)(\w+)=([^,)\n]+)", text)]  # (?<!\w): linear on 100k-char words
    if not spans:
        return m_odd_number(text, rng)
    start, end = rng.choice(spans)
    return text[:start] + rng.choice(ODD_NUMBERS) + text[end:]


def m_unicode(text, rng):
    ch = rng.choice(UNICODE)
    roll = rng.random()
    tokens = tokenize(text)
    idents = [i for i, t in enumerate(tokens) if t.kind in ("ident", "string", "comment")]
    if roll < 0.4 and idents:  # inside an identifier, a string or a comment
        i = rng.choice(idents)
        t = tokens[i].text
        cut = rng.randrange(len(t) + 1)
        tokens[i] = Token(tokens[i].kind, t[:cut] + ch + t[cut:])
        return untokenize(tokens)
    pos = rng.randrange(len(text) + 1)
    return text[:pos] + ch + text[pos:]


def m_nul(text, rng):
    pos = rng.randrange(len(text) + 1)
    return text[:pos] + "\x00" * rng.choice([1, 1, 3]) + text[pos:]


def m_long_line(text, rng):
    n = rng.choice([5000, 20000, 20000, 100000])
    kind = rng.choice(["ident", "number", "float", "string", "comment", "spaces", "sum", "list", "replace_number",
                       "args", "pipe", "concat_str"])
    piece = {
        "ident": lambda: "a" * n,
        "number": lambda: "9" * n,
        "float": lambda: "1." + "0" * n,
        "string": lambda: '"' + "a" * n + '"',
        "comment": lambda: "# " + "x" * n,
        "spaces": lambda: " " * n,
        "sum": lambda: " + ".join(["1"] * (n // 4)),
        "list": lambda: "[" + ", ".join(["1"] * (n // 3)) + "]",
        "replace_number": lambda: None,
        "args": lambda: "max(" + ", ".join(["1"] * (n // 3)) + ")",
        "pipe": lambda: "x" + " | relu" * (n // 7),
        "concat_str": lambda: " + ".join(['"a"'] * (n // 6)),
    }[kind]()
    tokens = tokenize(text)
    if piece is None or kind in ("number", "float", "sum", "list", "args", "pipe", "concat_str"):
        starts = _expression_starts(tokens)
        if starts:  # in place of an expression's first token, where it parses
            i = rng.choice(starts)
            tokens[i] = Token("number", piece if piece is not None else "9" * n)
            return untokenize(tokens)
        piece = piece or "9" * n
    at = _boundary(tokens, rng)
    return untokenize(tokens[:at] + [piece] + tokens[at:])


NESTINGS = ["paren", "bracket", "neg", "not", "pow", "call", "cond", "index", "record", "comp", "if", "for",
            "seq", "block_chain", "fn_chain", "const_chain", "pipe_paren", "brace", "list_tree"]


def nested(kind: str, n: int, inner: str = "1") -> str:
    """An expression or statement nested `n` deep (the statement kinds are whole lines)."""
    if kind == "paren":
        return "(" * n + inner + ")" * n
    if kind == "bracket":
        return "[" * n + inner + "]" * n
    if kind == "neg":
        return "-" * n + inner
    if kind == "not":
        return "not " * n + inner
    if kind == "pow":
        return "1 ** " * n + inner
    if kind == "call":
        return "abs(" * n + inner + ")" * n
    if kind == "cond":
        return f"{inner} if true else " * n + inner
    if kind == "index":
        return "[" * n + inner + "]" * n + "[0]" * n
    if kind == "record":
        return "{a: " * n + inner + "}" * n + ".a" * n
    if kind == "comp":
        return "[" * n + inner + " for i in [0]]" * n
    if kind == "brace":
        return "{" * n + "}" * n
    if kind == "pipe_paren":
        return "(" * n + "x | relu" + ")" * n
    if kind == "if":
        return "if true { " * n + "x = x" + " }" * n
    if kind == "for":
        return "for i in [0] { " * n + "x = x" + " }" * n
    if kind == "seq":
        return "x = x | s: " + "seq { " * n + "relu()" + " }" * n
    raise ValueError(kind)


def chain_spec(kind: str, n: int) -> str:
    """A whole spec whose definitions call each other `n` deep."""
    if kind == "block_chain":
        blocks = [f"block B{i}() {{ return x | b: B{i + 1}() }}" for i in range(n)]
        return "\n".join(blocks + [f"block B{n}() {{ return x | relu }}", "model m = B0() input [3, 8, 8]"]) + "\n"
    if kind == "fn_chain":
        fns = [f"fn f{i}(v) {{ return f{i + 1}(v) + 1 }}" for i in range(n)]
        return "\n".join(fns + [f"fn f{n}(v) {{ return v }}", "block B() { return x | c: conv2d(f0(1), 1) }",
                                "model m = B() input [3, 8, 8]"]) + "\n"
    if kind == "const_chain":
        consts = [f"C{i} = C{i + 1} + 1" for i in range(n)]
        return "\n".join(consts + [f"C{n} = 1", "block B() { return x | c: conv2d(C0, 1) }",
                                   "model m = B() input [3, 8, 8]"]) + "\n"
    if kind == "list_tree":  # T{i} = [T{i-1}, T{i-1}]: a list of 2**n leaves in n small lines
        levels = min(n, 48)
        trees = ["T0 = [1]"] + [f"T{i} = [T{i - 1}, T{i - 1}]" for i in range(1, levels + 1)]
        return "\n".join(trees + ["block B() { return x | c: conv2d(len(T%d), 1) }" % levels,
                                  "model m = B() input [3, 8, 8]"]) + "\n"
    raise ValueError(kind)


CHAINS = ("block_chain", "fn_chain", "const_chain", "list_tree")


def m_deep_nesting(text, rng):
    n = rng.choice([10, 100, 300, 500, 1000, 1000, 2000])
    kind = rng.choice(NESTINGS)
    if kind == "list_tree":  # its cases run to the hard timeout (2**n leaves): rarely, and small
        kind, n = (kind, rng.choice([12, 20, 30])) if rng.random() < 0.15 else ("const_chain", n)
    if kind in CHAINS:
        return chain_spec(kind, n) if rng.random() < 0.5 else text + "\n" + chain_spec(kind, n).replace(
            "model m =", "model deep_chain =")
    tokens = tokenize(text)
    if kind in ("if", "for", "seq"):  # a statement: at the start of a line inside a block's body
        lines = text.split("\n")
        bodies = [i for i, line in enumerate(lines) if re.match(r"\s+(x|y|out)\s*=", line)]
        stmt = nested(kind, n)
        if bodies:
            i = rng.choice(bodies)
            lines.insert(i, "    " + stmt)
            return "\n".join(lines)
        return text + f"\nblock Deep() {{\n    {stmt}\n    return x\n}}\nmodel deep = Deep() input [3, 8, 8]\n"
    starts = _expression_starts(tokens)
    if not starts:
        return text + f"\nDEEP = {nested(kind, n)}\n"
    i = rng.choice(starts)
    tokens[i] = Token("number", nested(kind, n, tokens[i].text))
    return untokenize(tokens)


def m_lines(text, rng):
    """Line-level edits: swap, duplicate or delete a line, or indent one."""
    lines = text.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    op = rng.choice(["swap", "dup", "delete", "indent"])
    if op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "dup":
        lines.insert(j, lines[i])
    elif op == "delete":
        del lines[i]
    else:
        lines[i] = rng.choice(["\t", "    ", "        ", " "]) + lines[i]
    return "\n".join(lines)


def m_crossover(text, rng):
    """A run of tokens of another source spliced in."""
    other = tokenize(rng.choice(sources()).text)
    tokens = tokenize(text)
    if not other:
        return text
    start = rng.randrange(len(other))
    run = other[start:start + rng.randint(1, 40)]
    at = _boundary(tokens, rng)
    cut = at + rng.choice([0, 0, len(run)])
    return untokenize(tokens[:at] + run + tokens[cut:])


def m_import(text, rng):
    name = rng.choice(IMPORTS)
    line = f'import "{name}"'
    existing = list(re.finditer(r'import\s*"[^"\n]*"', text))
    if existing and rng.random() < 0.5:
        m = rng.choice(existing)
        return text[:m.start()] + line + text[m.end():]
    lines = text.split("\n")
    lines.insert(rng.randrange(len(lines) + 1), line)
    return "\n".join(lines)


def m_line_endings(text, rng):
    op = rng.choice(["crlf", "cr", "bom", "tabs", "u2028", "ff", "no_final_newline", "blank"])
    if op == "crlf":
        return text.replace("\n", "\r\n")
    if op == "cr":
        return text.replace("\n", "\r")
    if op == "bom":
        return "\ufeff" + text
    if op == "tabs":
        return text.replace("    ", "\t")
    if op == "u2028":
        return text.replace("\n", "\u2028")
    if op == "ff":
        return text.replace("\n", "\n\x0c")
    if op == "no_final_newline":
        return text.rstrip("\n")
    return "\n" * rng.randint(1, 5000) + text


def m_empty(text, rng):
    return rng.choice(["", " ", "\n", "#", "\x00", "\ufeff", "{", "}", "model", "model m", "block", '"',
                       "import", 'import "std"', "x", "(", "\n" * 100000, "# " * 50000])


MUTATORS = {
    "delete_tokens": (m_delete_tokens, 10), "swap_tokens": (m_swap_tokens, 8),
    "duplicate_tokens": (m_duplicate_tokens, 8), "truncate": (m_truncate, 5),
    "insert_punct": (m_insert_punct, 8), "insert_snippet": (m_insert_snippet, 8),
    "replace_token": (m_replace_token, 6), "odd_number": (m_odd_number, 12), "odd_input": (m_odd_input, 3),
    "odd_argument": (m_odd_argument, 5), "unicode": (m_unicode, 5), "nul": (m_nul, 2),
    "long_line": (m_long_line, 3), "deep_nesting": (m_deep_nesting, 4), "lines": (m_lines, 5),
    "crossover": (m_crossover, 4), "import": (m_import, 3), "line_endings": (m_line_endings, 2),
    "empty": (m_empty, 0.3),
}


def mutate(text: str, rng: random.Random, mutators=None, count=None):
    """`text` after 1 to 3 mutations (or `count`), chosen by weight among `mutators` (names; default
    all) -> (text, [names applied])."""
    names = list(mutators or MUTATORS)
    weights = [MUTATORS[n][1] for n in names]
    applied = []
    for _ in range(count or rng.choice([1, 1, 1, 2, 2, 3])):
        name = rng.choices(names, weights)[0]
        text = MUTATORS[name][0](text, rng)
        applied.append(name)
    return text, applied


def invalid_utf8(text: str, rng) -> bytes:
    """The text as bytes that are not all UTF-8 (or UTF-8 with a BOM): for reading from a file."""
    data = text.encode("utf-8", "surrogatepass")
    bad = rng.choice([b"\xff", b"\xfe", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80",
                      b"\xef\xbb\xbf", b"\xf4\x90\x80\x80", b"\x00"])
    pos = rng.randrange(len(data) + 1)
    op = rng.choice(["insert", "insert", "bom", "utf16", "latin1"])
    if op == "bom":
        return b"\xef\xbb\xbf" + data
    if op == "utf16":
        return text.encode("utf-16", "surrogatepass")
    if op == "latin1":
        return text.replace("#", "# é", 1).encode("latin-1", "replace")
    return data[:pos] + bad + data[pos:]


# ----------------------------------------------------------------------------------- random specs

class Chooser:
    """The choices a generator makes, from a random.Random (or, `DrawChooser`, from hypothesis)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def choice(self, seq):
        return self.rng.choice(seq)

    def randint(self, a, b):
        return self.rng.randint(a, b)

    def chance(self, p):
        return self.rng.random() < p


class DrawChooser(Chooser):
    def __init__(self, draw):
        from hypothesis import strategies as st
        self.draw, self.st = draw, st

    def choice(self, seq):
        return self.draw(self.st.sampled_from(list(seq)))

    def randint(self, a, b):
        return self.draw(self.st.integers(a, b))

    def chance(self, p):
        return self.draw(self.st.integers(0, 999)) < p * 1000


GOOD_INTS = ["1", "2", "3", "4", "8", "16", "32", "64"]
# odd values that still parse, for the generator (ODD_NUMBERS also has lexical oddities: `1e`, `0x10`)
ODD_VALUES = ["0", "-3", "-1", "10**9", "1e308", "-1e308", "(1e400 - 1e400)", "1e400", "10**50", "2.5", "0.0",
              "2**63", "9" * 40, "100000", '"s"', "none", "true", "[]", "[1, 2]", "{a: 1}", "1 / 3"]


class _Gen:
    """The state of one `random_spec`: the chooser, how often a value is odd, a counter for names."""

    def __init__(self, c: Chooser, odd: float):
        self.c, self.odd, self.n = c, odd, 0

    def fresh(self) -> int:
        self.n += 1
        return self.n

    def int(self, names=()) -> str:
        c = self.c
        if c.chance(self.odd):
            return c.choice(ODD_VALUES)
        if names and c.chance(0.3):
            return c.choice(list(names))
        return c.choice(GOOD_INTS)

    def int_expr(self, names=(), tensor=False, depth=0) -> str:
        """An int-valued expression (mostly), over int-valued `names` and, in a block, `x`'s sizes."""
        c = self.c
        if depth > 2 or c.chance(0.5):
            if tensor and c.chance(0.25):
                return c.choice(["x.channels", "x.channels // 2", "x.shape[0]", "x.height", "len(x.shape)"])
            return self.int(names)
        roll = c.randint(0, 9)
        a = self.int_expr(names, tensor, depth + 1)
        b = self.int_expr(names, tensor, depth + 1)
        if roll < 4:
            return (f"({a} {c.choice(['+', '*', '//', '-', '%'])} {b})" if c.chance(0.9)
                    else f"({a} ** {c.choice(['0', '1', '2'])})")
        if roll < 6:
            return f"{c.choice(['max', 'min'])}({a}, {b})"
        if roll == 6:
            return f"({a} if {self.bool_expr(names, tensor, depth + 1)} else {b})"
        if roll == 7:
            return f"len([{a}, {b}])" if c.chance(0.5) else f"sum([i for i in range({c.choice(GOOD_INTS[:4])})])"
        if roll == 8:
            return f"[{a}, {b}][{c.choice(['0', '1', '-1'])}]"
        return f"{{out: {a}, k: {b}}}.{c.choice(['out', 'k'])}"

    def bool_expr(self, names=(), tensor=False, depth=0) -> str:
        c = self.c
        a, b = self.int_expr(names, tensor, depth + 1), self.int_expr(names, tensor, depth + 1)
        roll = c.randint(0, 4)
        if roll == 0:
            return c.choice(["true", "false"])
        if roll == 1:
            return f"not ({a} == {b})"
        if roll == 2:
            return f"({a} > {b} and {b} != 0)" if c.chance(0.5) else f"({a} < {b} or {a} >= {b})"
        return f"({a} {c.choice(['==', '!=', '<', '<=', '>', '>='])} {b})"

    def wild_expr(self, names, depth=0) -> str:
        """Any expression: lists, strings, floats, calls of every built-in, comprehensions, slices."""
        c = self.c
        if depth > 2 or c.chance(0.3):
            return c.choice(list(names) + GOOD_INTS + ODD_VALUES + ['"M"', "0.5", "1e-3", "none", "true"])
        a, b = self.wild_expr(names, depth + 1), self.wild_expr(names, depth + 1)
        roll = c.randint(0, 7)
        if roll < 3:
            return f"({a} {c.choice(['+', '-', '*', '/', '//', '%', '**', '==', '<', 'and', 'or'])} {b})"
        if roll == 3:
            fn = c.choice(["len", "max", "min", "abs", "round", "int", "float", "str", "sum", "range", "ceil",
                           "floor", "sqrt", "log", "log2", "exp", "list", "enumerate", "zip"])
            return f"{fn}({a})" if c.chance(0.6) else f"{fn}({a}, {b})"
        if roll == 4:
            return f"[{a}, {b}]"
        if roll == 5:
            return f"[i * {a} for i in range({self.int()}) if i != {b}]"
        if roll == 6:
            return f"[{a}, {b}][{c.choice(['0', '1', '-1', '2', '1:', ':1', '5:'])}]"
        return f"-{a}" if c.chance(0.5) else f"not {a}"

    def layer(self, names, blocks, named=True) -> str:
        """A layer that keeps an image an image (mostly): [C, H, W] -> [C', H', W']."""
        c = self.c
        o = lambda: self.int(names)  # noqa: E731
        roll = c.randint(0, 19)
        if roll < 5:
            k = c.choice(["1", "3", "3", "5", "k"] if "k" in names else ["1", "3", "3", "5"])
            return (f"conv2d({o()}, {k}, stride={c.choice(['1', '1', '2', o()])}, padding={k} // 2"
                    f"{c.choice(['', ', bias=false', ', groups=1', ', dilation=1'])})")
        if roll < 7:
            return c.choice(["batchnorm2d()", "batchnorm2d(eps=0.001)", "groupnorm(1)", "layernorm2d()",
                             "instancenorm2d(affine=true)"])
        if roll < 10:
            return c.choice(["relu", "relu(inplace=true)", "gelu", "silu", "sigmoid", "hardswish", "tanh",
                             "leaky_relu(0.1)", "elu", "mish", "relu6", "identity()", "dropout(0.1)",
                             "drop_path(0.1)", "prelu()"])
        if roll < 12:
            return c.choice([f"maxpool2d({c.choice(['2', '3'])}, stride=2, padding=1)", "maxpool2d(2)",
                             "avgpool2d(2)", f"adaptive_avgpool2d({c.choice(['1', '2', '[2, 3]'])})",
                             "avgpool2d(3, stride=1, padding=1)", "upsample(scale_factor=2)",
                             "pad([1, 1, 1, 1])"])
        if roll < 15 and blocks:
            b = c.choice(blocks)
            return f"{b}({self.int_expr(names, True)})" if c.chance(0.8) else f"{b}({o()}, k={c.choice(['1', '3'])})"
        if roll < 17:
            return "seq { " + "; ".join(self.layer(names, blocks) for _ in range(c.randint(1, 3))) + " }"
        if roll < 18 and "d" in names:
            return f"d({o()})"
        return _primitive_call(c, names) if c.chance(0.5) else c.choice(
            ["channel_shuffle(1)", "pixel_shuffle(1)", "slice(0, 1)", "softmax()", "conv2d(x.channels, 1)"])

    def named(self, name: str, layer: str) -> str:
        """`name: layer`, unless the layer is a function (`pad`, `mean`), which takes no name."""
        from archsmith.primitives import PRIMITIVES
        head = re.match(r"\w+", layer).group()
        prim = PRIMITIVES.get(head)
        return layer if prim is not None and prim.torch_class is None else f"{name}: {layer}"

    def statements(self, names, blocks, indent, depth) -> list:
        c = self.c
        out, pad = [], "    " * indent
        for _ in range(c.randint(1, 4)):
            n = self.fresh()
            roll = c.randint(0, 14)
            if roll < 5:
                chain = " | ".join(self.named(f"l{n}_{j}", self.layer(names, blocks)) for j in range(c.randint(1, 3)))
                out.append(f"{pad}x = x | {chain}")
            elif roll == 5:
                out.append(f"{pad}v{n} = {self.int_expr(names, True)}")
                names = names + [f"v{n}"]
            elif roll == 6:
                out.append(f"{pad}y = x | r{n}: conv2d(x.channels, 3, padding=1) | rb{n}: batchnorm2d()")
                out.append(f"{pad}x = {c.choice(['x + y', 'relu(x + y)', 'x * sigmoid(y)', 'add(x, y)', 'x - y'])}")
            elif roll == 7:
                out.append(f"{pad}y = x | r{n}: conv2d({self.int(names)}, 1)")
                out.append(f"{pad}x = concat(x, y)")
            elif roll == 8 and depth < 2:
                out.append(f"{pad}for i{n} in range({c.choice(['1', '2', '3', self.int(names)])}) {{")
                inner = self.statements(names + [f"i{n}"], blocks, indent + 1, depth + 1)
                out += [re.sub(r"\b([a-z]+\d+(?:_\d+)?):", rf"\1_{{i{n}}}:", line) for line in inner]
                out.append(f"{pad}}}")
            elif roll == 9 and depth < 2:
                out.append(f"{pad}if {self.bool_expr(names, True)} {{")
                out += self.statements(names, blocks, indent + 1, depth + 1)
                if c.chance(0.5):
                    out.append(f"{pad}}} else {{")
                    out += self.statements(names, blocks, indent + 1, depth + 1)
                out.append(f"{pad}}}")
            elif roll == 10:
                out.append(f"{pad}assert {self.bool_expr(names, True)}, \"refused\"")
            elif roll == 11:
                out.append(f"{pad}a{n}, b{n} = chunk(x, 2)" if c.chance(0.5)
                           else f"{pad}a{n}, b{n} = split(x, [x.channels // 2, x.channels - x.channels // 2])")
                out.append(f"{pad}x = concat(a{n}, b{n} | {self.named(f's{n}', self.layer(names, blocks))})")
            elif roll == 12:
                out.append(f"{pad}x = x | q{n}: seq {{")
                out.append(f"{pad}    for j in range({c.choice(['1', '2', '3'])}) {{ {self.layer(names, blocks)} }}")
                out.append(f"{pad}}}")
            elif roll == 13:
                out.append(f"{pad}param p{n} = {c.choice(['zeros', 'ones'])}([x.channels, 1, 1])")
                out.append(f"{pad}x = x * p{n}")
            else:
                out.append(f"{pad}w{n} = {self.wild_expr(names)}")
        return out


def random_spec(c: Union[Chooser, random.Random], odd: float = 0.02) -> str:
    """A random spec: constants, a `def`, a `fn`, a few blocks of random layers and expressions, and
    models; `odd` is how often a value is an odd one (0, -3, 1e308, ...). About a third compile; the
    rest fail shape inference or an argument check: located errors."""
    if isinstance(c, random.Random):
        c = Chooser(c)
    g = _Gen(c, odd)
    lines = []
    if c.chance(0.3):
        lines.append('import "std"')
    consts = []
    for i in range(c.randint(0, 3)):
        lines.append(f"C{i} = {g.int_expr(consts) if c.chance(0.8) else g.wild_expr(consts)}")
        consts.append(f"C{i}")
    if c.chance(0.3):
        lines += ["fn f(a, b = 2) {", f"    v = {g.int_expr(['a', 'b'])}",
                  "    return v" if c.chance(0.9) else "    return f(a, b)", "}"]
        consts.append("f(2)")
    if c.chance(0.3):
        lines.append(f"def d(out, k = 3) = {c.choice(['conv2d(out, k, padding=k // 2)', 'seq { conv2d(out, 1); relu }'])}")
    blocks = []
    for i in range(c.randint(1, 3)):
        name = f"B{i}"
        params = ["out"] + (["k = 3"] if c.chance(0.5) else []) + (["s = 1"] if c.chance(0.3) else [])
        names = consts + [p.split(" ")[0] for p in params] + (["d"] if any("def d" in l for l in lines) else [])
        ints = [n for n in names if n != "d"]
        lines.append(f"block {name}({', '.join(params)}) {{")
        body = g.statements(ints + (["d"] if "d" in names else []), blocks, 1, 0)
        lines += [l.replace("d(", "d(") for l in body]
        tail = c.choice(["", "", " | relu"]) if i < 2 else ""
        lines.append(f"    return x{tail}")
        lines.append("}")
        blocks.append(name)
    top = blocks[-1]
    head = c.chance(0.5)
    if head:
        lines += ["block Net(num_classes = 10) {", f"    x = x | stem: conv2d({g.int()}, 3, padding=1) | body: {top}({g.int()})",
                  "    return x | mean() | fc: linear(num_classes)", "}"]
        top = "Net"
    for m in range(c.randint(1, 2)):
        shape = (c.choice(["[3, 32, 32]", "[3, 32, 32]", "[16, 8, 8]", "[8, 17, 9]"]) if not c.chance(odd * 2)
                 else c.choice(INPUT_SHAPES))
        args = "" if head and c.chance(0.7) else g.int(consts)
        lines.append(f"model m{m} = {top}({args}) input {shape}")
    return "\n".join(lines) + "\n"


def _g_int(c, names=()) -> str:
    return _Gen(c, 0.05).int(names)


def _primitive_call(c: Chooser, names) -> str:
    """Any primitive of archsmith.primitives, with arguments of the kinds it takes (sometimes odd)."""
    from archsmith.primitives import PRIMITIVES, REQUIRED
    prim = PRIMITIVES[c.choice(sorted(PRIMITIVES))]
    args = []
    for p in prim.user_params:
        required = p.default is REQUIRED
        if not required and not c.chance(0.3):
            continue
        value = {"int": lambda: _g_int(c, names), "float": lambda: c.choice(["0.1", "0.5", "1e-5", "2.5", "0"]),
                 "number": lambda: c.choice(["2", "0.5", "-1"]), "bool": lambda: c.choice(["true", "false"]),
                 "pair": lambda: c.choice([_g_int(c, names), f"[{_g_int(c)}, {_g_int(c)}]"]),
                 "ints": lambda: f"[{_g_int(c)}, {_g_int(c)}]", "dim": lambda: c.choice(["1", "-1", "0", "2", "3"]),
                 "dims": lambda: c.choice(["1", "[2, 3]", "-1"]), "sizes": lambda: c.choice(["[-1]", "[2, -1]", "[4]"]),
                 "str": lambda: '"' + (c.choice(p.choices) if p.choices else "none") + '"',
                 "size": lambda: c.choice(["1", "[2, 2]", "none", "2"])}.get(p.kind, lambda: _g_int(c, names))()
        args.append(value if required and c.chance(0.7) else f"{p.name}={value}")
    return f"{prim.name}({', '.join(args)})"


# ------------------------------------------------------------------------------------- outcomes

@dataclass
class Outcome:
    kind: str  # ok, located, unlocated, crash, slow
    seconds: float
    error: Optional[str] = None  # exception type name
    message: str = ""  # first line of str(error), or of the exception
    frame: Optional[str] = None  # innermost archsmith frame: archsmith/evaluate.py:_binary:351
    traceback: str = ""
    detail: str = ""  # why unlocated or slow
    allowed: bool = False  # an unlocated error that is about no place in the spec
    cpu: float = 0.0  # CPU seconds of the case (seconds is wall time)

    @property
    def failure(self) -> bool:
        return self.kind in ("crash", "slow") or (self.kind == "unlocated" and not self.allowed)

    @property
    def signature(self) -> str:
        """What a failure is deduplicated by: kind, exception type, innermost archsmith frame (and for
        an unlocated error its message without the names and numbers in it)."""
        if self.kind == "unlocated":
            return f"unlocated {self.error} {self.frame} {normalize_message(self.message)}"
        if self.kind == "slow":
            return f"slow {self.detail.split(':')[0]} {self.error} {self.frame}"
        return f"{self.kind} {self.error} {self.frame}"


def normalize_message(message: str) -> str:
    message = re.sub(r"`[^`]*`", "`…`", message)
    return re.sub(r"\d+", "N", message)[:80]


class CaseTimeout(BaseException):
    """Raised by SIGALRM in a case that runs past the hard timeout (a BaseException, which the compiler's
    `except Exception` does not catch)."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def check_import() -> str:
    """The directory archsmith is imported from, which must be this checkout's: a script run from
    elsewhere could import an installed (editable) copy of another checkout."""
    import archsmith
    where = os.path.dirname(os.path.abspath(archsmith.__file__))
    if where != ARCHSMITH_DIR:
        raise RuntimeError(f"archsmith is imported from {where}, not {ARCHSMITH_DIR}: set PYTHONPATH={ROOT}")
    return where


def _innermost_archsmith_frame(tb) -> Optional[str]:
    """`archsmith/evaluate.py:_binary:351`: the innermost frame of the traceback in the compiler."""
    import archsmith
    package = os.path.dirname(os.path.abspath(archsmith.__file__))
    best = None
    for fs in traceback.extract_tb(tb):
        if os.path.abspath(fs.filename).startswith(package + os.sep):
            inner = os.path.relpath(os.path.abspath(fs.filename), os.path.dirname(package))
            best = f"{inner.replace(os.sep, '/')}:{fs.name}:{fs.lineno}"
    return best


def _line_count(text) -> int:
    return text.count("\n") + 1


ALLOWED_UNLOCATED = [
    # `model=` names a model the text does not define: a mistake in the call, not in the spec's text
    re.compile(r"no model `[^`]*` in "),
]

_scratch = None


def _scratch_file(data: bytes) -> str:
    """A file `case.arch` in this process's scratch directory, holding `data`."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="archsmith-fuzz-")
    path = os.path.join(_scratch, "case.arch")
    with open(path, "wb") as f:
        f.write(data)
    return path


MODES = ("compile", "check", "deploy", "format", "lsp", "file")


def _limit_memory():
    """Lower the soft RLIMIT_AS to the process's size + MEMORY_HEADROOM, so that a case that builds a
    huge value gets a MemoryError (a crash) instead of the machine's memory -> the limits to restore."""
    if not MEMORY_HEADROOM:
        return None
    try:
        import resource
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + MEMORY_HEADROOM
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft != resource.RLIM_INFINITY and soft <= limit:
            return None  # already as tight
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        return soft, hard
    except (ImportError, OSError, ValueError):
        return None


def _restore_memory(previous):
    if previous is not None:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, previous)


def _call(text, model, mode):
    import archsmith
    from archsmith.loader import SpecText
    if mode == "file" or isinstance(text, bytes):
        data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        return archsmith.compile(_scratch_file(data), model=model)
    spec = SpecText(text, "<string>")
    if mode == "compile":
        return archsmith.compile(spec, model=model)
    if mode == "deploy":
        return archsmith.compile(spec, model=model, deploy=True)
    if mode == "check":
        from archsmith.compiler import check
        return check(spec, model)
    if mode == "format":
        from archsmith.format import format_spec
        return format_spec(text, "<string>")
    if mode == "lsp":  # the language server's diagnostics: check, then the error as LSP's ranges
        from archsmith.lsp import diagnostics
        return diagnostics(text, "<string>")
    raise ValueError(mode)


def run_case(text: Union[str, bytes], model: Optional[str] = None, mode: str = "compile",
             slow_after: Optional[float] = None, hard_timeout: Optional[float] = None) -> Outcome:
    """Compile `text` (one `model` of it, or all) and classify what happened.

    mode: "compile" (archsmith.compile of the text), "deploy" (compile(deploy=True)), "check" (what
    `archsmith check` runs: a file without models has its constants evaluated), "format"
    (format_spec), "lsp" (the language server's diagnostics), "file" (the text, or bytes, written to a
    file and compiled by its path, which decodes it and looks imports up beside it).
    slow_after: seconds past which the case is slow (default SLOW_SECONDS); the caller scales it by
    the unmutated source's compile time (`slow_threshold`)."""
    slow_after = SLOW_SECONDS if slow_after is None else slow_after
    hard_timeout = HARD_TIMEOUT if hard_timeout is None else hard_timeout
    use_alarm = hard_timeout and hasattr(signal, "setitimer")
    if use_alarm:
        try:
            previous = signal.signal(signal.SIGALRM, _on_alarm)
        except ValueError:  # not the main thread
            use_alarm = False
    start, cpu = time.perf_counter(), time.process_time()
    error, tb = None, None
    memory = _limit_memory()
    try:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, hard_timeout)
        try:
            result = _call(text, model, mode)
            if mode == "lsp" and result:
                _check_lsp(result, text)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except CaseTimeout as e:
        seconds = time.perf_counter() - start
        return Outcome("slow", seconds, "timeout", f"stopped after {hard_timeout:g} s",
                       _innermost_archsmith_frame(e.__traceback__), traceback.format_exc(),
                       detail=f"hung: still running after {hard_timeout:g} s")
    except BaseException as e:  # noqa: BLE001 -- classifying every exception is the point
        if isinstance(e, KeyboardInterrupt):
            raise
        error, tb = e, e.__traceback__
    finally:
        _restore_memory(memory)
        if use_alarm:
            signal.signal(signal.SIGALRM, previous)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    outcome = _classify(error, tb, text, seconds)
    outcome.cpu = cpu
    # slow: past the threshold in wall time and in CPU time, so that a busy machine does not make it slow
    if min(seconds, cpu) > slow_after and outcome.kind != "crash":
        outcome.detail = f"slow: {seconds:.2f} s ({cpu:.2f} s CPU) > {slow_after:.2f} s, then {outcome.kind}" + (
            f": {outcome.message}" if outcome.message else "")
        outcome.kind = "slow"
    return outcome


def _check_lsp(diags, text):
    """The diagnostics' ranges lie inside the document (LSP's 0-based lines)."""
    lines = text.split("\n") if isinstance(text, str) else []
    for d in diags:
        start = d["range"]["start"]
        if lines and not 0 <= start["line"] < len(lines):
            raise AssertionError(f"diagnostic on line {start['line']} of a document of {len(lines)} lines")


def _classify(error, tb, text, seconds) -> Outcome:
    import archsmith
    if error is None:
        return Outcome("ok", seconds)
    name = type(error).__name__
    frame = _innermost_archsmith_frame(tb)
    if not isinstance(error, archsmith.SpecError):
        message = (str(error).splitlines() or [""])[0][:300] if not isinstance(error, RecursionError) else str(error)[:300]
        return Outcome("crash", seconds, name, message, frame,
                       "".join(traceback.format_exception(type(error), error, tb))[-6000:])
    try:
        rendered = str(error)
    except Exception as e:  # rendering the error crashed
        return Outcome("crash", seconds, type(e).__name__, f"str(SpecError) raised {e!r}"[:300],
                       _innermost_archsmith_frame(e.__traceback__), traceback.format_exc()[-6000:])
    first = (rendered.splitlines() or [""])[0][:300]
    tb_text = "".join(traceback.format_exception(type(error), error, tb))[-4000:]
    path, line, column = error.path, error.line, error.column
    if path is None or line is None or column is None:
        allowed = any(p.search(error.message) for p in ALLOWED_UNLOCATED)
        return Outcome("unlocated", seconds, name, first, frame, tb_text, detail="no span", allowed=allowed)
    if not rendered.startswith(f"{path}:{line}:{column}: error: "):
        return Outcome("unlocated", seconds, name, first, frame, tb_text,
                       detail=f"rendered without its location `{path}:{line}:{column}: error: `")
    if not (isinstance(line, int) and isinstance(column, int) and line >= 1 and column >= 1):
        return Outcome("unlocated", seconds, name, first, frame, tb_text, detail=f"bad position {line}:{column}")
    if path == "<string>" and isinstance(text, str) and line > _line_count(text):
        return Outcome("unlocated", seconds, name, first, frame, tb_text,
                       detail=f"line {line} past the end of the text ({_line_count(text)} lines)")
    return Outcome("located", seconds, name, first, frame)


# ----------------------------------------------------------------------------------- baselines

_baselines: dict = {}


def baseline_seconds(source: str, model: Optional[str], mode: str = "compile") -> float:
    """How long the unmutated `source` takes (measured once per process): for one model, or for all of
    them when `model` is None or not one of the source's."""
    try:
        src = source_named(source)
    except KeyError:
        return 0.0
    models = [model] if model in src.models else src.models
    key = (source, tuple(models), mode in ("deploy",))
    if key not in _baselines:
        total = 0.0
        for m in models or [None]:
            start = time.perf_counter()
            run_case(src.text, m, "deploy" if mode == "deploy" else "compile", slow_after=1e9, hard_timeout=60)
            total += time.perf_counter() - start
        _baselines[key] = total
    return _baselines[key]


def slow_threshold(source: str, model: Optional[str], mode: str = "compile") -> float:
    """max(SLOW_SECONDS, SLOW_FACTOR x the unmutated source's time for this model and mode)."""
    if mode in ("format",):
        return SLOW_SECONDS
    per = None if mode in ("check", "lsp") else model
    return max(SLOW_SECONDS, SLOW_FACTOR * baseline_seconds(source, per, mode))


# ----------------------------------------------------------------------------------------- cases

@dataclass
class Case:
    seed: int
    index: int
    source: str
    text: Union[str, bytes]
    model: Optional[str]
    mode: str
    ops: List[str] = field(default_factory=list)
    mutators: List[str] = field(default_factory=list)  # the mutators the case was restricted to

    @property
    def replay(self) -> str:
        if self.seed < 0:
            return "not a numbered case: its text and mutations above are the repro"
        extra = f" --mutators {','.join(self.mutators)}" if self.mutators else ""
        return f"python scripts/soak.py --seed {self.seed} --case {self.index}{extra}"


def make_case(seed: int, index: int, mutators=None, generated: Optional[float] = None) -> Case:
    """Case `index` of the run seeded `seed`: deterministic. `mutators` restricts the mutations to
    these names; `generated` is the share of cases whose source is `random_spec` (default 0.15)."""
    rng = random.Random(f"archsmith-fuzz:{seed}:{index}:{','.join(mutators or [])}")
    share = 0.15 if generated is None else generated
    if rng.random() < share:
        name, text = "generated", random_spec(rng)
    else:
        src = rng.choice(sources())
        name, text = src.name, src.text
    text, ops = mutate(text, rng, mutators)
    models = models_in(text)
    model = rng.choice(models) if models else None
    roll = rng.random()
    mode = ("compile" if roll < 0.72 else "deploy" if roll < 0.80 else "format" if roll < 0.86
            else "lsp" if roll < 0.90 else "file")
    if not models and mode in ("compile", "deploy"):
        mode = "check"  # a file without models: its constants are evaluated
    if mode == "lsp" and name != "generated" and len(source_named(name).models) > 2:
        mode = "compile"  # the language server checks every model: keep it to small files
    if mode == "file" and rng.random() < 0.5:
        text = invalid_utf8(text, rng)
        ops = ops + ["invalid_utf8"]
    return Case(seed, index, name, text, model, mode, ops, list(mutators or []))


def run(case: Case, confirm_slow: bool = True) -> Outcome:
    """Run a case with its slow threshold; a slow case is run again and stays slow only if slow twice
    (the machine may have been busy)."""
    outcome = run_case(case.text, case.model, case.mode, slow_after=SLOW_SECONDS)
    if outcome.kind == "slow" and outcome.error != "timeout":
        # parsing is linear but not free: a long text may take its length times PARSE_SECONDS_PER_CHAR;
        # a spec that runs into a limit does the work up to it, which is linear and bounded
        threshold = max(slow_threshold(case.source, case.model, case.mode), PARSE_SECONDS_PER_CHAR * len(case.text),
                        LIMIT_SECONDS if REACHED_A_LIMIT.search(outcome.detail) else 0)
        if min(outcome.seconds, outcome.cpu) <= threshold:
            outcome.kind = _unslow(outcome)
        elif confirm_slow:
            again = run_case(case.text, case.model, case.mode, slow_after=threshold)
            if again.kind != "slow":
                return again
            outcome = again
    return outcome


def _unslow(outcome: Outcome) -> str:
    """The kind a slow outcome had before it was found slow (its detail records it)."""
    m = re.search(r"then (\w+)", outcome.detail)
    kind = m.group(1) if m else "ok"
    outcome.detail = ""
    return kind


def describe(case: Case, outcome: Outcome, limit: int = 600) -> str:
    """A failure, for a test's message: classification, error and a repro (the text if short)."""
    text = case.text
    shown = repr(text) if len(text) <= limit else f"<{len(text)} chars, {case.source} after {case.ops}>"
    return (f"[{outcome.kind}] {outcome.error}: {outcome.message[:200]} at {outcome.frame} "
            f"({outcome.detail or 'no detail'}; {outcome.seconds:.2f} s)\n"
            f"    case {case.index} of seed {case.seed}: {case.source}, ops {case.ops}, mode {case.mode}, "
            f"model {case.model}\n    replay: {case.replay}\n    text: {shown}")


def report(failures, limit=12) -> str:
    """Failures grouped by signature: each signature's count and its first (shortest) case."""
    groups: dict = {}
    for case, outcome in failures:
        groups.setdefault(outcome.signature, []).append((case, outcome))
    lines = [f"{len(failures)} failing cases, {len(groups)} distinct failures:"]
    for sig, items in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:limit]:
        case, outcome = min(items, key=lambda co: len(co[0].text))
        lines.append(f"* {len(items)} x {sig}\n  " + describe(case, outcome).replace("\n", "\n  "))
    return "\n".join(lines)


def case_of(text: str, source: str = "test", ops=(), mode: str = "compile") -> Case:
    """A case of a given text (not a numbered case of a run), compiling its first model."""
    models = models_in(text) if isinstance(text, str) else []
    if not models and mode in ("compile", "deploy"):
        mode = "check"
    return Case(-1, -1, source, text, models[0] if models else None, mode, list(ops))


# ------------------------------------------------------------------------------------- hypothesis

def spliced_specs():
    """A source with up to 20 characters replaced by `st.text()` (any unicode but surrogates) ->
    (source name, text, what was spliced)."""
    from hypothesis import strategies as st

    @st.composite
    def strategy(draw):
        src = draw(st.sampled_from(sources()))
        start = draw(st.integers(0, len(src.text)))
        end = draw(st.integers(start, min(len(src.text), start + 20)))
        junk = draw(st.text(max_size=30))
        return src.name, src.text[:start] + junk + src.text[end:], f"text[{start}:{end}] = {junk!r}"
    return strategy()


def generated_specs(odd: float = 0.02):
    """`random_spec` with hypothesis's choices."""
    from hypothesis import strategies as st

    @st.composite
    def strategy(draw):
        return random_spec(DrawChooser(draw), odd)
    return strategy()


def token_soup():
    """Sequences of tokens of the language (the sources' words, newlines, odd values), alone or as
    the body of a block of a model -> text."""
    from hypothesis import strategies as st
    words = st.sampled_from(vocabulary() + ("\n", "\n", "{", "}", "(", ")", "|", "=") + tuple(ODD_NUMBERS[:20]))
    soup = st.lists(words, min_size=1, max_size=40).map(" ".join)
    in_block = soup.map(lambda body: "block B(out = 8) {\n    " + body + "\n    return x\n}\n"
                                     "model m = B() input [3, 8, 8]\n")
    return st.one_of(soup, in_block)


# ------------------------------------------------------------------------------------ minimizing

def same_failure(outcome: Outcome, target: Outcome) -> bool:
    if outcome.kind != target.kind or outcome.error != target.error:
        return False
    if target.kind == "slow":
        return True
    return outcome.frame == target.frame and (
        target.kind != "unlocated" or normalize_message(outcome.message) == normalize_message(target.message))


REPEAT = re.compile(r"(.{1,16}?)\1{7,}", re.S)


def minimize(text: str, target: Outcome, check: Callable[[str], Outcome], budget: float = 60.0,
             max_tests: int = 2000) -> str:
    """The text shrunk (delta debugging over lines, then tokens, then inside long tokens) while
    `check(text)` fails as `target` does; stops after `budget` seconds or `max_tests` runs."""
    deadline = time.monotonic() + budget
    tests = [0]

    def fails(candidate: str) -> bool:
        if time.monotonic() > deadline or tests[0] >= max_tests:
            return False
        tests[0] += 1
        return same_failure(check(candidate), target)

    def ddmin(parts: list, join) -> list:
        n = 2
        while len(parts) >= 2 and time.monotonic() < deadline:
            chunk = max(1, len(parts) // n)
            removed = False
            for start in range(0, len(parts), chunk):
                candidate = parts[:start] + parts[start + chunk:]
                if candidate and fails(join(candidate)):
                    parts, n, removed = candidate, max(n - 1, 2), True
                    break
            if not removed:
                if chunk == 1:
                    break
                n = min(len(parts), n * 2)
        return parts

    def shrink_runs(text: str) -> str:
        """Runs of a repeated unit (`((((`, `abs(abs(`, 20,000 nines) shortened, all at once so that
        brackets stay balanced: halved while it still fails, then by a quarter, an eighth, ..."""
        for fraction in (2, 4, 8, 16):
            while time.monotonic() < deadline:
                shorter = REPEAT.sub(lambda m: m.group(1) * max(1, (len(m.group()) // len(m.group(1)))
                                                                 * (fraction - 1) // fraction), text)
                if shorter == text or not fails(shorter):
                    break
                text = shorter
        return text

    text = shrink_runs(text)
    lines = ddmin(text.split("\n"), "\n".join)
    text = shrink_runs("\n".join(lines))
    tokens = ddmin([t.text for t in tokenize(text)], "".join)
    # long tokens (a 20,000-digit number, a run of parentheses merged by crossover): halve them
    for i, tok in enumerate(tokens):
        while len(tok) > 40 and time.monotonic() < deadline:
            shorter = tok[:len(tok) // 2]
            candidate = tokens[:i] + [shorter] + tokens[i + 1:]
            if fails("".join(candidate)):
                tokens, tok = candidate, shorter
            else:
                break
    # and whitespace runs down to one space
    text = "".join(tokens)
    squeezed = re.sub(r"[ \t]{2,}", " ", text)
    if squeezed != text and fails(squeezed):
        text = squeezed
    return text


def minimize_case(case: Case, target: Outcome, budget: float = 60.0) -> Union[str, bytes]:
    if isinstance(case.text, bytes):
        return case.text  # bytes cases are short to read as they are: not minimized

    def check(text):
        models = models_in(text)
        model = case.model if case.model in models else (models[0] if models else None)
        mode = case.mode if models or case.mode not in ("compile", "deploy") else "check"
        slow_after = slow_threshold(case.source, case.model, case.mode) if target.kind == "slow" else 1e9
        return run_case(text, model, mode, slow_after=slow_after)
    return minimize(case.text, target, check, budget)
