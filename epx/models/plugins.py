"""Model plugins: discovered through the ``epx.models`` entry-point group.

An entry point names a light :class:`ModelSpec` (name, input kind, tasks, typed defaults and a
lazy ``"module:Class"`` reference). Listing models imports only the spec modules; the model
class, and with it torch or lightgbm, is imported when a model is actually used. A plugin that
fails to load becomes a listed error, never a crash (as httpie's plugin manager does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epx.errors import PluginError
from epx.models.contract import INPUT_KINDS, TASKS

ENTRY_POINT_GROUP = "epx.models"


@dataclass(frozen=True)
class ModelSpec:
    """Everything epx needs to list, configure and lazily load a model."""

    name: str
    description: str
    input_kind: str
    tasks: tuple[str, ...]
    model: str  # "package.module:ClassName", imported only when used
    params: dict[str, Any] = field(default_factory=dict)
    param_help: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise PluginError(f"model {self.name!r}: unknown input kind {self.input_kind!r}; use one of {', '.join(INPUT_KINDS)}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise PluginError(f"model {self.name!r}: unknown task(s) {bad or '(none)'}; use {', '.join(TASKS)}")
        if ":" not in self.model:
            raise PluginError(f"model {self.name!r}: model reference {self.model!r} must be 'module:Class'")
        for key, value in self.params.items():
            if not isinstance(value, (bool, int, float, str)) and value is not None:
                raise PluginError(f"model {self.name!r}: default for {key!r} must be bool, int, float, str or None")

    def load_class(self) -> type:
        """Import the model class (the heavy part) on demand."""
        import importlib

        module_name, _, attr = self.model.partition(":")
        try:
            module = importlib.import_module(module_name)
            return getattr(module, attr)
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's, reported cleanly
            raise PluginError(f"model {self.name!r}: cannot import {self.model} ({type(exc).__name__}: {exc})") from exc

    def resolve_params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Merge overrides into the defaults, coercing strings to each default's type."""
        resolved = dict(self.params)
        for key, raw in (overrides or {}).items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise PluginError(f"model {self.name!r} has no parameter {key!r} (parameters: {known})")
            resolved[key] = coerce_param(self.name, key, raw, self.params[key])
        return resolved


def coerce_param(model: str, key: str, raw: Any, default: Any) -> Any:
    """Convert a ``--param key=value`` string, or a config value, to the default's type."""
    text = raw.strip() if isinstance(raw, str) else None
    try:
        if default is None:
            if text is None:
                return raw
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            lowered = (text or "").lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            value = float(text) if text is not None else raw
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            if isinstance(raw, bool):
                raise ValueError
            return float(text if text is not None else raw)
        return str(raw)
    except (TypeError, ValueError):
        raise PluginError(
            f"model {model!r}: parameter {key!r} expects {type(default).__name__}, got {raw!r}"
        ) from None


def parse_param_options(items: list[str]) -> dict[str, str]:
    """Parse repeated ``--param key=value`` options."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PluginError(f"--param expects key=value, got {item!r}")
        out[key.strip()] = value
    return out


def read_param_config(path: str | Path, model: str) -> dict[str, Any]:
    """Read parameters from a TOML or YAML file: either flat, or a table named after the model."""
    from epx.errors import require_file

    p = require_file(path, "config file")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # noqa: BLE001 - toml/yaml raise different types
        raise PluginError(f"{p}: cannot parse config ({exc})") from exc
    if not isinstance(data, dict):
        raise PluginError(f"{p}: config must be a mapping of parameter = value")
    if isinstance(data.get(model), dict):
        data = data[model]
    elif isinstance(data.get("params"), dict):
        data = data["params"]
    return data


@dataclass
class PluginEntry:
    """One entry point: its spec when it loaded, or the error that stopped it."""

    name: str
    distribution: str
    version: str
    value: str
    spec: ModelSpec | None = None
    error: str | None = None


def _entry_points():
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


def model_names() -> list[str]:
    """Entry-point names only, without importing any plugin code (for shell completion)."""
    return sorted({ep.name for ep in _entry_points()})


def discover() -> list[PluginEntry]:
    """Load every plugin's spec; a broken plugin is recorded with its error instead of raising."""
    entries = []
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        entry = PluginEntry(
            name=ep.name,
            distribution=dist.name if dist else "?",
            version=dist.version if dist else "?",
            value=ep.value,
        )
        try:
            obj = ep.load()
            spec = obj() if callable(obj) and not isinstance(obj, ModelSpec) else obj
            if not isinstance(spec, ModelSpec):
                raise PluginError(f"entry point {ep.value} is not an epx ModelSpec")
            if spec.name != ep.name:
                raise PluginError(f"entry point {ep.name!r} points at spec named {spec.name!r}")
            entry.spec = spec
        except Exception as exc:  # noqa: BLE001 - a broken plugin must never crash the CLI
            message = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            entry.error = message.splitlines()[0] if message else type(exc).__name__
        entries.append(entry)
    return entries


def get_spec(name: str) -> ModelSpec:
    """The spec of an installed model, or a PluginError listing the installed ones."""
    entries = {e.name: e for e in discover()}
    if name not in entries:
        installed = ", ".join(sorted(entries)) or "none"
        raise PluginError(f"unknown model {name!r}; installed models: {installed} (see `epx models`)")
    entry = entries[name]
    if entry.spec is None:
        raise PluginError(f"model {name!r} ({entry.distribution} {entry.version}) failed to load: {entry.error}")
    return entry.spec
