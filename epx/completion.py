"""Shell completion: option values from light sources, and a light path that answers a TAB
without building the Typer command tree.

Completion re-runs ``epx`` on every TAB. Through Typer, one TAB builds every command, then parses
the line with Typer's pydantic-based coercion (about 3x the cost of ``import typer``). ``answer``
reads the command line the shell passes, resolves the subcommand from ``app``'s registered
callbacks (evaluating only that command's annotations) and prints what Typer would print, in
Typer's format for bash, zsh and fish; anything it does not recognise falls back to Typer.

Value sources stay light too: entry-point names and a plugin's spec module (no model code),
``dataset.json``, ``config.json``, manifest and gene-table text (no pandas).

Typer's own resolution loses positional arguments during completion: click stops parsing at the
option whose value is being completed (``--train-cells <TAB>`` has none yet), before it assigns
positionals, so ``ctx.params["dataset"]`` is None. The completers therefore read the command line
themselves (``line_params``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

# -- value completers (called by Typer and by the light path) ----------------------------------


def _last_item(incomplete: str) -> tuple[str, str]:
    """Split ``X1,X`` into the already-typed prefix ``X1,`` and the part being completed ``X``."""
    head, sep, tail = incomplete.rpartition(",")
    return (head + sep, tail)


def _complete_from(values: list[str], incomplete: str) -> list[str]:
    head, tail = _last_item(incomplete)
    taken = set(head.split(",")) if head else set()
    return [head + v for v in values if v.startswith(tail) and v not in taken]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _model_entry_points() -> dict[str, str]:
    """``epx.models`` entry points (name -> "module:attr") read from the ``entry_points.txt`` of
    the distributions on ``sys.path``: importing importlib.metadata alone costs more than a TAB may."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for entry in sys.path:
        try:
            names = [n for n in os.listdir(entry or ".") if n.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        for name in names:
            dist = name.rpartition(".")[0].split("-")[0].lower().replace("_", "-").replace(".", "-")
            if dist in seen:  # the first distribution of a name on sys.path wins, as importlib.metadata
                continue
            seen.add(dist)
            try:
                text = Path(entry or ".", name, "entry_points.txt").read_text()
            except OSError:
                continue
            section = None
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]").strip()
                elif section == "epx.models" and "=" in line and not line.startswith(("#", ";")):
                    key, _, value = line.partition("=")
                    found.setdefault(key.strip(), value.strip())
    if not found:  # eggs, zips and other layouts: the slow, general way
        from epx.models.plugins import _entry_points

        found = {ep.name: ep.value for ep in _entry_points()}
    return found


def complete_model(incomplete: str) -> list[str]:
    return [n for n in sorted(_model_entry_points()) if n.startswith(incomplete)]


