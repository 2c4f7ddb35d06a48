"""Find, read and parse .arch files and resolve their imports into one scope per file."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import ast
from .errors import SpecError
from .parser import parse


def bundled_dir() -> Path:
    """The bundled specs: `archsmith/specs` in an installed package, `specs/` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "specs", here.parent / "specs"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("archsmith's bundled specs are missing from this installation")


class Loader:
    """Loads files once each and gives every file a scope: its own definitions plus its imports'."""

    def __init__(self):
        self.files: dict = {}  # resolved path -> SourceFile
        self._loading: list = []  # the import chain being loaded, to report cycles

    def load_path(self, path) -> ast.SourceFile:
        path = os.path.abspath(path)
        if path in self.files:
            return self.files[path]
        relative = os.path.relpath(path)
        display = path if relative.startswith("..") else relative
        return self._load(_read_text(path, display), path, display)

    def load_text(self, text: str, path: str = "<string>") -> ast.SourceFile:
        return self._load(text, os.path.abspath(path) if path != "<string>" else path, display=path)

    def _load(self, text, key, display) -> ast.SourceFile:
        file = parse(text, display)
        file.key = key
        self.files[key] = file
        self._loading.append(key)
        try:
            self._resolve(file)
        finally:
            self._loading.pop()
        return file

    def _resolve(self, file: ast.SourceFile):
        scope, own = {}, _own_definitions(file)
        for imp in file.imports:
            target = self._find(imp, file)
            if target in self._loading:
                chain = [os.path.basename(k) for k in self._loading[self._loading.index(target):]]
                raise SpecError(f"import cycle: {' -> '.join(chain + [os.path.basename(target)])}", imp.span,
                                source=file.text)
            imported = self.load_path(target)
            for name, defn in _own_definitions(imported).items():
                if name in scope and scope[name] is not defn and name not in own:
                    raise SpecError(f"`{name}` is imported twice, from {scope[name].span.path} and {defn.span.path}",
                                    imp.span, source=file.text,
                                    hint=f"rename one of them, or define `{name}` in this file: a file's own "
                                         "definitions shadow imported ones")
                scope[name] = defn
        scope.update(own)  # a file's own definitions shadow imported ones
        file.scope = scope

    def _find(self, imp: ast.Import, file: ast.SourceFile) -> str:
        name = imp.path if imp.path.endswith(".arch") else imp.path + ".arch"
        bases = []
        if getattr(file, "key", "<string>") != "<string>" and os.path.isabs(file.key):
            bases.append(os.path.dirname(file.key))
        bases.append(str(bundled_dir()))
        for base in bases:
            candidate = os.path.abspath(os.path.join(base, name))
            if os.path.isfile(candidate):
                return candidate
        raise SpecError(f"cannot find `{imp.path}` to import", imp.span, source=file.text,
                        hint="imports are looked up beside the importing file, then among the bundled specs")


def _read_text(path: str, display: str) -> str:
    """The text of a .arch file, which must be UTF-8; a file that is not is a located error."""
    if os.path.isdir(path):
        raise SpecError(f"`{display}` is a directory, not a .arch file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SpecError(f"cannot read `{display}`: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8-sig")) + 1
        span = ast.Span(display, line, column, line, column + 1)
        raise SpecError(f"`{display}` is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
                        "is not valid UTF-8", span, source=data.decode("utf-8", "replace"),
                        hint="a .arch file is text in UTF-8; is this the right file?") from None


def _own_definitions(file: ast.SourceFile) -> dict:
    out = {}
    out.update(file.blocks)
    out.update(file.layer_defs)
    out.update(file.fns)
    out.update({c.target: c for c in file.constants})
    return out


@dataclass(frozen=True)
class SpecText:
    """A spec's text under the name its errors give it, such as `<stdin>`; its imports are looked up
    beside the working directory."""
    text: str
    name: str


def resolve_spec(spec, loader: Optional[Loader] = None):
    """A path, .arch text, a `SpecText` or the name of a bundled model -> (loader, file, model name or None)."""
    loader = loader or Loader()
    if isinstance(spec, SpecText):
        return loader, loader.load_text(spec.text, spec.name), None
    if _is_file(spec):  # an existing file wins, whatever its name holds
        return loader, loader.load_path(spec), None
    if "\n" in spec or "{" in spec:
        return loader, loader.load_text(spec), None
    if spec.endswith(".arch") or os.path.sep in spec or os.path.exists(spec):
        return loader, loader.load_path(spec), None
    for path in sorted(bundled_dir().glob("*.arch")):
        file = loader.load_path(path)
        if spec in file.models:
            return loader, file, spec
    raise SpecError(f"`{spec}` is neither a .arch file nor a bundled model",
                    hint=_model_hint(spec, loader))


def _is_file(spec: str) -> bool:
    try:
        return os.path.isfile(spec)
    except (OSError, ValueError):  # too long a name, a NUL in it
        return False


def _model_hint(name, loader):
    from .errors import did_you_mean
    return (did_you_mean(name, list_bundled(loader))
            or "`archsmith list` (in Python, `archsmith.list_models()`) shows the bundled models")


def list_bundled(loader: Optional[Loader] = None) -> list:
    loader = loader or Loader()
    names = []
    for path in sorted(bundled_dir().glob("*.arch")):
        names += list(loader.load_path(path).models)
    return names
