"""Parse .arch text into the syntax tree of `archsmith.ast`, with a span on every node."""
from __future__ import annotations

import functools
import re

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from . import ast, limits
from .errors import SpecError

BOM = "\ufeff"
_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSERS = set(_OPENERS.values())


_DEFINING = ("BLOCK", "MODEL", "DEF", "FN", "IMPORT")  # keywords only where a top-level statement starts
# tokens after which a `{` opens a record (`{out: 64}`), not a body: where an operand is expected
_BEFORE_RECORD = {"EQUAL", "COMMA", "LPAR", "LSQB", "COLON", "PLUS", "MINUS", "STAR", "SLASH", "DSLASH", "PERCENT",
                  "POW", "COMP_OP", "AUG_OP", "RETURN", "IN", "AND", "OR", "NOT", "IF", "ASSERT"}


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


@functools.lru_cache(maxsize=None)
def _concrete_lark() -> Lark:
    return Lark.open("grammar/arch.lark", rel_to=__file__, parser="lalr", lexer="basic", postlex=_PostLexer(),
                     propagate_positions=True, maybe_placeholders=True, keep_all_tokens=True)


def concrete_tree(text: str, path: str = "<string>") -> Tree:
    """The parse tree of a file that `parse` accepts, with every token in it (punctuation, keywords and
    newlines), each under the rule it belongs to: what the formatter reads. Comments are not tokens."""
    parse(text, path)  # the syntax errors, and the checks made while building the syntax tree
    return _concrete_lark().parse(text.removeprefix(BOM))


def parse(text: str, path: str = "<string>") -> ast.SourceFile:
    """Parse one file. Raises SpecError for any syntax error."""
    text = text.removeprefix(BOM)  # an editor's mark of UTF-8, not text
    _check_size(text, path)
    try:
        tree = _lark().parse(text, start="start")
    except UnexpectedInput as e:
        raise _syntax_error(e, text, path) from None
    _check_depth(tree, path)
    try:
        items = _ToAst(path, text).transform(tree)
    except VisitError as e:
        error = e
        while isinstance(error, VisitError):  # a string's `{...}` is transformed inside the string's transform
            error = error.orig_exc
        if isinstance(error, SpecError):
            error.source = text
            raise error from None
        raise
    return _collect(items, path, text)


def _check_size(text: str, path: str) -> None:
    most = limits.current().file_bytes
    # most text is ASCII: encode (lone surrogates too) only near the limit
    if len(text) > most // 4 and len(text.encode("utf-8", "surrogatepass")) > most:
        raise SpecError(f"{path} is larger than the limit of {most:,} bytes for a spec",
                        ast.Span(path, 1, 1, 1, 1), source=text[:1000], hint=limits.hint("file_bytes"))


def _check_depth(tree: Tree, path: str, shift=(0, 0)) -> None:
    """The syntax tree's nodes nest at most `limits.nesting` deep: every later phase walks it
    recursively, and a real spec nests about 20 deep."""
    most = limits.current().nesting
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > most:
            where = _span(path, node.meta, shift) if not node.meta.empty else ast.Span(path, 1, 1, 1, 1)
            raise SpecError(f"brackets or operators nest more than {most} deep here", where,
                            hint=limits.hint("nesting") + "; or name the parts of the expression")
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


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
    # the file's own comment: the lines of `#` it starts with, up to the first blank line or code
    header = next((i for i, l in enumerate(lines) if not l.lstrip().startswith("#")), len(lines))
    file.doc = _comment_above(lines, header + 1)
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


# ---------------------------------------------------------------------------------- syntax errors
# A syntax error says what was expected, in words: the parser's acceptable next tokens are grouped
# into what they begin ("an expression", "a statement", "a layer"), a closing bracket names the
# bracket it closes, and constructs of other languages (`a, b = ...`, `+=`, `else if`, `&&`) get a
# message of their own.

_EXPRESSION_STARTS = {"NUMBER", "STRING", "NAME", "LPAR", "LSQB", "LBRACE", "MINUS", "NOT", "TRUE", "FALSE", "NONE"}
_STATEMENT_STARTS = {"NAME", "STRING", "LPAR", "IF", "FOR", "RETURN", "SEQ", "ASSERT"}
_LAYER_STARTS = {"NAME", "STRING", "SEQ"}
# tokens that continue a complete expression: acceptable there, but never what is missing
_CONTINUATIONS = {"PLUS", "MINUS", "STAR", "SLASH", "DSLASH", "PERCENT", "AT", "POW", "COMP_OP", "AND", "OR", "IF",
                  "VBAR", "DOT", "LSQB", "FOR"}
