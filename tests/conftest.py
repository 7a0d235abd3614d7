"""Shared fixtures: the real CLI runner, real input files, and the shared real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Skip shared-data tests where ../shared is absent, but never silently in CI (nor the
    neural models' tests, which need torch)."""
    import importlib.util

    if os.environ.get("EPX_REQUIRE_SHARED_DATA") and importlib.util.find_spec("torch") is None:
        raise pytest.UsageError("torch is not installed but EPX_REQUIRE_SHARED_DATA is set: the epx-torch tests "
                                "would skip silently (scripts/install.sh installs it)")
    if os.environ.get("EPX_REQUIRE_SHARED_DATA"):
        import shutil

        if importlib.util.find_spec("epx_enformer") is None:
            raise pytest.UsageError("plugins/epx-enformer is not installed but EPX_REQUIRE_SHARED_DATA is set: the "
                                    "personalize tests would skip silently (scripts/install.sh installs it)")
        absent = [t for t in ("bcftools", "bgzip", "tabix") if shutil.which(t) is None]
        if absent:
            raise pytest.UsageError(f"{', '.join(absent)} not found but EPX_REQUIRE_SHARED_DATA is set: the haplotype "
                                    "tests would skip silently (scripts/install.sh installs them)")
    if SHARED.is_dir():
        return
    if os.environ.get("EPX_REQUIRE_SHARED_DATA"):
        raise pytest.UsageError(f"{SHARED} is missing but EPX_REQUIRE_SHARED_DATA is set")
    skip = pytest.mark.skip(reason=f"real datasets not found at {SHARED}")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared() -> Path:
    return SHARED


@pytest.fixture
def run():
    """Invoke the real `epx` CLI in-process; returns the click Result (stdout/stderr split)."""
    from epx.cli import app

    runner = CliRunner()

    def _run(*args: str | Path, env: dict[str, str] | None = None):
        return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)

    return _run


def assert_user_error(result, *fragments: str) -> None:
    """One red error line on stderr naming the culprit (after any progress or warnings), exit 2."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


ML4G_HEADER = "gene_name\tchr\tgene_start\tgene_end\tTSS_start\tTSS_end\tstrand\n"


def write_ml4g(path: Path, rows: list[tuple]) -> Path:
    path.write_text(ML4G_HEADER + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture
def small_genes(tmp_path: Path) -> Path:
    """30 genes on 6 chromosomes (chr1 has 10, the others 4), in ML4G form."""
    rows = []
    n = 0
    for c, count in (("chr1", 10), ("chr2", 4), ("chr3", 4), ("chr4", 4), ("chr5", 4), ("chrX", 4)):
        for i in range(count):
            start = 10_000 + 50_000 * i
            strand = "+" if (n % 2 == 0) else "-"
            tss = start if strand == "+" else start + 20_000 - 50
            rows.append((f"G{n:03d}", c, start, start + 20_000, tss, tss + 50, strand))
            n += 1
    return write_ml4g(tmp_path / "genes.tsv", rows)


def write_plugin(directory: Path, name: str, source: str) -> None:
    """A model plugin as pip would install it into ``directory`` (put it on sys.path): a
    distribution ``epx-NAME`` whose ``epx.models`` entry point ``NAME`` is ``epx_NAME:spec``."""
    import textwrap

    module = "epx_" + name.replace("-", "_")
    info = directory / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: epx-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[epx.models]\n{name} = {module}:spec\n")
    (directory / f"{module}.py").write_text(textwrap.dedent(source))


def write_bigwig(path: Path, chroms: dict[str, int], entries: list[tuple[str, int, int, float]]) -> Path:
    """A real bigWig with bedGraph-style entries (chrom, start, end, value), sorted."""
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(chroms.items()))
    for chrom, start, end, value in sorted(entries, key=lambda e: (list(chroms).index(e[0]), e[1])):
        bw.addEntries([chrom], [start], ends=[end], values=[float(value)])
    bw.close()
    return path


def write_bed(path: Path, rows: list[tuple]) -> Path:
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory) -> Path:
    """A small demo study (600 genes, 3 cell lines x 7 assays), generated once per session."""
    from epx.demo import write_demo

    root = tmp_path_factory.mktemp("demo") / "study"
    write_demo(root, n_genes=600, seed=3)
    return root


def demo_labels(study: Path, cells=("X1", "X2", "X3")) -> list[str]:
    args = []
    for c in cells:
        args += ["--labels", f"{c}={study / 'labels' / f'{c}.tsv'}"]
    return args


@pytest.fixture(scope="session")
def demo_dataset(demo_study, tmp_path_factory) -> Path:
    """The demo study featurized through the real CLI."""
    from typer.testing import CliRunner

    from epx.cli import app

    out = tmp_path_factory.mktemp("ds") / "dataset"
    args = ["featurize", "--genes", str(demo_study / "genes.tsv"), "--manifest", str(demo_study / "manifest.tsv"),
            *demo_labels(demo_study), "-o", str(out), "--workers", "2"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out


def train_run_dir(tmp_path_factory, name: str, *args: str | Path):
    """`epx train ARGS -o DIR` through the real CLI, for module-scoped run fixtures; (DIR, result)."""
    from typer.testing import CliRunner

    from epx.cli import app

    out = tmp_path_factory.mktemp("runs") / name
    result = CliRunner().invoke(app, ["train", *map(str, args), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out, result
