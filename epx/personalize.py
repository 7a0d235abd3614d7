"""``epx personalize``: each individual's expression from their own two haplotypes.

For every gene, both haplotype windows of every individual are built exactly
(:mod:`epx.sequence.haplotypes`), identical windows are predicted once (most individuals share
most haplotypes; one without a variant is the reference), and each prediction is cached on disk by
sequence hash, so a rerun or an interrupted run only predicts what is new. An individual's value
is the mean of its two haplotypes. Given measured expression, the predictions are evaluated across
held-out individuals beside a PrediXcan-style elastic net and a stacked model (:mod:`epx.cohort`):
the field's lesson is that sequence models barely rank individuals (Sasse et al. 2023), so the
baseline is always shown.

    OUT/
      predictions.parquet     gene_id, individual, output, hap1, hap2, value (mean of the haplotypes)
      predicted_expression.tsv  GTEx-style table: chrom, start, end, gene_id, one column per individual
                              (the mean over the selected outputs)
      reference.tsv           gene_id, output, value: the reference genome's prediction
      variant_effects.tsv     with --variant-effects: one row per variant allele and output
      personalize.json        options, windows requested / predicted / cached, speed, variant counts
      per_gene.tsv, summary.json, heldout_predictions.parquet, scatter.png   with --expression
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx import console
from epx._version import __version__
from epx.errors import EpxError, InputFileError
from epx.io.chroms import canonical_chrom
from epx.io.fasta import Reference, cache_dir
from epx.io.genotypes import GenotypeError, open_genotypes
from epx.outputs import atomic_dir, atomic_file, check_output, refuse_overlap
from epx.sequence.cache import PredictionCache, window_digest
from epx.sequence.haplotypes import GeneHaplotypes, HaplotypeBuilder, apply_alleles
from epx.sequence.onehot import OneHotBuffer

ENFORMER_WINDOW = 196_608
# outputs kept per window and individual: Enformer's 638 CAGE tracks x 2 haplotypes x a cohort
# would not fit in memory, and expression of one tissue needs that tissue's tracks
MAX_OUTPUTS = 64
FASTA_WIDTH = 60


@dataclass
class PersonalizeOptions:
    genes: Path
    fasta: Path
    vcf: Path | None = None
    plink: Path | None = None
    output: Path | None = None
    expression: Path | None = None
    samples: list[str] | None = None
    chroms: list[str] | None = None
    model: str = "enformer"
    model_options: dict[str, Any] = field(default_factory=dict)
    window: int | None = None
    sequences_only: bool = False
    write_sequences: Path | None = None
    unphased: str = "error"
    ref_mismatch: str = "error"
    variant_effects: bool = False
    folds: int = 5
    seed: int = 0
    allow_missing_individuals: bool = False
    cis_window: int = 1_000_000
    en_alphas: int = 100
    inner_folds: int = 5
    shard: tuple[int, int] | None = None  # (i, n), 1 <= i <= n: this part of the genes or individuals
    shard_by: str = "genes"
    cache: Path | None = None
    use_cache: bool = True
    force: bool = False
    progress: bool = True


@dataclass
class Throughput:
    requested: int = 0  # haplotype windows asked for (2 per individual and gene, plus references)
    unique: int = 0  # distinct windows among them
    cache_hits: int = 0
    predicted: int = 0
    predict_seconds: float = 0.0
    build_seconds: float = 0.0

    @property
    def per_second(self) -> float | None:
        return self.predicted / self.predict_seconds if self.predict_seconds > 0 else None


class _Predictions:
    """Windows -> outputs through the cache, batched across genes."""

    def __init__(self, predictor: Any, cache: PredictionCache, batch_size: int, counts: Throughput):
        self.predictor = predictor
        self.cache = cache
        self.batch_size = max(1, batch_size)
        self.counts = counts
        self.encode = OneHotBuffer()

    def values(self, windows: list[bytes]) -> np.ndarray:
        """(len(windows), outputs) for distinct windows; only the uncached ones reach the model."""
        n_out = len(self.predictor.output_names)
        out = np.zeros((len(windows), n_out), dtype=np.float32)
        digests = [window_digest(w) for w in windows]
        todo: list[int] = []
        for i, d in enumerate(digests):
            cached = self.cache.get(d)
            if cached is None:
                todo.append(i)
            else:
                out[i] = cached
                self.counts.cache_hits += 1
        for b in range(0, len(todo), self.batch_size):
            chunk = todo[b: b + self.batch_size]
            x = self.encode([windows[i] for i in chunk])
            started = time.perf_counter()
            y = np.asarray(self.predictor.predict(x), dtype=np.float32).reshape(len(chunk), n_out)
            self.counts.predict_seconds += time.perf_counter() - started
            self.counts.predicted += len(chunk)
            out[chunk] = y
            self.cache.put_many((digests[i], y[j]) for j, i in enumerate(chunk))
        return out


def _select_genes(options: PersonalizeOptions, reference: Reference, expression_ids: list[str] | None) -> pd.DataFrame:
    from epx.io.genes import read_genes

    genes = read_genes(options.genes)
    if options.chroms:
        wanted = {canonical_chrom(c) for c in options.chroms}
        genes = genes[genes["chrom"].isin(wanted)]
        if genes.empty:
            raise InputFileError(f"no genes on {', '.join(sorted(wanted))}", path=options.genes)
    if expression_ids is not None:
        from epx.cohort import strip_version

        # the evaluation matches ids the same way: Ensembl ids without their .version, others as written
        base = genes["gene_id"].astype(str).map(strip_version)
        wanted_ids = {strip_version(g) for g in expression_ids}
        genes = genes[base.isin(wanted_ids)]
        if genes.empty:
            raise InputFileError(
                "no gene of the expression table is in the gene table (e.g. expression "
                f"{next(iter(expression_ids), '?')}, genes {read_genes(options.genes)['gene_id'].iat[0]}; Ensembl "
                "ids are compared without their .version, other ids as written)", path=options.expression)
    outside = genes[~genes["chrom"].map(reference.has)]
    if len(outside):
        first = outside.iloc[0]
        if options.chroms:  # the user named them: "restrict them with --chroms" would not help
            absent = sorted(set(outside["chrom"]))
            raise InputFileError(
                f"--chroms asks for {', '.join(absent)}, which the FASTA lacks (it has {', '.join(reference.chroms[:4])}"
                f"{'...' if len(reference.chroms) > 4 else ''}); drop {'it' if len(absent) == 1 else 'them'} from "
                "--chroms or use the FASTA with these chromosomes", path=reference.path)
        raise InputFileError(
            f"{len(outside)} gene(s) lie on chromosomes the FASTA {reference.path} lacks, e.g. {first['gene_id']} on "
            f"{first['chrom']} (FASTA: {', '.join(reference.chroms[:4])}{'...' if len(reference.chroms) > 4 else ''});"
            " restrict them with --chroms", path=options.genes)
    beyond = genes[[int(t) >= reference.length(c) for c, t in zip(genes["chrom"], genes["tss"], strict=True)]]
    if len(beyond):
        first = beyond.iloc[0]
        raise InputFileError(
            f"{len(beyond)} gene(s) have their TSS past the end of its chromosome in the FASTA {reference.path}, "
            f"e.g. {first['gene_id']} at {first['chrom']}:{int(first['tss']) + 1:,} ({first['chrom']} has "
            f"{reference.length(first['chrom']):,} bp): the gene table and the FASTA are on different builds",
            path=options.genes)
    from epx.io.chroms import chrom_sort_key

    # genomic order: neighbouring windows overlap, so one genotype read serves several genes
    order = sorted(range(len(genes)), key=lambda i: (chrom_sort_key(genes["chrom"].iat[i]), int(genes["tss"].iat[i])))
    return genes.iloc[order].reset_index(drop=True)


def _write_fasta_record(fh, name: str, seq: bytes) -> None:
    fh.write(b">" + name.encode() + b"\n")
    for i in range(0, len(seq), FASTA_WIDTH):
        fh.write(seq[i: i + FASTA_WIDTH] + b"\n")


@contextmanager
def _sequence_sink(path: Path | None, force: bool) -> Iterator[Any]:
    if path is None:
        yield None
        return
    with atomic_file(path, "sequences", force=force) as tmp, open(tmp, "wb") as fh:
        yield fh


def _variant_effects(gh: GeneHaplotypes, builder: HaplotypeBuilder, predictions: _Predictions,
                     reference_value: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Reference vs each ALT allele alone, for every variant starting inside the window."""
    block = builder.last_block
    segment, seg_start = builder.last_segment
    L, half = gh.window, gh.window // 2
    jobs: list[tuple[int, int]] = []
    windows: list[bytes] = []
    for i in range(len(block)):
        pos = int(block.pos[i])
        if not (gh.tss - half <= pos < gh.tss - half + L) or not builder.last_usable[i]:
            continue
        for a in range(1, len(block.alts[i]) + 1):
            alleles = np.zeros(len(block), dtype=np.int16)
            alleles[i] = a
            done = apply_alleles(segment, seg_start, gh.tss, block, alleles, builder.last_usable)
            if done.applied == 0:
                continue
            start = done.tss - half
            seq = bytes(done.seq[max(start, 0): start + L])
            seq = b"N" * max(-start, 0) + seq + b"N" * (L - max(-start, 0) - len(seq))
            jobs.append((i, a))
            windows.append(seq)
    if not windows:
        return []
    values = predictions.values(windows)
    rows = []
    for (i, a), value in zip(jobs, values, strict=True):
        for t, name in enumerate(names):
            rows.append({"gene_id": gh.gene_id, "variant_id": block.ids[i], "chrom": block.chrom,
                         "pos": int(block.pos[i]) + 1, "ref": block.ref[i], "alt": block.alts[i][a - 1],
                         "output": name, "ref_value": float(reference_value[t]), "alt_value": float(value[t]),
                         "delta": float(value[t] - reference_value[t])})
    return rows


