"""``epx --help`` without building every command.

Typer builds the whole click tree before it prints anything: for the root help that means
evaluating every command's annotations (about a third of ``epx --help``). The root help needs only
the root options and each command's name and short help, so this builds the root group from a
shallow copy of the app and adds name-and-help placeholders for the commands; Typer and click
format it, so the text is theirs (``tests/test_cli_vocabulary.py`` compares it with Typer's).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any


def _value(x: Any) -> Any:
    """Typer's ``Default(...)`` placeholders hold the value they stand for."""
    return x.value if type(x).__name__ == "DefaultPlaceholder" else x


def root_help_command(app: Any) -> Any:
    """The root click group with placeholder subcommands (name, short help, help only)."""
    import typer.core
    import typer.main

    shallow = copy.copy(app)
    shallow.registered_commands = []
    shallow.registered_groups = []
    group = typer.main.get_command(shallow)
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.lower().replace("_", "-")
        group.add_command(typer.core.TyperCommand(
            name=name, short_help=_value(info.short_help), hidden=bool(_value(info.hidden)),
            help=_value(info.help) or inspect.getdoc(info.callback)), name)
    for info in app.registered_groups:
        sub = info.typer_instance
        name = _value(info.name) or _value(sub.info.name)
        group.add_command(typer.core.TyperCommand(
            name=name, short_help=_value(info.short_help) or _value(sub.info.short_help),
            hidden=bool(_value(info.hidden) or _value(sub.info.hidden)),
            help=_value(info.help) or _value(sub.info.help)), name)
    return group
