"""Safe outputs: locked, checked before the work, written beside the target and renamed into place.

Three promises every command that writes keeps:

* **Never lose a user's data.** An existing output is replaced only with ``--force``, and only when
  epx wrote it and it is of the same kind. Directories that epx writes carry a small marker,
  ``.epx-output.json``, naming their kind and every path epx put there; anything else inside (a
  user's ``analysis.R``, a ``labels/`` folder) makes ``--force`` refuse, naming the first such
  path. Nested epx outputs (a dataset inside a demo study, a split table, a submission zip, a plot)
  count as epx's own. An output that writes others inside itself while it is being built (an
  ablation's runs) lists their files in its own marker: they are its own paths, replaced with it. Single files are recognised by their content (a split table's header, a
  submission zip's one member, a PNG's ``Software: epx`` tag).
* **One writer at a time.** The output is locked (``filelock``) from the check to the rename; a
  second command writing the same output fails at once. The rename never replaces an output that
  appeared meanwhile unless ``--force`` was given, and then only an epx output of the same kind.
* **Nothing partial.** Work happens in a temporary sibling (same file system, so the rename is
  atomic); a failure, an interrupt or a full disk removes it, and the directories epx created for it.
  Whether the location is writable is checked before the work starts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from epx._version import __version__
from epx.errors import EpxError, OutputExistsError

MARKER = ".epx-output.json"
LOCK_SUFFIX = ".epx-lock"
DIR_KINDS = {
    "dataset": "a dataset (epx featurize, epx import)",
    "run": "a run (epx train)",
    "stack": "a stack (epx stack)",
    "demo": "a demo study (epx demo)",
    "prediction": "predictions (epx predict)",
    "ablation": "an ablation (epx ablate)",
    "explanation": "an explanation (epx explain)",
    "personalize": "personalized predictions (epx personalize)",
}
SPLIT_HEADER = "gene_id\tcell_line\tchrom\tfold\trole"  # == "\t".join(epx.split.SPLIT_COLUMNS), tested
PNG_SOFTWARE = "epx"
_APPEARED = "appeared while epx was working; left as it is (pass --force to replace it)"


class OutputError(EpxError):
    """An output must not be written: foreign files in it, another writer, a wrong kind."""


class OutputEnvironmentError(OutputError):
    """The file system refused: read-only, full, missing or not a directory. Exit 1, like any
    other failure of the environment (an EpxError about the user's input exits 2)."""

    exit_code = 1


def _is_split_table(p: Path) -> bool:
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            return fh.readline().rstrip("\r\n") == SPLIT_HEADER
    except OSError:
        return False


def _is_submission_zip(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as zf:
            return zf.namelist() == ["gex_predicted.csv"]
    except (OSError, zipfile.BadZipFile):
        return False


def _is_epx_png(p: Path) -> bool:
    """A PNG whose tEXt chunk says ``Software: epx ...`` (matplotlib writes it from ``metadata``)."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head


def _is_report(p: Path) -> bool:
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith("# epx report")
    except OSError:
        return False


FILE_KINDS: dict[str, Callable[[Path], bool]] = {
    "split": _is_split_table,
    "submission": _is_submission_zip,
    "plot": _is_epx_png,
    "report": _is_report,
}


def png_metadata() -> dict[str, str]:
    """``savefig(..., metadata=png_metadata())`` marks a plot as epx's, so --force may replace it."""
    return {"Software": f"{PNG_SOFTWARE} {__version__}"}


def check_plot_path(path: str | Path) -> Path:
    """Before the work: a PNG path epx may write (a user's file there is refused)."""
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise OutputError("plots are PNG files; give a path ending in .png", path=p)
    return check_output(p, True, "plot")


def save_figure(fig: Any, path: str | Path) -> None:
    """Write a matplotlib figure as an epx PNG, atomically; replaces only a plot epx wrote. Closes it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_file(path, "plot", force=True, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, format="png", metadata=png_metadata())
    finally:
        plt.close(fig)


def read_marker(directory: Path) -> dict | None:
    try:
        data = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "kind" in data else None


def _write_marker(directory: Path, kind: str) -> None:
    paths = sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))
    record = {"kind": kind, "epx_version": __version__, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "paths": paths}
    (directory / MARKER).write_text(json.dumps(record, indent=1) + "\n")


def epx_kind(p: Path) -> str | None:
    """What epx output ``p`` is (``"run"``, ``"split"``, ...), or None when epx did not write it."""
    if p.is_symlink():
        return None
    if p.is_dir():
        marker = read_marker(p)
        return marker["kind"] if marker else None
    if p.name.endswith(LOCK_SUFFIX):
        return "lock"
    return next((k for k, check in FILE_KINDS.items() if check(p)), None)


def first_foreign(directory: Path) -> Path | None:
    """The first path in an epx output directory that epx did not put there, or None.

    Strict on purpose: another epx output nested inside (a run written into a demo study, a
    submission zip in a stack) is not this output's to delete either, unless this output's marker
    lists it: outputs built inside it before it was marked (an ablation's runs) are its own."""
    marker = read_marker(directory)
    if marker is None:
        return next(iter(sorted(directory.iterdir())), directory)
    known = set(marker.get("paths", [])) | {MARKER}
    return _foreign_below(directory, directory, known)


def _foreign_below(path: Path, root: Path, known: set[str]) -> Path | None:
    for child in sorted(path.iterdir()):
        if str(child.relative_to(root)) not in known:
            return child
        if child.is_dir() and not child.is_symlink() and (inner := _foreign_below(child, root, known)) is not None:
            return inner
    return None


def register(directory: Path, path: Path) -> None:
    """Add a file epx wrote later into an epx output (``explain``'s plot in a run) to its marker,
    so that ``--force`` may replace the output with it."""
    marker = read_marker(directory)
    if marker is None:
        return
    rel = str(path.resolve().relative_to(directory.resolve()))
    if rel not in marker["paths"]:
        marker["paths"] = sorted([*marker["paths"], rel])
        tmp = directory / f".{MARKER}.tmp"
        tmp.write_text(json.dumps(marker, indent=1) + "\n")
        os.replace(tmp, directory / MARKER)


def refuse_overlap(output: str | Path, inputs: Sequence[str | Path]) -> None:
    """Refuse an output that is one of the inputs, inside one, or contains one: replacing it
    would destroy what the command reads."""
    out = Path(output).resolve()
    for item in inputs:
        src = Path(item).resolve()
        if out == src or src in out.parents or out in src.parents:
            how = "is" if out == src else ("is inside" if src in out.parents else "contains")
            raise OutputError(f"{how} the input {item}; write the output somewhere else", path=output)


def _refuse_special(p: Path) -> None:
    resolved = p.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path(resolved.anchor):
        raise OutputError("is the current directory (or contains it); give a new path such as -o results/run1", path=p)


def check_output(path: str | Path, force: bool, kind: str) -> Path:
    """Refuse an output that must not be written; return it as a Path. Call before the work.

    ``kind`` is a directory kind (:data:`DIR_KINDS`) or a file kind (:data:`FILE_KINDS`). Without
    ``force`` an existing output is refused (an empty directory is fine). With ``force`` it must be
    an epx output of the same kind with nothing foreign inside. The location must be writable.
    """
    p = Path(path)
    is_dir = kind in DIR_KINDS
    if not is_dir and kind not in FILE_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    _refuse_special(p)
    if p.is_symlink():
        raise OutputError(f"is a symbolic link (to {os.readlink(p)}); give the real path: epx replaces outputs, "
                          "never links", path=p)
    if p.exists():
        if is_dir and not p.is_dir():
            raise OutputError("is a file; give a directory path for this output (--force never replaces a file)", path=p)
        if not is_dir and p.is_dir():
            raise OutputError("is a directory; give a file path for this output (--force never replaces a directory)", path=p)
        if not (is_dir and not any(p.iterdir())):
            _check_replaceable(p, kind, force)
    _check_writable(_existing_ancestor(p.parent), p)
    return p


def _check_replaceable(p: Path, kind: str, force: bool) -> None:
    found = epx_kind(p)
    if found is None:
        hint = f" (first entry: {first_foreign(p)})" if p.is_dir() and not p.is_symlink() else ""
        raise OutputError(f"exists and was not written by epx{hint}; --force only replaces epx's own outputs: "
                          "choose another path", path=p)
    if found != kind:
        what = DIR_KINDS.get(found, f"an epx {found}")
        raise OutputError(f"is {what}, not {DIR_KINDS.get(kind, 'an epx ' + kind)}; --force only replaces an output "
                          "of the same kind: choose another path", path=p)
    if not force:
        raise OutputExistsError(p)
    if p.is_dir():
        foreign = first_foreign(p)
        if foreign is not None:
            raise OutputError(f"holds {foreign.relative_to(p)}, which epx did not write; --force would delete it: "
                              "move it away or choose another path", path=p)


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable(directory: Path, target: Path) -> None:
    if not directory.is_dir():
        raise OutputEnvironmentError(f"cannot create it: {directory} is not a directory", path=target)
    try:
        fd, probe = tempfile.mkstemp(prefix=".epx-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputEnvironmentError(f"cannot write in {directory}: {exc.strerror or exc}", path=target) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[list[Path]]:
    """Create the missing parents, lock the target, yield the parents created (removed on failure)."""
    from filelock import FileLock, Timeout

    created: list[Path] = []
    parent = target.parent
    missing = []
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputEnvironmentError(f"cannot create {d}: {exc.strerror or exc}", path=target) from None
        created.append(d)
    lock_path = target.parent / f".{target.name}{LOCK_SUFFIX}"
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        _remove_created(created)
        raise OutputError("another epx command is writing this output right now; wait for it to finish "
                          f"(lock {lock_path})", path=target) from None
    except OSError as exc:
        _remove_created(created)
        raise OutputEnvironmentError(f"cannot lock it: {exc.strerror or exc}", path=target) from None
    _remove_stale_temporaries(target)
    ok = False
    try:
        yield created
        ok = True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # while still holding it: the lock file is epx's, not the user's
        lock.release()
        if not ok:
            _remove_created(created)


def _remove_stale_temporaries(target: Path) -> None:
    """Temporaries a killed epx left beside ``target`` (named ``.NAME.epx-PID-*.tmp``): while we
    hold the lock no other epx writes this output, so they are debris, and they are epx's."""
    for stale in target.parent.glob(f".{glob_escape(target.name)}.epx-*.tmp"):
        with contextlib.suppress(OSError):
            shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.epx-{os.getpid()}-"


def _remove_created(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


def _as_output_error(exc: OSError, target: Path, tmp: Path) -> BaseException:
    """An OSError while writing: name the output when it was the output that failed."""
    name = str(exc.filename or "")
    ours = not name or name.startswith(str(tmp)) or exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG)
    if ours:
        return OutputEnvironmentError(f"cannot write it: {exc.strerror or exc}; nothing was written", path=target)
    return exc


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; on success mark it and swap it into place."""
    target = Path(path)
    if kind not in DIR_KINDS:
        raise ValueError(f"unknown directory kind {kind!r}")
    with _locked(target):
        check_output(target, force, kind)
        existed = target.exists()
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
        try:
            try:
                yield tmp
                _write_marker(tmp, kind)
                os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; results follow the umask
            except OSError as exc:
                raise _as_output_error(exc, target, tmp) from exc
            _swap_dir(tmp, target, kind, force, existed)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _swap_dir(tmp: Path, target: Path, kind: str, force: bool, existed: bool) -> None:
    if target.exists() or target.is_symlink():
        if not existed and not force:
            raise OutputError(_APPEARED, path=target)
        if any(target.iterdir()) if target.is_dir() else True:
            _check_replaceable(target, kind, force=True)  # again: it may have changed meanwhile
        backup = target.with_name(f"{_temp_prefix(target)}old.tmp")
        os.replace(target, backup)
        os.replace(tmp, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.rename(tmp, target)


@contextlib.contextmanager
def atomic_file(path: str | Path, kind: str, force: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds."""
    target = Path(path)
    if kind not in FILE_KINDS:
        raise ValueError(f"unknown file kind {kind!r}")
    with _locked(target):
        check_output(target, force, kind)
        existed = target.exists()
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=suffix + ".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            try:
                yield tmp
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results follow the umask
            except OSError as exc:
                raise _as_output_error(exc, target, tmp) from exc
            if target.exists():
                if not existed and not force:
                    raise OutputError(_APPEARED, path=target)
                _check_replaceable(target, kind, force=True)
                os.replace(tmp, target)
            else:
                _rename_no_clobber(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()


def _rename_no_clobber(tmp: Path, target: Path) -> None:
    """Rename that fails, instead of replacing, when ``target`` appeared in the meantime."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise OutputError(_APPEARED, path=target) from None
    except OSError:  # file systems without hard links
        if target.exists():
            raise OutputError(_APPEARED, path=target) from None
        os.replace(tmp, target)
        return
    tmp.unlink()
