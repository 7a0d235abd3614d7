"""Where output goes: progress, logs and errors on stderr; tables and data on stdout.

Consoles are created on first use so importing the CLI does not import rich.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@cache
def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@cache
def stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def mute() -> None:
    """Silence tables, progress, info and warnings in this process; errors still print. For the
    secondary ranks of a multi-process training, whose rank 0 reports for all of them."""
    stderr().quiet = True
    stdout().quiet = True


def info(message: str) -> None:
    stderr().print(message)


def warn(message: str) -> None:
    from rich.markup import escape

    stderr().print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)


def error(message: str) -> None:
    from rich.markup import escape

    console = stderr()
    quiet, console.quiet = console.quiet, False  # a muted process still reports its own failure
    try:
        console.print(f"[bold red]error:[/bold red] [red]{escape(message)}[/red]", soft_wrap=True)
    finally:
        console.quiet = quiet


class NullProgress:
    """Stands in for a progress bar when progress is disabled (library use, tests)."""

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        pass

    def advance(self, *args: object, **kwargs: object) -> None:
        pass


def progress(enabled: bool = True):
    """A rich progress bar on stderr with a bar, counts and an ETA (or a no-op one)."""
    if not enabled:
        return NullProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Progress(Progress):
        """A bar that vanishes when the work fails: the error is then the only line left."""

        def __exit__(self, exc_type, exc, tb):  # type: ignore[no-untyped-def]
            if exc_type is not None:
                self.live.transient = True
            return super().__exit__(exc_type, exc, tb)

    return _Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr(),
        transient=False,
    )


def table(title: str | None, columns: list[str], rows: list[list[object]], no_wrap: tuple[str, ...] = ()) -> None:
    """Print a rich table of plain values to stdout; ``no_wrap`` columns are never broken."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold", no_wrap=c in no_wrap)
    for r in rows:
        t.add_row(*[("" if v is None else str(v)) for v in r])
    stdout().print(t)
