"""The bundled models' figures for `archsmith list`: family (the spec file it comes from), input,
parameters and MACs. Elaborating every bundled model takes seconds, so the figures are cached in the
user's cache directory under a key that changes with any bundled spec and any file of archsmith."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .files import write_atomic
from .loader import bundled_dir


def bundled_figures() -> dict:
    """Model name -> {"family", "input", "params", "macs"} for every bundled model."""
    key, path = _key(), _cache_path()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached["key"] == key:
            return cached["models"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or an unreadable one: measure again
    figures = _measure()
    try:
        write_atomic(str(path), json.dumps({"key": key, "models": figures}, sort_keys=True))
    except OSError:
        pass  # a cache that cannot be written costs only time
    return figures


def _measure() -> dict:
    from .compiler import bundled_models
    from .passes import mac_count, parameter_count
    return {m.name: {"family": family, "input": list(m.input_shape), "params": parameter_count(m.graph),
                     "macs": mac_count(m.graph)} for family, m in bundled_models()}


def _key() -> str:
    """A digest of what the figures follow from: the bundled specs and archsmith's own source."""
    package = Path(__file__).resolve().parent
    files = sorted(bundled_dir().glob("*.arch")) + sorted(package.rglob("*.py")) + sorted(package.rglob("*.lark"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "archsmith" / "models.json"
