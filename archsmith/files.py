"""Writing output files: whole or not at all, with the permissions a plain write would give."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import stat


class OutputError(OSError):
    """An output that could not be written; the message names the path the user gave."""


def write_atomic(path: str, data) -> None:
    """Write via a temporary file beside `path` and rename, so a failure or an interrupt never leaves a
    half-written file. A new file gets the mode a plain `open` would give it (0666 less the umask); a
    file replaced keeps its mode."""
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
        if os.path.isdir(target):
            raise IsADirectoryError(errno.EISDIR, "Is a directory")
        tmp = _beside(target)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any write
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
            if os.path.exists(target):
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def staging_directory(target: str) -> str:
    """A new empty directory beside `target`, to fill and then put in its place: made as `mkdir` makes
    one (0777 less the umask), since it becomes the output."""
    parent = os.path.dirname(os.path.abspath(target))
    try:
        os.makedirs(parent, exist_ok=True)
        path = _beside(target)
        os.mkdir(path, 0o777)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    return path


def replace_directory(staged: str, target: str) -> None:
    """Put the directory `staged` where `target` is: the old directory is renamed aside, the new one
    renamed in, the old one removed, with Ctrl-C held off for those renames. `target` is never a mix of
    old and new files; if the rename in fails, the old directory is put back."""
    with _signals_held():
        aside = None
        if os.path.lexists(target):
            aside = _beside(target)
            os.rename(target, aside)
        try:
            os.rename(staged, target)
        except BaseException:
            if aside is not None:
                os.rename(aside, target)
            raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _beside(target: str) -> str:
    """A new hidden name in the directory of `target`: `.name.1a2b3c4d.tmp`."""
    target = os.path.abspath(target)
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block ends (where the platform allows)."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask (Windows)
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def same_file(a: str, b: str) -> bool:
    """Whether paths `a` and `b` name one file (one that exists): through links, `..` and case."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