_TOKEN_WORDS = {
    "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "LPAR": "`(`", "LBRACE": "`{`", "LSQB": "`[`",
    "_NL": "a newline or `;` after the statement", "$END": "the end of the file", "NAME": "a name",
    "STRING": "a string in double quotes", "NUMBER": "a number", "AUG_OP": "`+=`, `-=`, `*=` or `//=`",
}
_CLOSERS_OF = {closer: opener for opener, closer in _OPENERS.items()}
_BRACKET_TEXT = {"LPAR": "(", "RPAR": ")", "LSQB": "[", "RSQB": "]", "LBRACE": "{", "RBRACE": "}"}
_FOREIGN_CHARACTERS = {
    "'": "strings use double quotes",
    "&": "`&&` is written `and`",
    "!": "`!` is written `not` (not-equal is `!=`)",
    "\x00": "a .arch file is text; is this the right file?",
}


class _Context:
    """Where a syntax error happened: the tokens before it, the token found, what would have fitted."""

    def __init__(self, e: UnexpectedToken, text: str):
        self.token = e.token
        self.accepts = set(e.interactive_parser.accepts()) if e.interactive_parser else set(e.expected)
        self.before = _tokens_before(text, e.token)
        self.open = _open_brackets(self.before)
        self.text = text

    def statement(self) -> list:
        """The tokens of the statement the error is in, up to the error."""
        start = max((i + 1 for i, t in enumerate(self.before) if t.type in ("_NL", "LBRACE")), default=0)
        return self.before[start:]

    def previous(self, n=1):
        """The n-th token before the error, or None."""
        return self.before[-n] if len(self.before) >= n else None

    def at_statement_start(self, n=1) -> bool:
        """Whether the n-th token before the error starts a statement."""
        ahead = self.previous(n + 1)
        return self.previous(n) is not None and (ahead is None or ahead.type in ("_NL", "LBRACE"))



def _tokens_before(text: str, token) -> list:
    """The tokens the parser saw before `token` (newlines inside brackets already dropped)."""
    out = []
    if getattr(token, "start_pos", None) is None:  # the end of the file
        stop = len(text)
    else:
        stop = token.start_pos
    try:
        for tok in _lark().lex(text):
            if tok.start_pos is None or tok.start_pos >= stop:
                break
            out.append(tok)
    except UnexpectedInput:
        pass
    return out


def _open_brackets(tokens) -> list:
    """The brackets opened and not closed in `tokens`, innermost last."""
    stack = []
    for tok in tokens:
        if tok.type in _OPENERS:
            stack.append(tok)
        elif tok.type in _CLOSERS and stack and _CLOSERS_OF[tok.type] == stack[-1].type:
            stack.pop()
    return stack


