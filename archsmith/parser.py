"""Parse .arch text into the syntax tree of `archsmith.ast`, with a span on every node."""
from __future__ import annotations

import functools

from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from .errors import SpecError

_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSERS = set(_OPENERS.values())


_DEFINING = ("BLOCK", "MODEL", "DEF", "FN", "IMPORT")  # keywords only where a top-level statement starts
# tokens after which a `{` opens a record (`{out: 64}`), not a body: where an operand is expected
_BEFORE_RECORD = {"EQUAL", "COMMA", "LPAR", "LSQB", "COLON", "PLUS", "MINUS", "STAR", "SLASH", "DSLASH", "PERCENT",
                  "POW", "COMP_OP", "AUG_OP", "RETURN", "IN", "AND", "OR", "NOT", "IF"}


class _PostLexer:
    """Drop newlines inside (...) and [...], merge runs of them, and let `else`/`elif` follow `}`.
    `block`, `model`, `def`, `fn` and `import` are keywords only at the start of a top-level statement,
    and `input` only outside brackets, so elsewhere they are ordinary names (a layer called `block`).
    Newlines inside a record's `{...}` are dropped as inside brackets."""

    always_accept = ()

    def process(self, stream):
        stack = []
        pending = None
        previous = None
        for tok in stream:
            if tok.type == "_NL":
                if not stack or stack[-1] == "LBRACE":
                    pending = pending or tok
                continue
            if pending is not None and tok.type not in ("ELSE", "ELIF"):
                yield pending
                previous = pending
            pending = None
            # a definition starts a line at the top level; in column 1 it is one even inside an
            # unclosed `{`, so that a missing `}` is reported there
            line_start = previous is None or previous.type == "_NL"
            starts_statement = line_start and (not stack or tok.column == 1)
            if (tok.type in _DEFINING and not starts_statement) or (tok.type == "INPUT" and stack):
                tok = Token.new_borrow_pos("NAME", tok.value, tok)
            record = tok.type == "LBRACE" and previous is not None and previous.type in _BEFORE_RECORD
            previous = tok
            if tok.type in _OPENERS:
                stack.append("LREC" if record else tok.type)
            elif tok.type in _CLOSERS and stack:
                stack.pop()
            yield tok
        if pending is not None:
            yield pending


@functools.lru_cache(maxsize=None)
def _lark() -> Lark:
    return Lark.open("grammar/arch.lark", rel_to=__file__, parser="lalr", lexer="basic", postlex=_PostLexer(),
                     propagate_positions=True, maybe_placeholders=True, start=["start", "expr"])


def parse(text: str, path: str = "<string>") -> ast.SourceFile:
    """Parse one file. Raises SpecError for any syntax error."""
    try:
        tree = _lark().parse(text, start="start")
    except UnexpectedInput as e:
        raise _syntax_error(e, text, path) from None
    try:
        items = _ToAst(path, text).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, SpecError):
            e.orig_exc.source = text
            raise e.orig_exc from None
        raise
    return _collect(items, path, text)


def _comment_above(lines, line: int) -> str:
    """The run of `#` comment lines right above 1-based `line`, without the `#`s."""
    out = []
    i = line - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        out.insert(0, lines[i].lstrip()[1:].strip())
        i -= 1
    return "\n".join(out)


def _collect(items, path, text) -> ast.SourceFile:
    file = ast.SourceFile(path=path, text=text, imports=[], constants=[], blocks={}, layer_defs={}, models={})
    lines = text.splitlines()
    first_code = next((i for i, l in enumerate(lines) if l.strip() and not l.lstrip().startswith("#")), len(lines))
    file.doc = _comment_above(lines, first_code + 1) if first_code and lines[0].lstrip().startswith("#") else ""
    seen = {}
    for item in items:
        if isinstance(item, (ast.BlockDef, ast.LayerDef, ast.FnDef, ast.ModelDef)):
            item.doc = _comment_above(lines, item.span.line)
        if isinstance(item, ast.Import):
            file.imports.append(item)
            continue
        item.file = file
        name = item.target if isinstance(item, ast.Assign) else item.name
        if name in seen:
            raise SpecError(f"`{name}` is already defined in this file", item.span, source=text,
                            notes=[("first defined here", seen[name].span)])
        seen[name] = item
        if isinstance(item, ast.Assign):
            file.constants.append(item)
        else:
            {ast.BlockDef: file.blocks, ast.LayerDef: file.layer_defs, ast.FnDef: file.fns,
             ast.ModelDef: file.models}[type(item)][item.name] = item
    return file


