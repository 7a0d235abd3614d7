"""Personal haplotype windows around a TSS, exactly as ``bcftools consensus -H 1`` / ``-H 2`` would
write them, with the TSS carried through the indels before it and the window length fixed.

Why emulate bcftools rather than "apply every ALT": real VCFs hold overlapping records (a SNP
inside a deletion, duplicate positions, an insertion after a SNP at the same base), and the
answer to "what is this haplotype's sequence" must be one that users can check with the tool
they already trust. :func:`apply_alleles` follows bcftools' buffer rules: a record overlapping
the last applied one is skipped, except an anchored indel on its last base; the ALT is written in
the case of the reference base it replaces; missing alleles leave the reference. Haplotypes are
never merged (kipoiseq's ``VariantSeqExtractor`` writes both haplotypes' variants into one
sequence, a sequence no chromosome carries).

A window of length ``L`` has the (mapped) TSS at 0-based index ``L // 2`` and lies on the
reference's forward strand; past a chromosome end it is padded with ``N``. A TSS inside a
replaced or deleted span maps to the same offset in the new allele, clipped to its last base.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from epx.io.genotypes import GenotypeError, Genotypes, VariantBlock

UNPHASED_MODES = ("error", "as-listed")
MISMATCH_MODES = ("error", "skip")
# above this share of REF alleles disagreeing with the FASTA, the files are on different builds
BUILD_MISMATCH_SHARE = 0.2


def _is_indel(ref: str, alt: str) -> bool:
    """htslib's VCF_INDEL classification (``bcf_set_variant_type``), which bcftools consensus uses
    to decide whether the first base is an anchor."""
    if len(ref) == 1 and len(alt) == 1:
        return False
    r = a = 0
    while r < len(ref) and a < len(alt) and ref[r].upper() == alt[a].upper():
        r += 1
        a += 1
    if a < len(alt) and r == len(ref):
        return True
    if r < len(ref) and a == len(alt):
        return True
    if r == len(ref) and a == len(alt):
        return False
    re_, ae = len(ref) - 1, len(alt) - 1
    while re_ > r and ae > a and ref[re_].upper() == alt[ae].upper():
        re_ -= 1
        ae -= 1
    if ae == a:
        return re_ != r and ref[re_].upper() == alt[ae].upper()
    if re_ == r:
        return ref[re_].upper() == alt[ae].upper()
    return False


def _usable(alt: str) -> bool:
    """Sequence alleles only: symbolic (``<DEL>``), breakend and ``*`` alleles leave the reference."""
    return bool(alt) and alt[0] not in "<*[]." and "[" not in alt and "]" not in alt


@dataclass
class Applied:
    """One haplotype's sequence over a reference segment and where the TSS went."""

    seq: bytearray
    tss: int  # index of the TSS base in ``seq``
    applied: int
    skipped_overlap: int


