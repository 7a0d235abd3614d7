"""Model plugins: discovered through the ``epx.models`` entry-point group.

An entry point names a light :class:`ModelSpec` (name, input kind, tasks, typed defaults and a
lazy ``"module:Class"`` reference). Listing models imports only the spec modules; the model
class, and with it torch or lightgbm, is imported when a model is actually used. A plugin that
fails to load becomes a listed error, never a crash (as httpie's plugin manager does).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epx.errors import PluginError
from epx.models.contract import INPUT_KINDS, TASKS

ENTRY_POINT_GROUP = "epx.models"


@dataclass(frozen=True)
class Interval:
    """The allowed range of a numeric parameter: ``low``/``high`` (None = unbounded), each end
    inclusive unless marked open. An unbounded end excludes infinity, and NaN is never inside."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.low is None:
            low_ok = value > -math.inf
        else:
            low_ok = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            high_ok = value < math.inf
        else:
            high_ok = value < self.high if self.high_open else value <= self.high
        return low_ok and high_ok

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{')' if self.high_open or self.high is None else ']'}"

    def as_json(self) -> dict[str, Any]:
        return {"min": self.low, "max": self.high, "min_inclusive": self.low is not None and not self.low_open,
                "max_inclusive": self.high is not None and not self.high_open, "interval": str(self)}


_GEOMETRY = re.compile(r"^(\d+)x(\d+)$")
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]*)\s*,\s*([^\])\s]*)\s*([\])])\s*$")


