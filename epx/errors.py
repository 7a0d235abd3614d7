"""The error hierarchy: every expected failure is an EpxError with a one-line, actionable message.

The CLI prints ``str(err)`` in red on stderr and exits 2; a traceback only with ``--debug``.
"""

from __future__ import annotations

from pathlib import Path


class EpxError(Exception):
    """Base class: a problem with the user's input or request, not a bug in epx."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class InputFileError(EpxError):
    """A file is missing, unreadable or malformed."""


class GeneTableError(InputFileError):
    """A gene table cannot be parsed into the canonical gene table."""


class LabelError(InputFileError):
    """An expression label file is malformed or names genes that are not in the gene table."""


class ManifestError(InputFileError):
    """A track manifest row is malformed or points at a missing file."""


class TrackError(InputFileError):
    """A bigWig or BED track is malformed or does not match the genes."""


class SplitError(EpxError):
    """Split options are inconsistent or leave a fold empty."""


class PluginError(EpxError):
    """A model plugin is unknown, broken, or does not fit the request."""


class DatasetError(EpxError):
    """A dataset directory is missing, incomplete or inconsistent."""


class OutputExistsError(EpxError):
    """Refuses to overwrite a user's results without --force."""

    def __init__(self, path: str | Path):
        super().__init__("already exists; pass --force to overwrite it", path=path)


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise an InputFileError naming it when it is not a file."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} not found", path=p)
    if not p.is_file():
        raise InputFileError(f"{what} is not a regular file", path=p)
    return p


def describe_os_error(err: OSError) -> str:
    """One line for a failure of the environment (read-only or full disk, missing directory)."""
    reason = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
    where = str(err.filename) if err.filename else ""
    if err.filename2:
        where += f" -> {err.filename2}"
    return f"{where}: {reason}" if where else reason