def apply_alleles(segment: bytes, seg_start: int, tss: int, block: VariantBlock, alleles: np.ndarray,
                  usable: list[bool] | None = None) -> Applied:
    """Apply one haplotype's alleles (index per variant of ``block``; 0 or -1 leave the reference)
    to the reference ``segment`` starting at ``seg_start``, as bcftools consensus does.

    Variants must lie inside the segment (``pos >= seg_start``, ``pos + len(REF) <= seg_end``)."""
    buf = bytearray(segment)
    fast = _snv_fast_path(buf, seg_start, block, alleles, usable)
    if fast is not None:
        return Applied(buf, tss - seg_start, fast, 0)
    tss_idx = tss - seg_start
    mod_off = 0
    frz = -1  # last reference base of the last applied variant (bcftools' fa_frz_pos)
    prev_is_insert = False
    prev_base_pos = -1
    applied = skipped = 0
    for i in np.flatnonzero(alleles > 0):
        k = int(alleles[i])
        alts = block.alts[i]
        if k > len(alts):
            raise GenotypeError(f"{block.chrom}:{int(block.pos[i]) + 1} ({block.ids[i]}) has allele index {k} "
                                f"but only {len(alts)} ALT allele(s)")
        alt = alts[k - 1]
        if usable is not None and not usable[i] or not _usable(alt):
            continue
        ref = block.ref[i]
        pos = int(block.pos[i])
        rlen, alen = len(ref), len(alt)
        trim_beg = 1 if _is_indel(ref, alt) and ref[0] == alt[0] else 0
        if pos <= frz and (pos < frz or not trim_beg or prev_is_insert):
            skipped += 1
            continue
        idx = pos - seg_start + mod_off
        upper = chr(buf[idx]).upper() == chr(buf[idx])
        new = (alt.upper() if upper else alt.lower()).encode("ascii")
        len_diff = alen - rlen
        if len_diff <= 0:
            prev_base_pos = pos + rlen - 1
            prev_is_insert = False
            buf[idx + trim_beg: idx + alen] = new[trim_beg:]
            if len_diff:
                del buf[idx + alen: idx + rlen]
        else:
            ibeg = 0
            while ibeg < alen and ibeg < rlen and ref[ibeg] == chr(new[ibeg]) and pos + ibeg <= prev_base_pos:
                ibeg += 1
            prev_is_insert = True
            prev_base_pos = pos
            buf[idx + ibeg: idx + rlen] = new[ibeg:]
        # the TSS: before the variant it stays, after it shifts, inside it keeps its offset
        if tss_idx >= idx + rlen:
            tss_idx += len_diff
        elif tss_idx >= idx:
            tss_idx = idx + min(tss_idx - idx, alen - 1)
        mod_off += len_diff
        frz = pos + rlen - 1
        applied += 1
    return Applied(buf, tss_idx, applied, skipped)


def _snv_table(block: VariantBlock) -> tuple[np.ndarray, np.ndarray]:
    """Per variant: whether every allele is a single base, and its ALT bases (uint8), cached on
    the block."""
    cached = getattr(block, "_snv", None)
    if cached is None:
        width = max((len(a) for a in block.alts), default=0) or 1
        codes = np.zeros((len(block), width), dtype=np.uint8)
        snv = np.zeros(len(block), dtype=bool)
        for i, (ref, alts) in enumerate(zip(block.ref, block.alts, strict=True)):
            if len(ref) == 1 and alts and all(len(a) == 1 and a in "ACGTN" for a in alts):
                snv[i] = True
                codes[i, : len(alts)] = np.frombuffer("".join(alts).encode("ascii"), dtype=np.uint8)
        cached = (snv, codes)
        block._snv = cached  # type: ignore[attr-defined]
    return cached


def _snv_fast_path(buf: bytearray, seg_start: int, block: VariantBlock, alleles: np.ndarray,
                   usable: list[bool] | None) -> int | None:
    """Apply a haplotype of single-base substitutions at distinct positions in one numpy step
    (what the general loop would do, without Python per variant); None when it does not apply."""
    sel = np.flatnonzero(alleles > 0)
    if sel.size == 0:
        return 0
    snv, codes = _snv_table(block)
    pos = block.pos[sel]
    if not snv[sel].all() or (sel.size > 1 and not (np.diff(pos) > 0).all()):
        return None
    if usable is not None and not all(usable[i] for i in sel):
        return None
    k = alleles[sel].astype(np.int64) - 1
    if (k >= codes.shape[1]).any() or (codes[sel, k] == 0).any():
        return None
    view = np.frombuffer(buf, dtype=np.uint8)
    idx = pos - seg_start
    new = codes[sel, k]
    lower = view[idx] >= ord("a")
    view[idx] = np.where(lower, new | 0x20, new)
    return int(sel.size)


@dataclass
class GeneHaplotypes:
    """The reference window and every selected haplotype window of one gene, deduplicated.

    ``windows[0]`` is the reference window; ``index[s, h]`` points haplotype ``h`` (0, 1) of sample
    ``s`` into ``windows``. (Genotype dosages for the elastic net come from :func:`dosage_matrix`
    over the wider cis window, not from here.)"""

    gene_id: str
    chrom: str
    tss: int
    window: int
    windows: list[bytes]
    index: np.ndarray  # int32 (samples, 2)
    n_variants: int
    missing_calls: int = 0
    unphased_calls: int = 0
    skipped_overlap: int = 0
    skipped_mismatch: int = 0
    skipped_symbolic: int = 0
    padded: bool = False