def personalize(options: PersonalizeOptions) -> dict[str, Any]:
    """Run ``epx personalize``; returns the summary the CLI prints (also in personalize.json)."""
    if options.sequences_only and options.write_sequences is None:
        raise EpxError("--sequences-only writes the windows and stops: give --write-sequences FILE.fa")
    if options.sequences_only and options.output is not None:
        raise EpxError("--sequences-only writes only --write-sequences FILE.fa; drop -o (or --sequences-only)")
    if not options.sequences_only and options.output is None:
        raise EpxError("give -o OUT for the predictions (or --sequences-only with --write-sequences FILE.fa)")
    if options.variant_effects and options.sequences_only:
        raise EpxError("--variant-effects needs a model; drop --sequences-only")
    if options.expression is not None and options.sequences_only:
        raise EpxError("--expression evaluates predictions; drop --sequences-only")
    if options.shard is not None:
        i, n = options.shard
        if not 1 <= i <= n:
            raise EpxError(f"--shard {i}/{n}: give I/N with 1 <= I <= N")
        if options.shard_by not in ("genes", "individuals"):
            raise EpxError(f"--shard-by must be genes or individuals, got {options.shard_by!r}")
        if options.shard_by == "individuals" and options.expression is not None:
            raise EpxError("--expression scores each gene across all individuals: shard by genes "
                           "(--shard-by genes), or evaluate after `epx collect`")
    if options.folds < 2 or options.inner_folds < 2:
        raise EpxError(f"--folds and --inner-folds must be at least 2, got {options.folds} and {options.inner_folds}")
    inputs = [p for p in (options.genes, options.fasta, options.vcf, options.expression) if p is not None]
    if options.output is not None:
        check_output(options.output, options.force, "personalize")
        refuse_overlap(options.output, inputs)
    if options.write_sequences is not None:
        check_output(options.write_sequences, options.force, "sequences")
        refuse_overlap(options.write_sequences, inputs)

    with ExitStack() as stack:
        reference = stack.enter_context(Reference(options.fasta))
        expression = None
        if options.expression is not None:
            from epx.cohort import read_expression

            expression = read_expression(options.expression)
        genes = _select_genes(options, reference, None if expression is None else list(expression.index))
        all_genes = genes["gene_id"].astype(str).tolist()
        if options.shard is not None and options.shard_by == "genes":
            genes = genes.iloc[_shard_slice(len(genes), *options.shard)].reset_index(drop=True)
        samples_wanted = options.samples
        if options.shard is not None and options.shard_by == "individuals":
            every = open_genotypes(vcf=options.vcf, plink=options.plink, samples=options.samples, reference=reference)
            all_samples = list(every.samples)
            every.close()
            samples_wanted = all_samples[_shard_slice(len(all_samples), *options.shard)]
        genotypes = open_genotypes(vcf=options.vcf, plink=options.plink, samples=samples_wanted,
                                   reference=reference)
        stack.callback(genotypes.close)
        _check_chromosomes(genes, genotypes, options)
        if expression is not None:
            from epx.cohort import check_individuals

            check = check_individuals(list(expression.columns), genotypes.samples,
                                      allow_missing=options.allow_missing_individuals)
            if check.missing:
                console.warn(check.warning())

        predictor = None
        window = options.window
        if not options.sequences_only:
            from epx.models.plugins import load_predictor

            predictor = load_predictor(options.model, options.model_options)
            if window is not None and window != predictor.window:
                raise EpxError(f"--window {window} differs from the model's input length {predictor.window}; "
                               "drop --window (it is for --sequences-only)")
            window = int(predictor.window)
            if len(predictor.output_names) > MAX_OUTPUTS:
                raise EpxError(
                    f"the model gives {len(predictor.output_names):,} outputs per window; an individual's expression "
                    f"needs the tissue's CAGE track(s): pick up to {MAX_OUTPUTS} with --track (a name such as "
                    f"'CAGE:liver, adult', or an index), e.g. {predictor.output_names[0]!r}")
        window = window or ENFORMER_WINDOW

        builder = HaplotypeBuilder(reference, genotypes, window, unphased=options.unphased,
                                   ref_mismatch=options.ref_mismatch, keep_last=options.variant_effects)
        counts = Throughput()
        predictions = None
        if predictor is not None:
            cache_path = None
            if options.use_cache:
                cache_path = options.cache if options.cache is not None else cache_dir() / "personalize.sqlite"
                if cache_path.is_dir() or cache_path.suffix == "":
                    cache_path = cache_path / "personalize.sqlite"
            cache = PredictionCache(cache_path, predictor.fingerprint)
            stack.callback(cache.close)
            predictions = _Predictions(predictor, cache, int(options.model_options.get("batch_size") or 4), counts)

        names = list(predictor.output_names) if predictor is not None else []
        samples = list(genotypes.samples)
        hap_values: list[np.ndarray] = []  # per gene (samples, 2, outputs)
        ref_values: list[np.ndarray] = []
        effects: list[dict[str, Any]] = []
        evaluator = None
        if expression is not None and predictor is not None:
            from epx.cohort import CohortEvaluator

            evaluator = CohortEvaluator(expression, [s for s in samples if s in set(expression.columns)],
                                        k=options.folds, seed=options.seed, inner_k=options.inner_folds,
                                        n_alphas=options.en_alphas, allow_missing=options.allow_missing_individuals)
            position = {s: i for i, s in enumerate(samples)}
            eval_rows = np.array([position[s] for s in evaluator.samples], dtype=np.int64)
        sequences = stack.enter_context(_sequence_sink(options.write_sequences, options.force))
        started = time.perf_counter()
        with console.progress(options.progress) as bar:
            task = bar.add_task("haplotype windows" if predictor is None else "genes", total=len(genes))
            for row in genes.itertuples(index=False):
                t0 = time.perf_counter()
                gh = builder.gene(str(row.gene_id), str(row.chrom), int(row.tss))
                counts.build_seconds += time.perf_counter() - t0
                counts.requested += 2 * len(samples) + 1
                counts.unique += len(gh.windows)
                if sequences is not None:
                    _write_fasta_record(sequences, f"REF|{gh.gene_id}|0", gh.windows[0])
                    for s, sample in enumerate(samples):
                        for h in (0, 1):
                            _write_fasta_record(sequences, f"{sample}|{gh.gene_id}|{h + 1}", gh.windows[gh.index[s, h]])
                if predictions is not None:
                    values = predictions.values(gh.windows)
                    ref_values.append(values[0])
                    hap_values.append(values[gh.index])
                    if options.variant_effects:
                        effects.extend(_variant_effects(gh, builder, predictions, values[0], names))
                if evaluator is not None:
                    _evaluate_gene(evaluator, gh, genotypes, names, values[gh.index][eval_rows], eval_rows,
                                   options.cis_window)
                bar.advance(task)
        builder.finish()
        elapsed = time.perf_counter() - started
        stats = builder.stats
        summary: dict[str, Any] = {
            "epx_version": __version__,
            "genes": len(genes), "individuals": len(samples), "window": window,
            "model": None if predictor is None else options.model,
            "outputs": names,
            "windows_requested": counts.requested, "windows_unique": counts.unique,
            "windows_predicted": counts.predicted, "cache_hits": counts.cache_hits,
            "sequences_per_second": counts.per_second, "seconds": round(elapsed, 2),
            "build_seconds": round(counts.build_seconds, 2),
            "variants": stats.variants, "missing_calls": stats.missing_calls,
            "unphased_calls": stats.unphased_calls, "skipped_overlapping": stats.skipped_overlap,
            "skipped_ref_mismatch": stats.skipped_mismatch, "skipped_symbolic": stats.skipped_symbolic,
            "genes_padded": stats.padded_genes,
            "shard": None if options.shard is None else {
                "index": options.shard[0], "count": options.shard[1], "by": options.shard_by,
                "identity": _identity(options, all_genes), "genes": genes["gene_id"].astype(str).tolist(),
                "individuals": samples},
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        }
        if not stats.variants:
            console.warn(f"no variant of {options.vcf or options.plink} lies in any gene's window: every haplotype is "
                         "the reference")
        if stats.padded_genes:
            console.warn(f"{stats.padded_genes} gene window(s) run past a chromosome end and were padded with N")
        if stats.missing_calls:
            console.warn(f"{stats.missing_calls:,} missing genotype allele(s) were taken as the reference allele")
        if stats.skipped_overlap:
            console.warn(f"{stats.skipped_overlap:,} haplotype allele(s) overlapped an allele applied before them "
                         "and were skipped, as bcftools consensus does")
        if stats.skipped_mismatch:
            console.warn(f"{stats.skipped_mismatch:,} site(s) whose REF disagrees with the FASTA were left out "
                         f"(--ref-mismatch skip), e.g. {', '.join(stats.mismatches[:3])}")
        if stats.skipped_symbolic:
            console.warn(f"{stats.skipped_symbolic:,} site(s) with only symbolic or '*' alleles were left as reference")
        if predictor is None:
            return summary

        with atomic_dir(options.output, "personalize", force=options.force) as out:
            _write_predictions(out, genes, samples, names, hap_values, ref_values)
            if options.variant_effects:
                pd.DataFrame(effects, columns=["gene_id", "variant_id", "chrom", "pos", "ref", "alt", "output",
                                               "ref_value", "alt_value", "delta"]).to_csv(
                    out / "variant_effects.tsv", sep="\t", index=False)
            if evaluator is not None:
                from epx.cohort import write_cohort_report

                result = evaluator.result()
                write_cohort_report(result, out)
                summary["evaluation"] = result.summary
            (out / "personalize.json").write_text(json.dumps(summary, indent=1, default=_json_default) + "\n")
        return summary


