"""Genotypes per region: a bgzipped, indexed VCF/BCF read with cyvcf2 (PLINK lives in
:mod:`epx.io.plink`), as one :class:`VariantBlock` of allele indices per haplotype.

Both readers give the same block, so haplotype construction and the elastic-net baseline never
know which file format the genotypes came from.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from epx.errors import InputFileError
from epx.io.chroms import alias_map, canonical_chrom


class GenotypeError(InputFileError):
    """A genotype file is unreadable, unindexed, or disagrees with the reference or the request."""


@dataclass
class VariantBlock:
    """The variants overlapping one region, in file order (sorted by position)."""

    chrom: str
    pos: np.ndarray  # int64, 0-based start of REF
    ref: list[str]
    alts: list[list[str]]
    ids: list[str]
    gt: np.ndarray  # int16 (variants, samples, 2): allele index per haplotype, -1 missing
    phased: np.ndarray  # bool (variants, samples): phased, homozygous or haploid

    def __len__(self) -> int:
        return len(self.ref)

    @classmethod
    def empty(cls, chrom: str, n_samples: int) -> VariantBlock:
        return cls(chrom, np.zeros(0, dtype=np.int64), [], [], [], np.zeros((0, n_samples, 2), dtype=np.int16),
                   np.zeros((0, n_samples), dtype=bool))


class Genotypes(Protocol):
    path: Path
    samples: list[str]

    def query(self, chrom: str, start: int, end: int) -> VariantBlock: ...

    def close(self) -> None: ...


def variant_id(chrom: str, pos: int, ref: str, alts: list[str], given: str | None) -> str:
    """The file's ID, or ``chrom:POS:REF:ALT[,ALT]`` (1-based POS) when it has none."""
    if given and given != ".":
        return given
    return f"{chrom}:{pos + 1}:{ref}:{','.join(alts) or '.'}"


def check_samples(requested: list[str] | None, available: list[str], path: Path, what: str = "VCF") -> list[str]:
    """The requested samples in their order (all when None); unknown ones are one error naming them."""
    if not available:
        raise GenotypeError(f"the {what} has no samples (no genotype columns)", path=path)
    if requested is None:
        return list(available)
    seen: set[str] = set()
    dupes = [s for s in requested if s in seen or seen.add(s)]
    if dupes:
        raise GenotypeError(f"--samples names {dupes[0]!r} twice", path=path)
    known = set(available)
    missing = [s for s in requested if s not in known]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise GenotypeError(f"sample(s) {shown} not in the {what} ({len(available)} samples, e.g. "
                            f"{', '.join(available[:3])})", path=path)
    return list(requested)


