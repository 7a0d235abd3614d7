"""The ``epx`` command line: a thin Typer layer over importable functions.

Start-up discipline: shell completion re-runs this module on every TAB, so nothing heavy
(pandas, numpy, torch, lightgbm, pyBigWig, plugin code) is imported at module level; each
command imports what it needs inside its body. ``tests/test_startup.py`` enforces this.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from epx._version import __version__
from epx.choices import (
    ABLATION_MODES,
    BUILDS,
    REPORT_FORMATS,
    STACK_RULES,
    TARGETS,
    TSS_MODES,
    Build,
    ReportFormat,
    StackRule,
    Target,
    TssMode,
)
from epx.completion import (
    complete_assay,
    complete_cell,
    complete_chroms,
    complete_model,
    complete_param,
    complete_run_cell,
)
from epx.errors import EpxError


class _EpxGroup(typer.core.TyperGroup):
    """Turns an expected failure into one red line on stderr: an EpxError (bad input, exit 2) or a
    failure of the environment such as a read-only or full disk (OSError, MemoryError; exit 1).
    The traceback only with --debug."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except EpxError as err:
            _fail(str(err), err.exit_code)
        except OSError as err:
            from epx.errors import describe_os_error

            _fail(describe_os_error(err), 1)
        except MemoryError:
            _fail("out of memory; use fewer --workers, fewer genes or tracks per run, or a larger machine", 1)
        except KeyboardInterrupt:  # the outputs' cleanup has run on the way up
            _fail("interrupted; outputs are renamed into place only when complete, so nothing was written", 130)
        except (typer.Exit, typer.Abort, TyperException):  # usage errors: typer prints them itself
            raise
        except Exception as err:  # noqa: BLE001 - the last net: a bug, said in one line, never a traceback
            first = (str(err).splitlines() or [""])[0][:200]
            _fail(f"internal error ({type(err).__name__}: {first}); run again with --debug for the traceback "
                  "and please report it", 3)


def _fail(message: str, code: int) -> None:
    if _state["debug"]:
        import traceback

        traceback.print_exc()
    from epx import console

    console.error(message)
    raise typer.Exit(code) from None


def _no_type(ctx):  # type: ignore[no-untyped-def]
    return None


def _usage_piece(param, ctx):  # type: ignore[no-untyped-def]
    name = param.display_name_raw
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return [name if param.required else f"[{name}]"]


class _EpxCommand(typer.core.TyperCommand):
    """Unix-style help: arguments by their metavar (``DATASET``, ``RUN...``), without Typer's
    ``{NAME}`` usage braces and ``<path>`` / ``<list[Path]>`` type labels."""

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = _no_type  # type: ignore[method-assign]
                param.get_usage_pieces = functools.partial(_usage_piece, param)  # type: ignore[method-assign]


class _EpxTyper(typer.Typer):
    """Typer whose commands default to _EpxCommand (so commands added later get the same help)."""

    def command(self, *args, cls=None, **kwargs):  # type: ignore[no-untyped-def, override]
        return super().command(*args, cls=cls or _EpxCommand, **kwargs)


