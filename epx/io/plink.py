"""Genotypes from a PLINK 1 fileset (``PREFIX.bed``, ``.bim``, ``.fam``), read with bed-reader,
as the same :class:`~epx.io.genotypes.VariantBlock` the VCF reader gives.

PLINK 1 stores, per variant, two alleles (A1, A2) and per sample the count of A1 (0, 1, 2 or
missing); which allele is the reference is not recorded. The reference FASTA decides: REF is the
``.bim`` allele that the FASTA has at the position, ALT is the other one. Both can match only for
an indel whose shorter allele is a prefix of the longer one (``G``/``GT`` where the FASTA reads
``GT``): then the longer allele is REF (a deletion), since an inserted sequence that happens to
repeat the following reference bases is the less likely explanation (1 in 4 per base); when the
alleles are equally long, A2 (where PLINK conversions from VCF usually put REF). When neither
matches, the variant is refused, naming it. A monomorphic site written with a ``0`` allele gives
a REF-only site (no ALT).

PLINK 1 calls are unphased: a heterozygous call is ``(0, 1)`` with ``phased`` False; homozygous
and missing calls count as phased, as in the VCF reader.

Chromosome codes: ``1``-``22``, ``X``/``23``, ``Y``/``24``, ``XY``/``25`` (the pseudo-autosomal
part of X, in X coordinates, so ``chrX``), ``MT``/``26`` (``chrM``); ``chr1``-style names are
accepted too. Variants on chromosome ``0`` (unplaced) are never returned.

Samples are named by their IID (``.fam`` column 2); when IIDs repeat across families every
sample is named ``FID_IID`` instead. A requested ``FID_IID`` is always accepted.

Only the requested rows and columns of the ``.bed`` are read per query: the ``.bim`` positions are
indexed per chromosome once, at open.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from epx.io.chroms import canonical_chrom
from epx.io.genotypes import GenotypeError, VariantBlock, check_samples, variant_id

_PLINK_CODES = {"23": "X", "24": "Y", "25": "X", "XY": "X", "26": "MT", "M": "MT"}
_MISSING_ALLELES = {"0", ".", "-"}
_REF_IS_A2, _REF_IS_A1 = 1, 2


def plink_chrom(code: str) -> str | None:
    """A ``.bim`` chromosome code as a canonical name (``23`` -> ``chrX``); None for ``0`` (unplaced)."""
    core = code[3:] if code[:3].lower() == "chr" else code
    if core in ("0", ""):
        return None
    return canonical_chrom(_PLINK_CODES.get(core.upper(), core))


def plink_paths(prefix: str | Path) -> tuple[Path, Path, Path]:
    """``PREFIX.bed``, ``.bim``, ``.fam``; ``PREFIX`` may itself end in one of those suffixes."""
    p = Path(prefix)
    if p.suffix in (".bed", ".bim", ".fam"):
        p = p.with_suffix("")
    return Path(f"{p}.bed"), Path(f"{p}.bim"), Path(f"{p}.fam")


def _read_fam(path: Path) -> tuple[list[str], list[str]]:
    fids: list[str] = []
    iids: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise GenotypeError(f"line {n} is not a .fam row (FID IID father mother sex phenotype): "
                                    f"{line.strip()[:60]!r}", path=path, line=n)
            fids.append(fields[0])
            iids.append(fields[1])
    return fids, iids


def _read_bim(path: Path) -> tuple[list[str], np.ndarray, list[str], list[str], list[str]]:
    """Chromosome codes, 1-based positions, IDs, A1 and A2 of every ``.bim`` line."""
    chroms: list[str] = []
    pos: list[int] = []
    ids: list[str] = []
    a1: list[str] = []
    a2: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                raise GenotypeError("line is empty; a .bim has one variant per line", path=path, line=n)
            if len(fields) != 6:
                raise GenotypeError(f"has {len(fields)} fields, not the 6 of a .bim line (chrom ID cM pos A1 A2): "
                                    f"{line.strip()[:60]!r}", path=path, line=n)
            try:
                p = int(fields[3])
            except ValueError:
                p = -1
            if p < 0:
                raise GenotypeError(f"position {fields[3]!r} is not a non-negative integer: {line.strip()[:60]!r}",
                                    path=path, line=n)
            chroms.append(fields[0])
            pos.append(p)
            ids.append(fields[1])
            a1.append(fields[4].upper())
            a2.append(fields[5].upper())
    return chroms, np.asarray(pos, dtype=np.int64), ids, a1, a2


class PlinkGenotypes:
    """A PLINK 1 fileset queried by region; REF/ALT oriented against ``reference``."""

    def __init__(self, prefix: str | Path, reference, samples: list[str] | None = None):
        from bed_reader import open_bed

        self.bed_path, self.bim_path, self.fam_path = plink_paths(prefix)
        self.path = self.bed_path
        for p, what in ((self.bed_path, "PLINK .bed"), (self.bim_path, "PLINK .bim"), (self.fam_path, "PLINK .fam")):
            if not p.is_file():
                raise GenotypeError(f"{what} not found (--plink PREFIX needs PREFIX.bed, .bim and .fam)"
                                    if not p.exists() else f"{what} is not a regular file", path=p)
        if reference is None:
            raise GenotypeError("PLINK genotypes need the reference FASTA to tell REF from ALT (.bim has no REF)",
                                path=self.bed_path)
        self.reference = reference
        fids, iids = _read_fam(self.fam_path)
        if not iids:
            raise GenotypeError("the .fam has no samples", path=self.fam_path)
        paired = [f"{f}_{i}" for f, i in zip(fids, iids, strict=True)]
        names = iids if len(set(iids)) == len(iids) else paired
        row = {s: i for i, s in enumerate(names)}
        row_paired = {s: i for i, s in enumerate(paired)}
        if samples is None:
            self.samples = list(names)
            self._rows: np.ndarray | None = None
        else:
            # a requested FID_IID names its row even when samples go by IID
            as_named = [names[row_paired[s]] if s not in row and s in row_paired else s for s in samples]
            check_samples(as_named, names, self.fam_path, what="PLINK .fam")  # unknown or repeated names
            self.samples = list(samples)
            self._rows = np.array([row[s] for s in as_named], dtype=np.int64)
        chroms, pos1, self._ids, self._a1, self._a2 = _read_bim(self.bim_path)
        if not chroms:
            raise GenotypeError("the .bim has no variants", path=self.bim_path)
        self._pos = pos1 - 1  # 0-based
        self._allele_len = np.array([max(len(a), len(b)) for a, b in zip(self._a1, self._a2, strict=True)],
                                    dtype=np.int64)
        # per canonical chromosome: the variant indices sorted by position (stable: file order on ties)
        canon = [plink_chrom(c) for c in chroms]
        by_chrom: dict[str, list[int]] = {}
        for i, c in enumerate(canon):
            if c is not None:
                by_chrom.setdefault(c, []).append(i)
        self._index: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        for c, idx in by_chrom.items():
            ix = np.asarray(idx, dtype=np.int64)
            ix = ix[np.argsort(self._pos[ix], kind="stable")]
            self._index[c] = (ix, self._pos[ix], int(self._allele_len[ix].max()))
        self._orient = np.zeros(len(chroms), dtype=np.int8)  # 0 unknown, 1 REF=A2, 2 REF=A1
        try:
            self._bed = open_bed(self.bed_path, iid_count=len(iids), sid_count=len(chroms), count_A1=True)
        except Exception as err:  # bed-reader raises ValueError/OSError/its own for bad magic or size
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise GenotypeError(f"not a readable PLINK 1 .bed for {len(iids)} samples and {len(chroms)} variants "
                                f"({first})", path=self.bed_path) from None

    @property
    def chroms(self) -> list[str]:
        return list(self._index)

    def has(self, chrom: str) -> bool:
        return canonical_chrom(chrom) in self._index

    def _orient_variants(self, chrom: str, idx: np.ndarray) -> None:
        """Decide REF for the variants ``idx`` (sorted by position) from one FASTA segment."""
        todo = idx[self._orient[idx] == 0]
        if not len(todo):
            return
        lo = int(self._pos[todo].min())
        hi = int((self._pos[todo] + self._allele_len[todo]).max())
        segment = self.reference.fetch(chrom, lo, hi).decode("ascii").upper()
        for i in todo:
            at = int(self._pos[i]) - lo
            a1, a2 = self._a1[i], self._a2[i]
            match2 = a2 not in _MISSING_ALLELES and segment[at: at + len(a2)] == a2
            match1 = a1 not in _MISSING_ALLELES and segment[at: at + len(a1)] == a1
            if match1 and match2:  # an indel whose shorter allele is a prefix of the longer: the longer
                # one matching the FASTA by chance is unlikely (1/4 per extra base), so it is REF
                self._orient[i] = _REF_IS_A1 if len(a1) > len(a2) else _REF_IS_A2
            elif match2:
                self._orient[i] = _REF_IS_A2
            elif match1:
                self._orient[i] = _REF_IS_A1
            else:  # neither: A2 as written; the haplotype builder's REF check names the site, skips it
                # with --ref-mismatch skip, or calls many of them a genome-build problem, as for a VCF
                self._orient[i] = _REF_IS_A2

    def query(self, chrom: str, start: int, end: int) -> VariantBlock:
        """Variants overlapping ``[start, end)`` (0-based, REF extent), genotypes of the selected samples."""
        canon = canonical_chrom(chrom)
        n = len(self.samples)
        if canon not in self._index or end <= start:
            return VariantBlock.empty(canon, n)
        ix, pos, max_len = self._index[canon]
        lo = int(np.searchsorted(pos, start - max_len + 1, side="left"))
        hi = int(np.searchsorted(pos, end, side="left"))
        idx = ix[lo:hi]
        idx = idx[self._pos[idx] + self._allele_len[idx] > start]
        if not len(idx):
            return VariantBlock.empty(canon, n)
        self._orient_variants(canon, idx)
        ref_is_a2 = self._orient[idx] == _REF_IS_A2
        refs = [self._a2[i] if r else self._a1[i] for i, r in zip(idx, ref_is_a2, strict=True)]
        # exact overlap with the REF allele now that it is known
        keep = np.array([int(self._pos[i]) + len(r) > start for i, r in zip(idx, refs, strict=True)])
        if not keep.all():
            idx, ref_is_a2 = idx[keep], ref_is_a2[keep]
            refs = [r for r, k in zip(refs, keep, strict=True) if k]
            if not len(idx):
                return VariantBlock.empty(canon, n)
        alts_raw = [self._a1[i] if r else self._a2[i] for i, r in zip(idx, ref_is_a2, strict=True)]
        alts = [[] if a in _MISSING_ALLELES else [a] for a in alts_raw]
        rows = self._rows if self._rows is not None else slice(None)
        try:
            a1_count = self._bed.read(index=np.s_[rows, idx], dtype="int8")  # (samples, variants)
        except Exception as err:
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise GenotypeError(f"reading {canon}:{start + 1}-{end} failed ({first})", path=self.bed_path) from None
        count = a1_count.T.astype(np.int16)  # (variants, samples)
        missing = (count < 0) | (count > 2)
        alt_count = np.where(ref_is_a2[:, None], count, 2 - count)
        gt = np.zeros((len(idx), n, 2), dtype=np.int16)
        gt[:, :, 0] = alt_count >= 2
        gt[:, :, 1] = alt_count >= 1
        gt[missing] = -1
        no_alt = np.array([not a for a in alts])
        if no_alt.any():  # a REF-only site ("0" allele): a call of the absent allele is no call
            gt[no_alt] = np.where(gt[no_alt] > 0, -1, gt[no_alt])
        phased = gt[:, :, 0] == gt[:, :, 1]
        ids = [variant_id(canon, int(self._pos[i]), r, a, self._ids[i])
               for i, r, a in zip(idx, refs, alts, strict=True)]
        return VariantBlock(canon, self._pos[idx].astype(np.int64), refs, alts, ids, gt, phased)

    def close(self) -> None:
        """Nothing to release: bed-reader opens the .bed per read."""

    def __enter__(self) -> PlinkGenotypes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

