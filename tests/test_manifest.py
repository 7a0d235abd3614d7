"""Track manifests (TSV and YAML), chromosome aliasing, and their bad inputs."""

from __future__ import annotations

from conftest import assert_user_error, write_bed, write_bigwig

from epx.io.chroms import alias_map, canonical_chrom
from epx.io.manifest import read_manifest


def _tracks(tmp_path, chrom_names=("chr1", "chr2")):
    d = tmp_path / "tracks"
    d.mkdir()
    sizes = {c: 2_000_000 for c in chrom_names}
    write_bigwig(d / "k4.bw", sizes, [(chrom_names[0], 10_000, 10_500, 5.0)])
    write_bed(d / "k4.bed", [(chrom_names[0], 10_000, 10_500, "p1", 0, ".", 9.5, 3, 2, 250)])
    return d


def test_canonical_chrom_aliases():
    assert canonical_chrom("1") == canonical_chrom("chr1") == "chr1"
    assert canonical_chrom("MT") == canonical_chrom("chrM") == canonical_chrom("M") == "chrM"
    assert canonical_chrom("x") == "chrX"
    assert alias_map(["1", "MT", "GL000192.1"]) == {"chr1": "1", "chrM": "MT", "chrGL000192.1": "GL000192.1"}


def test_tsv_and_yaml_manifests_resolve_relative_paths(tmp_path, small_genes, run):
    _tracks(tmp_path)
    tsv = tmp_path / "manifest.tsv"
    tsv.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K4me3\tbigwig\ttracks/k4.bw\nX1\tH3K4me3\tnarrowPeak\ttracks/k4.bed\n")
    m = read_manifest(tsv)
    assert m["kind"].tolist() == ["bigwig", "bed"]
    assert m["path"].tolist() == [str(tmp_path / "tracks" / "k4.bw"), str(tmp_path / "tracks" / "k4.bed")]
    yml = tmp_path / "manifest.yaml"
    yml.write_text("X1:\n  H3K4me3:\n    bigwig: tracks/k4.bw\n    bed: tracks/k4.bed\n")
    assert read_manifest(yml)[["cell_line", "assay", "kind", "path"]].equals(m[["cell_line", "assay", "kind", "path"]])
    result = run("check", "--genes", small_genes, "--manifest", tsv)
    assert result.exit_code == 0, result.stderr
    assert "Inputs are consistent" in result.stdout
    # genes on chr3..chrX are absent from the tracks: a warning, with a count and examples
    assert "absent from the track" in result.stderr and "chr3" in result.stderr


def test_ensembl_named_tracks_alias_to_ucsc_genes(tmp_path, small_genes, run):
    _tracks(tmp_path, chrom_names=("1", "2", "3", "4", "5", "X"))
    tsv = tmp_path / "manifest.tsv"
    tsv.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K4me3\tbigwig\ttracks/k4.bw\n")
    result = run("check", "--genes", small_genes, "--manifest", tsv)
    assert result.exit_code == 0, result.stderr
    assert "absent" not in result.stderr


def test_manifest_missing_file_unknown_kind_missing_columns(tmp_path, small_genes, run):
    _tracks(tmp_path)
    m = tmp_path / "m.tsv"
    m.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K4me3\tbigwig\ttracks/k4.bw\nX1\tDNase\tbigwig\ttracks/gone.bw\n")
    assert_user_error(run("check", "--genes", small_genes, "--manifest", m), f"{m}:3", "X1/DNase", "not found")
    m.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K4me3\twig\ttracks/k4.bw\n")
    assert_user_error(run("check", "--genes", small_genes, "--manifest", m), f"{m}:2", "unknown kind 'wig'")
    m.write_text("cell\tassay\tkind\nX1\tH3K4me3\tbigwig\n")
    assert_user_error(run("check", "--genes", small_genes, "--manifest", m), str(m), "missing column(s) path")
    m.write_text("cell\tassay\tpath\nX1\tH3K4me3\ttracks/k4.txt\n")  # no kind column, no telling suffix
    assert_user_error(run("check", "--genes", small_genes, "--manifest", m), f"{m}:2", "missing kind")
    m.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K4me3\tbigwig\ttracks/k4.bw\nX1\tH3K4me3\tbw\ttracks/k4.bw\n")
    assert_user_error(run("check", "--genes", small_genes, "--manifest", m), f"{m}:3", "duplicate track")


def test_gene_chromosomes_absent_from_every_track(tmp_path, small_genes, run):
    d = tmp_path / "tracks"
    d.mkdir()
    write_bigwig(d / "k4.bw", {"chr21": 1_000_000}, [("chr21", 100, 200, 1.0)])
    m = tmp_path / "m.tsv"
    m.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K4me3\tbigwig\ttracks/k4.bw\n")
    assert_user_error(run("check", "--genes", small_genes, "--manifest", m), "no gene chromosome", "genome build")


def test_not_a_bigwig(tmp_path, small_genes, run):
    d = tmp_path / "tracks"
    d.mkdir()
    (d / "k4.bw").write_text("this is not a bigwig\n")
    m = tmp_path / "m.tsv"
    m.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K4me3\tbigwig\ttracks/k4.bw\n")
    assert_user_error(run("check", "--genes", small_genes, "--manifest", m), "k4.bw", "bigWig")


def test_other_naming_styles(tmp_path, small_genes, run):
    """Columns spelled differently, kind inferred from the suffix, gzipped narrowPeak."""
    import gzip

    _tracks(tmp_path)
    with gzip.open(tmp_path / "tracks" / "k4.narrowPeak.gz", "wt") as fh:
        fh.write("chr1\t10000\t10500\tp1\t0\t.\t9.5\t3\t2\t250\n")
    m = tmp_path / "m.tsv"
    m.write_text("sample\tmark\tfile\nX1\tH3K4me3\ttracks/k4.bw\nX1\tH3K4me3\ttracks/k4.narrowPeak.gz\n")
    manifest = read_manifest(m)
    assert manifest["kind"].tolist() == ["bigwig", "bed"] and manifest["cell_line"].tolist() == ["X1", "X1"]
    assert run("check", "--genes", small_genes, "--manifest", m).exit_code == 0