def _index_of(path: Path) -> Path | None:
    for suffix in (".tbi", ".csi"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            return candidate
    return None


def _check_header_samples(path: Path) -> None:
    """Duplicate sample names, in one line (htslib prints its own error and then fails to parse)."""
    import gzip

    try:
        with gzip.open(path, "rt", errors="replace") as fh:
            for line in fh:
                if line.startswith("#CHROM"):
                    names = line.rstrip("\r\n").split("\t")[9:]
                    seen: set[str] = set()
                    for name in names:
                        if name in seen:
                            raise GenotypeError(f"sample {name!r} appears twice in the header; rename one "
                                                "(bcftools reheader -s NEW_NAMES.txt)", path=path)
                        seen.add(name)
                    return
                if not line.startswith("#"):
                    return
    except (OSError, EOFError):
        return  # cyvcf2 reports unreadable files


class VcfGenotypes:
    """A bgzipped, tabix/CSI-indexed VCF or an indexed BCF, queried by region with cyvcf2."""

    def __init__(self, path: str | Path, samples: list[str] | None = None, threads: int = 1):
        import cyvcf2

        self.path = Path(path)
        if not self.path.is_file():
            raise GenotypeError("genotype file not found", path=self.path)
        with open(self.path, "rb") as fh:
            magic = fh.read(4)
        is_bcf = self.path.suffix == ".bcf"
        if magic[:2] != b"\x1f\x8b" and not (is_bcf and magic[:3] == b"BCF"):
            raise GenotypeError(f"must be bgzip-compressed and indexed: `bgzip {self.path.name} && tabix -p vcf "
                                f"{self.path.name}.gz` (or `bcftools view -Oz -W ...`)", path=self.path)
        index = _index_of(self.path)
        how = f"bcftools index -f {self.path}" if is_bcf else f"tabix -f -p vcf {self.path} (or bcftools index -t)"
        if index is None:
            raise GenotypeError(f"has no .tbi/.csi index beside it; run `{how}`. (A plain-gzip file must be "
                                "re-compressed with bgzip first.)", path=self.path)
        if index.stat().st_mtime < self.path.stat().st_mtime:
            raise GenotypeError(f"its index {index.name} is older than the file, so region queries may read the "
                                f"wrong records; re-index: `{how}`", path=self.path)
        if not is_bcf:
            _check_header_samples(self.path)
        try:
            probe = cyvcf2.VCF(str(self.path), lazy=True)
        except (OSError, Exception) as err:  # cyvcf2 raises bare Exception for unreadable files
            raise GenotypeError(f"not a readable VCF/BCF ({(str(err).splitlines() or ['?'])[0]})",
                                path=self.path) from None
        self.samples = check_samples(samples, list(probe.samples), self.path)
        probe.close()
        self._vcf = cyvcf2.VCF(str(self.path), samples=self.samples, lazy=True, threads=threads)
        order = {s: i for i, s in enumerate(self._vcf.samples)}
        self._order = np.array([order[s] for s in self.samples], dtype=np.int64)
        try:
            names = list(self._vcf.seqnames)
        except Exception:  # no contig lines and no index names
            names = []
        self._alias = alias_map(names, self.path, hint="rename with bcftools annotate --rename-chrs, and drop "
                                "the other spelling's ##contig line with bcftools reheader")

    @property
    def chroms(self) -> list[str]:
        return list(self._alias)

    def has(self, chrom: str) -> bool:
        return canonical_chrom(chrom) in self._alias

    def query(self, chrom: str, start: int, end: int) -> VariantBlock:
        """Variants overlapping ``[start, end)`` (0-based), genotypes of the selected samples."""
        canon = canonical_chrom(chrom)
        n = len(self.samples)
        name = self._alias.get(canon)
        if name is None:
            return VariantBlock.empty(canon, n)
        pos: list[int] = []
        refs: list[str] = []
        alts: list[list[str]] = []
        ids: list[str] = []
        gts: list[np.ndarray] = []
        try:
            with warnings.catch_warnings():  # cyvcf2 warns "no intervals found" for a region without records
                warnings.simplefilter("ignore", UserWarning)
                for rec in self._vcf(f"{name}:{max(start, 0) + 1}-{max(end, 1)}"):
                    ref = rec.REF.upper()
                    alt = [a.upper() for a in rec.ALT if a not in (".", "")]
                    vid = variant_id(canon, rec.start, ref, alt, rec.ID)
                    pos.append(rec.start)
                    refs.append(ref)
                    alts.append(alt)
                    ids.append(vid)
                    gts.append(self._genotypes(rec, n, f"{name}:{rec.start + 1} ({vid})"))
        except OSError as err:
            raise GenotypeError(f"reading {name}:{start + 1}-{end} failed ({err})", path=self.path) from None
        if not pos:
            return VariantBlock.empty(canon, n)
        width = max(g.shape[1] for g in gts)  # ploidy + 1 can differ between records (chrX)
        gts = [g if g.shape[1] == width else np.concatenate(
            [g[:, :-1], np.full((n, width - g.shape[1]), -2, np.int16), g[:, -1:]], axis=1) for g in gts]
        raw = np.stack(gts)[:, self._order, :]  # (variants, samples, ploidy + 1)
        gt = raw[:, :, :2].astype(np.int16)
        if raw.shape[2] < 3:  # haploid everywhere: one allele column and the phase flag
            gt = np.repeat(raw[:, :, :1], 2, axis=2).astype(np.int16)
        flag = raw[:, :, -1] == 1
        second = gt[:, :, 1]
        haploid = second == -2  # htslib's vector end: a haploid call carries its allele on both
        second[haploid] = gt[:, :, 0][haploid]
        gt[gt < 0] = -1
        het = (gt[:, :, 0] != gt[:, :, 1]) & (gt[:, :, 0] >= 0) & (gt[:, :, 1] >= 0)
        phased = flag | ~het
        return VariantBlock(canon, np.asarray(pos, dtype=np.int64), refs, alts, ids, gt, phased)

    def _genotypes(self, rec, n: int, site: str) -> np.ndarray:
        """(samples, ploidy + 1) allele indices and phase flag of one record; refuses a record
        without GT and calls of more than two alleles (which two would be the haplotypes?)."""
        try:
            genotype = rec.genotype
        except Exception:  # cyvcf2: "couldn't get genotypes for variant" when FORMAT has no GT
            genotype = None
        if genotype is None:
            raise GenotypeError(f"{site} has no GT in FORMAT: epx needs a genotype call (GT) in every record",
                                path=self.path)
        arr = np.asarray(genotype.array(), dtype=np.int16)
        if arr.shape[1] > 3 and (arr[:, 2:-1] != -2).any():
            s = int(np.flatnonzero((arr[:, 2:-1] != -2).any(axis=1))[0])
            raise GenotypeError(f"{site}: sample {self._vcf.samples[s]} has a call of {arr.shape[1] - 1} alleles; "
                                "personal windows need diploid (or haploid) genotypes", path=self.path)
        return arr

    def close(self) -> None:
        self._vcf.close()


def open_genotypes(vcf: str | Path | None = None, plink: str | Path | None = None, samples: list[str] | None = None,
                   reference=None) -> Genotypes:
    """The genotype reader for ``--vcf`` (VCF/BCF) or ``--plink PREFIX`` (exactly one of them)."""
    if (vcf is None) == (plink is None):
        raise GenotypeError("give exactly one of --vcf FILE and --plink PREFIX")
    if vcf is not None:
        return VcfGenotypes(vcf, samples)
    from epx.io.plink import PlinkGenotypes

    return PlinkGenotypes(plink, reference, samples)