_TOKEN_WORDS = {
    "RPAR": "`)`", "LPAR": "`(`", "RSQB": "`]`", "LSQB": "`[`", "RBRACE": "`}`", "LBRACE": "`{`",
    "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "_NL": "end of line", "$END": "end of file",
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "VBAR": "`|`", "DOT": "`.`",
    "AUG_OP": "`+=`, `-=`, `*=` or `//=`",
}


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_WORDS:
        return _TOKEN_WORDS[token_type]
    return f"`{token_type.lower()}`" if token_type.isalpha() else token_type


def _syntax_error(e: UnexpectedInput, text: str, path: str) -> SpecError:
    line, column = max(e.line, 1), max(e.column, 1)
    width = 1
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            what = "end of file"
            line, column = _end_position(text)
        elif tok.type == "_NL":
            what = "end of line"
        else:
            what = f"`{tok.value}`"
            width = max(1, len(str(tok.value)))
        expected = sorted({_describe(t) for t in e.expected if not t.startswith("__")})
        message = f"unexpected {what}"
        hint = _hint_for(e, expected)
    elif isinstance(e, UnexpectedCharacters):
        message = f"unexpected character `{text[e.pos_in_stream]}`"
        hint = "strings use double quotes" if text[e.pos_in_stream] == "'" else None
    elif isinstance(e, UnexpectedEOF):
        line, column = _end_position(text)
        message, hint = "unexpected end of file", "a `(`, `[` or `{` is not closed"
    else:  # pragma: no cover - lark has no other kinds
        message, hint = str(e), None
    span = ast.Span(path, line, column, line, column + width)
    return SpecError(message, span, hint=hint, source=text)


def _hint_for(e: UnexpectedToken, expected: list):
    if e.token.type == "$END":
        return "a `(`, `[` or `{` is not closed"
    if e.token.type in _DEFINING and e.token.column == 1:
        return "is a `}` missing before this line?"
    if "`)`" in expected and len(expected) <= 3:
        return "missing `)`?"
    if "`]`" in expected and len(expected) <= 3:
        return "missing `]`?"
    if len(expected) <= 6:
        return "expected " + ", ".join(expected)
    return None