def _sources(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Cell lines and assays named by a dataset directory or manifest already on the command line."""
    cells: list[str] = []
    assays: list[str] = []
    for key in ("dataset", "input", "run_dir"):
        value = params.get(key)
        if value and (Path(str(value)) / "dataset.json").is_file():
            meta = _read_json(Path(str(value)) / "dataset.json")
            cells += list(meta.get("cell_lines", []))
            assays += list(meta.get("assays", []))
    manifest = params.get("manifest")
    if manifest and Path(str(manifest)).is_file():
        import csv

        try:
            with open(str(manifest), newline="") as fh:
                rows = [r for r in fh if r.strip() and not r.startswith("#")]
            sep = "\t" if rows and "\t" in rows[0] else ","
            for row in csv.DictReader(rows, delimiter=sep):
                cells.append(row.get("cell_line") or row.get("cell") or "")
                assays.append(row.get("assay") or "")
        except OSError:
            pass
    for item in params.get("labels") or []:
        cells.append(str(item).split("=", 1)[0])
    return (list(dict.fromkeys(c for c in cells if c)), list(dict.fromkeys(a for a in assays if a)))


def complete_cell(ctx: Any, incomplete: str) -> list[str]:
    return _complete_from(_sources(line_params(ctx))[0], incomplete)


def complete_assay(ctx: Any, incomplete: str) -> list[str]:
    return _complete_from(_sources(line_params(ctx))[1], incomplete)


def complete_run_cell(ctx: Any, incomplete: str) -> list[str]:
    """Cell lines ``epx submit`` accepts for a run, stack or prediction directory: its unseen cell
    lines first, then the rest of its dataset's; never one it trained on (submit refuses those)."""
    run = line_params(ctx).get("run_dir")
    unseen: list[str] = []
    others: list[str] = []
    trained: set[str] = set()
    configs = [Path(str(run))] if run else []
    while configs:  # a stack names its runs; a run names its dataset
        config = _read_json(configs.pop(0) / "config.json")
        unseen += [*config.get("predict_cells", []), *config.get("cell_lines", [])]
        trained |= set(config.get("train_cells", []))
        if config.get("dataset"):
            others += _sources({"dataset": config["dataset"]})[0]
        configs += [Path(str(r)) for r in config.get("run_dirs") or config.get("runs", [])]
    return [c for c in dict.fromkeys([*unseen, *others]) if c.startswith(incomplete) and c not in trained]


def complete_param(ctx: Any, incomplete: str) -> list[str]:
    """``key=`` for each parameter of the chosen ``--model``, from its spec (no model code)."""
    model = line_params(ctx).get("model")
    value = _model_entry_points().get(str(model)) if model else None
    if not value:
        return []
    import importlib

    module, _, attr = value.partition(":")
    try:
        spec = importlib.import_module(module.strip())
        for part in attr.strip().split(".") if attr.strip() else []:
            spec = getattr(spec, part)
        spec = spec() if callable(spec) else spec
        params = dict(getattr(spec, "params", {}))
    except Exception:  # noqa: BLE001 - a broken plugin completes nothing
        return []
    return [f"{k}=" for k in params if f"{k}=".startswith(incomplete)]


_CHROM_HEADERS = ("chrom", "chr", "chromosome", "seqname", "seqnames")
_MAX_TABLE_LINES = 2_000_000


def _table_chroms(path: Path) -> list[str]:
    """Chromosome column of a gene or split table (ML4G TSV, BED, GTF, TSV with a chrom column)."""
    import gzip
    import itertools

    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:  # type: ignore[operator]
            lines = (ln for ln in itertools.islice(fh, _MAX_TABLE_LINES) if ln.strip() and not ln.startswith("#"))
            first = next(lines, "")
            sep = "\t" if "\t" in first else ","
            header = [h.strip().lower() for h in first.rstrip("\n").split(sep)]
            column = next((header.index(h) for h in _CHROM_HEADERS if h in header), None)
            if column is None:
                column = next((i for i, h in enumerate(header) if h.startswith(("chrom_", "chr_"))), None)
            rows = lines if column is not None else itertools.chain([first], lines)
            col = 0 if column is None else column
            seen = dict.fromkeys(parts[col].strip() for parts in (r.split(sep) for r in rows) if len(parts) > col)
    except (OSError, UnicodeDecodeError, EOFError, ValueError):
        return []
    return [c for c in seen if c and len(c) <= 32]


def _chroms(params: dict[str, Any]) -> list[str]:
    """Chromosomes of the dataset or gene table on the command line, in karyotype order."""
    from epx.io.chroms import canonical_chrom, chrom_sort_key

    found: list[str] = []
    for key in ("dataset", "input"):
        value = params.get(key)
        if not value:
            continue
        path = Path(str(value))
        if path.is_file():
            found += _table_chroms(path)
            continue
        meta = _read_json(path / "dataset.json")
        listed = meta.get("chroms") or meta.get("chromosomes")
        if listed:
            found += list(listed)
        elif (path / "holdout.tsv").is_file():
            found += _table_chroms(path / "holdout.tsv")
        else:
            tables = [g.get("path") for g in meta.get("fingerprint", {}).get("genes", []) if isinstance(g, dict)]
            tables = tables or [meta.get("source", {}).get("annotation", {}).get("path")]
            for table in tables:
                if table and Path(table).is_file():
                    found += _table_chroms(Path(table))
    names = {canonical_chrom(c) for c in found}
    try:
        return sorted(names, key=chrom_sort_key)
    except TypeError:
        return sorted(names)


def complete_chroms(ctx: Any, incomplete: str) -> list[str]:
    return _complete_from(_chroms(line_params(ctx)), incomplete)


# -- the command line being completed ----------------------------------------------------------


class _Param:
    """One parameter of a command, read from its annotation (plain class: dataclasses cost ~1 ms each to define)."""

    def __init__(self, name: str, option: bool, opts: list[str], secondary: list[str] | None = None,
                 flag: bool = False, nargs: int = 1, multiple: bool = False, hidden: bool = False,
                 help: str | None = None, completer: Any = None, choices: tuple[str, ...] | None = None) -> None:
        self.name, self.option, self.opts, self.secondary = name, option, opts, secondary or []
        self.flag, self.nargs, self.multiple, self.hidden = flag, nargs, multiple, hidden
        self.help, self.completer, self.choices = help, completer, choices


class _Node:
    """A command or group, resolved from the Typer app without building click objects."""

    def __init__(self, params: list[_Param], commands: dict[str, tuple[str | None, Any]] | None = None) -> None:
        self.params = params
        self.commands = commands  # a group's: name -> (short help, Typer app or callback)


class LightContext:
    """What completers read from a click context: the parameters given so far."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params


_HELP = _Param(name="help", option=True, opts=["--help", "-h"], flag=True, help="Show this message and exit.")


def _params_of(callback: Any) -> list[_Param]:
    import typing

    from typer.models import ArgumentInfo, OptionInfo

    hints = typing.get_type_hints(callback, include_extras=True)
    out = []
    for name, hint in hints.items():
        if name == "return" or typing.get_origin(hint) is not typing.Annotated:
            continue
        base, info = typing.get_args(hint)[0], typing.get_args(hint)[1]
        optional = [a for a in typing.get_args(base) if a is not type(None)]
        if type(None) in typing.get_args(base) and len(optional) == 1:
            base = optional[0]
        origin = typing.get_origin(base)
        literal = typing.get_args(base) if origin is typing.Literal else None
        nargs = len(typing.get_args(base)) if origin is tuple else 1
        is_list = origin is list
        if isinstance(info, OptionInfo):
            # In Annotated, Option("--name", "-n") keeps its first name in `default` (Typer moves it).
            first = [info.default] if info.default is not ... else []
            decls = [d for d in (*first, *(info.param_decls or ())) if d]
            if not decls:
                decls = ["--" + name.replace("_", "-")]
                if base is bool:
                    decls = [f"--{name.replace('_', '-')}/--no-{name.replace('_', '-')}"]
            opts, secondary = [], []
            for d in decls:
                first, slash, second = d.partition("/")
                opts.append(first.strip())
                if slash:
                    secondary.append(second.strip())
            out.append(_Param(name=name, option=True, opts=opts, secondary=secondary,
                              flag=base is bool, nargs=nargs, multiple=is_list,
                              hidden=bool(info.hidden), help=info.help, completer=info.autocompletion,
                              choices=literal))
        elif isinstance(info, ArgumentInfo):
            out.append(_Param(name=name, option=False, opts=[], nargs=-1 if is_list else nargs,
                              completer=info.autocompletion, choices=literal))
    return out


def _value(x: Any) -> Any:
    """Typer's ``Default(...)`` placeholders hold the value they stand for."""
    return x.value if type(x).__name__ == "DefaultPlaceholder" else x


def _short_help(info: Any) -> str | None:
    """As click's ``get_short_help_str``: the short help, else the help's start, cut at 45 characters."""
    import inspect

    short = _value(info.short_help)
    if short:
        return inspect.cleandoc(short).strip()
    text = _value(info.help) or (info.callback.__doc__ if info.callback else None)
    if not text:
        return None
    from typer._click.utils import make_default_short_help

    return make_default_short_help(inspect.cleandoc(text), 45).strip() or None


def _command_name(info: Any) -> str:
    return info.name or info.callback.__name__.lower().replace("_", "-")


def _group(typer_app: Any, root: bool) -> _Node:
    params = _params_of(typer_app.registered_callback.callback) if typer_app.registered_callback else []
    if root and _value(typer_app._add_completion):
        params += [
            _Param(name="install_completion", option=True, opts=["--install-completion"], flag=True,
                   help="Install completion for the current shell."),
            _Param(name="show_completion", option=True, opts=["--show-completion"], flag=True,
                   help="Show completion for the current shell, to copy it or customize the installation."),
        ]
    commands: dict[str, tuple[str | None, Any]] = {}
    for info in typer_app.registered_commands:
        if not _value(info.hidden):
            commands[_command_name(info)] = (_short_help(info), info.callback)
    for info in typer_app.registered_groups:
        sub = info.typer_instance
        name = _value(info.name) or _value(sub.info.name)
        if not name or _value(info.hidden) or _value(sub.info.hidden):
            raise _Unsure
        commands[name] = (_value(info.short_help) or _value(sub.info.short_help), sub)
    return _Node(params=[*params, _HELP], commands=commands)


class _Unsure(Exception):
    """The light path cannot mirror Typer for this line: let Typer answer."""


def _split_words(text: str) -> list[str]:
    import shlex

    lex = shlex.shlex(text, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    out = []
    try:
        for token in lex:
            out.append(token)
    except ValueError:
        out.append(lex.token)
    return out


def completion_args(shell: str) -> tuple[list[str], str]:
    """The words before the cursor and the word being completed, as Typer's classes read them."""
    if shell == "bash":
        words = _split_words(os.environ["COMP_WORDS"])
        cword = int(os.environ["COMP_CWORD"])
        return words[1:cword], (words[cword] if cword < len(words) else "")
    line = os.environ.get("_TYPER_COMPLETE_ARGS", "")
    words = _split_words(line)[1:]
    if words and not line.endswith(" "):
        return words[:-1], words[-1]
    return words, ""


def _start_of_option(value: str) -> bool:
    return bool(value) and not value[0].isalnum() and value[0] == "-"


class _Resolved:
    def __init__(self, node: _Node, params: dict[str, Any], given: set[str], pending: _Param | None,
                 positionals: list[str]) -> None:
        self.node, self.params, self.given = node, params, given
        self.pending = pending  # the option whose value is being completed
        self.positionals = positionals


def _resolve(app: Any, args: list[str]) -> _Resolved:
    node = _group(app, root=True)
    words = list(args)
    while node.commands is not None:  # a group: its options are flags, then a subcommand
        flags: set[str] = set()
        while words and _start_of_option(words[0]):
            opt = _find(node, words[0])
            if opt is None or not opt.flag:
                raise _Unsure
            flags.add(opt.name)
            words.pop(0)
        if not words:
            return _Resolved(node, {}, flags, None, [])
        name = words.pop(0)
        if name not in node.commands:
            raise _Unsure
        target = node.commands[name][1]
        node = _group(target, root=False) if hasattr(target, "registered_commands") else _Node(params=[*_params_of(target), _HELP])
    params: dict[str, Any] = {}
    given: set[str] = set()
    positionals: list[str] = []
    pending = None
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":  # rare, and click's handling of it differs between versions
            raise _Unsure
        if _start_of_option(word) and word != "-":
            name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
            opt = _find(node, name)
            if opt is None:
                raise _Unsure
            given.add(opt.name)
            if opt.flag:
                if eq:
                    raise _Unsure
                params[opt.name] = name not in opt.secondary
                i += 1
                continue
            values = [value] if eq else words[i + 1:i + 1 + opt.nargs]
            i += 1 + (0 if eq else len(values))
            if len(values) < opt.nargs:
                if i < len(words):
                    raise _Unsure
                pending = opt
            if opt.multiple:
                params.setdefault(opt.name, []).extend(values)
            else:
                params[opt.name] = values[0] if opt.nargs == 1 and values else values
            continue
        positionals.append(word)
        i += 1
    return _assign(node, params, given, pending, positionals)


def _assign(node: _Node, params: dict[str, Any], given: set[str], pending: _Param | None,
            positionals: list[str]) -> _Resolved:
    rest = list(positionals)
    for p in node.params:
        if p.option or not rest:
            continue
        if p.nargs == -1:
            params[p.name], rest = rest, []
        else:
            params[p.name] = rest[0] if p.nargs == 1 else rest[:p.nargs]
            rest = rest[p.nargs:]
        given.add(p.name)
    return _Resolved(node, params, given, pending, positionals)


def _find(node: _Node, name: str) -> _Param | None:
    for p in node.params:
        if p.option and (name in p.opts or name in p.secondary):
            return p
    return None


def _items(app: Any, args: list[str], incomplete: str) -> list[tuple[str, str | None]]:
    """Completion items (value, help) for the line, as click's shell completion resolves them."""
    args = list(args)
    if incomplete == "=":
        incomplete = ""
    elif "=" in incomplete and _start_of_option(incomplete):
        name, _, incomplete = incomplete.partition("=")
        args.append(name)
    r = _resolve(app, args)
    node = r.node
    if "--" not in args and _start_of_option(incomplete):
        return _names(node, r, incomplete)
    if r.pending is not None:
        return _values(r.pending, r.params, incomplete)
    if node.commands is None:  # the first argument still missing (a variadic one never is)
        taken = len(r.positionals)
        for p in node.params:
            if not p.option:
                if p.nargs == -1 or taken < p.nargs:
                    return _values(p, r.params, incomplete)
                taken -= p.nargs
        return []
    return [(name, short) for name, (short, _) in node.commands.items() if name.startswith(incomplete)]


def _names(node: _Node, r: _Resolved, incomplete: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    if node.commands is not None:
        out += [(name, short) for name, (short, _) in node.commands.items() if name.startswith(incomplete)]
    if incomplete and not incomplete[0].isalnum():
        for p in node.params:
            if not p.option or p.hidden or (not p.multiple and p.name in r.given):
                continue
            out += [(n, p.help) for n in [*p.opts, *p.secondary] if n.startswith(incomplete)]
    return out


def _values(param: _Param, params: dict[str, Any], incomplete: str) -> list[tuple[str, str | None]]:
    if param.completer is not None:
        import inspect

        names = inspect.signature(param.completer).parameters
        kwargs = {"ctx": LightContext(params), "args": [], "incomplete": incomplete}
        got = param.completer(**{k: v for k, v in kwargs.items() if k in names})
        items = [(c[0], c[1]) if isinstance(c, tuple) else (c, None) for c in got]
        return [i for i in items if i[0].startswith(incomplete)]
    if param.choices is not None:
        return [(str(c), None) for c in param.choices if str(c).startswith(incomplete)]
    return []


def line_params(ctx: Any) -> dict[str, Any]:
    """The parameters given so far: the light path's, or, under Typer, re-read from the command line
    (Typer's ``ctx.params`` lacks positionals while an option's value is being completed)."""
    params = dict(getattr(ctx, "params", None) or {})
    if isinstance(ctx, LightContext):
        return params
    shell = os.environ.get("_EPX_COMPLETE", "").removeprefix("complete_")
    try:
        from epx.cli import app

        args, incomplete = completion_args(shell)
        if "=" in incomplete and _start_of_option(incomplete):
            args.append(incomplete.partition("=")[0])
        light = _resolve(app, args).params
    except Exception:  # noqa: BLE001 - fall back to what Typer parsed
        return params
    return {**params, **{k: v for k, v in light.items() if v not in (None, [], ())}}


# -- formatting, as Typer's completion classes print ---------------------------------------------


def _zsh_escape(s: str) -> str:
    return s.replace('"', '""').replace("'", "''").replace("$", "\\$").replace("`", "\\`").replace(":", r"\\:")


def _plain_help(text: str) -> bool:
    """Help Typer would print unchanged (it renders help through rich markup for zsh and fish)."""
    return not re.search(r"[\[\]\\]", text)


def answer(app: Any, complete_var_value: str) -> int | None:
    """Print the completions for the shell's command line; the exit code, or None to let Typer answer."""
    shell = complete_var_value.removeprefix("complete_")
    if shell not in ("bash", "zsh", "fish"):
        return None
    try:
        args, incomplete = completion_args(shell)
        items = _items(app, args, incomplete)
    except _Unsure:
        return None
    except Exception:  # noqa: BLE001 - anything unexpected: Typer's answer is the reference
        return None
    if shell == "bash":
        out = "\n".join(value for value, _ in items)
    elif shell == "zsh":
        if any(h and not _plain_help(h) for _, h in items):
            return None
        lines = [f'"{_zsh_escape(v)}":"{_zsh_escape(h)}"' if h else f'"{_zsh_escape(v)}"' for v, h in items]
        out = f"_arguments '*: :(({chr(10).join(lines)}))'" if lines else "_files"
    else:
        if any(h and not _plain_help(h) for _, h in items):
            return None
        lines = [v + "\t" + re.sub(r"\s", " ", h) if h else v for v, h in items]
        action = os.environ.get("_TYPER_COMPLETE_FISH_ACTION", "")
        if action == "is-args":
            return 0 if lines else 1
        out = "\n".join(lines) if action == "get-args" else ""
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return 0
