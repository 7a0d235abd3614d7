"""Atomic outputs: results are written to a temporary sibling and renamed into place.

An interrupted or failed command therefore never leaves a half-written file or directory, and an
existing result is only replaced when the user passed ``--force``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from epx.errors import EpxError, OutputExistsError


def check_output(path: str | Path, force: bool, kind: str = "any") -> Path:
    """Refuse an existing output unless ``force``; return the path.

    ``kind`` ("file" or "dir") also refuses, even with ``force``, to replace a directory by a
    file or a file by a directory: that is almost always a mistyped path, and would lose data.
    """
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(p)
    if kind == "file" and p.is_dir():
        raise EpxError("is a directory; give a file path for this output (--force never replaces a directory)", path=p)
    if kind == "dir" and p.exists() and not p.is_dir():
        raise EpxError("is a file; give a directory path for this output (--force never replaces a file)", path=p)
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path, force: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    target = check_output(path, force, kind="file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; results follow the umask
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; swap it into place on success."""
    target = check_output(path, force, kind="dir")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o777 & ~_umask())  # mkdtemp creates 0700; results follow the umask
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            if backup.exists():
                shutil.rmtree(backup) if backup.is_dir() else backup.unlink()
            os.replace(target, backup)
            os.replace(tmp_path, target)
            shutil.rmtree(backup) if backup.is_dir() else backup.unlink()
        else:
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)