def _concat_tsv(sources: list[Path], target: Path) -> None:
    """Tables with one header, joined as text: the numbers stay exactly as their parts wrote them."""
    with open(target, "w") as out:
        for k, source in enumerate(sources):
            with open(source) as fh:
                header = fh.readline()
                if k == 0:
                    out.write(header)
                out.writelines(fh)


def _shard_slice(n: int, i: int, count: int) -> slice:
    """Part ``i`` of ``count`` (1-based) of ``n`` items in order: contiguous, sizes differing by at
    most one (contiguous genes keep genotype reads shared between neighbours)."""
    start = (i - 1) * n // count
    return slice(start, i * n // count)


def _identity(options: PersonalizeOptions, genes: list[str]) -> str:
    """What every shard of one personalize run shares: all options but the shard and the outputs."""
    import hashlib

    fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()
              if k not in ("shard", "output", "write_sequences", "force", "progress", "cache", "use_cache")}
    fields["genes"] = genes
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)


def _check_chromosomes(genes: pd.DataFrame, genotypes: Any, options: PersonalizeOptions) -> None:
    """Genotype chromosomes must name the genes' chromosomes (``1`` and ``chr1`` are one); none in
    common is a naming problem, not a cohort without variants."""
    chroms = getattr(genotypes, "chroms", None)
    if not chroms:
        return
    wanted = set(genes["chrom"])
    if not wanted & set(chroms):
        source = options.vcf or options.plink
        raise GenotypeError(
            f"none of its chromosomes ({', '.join(list(chroms)[:4])}{'...' if len(chroms) > 4 else ''}) names a "
            f"chromosome of the genes ({', '.join(sorted(wanted)[:4])}); rename them (bcftools annotate "
            "--rename-chrs) to match the FASTA", path=source)
    missing = sorted(wanted - set(chroms))
    if missing:
        console.warn(f"the genotypes have no variants on {', '.join(missing[:5])}: individuals get the reference there")