@dataclass
class HaplotypeStats:
    """What a run met, for the summary line and the report."""

    genes: int = 0
    requested: int = 0
    unique: int = 0
    reference_hits: int = 0
    variants: int = 0
    missing_calls: int = 0
    unphased_calls: int = 0
    skipped_overlap: int = 0
    skipped_mismatch: int = 0
    skipped_symbolic: int = 0
    checked_ref: int = 0
    padded_genes: int = 0
    mismatches: list[str] = field(default_factory=list)


def dosage_matrix(block: VariantBlock, rows: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """ALT-allele counts (samples ``rows`` x sequence alleles) of a block, one column per ALT of a
    multi-allelic site (``ID>ALT``); NaN where a call is missing (the elastic net imputes it)."""
    gt = block.gt if rows is None else block.gt[:, rows]
    cols: list[np.ndarray] = []
    ids: list[str] = []
    missing = (gt < 0).any(axis=2)  # (variants, samples)
    for i, alts in enumerate(block.alts):
        for a, alt in enumerate(alts, start=1):
            if not _usable(alt):
                continue
            col = (gt[i] == a).sum(axis=1).astype(np.float32)
            col[missing[i]] = np.nan
            cols.append(col)
            ids.append(block.ids[i] if len(alts) == 1 else f"{block.ids[i]}>{alt}")
    n = gt.shape[1]
    return ids, (np.stack(cols, axis=1) if cols else np.zeros((n, 0), np.float32))


class HaplotypeBuilder:
    """Builds :class:`GeneHaplotypes` for genes from a reference and a genotype source."""

    def __init__(self, reference, genotypes: Genotypes, window: int, unphased: str = "error",
                 ref_mismatch: str = "error", keep_last: bool = False):
        if window < 1:
            raise ValueError("window must be positive")
        if unphased not in UNPHASED_MODES:
            raise ValueError(f"unphased must be one of {UNPHASED_MODES}")
        if ref_mismatch not in MISMATCH_MODES:
            raise ValueError(f"ref_mismatch must be one of {MISMATCH_MODES}")
        self.reference = reference
        self.genotypes = genotypes
        self.window = window
        self.unphased = unphased
        self.ref_mismatch = ref_mismatch
        self.stats = HaplotypeStats()
        self._cached: tuple[str, int, int, VariantBlock] | None = None
        # the last gene's variants and segment, for variant-effect windows (keep_last)
        self.keep_last = keep_last
        self.last_block: VariantBlock | None = None
        self.last_segment: tuple[bytes, int] = (b"", 0)
        self.last_usable: list[bool] = []

    # -- the variants of a segment -------------------------------------------------------------
    def _segment_block(self, chrom: str, start: int, end: int) -> tuple[int, int, VariantBlock]:
        """Query ``[start, end)``, widened until no variant straddles either edge."""
        n = self.reference.length(chrom)
        for _ in range(50):
            block = self._query(chrom, start, end)
            if len(block) == 0:
                return start, end, block
            ends = block.pos + np.array([len(r) for r in block.ref], dtype=np.int64)
            new_start, new_end = min(start, int(block.pos.min())), max(end, min(int(ends.max()), n))
            if (new_start, new_end) == (start, end):
                return start, end, block
            start, end = new_start, new_end
        raise GenotypeError(f"variants around {chrom}:{start + 1}-{end} keep overlapping each other",
                            path=self.genotypes.path)

    def _query(self, chrom: str, start: int, end: int) -> VariantBlock:
        """Genotype query with read-ahead: neighbouring genes' windows overlap, so one read of
        ``[start, end + window)`` serves the genes that follow (genes sorted by position)."""
        cached = self._cached
        if cached is not None and cached[0] == chrom and cached[1] <= start and end <= cached[2]:
            block = cached[3]
            if len(block) == 0:
                return block
            keep = (block.pos < end) & (block.pos + block._rlen > start)  # type: ignore[attr-defined]
            idx = np.flatnonzero(keep)
            return VariantBlock(block.chrom, block.pos[idx], [block.ref[i] for i in idx],
                                [block.alts[i] for i in idx], [block.ids[i] for i in idx], block.gt[idx],
                                block.phased[idx])
        ahead = end + self.window
        block = self.genotypes.query(chrom, start, ahead)
        block._rlen = np.array([len(r) for r in block.ref], dtype=np.int64)  # type: ignore[attr-defined]
        self._cached = (chrom, start, ahead, block)
        return self._query(chrom, start, end)

    def _check_ref(self, block: VariantBlock, segment: bytes, seg_start: int) -> list[bool]:
        """REF alleles against the FASTA: a mismatch is an error naming the site (or skipped and
        counted); many of them mean another genome build, and say so."""
        ok: list[bool] = []
        bad: list[int] = []
        for i, ref in enumerate(block.ref):
            at = int(block.pos[i]) - seg_start
            fasta = segment[at: at + len(ref)].decode("ascii").upper()
            good = fasta == ref or not ref
            ok.append(good)
            if not good:
                bad.append(i)
        self.stats.checked_ref += len(block.ref)
        if bad:
            share = len(bad) / max(len(block.ref), 1)
            first = bad[0]
            at = int(block.pos[first]) - seg_start
            site = (f"{block.chrom}:{int(block.pos[first]) + 1} ({block.ids[first]}): REF {block.ref[first]} but the "
                    f"FASTA has {segment[at: at + len(block.ref[first])].decode('ascii')}")
            if len(bad) >= 3 and share > BUILD_MISMATCH_SHARE:
                raise GenotypeError(
                    f"{len(bad)} of {len(block.ref)} REF alleles near {block.chrom}:{int(block.pos[first]) + 1} disagree "
                    f"with the FASTA {self.reference.path} (e.g. {site}): the genotypes look like another genome build "
                    "than the FASTA (GRCh37 vs GRCh38?); lift them over or use the matching reference",
                    path=self.genotypes.path)
            if self.ref_mismatch == "error":
                raise GenotypeError(f"{site}; fix the site, use the FASTA the genotypes were called on, or pass "
                                    "--ref-mismatch skip to leave such sites out (counted)", path=self.genotypes.path)
            self.stats.mismatches.extend(block.ids[i] for i in bad[:20 - len(self.stats.mismatches)])
        return ok

    # -- one gene ------------------------------------------------------------------------------
    def gene(self, gene_id: str, chrom: str, tss: int) -> GeneHaplotypes:
        """Every selected sample's two haplotype windows for one gene, and the reference window."""
        L = self.window
        half = L // 2
        n_chrom = self.reference.length(chrom)
        lo, hi = tss - half, tss - half + L  # the reference window
        pad = 1000
        while True:
            start, end, block = self._segment_block(chrom, max(lo - pad, 0), min(hi + pad, n_chrom))
            segment = self.reference.fetch(chrom, start, end)
            result = self._build(gene_id, chrom, tss, segment, start, end, n_chrom, block)
            if result is not None:
                return result
            pad *= 4

    def _alleles(self, block: VariantBlock, gene_id: str) -> tuple[np.ndarray, int, int]:
        """(variants, samples, 2) allele indices after the missing and unphased rules."""
        gt = block.gt.copy()
        missing = int((gt < 0).sum())
        gt[gt < 0] = 0
        unphased = ~block.phased
        n_unphased = int(unphased.sum())
        if n_unphased and self.unphased == "error":
            v, s = np.argwhere(unphased)[0]
            sample = self.genotypes.samples[s]
            raise GenotypeError(
                f"{n_unphased} unphased heterozygous call(s) around gene {gene_id}, e.g. {sample} at "
                f"{block.chrom}:{int(block.pos[v]) + 1} ({block.ids[v]}); haplotypes need phased genotypes "
                "(phase with SHAPEIT5/Beagle/Eagle), or pass --unphased as-listed to take the alleles in the "
                "order written (bcftools consensus -H 1/-H 2 does)", path=self.genotypes.path)
        return gt, missing, n_unphased

    def _build(self, gene_id: str, chrom: str, tss: int, segment: bytes, seg_start: int, seg_end: int,
               n_chrom: int, block: VariantBlock) -> GeneHaplotypes | None:
        L = self.window
        half = L // 2
        ref_lo = tss - half - seg_start
        reference = bytes(segment[max(ref_lo, 0): ref_lo + L]) if ref_lo + L > 0 else b""
        reference = b"N" * max(-ref_lo, 0) + reference + b"N" * (L - max(-ref_lo, 0) - len(reference))
        ok = self._check_ref(block, segment, seg_start) if len(block) else []
        usable = [ok[i] and any(_usable(a) for a in block.alts[i]) for i in range(len(block))]
        # sites where a selected haplotype carries a symbolic or '*' allele (not gVCF blocks nobody has)
        n_symbolic = sum(1 for i in range(len(block)) if ok[i] and any(
            not _usable(alt) and (block.gt[i] == a).any() for a, alt in enumerate(block.alts[i], start=1)))
        gt, missing, n_unphased = self._alleles(block, gene_id) if len(block) else (block.gt, 0, 0)
        n_samples = len(self.genotypes.samples)
        for i, good in enumerate(ok):
            if not good:
                gt[i] = 0
        haps = gt.transpose(1, 2, 0).reshape(n_samples * 2, len(block))  # (sample*2 + h, variants)
        keys, inverse = np.unique(haps, axis=0, return_inverse=True) if len(block) else (
            np.zeros((1, 0), np.int16), np.zeros(n_samples * 2, np.int64))
        inverse = np.asarray(inverse).reshape(-1)
        windows: list[bytes] = [reference]
        seen = {reference: 0}
        key_window = np.zeros(len(keys), dtype=np.int32)
        overlap = 0
        for k, key in enumerate(keys):
            if not key.any():
                key_window[k] = 0
                continue
            done = apply_alleles(segment, seg_start, tss, block, key, usable)
            overlap += done.skipped_overlap
            start = done.tss - half
            if start < 0 and seg_start > 0 or start + L > len(done.seq) and seg_end < n_chrom:
                return None  # the indels pulled the window past the segment: widen and redo
            seq = bytes(done.seq[max(start, 0): start + L])
            seq = b"N" * max(-start, 0) + seq + b"N" * (L - max(-start, 0) - len(seq))
            if seq not in seen:
                seen[seq] = len(windows)
                windows.append(seq)
            key_window[k] = seen[seq]
        index = key_window[inverse].reshape(n_samples, 2)
        padded = tss - half < 0 or tss - half + L > n_chrom
        if self.keep_last:
            self.last_block, self.last_segment, self.last_usable = block, (segment, seg_start), usable
        st = self.stats
        st.genes += 1
        st.requested += n_samples * 2
        st.unique += len(windows) - 1
        st.reference_hits += int((index == 0).sum())
        st.variants += len(block)
        st.missing_calls += missing
        st.unphased_calls += n_unphased
        st.skipped_overlap += overlap
        st.skipped_mismatch += sum(1 for g in ok if not g)
        st.skipped_symbolic += n_symbolic
        st.padded_genes += int(padded)
        return GeneHaplotypes(gene_id, chrom, tss, L, windows, index, len(block), missing, n_unphased,
                              overlap, sum(1 for g in ok if not g), n_symbolic, padded)

    def genes(self, genes) -> Iterator[GeneHaplotypes]:
        """:meth:`gene` over a gene table (``gene_id``, ``chrom``, ``tss`` columns)."""
        for row in genes.itertuples(index=False):
            yield self.gene(str(row.gene_id), str(row.chrom), int(row.tss))

    def finish(self) -> None:
        """After the last gene: refuse a run where REF mismatches say the builds differ."""
        st = self.stats
        n_bad = st.skipped_mismatch
        if n_bad >= 3 and n_bad / max(st.checked_ref, 1) > BUILD_MISMATCH_SHARE:
            raise GenotypeError(
                f"{n_bad} of {st.checked_ref} REF alleles disagree with the FASTA {self.reference.path}: the genotypes "
                "look like another genome build than the FASTA; lift them over or use the matching reference",
                path=self.genotypes.path)
