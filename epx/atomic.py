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

from epx.errors import OutputExistsError


def check_output(path: str | Path, force: bool) -> Path:
    """Refuse an existing output unless ``force``; return the path."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(p)
    return p


@contextlib.contextmanager
def atomic_file(path: str | Path, force: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    target = check_output(path, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; swap it into place on success."""
    target = check_output(path, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp_path
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
