"""Write files so that nothing is ever half-written: write beside, then rename into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from minist.errors import MinistError


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, in one line, when ``path`` cannot be written (before any work starts)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise MinistError(f"{path}: is a directory, expected a file name")
    if not parent.is_dir():
        raise MinistError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MinistError(f"{path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise MinistError(f"{path}: file exists and is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".part"):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception (Ctrl-C included) the temporary file is removed and ``path`` is untouched.
    """
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent or ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
