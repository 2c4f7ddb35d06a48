"""A Pygments lexer for .arch, registered as the `arch` lexer through the entry point in
pyproject.toml: ```` ```arch ```` blocks in Markdown and `pygmentize -l arch spec.arch` use it.

Pygments is not a dependency of archsmith; only this module imports it. The word lists are the
grammar's (tests/test_highlight.py checks them against arch.lark), and editors/arch.tmLanguage.json
has the same ones.
"""
from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text

from .evaluate import BUILTINS
from .primitives import INITIALIZERS, PRIMITIVES

# the words arch.lark reserves, by role
KEYWORDS = ("assert", "elif", "else", "for", "if", "return", "seq")
WORD_OPERATORS = ("and", "in", "not", "or")
CONSTANTS = ("false", "none", "true")
# keywords where a top-level statement starts (`input` on a model's line); ordinary names elsewhere
DEFINITIONS = ("block", "def", "fn", "import", "model")
# a statement starting with one of these and a name: `param gamma = ...`, `declare downsample`
STATEMENT_WORDS = ("buffer", "declare", "param", "recompute")
# the primitives, the initializers of a `param` and the built-in functions
FUNCTIONS = tuple(sorted(set(PRIMITIVES) | set(INITIALIZERS) | set(BUILTINS)))

_NAME = r"[A-Za-z_]\w*"
_LAYER_NAME = r'(?:"[^"\n]*"|[A-Za-z_]\w*(?:\{[^{}\n]*\}\w*)*)'  # `conv1`, `block{s}_{i}`, `"stage-{s}"`


class ArchLexer(RegexLexer):
    """Lexer for archsmith's `.arch` architecture specs."""

    name = "arch"
    aliases = ["arch"]
    filenames = ["*.arch"]

    tokens = {
        "root": [
            # what only starts a line comes first: the rule for spaces would take its indent
            (r"^(block)(\s+)(" + _NAME + ")", bygroups(Keyword.Declaration, Text.Whitespace, Name.Class)),
            (r"^(def|fn)(\s+)(" + _NAME + ")", bygroups(Keyword.Declaration, Text.Whitespace, Name.Function)),
            (r"^(model)(\s+)(" + _NAME + ")", bygroups(Keyword.Declaration, Text.Whitespace, Name.Variable)),
            (r"^import\b", Keyword.Namespace),
            (r"^([^\S\n]*)(" + "|".join(STATEMENT_WORDS) + r")([^\S\n]+)(?=" + _NAME + ")",
             bygroups(Text.Whitespace, Keyword, Text.Whitespace)),
            # a layer's name where a line of a `seq` starts, or after a pipe
            (r"^([^\S\n]*)(" + _LAYER_NAME + r")([^\S\n]*)(:)",
             bygroups(Text.Whitespace, Name.Label, Text.Whitespace, Punctuation)),
            (r"(\|)(\s*)(" + _LAYER_NAME + r")(\s*)(:)",
             bygroups(Operator, Text.Whitespace, Name.Label, Text.Whitespace, Punctuation)),
            (r"\n|[^\S\n]+", Text.Whitespace),
            (r"#.*", Comment.Single),
            (r"\binput(?=\s+[\w\[(])", Keyword.Declaration),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(WORD_OPERATORS, suffix=r"\b"), Operator.Word),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(FUNCTIONS, suffix=r"\b"), Name.Builtin),
            (r"training\b", Name.Builtin.Pseudo),
            (_NAME, Name),
            (r"\d+(\.\d+([eE][+-]?\d+)?|[eE][+-]?\d+)", Number.Float),
            (r"\d+", Number.Integer),
            (r'"', String.Double, "string"),
            (r"\*\*|//=?|[-+*]=|[=!<>]=|[-+*/%@<>=|]", Operator),
            (r"[()\[\]{},.:;]", Punctuation),
        ],
        "string": [
            (r"\{[^{}\"\n]*\}", String.Interpol),
            (r'[^"{\n]+|\{', String.Double),
            (r'"', String.Double, "#pop"),
        ],
    }
