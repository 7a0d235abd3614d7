"""Issue 8, section 3: wrong input is refused in one line (exit 2, no output), not silently used."""

from __future__ import annotations

import pytest
from conftest import demo_labels

from epx.errors import EpxError, GeneTableError


def assert_refused(result, *fragments: str) -> None:
    """Exit 2 with the fragments on stderr and no traceback: either epx's one-line error or, for
    options the CLI itself constrains (a choice or a minimum), click's usage error."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


# -- --build -----------------------------------------------------------------------------------


def test_unknown_build_is_refused(tmp_path, run, demo_study):
    from epx.io.genes import read_genes

    tsv = tmp_path / "two_builds.tsv"
    tsv.write_text("gene_name\tgene_id\tchr_hg38\tstrand_hg38\ttss_hg38\tchr_hg19\ttss_hg19\n"
                   "A\tE1\t1\t+\t1001\tchr1\t901\n")
    with pytest.raises(GeneTableError, match="unknown genome build 'hg37'; known builds: hg19, hg38"):
        read_genes(tsv, build="hg37")
    with pytest.raises(GeneTableError, match="unknown genome build 'GRCh38'"):
        read_genes(demo_study / "genes.tsv", build="GRCh38")  # even for a table without per-build columns
    assert_refused(run("check", "--genes", tsv, "--build", "hg37"), "hg37", "hg19", "hg38")
    out = tmp_path / "ds"
    assert_refused(run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                       "--build", "hg37", "-o", out), "hg37", "hg19", "hg38")
    assert not out.exists()


# -- --workers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -2])
def test_workers_below_one_are_refused(tmp_path, run, demo_study, workers):
    from epx.featurize import featurize

    out = tmp_path / "ds"
    with pytest.raises(EpxError, match=f"--workers must be a whole number >= 1, got {workers}"):
        featurize([demo_study / "genes.tsv"], demo_study / "manifest.tsv", out, workers=workers)
    assert_refused(run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                       *demo_labels(demo_study), "--workers", str(workers), "-o", out), "--workers", str(workers))
    assert not out.exists()