def _write_predictions(out: Path, genes: pd.DataFrame, samples: list[str], names: list[str],
                       hap_values: list[np.ndarray], ref_values: list[np.ndarray]) -> None:
    n_genes, n_samples, n_out = len(genes), len(samples), len(names)
    values = np.stack(hap_values) if hap_values else np.zeros((0, n_samples, 2, n_out), np.float32)
    gene_ids = genes["gene_id"].astype(str).to_numpy()
    long = pd.DataFrame({
        "gene_id": np.repeat(gene_ids, n_samples * n_out),
        "individual": np.tile(np.repeat(np.asarray(samples, dtype=object), n_out), n_genes),
        "output": np.tile(np.asarray(names, dtype=object), n_genes * n_samples),
        "hap1": values[:, :, 0, :].reshape(-1),
        "hap2": values[:, :, 1, :].reshape(-1),
    })
    long["value"] = (long["hap1"] + long["hap2"]) / 2
    long.to_parquet(out / "predictions.parquet", index=False)
    score = values.mean(axis=2).mean(axis=2)  # (genes, samples): haplotype mean, then output mean
    wide = pd.DataFrame(score, columns=samples)
    wide.insert(0, "gene_id", gene_ids)
    wide.insert(0, "end", genes["tss"].to_numpy() + 1)
    wide.insert(0, "start", genes["tss"].to_numpy())
    wide.insert(0, "#chr", genes["chrom"].to_numpy())
    wide.to_csv(out / "predicted_expression.tsv", sep="\t", index=False, float_format="%.6g")
    ref = np.stack(ref_values) if ref_values else np.zeros((0, n_out), np.float32)
    pd.DataFrame({"gene_id": np.repeat(gene_ids, n_out), "output": np.tile(np.asarray(names, dtype=object), n_genes),
                  "value": ref.reshape(-1)}).to_csv(out / "reference.tsv", sep="\t", index=False, float_format="%.6g")


