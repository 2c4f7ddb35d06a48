"""Generated modules of `archsmith.build` and `archsmith.create_model`, importable by name.

Each generated source is written once to the cache directory as `m_<hash of the source>.py`, and this
package's search path includes that directory, so `archsmith.generated.m_1a2b…` imports in any
process: models pickle, `torch.save` whole and load elsewhere, and `inspect.getsource` (which
`torch.jit.script` needs) finds their classes. The directory is `$ARCHSMITH_CACHE`, else
`$XDG_CACHE_HOME/archsmith` (by default `~/.cache/archsmith`)."""
from __future__ import annotations

import hashlib
import importlib
import os

from ..files import write_atomic


def cache_dir() -> str:
    root = os.environ.get("ARCHSMITH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "archsmith")
    return os.path.join(root, "generated")


__path__.append(cache_dir())  # noqa: F821 - a package's own search path


def load(source: str):
    """The module whose source is `source`, written to the cache if it is not there yet."""
    name = "m_" + hashlib.sha256(source.encode()).hexdigest()[:20]
    path = os.path.join(cache_dir(), name + ".py")
    if not _holds(path, source):
        write_atomic(path, source)  # a reader sees the whole file or none
        importlib.invalidate_caches()
    return importlib.import_module(f"{__name__}.{name}")


def _holds(path: str, source: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read() == source
    except OSError:
        return False
