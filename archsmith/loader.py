"""Find, read and parse .arch files and resolve their imports into one scope per file."""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import ast, limits
from .errors import SpecError, shorten
from .parser import parse


def bundled_dir() -> Path:
    """The bundled specs: `archsmith/specs` in an installed package, `specs/` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "specs", here.parent / "specs"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("archsmith's bundled specs are missing from this installation")


class Loader:
    """Loads files once each and gives every file a scope: its own definitions plus its imports'.

    Imports are confined: a file imports only files under the directory of the spec it was loaded
    for (the file named to `load_path`, or the working directory for text) and the bundled specs."""

    def __init__(self):
        self.files: dict = {}  # resolved path -> SourceFile
        self._loading: list = []  # the import chain being loaded, to report cycles

    def load_path(self, path) -> ast.SourceFile:
        path = os.path.abspath(path)
        return self._load_file(path, os.path.dirname(os.path.realpath(path)))

    def load_text(self, text: str, path: str = "<string>") -> ast.SourceFile:
        key = os.path.abspath(path) if path != "<string>" else path
        root = os.path.dirname(os.path.realpath(key)) if path != "<string>" else os.path.realpath(os.getcwd())
        return self._load(text, key, path, root)

    def _load_file(self, path, root) -> ast.SourceFile:
        if path in self.files:
            return self.files[path]
        relative = os.path.relpath(path)
        display = path if relative.startswith("..") else relative
        return self._load(_read_text(path, display), path, display, root)

    def _load(self, text, key, display, root) -> ast.SourceFile:
        file = parse(text, display)
        file.key, file.root = key, root
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
            target, root = self._find(imp, file)
            if target in self._loading:
                chain = [os.path.basename(k) for k in self._loading[self._loading.index(target):]]
                raise SpecError(f"import cycle: {' -> '.join(chain + [os.path.basename(target)])}", imp.span,
                                source=file.text)
            if len(self._loading) >= limits.current().imports:
                raise SpecError(f"imports nest more than {limits.current().imports} files deep", imp.span,
                                source=file.text, hint=limits.hint("imports"))
            imported = self._load_file(target, root)
            for name, defn in _own_definitions(imported).items():
                if name in scope and scope[name] is not defn and name not in own:
                    raise SpecError(f"`{name}` is imported twice, from {scope[name].span.path} and {defn.span.path}",
                                    imp.span, source=file.text,
                                    hint=f"rename one of them, or define `{name}` in this file: a file's own "
                                         "definitions shadow imported ones")
                scope[name] = defn
        scope.update(own)  # a file's own definitions shadow imported ones
        file.scope = scope

    def _find(self, imp: ast.Import, file: ast.SourceFile):
        """(path, root) of the file `imp` names: beside the importing file, then among the bundled specs,
        and only inside the root the importing file was loaded under or the bundled specs."""
        if os.path.isabs(imp.path) or imp.path.startswith("~"):
            raise SpecError(f"`{imp.path}` is an absolute path; an import names a file relative to the "
                            "importing one", imp.span, source=file.text)
        name = imp.path if imp.path.endswith(".arch") else imp.path + ".arch"
        bundled = os.path.realpath(bundled_dir())
        bases = [(os.path.dirname(file.key), file.root)] if os.path.isabs(file.key) else []
        bases.append((bundled, bundled))
        outside = None
        for base, root in bases:
            candidate = os.path.abspath(os.path.join(base, name))
            if not os.path.exists(candidate):
                continue
            real = os.path.realpath(candidate)
            if not (_inside(real, root) or _inside(real, bundled)):
                outside = outside or candidate
                continue
            if not os.path.isfile(real):
                raise SpecError(f"`{imp.path}` is not a .arch file", imp.span, source=file.text)
            return candidate, root if _inside(real, root) else bundled
        if outside is not None:
            raise SpecError(f"`{imp.path}` is outside the directories a spec may import from", imp.span,
                            source=file.text,
                            hint=f"a spec imports files under its own directory ({file.root}) and the bundled "
                                 "specs; copy the file there, or compile a spec in a directory above both")
        raise SpecError(f"cannot find `{imp.path}` to import", imp.span, source=file.text,
                        hint="imports are looked up beside the importing file, then among the bundled specs")


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _read_text(path: str, display: str) -> str:
    """The text of a .arch file, which must be UTF-8; a file that is not is a located error that does
    not show what the file holds."""
    if os.path.isdir(path):
        raise SpecError(f"`{display}` is a directory, not a .arch file")
    most = limits.current().file_bytes
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SpecError(f"`{display}` is not a regular file")
            data = f.read(most + 1)
    except OSError as e:
        raise SpecError(f"cannot read `{display}`: {e.strerror}") from None
    if len(data) > most:
        raise SpecError(f"`{display}` is larger than the limit of {most:,} bytes for a spec",
                        ast.Span(display, 1, 1, 1, 1), hint=limits.hint("file_bytes"), quote=False)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8-sig", "replace")) + 1
        span = ast.Span(display, line, column, line, column + 1)
        raise SpecError(f"`{display}` is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
                        "is not valid UTF-8", span, quote=False,
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
    if "\n" in spec:
        return loader, loader.load_text(spec), None
    if spec.endswith(".arch") or os.path.sep in spec or "/" in spec:
        return loader, loader.load_path(spec), None
    if not re.fullmatch(r"[\w.\-]+", spec):  # one line of .arch text, such as `X = [1, 2]`
        return loader, loader.load_text(spec), None
    path = bundled_index().get(spec)
    if path is not None:
        return loader, loader.load_path(path), spec
    raise SpecError(f"`{shorten(spec)}` is neither a .arch file nor a bundled model",
                    hint=_model_hint(spec))


def _is_file(spec: str) -> bool:
    try:
        return os.path.isfile(spec)
    except (OSError, ValueError):  # too long a name, a NUL in it
        return False


def _model_hint(name):
    from .errors import did_you_mean
    return (did_you_mean(name, list_bundled())
            or "`archsmith list` (in Python, `archsmith.list_models()`) shows the bundled models")


def list_bundled() -> list:
    """The bundled models' names, by file name, then in their file's order."""
    return list(bundled_index())


_MODEL_LINE = re.compile(r"^model\s+(\w+)", re.M)  # the bundled specs are formatted: a model opens its line
_bundled_index: tuple = (None, {})  # (the bundled files' `file_stamp`s, {model: path})


def bundled_index() -> dict:
    """{bundled model name: its spec's path}, from a scan of the files' `model` lines, kept until a
    file changes: naming a bundled model parses only the file that defines it."""
    global _bundled_index
    paths = sorted(bundled_dir().glob("*.arch"))
    stamps = [(p, file_stamp(p)) for p in paths]
    if _bundled_index[0] != stamps:
        index = {}
        for path in paths:
            for name in _MODEL_LINE.findall(path.read_text(encoding="utf-8")):
                index.setdefault(name, path)
        _bundled_index = (stamps, index)
    return _bundled_index[1]


def file_stamp(path) -> Optional[tuple]:
    """A file's modification time and size, to tell that it changed since; None where it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
