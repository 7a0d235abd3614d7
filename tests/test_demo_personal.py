"""``epx demo --personal``: a synthetic cohort that real tools (cyvcf2, bcftools, tabix, bed-reader)
read, whose REF alleles match its FASTA and whose eQTL truth a regression recovers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bed_reader import open_bed

from epx.demo_personal import CHROMS, TSS_MARGIN, write_personal_demo
from epx.errors import OutputExistsError
from epx.io.fasta import Reference
from epx.io.genes import read_genes
from epx.io.genotypes import VcfGenotypes
from epx.io.plink import PlinkGenotypes
from epx.outputs import MARKER

FILES = ["reference.fa", "reference.fa.fai", "genes.tsv", "genotypes.vcf.gz", "genotypes.vcf.gz.tbi",
         "genotypes.bed", "genotypes.bim", "genotypes.fam", "expression.bed", "eqtls.tsv", "README.md"]
needs_bcftools = pytest.mark.skipif(not all(shutil.which(t) for t in ("bcftools", "tabix")),
                                    reason="bcftools/tabix not installed (apt-get install bcftools tabix)")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("pdemo") / "cohort"
    return out, write_personal_demo(out, seed=0)


def _vcf_records(path: Path):
    import cyvcf2

    vcf = cyvcf2.VCF(str(path))
    try:
        return list(vcf.samples), [(v.CHROM, v.POS, v.ID, v.REF, list(v.ALT), v.genotype.array()) for v in vcf]
    finally:
        vcf.close()


def test_writes_every_file_and_describes_it(cohort):
    out, paths = cohort
    for name in FILES:
        assert (out / name).is_file(), name
    readme = (out / "README.md").read_text()
    for name in FILES:
        if name != "README.md":
            assert f"`{name}`" in readme, name
    assert "biallelic sites only" in readme
    assert all(p.exists() or Path(f"{p}.bed").exists() for p in paths.values())
    assert not [p for p in out.parent.iterdir() if p.name != out.name], "temporary build directory left behind"


def test_same_seed_same_bytes(tmp_path, cohort):
    out, _ = cohort
    again = tmp_path / "again"
    write_personal_demo(again, seed=0)
    for name in FILES:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    other = tmp_path / "other"
    write_personal_demo(other, seed=1)
    assert (other / "genotypes.vcf.gz").read_bytes() != (out / "genotypes.vcf.gz").read_bytes()


def test_force_replaces_only_epx_output(tmp_path):
    out = tmp_path / "c"
    write_personal_demo(out, seed=0)
    with pytest.raises(OutputExistsError):
        write_personal_demo(out, seed=0)
    write_personal_demo(out, seed=2, force=True)
    assert (out / MARKER).is_file()


def test_reference_fasta(cohort):
    out, _ = cohort
    with Reference(out / "reference.fa") as ref:
        assert ref.chroms == list(CHROMS)
        for chrom, n in CHROMS.items():
            assert ref.length(chrom) == n
            seq = ref.fetch(chrom, 0, n)
            assert seq[:100] == b"N" * 100 and seq[-100:] == b"N" * 100
            body = seq[5_000:-5_000]
            lower = sum(body.count(b) for b in b"acgt") / len(body)
            assert 0.15 < lower < 0.6, lower  # soft-masked repeats
            up = body.upper()
            gc = (up.count(b"G") + up.count(b"C")) / len(up)
            assert 0.36 < gc < 0.5, gc
            cpg = up.count(b"CG") / len(up)
            assert cpg < 0.5 * (gc / 2) ** 2, cpg  # CpG depleted


def test_genes(cohort):
    out, _ = cohort
    genes = read_genes(out / "genes.tsv")
    assert 20 <= len(genes) <= 40
    assert set(genes["strand"]) == {"+", "-"}
    assert set(genes["chrom"]) == set(CHROMS)
    for g in genes.itertuples():
        assert TSS_MARGIN <= g.tss <= CHROMS[g.chrom] - TSS_MARGIN
        assert g.start <= g.tss < g.end


def test_vcf_read_by_cyvcf2(cohort):
    out, _ = cohort
    samples, records = _vcf_records(out / "genotypes.vcf.gz")
    assert 60 <= len(samples) <= 120 and samples[0] == "IND001"
    kinds = {"snp": 0, "ins": 0, "del": 0, "multi": 0}
    missing = 0
    for _chrom, _pos, vid, ref, alts, gt in records:
        assert vid.startswith("rsdemo")
        if len(alts) > 1:
            kinds["multi"] += 1
        elif len(ref) > 1:
            kinds["del"] += 1
            assert 2 <= len(ref) <= 21 and alts[0] == ref[0]
        elif len(alts[0]) > 1:
            kinds["ins"] += 1
            assert 2 <= len(alts[0]) <= 21 and alts[0][0] == ref
        else:
            kinds["snp"] += 1
        called = gt[(gt[:, 0] >= 0)]
        missing += int((gt[:, 0] < 0).sum())
        assert (called[:, 2] == 1).all(), "every call is phased"
        for a in range(1, len(alts) + 1):
            assert 0.04 <= np.mean(called[:, :2] == a) <= 0.52
    assert all(kinds.values()), kinds
    assert missing > 0


@needs_bcftools
def test_bcftools_and_tabix_read_it(cohort):
    out, _ = cohort
    vcf = str(out / "genotypes.vcf.gz")
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, check=True).stdout  # noqa: E731
    n_all = len(run("bcftools", "view", "-H", vcf).splitlines())
    assert n_all > 500
    region = run("bcftools", "view", "-H", "-r", "chr2:50000-60000", vcf).splitlines()
    assert region and all(ln.split("\t")[0] == "chr2" and 50_000 <= int(ln.split("\t")[1]) <= 60_000 for ln in region)
    assert run("tabix", vcf, "chr2:50000-60000").splitlines() == region
    # every REF matches the FASTA, and nothing needs left-aligning
    check = subprocess.run(["bcftools", "norm", "--check-ref", "e", "-f", str(out / "reference.fa"), vcf,
                            "-Ou", "-o", "/dev/null"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert f"{n_all}/0/0/0" in check.stderr


def test_vcf_region_query_by_epx(cohort):
    out, _ = cohort
    g = VcfGenotypes(out / "genotypes.vcf.gz")
    block = g.query("chr1", 100_000, 110_000)
    assert len(block) > 5 and ((block.pos >= 99_000) & (block.pos < 110_000)).all()
    assert block.phased.all()
    g.close()


def test_plink_copy_holds_the_biallelic_sites(cohort):
    out, _ = cohort
    samples, records = _vcf_records(out / "genotypes.vcf.gz")
    biallelic = [r for r in records if len(r[4]) == 1]
    bed = open_bed(out / "genotypes.bed")
    assert list(bed.iid) == samples and list(bed.sid) == [r[2] for r in biallelic]
    assert list(bed.allele_2) == [r[3] for r in biallelic] and list(bed.allele_1) == [r[4][0] for r in biallelic]
    dosage = bed.read(dtype="int8")  # (individuals, sites): count of A1 = ALT
    for j, (*_, gt) in enumerate(biallelic):
        miss = gt[:, 0] < 0
        expected = np.where(miss, -127, gt[:, 0] + gt[:, 1])
        np.testing.assert_array_equal(dosage[:, j], expected)
    with Reference(out / "reference.fa") as ref:
        plink = PlinkGenotypes(out / "genotypes", ref)
        vcf = VcfGenotypes(out / "genotypes.vcf.gz")
        for chrom, n in CHROMS.items():
            a, b = plink.query(chrom, 0, n), vcf.query(chrom, 0, n)
            keep = [i for i, alts in enumerate(b.alts) if len(alts) == 1]
            assert a.ids == [b.ids[i] for i in keep] and a.ref == [b.ref[i] for i in keep]
            np.testing.assert_array_equal(a.gt.sum(axis=2), b.gt[keep].sum(axis=2))
        vcf.close()


def _expression(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "expression.bed", sep="\t")


def test_expression_bed_is_gtex_style(cohort):
    out, _ = cohort
    expr = _expression(out)
    samples, _ = _vcf_records(out / "genotypes.vcf.gz")
    assert list(expr.columns) == ["#chr", "start", "end", "gene_id", *samples]
    genes = read_genes(out / "genes.tsv").set_index("gene_id")
    assert set(expr["gene_id"]) == set(genes.index)
    assert (expr["start"].to_numpy() == genes.loc[expr["gene_id"], "tss"].to_numpy()).all()
    values = expr[samples].to_numpy()
    np.testing.assert_allclose(values.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(values.std(axis=1), 1, atol=1e-4)


def test_eqtl_truth_is_recovered_by_ols(cohort):
    out, _ = cohort
    truth = pd.read_csv(out / "eqtls.tsv", sep="\t")
    expr = _expression(out).set_index("gene_id")
    samples, records = _vcf_records(out / "genotypes.vcf.gz")
    dosage = {r[2]: (r[5][:, 0] + r[5][:, 1]).astype(float) for r in records}
    n_genes = len(expr)
    assert 0.4 <= truth["gene_id"].nunique() / n_genes <= 0.8
    assert truth.groupby("gene_id").size().between(1, 3).all()
    z_scores = []
    for gene, rows in truth.groupby("gene_id"):
        y = expr.loc[gene, samples].to_numpy(dtype=float)
        x = np.column_stack([np.ones(len(y)), *(dosage[v] for v in rows["variant_id"])])
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        resid = y - x @ beta
        sigma2 = resid @ resid / (len(y) - x.shape[1])
        se = np.sqrt(np.diag(sigma2 * np.linalg.inv(x.T @ x)))[1:]
        z = (beta[1:] - rows["effect"].to_numpy()) / se
        z_scores.extend(z.tolist())
        if len(rows) == 1:  # one causal variant: the simple regression on its dosage
            slope = np.polyfit(dosage[rows["variant_id"].iloc[0]], y, 1)[0]
            assert abs(slope - rows["effect"].iloc[0]) < 5 * se[0]
    z_scores = np.array(z_scores)
    assert (np.abs(z_scores) < 4.5).all(), z_scores  # the estimates scatter around the truth by their SE
    assert abs(z_scores.mean()) < 1.0


def test_cli_personal(run, tmp_path):
    from conftest import assert_user_error

    out = tmp_path / "cli"
    result = run("demo", "--personal", out, "--seed", "4")
    assert result.exit_code == 0, result.stderr
    keys = dict(line.split("\t") for line in result.stdout.splitlines())
    assert {"reference", "genes", "vcf", "plink", "expression", "eqtls"} <= set(keys)
    assert Path(keys["vcf"]).is_file()
    assert_user_error(run("demo", "--personal", out), "already exists")
    assert run("demo", "--personal", out, "--force").exit_code == 0
    assert_user_error(run("demo", "--personal", tmp_path / "x", "--n-genes", "300"), "--n-genes")
