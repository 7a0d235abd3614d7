"""``epx collect``: assemble the partial runs of ``epx train --fold/--only-seed`` into one run.

A workflow (Snakemake: one job per model, fold and seed) trains each outer fold, or each (fold,
seed), into its own partial run; ``epx collect PART... -o RUN`` checks that the parts belong to
one run and cover every fold and seed once, then writes the run the one-process ``epx train``
would have written: the same oof.parquet, test.parquet (averaged over seeds and folds by the same
code, in the same order), seed_predictions.parquet, metrics.json, importance.tsv, shap.parquet,
models/, split.tsv and config.json (without the ``partial`` record). Only log.txt differs: it
records the parts, and no timings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from epx.dataset import read_json_file
from epx.errors import EpxError, InputFileError
from epx.outputs import atomic_dir, check_output, refuse_overlap
from epx.train import PARTS_DIR, combine_fold, load_part, part_name, write_results


def _read_part(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise InputFileError("partial run not found", path=path)
    if not (path / "config.json").is_file() or not (path / "models").is_dir():
        raise InputFileError("not an epx run (no config.json and models/); make parts with "
                             "epx train --fold NAME", path=path)
    config = read_json_file(path / "config.json", "config.json")
    partial = config.get("partial")
    if not isinstance(partial, dict):
        raise InputFileError("a complete run, not a part: epx collect assembles the partial runs of "
                             "epx train --fold/--only-seed", path=path)
    return config


def check_parts(paths: list[Path]) -> tuple[list[dict[str, Any]], dict[tuple[str, int], Path]]:
    """The parts' configs and which part holds each (fold, seed), or one line saying why they do
    not make one run: a non-run, parts of different runs, a (fold, seed) twice or missing."""
    if not paths:
        raise EpxError("give the partial runs to collect")
    resolved = [p.resolve() for p in paths]
    for p, r in zip(paths, resolved, strict=True):
        if resolved.count(r) > 1:
            raise EpxError(f"{p} is listed twice")
    configs = [_read_part(p) for p in paths]
    first = configs[0]["partial"]
    for p, config in zip(paths[1:], configs[1:], strict=True):
        mine = config["partial"]
        if mine.get("identity") != first.get("identity"):
            theirs, ours = first.get("identity_fields") or {}, mine.get("identity_fields") or {}
            field = next((k for k in theirs if theirs.get(k) != ours.get(k)), None) or "identity"
            raise EpxError(f"{paths[0]} and {p} are parts of different runs: their {field} differs")
    owner: dict[tuple[str, int], Path] = {}
    for p, config in zip(paths, configs, strict=True):
        for fold in config["partial"]["folds"]:
            for seed in config["partial"]["seeds"]:
                if (fold, seed) in owner:
                    what = f"fold {fold}" + (f" seed {seed}" if len(first["all_seeds"]) > 1 else "")
                    raise EpxError(f"{what} is in two parts, {owner[fold, seed]} and {p}; give each once")
                owner[fold, seed] = p
                for suffix in (".json", ".parquet"):
                    f = p / PARTS_DIR / (part_name(fold, seed) + suffix)
                    if not f.is_file():
                        raise InputFileError(f"the part's record of fold {fold} seed {seed} is missing; "
                                             "re-run the epx train that wrote it", path=f)
    for fold in first["all_folds"]:
        missing = [s for s in first["all_seeds"] if (fold, s) not in owner]
        if len(missing) == len(first["all_seeds"]):
            raise EpxError(f"fold {fold} is missing (the run's folds are {', '.join(first['all_folds'])}); "
                           f"train it with epx train ... --fold {fold}")
        if missing:
            raise EpxError(f"seed {missing[0]} of fold {fold} is missing (the run's seeds are "
                           f"{', '.join(map(str, first['all_seeds']))}); train it with epx train ... --fold {fold} "
                           f"--only-seed {missing[0]}")
    return configs, owner


def collect(parts: list[str | Path], output: str | Path, force: bool = False) -> dict[str, Any]:
    """Assemble partial runs into the run ``epx train`` writes in one process; returns its metrics."""
    paths = [Path(p) for p in parts]
    configs, owner = check_parts(paths)
    refuse_overlap(output, paths)
    output = check_output(output, force, "run")
    config = {k: v for k, v in configs[0].items() if k != "partial"}
    partial = configs[0]["partial"]
    seeds, folds = partial["all_seeds"], partial["all_folds"]
    seeded = len(seeds) > 1
    logs = {p: (p / "log.txt").read_text().splitlines() if (p / "log.txt").is_file() else [] for p in paths}
    header = logs[paths[0]][:1]
    log = [*header, f"collected from {len(paths)} parts: {', '.join(str(p) for p in paths)}"]
    fold_outputs = []
    with atomic_dir(output, "run", force=force) as tmp:
        for fold in folds:
            loaded = [load_part(owner[fold, s], fold, s) for s in seeds]
            frame, counts = loaded[0][0], loaded[0][2]
            out = combine_fold(frame, [r for _, r, _ in loaded], config["task"], config["features"], seeded)
            fold_outputs.append((fold, out))
            for s in seeds:
                log += [ln for ln in logs[owner[fold, s]] if ln.startswith(f"fold {fold} seed {s}:")]
            log.append(f"fold {fold}: {counts} {json.dumps(out[4])}")
        summary = write_results(tmp, fold_outputs, config["task"], seeded)
        for p in paths:  # each part's models: a fold's (fold_NAME[_seedS][_innerJ]) are in the part that trained it
            for model in sorted((p / "models").iterdir()):
                shutil.copytree(model, tmp / "models" / model.name)
        for name in ("split.tsv", "dataset_genes.txt"):
            shutil.copyfile(paths[0] / name, tmp / name)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        (tmp / "log.txt").write_text("\n".join(log) + "\n")
    return summary
