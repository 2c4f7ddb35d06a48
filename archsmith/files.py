"""Writing output files: whole or not at all."""
from __future__ import annotations

import os
import tempfile


def write_atomic(path: str, data) -> None:
    """Write via a temporary file and rename, so a failure never leaves a half-written file."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".archsmith-")
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
