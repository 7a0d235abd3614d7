"""The workflow's one config file: validated with a JSON schema before any job starts.

Unknown keys, wrong types, missing input files and unknown models are one line each, naming the
key (``models.lgbm.param``) or the file, so a cluster allocation is never spent on a typo.
Relative paths are relative to the config file.
"""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path
from typing import Any

from epx.errors import EpxError

SNAKEFILE = Path(__file__).with_name("Snakefile")
PROFILES = Path(__file__).with_name("profiles")

_CELLS = {"type": "array", "items": {"type": "string"}, "minItems": 1}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["genes", "manifest", "labels", "split", "models"],
    "properties": {
        "_base": {"type": "string"}, "_path": {"type": "string"},  # set by epx workflow run
        "genes": {"type": "string", "description": "gene table"},
        "manifest": {"type": "string", "description": "track manifest"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1,
                   "description": "cell line -> label file"},
        "output": {"type": "string", "default": "results"},
        "epx": {"type": "string", "description": "the epx command the jobs run (default: this one)"},
        "featurize": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "bins": {"type": "string"}, "pairs": {"type": "string"}, "fasta": {"type": "string"},
                "sequence_window": {"type": "integer", "minimum": 1}, "build": {"enum": ["hg19", "hg38"]},
                "shard_by": {"enum": ["none", "cells", "assays", "chroms"], "default": "none"},
                "shards": {"type": "array", "items": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                           "description": "the groups of cells/assays/chroms, one featurize job each"},
                "threads": {"type": "integer", "minimum": 1, "default": 1},
                "mem_mb": {"type": "integer", "minimum": 1, "default": 4000},
            },
        },
        "split": {
            "type": "object", "additionalProperties": False, "required": ["scheme"],
            "properties": {
                "scheme": {"enum": ["loco", "chr-kfold", "random", "holdout"]},
                "k": {"type": "integer", "minimum": 2}, "holdout": {"type": "string"},
                "test": {"type": "string"}, "seed": {"type": "integer"},
                "train_cells": _CELLS, "test_cells": _CELLS,
            },
        },
        "models": {
            "type": "object", "minProperties": 1,
            "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "model": {"type": "string"},
                    "target": {"enum": ["raw", "log1p", "rank", "nonzero", "binary"], "default": "rank"},
                    "params": {"type": "object", "default": {}},
                    "seeds": {"type": "integer", "minimum": 1, "default": 1},
                    "seed": {"type": "integer", "default": 0},
                    "train_cells": _CELLS, "test_cells": _CELLS,
                    "threads": {"type": "integer", "minimum": 1, "default": 1},
                    "mem_mb": {"type": "integer", "minimum": 1, "default": 4000},
                    "gpus": {"type": "integer", "minimum": 0, "default": 0},
                },
            },
        },
        "stack": {
            "type": "object", "additionalProperties": False, "required": ["runs"],
            "properties": {"runs": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                           "rule": {"enum": ["seed", "mean", "rank-mean", "nnls"], "default": "seed"}},
        },
        "submit": {
            "type": "object", "additionalProperties": False,
            "required": ["cell", "genes", "last_name", "first_name"],
            "properties": {"cell": {"type": "string"}, "genes": {"type": "string"}, "run": {"type": "string"},
                           "last_name": {"type": "string"}, "first_name": {"type": "string"}},
        },
    },
}


class WorkflowConfigError(EpxError):
    """The workflow config is malformed or points at missing files."""