def parse_interval(model: str, key: str, bound: Any) -> Interval:
    """A bound as a spec declares it: ``(low, high)`` (both inclusive, None = unbounded), or an
    interval string such as ``"(0, 1]"`` or ``"[2, inf)"`` whose brackets say which ends are open."""
    if isinstance(bound, Interval):
        return bound
    where = f"model {model!r}: bound of parameter {key!r}"
    if isinstance(bound, str):
        m = _INTERVAL.match(bound)
        if not m:
            raise PluginError(f"{where} must be (low, high) or an interval such as '(0, 1]' or '[0, inf)', got {bound!r}")
        opening, low_text, high_text, closing = m.groups()
        try:
            low = None if low_text in ("", "-inf") else float(low_text)
            high = None if high_text in ("", "inf", "+inf") else float(high_text)
        except ValueError:
            raise PluginError(f"{where}: {bound!r} has a non-numeric end") from None
        interval = Interval(low, high, low_open=opening == "(", high_open=closing == ")")
    elif isinstance(bound, (tuple, list)) and len(bound) == 2:
        for end in bound:
            if end is not None and (isinstance(end, bool) or not isinstance(end, (int, float)) or math.isnan(end)):
                raise PluginError(f"{where} must be numbers or None, got {tuple(bound)!r}")
        low, high = (None if e is None or math.isinf(e) else e for e in bound)
        interval = Interval(low, high)
    else:
        raise PluginError(f"{where} must be (low, high) or an interval such as '(0, 1]', got {bound!r}")
    if interval.low is not None and interval.high is not None and (
        interval.low > interval.high or (interval.low == interval.high and (interval.low_open or interval.high_open))
    ):
        raise PluginError(f"{where} {bound!r} is empty")
    return interval


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
    # Allowed ranges of numeric parameters: (low, high), both inclusive, None = unbounded, or an
    # interval string with open ends, e.g. "(0, 1]"; normalised to Interval objects.
    param_bounds: dict[str, Any] = field(default_factory=dict)
    # Allowed values of a parameter, e.g. {"objective": ("l2", "huber")}.
    param_choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # Binned models: the bin geometries the model reads by default (e.g. ("2000x20", "500x80",
    # "100x400")); empty = one geometry, the dataset's default. FoldData.bins carries them.
    geometries: tuple[str, ...] = ()
    # Binned models: also hand the model the distal regions (FoldData.regions) when the dataset has them.
    regions: bool = False

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise PluginError(f"model {self.name!r}: unknown input kind {self.input_kind!r}; use one of {', '.join(INPUT_KINDS)}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise PluginError(f"model {self.name!r}: unknown task(s) {bad or '(none)'}; use {', '.join(TASKS)}")
        if ":" not in self.model:
            raise PluginError(f"model {self.name!r}: model reference {self.model!r} must be 'module:Class'")
        if (self.geometries or self.regions) and self.input_kind != "binned":
            raise PluginError(f"model {self.name!r}: geometries and regions are for binned models")
        for name in self.geometries:  # the dataset's geometry names (epx.features.geometry)
            m = _GEOMETRY.match(str(name))
            if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
                raise PluginError(f"model {self.name!r}: geometry {name!r} must be WIDTHxCOUNT, e.g. '2000x20'")
        for key, value in self.params.items():
            if not isinstance(value, (bool, int, float, str)) and value is not None:
                raise PluginError(f"model {self.name!r}: default for {key!r} must be bool, int, float, str or None")
        self._check_bounds_and_choices()

    def _check_bounds_and_choices(self) -> None:
        """Bounds and choices name real parameters, fit their types, and admit the defaults."""
        known = ", ".join(sorted(self.params)) or "none"
        bounds = {}
        for key, bound in self.param_bounds.items():
            if key not in self.params:
                raise PluginError(f"model {self.name!r}: param_bounds names unknown parameter {key!r} (parameters: {known})")
            default = self.params[key]
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                raise PluginError(f"model {self.name!r}: param_bounds for {key!r} needs a numeric default, "
                                  f"not {type(default).__name__} {default!r}")
            interval = parse_interval(self.name, key, bound)
            if default not in interval:
                raise PluginError(f"model {self.name!r}: default {key}={default!r} is outside its bounds {interval}")
            bounds[key] = interval
        object.__setattr__(self, "param_bounds", bounds)
        choices = {}
        for key, values in self.param_choices.items():
            if key not in self.params:
                raise PluginError(f"model {self.name!r}: param_choices names unknown parameter {key!r} (parameters: {known})")
            if isinstance(values, str) or not isinstance(values, (tuple, list)) or not values:
                raise PluginError(f"model {self.name!r}: param_choices for {key!r} must be a non-empty tuple of values")
            default = self.params[key]
            coerced = tuple(coerce_param(self.name, key, v, default) for v in values)
            if default not in coerced:
                raise PluginError(f"model {self.name!r}: default {key}={default!r} is not one of its choices "
                                  f"{', '.join(map(repr, coerced))}")
            choices[key] = coerced
        object.__setattr__(self, "param_choices", choices)

    def allowed(self, key: str) -> str:
        """The allowed values of a parameter as text: its interval, its choices, or ''."""
        parts = []
        if key in self.param_bounds:
            parts.append(str(self.param_bounds[key]))
        if key in self.param_choices:
            parts.append(" | ".join(map(str, self.param_choices[key])))
        return "; ".join(parts)

    def check_param(self, key: str, value: Any) -> None:
        """Raise a one-line PluginError when ``value`` is outside the parameter's bounds or choices."""
        if key in self.param_bounds and value not in self.param_bounds[key]:
            raise PluginError(f"model {self.name!r}: parameter {key!r} = {value!r} is out of range; "
                              f"allowed: {self.param_bounds[key]}")
        if key in self.param_choices and value not in self.param_choices[key]:
            raise PluginError(f"model {self.name!r}: parameter {key!r} = {value!r} is not allowed; "
                              f"choose one of {', '.join(map(str, self.param_choices[key]))}")

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
        """Merge overrides into the defaults, coercing strings to each default's type and checking
        each override against the parameter's declared bounds and choices."""
        resolved = dict(self.params)
        for key, raw in (overrides or {}).items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise PluginError(f"model {self.name!r} has no parameter {key!r} (parameters: {known})")
            resolved[key] = coerce_param(self.name, key, raw, self.params[key])
            self.check_param(key, resolved[key])
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


PREDICTOR_GROUP = "epx.predictors"


def predictor_names() -> list[str]:
    """Sequence predictors (``epx personalize --model``), from the ``epx.predictors`` entry points."""
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group=PREDICTOR_GROUP)})


def load_predictor(name: str, options: dict[str, Any]) -> Any:
    """A sequence predictor (DNA windows -> track outputs, see docs/plugins.md) from its plugin.

    The entry point names a factory ``load(options) -> predictor``; its errors (missing weights,
    an unknown track) reach the user as they are, a crash of the plugin as one line."""
    from importlib.metadata import entry_points

    from epx.errors import EpxError

    eps = {ep.name: ep for ep in entry_points(group=PREDICTOR_GROUP)}
    if name not in eps:
        installed = ", ".join(sorted(eps)) or "none (install plugins/epx-enformer)"
        raise PluginError(f"unknown sequence model {name!r}; installed: {installed}")
    try:
        factory = eps[name].load()
        predictor = factory(options)
    except EpxError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin is one line, not a traceback
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PluginError(f"sequence model {name!r} failed to load: {type(exc).__name__}: {first}") from exc
    for attr in ("window", "output_names", "fingerprint", "predict"):
        if not hasattr(predictor, attr):
            raise PluginError(f"sequence model {name!r} lacks {attr!r} (see docs/plugins.md)")
    return predictor
