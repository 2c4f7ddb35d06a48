"""The language server behind `archsmith lsp`: diagnostics from the compiler's located errors, hover
with a layer's output shape and parameters, go-to-definition, formatting.

The work is done by pure functions of a document's text and path (`diagnostics`, `hover`,
`definition`), with LSP's 0-based lines and UTF-16 columns; `server` wraps them in a pygls server,
which is imported only there: pygls is an optional dependency (`archsmith[lsp]`)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from . import ast
from .compiler import check, elaborate_models
from .errors import SpecError
from .format import format_spec
from .loader import SpecText, resolve_spec
from .parser import parse
from .passes import module_parameters

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def diagnostics(text: str, path: str) -> list:
    """The spec's error as LSP diagnostics (dicts), [] if it checks as `archsmith check` would."""
    try:
        check(SpecText(text, path))
    except SpecError as e:
        return [_diagnostic(e, text, path)]
    return []


def _diagnostic(error: SpecError, text: str, path: str) -> dict:
    message = error.message
    if error.span is None:
        where = ast.Span(path, 1, 1, 1, 1)
    elif _same_file(error.span.path, path):
        where = error.span
    else:  # in an imported file: on the import line that brings it in
        where = _import_span(text, path, error.span.path)
        message = f"{error.span.path}:{error.span.line}:{error.span.column}: {message}"
    for note, span in error.notes:
        message += f"\n{span.path}:{span.line}:{span.column}: note: {note}" if span else f"\nnote: {note}"
    if error.hint:
        message += f"\nhint: {error.hint}"
    return {"range": _range(text, where), "severity": 1, "source": "archsmith", "message": message}