def _found(token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "_NL":
        return "`;`" if token.value.startswith(";") else "the end of the line"
    return f"`{token.value}`"


def _closing(closer: str, ctx: _Context) -> str:
    opener = next((t for t in reversed(ctx.open) if t.type == _CLOSERS_OF[closer]), None)
    word = f"`{_BRACKET_TEXT[closer]}`"
    if opener is None:
        return word
    return f"{word} to close the `{_BRACKET_TEXT[opener.type]}` on line {opener.line}"


def _expected(ctx: _Context) -> str:
    """What would have fitted at the error, in words: `an expression`, "`)` to close the `(` on line 3"."""
    accepts = set(ctx.accepts)
    words = []
    if {"NUMBER", "NAME"} <= accepts:
        words.append("an expression")
        accepts -= _EXPRESSION_STARTS
    elif "RETURN" in accepts:
        words.append("a statement")
        accepts -= _STATEMENT_STARTS
    elif {"NAME", "SEQ"} <= accepts:
        words.append("a layer")
        accepts -= _LAYER_STARTS
    if accepts - _CONTINUATIONS:
        accepts -= _CONTINUATIONS
    if "_NL" in accepts:
        accepts -= {"RBRACE", "$END"}
    if "INPUT" in accepts:  # a model's `input` may follow a newline, but something must follow it
        accepts.discard("_NL")
    for t in sorted(accepts, key=lambda t: (t in _CLOSERS_OF, t == "_NL", t)):
        if t in _CLOSERS_OF:
            words.append(_closing(t, ctx))
        elif t in _TOKEN_WORDS:
            words.append(_TOKEN_WORDS[t])
        elif t in _CONTINUATIONS:
            if "an operator" not in words:
                words.append("an operator")
        else:
            words.append(f"`{t.lower()}`")
    if not words:
        return "nothing more"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _foreign_syntax(ctx: _Context):
    """(message, hint, the token to point at) for what another language would accept here, or None."""
    tok, prev = ctx.token, ctx.previous()
    if tok.type == "IF" and prev is not None and prev.type == "ELSE":
        return "`else if` is written `elif`", "write `elif cond { ... }`", prev
    if tok.type == "VBAR" and prev is not None and prev.type == "VBAR" and prev.end_pos == tok.start_pos:
        return "`||` is written `or`", None, prev
    # `def f(...)` in a block: the error comes at `f` or, as two names start a `param` statement, after it
    for n in (1, 2):
        word = ctx.previous(n)
        if (word is not None and word.type == "NAME" and word.value in _DEFINITION_WORDS and ctx.open
                and ctx.at_statement_start(n) and all(t.type == "NAME" for t in ctx.before[len(ctx.before) - n:])):
            return (f"`{word.value}` starts a definition at the top level of a file, not inside a block",
                    f"move the `{word.value}` out of the block", word)
    before = ctx.previous(2)
    if tok.type == "NAME" and tok.value == "is" and prev is not None:  # `if o is not none`
        return "`is` is not an operator here", "compare with `==` or `!=`, as in `v != none`", tok
    if tok.type == "LPAR" and prev is not None and prev.type == "NAME" and before is not None and before.type == "DOT":
        return (f"`.{prev.value}(...)` calls a method; the language has functions, which take the value first",
                f"write `{prev.value}(value, ...)`, as in `mean(x, [2, 3])`", prev)
    statement = ctx.statement()
    if len(statement) >= 2 and statement[0].value in ("param", "buffer") and statement[1].type == "NAME" \
            and tok.type in _CONTINUATIONS:
        return (f"a `{statement[0].value}` is made by one initializer call",
                "to scale it, give the value to the initializer: `full([dim, 1, 1], scale)`", tok)
    if (tok.type == "MINUS" and prev is not None and prev.type == "NAME" and before is not None
            and before.type == "VBAR"):  # `x | block1-0: ...`
        name = re.match(r"[\w-]*", ctx.text[prev.start_pos:]).group(0)
        return ("a layer name with `-` is written in double quotes",
                f'write `"{name}": ...`', tok)
    if "INPUT" in ctx.accepts and ctx.accepts <= {"INPUT", "_NL"} and (
            tok.type == "$END" or (prev is not None and prev.type == "_NL")):
        # `input` may start the line after the model's: the newline is what stands in its place
        end = "the end of the file" if tok.type == "$END" and not ctx.text.endswith("\n") else "the end of the line"
        return f"expected `input`, found {end}", None, (tok if tok.type == "$END" else prev)
    if prev is not None and prev.type == "NAME" and prev.value == "lambda":
        return "there is no `lambda`", "a layer helper is a top-level `def`: `def name(params) = layer`", prev
    return None


_DEFINITION_WORDS = {t.lower() for t in _DEFINING}


def _syntax_error(e: UnexpectedInput, text: str, path: str) -> SpecError:
    line, column, width = max(e.line, 1), max(e.column, 1), 1
    if isinstance(e, UnexpectedCharacters):
        char = text[e.pos_in_stream]
        shown = f"`{char}`" if char.isprintable() else f"U+{ord(char):04X}"
        message, hint = f"unexpected character {shown}", _FOREIGN_CHARACTERS.get(char)
    elif isinstance(e, UnexpectedToken):
        ctx = _Context(e, text)
        message, hint, at = _foreign_syntax(ctx) or (f"expected {_expected(ctx)}, found {_found(e.token)}", None,
                                                     e.token)
        if at.type == "$END":
            line, column = _end_position(text)
        else:
            line, column = at.line, at.column
            if at.type != "_NL":
                width = len(at.value)
        if hint is None and e.token.type in _DEFINING and e.token.column == 1 and ctx.open:
            hint = "is a `}` missing before this line?"
        elif hint is None and e.token.type == "COLON" and ctx.accepts == {"LBRACE"}:
            hint = "a body is written in braces: `if cond { ... }`"
    else:  # UnexpectedEOF: lark's LALR parser reports the end as a token; kept for other parsers
        line, column = _end_position(text)
        message, hint = "unexpected end of file", None
    span = ast.Span(path, line, column, line, column + width)
    return SpecError(message, span, hint=hint, source=text)


def _end_position(text: str):
    lines = text.split("\n")  # lines as the lexer counts them: \f and U+2028 are not breaks
    if len(lines) > 1 and not lines[-1]:  # the end of the last line, not the start of an empty one
        lines.pop()
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
        return ast.Return(children[0], self._s(meta), list(children) if len(children) > 1 else None)

    def assert_stmt(self, meta, children):
        cond, message = children
        parts = ["assertion failed"] if message is None else self._message(message)
        return ast.Assert(cond, ast.Fail(parts, cond.span), self._s(meta))

    def if_stmt(self, meta, children):
        cond, body, *rest = children
        orelse = rest.pop() if rest and not isinstance(rest[-1], tuple) else None
        if isinstance(cond, ast.Name) and cond.id == "training":
            if rest or orelse is not None:
                raise SpecError("`if training` has no `elif` or `else`", self._s(meta),
                                hint="what follows the `if` runs in both modes, or in eval only where the "
                                     "`if training` returns")
            return ast.Training(body, self._s(meta))
        return ast.If([(cond, body)] + list(rest), orelse, self._s(meta))

    def elif_clause(self, meta, children):
        return (children[0], children[1])

    def for_stmt(self, meta, children):
        var, iterable, body = children
        return ast.For(self._loop_target(var), iterable, body, self._s(meta))

    def param_stmt(self, meta, children):
        keyword, name, init = children
        if keyword not in ("param", "buffer"):
            raise SpecError(f"unexpected `{name}` after `{keyword}`", _span(self.path, name),
                            hint="a statement starting with two names declares a tensor: `param name = zeros([n])`")
        return ast.ParamDecl(keyword == "buffer", str(name), init, self._s(meta), _span(self.path, name))

    def declare_stmt(self, meta, children):
        keyword, *names = children
        if keyword != "declare":
            raise SpecError(f"unexpected `{names[0]}` after `{keyword}`", _span(self.path, names[0]),
                            hint="a statement starting with two names declares a tensor (`param name = zeros([n])`) "
                                 "or a layer's place (`declare name`)")
        return ast.Declare([str(n) for n in names], [_span(self.path, n) for n in names], self._s(meta))

    def recompute_stmt(self, meta, children):
        keyword, name, cond, body = children
        if keyword != "recompute":
            raise SpecError(f"unexpected `{name}` after `{keyword}`", _span(self.path, name),
                            hint="a statement starting with two names and a body recomputes them: "
                                 "`recompute name if cond { ... }`")
        return ast.Recompute(str(name), cond, body, self._s(meta), _span(self.path, name))

    def layer_stmt(self, meta, children):
        item = children[0]
        target = item.target
        if item.name is None and isinstance(target, ast.Call) and target.func == "error":
            if len(target.args) != 1 or target.args[0].name is not None:
                raise SpecError("`error` takes one message", target.span,
                                hint='write `error("depth must be 6n + 4")`')
            return ast.Fail(self._message(target.args[0].value), self._s(meta))
        return ast.LayerStmt(item, self._s(meta))

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
        span = self._s(meta)
        return ast.LayerName(self._interpolated(str(children[0])[1:-1], span, "a layer name"), span, quoted=True)

    def _message(self, expr) -> list:
        """The parts of an `error` or `assert` message, a string literal interpolated as a quoted layer name."""
        if isinstance(expr, ast.Literal) and isinstance(expr.value, str):
            return self._interpolated(expr.value, expr.span, "a message")
        raise SpecError("a message is a string literal", expr.span,
                        hint='values go between braces in it: "depth {depth} is not 6n + 4"')

    def _interpolated(self, text, span, what) -> list:
        """The parts of the string `text` written at `span`: text, and the expressions between braces."""
        parts, start = [], 0
        while start < len(text):
            open_ = text.find("{", start)
            if open_ < 0:
                parts.append(text[start:])
                break
            close = text.find("}", open_)
            if close < 0:
                raise SpecError(f"a `{{` in {what} is not closed", span)
            if open_ > start:
                parts.append(text[start:open_])
            parts.append(self._interpolation(text[open_ + 1:close], span, open_, what))
            start = close + 1
        return parts

    def _interpolation(self, source, span, at, what):
        """The expression between the braces at index `at` of the string written at `span`."""
        shift = (span.line - 1, span.column + at + 1)
        try:
            tree = _lark().parse(source, start="expr")
        except UnexpectedInput:
            column = shift[1] + 1
            raise SpecError(f"`{{{source}}}` in {what} is not an expression",
                            ast.Span(self.path, shift[0] + 1, column - 1, shift[0] + 1, column + len(source) + 1)) from None
        _check_depth(tree, self.path, shift)
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
        if any(c in text for c in ".eE"):
            return ast.Literal(float(text), self._s(meta))
        if len(text.lstrip("0")) > 19 or int(text) >= 2 ** 63:  # a 5,000-digit int would not even print
            raise SpecError("the integer is too large: the largest is 2**63 - 1", self._s(meta))
        return ast.Literal(int(text), self._s(meta))

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
