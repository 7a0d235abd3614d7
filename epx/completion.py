"""Dynamic shell completion of option values.

Completion re-runs ``epx`` on every TAB, so these functions read only light sources: entry-point
names (no plugin import), ``dataset.json`` and manifest headers (no pandas).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def _last_item(incomplete: str) -> tuple[str, str]:
    """Split ``X1,X`` into the already-typed prefix ``X1,`` and the part being completed ``X``."""
    head, sep, tail = incomplete.rpartition(",")
    return (head + sep, tail)


def complete_model(incomplete: str) -> list[str]:
    from epx.models.plugins import model_names

    return [n for n in model_names() if n.startswith(incomplete)]


def _sources(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Cell lines and assays named by a dataset directory or manifest already on the command line."""
    cells: list[str] = []
    assays: list[str] = []
    for key in ("dataset", "input", "run_dir"):
        value = params.get(key)
        if value and (Path(str(value)) / "dataset.json").is_file():
            try:
                meta = json.loads((Path(str(value)) / "dataset.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            cells += list(meta.get("cell_lines", []))
            assays += list(meta.get("assays", []))
    manifest = params.get("manifest")
    if manifest and Path(str(manifest)).is_file():
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


def _complete_from(values: list[str], incomplete: str) -> list[str]:
    head, tail = _last_item(incomplete)
    taken = set(head.split(",")) if head else set()
    return [head + v for v in values if v.startswith(tail) and v not in taken]


def complete_cell(ctx: Any, incomplete: str) -> list[str]:
    return _complete_from(_sources(ctx.params)[0], incomplete)


def complete_assay(ctx: Any, incomplete: str) -> list[str]:
    return _complete_from(_sources(ctx.params)[1], incomplete)