def _same_file(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _import_span(text: str, path: str, other: str):
    """The span of the import of `other` (by its name), else of the first import, else of line 1.
    The document parses: its imports are loaded only after it is."""
    imports = parse(text, path).imports
    if not imports:
        return ast.Span(path, 1, 1, 1, 1)
    named = [imp for imp in imports if Path(imp.path).stem == Path(other).stem]
    return (named or imports)[0].span


def _range(text: str, span) -> dict:
    lines = text.split("\n")
    return {"start": _position(lines, span.line, span.column),
            "end": _position(lines, span.end_line, span.end_column)}


def _position(lines: list, line: int, column: int) -> dict:
    """A 1-based (line, character column) -> LSP's 0-based line and UTF-16 column."""
    before = lines[line - 1][:column - 1] if line <= len(lines) else ""
    return {"line": line - 1, "character": len(before.encode("utf-16-le", "surrogatepass")) // 2}


def _column(text: str, line: int, character: int) -> int:
    """LSP's 0-based line and UTF-16 column -> a 0-based index into that line's characters."""
    units = 0
    for i, c in enumerate(text.split("\n")[line]):
        if units >= character:
            return i
        units += len(c.encode("utf-16-le", "surrogatepass")) // 2
    return len(text.split("\n")[line])


def _word_at(text: str, line: int, character: int) -> Optional[str]:
    lines = text.split("\n")
    if line >= len(lines):
        return None
    index = _column(text, line, character)
    for m in _WORD.finditer(lines[line]):
        if m.start() <= index <= m.end():
            return m.group()
    return None


def _definition_at(text: str, path: str, line: int, character: int):
    """The block, def or fn named at the position, as the document's scope resolves it."""
    word = _word_at(text, line, character)
    if word is None:
        return None
    try:
        file = resolve_spec(SpecText(text, path))[1]
    except SpecError:
        return None
    defn = file.scope.get(word)
    return defn if isinstance(defn, (ast.BlockDef, ast.LayerDef, ast.FnDef)) else None


def hover(text: str, path: str, line: int, character: int) -> Optional[str]:
    """Markdown for the position: a definition's signature and doc comment, or the output shape and
    parameters of the layers written there, over every model and instance; None if there is none."""
    defn = _definition_at(text, path, line, character)
    if defn is not None:
        return f"```\n{_signature(defn)}\n```" + (f"\n\n{defn.doc}" if defn.doc else "")
    try:
        models = elaborate_models(SpecText(text, path))
    except SpecError:
        return None
    name = _layer_name_at(text, line, character)
    found = []
    for model in models:
        counts = module_parameters(model.graph)
        for instance in model.root.instances():
            named = name is not None and _inside(instance.block.span, text, path, line, character)
            for layer in _layers(instance.layers):
                if (named and layer.name == name) or _inside(layer.span, text, path, line, character):
                    found.append((model, layer, counts))
    if not found:
        return None
    if len(found) == 1:
        return _describe(*found[0])
    shapes = sorted({str(list(layer.out_shape)) for _, layer, _ in found})
    return f"in {len(found)} instances: " + ", ".join(shapes)


def _layers(layers):
    for layer in layers:
        yield layer
        yield from _layers(layer.children)


def _inside(span, text: str, path: str, line: int, character: int) -> bool:
    here = (line + 1, _column(text, line, character) + 1)
    return _same_file(span.path, path) and (span.line, span.column) <= here < (span.end_line, span.end_column)


def _layer_name_at(text: str, line: int, character: int) -> Optional[str]:
    """The word at the position if it names a layer, as in `conv1: conv2d(...)`: the span of a layer
    is its call's, and a def's layer has the def's."""
    index = _column(text, line, character)
    for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*:(?!=)", text.split("\n")[line]):
        if m.start() <= index <= m.end(1):
            return m.group(1)
    return None


def _describe(model, layer, counts) -> str:
    params = sum(n for key, n in counts.items() if key == layer.path or key.startswith(layer.path + "."))
    out = [f"`{model.name}.{layer.path}`: output {list(layer.out_shape)}, {params:,} parameters"]
    if layer.instance is not None:
        args = ", ".join(f"{name}={value!r}" for name, value in layer.instance.params.items())
        out.append(f"`{layer.instance.block.name}({args})`")
    return "\n\n".join(out)


def _signature(defn) -> str:
    keyword = {ast.BlockDef: "block", ast.LayerDef: "def", ast.FnDef: "fn"}[type(defn)]
    lines = defn.file.text.split("\n")
    params = ", ".join(_source(lines, p.span) for p in defn.params)
    return f"{keyword} {defn.name}({params})"


def _source(lines: list, span) -> str:
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1:span.end_column - 1]
    return lines[span.line - 1][span.column - 1:]


def definition(text: str, path: str, line: int, character: int) -> Optional[dict]:
    """The LSP location (a dict with a file URI) of the block, def or fn named at the position."""
    defn = _definition_at(text, path, line, character)
    if defn is None:
        return None
    return {"uri": Path(defn.file.key).resolve().as_uri(), "range": _range(defn.file.text, defn.span)}


def formatting(text: str, path: str) -> list:
    """The text edits that `archsmith fmt` would make: one replacing the whole document, or none."""
    formatted = format_spec(text, path)
    if formatted == text:
        return []
    lines = text.split("\n")
    end = _position(lines, len(lines), len(lines[-1]) + 1)
    return [{"range": {"start": {"line": 0, "character": 0}, "end": end}, "newText": formatted}]


def server():
    """The pygls server of these functions; `.start_io()` speaks LSP on standard input and output.
    ImportError without pygls."""
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer
    from pygls.uris import to_fs_path

    server = LanguageServer("archsmith", "0")
    converter = server.protocol._converter

    def document(uri):
        doc = server.workspace.get_text_document(uri)
        return doc.source, to_fs_path(uri) or "<string>"  # an unsaved, untitled buffer has no path

    def publish(uri):
        text, path = document(uri)
        found = [converter.structure(d, types.Diagnostic) for d in diagnostics(text, path)]
        server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=found))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def changed(params):
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def on_hover(params: types.HoverParams):
        text = hover(*document(params.text_document.uri), params.position.line, params.position.character)
        if text is not None:
            return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text))
        return None

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def on_definition(params: types.DefinitionParams):
        found = definition(*document(params.text_document.uri), params.position.line, params.position.character)
        return converter.structure(found, types.Location) if found else None

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def on_formatting(params: types.DocumentFormattingParams):
        try:
            edits = formatting(*document(params.text_document.uri))
        except SpecError:
            return None
        return [converter.structure(e, types.TextEdit) for e in edits]

    return server