def _where(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def validate(config: dict[str, Any], path: str | Path | None = None) -> None:
    """The schema, in one line for the first problem (jsonschema's best match)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        raise WorkflowConfigError(f"unknown key {', '.join(map(repr, extra))} in {_where(error)}"
                                  + (f" (known: {', '.join(known)})" if known else ""), path=path)
    raise WorkflowConfigError(f"{_where(error)}: {error.message}", path=path)


def _fill_defaults(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub:
                value[key] = _fill_defaults(value[key], sub)
    return value


def normalise(config: dict[str, Any], base: str | Path | None = None, check_files: bool = False) -> dict[str, Any]:
    """The validated config with defaults, absolute paths and each featurize shard's options."""
    c = _fill_defaults(copy.deepcopy(dict(config)), SCHEMA)
    validate(c, config.get("_path"))
    base_dir = Path(base or c.get("_base") or ".").resolve()

    def absolute(p: str) -> str:
        return str((base_dir / p).resolve()) if not Path(p).is_absolute() else p

    c["genes"], c["manifest"] = absolute(c["genes"]), absolute(c["manifest"])
    c["labels"] = {cell: absolute(p) for cell, p in c["labels"].items()}
    c["output"] = absolute(c.get("output", "results"))
    feat = c.setdefault("featurize", _fill_defaults({}, SCHEMA["properties"]["featurize"]))
    for key in ("pairs", "fasta"):
        if feat.get(key):
            feat[key] = absolute(feat[key])
    if c.get("submit"):
        c["submit"]["genes"] = absolute(c["submit"]["genes"])
    c["epx"] = c.get("epx") or _epx_command()
    by = feat.get("shard_by", "none")
    groups = feat.get("shards") or []
    if by == "none" or not groups:
        feat["shards"] = {"all": ""}
    else:
        flag = {"cells": "--cells", "assays": "--assays", "chroms": "--chroms"}[by]
        feat["shards"] = {f"{by}-{i + 1}": f"{flag} {','.join(group)}" for i, group in enumerate(groups)}
    for name, spec in c["models"].items():
        spec.setdefault("model", name)
    if c.get("stack"):
        unknown = [r for r in c["stack"]["runs"] if r not in c["models"]]
        if unknown:
            raise WorkflowConfigError(f"stack.runs names {unknown[0]!r}, which is not in models ({', '.join(c['models'])})",
                                      path=config.get("_path"))
    if c.get("submit") and not c.get("stack") and c["submit"].get("run") not in c["models"]:
        raise WorkflowConfigError("submit needs a stack, or submit.run naming one of the models", path=config.get("_path"))
    if check_files:
        _check_files(c, config.get("_path"))
    return c


def _epx_command() -> str:
    found = shutil.which("epx")
    return found or f"{sys.executable} -c 'from epx.cli import main; main()'"


def _check_files(c: dict[str, Any], path: str | Path | None) -> None:
    files = {"genes": c["genes"], "manifest": c["manifest"], **{f"labels.{k}": v for k, v in c["labels"].items()}}
    for key in ("pairs", "fasta"):
        if c["featurize"].get(key):
            files[f"featurize.{key}"] = c["featurize"][key]
    if c.get("submit"):
        files["submit.genes"] = c["submit"]["genes"]
    for key, file in files.items():
        if not Path(file).is_file():
            raise WorkflowConfigError(f"{key}: file {file} not found", path=path)
    from epx.models.plugins import model_names

    installed = set(model_names())
    for name, spec in c["models"].items():
        if spec["model"] not in installed:
            raise WorkflowConfigError(f"models.{name}: unknown model {spec['model']!r} (installed: "
                                      f"{', '.join(sorted(installed))})", path=path)


def load(path: str | Path) -> dict[str, Any]:
    """Read, validate and normalise a workflow config (YAML or JSON); files must exist."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise WorkflowConfigError("workflow config not found", path=p)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise WorkflowConfigError(f"not valid YAML ({str(err).splitlines()[0]})", path=p) from None
    if not isinstance(data, dict):
        raise WorkflowConfigError("must be a mapping of keys (genes, manifest, labels, split, models, ...)", path=p)
    data["_path"] = str(p)
    data["_base"] = str(p.resolve().parent)
    c = normalise({k: v for k, v in data.items()}, base=p.resolve().parent, check_files=True)
    return c


def snakemake_command(config_path: str | Path, extra: list[str], cores: int) -> list[str]:
    """The snakemake command line `epx workflow run` executes."""
    exe = shutil.which("snakemake")
    if exe is None:
        raise EpxError("snakemake is not installed: pip install 'snakemake>=8' (scripts/install.sh installs it)")
    p = Path(config_path).resolve()
    cmd = [exe, "--snakefile", str(SNAKEFILE), "--configfile", str(p), "--directory", str(p.parent),
           "--config", f"_base={p.parent}"]
    if not any(a in ("--cores", "-c", "--jobs", "-j", "--profile") or a.startswith(("--cores=", "--jobs=", "--profile="))
               for a in extra):
        cmd += ["--cores", str(cores)]
    return cmd + list(extra)