def _end_position(text: str):
    lines = text.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _span(path, meta_or_token, shift=(0, 0)) -> ast.Span:
    """The span of a node or token; `shift` (lines, columns) places text parsed out of a string."""
    m = meta_or_token
    lines, columns = shift
    return ast.Span(path, m.line + lines, m.column + columns, m.end_line + lines, m.end_column + columns)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Lark tree -> archsmith.ast, one method per grammar rule. `shift` places the expressions of a
    quoted layer name, which are parsed on their own."""

    def __init__(self, path: str, text: str, shift=(0, 0)):
        super().__init__()
        self.path, self.text, self.shift = path, text, shift

    def _s(self, meta):
        return _span(self.path, meta, self.shift)

    # -- top level
    def start(self, meta, items):
        return list(items)

    def import_stmt(self, meta, children):
        return ast.Import(children[0][1:-1], self._s(meta))

    def block_def(self, meta, children):
        name, params, body = children
        return ast.BlockDef(str(name), params or [], body, self._s(meta))

    def fn_def(self, meta, children):
        name, params, body = children
        return ast.FnDef(str(name), params or [], body, self._s(meta))

    def def_def(self, meta, children):
        name, params, layer = children
        return ast.LayerDef(str(name), params or [], layer, self._s(meta))

    def model_def(self, meta, children):
        name, block, args, input_ = children
        return ast.ModelDef(str(name), str(block), args or [], input_, self._s(meta), _span(self.path, block))

    def params(self, meta, children):
        return list(children)

    def param(self, meta, children):
        name, default = children
        return ast.Param(str(name), default, self._s(meta))

    def body(self, meta, children):
        return list(children)

    # -- statements
    def assign(self, meta, children):
        return ast.Assign(str(children[0]), children[1], self._s(meta))

    def unpack(self, meta, children):
        return ast.Unpack([self._target(c) for c in children[:-1]], children[-1], self._s(meta))

    def aug_assign(self, meta, children):
        """`a += b` is `a = a + b`."""
        name, op, value = children
        span = self._s(meta)
        target = ast.Name(str(name), _span(self.path, name, self.shift))
        return ast.Assign(str(name), ast.BinOp(str(op)[:-1], target, value, span), span)

    def targets(self, meta, children):
        return [self._target(c) for c in children]

    @staticmethod
    def _target(c):
        return str(c) if isinstance(c, Token) else c

    @staticmethod
    def _loop_target(targets):
        """`for i in` and `for (a, b) in`: the one target; `for i, w in`: the list of targets."""
        return targets[0] if len(targets) == 1 else targets

    def return_stmt(self, meta, children):
        return ast.Return(children[0], self._s(meta))

    def if_stmt(self, meta, children):
        cond, body, *rest = children
        orelse = rest.pop() if rest and not isinstance(rest[-1], tuple) else None
        return ast.If([(cond, body)] + list(rest), orelse, self._s(meta))

    def elif_clause(self, meta, children):
        return (children[0], children[1])

    def for_stmt(self, meta, children):
        var, iterable, body = children
        return ast.For(self._loop_target(var), iterable, body, self._s(meta))

    def layer_stmt(self, meta, children):
        return ast.LayerStmt(children[0], self._s(meta))

    # -- layers
    def layer_item(self, meta, children):
        name, target = children
        return ast.LayerItem(name, target, self._s(meta))

    def layer_name(self, meta, children):
        text = self.text[meta.start_pos:meta.end_pos]
        depth = 0
        for c in text:
            depth += (c == "{") - (c == "}")
            if depth == 0 and c.isspace():
                raise SpecError("a layer name is written without spaces", self._s(meta),
                                hint=f'quote it to name a layer with spaces: `"{text}"`')
        return ast.LayerName([str(c) if isinstance(c, Token) else c for c in children], self._s(meta))

    def quoted_name(self, meta, children):
        """`"block{s}-{i}"`: the text between braces is an expression."""
        token = children[0]
        text, parts, start = str(token)[1:-1], [], 0
        while start < len(text):
            open_ = text.find("{", start)
            if open_ < 0:
                parts.append(text[start:])
                break
            close = text.find("}", open_)
            if close < 0:
                raise SpecError("a `{` in a layer name is not closed", self._s(meta))
            if open_ > start:
                parts.append(text[start:open_])
            parts.append(self._interpolation(text[open_ + 1:close], token, open_))
            start = close + 1
        return ast.LayerName(parts, self._s(meta), quoted=True)

    def _interpolation(self, source, token, at):
        """The expression between the braces at index `at` of the quoted layer name `token`."""
        shift = (self.shift[0] + token.line - 1, self.shift[1] + token.column + at + 1)
        try:
            tree = _lark().parse(source, start="expr")
        except UnexpectedInput:
            column = shift[1] + 1
            raise SpecError(f"`{{{source}}}` in a layer name is not an expression",
                            ast.Span(self.path, shift[0] + 1, column - 1, shift[0] + 1, column + len(source) + 1)) from None
        return _ToAst(self.path, source, shift).transform(tree)

    def seq(self, meta, children):
        return ast.Seq(children[0], self._s(meta))

    def call(self, meta, children):
        name, args = children
        return ast.Call(str(name), args or [], self._s(meta), _span(self.path, name))

    def name_ref(self, meta, children):
        return ast.Name(str(children[0]), self._s(meta))

    def args(self, meta, children):
        return list(children)

    def pos_arg(self, meta, children):
        return ast.Arg(None, children[0], self._s(meta))

    def kw_arg(self, meta, children):
        return ast.Arg(str(children[0]), children[1], self._s(meta))

    # -- expressions
    def pipe(self, meta, children):
        return ast.Pipe(children[0], children[1], self._s(meta))

    def ternary(self, meta, children):
        then, cond, orelse = children
        return ast.Ternary(then, cond, orelse, self._s(meta))

    def or_op(self, meta, children):
        return ast.BoolOp("or", children[0], children[1], self._s(meta))

    def and_op(self, meta, children):
        return ast.BoolOp("and", children[0], children[1], self._s(meta))

    def not_op(self, meta, children):
        return ast.UnaryOp("not", children[0], self._s(meta))

    def neg(self, meta, children):
        return ast.UnaryOp("-", children[-1], self._s(meta))

    def compare(self, meta, children):
        return ast.BinOp(str(children[1]), children[0], children[2], self._s(meta))

    def binop(self, meta, children):
        return ast.BinOp(str(children[1]), children[0], children[2], self._s(meta))

    def pow_op(self, meta, children):
        return ast.BinOp("**", children[0], children[-1], self._s(meta))

    def index(self, meta, children):
        return ast.Index(children[0], children[1], self._s(meta))

    def slice(self, meta, children):
        return ast.Slice(children[0], children[1], children[2], self._s(meta))

    def attr(self, meta, children):
        return ast.Attr(children[0], str(children[1]), self._s(meta))

    def number(self, meta, children):
        text = str(children[0])
        value = float(text) if any(c in text for c in ".eE") else int(text)
        return ast.Literal(value, self._s(meta))

    def string(self, meta, children):
        return ast.Literal(str(children[0])[1:-1], self._s(meta))

    def true(self, meta, children):
        return ast.Literal(True, self._s(meta))

    def false(self, meta, children):
        return ast.Literal(False, self._s(meta))

    def none(self, meta, children):
        return ast.Literal(None, self._s(meta))

    def name(self, meta, children):
        return ast.Name(str(children[0]), self._s(meta))

    def list(self, meta, children):
        return ast.ListExpr([c for c in children if c is not None], self._s(meta))

    def list_comp(self, meta, children):
        return ast.ListComp(children[0], list(children[1:]), self._s(meta))

    def comp_for(self, meta, children):
        targets, iterable = children
        return ast.CompFor(self._loop_target(targets), iterable, self._s(meta))

    def comp_if(self, meta, children):
        return ast.CompIf(children[0], self._s(meta))

    def record(self, meta, children):
        fields = [c for c in children if c is not None]
        seen = {}
        for name, _, span in fields:
            if name in seen:
                raise SpecError(f"the record has two fields named `{name}`", span, notes=[("first here", seen[name])])
            seen[name] = span
        return ast.Record([(name, value) for name, value, _ in fields], self._s(meta))

    def field_init(self, meta, children):
        return (str(children[0]), children[1], self._s(meta))

    def layer_value(self, meta, children):
        name, *accesses, args = children
        value = ast.Name(str(name), _span(self.path, name, self.shift))
        for kind, node, span in accesses:
            start = value.span
            span = ast.Span(span.path, start.line, start.column, span.end_line, span.end_column)
            value = ast.Attr(value, node, span) if kind == "field" else ast.Index(value, node, span)
        return ast.ValueCall(value, args or [], self._s(meta))

    def field_access(self, meta, children):
        return ("field", str(children[0]), self._s(meta))

    def item_access(self, meta, children):
        return ("item", children[0], self._s(meta))

    def call_args(self, meta, children):
        return children[0] or []