def _evaluate_gene(evaluator: Any, gh: GeneHaplotypes, genotypes: Any, names: list[str], hap: np.ndarray,
                   rows: np.ndarray, cis_window: int) -> None:
    """Score one gene now: Enformer's outputs (haplotype mean) for the evaluated individuals and
    the genotype dosages within ``cis_window`` bp of the TSS (PrediXcan's cis window), then drop
    the dosages."""
    from epx.sequence.haplotypes import dosage_matrix

    values = hap.mean(axis=1)  # (individuals, outputs)
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, "individual", evaluator.samples)
    frame.insert(0, "gene_id", gh.gene_id)
    frame["enformer"] = values.mean(axis=1)
    block = genotypes.query(gh.chrom, max(gh.tss - cis_window, 0), gh.tss + cis_window + 1)
    ids, matrix = dosage_matrix(block, rows)
    evaluator.add(frame, {gh.gene_id: (ids, matrix)})


def collect_personalize(parts: list[Path], output: Path, force: bool = False) -> dict[str, Any]:
    """``epx collect`` for ``epx personalize --shard I/N`` parts: one output as if one process had run.

    Parts must come from one run (same options and genes: their ``identity``) and cover every shard
    exactly once. Predictions are concatenated in the run's order; the evaluation (sharded by genes
    only) is re-summarised from the parts' exact per-gene tables, so the medians are those of one run."""
    from epx.cohort import (
        HELDOUT_FILE,
        PER_GENE_EXACT,
        WEIGHTS_FILE,
        CohortResult,
        summarize,
        write_cohort_report,
    )
    from epx.dataset import read_json_file
    from epx.outputs import epx_kind

    infos = []
    for part in parts:
        part = Path(part)
        if not part.is_dir() or epx_kind(part) != "personalize":
            raise InputFileError("not an epx personalize output", path=part)
        info = read_json_file(part / "personalize.json", "personalize.json")
        if not info.get("shard"):
            raise InputFileError("is a whole personalize run, not a --shard part", path=part)
        infos.append((part, info))
    first_part, first = infos[0]
    shard0 = first["shard"]
    for part, info in infos[1:]:
        sh = info["shard"]
        if sh["identity"] != shard0["identity"] or sh["by"] != shard0["by"] or sh["count"] != shard0["count"]:
            raise EpxError(f"{part} and {first_part} are parts of different personalize runs (options, genes or "
                           "--shard N differ); collect the parts of one run")
    seen: dict[int, Path] = {}
    for part, info in infos:
        i = info["shard"]["index"]
        if i in seen:
            raise EpxError(f"shard {i}/{shard0['count']} is given twice: {seen[i]} and {part}")
        seen[i] = part
    missing = [i for i in range(1, shard0["count"] + 1) if i not in seen]
    if missing:
        count = shard0["count"]
        raise EpxError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing; "
                       "run them (epx personalize --shard I/N) or give their outputs")
    infos.sort(key=lambda pi: pi[1]["shard"]["index"])
    check_output(output, force, "personalize")
    refuse_overlap(output, [p for p, _ in infos])
    by_genes = shard0["by"] == "genes"
    with atomic_dir(output, "personalize", force=force) as out:
        preds = pd.concat([pd.read_parquet(p / "predictions.parquet") for p, _ in infos], ignore_index=True)
        if not by_genes:  # the run's order: gene-major, individuals as the genotype file lists them
            order = {g: k for k, g in enumerate(dict.fromkeys(preds["gene_id"]))}
            preds = preds.sort_values("gene_id", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
        preds.to_parquet(out / "predictions.parquet", index=False)
        if by_genes:
            _concat_tsv([p / "predicted_expression.tsv" for p, _ in infos], out / "predicted_expression.tsv")
        else:  # individuals are columns: join them as text, numbers exactly as the parts wrote them
            wide = [pd.read_csv(p / "predicted_expression.tsv", sep="\t", dtype=str, keep_default_na=False)
                    for p, _ in infos]
            pd.concat([wide[0], *[w.iloc[:, 4:] for w in wide[1:]]], axis=1).to_csv(
                out / "predicted_expression.tsv", sep="\t", index=False)
        for name in ("reference.tsv", "variant_effects.tsv"):
            if (first_part / name).exists():
                sources = [p / name for p, _ in infos] if by_genes else [first_part / name]
                _concat_tsv(sources, out / name)
        summary = dict(first)
        for key in ("windows_requested", "windows_unique", "windows_predicted", "cache_hits", "variants",
                    "missing_calls", "unphased_calls", "skipped_overlapping", "skipped_ref_mismatch",
                    "skipped_symbolic", "genes_padded", "seconds", "build_seconds"):
            summary[key] = sum(info.get(key) or 0 for _, info in infos)
        if by_genes:
            summary["genes"] = sum(info["genes"] for _, info in infos)
        else:
            summary["individuals"] = sum(info["individuals"] for _, info in infos)
        summary["shard"] = None
        summary["collected_from"] = [str(p) for p, _ in infos]
        if (first_part / PER_GENE_EXACT).exists():
            per_gene = pd.concat([pd.read_parquet(p / PER_GENE_EXACT) for p, _ in infos], ignore_index=True)
            heldout = pd.concat([pd.read_parquet(p / HELDOUT_FILE) for p, _ in infos], ignore_index=True)
            weights = pd.concat([pd.read_csv(p / WEIGHTS_FILE, sep="\t", dtype={"gene_id": str, "variant_id": str})
                                 for p, _ in infos], ignore_index=True)
            folds = pd.read_csv(first_part / "folds.tsv", sep="\t", dtype={"individual": str})
            config = dict(first.get("evaluation", {}).get("config", {}))
            for key in ("genes_predicted", "genes_without_expression", "genes_too_few_individuals"):
                if key in config:
                    config[key] = sum((info.get("evaluation") or {}).get("config", {}).get(key, 0) for _, info in infos)
            result = CohortResult(per_gene=per_gene, summary=summarize(per_gene, config), heldout=heldout,
                                  weights=weights, folds=dict(zip(folds["individual"], folds["fold"], strict=True)))
            write_cohort_report(result, out)
            summary["evaluation"] = result.summary
        (out / "personalize.json").write_text(json.dumps(summary, indent=1, default=_json_default) + "\n")
    return summary