app = _EpxTyper(
    name="epx",
    cls=_EpxGroup,
    help="Predict gene expression from epigenomic tracks and DNA sequence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rendering help with rich costs ~150 ms per call
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"epx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Predict gene expression from epigenomic tracks and DNA sequence."""
    _state["debug"] = debug


def _split_list(values: list[str] | None) -> list[str]:
    """Accept ``--cells X1,X2`` and repeated ``--cells X1 --cells X2`` alike."""
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def _choices(values: tuple[str, ...]) -> str:
    """The help metavar of an enumeration, e.g. ``[one-sided|both]``."""
    return "[" + "|".join(values) + "]"


def _alias_list(new: list[str] | None, old: list[str] | None) -> list[str]:
    """Values of a repeatable option and of its hidden old spelling, together."""
    return [*(new or []), *(old or [])]


def _alias_value(new, old, default, names: str):  # type: ignore[no-untyped-def]
    """An option's value or its hidden old spelling's (``names`` = "--new and --old", for the error)."""
    if old is None:
        return new
    if new != default and new != old:
        from epx.errors import EpxError

        raise EpxError(f"{names} are the same option: give one")
    return old


# -- epx demo -----------------------------------------------------------------------------------


@app.command(short_help="Write a synthetic demo study.")
def demo(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Directory to create with the demo study.")],
    genes: Annotated[int, typer.Option("--n-genes", min=200, metavar="N", help="Number of genes.")] = 2000,
    genes_old: Annotated[int | None, typer.Option("--genes", min=200, hidden=True, help="Old name of --n-genes.")] = None,
    personal: Annotated[bool, typer.Option("--personal", help="Write a personal-genomics cohort instead: reference "
                                           "FASTA, phased VCF and PLINK genotypes, GTEx-style expression with known "
                                           "eQTLs.")] = False,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Random seed; the same seed writes identical files.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Write a realistic synthetic study: genes, CAGE-like labels for X1-X3, bigWig and
    narrowPeak tracks for 7 assays, a manifest, and promoter-capture Hi-C-like contacts (pairs.bedpe).
    With --personal: a synthetic cohort of 80 individuals (reference.fa, genes.tsv, genotypes.vcf.gz
    and genotypes.bed/.bim/.fam, expression.bed, the true eQTLs in eqtls.tsv)."""
    from epx import console

    genes = _alias_value(genes, genes_old, 2000, "--n-genes and --genes")
    if personal:
        from epx.demo_personal import write_personal_demo

        if genes != 2000:
            from epx.errors import EpxError

            raise EpxError("--n-genes does not apply to --personal (its cohort has a fixed size)")
        with console.stderr().status(f"writing personal-genomics demo cohort to {directory}"):
            paths = write_personal_demo(directory, seed=seed, force=force, notice=console.info)
    else:
        from epx.demo import write_demo

        with console.stderr().status(f"writing demo study to {directory}"):
            paths = write_demo(directory, n_genes=genes, seed=seed, force=force)
    console.info(f"wrote {directory}")
    for key, path in paths.items():
        typer.echo(f"{key}\t{path}")


# -- epx models ---------------------------------------------------------------------------------


@app.command(short_help="List model plugins or show one.")
def models(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="Show one model's parameters.", autocompletion=complete_model),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List installed model plugins, or one model's default parameters."""
    import json

    from epx import console
    from epx.models.plugins import discover, get_spec

    if name is not None:
        spec = get_spec(name)
        if as_json:
            typer.echo(json.dumps({"name": spec.name, "params": spec.params,
                                   "bounds": {k: b.as_json() for k, b in spec.param_bounds.items()},
                                   "choices": {k: list(c) for k, c in spec.param_choices.items()}}, indent=2))
            return
        rows = [[k, type(v).__name__, repr(v), spec.allowed(k), spec.param_help.get(k, "")] for k, v in spec.params.items()]
        console.table(f"{spec.name}: {spec.description}", ["parameter", "type", "default", "allowed", "meaning"], rows)
        return
    entries = discover()
    if as_json:
        typer.echo(json.dumps([
            {"name": e.name, "distribution": e.distribution, "version": e.version,
             "input_kind": e.spec.input_kind if e.spec else None,
             "tasks": list(e.spec.tasks) if e.spec else None,
             "description": e.spec.description if e.spec else None, "error": e.error}
            for e in entries
        ], indent=2))
        return
    rows = []
    for e in entries:
        if e.spec is not None:
            rows.append([e.name, f"{e.distribution} {e.version}", e.spec.input_kind, ", ".join(e.spec.tasks), e.spec.description])
        else:
            rows.append([e.name, f"{e.distribution} {e.version}", "-", "-", f"[red]failed to load: {e.error}[/red]"])
    if not rows:
        console.warn("no model plugins are installed (pip install a package providing 'epx.models' entry points)")
    console.table("Installed models", ["name", "distribution", "input", "tasks", "description"], rows,
                  no_wrap=("name", "input"))


# -- epx check ----------------------------------------------------------------------------------


@app.command(short_help="Validate genes, labels and manifest.")
def check(
    genes: Annotated[list[Path], typer.Option("--genes", "-g", metavar="FILE", help="Gene table(s): ML4G TSV, BED6, GTF or a TSV with a TSS column; repeatable.")],
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m", metavar="FILE", help="Track manifest (TSV or YAML).")] = None,
    labels: Annotated[list[str] | None, typer.Option("--labels", "-l", metavar="CELL=FILE", help="Expression labels of a cell line; repeatable.")] = None,
    build: Annotated[Build | None, typer.Option("--build", metavar=_choices(BUILDS), help="Genome build for TSVs with per-build columns.")] = None,
) -> None:
    """Validate a gene table, labels and track manifest against each other; print a summary."""
    from epx import console
    from epx.io.inputs import load_inputs

    inputs = load_inputs(genes, manifest=manifest, labels=labels or [], build=build)
    for message in inputs.warnings:
        console.warn(message)
    g = inputs.genes
    rows = [["genes", f"{len(g):,} on {g['chrom'].nunique()} chromosomes ({(g['strand'] == '+').mean():.0%} on +)"]]
    if inputs.labels is not None:
        for cell, part in inputs.labels.groupby("cell_line", sort=False):
            rows.append([f"labels {cell}", f"{len(part):,} genes, {(part['value'] > 0).mean():.1%} nonzero"])
    if inputs.manifest is not None:
        m = inputs.manifest
        rows.append(["tracks", f"{len(m)} ({m['cell_line'].nunique()} cell lines x {m['assay'].nunique()} assays; "
                     f"{(m['kind'] == 'bigwig').sum()} bigWig, {(m['kind'] == 'bed').sum()} BED)"])
        from collections import Counter

        from epx.io.bed import FLAVOURS

        counts = Counter(inputs.formats.values())
        rows.append(["formats", "; ".join(
            f"{fmt} {n}" + ("" if fmt == "bigWig" or fmt in FLAVOURS else " (no signal column: no max_signal)")
            for fmt, n in counts.most_common())])
    console.table("Inputs are consistent", ["input", "summary"], rows)


# -- epx split ----------------------------------------------------------------------------------


@app.command(short_help="Assign genes to folds (split contract).")
def split(
    input: Annotated[Path, typer.Argument(help="A gene table or a dataset directory.", metavar="GENES_OR_DATASET")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="Split table to write (TSV).")],
    loco: Annotated[bool, typer.Option("--loco", help="Leave one chromosome out: one fold per chromosome.")] = False,
    chr_kfold: Annotated[int | None, typer.Option("--chr-kfold", metavar="K", help="K folds of whole chromosomes, balanced by gene count.")] = None,
    holdout: Annotated[str | None, typer.Option("--holdout", metavar="CHROMS", help="Validation chromosomes, e.g. chr14,chr19 (the ML4G protocol).", autocompletion=complete_chroms)] = None,
    random: Annotated[int | None, typer.Option("--random", metavar="K", help="K random gene-level folds (positional leakage inflates scores).")] = None,
    test: Annotated[str | None, typer.Option("--test", metavar="CHROMS", help="Chromosomes held out for testing, e.g. chr1.", autocompletion=complete_chroms)] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed for chr-kfold tie-breaking and random folds.")] = 0,
    cells: Annotated[list[str] | None, typer.Option("--cells", metavar="CELLS", help="Cell lines (default: the dataset's, or all).", autocompletion=complete_cell)] = None,
    train_cells: Annotated[list[str] | None, typer.Option("--train-cells", metavar="CELLS", help="Cell lines to train on (cross-cell).", autocompletion=complete_cell)] = None,
    test_cells: Annotated[list[str] | None, typer.Option("--test-cells", metavar="CELLS", help="Unseen cell lines to evaluate on (cross-cell).", autocompletion=complete_cell)] = None,
    labels: Annotated[list[str] | None, typer.Option("--labels", "-l", metavar="CELL=FILE", help="Labels of a cell line, for the label-balance summary; repeatable.")] = None,
    build: Annotated[Build | None, typer.Option("--build", metavar=_choices(BUILDS), help="Genome build for TSVs with per-build columns.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Assign every (gene, cell line) to folds or roles; all models train on these folds."""
    from epx import console
    from epx.errors import SplitError
    from epx.outputs import atomic_file, check_output
    from epx.split import RANDOM_WARNING, load_split_input, make_split, summarize, write_split

    chosen = [n for n, v in (("--loco", loco), ("--chr-kfold", chr_kfold), ("--holdout", holdout), ("--random", random)) if v]
    if len(chosen) != 1:
        raise SplitError("choose exactly one of --loco, --chr-kfold K, --holdout VAL_CHROMS, --random K"
                         + (f" (got {', '.join(chosen)})" if chosen else ""))
    check_output(output, force, "split")
    genes, dataset_cells, label_table = load_split_input(input, labels or [], build)
    from epx.io.chroms import parse_chrom_list

    scheme = {"--loco": "loco", "--chr-kfold": "chr-kfold", "--holdout": "holdout", "--random": "random"}[chosen[0]]
    table = make_split(
        genes,
        scheme,
        k=chr_kfold or random,
        valid_chroms=parse_chrom_list(holdout) if holdout else [],
        test_chroms=parse_chrom_list(test) if test else [],
        cells=_split_list(cells) or dataset_cells,
        train_cells=_split_list(train_cells),
        test_cells=_split_list(test_cells),
        seed=seed,
    )
    if scheme == "random":
        console.warn(RANDOM_WARNING)
    with atomic_file(output, "split", force=force) as tmp:
        write_split(table, tmp)
    summary = summarize(table, label_table)
    fixed = sorted(set(table.loc[table["fold"] == "test", "chrom"]))
    note = f"; {', '.join(fixed)} tested in every fold" if fixed else ""
    console.table(f"{scheme} split: {table['gene_id'].nunique():,} genes x {table['cell_line'].nunique()} cell line(s){note}",
                  list(summary.columns), summary.values.tolist())
    console.info(f"wrote {output}")


# -- epx featurize ------------------------------------------------------------------------------


@app.command(short_help="Tracks -> features and binned tracks.")
def featurize(
    genes: Annotated[list[Path] | None, typer.Option("--genes", "-g", metavar="FILE", help="Gene table(s): ML4G TSV, BED6, GTF or a TSV with a TSS column; repeatable.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m", metavar="FILE", help="Track manifest (TSV or YAML): cell_line, assay, kind, path.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="DIR", help="Dataset directory to write.")] = None,
    labels: Annotated[list[str] | None, typer.Option("--labels", "-l", metavar="CELL=FILE", help="Expression labels of a cell line; repeatable.")] = None,
    assays: Annotated[list[str] | None, typer.Option("--assays", metavar="ASSAYS", help="Only these assays of the manifest, e.g. H3K4me3,DNase.", autocompletion=complete_assay)] = None,
    cells: Annotated[list[str] | None, typer.Option("--cells", metavar="CELLS", help="Only these cell lines of the manifest (with --fasta and no --manifest: the dataset's cell lines; default: those of --labels).", autocompletion=complete_cell)] = None,
    chroms: Annotated[str | None, typer.Option("--chroms", metavar="CHROMS", help="Only the genes on these chromosomes, e.g. chr1,chr2: a part for epx merge (train refuses it).", autocompletion=complete_chroms)] = None,
    tss_window: Annotated[int, typer.Option("--tss-window", metavar="BP", help="TSS window size.")] = 100,
    tss_mode: Annotated[TssMode, typer.Option("--tss-mode", metavar=_choices(TSS_MODES), help="one-sided (downstream of the TSS, strand-aware) or both.")] = "one-sided",
    promoter: Annotated[int, typer.Option("--promoter", metavar="BP", help="Promoter half-width around the TSS.")] = 1000,
    flank: Annotated[int, typer.Option("--flank", metavar="BP", help="Upstream/downstream flank size.")] = 5000,
    bins: Annotated[str, typer.Option("--bins", metavar="WxN[,WxN...]", help="Bin geometries around the TSS for neural backends: bin width x bin count, e.g. 100x100 (TSS +- 5 kb) or Chromoformer's 2000x20,500x80,100x400; the first is the default. A plain N means N bins of --bin-size.")] = "100x100",
    bin_size: Annotated[int | None, typer.Option("--bin-size", metavar="BP", help="Bin width when --bins is a plain count.")] = None,
    no_bins: Annotated[bool, typer.Option("--no-bins", help="Skip binned tracks (tabular features only).")] = False,
    pairs: Annotated[list[str] | None, typer.Option("--pairs", metavar="[CELL=]FILE", help="Promoter-to-region contacts (pcHi-C: BEDPE, CHiCAGO .ibed, WashU longrange, or Chromoformer's gene_id/neighbors/scores table); each gene's strongest regions are binned beside its promoter. CELL=FILE for one cell line; repeatable.")] = None,
    max_regions: Annotated[int, typer.Option("--max-regions", min=1, metavar="N", help="Distal regions kept per gene, by contact score.")] = 8,
    max_region_width: Annotated[int, typer.Option("--max-region-width", min=1, metavar="BP", help="Regions wider than this are clipped around their centre; every region is binned in a frame this wide.")] = 40_000,
    fasta: Annotated[Path | None, typer.Option("--fasta", metavar="REF", help="Reference genome FASTA (plain or bgzipped) for sequence models; recorded, not copied: one-hot windows around each TSS are built from it per batch. Without --manifest the dataset holds only the reference and labels.")] = None,
    sequence_window: Annotated[int | None, typer.Option("--sequence-window", metavar="BP", help="Reference window length for sequence models, the TSS at index BP//2 on the forward strand [default: 196608, Enformer's input, with --fasta].")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, metavar="N", help="Parallel track workers (default: all cores).")] = None,
    build: Annotated[Build | None, typer.Option("--build", metavar=_choices(BUILDS), help="Genome build for TSVs with per-build columns.")] = None,
    list_features: Annotated[bool, typer.Option("--list-features", help="Print every feature name with a description and exit.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild the output even if it is up to date (replaces it only if epx wrote it).")] = False,
) -> None:
    """Turn a gene table and bigWig/BED tracks into a dataset: tabular features and binned tracks (and, with --fasta, a reference for sequence models)."""
    from epx import console
    from epx.errors import EpxError
    from epx.features.geometry import parse_bins
    from epx.featurize import FeaturizeParams
    from epx.featurize import featurize as run_featurize
    from epx.io.chroms import parse_chrom_list

    if bins.strip().isdigit():  # the old --bins N [--bin-size BP]
        geometries = parse_bins(f"{bin_size or 100}x{bins.strip()}")
    else:
        if bin_size is not None:
            raise EpxError("--bin-size goes with a plain --bins N; with --bins WIDTHxCOUNT the width is in the spec")
        geometries = parse_bins(bins)
    first, *more = geometries
    params = FeaturizeParams(tss_window=tss_window, tss_mode=tss_mode, promoter=promoter, flank=flank,
                             n_bins=first.n_bins, bin_size=first.bin_size, bins=not no_bins,
                             more_bins=tuple((b.bin_size, b.n_bins) for b in more), max_regions=max_regions,
                             max_region_width=max_region_width)
    if list_features:
        from epx.features.derived import feature_catalogue

        bw, bed = ["H3K27ac", "H3K4me3", "H3K27me3", "H3K36me3", "H3K4me1", "H3K9me3", "DNase"], None
        if manifest is not None:
            from epx.io.manifest import read_manifest

            m = read_manifest(manifest, check_files=False)
            bw = list(dict.fromkeys(m.loc[m["kind"] == "bigwig", "assay"]))
            bed = list(dict.fromkeys(m.loc[m["kind"] == "bed", "assay"]))
        for name, description in feature_catalogue(bw, bw if bed is None else bed, params):
            typer.echo(f"{name}\t{description}")
        return
    missing = [opt for opt, v in (("--genes", genes), ("--manifest", manifest or fasta), ("--output", output)) if not v]
    if missing:
        missing = ["--manifest (or --fasta)" if m == "--manifest" else m for m in missing]
        raise EpxError(f"featurize needs {', '.join(missing)} (or --list-features)")
    summary = run_featurize(genes, manifest, output, labels=labels or [], params=params, build=build,
                            workers=workers, force=force, assays=_split_list(assays), cells=_split_list(cells),
                            pairs=pairs or [], fasta=fasta, sequence_window=sequence_window,
                            chroms=parse_chrom_list(chroms) if chroms else ())
    if summary["up_to_date"]:
        console.info(f"{output} is up to date (same inputs and parameters); use --force to rebuild")
        return
    console.table(f"Dataset {output}", ["item", "value"], [
        ["genes", f"{summary['genes']:,}"],
        ["cell lines", ", ".join(summary["cell_lines"])],
        ["assays", ", ".join(summary["assays"]) or "none (no --manifest)"],
        ["tabular features", f"{summary['features']:,} per (gene, cell line)" if summary["features"] else "none"],
        ["binned tracks", (" x ".join(map(str, summary["bins"][:3])) + " x " + ", ".join(summary["geometries"]))
         if summary["bins"] else "none"],
        *([["distal regions", f"{summary['regions']['regions']:,} regions of "
            + ", ".join(f"{n:,} genes ({c})" for c, n in summary["regions"]["genes"].items())]]
          if summary.get("regions") else []),
        *([["reference", f"{summary['sequence']['fasta']} ({summary['sequence']['window']:,} bp windows, "
            "built per batch)"]] if summary.get("sequence") else []),
    ])
    console.info(f"wrote {output}")


@app.command(short_help="Combine featurize parts into one dataset.")
def merge(
    datasets: Annotated[list[Path], typer.Argument(metavar="DATASET...", help="Parts written by epx featurize --cells, --assays or --chroms.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Dataset directory to write.")],
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Combine datasets featurized in parts (split by cell line, assay or chromosome) into the dataset one featurize over everything writes."""
    from epx import console
    from epx.merge import merge as run_merge

    summary = run_merge(datasets, output, force=force)
    console.table(f"Dataset {output}", ["item", "value"], [
        ["parts", str(summary["parts"])],
        ["genes", f"{summary['genes']:,} on {len(summary['chroms'])} chromosome(s)"],
        ["cell lines", ", ".join(summary["cell_lines"])],
        ["assays", ", ".join(summary["assays"])],
        ["tabular features", f"{summary['features']:,} per (gene, cell line)"],
    ])
    console.info(f"wrote {output}")


# -- epx train / epx ablate ---------------------------------------------------------------------
# The options both commands take, declared once; _training() turns them into the trainer's options.

_Dataset = Annotated[Path, typer.Argument(metavar="DATASET", help="Dataset directory (epx featurize or epx import).")]
_Model = Annotated[str, typer.Option("--model", metavar="NAME", help="Model plugin name (see epx models).", autocompletion=complete_model)]
_SplitFile = Annotated[Path | None, typer.Option("--split", metavar="FILE", help="A split table from epx split.")]
_SplitSubset = Annotated[bool, typer.Option("--split-subset", help="Allow a --split file covering only some of the dataset's genes (train and predict on those).")]
_Loco = Annotated[bool, typer.Option("--loco", help="Leave one chromosome out.")]
_ChrKfold = Annotated[int | None, typer.Option("--chr-kfold", metavar="K", help="K folds of whole chromosomes.")]
_Holdout = Annotated[str | None, typer.Option("--holdout", metavar="CHROMS", help="Validation chromosomes (holdout protocol).", autocompletion=complete_chroms)]
_Random = Annotated[int | None, typer.Option("--random", metavar="K", help="K random gene-level folds (positional leakage inflates scores).")]
_Test = Annotated[str | None, typer.Option("--test", metavar="CHROMS", help="Held-out test chromosomes, predicted by every fold.", autocompletion=complete_chroms)]
_TrainCells = Annotated[list[str] | None, typer.Option("--train-cells", metavar="CELLS", help="Cell lines to train on.", autocompletion=complete_cell)]
_TestCells = Annotated[list[str] | None, typer.Option("--test-cells", metavar="CELLS", help="Unseen cell lines to predict (and evaluate when labelled).", autocompletion=complete_cell)]
_TestCellsOld = Annotated[list[str] | None, typer.Option("--predict-cells", hidden=True, help="Old name of --test-cells.", autocompletion=complete_cell)]
_TargetOpt = Annotated[Target | None, typer.Option("--target", metavar=_choices(TARGETS), help="What to predict (default: rank if the model supports it).")]
_Param = Annotated[list[str] | None, typer.Option("--param", "-p", metavar="KEY=VALUE", help="Model parameter; repeatable.", autocompletion=complete_param)]
_Config = Annotated[Path | None, typer.Option("--config", metavar="FILE", help="TOML or YAML file of model parameters.")]
_Seed = Annotated[int, typer.Option("--seed", metavar="N", min=0, help="Seed for the model and split tie-breaks (>= 0).")]
_Seeds = Annotated[int, typer.Option("--seeds", metavar="K", help="Train each fold with K seeds (seed, seed+1, ...); predictions are the seed-averaged ensemble.")]
_Force = Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")]


def _training(*, model: str, split_file: Path | None, split_subset: bool, loco: bool, chr_kfold: int | None,
              holdout: str | None, random: int | None, test: str | None, train_cells: list[str] | None,
              predict_cells: list[str] | None, predict_cells_old: list[str] | None, target: str | None,
              param: list[str] | None, config: Path | None, seed: int, **extra):  # type: ignore[no-untyped-def]
    """The trainer's (TrainOptions, SplitOptions) from the options train and ablate share; ``extra``
    goes to TrainOptions as it is (inner_k, shap_rows, assays, ...)."""
    from epx import console
    from epx.errors import SplitError
    from epx.io.chroms import parse_chrom_list
    from epx.models.plugins import parse_param_options, read_param_config
    from epx.train import SplitOptions, TrainOptions

    chosen = [n for n, v in (("--split", split_file), ("--loco", loco), ("--chr-kfold", chr_kfold), ("--holdout", holdout), ("--random", random)) if v]
    if len(chosen) > 1:
        raise SplitError(f"choose one of --split, --loco, --chr-kfold, --holdout, --random (got {', '.join(chosen)})")
    overrides = dict(read_param_config(config, model)) if config else {}
    overrides.update(parse_param_options(param or []))
    scheme = {"--loco": "loco", "--chr-kfold": "chr-kfold", "--holdout": "holdout", "--random": "random"}.get(chosen[0]) if chosen and chosen[0] != "--split" else None
    if scheme == "random":
        from epx.split import RANDOM_WARNING

        console.warn(RANDOM_WARNING)
    split_opts = SplitOptions(file=split_file, scheme=scheme, k=chr_kfold or random,
                              valid_chroms=parse_chrom_list(holdout) if holdout else [],
                              test_chroms=parse_chrom_list(test) if test else [], seed=seed, allow_subset=split_subset)
    options = TrainOptions(model=model, target=target, params=overrides, train_cells=_split_list(train_cells),
                           predict_cells=_split_list(_alias_list(predict_cells, predict_cells_old)), seed=seed, **extra)
    return options, split_opts


@app.command(short_help="Cross-validate a model; write a run.")
def train(
    dataset: _Dataset,
    model: _Model,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Run directory to write.")],
    split_file: _SplitFile = None,
    split_subset: _SplitSubset = False,
    loco: _Loco = False,
    chr_kfold: _ChrKfold = None,
    holdout: _Holdout = None,
    random: _Random = None,
    test: _Test = None,
    train_cells: _TrainCells = None,
    predict_cells: _TestCells = None,
    predict_cells_old: _TestCellsOld = None,
    assays: Annotated[list[str] | None, typer.Option("--assays", metavar="ASSAYS", help="Train on these assays only, e.g. H3K4me3,H3K27ac (binned models: their tracks; tabular: their own features, cross-mark ones left out).", autocompletion=complete_assay)] = None,
    bins: Annotated[str | None, typer.Option("--bins", metavar="WxN[,WxN...]", help="Binned models: which of the dataset's bin geometries to read (default: the model's own, else the dataset's first), e.g. 100x100.")] = None,
    target: _TargetOpt = None,
    param: _Param = None,
    config: _Config = None,
    inner: Annotated[tuple[str, int] | None, typer.Option("--inner", metavar="chr-kfold K", help="Nested CV: K inner chr-kfold models per outer fold (early stopping), averaged.")] = None,
    seed: _Seed = 0,
    seeds: _Seeds = 1,
    shap_rows: Annotated[int, typer.Option("--shap-rows", metavar="N", help="Test rows per fold to explain with SHAP (0 = none).")] = 500,
    fold: Annotated[list[str] | None, typer.Option("--fold", metavar="NAMES", help="Train these outer folds only (repeatable or comma-separated) into a partial run; epx collect assembles the parts.")] = None,
    only_seed: Annotated[list[str] | None, typer.Option("--only-seed", metavar="S", help="With --seeds K: train these seed values only (repeatable or comma-separated) into a partial run; epx collect assembles the parts.")] = None,
    force: _Force = False,
) -> None:
    """Train a model with chromosome-aware cross-validation and write a run directory."""
    from epx import console
    from epx.errors import SplitError
    from epx.train import train as run_train

    if inner is not None and inner[0] != "chr-kfold":
        raise SplitError(f"--inner supports chr-kfold K (inner folds are whole chromosomes), got {inner[0]!r}")
    options, split_opts = _training(
        model=model, split_file=split_file, split_subset=split_subset, loco=loco, chr_kfold=chr_kfold, holdout=holdout,
        random=random, test=test, train_cells=train_cells, predict_cells=predict_cells, predict_cells_old=predict_cells_old,
        target=target, param=param, config=config, seed=seed, seeds=seeds, inner_k=inner[1] if inner else None, shap_rows=shap_rows,
        assays=list(dict.fromkeys(_split_list(assays))), bins=tuple(_split_list([bins] if bins else None)),
        folds=list(dict.fromkeys(_split_list(fold))), only_seeds=_seed_list(only_seed))
    summary = run_train(dataset, output, options, split_opts, force=force)
    if "secondary_rank" in summary:  # rank 0 of the multi-process training writes and reports
        return
    if "partial" in summary:
        part = summary["partial"]
        keys = [k for k in (summary["folds"][0] if summary["folds"] else {}) if k not in ("fold", "seed")]
        console.table(f"{model} on {dataset}: partial run", ["fold", "seed", *keys],
                      [[m["fold"], str(m["seed"]), *[_fmt(m[k]) for k in keys]] for m in summary["folds"]])
        console.info(f"wrote {output} (partial: folds {', '.join(part['folds'])}, seeds "
                     f"{', '.join(map(str, part['seeds']))}; assemble the parts with epx collect)")
        return
    _print_metrics(summary, f"{model} on {dataset}")
    console.info(f"wrote {output}")


def _seed_list(values: list[str] | None) -> list[int]:
    from epx.errors import EpxError

    out = []
    for v in _split_list(values):
        try:
            out.append(int(v))
        except ValueError:
            raise EpxError(f"--only-seed takes seed values (integers), got {v!r}") from None
    return list(dict.fromkeys(out))


@app.command(short_help="Assemble partial runs (epx train --fold) into one run.")
def collect(
    parts: Annotated[list[Path], typer.Argument(metavar="RUN_PART...", help="Partial runs of epx train --fold/--only-seed (together every fold and seed once), or epx personalize --shard parts.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Run directory to write.")],
    force: _Force = False,
) -> None:
    """Assemble partial runs into the run one epx train process writes (same predictions and metrics),
    or the parts of `epx personalize --shard I/N` into one personalize output."""
    from epx import console
    from epx.outputs import epx_kind

    if parts and parts[0].is_dir() and epx_kind(parts[0]) == "personalize":
        from epx.personalize import collect_personalize

        done = collect_personalize(list(parts), output, force=force)
        console.info(f"collected {len(parts)} personalize parts: {done['genes']:,} genes x {done['individuals']:,} "
                     "individuals")
        console.info(f"wrote {output}")
        return
    from epx.collect import collect as run_collect

    summary = run_collect(parts, output, force=force)
    _print_metrics(summary, f"collected {len(parts)} parts")
    console.info(f"wrote {output}")


def _complete_ablation_mode(incomplete: str) -> list[str]:
    from epx.completion import _complete_from

    return _complete_from(list(ABLATION_MODES), incomplete)


@app.command(short_help="Which assays predict best: train on subsets.")
def ablate(
    dataset: _Dataset,
    model: _Model,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Ablation directory to write.")],
    modes: Annotated[list[str] | None, typer.Option("--assays", metavar=_choices(ABLATION_MODES), help="Assay subsets to train on, a comma list or repeated: each (every assay alone), leave-one-out (all but one), all. Default: each,all.", autocompletion=_complete_ablation_mode)] = None,
    split_file: _SplitFile = None,
    split_subset: _SplitSubset = False,
    loco: _Loco = False,
    chr_kfold: _ChrKfold = None,
    holdout: _Holdout = None,
    random: _Random = None,
    test: _Test = None,
    train_cells: _TrainCells = None,
    predict_cells: _TestCells = None,
    predict_cells_old: _TestCellsOld = None,
    target: _TargetOpt = None,
    param: _Param = None,
    config: _Config = None,
    seed: _Seed = 0,
    seeds: _Seeds = 1,
    n_boot: Annotated[int, typer.Option("--bootstrap", min=100, metavar="N", help="Bootstrap resamples over genes for the intervals.")] = 1000,
    force: _Force = False,
) -> None:
    """Train the same model on each assay alone, on all but one and on all, under one split
    (written once as DIR/split.tsv), and rank them per cell line: DIR/leaderboard.tsv and
    DIR/leaderboard.png, with epx report's 95% bootstrap intervals and paired differences
    against all. Each variant is a run in DIR/runs/."""
    from epx import console
    from epx.ablate import ablate as run_ablate
    from epx.ablate import parse_modes
    from epx.report import PRIMARY, wide

    chosen = parse_modes(modes or [])
    extra = {"shap_rows": 0, "seeds": seeds}  # SHAP is not what an ablation asks
    options, split_opts = _training(
        model=model, split_file=split_file, split_subset=split_subset, loco=loco, chr_kfold=chr_kfold, holdout=holdout,
        random=random, test=test, train_cells=train_cells, predict_cells=predict_cells, predict_cells_old=predict_cells_old,
        target=target, param=param, config=config, seed=seed, **extra)
    result = run_ablate(dataset, output, options, split_opts, modes=chosen, force=force, n_boot=n_boot)
    board = result["board"]
    header, rows = wide(board[board["metric"] == PRIMARY])  # every metric is in DIR/leaderboard.tsv
    header = ["variant" if h == "entry" else h for h in header]
    console.table(f"Ablation of {model} on {dataset}: 95% intervals from {n_boot} bootstrap resamples of genes; "
                  f"ref = {result['reference'] or 'the best variant'}", header, rows)
    console.info(f"wrote {output}")


@app.command(short_help="Apply a trained run to new data.")
def predict(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (epx train).", metavar="RUN")],
    dataset: Annotated[Path, typer.Argument(help="Dataset to predict (epx featurize), e.g. a new cell line.", metavar="DATASET")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Prediction directory to write.", metavar="DIR")],
    cells: Annotated[list[str] | None, typer.Option("--cells", help="Only these cell lines of the dataset.", metavar="CELLS",
                                                    autocompletion=complete_cell)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Predict every (gene, cell line) of DATASET with RUN's fold models (their mean); scores the
    predictions when DATASET has labels. `epx submit` and `epx report` accept the output."""
    from epx import console
    from epx.predict import predict as run_predict

    s = run_predict(run_dir, dataset, output, cells=_split_list(cells), force=force)
    rows = [["rows", f"{s['rows']:,} ({', '.join(s['cell_lines'])})"], ["fold models averaged", str(s["folds"])]]
    if s["trained_on"]:
        rows.append(["rows the run trained on (in-sample)", f"{s['trained_on']:,}"])
    if s["gene_trained_on"]:
        rows.append(["rows of genes trained on in some cell line (not scored)", f"{s['gene_trained_on']:,}"])
    console.table(f"Predictions of {run_dir} on {dataset}", ["item", "value"], rows)
    if s["metrics"]:
        keys = [k for k in next(iter(s["metrics"]["by_cell_line"].values()), {}) if k != "n"]
        console.table("Metrics", ["cell line", "n", *keys], [[c, _fmt(m["n"]), *[_fmt(m[k]) for k in keys]]
                                                           for c, m in s["metrics"]["by_cell_line"].items()])
    console.info(f"wrote {output}")


def _print_metrics(summary: dict, title: str) -> None:
    from epx import console

    folds = summary["folds"]
    keys = [k for k in (folds[0] if folds else {}) if k not in ("fold",)]
    rows = [[f["fold"], *[_fmt(f[k]) for k in keys]] for f in folds]
    stats = summary["fold_mean_sd"]
    rows.append(["mean +- sd", "", *[f"{_fmt(stats[k]['mean'])} +- {_fmt(stats[k]['sd'])}" for k in keys if k != "n"]])
    spread = summary.get("seeds")  # --seeds K > 1: the rows above are the seed ensemble's
    for name, block in summary["overall"].items():
        for cell, m in block["by_cell_line"].items():
            if m.get("n"):  # unlabelled cell lines (e.g. the one to submit) have nothing to score
                rows.append([f"{name} {cell}", *[_fmt(m.get(k)) for k in keys]])
                per_seed = spread.get(name, {}).get("by_cell_line", {}).get(cell) if spread else None
                if per_seed:
                    rows.append([f"{name} {cell} seeds", "",
                                 *[f"{_fmt(per_seed[k]['mean'])} +- {_fmt(per_seed[k]['sd'])}" for k in keys if k != "n"]])
    if spread:
        title += f" ({len(spread['seeds'])}-seed ensemble; 'seeds' rows: mean +- sd across seeds)"
    console.table(title, ["fold", *keys], rows)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return "nan" if v != v else f"{v:.3f}"


# -- epx stack / submit / explain ---------------------------------------------------------------


@app.command(short_help="Expression of individuals from their genotypes (Enformer).")
def personalize(
    genes: Annotated[Path, typer.Option("--genes", help="Gene table (TSS, strand): the windows are centred on the TSS.", metavar="FILE")],
    fasta: Annotated[Path, typer.Option("--fasta", help="Reference FASTA the genotypes were called on.", metavar="FILE")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Directory for the predictions.", metavar="OUT")] = None,
    vcf: Annotated[Path | None, typer.Option("--vcf", help="Phased genotypes: bgzipped + indexed VCF, or indexed BCF.", metavar="FILE")] = None,
    plink: Annotated[Path | None, typer.Option("--plink", help="PLINK 1 genotypes: PREFIX of .bed/.bim/.fam (unphased: needs --unphased as-listed).", metavar="PREFIX")] = None,
    expression: Annotated[Path | None, typer.Option("--expression", help="Measured expression, GTEx style (chrom, start, end, gene_id, one column per individual): evaluate on held-out individuals.", metavar="FILE")] = None,
    samples: Annotated[list[str] | None, typer.Option("--samples", help="Only these individuals (comma-separated or repeated).", metavar="IDS")] = None,
    chroms: Annotated[str | None, typer.Option("--chroms", help="Only genes on these chromosomes.", metavar="CHROMS")] = None,
    model: Annotated[str, typer.Option("--model", help="Sequence model plugin (epx.predictors).", metavar="NAME")] = "enformer",
    weights: Annotated[Path | None, typer.Option("--weights", help="Model weights (a directory or checkpoint); default $EPX_ENFORMER_WEIGHTS, then ~/.cache/epx/enformer.", metavar="DIR")] = None,
    tracks: Annotated[list[str] | None, typer.Option("--track", help="Output track by index or name (e.g. 'CAGE:liver'); repeatable.", metavar="TRACK")] = None,
    targets: Annotated[Path | None, typer.Option("--targets", help="The model's track list (targets_human.txt) to pick tracks by name.", metavar="FILE")] = None,
    center_bins: Annotated[int, typer.Option("--center-bins", min=1, help="Output bins around the TSS summed per track.", metavar="N")] = 3,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (asking for an absent GPU is an error).", metavar="DEVICE")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per model call.", metavar="N")] = 4,
    window: Annotated[int | None, typer.Option("--window", min=1, help="Window length with --sequences-only (default: the model's, 196,608 for Enformer).", metavar="BP")] = None,
    write_sequences: Annotated[Path | None, typer.Option("--write-sequences", help="Also write every window as FASTA: SAMPLE|GENE_ID|1, SAMPLE|GENE_ID|2, REF|GENE_ID|0.", metavar="FILE.fa")] = None,
    sequences_only: Annotated[bool, typer.Option("--sequences-only", help="Write the windows (--write-sequences) and stop; no model needed.")] = False,
    unphased: Annotated[str, typer.Option("--unphased", help="Unphased heterozygous calls: error, or as-listed (alleles in the order written, as bcftools consensus -H 1/-H 2).", metavar="MODE")] = "error",
    ref_mismatch: Annotated[str, typer.Option("--ref-mismatch", help="A REF allele the FASTA disagrees with: error, or skip (counted).", metavar="MODE")] = "error",
    variant_effects: Annotated[bool, typer.Option("--variant-effects", help="Also predict each variant alone against the reference (delta at the TSS).")] = False,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Folds over individuals for the evaluation.", metavar="K")] = 5,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the folds over individuals.")] = 0,
    en_alphas: Annotated[int, typer.Option("--en-alphas", min=2, help="Penalties on the elastic net's path (glmnet's default 100; fewer is faster).", metavar="N")] = 100,
    inner_folds: Annotated[int, typer.Option("--inner-folds", min=2, help="Inner folds choosing the elastic net's penalty and nesting the stack's inputs.", metavar="K")] = 5,
    cis_window: Annotated[int, typer.Option("--cis-window", min=1, help="Variants within this many bp of the TSS feed the elastic net (PrediXcan: 1 Mb).", metavar="BP")] = 1_000_000,
    allow_missing_individuals: Annotated[bool, typer.Option("--allow-missing-individuals", help="Evaluate without the expression individuals that have no genotypes (default: an error).")] = False,
    shard: Annotated[str | None, typer.Option("--shard", help="Run part I of N (e.g. 2/8) of the genes (or --shard-by individuals); `epx collect` joins the parts.", metavar="I/N")] = None,
    shard_by: Annotated[str, typer.Option("--shard-by", help="What --shard splits: genes or individuals.", metavar="WHAT")] = "genes",
    cache: Annotated[Path | None, typer.Option("--cache", help="Prediction cache (SQLite) shared by runs; default ~/.cache/epx/personalize.sqlite.", metavar="FILE")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Keep predictions in memory only.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Predict each individual's expression from its two haplotypes: exact windows (as bcftools
    consensus writes them), identical windows predicted once, predictions cached by sequence hash.
    With --expression, evaluated on held-out individuals beside a PrediXcan-style elastic net."""
    from epx import console
    from epx.personalize import PersonalizeOptions
    from epx.personalize import personalize as run_personalize

    for name, value, allowed in (("--unphased", unphased, ("error", "as-listed")), ("--ref-mismatch", ref_mismatch, ("error", "skip"))):
        if value not in allowed:
            raise EpxError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    shard_part = None
    if shard is not None:
        i, sep, n = shard.partition("/")
        if not sep or not i.strip().isdigit() or not n.strip().isdigit():
            raise EpxError(f"--shard expects I/N such as 2/8, got {shard!r}")
        shard_part = (int(i), int(n))
    model_options = {"weights": None if weights is None else str(weights), "tracks": _split_list(tracks) or None,
                     "targets": None if targets is None else str(targets), "center_bins": center_bins,
                     "device": device, "batch_size": batch_size}
    options = PersonalizeOptions(
        genes=genes, fasta=fasta, vcf=vcf, plink=plink, output=output, expression=expression,
        samples=_split_list(samples) or None, chroms=_split_list([chroms]) if chroms else None, model=model,
        model_options=model_options, window=window, sequences_only=sequences_only, write_sequences=write_sequences,
        unphased=unphased, ref_mismatch=ref_mismatch, variant_effects=variant_effects, folds=folds, seed=seed,
        allow_missing_individuals=allow_missing_individuals, cis_window=cis_window, en_alphas=en_alphas,
        inner_folds=inner_folds, shard=shard_part, shard_by=shard_by, cache=cache, use_cache=not no_cache, force=force)
    s = run_personalize(options)
    rows = [["genes x individuals", f"{s['genes']:,} x {s['individuals']:,}"], ["window", f"{s['window']:,} bp"],
            ["variants", f"{s['variants']:,}"],
            ["windows requested / distinct", f"{s['windows_requested']:,} / {s['windows_unique']:,}"]]
    if s["model"]:
        speed = s["sequences_per_second"]
        rows += [["predicted / cache hits", f"{s['windows_predicted']:,} / {s['cache_hits']:,}"],
                 ["model speed", f"{speed:.2f} windows/s" if speed else "-"]]
    console.table("epx personalize", ["item", "value"], rows)
    ev = s.get("evaluation")
    if ev:
        methods = ev.get("methods", {})
        console.table("Held-out individuals: per-gene correlation", ["method", "median Pearson", "median Spearman", "wrong sign", "genes"],
                      [[v.get("label", m), _fmt(v.get("median_pearson")), _fmt(v.get("median_spearman")), _fmt(v.get("frac_wrong_sign")),
                        str(v.get("n_genes", ""))] for m, v in methods.items()])
    console.info(f"wrote {write_sequences if sequences_only else output}")


@app.command(short_help="Combine runs' predictions.")
def stack(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="Run (or stack) directories over the same genes and cell lines.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Stack directory to write.")],
    rule: Annotated[StackRule, typer.Option("--rule", metavar=_choices(STACK_RULES), help="seed (mean rank x mean-probability mask), mean, rank-mean or nnls.")] = "seed",
    threshold: Annotated[float, typer.Option("--threshold", metavar="P", help="Probability threshold of the seed rule's mask.")] = 0.4,
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Combine runs' predictions; reports the stack's out-of-fold metrics next to each run's."""
    from epx import console
    from epx.stack import stack as run_stack

    summary = run_stack(runs, output, rule=rule, threshold=threshold, force=force)
    if summary["dropped_cell_lines"]:
        console.warn(f"stacking {', '.join(summary['cell_lines'])} only: not every run predicts "
                     f"{', '.join(summary['dropped_cell_lines'])}")
    _print_stack(summary)
    if summary["weights"] is not None:
        console.info("nnls weights: " + ", ".join(f"{Path(r).name}={w:.3f}" for r, w in zip(summary["runs"], summary["weights"], strict=True)))
    console.info(f"wrote {output}")


@app.command(short_help="Write the ML4G submission zip.")
def submit(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run or stack directory with predictions for the cell line.")],
    cell: Annotated[str, typer.Option("--cell", metavar="CELL", help="Cell line to submit, e.g. X3.", autocompletion=complete_run_cell)],
    genes: Annotated[Path, typer.Option("--genes", metavar="FILE", help="Test gene table, e.g. X3_test_info.tsv (defines row order).")],
    last_name: Annotated[str, typer.Option("--last-name", metavar="NAME", help="Your last name (zip file name).")],
    first_name: Annotated[str, typer.Option("--first-name", metavar="NAME", help="Your first name (zip file name).")],
    out_dir: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Directory to write the zip to.")] = Path("."),
    out_dir_old: Annotated[Path | None, typer.Option("--out-dir", hidden=True, help="Old name of --output.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Write gex_predicted.csv inside LastName_FirstName_Project1.zip, after the format checks."""
    from epx import console
    from epx.submit import write_submission

    out_dir = _alias_value(out_dir, out_dir_old, Path("."), "--output and --out-dir")
    s = write_submission(run_dir, cell, genes, last_name, first_name, out_dir, force)
    console.table(f"Submission {s['zip']}", ["item", "value"], [["rows", f"{s['rows']:,}"], ["min / median / max",
                  f"{s['min']:.4g} / {s['median']:.4g} / {s['max']:.4g}"], ["predicted zero", f"{s['zero']:.1%}"]])
    console.info(f"wrote {s['zip']}")


@app.command(short_help="Leaderboard of runs, stacks and predictions.")
def report(
    entries: Annotated[list[Path], typer.Argument(help="Run, stack or prediction directories over the same rows.", metavar="RUN_OR_STACK...")],
    baseline: Annotated[str | None, typer.Option("--baseline", metavar="RUN", help="Compare every entry with this one (default: the best).")] = None,
    intersect: Annotated[bool, typer.Option("--intersect", help="Compare entries over different genes on the genes they share.")] = False,
    fmt: Annotated[ReportFormat, typer.Option("--format", metavar=_choices(REPORT_FORMATS), help="Output format.")] = "table",
    plot_path: Annotated[Path | None, typer.Option("--plot", metavar="FILE", help="PNG of the intervals per entry.")] = None,
    n_boot: Annotated[int, typer.Option("--bootstrap", metavar="N", help="Bootstrap resamples over genes.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the bootstrap.")] = 0,
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Leave out the TSS-signal baselines.")] = False,
    all_baselines: Annotated[bool, typer.Option("--all-baselines", help="Show every assay's TSS baseline in table and md (default: the best one).")] = False,
) -> None:
    """Score runs, stacks and predictions side by side on the same genes, per cell line, for held-out
    test rows and out-of-fold rows: each metric with a 95% bootstrap interval over genes and a paired
    bootstrap difference against the best entry (or --baseline). Each assay's TSS signal, used as a
    score without training, is shown as a baseline."""
    import json

    from epx import console
    from epx.report import best_baseline_only, leaderboard, load_entries, markdown, plot, wide

    if plot_path is not None:
        from epx.outputs import check_plot_path

        check_plot_path(plot_path)  # before the bootstrap, not after it
    loaded = load_entries(entries)
    if len(loaded) == 1 and fmt == "table" and loaded[0].path is not None:
        summary = json.loads((loaded[0].path / "metrics.json").read_text()) if (loaded[0].path / "metrics.json").is_file() else None
        if summary and "folds" in summary:
            _print_metrics(summary, f"{loaded[0].path}: per fold")
    board = leaderboard(loaded, reference=baseline, intersect=intersect, n_boot=n_boot, seed=seed, baselines=not no_baselines)
    if fmt == "json":
        typer.echo(json.dumps(board.astype(object).where(board.notna(), None).to_dict(orient="records"), indent=1))
    elif fmt == "tsv":
        typer.echo(board.to_csv(sep="\t", index=False, na_rep="NA"), nl=False)
    else:
        header, rows = wide(board if all_baselines else best_baseline_only(board))
        if fmt == "md":
            typer.echo(markdown(header, rows), nl=False)
        else:
            console.table(f"Leaderboard: 95% intervals from {n_boot} bootstrap resamples of genes; ref = "
                          f"{baseline or 'the best entry'}; tss:ASSAY = the assay's TSS signal as a score", header, rows)
    if plot_path is not None:
        plot(board, plot_path, "epx report")
        console.info(f"wrote {plot_path}")


def _print_stack(summary: dict) -> None:
    from epx import console

    keys = ["auroc", "auprc", "spearman"] if summary["task"] == "binary" else ["spearman", "pearson", "r2", "mse"]
    rows = [[Path(c["run"]).name if c["run"] != "stack" else f"stack ({summary['rule']})", c["cell_line"],
             *[_fmt(c[k]) for k in keys]] for c in summary["comparison"]]
    title = "Out-of-fold metrics" if summary.get("scored", "oof") == "oof" else "Test metrics (holdout runs)"
    console.table(title, ["run", "cell line", *keys], rows)


@app.command(short_help="What a run relied on: features, or attention and saliency.")
def explain(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="DIR", help="Binned runs: explanation directory to write.")] = None,
    rows: Annotated[int | None, typer.Option("--rows", min=1, metavar="N", help="Binned runs: rows to explain (test rows, else out-of-fold rows), a seeded sample (default 500).")] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", metavar="DIR", help="Binned runs: the run's dataset, if it moved since epx train.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, metavar="N", help="Number of features (marks) to show.")] = 20,
    plot: Annotated[Path | None, typer.Option("--plot", metavar="FILE", help="Tabular runs: PNG to write (default RUN/top_features.png).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Show what a run relied on. Tabular runs: the top features (gain importance and mean |SHAP|),
    plotted. Binned (neural) runs: attention weights per mark and bin, or input x gradient
    saliency, of the fold models on the run's test rows, written to -o DIR (Parquet, heat maps)."""
    from epx import console
    from epx.explain import (
        DEFAULT_ROWS,
        MARK_COLUMNS,
        check_options,
        explain_binned,
        mark_rows,
        plot_top_features,
        run_input_kind,
        top_features,
    )
    from epx.outputs import check_plot_path

    kind = run_input_kind(run_dir)
    check_options(kind, output=output, plot=plot, rows=rows, dataset=dataset, force=force)
    if kind == "binned":
        s = explain_binned(run_dir, output, rows=rows or DEFAULT_ROWS, dataset=dataset, force=force)
        console.info(f"explained {s['rows']:,} rows of {s['rows_from']} with {s['models']} fold model(s): "
                     f"{', '.join(s['kinds'])}")
        if s["marks_what"]:
            console.table(f"Marks ranked by {s['marks_what']}", MARK_COLUMNS, mark_rows(s["summary"], top))
        if s["regions"] is not None:
            by_slot = s["regions"].groupby("slot").agg(regions=("weight", "size"), score=("score", "mean"),
                                                       attention=("weight", "mean"))
            console.table("Attention on distal regions, by contact rank (slot 0 = strongest)",
                          ["slot", "regions", "mean contact score", "mean attention"],
                          [[str(k), f"{int(r.regions):,}", f"{r.score:.3g}", f"{r.attention:.3g}"]
                           for k, r in by_slot.iterrows()])
        console.info(f"wrote {output}")
        return
    check_plot_path(plot or Path(run_dir) / "top_features.png")
    table = top_features(run_dir, top)
    cols = list(table.columns)
    console.table(f"Top {len(table)} features of {run_dir}", cols,
                  [[r[0], *[_fmt(float(v)) for v in r[1:]]] for r in table.itertuples(index=False)])
    path = plot or Path(run_dir) / "top_features.png"
    plot_top_features(table, path, f"Top features: {Path(run_dir).name}")
    if plot is None:  # written into the run: part of it from now on (train --force may replace it)
        from epx.outputs import register

        register(Path(run_dir), path)
    console.info(f"wrote {path}")


# -- epx import ---------------------------------------------------------------------------------

import_app = _EpxTyper(help="Convert public binned data sets into an epx dataset.", short_help="Import public binned data.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("deepchrome")
def import_deepchrome(
    inputs: Annotated[list[Path], typer.Argument(metavar="CSV...", help="DeepChrome/AttentiveChrome CSV files, or directories holding them.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Dataset directory to create.")],
    marks: Annotated[str, typer.Option("--marks", metavar="ASSAYS", help="Names of the mark columns in file order, e.g. H3K4me1,H3K4me3,H3K9me3,H3K27me3,H3K36me3.")],
    annotation: Annotated[Path, typer.Option("--annotation", metavar="FILE", help="Gene table mapping ENSG ids to chromosomes and TSSs (e.g. genes_hg38_hg19.tsv).")],
    build: Annotated[Build, typer.Option("--build", metavar=_choices(BUILDS), help="Genome build of the annotation columns to use.")] = "hg19",
    bins: Annotated[int | None, typer.Option("--keep-bins", min=1, metavar="N", help="Keep only the central N bins (DeepChrome uses 100 of 200).")] = None,
    bins_old: Annotated[int | None, typer.Option("--bins", min=1, hidden=True, help="Old name of --keep-bins.")] = None,
    expr: Annotated[list[str] | None, typer.Option("--expr", metavar="CELL=FILE", help="Expression counts (ENSG,count) of a cell line; found automatically as CELL.expr.csv.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output if epx wrote it (never a file epx did not write).")] = False,
) -> None:
    """Import DeepChrome/AttentiveChrome/DeepDiff binned histone CSVs; train/valid/test files
    become a holdout split."""
    from epx import console
    from epx.importers import import_deepchrome as run_import

    bins = _alias_value(bins, bins_old, None, "--keep-bins and --bins")
    summary = run_import(
        inputs, output=output, marks=_split_list([marks]), annotation=annotation, build=build,
        n_bins=bins, expr=expr or [], force=force,
    )
    for message in summary.get("warnings", []):
        console.warn(message)
    console.table(f"Dataset {output}", ["item", "value"], [[k, v] for k, v in summary.items() if k != "warnings"])
    console.info(f"wrote {output}")


# -- epx workflow -------------------------------------------------------------------------------

workflow_app = _EpxTyper(help="Run every step as Snakemake jobs: featurize shards, merge, one job per (model, fold, "
                         "seed), collect, stack, report, submit.", short_help="Scale out with Snakemake.",
                         no_args_is_help=True)
app.add_typer(workflow_app, name="workflow")


@workflow_app.command("check")
def workflow_check(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Workflow config (YAML).")],
) -> None:
    """Validate CONFIG (schema, input files, installed models) without running anything."""
    from epx import console
    from epx.workflow.config import load

    c = load(config)
    console.table(f"Workflow {config}", ["item", "value"], [
        ["output", c["output"]], ["featurize jobs", str(len(c["featurize"]["shards"]))],
        ["models", ", ".join(f"{k} ({v['model']}, {v['seeds']} seed(s))" for k, v in c["models"].items())],
        ["stack", ", ".join(c["stack"]["runs"]) if c.get("stack") else "-"],
        ["submit", c["submit"]["cell"] if c.get("submit") else "-"]])
    console.info(f"{config} is valid")


@workflow_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def workflow_run(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Workflow config (YAML).")],
    cores: Annotated[int, typer.Option("--cores", min=1, metavar="N", help="Local cores (ignored when the Snakemake arguments set --cores, --jobs or --profile).")] = 1,
) -> None:
    """Validate CONFIG, then run the workflow with Snakemake; arguments after `--` go to Snakemake
    (e.g. `-- --profile slurm`, `-- -n` for a dry run)."""
    import subprocess

    from epx.workflow.config import load, snakemake_command

    load(config)  # every config problem is one line before any job starts
    cmd = snakemake_command(config, list(ctx.args), cores)
    raise typer.Exit(subprocess.call(cmd))


@workflow_app.command("path")
def workflow_path() -> None:
    """Print the Snakefile's path (to run snakemake yourself) and the profiles directory."""
    from epx.workflow.config import PROFILES, SNAKEFILE

    typer.echo(str(SNAKEFILE))
    typer.echo(str(PROFILES))


def main() -> None:
    """Console-script entry point."""
    complete = os.environ.get("_EPX_COMPLETE", "")
    if complete.startswith("complete_"):  # a TAB: answer without building the command tree
        from epx.completion import answer

        code = answer(app, complete)
        if code is not None:
            sys.exit(code)
    elif sys.argv[1:] in (["--help"], ["-h"]):  # the root help needs no command's parameters
        from epx.fasthelp import root_help_command

        root_help_command(app)()
    try:
        app()
    except KeyboardInterrupt:  # outside a command (while Typer builds it)
        sys.exit(130)


if __name__ == "__main__":
    main()
