"""`archsmith fmt`: a spec rewritten in the canonical style, the style of the bundled specs.

The formatter changes only the space within lines. Every token, comment and line break stays where it
is, so line numbers in errors, in generated docstrings and in anything else that cites a spec stay
right, and the formatted spec compiles to the same source. Within that:

* a line is indented 4 spaces per enclosing `{ ... }` body; a line that continues a statement inside
  `(`, `[` or a record's `{` lines up after the bracket, or is indented 4 more than the bracket's line
  when the bracket ends its line (its closer then starts a line at that line's indent); a `def` or
  `model` continued on the next line is indented 4;
* binary operators, `=` in assignments, parameter defaults, definitions and models, `|` and keywords
  have a space on each side; `=` between a keyword argument and its value has none; `,`, `;` and the
  `:` of a layer name or record field are followed by one space; brackets, calls, indexing, slices,
  `.`, unary minus and interpolated layer names (`block{s}_{i}`) are written tight; a one-line body
  is `{ a; b }` and a record `{a: 1}`;
* a `;` is kept only between two statements on one line;
* an own-line comment is indented as the code at its place; a comment after code keeps its column
  (moved with the line's indent), at least two spaces after the code, so comments the author aligned
  stay aligned;
* trailing spaces go, and the file ends with one newline.
"""
from __future__ import annotations

from lark import Token, Tree

from .parser import concrete_tree

INDENT = 4

_OPENERS = {"LPAR", "LSQB", "LBRACE"}
_CLOSERS = {"RPAR", "RSQB", "RBRACE"}
_NO_SPACE_BEFORE = {"COMMA", "RPAR", "RSQB", "DOT", "COLON"}
_NO_SPACE_AFTER = {"LPAR", "LSQB", "DOT"}
_CALLS = {"call", "call_args", "block_def", "def_def", "fn_def", "model_def"}  # `(` right after a name
_INDEXES = {"index", "slice", "item_access"}  # `[` right after a value
_TIGHT_BRACES = {"record", "layer_name"}  # `{out: 64}`, `conv{i}`


def format_spec(text: str, path: str = "<string>") -> str:
    """`text` in the canonical style. Raises SpecError, located, for text that does not parse."""
    return _Formatter(text, concrete_tree(text, path)).run()


class _Frame:
    """An open bracket or body: the indent of the lines inside it and of the line its closer starts."""

    def __init__(self, body: bool, inside: int, closer: int):
        self.body, self.inside, self.closer = body, inside, closer


class _Formatter:
    """Writes the tokens of a parse tree line by line, with the comments and line breaks between them."""

    def __init__(self, text: str, tree: Tree):
        self.text = text
        self.tokens = []  # (token, the rule it belongs to), in source order, newlines left out
        self.starts = set()  # where statements start
        for node in tree.iter_subtrees():
            for child in node.children:
                if isinstance(child, Token) and child.type != "_NL":
                    self.tokens.append((child, node.data))
                elif isinstance(child, Tree) and node.data in ("start", "body"):
                    self.starts.add(child.meta.start_pos)
        self.tokens.sort(key=lambda t: t[0].start_pos)
        self.lines = []  # finished lines
        self.line = ""  # the line being written
        self.code = False  # whether it has a token yet
        self.frames = []
        self.statement_line = 0  # the indent of the last line that started outside brackets
        self.shift = 0  # the change of the current line's indent

    def run(self) -> str:
        previous, end = None, 0
        for i, (tok, rule) in enumerate(self.tokens):
            gap = self.text[end:tok.start_pos]
            if "\n" in gap or previous is None:
                self._between_lines(gap, end)
                self.line = " " * self._indent(tok)
                self.shift = len(self.line) - len(gap.rsplit("\n", 1)[-1])  # how far the line moved
                if self._statement_level():
                    self.statement_line = len(self.line)
            elif ";" in gap and tok.start_pos in self.starts and previous[0].type != "LBRACE":
                self.line += "; "
            else:
                self.line += _space(previous, (tok, rule))
            self._write(tok, rule, i)
            previous, end = (tok, rule), tok.end_pos
        self._between_lines(self.text[end:], end)
        self._end_line()
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return "".join(line + "\n" for line in self.lines)

    def _write(self, tok, rule, i):
        column = len(self.line)
        self.line += tok.value
        self.code = True
        if tok.type in _CLOSERS:
            self.frames.pop()
        elif tok.type in _OPENERS:
            body = rule == "body"
            # a body's statements are indented from its statement's line (the `{` may end a line of parameters)
            indent = self.statement_line if body and self._statement_level() else _indent_of(self.line)
            following = self.tokens[i + 1][0].start_pos if i + 1 < len(self.tokens) else len(self.text)
            hanging = "\n" in self.text[tok.end_pos:following]
            inside = indent + INDENT if body or hanging else column + 1
            self.frames.append(_Frame(body, inside, indent))

    def _statement_level(self) -> bool:
        """Whether the next token is outside brackets, where a newline ends a statement."""
        return not self.frames or self.frames[-1].body

    def _inside(self) -> int:
        """The indent of a line inside the innermost bracket or body (of a statement at the top level)."""
        return self.frames[-1].inside if self.frames else 0

    def _indent(self, tok) -> int:
        """The indent of a line starting with `tok`."""
        if tok.type in _CLOSERS:
            return self.frames[-1].closer
        if not self._statement_level() or tok.start_pos in self.starts or tok.type in ("ELSE", "ELIF"):
            return self._inside()
        return self._inside() + INDENT  # a `def` after its `=`, a model's `input`

    def _between_lines(self, gap: str, at: int):
        """The rest of the current line, and the lines of comments or nothing up to the next token."""
        for n, piece in enumerate(gap.split("\n")):
            if n:
                self._end_line()
            hash_ = piece.find("#")
            if hash_ >= 0:
                comment = piece[hash_:].rstrip()
                if self.code:
                    column = at + hash_ - (self.text.rfind("\n", 0, at + hash_) + 1) + self.shift
                    self.line += " " * max(column - len(self.line), 2) + comment
                else:
                    self.line = " " * self._inside() + comment
            at += len(piece) + 1

    def _end_line(self):
        self.lines.append(self.line.rstrip())
        self.line, self.code = "", False


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _space(previous, current) -> str:
    """The space between two tokens on one line."""
    (p, p_rule), (c, c_rule) = previous, current
    tight = (c.type in _NO_SPACE_BEFORE or p.type in _NO_SPACE_AFTER
             or (c.type == "LPAR" and c_rule in _CALLS) or (c.type == "LSQB" and c_rule in _INDEXES)
             or (p.type == "LBRACE" and (p_rule in _TIGHT_BRACES or c.type == "RBRACE"))
             or (c.type == "RBRACE" and c_rule in _TIGHT_BRACES)
             or p_rule == c_rule == "layer_name"
             or (p.type == "EQUAL" and p_rule == "kw_arg") or (c.type == "EQUAL" and c_rule == "kw_arg")
             or (p.type == "MINUS" and p_rule == "neg") or (p.type == "COLON" and p_rule == "slice"))
    return "" if tight else " "
