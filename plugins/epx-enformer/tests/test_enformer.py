"""epx-enformer on a tiny random Enformer written to disk and read back by the real loader
(no mocks of torch or enformer-pytorch)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("enformer_pytorch")

from epx_enformer import load_predictor, spec  # noqa: E402
from epx_enformer.load import WeightsError, load_enformer  # noqa: E402
from epx_enformer.model import EnformerHead, fit_to_window  # noqa: E402
from epx_enformer.predictor import EnformerPredictor  # noqa: E402
from epx_enformer.tiny import TINY_WINDOW, tiny_enformer, write_tiny_enformer  # noqa: E402

from epx.errors import EpxError  # noqa: E402
from epx.models import FoldData  # noqa: E402
from epx.models.testing import check_spec  # noqa: E402

E = np.eye(4, dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_enformer(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return write_tiny_enformer(tmp_path_factory.mktemp("tiny-file"), seed=0, checkpoint=True)


def random_windows(n, seed=0, gc=None, length=TINY_WINDOW):
    """Random one-hot windows; ``gc`` (per window) sets the GC content of the central kilobase."""
    rng = np.random.default_rng(seed)

    def draw(m, p):
        strong = rng.uniform(size=(len(p), m)) < p[:, None]
        pick = rng.integers(0, 2, size=strong.shape)
        return E[np.where(strong, 1 + pick, np.where(pick == 0, 0, 3))]

    x = draw(length, np.full(n, 0.5))
    if gc is not None:
        mid = length // 2
        x[:, mid - 512:mid + 512] = draw(1024, np.asarray(gc))
    return x


def test_tiny_model_written_and_loaded_gives_the_same_outputs(tiny_dir, tiny_file):
    x = torch.from_numpy(random_windows(3, seed=1))
    with torch.inference_mode():
        expected = tiny_enformer(0)(x, head="human")
        for weights in (tiny_dir, tiny_file):
            loaded = load_enformer(weights, "cpu")
            assert (loaded.window, loaded.bins, loaded.heads) == (TINY_WINDOW, 16, {"human": 8})
            assert not loaded.model.training
            torch.testing.assert_close(loaded.model(x, head="human"), expected, rtol=1e-5, atol=1e-6)


def test_predictor_shapes_default_tracks_and_names(tiny_dir):
    pred = load_predictor({"weights": str(tiny_dir), "device": "cpu"})
    assert (pred.name, pred.window, pred.device) == ("enformer", TINY_WINDOW, "cpu")
    # targets.txt beside the weights names the tracks: the default is its CAGE tracks
    assert pred.tracks == [0, 2, 4, 6]
    assert pred.output_names == [f"CAGE:tiny tissue {i}" for i in (0, 2, 4, 6)]
    x = random_windows(5)
    out = pred.predict(x)
    assert out.shape == (5, 4) and out.dtype == np.float32 and np.isfinite(out).all()
    assert pred.profile(x).shape == (5, 16, 4)
    assert pred.predict(x[:0]).shape == (0, 4)
    with pytest.raises(EpxError, match=r"shape \(n, 4096, 4\)"):
        pred.predict(x[:, :2048])


def test_track_selection_by_index_name_and_all(tiny_dir):
    x = random_windows(2)
    full = load_predictor({"weights": tiny_dir, "tracks": "all", "device": "cpu"})
    assert full.tracks == list(range(8))
    by_index = load_predictor({"weights": tiny_dir, "tracks": ["5", 1], "device": "cpu"})
    by_name = load_predictor({"weights": tiny_dir, "tracks": "DNASE:tiny tissue 5;dnase:TINY tissue 1", "device": "cpu"})
    assert by_index.tracks == by_name.tracks == [5, 1]
    assert by_name.output_names == ["DNASE:tiny tissue 5", "DNASE:tiny tissue 1"]
    np.testing.assert_allclose(by_name.predict(x), full.predict(x)[:, [5, 1]], rtol=1e-6)
    assert load_predictor({"weights": tiny_dir, "tracks": "3,4", "device": "cpu"}).tracks == [3, 4]
    assert load_predictor({"weights": tiny_dir, "tracks": "TINY0007", "device": "cpu"}).tracks == [7]  # identifier


def test_bad_track_names_and_indices(tiny_dir, tiny_file, tmp_path):
    with pytest.raises(EpxError, match="close matches: CAGE:tiny tissue 2 ") as err:
        load_predictor({"weights": tiny_dir, "tracks": ["CAGE:tiny tisue 2"]})
    assert "\n" not in str(err.value)
    with pytest.raises(EpxError, match="out of range: the model has 8 tracks"):
        load_predictor({"weights": tiny_dir, "tracks": [8]})
    alone = tmp_path / "alone.pt"
    shutil.copy(tiny_file, alone)  # no targets file beside it
    pred = load_predictor({"weights": alone, "tracks": [1]})
    assert pred.output_names == ["track 1"]
    assert load_predictor({"weights": alone}).tracks == list(range(8))  # all tracks without names
    with pytest.raises(EpxError, match="calico/basenji/master/manuscripts/cross2020/targets_human.txt"):
        load_predictor({"weights": alone, "tracks": ["CAGE:liver, adult"]})
    # an explicit --targets file works for a checkpoint without one beside it
    named = load_predictor({"weights": alone, "targets": tiny_file.parent / "targets.txt", "tracks": ["CAGE:tiny tissue 2"]})
    assert named.tracks == [2]
    short = tmp_path / "short.txt"
    short.write_text("\tidentifier\tdescription\n0\ta\tCAGE:x\n")
    with pytest.raises(EpxError, match="lists 1 tracks but the 'human' head"):
        load_predictor({"weights": alone, "targets": short})


def test_missing_weights_say_what_to_download(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    (tmp_path / "xdg").mkdir()
    monkeypatch.setenv("EPX_ENFORMER_WEIGHTS", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(WeightsError) as err:
        load_predictor({})
    message = str(err.value)
    assert "\n" not in message
    assert f"huggingface-cli download EleutherAI/enformer-official-rough --local-dir {tmp_path / 'xdg' / 'epx' / 'enformer'}" in message
    assert str(tmp_path / "env") in message and "--weights" in message
    with pytest.raises(WeightsError, match="do not exist"):
        load_enformer(tmp_path / "nowhere", "cpu")


def test_weights_found_through_the_environment_and_the_cache(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EPX_ENFORMER_WEIGHTS", str(tiny_dir))
    assert load_predictor({}).weights_path == tiny_dir.resolve()
    monkeypatch.delenv("EPX_ENFORMER_WEIGHTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shutil.copytree(tiny_dir, tmp_path / "epx" / "enformer")
    assert load_predictor({}).weights_path == (tmp_path / "epx" / "enformer").resolve()


def test_corrupt_and_mismatching_weights_name_the_path(tiny_dir, tiny_file, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=str(broken)) as err:
        load_enformer(broken, "cpu")
    assert "\n" not in str(err.value)
    other = tmp_path / "other"
    shutil.copytree(tiny_dir, other)
    config = (other / "config.json").read_text().replace('"dim": 48', '"dim": 96')
    (other / "config.json").write_text(config)
    with pytest.raises(WeightsError, match=str(other)):
        load_enformer(other, "cpu")
    bad_file = tmp_path / "bad.pt"
    bad_file.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match=str(bad_file)):
        load_enformer(bad_file, "cpu")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="not an epx-enformer checkpoint"):
        load_enformer(tmp_path / "plain.pt", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_a_gpu_is_an_error(tiny_dir):
    for device in ("cuda", "cuda:0"):
        with pytest.raises(EpxError, match="sees no CUDA GPU"):
            load_predictor({"weights": tiny_dir, "device": device})
    assert load_predictor({"weights": tiny_dir, "device": "auto"}).device == "cpu"
    with pytest.raises(EpxError, match="unknown device"):
        load_predictor({"weights": tiny_dir, "device": "tpu"})


def test_batching_gives_the_same_numbers(tiny_dir):
    x = random_windows(7, seed=3)
    one = load_predictor({"weights": tiny_dir, "batch_size": 7, "tracks": "all"}).predict(x)
    small = load_predictor({"weights": tiny_dir, "batch_size": "2", "tracks": "all"}).predict(x)
    np.testing.assert_allclose(small, one, rtol=1e-5, atol=1e-6)


def test_center_bins_sum_the_bins_around_the_tss(tiny_dir):
    x = random_windows(2, seed=4)
    profile = load_predictor({"weights": tiny_dir, "tracks": "all"}).profile(x)
    # 4,096 bp = 32 bins of 128 bp, the central 16 kept: input position 2,048 is the first base of output bin 8
    expected = {1: [8], 2: [7, 8], 3: [7, 8, 9], 4: [6, 7, 8, 9], 16: list(range(16))}
    for n, bins in expected.items():
        pred = load_predictor({"weights": tiny_dir, "tracks": "all", "center_bins": n})
        np.testing.assert_allclose(pred.predict(x), profile[:, bins].sum(axis=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(EpxError, match="exceeds the model's 16 output bins"):
        load_predictor({"weights": tiny_dir, "center_bins": 17})


def test_fingerprint_follows_weights_tracks_and_bins(tiny_dir, tmp_path):
    base = load_predictor({"weights": tiny_dir})
    assert base.fingerprint == load_predictor({"weights": tiny_dir, "device": "cpu", "batch_size": 5}).fingerprint
    assert base.fingerprint != load_predictor({"weights": tiny_dir, "tracks": "all"}).fingerprint
    assert base.fingerprint != load_predictor({"weights": tiny_dir, "center_bins": 1}).fingerprint
    other = write_tiny_enformer(tmp_path / "seed1", seed=1)
    assert base.fingerprint != load_predictor({"weights": other}).fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)  # the same content elsewhere: the same fingerprint
    assert base.fingerprint == load_predictor({"weights": copy}).fingerprint


def test_package_import_stays_light():
    code = "import sys, epx_enformer; print(sorted(m for m in ('torch', 'enformer_pytorch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the train backend ---------------------------------------------------------------------------


class LazyWindows:
    """A lazy (rows, length, 4) view like the core's: ``view[idx]``/``take(idx)``; counts rows read."""

    def __init__(self, windows: np.ndarray, row_gene: np.ndarray) -> None:
        self.windows, self.row_gene, self.read = windows, row_gene, 0
        self.shape = (len(row_gene), *windows.shape[1:])

    def __len__(self) -> int:
        return len(self.row_gene)

    def __getitem__(self, idx):
        idx = np.atleast_1d(np.asarray(idx))
        self.read += len(idx)
        return self.windows[self.row_gene[idx]]

    def take(self, idx):
        return LazyWindows(self.windows, self.row_gene[np.asarray(idx)])


def gc_fold(n_genes, task, seed, cell_lines=("C1",), length=TINY_WINDOW):
    rng = np.random.default_rng(seed)
    gc = rng.uniform(0.2, 0.8, size=n_genes)
    windows = random_windows(n_genes, seed=seed + 100, gc=gc, length=length)
    row_gene = np.repeat(np.arange(n_genes), len(cell_lines))
    lines = np.tile(cell_lines, n_genes)
    shift = np.where(lines == "C2", 1.0, 0.0)  # C2 is C1 plus one
    latent = gc[row_gene] * 5 + shift + rng.normal(scale=0.2, size=len(row_gene))
    y = (latent > np.median(latent)).astype(float) if task == "binary" else latent
    rows = pd.DataFrame({"gene_id": [f"g{seed}_{i}" for i in row_gene], "cell_line": lines})
    return FoldData(X=LazyWindows(windows, row_gene), y=y, rows=rows, feature_names=["A", "C", "G", "T"])


def small_params(weights, **extra):
    return {**spec.resolve_params({}), "weights": str(weights), "tracks": "all", "center_bins": 8, "batch_size": 16,
            "device": "cpu", **extra}


def test_spec_is_light_and_valid():
    check_spec(spec)
    assert spec.input_kind == "sequence" and set(spec.tasks) == {"regression", "binary"}


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_head_learns_gc_content_through_the_tiny_model(tiny_dir, tmp_path, task):
    from scipy.stats import spearmanr

    train, test = gc_fold(240, task, seed=1), gc_fold(120, task, seed=2)
    unlabelled = FoldData(X=test.X, y=None, rows=test.rows)
    model = EnformerHead(small_params(tiny_dir), task, seed=0)
    model.fit(train)
    pred = model.predict(unlabelled)
    assert pred.shape == (120,) and np.isfinite(pred).all()
    if task == "binary":
        assert pred.min() >= 0 and pred.max() <= 1
    # the random tiny model's 8 tracks x 8 central bins carry the central GC content only
    # weakly (a ridge on them: held-out Spearman ~0.7 for regression, measured); 0.4 leaves margin
    rho = spearmanr(pred, test.y).statistic
    assert rho > 0.4, rho
    model.save(tmp_path / "m")
    loaded = EnformerHead.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict(unlabelled), pred, rtol=1e-6, atol=1e-9)
    assert set(loaded.importance()) == {f"{kind}:tiny tissue {i}" for i in range(8) for kind in ("CAGE", "DNASE") if (i % 2 == 0) == (kind == "CAGE")}


def test_windows_run_once_per_gene_and_heads_per_cell_line(tiny_dir):
    from scipy.stats import spearmanr

    # the windows of test_head_learns_gc_content_through_the_tiny_model (seeds 1, 2): cached outputs
    train = gc_fold(240, "regression", seed=1, cell_lines=("C1", "C2"))
    model = EnformerHead(small_params(tiny_dir, min_rows=50), "regression", seed=0)
    model.fit(train)
    assert train.X.read == 240  # one window per gene although each gene has two rows
    assert set(model.heads) == {"", "C1", "C2"}
    test = gc_fold(120, "regression", seed=2, cell_lines=("C1", "C2"))
    pred = model.predict(FoldData(X=test.X, y=None, rows=test.rows))
    lines = test.rows["cell_line"].to_numpy()
    assert pred[lines == "C2"].mean() - pred[lines == "C1"].mean() == pytest.approx(1.0, abs=0.2)
    assert spearmanr(pred, test.y).statistic > 0.5
    again = EnformerHead(small_params(tiny_dir, min_rows=50), "regression", seed=0)
    again.fit(train)  # the in-process cache: Enformer does not run again, the rows are still read
    np.testing.assert_allclose(again.predict(FoldData(X=test.X, y=None, rows=test.rows)), pred)


def test_mlp_head_and_shorter_windows(tiny_dir):
    train = gc_fold(240, "regression", seed=1)
    model = EnformerHead(small_params(tiny_dir, head="mlp", epochs=200), "regression", seed=0)
    model.fit(train)
    test = gc_fold(120, "regression", seed=2)
    pred = model.predict(FoldData(X=test.X, y=None, rows=test.rows))
    assert np.corrcoef(pred, test.y)[0, 1] > 0.3
    # a 2,048 bp window is N-padded so that its centre stays at the model's centre
    x = random_windows(2, seed=9, length=2048)
    padded = fit_to_window(x, TINY_WINDOW)
    assert padded.shape == (2, TINY_WINDOW, 4)
    np.testing.assert_array_equal(padded[:, 1024:3072], x)
    assert padded[:, :1024].sum() == 0 and padded[:, 3072:].sum() == 0
    np.testing.assert_array_equal(fit_to_window(padded, 2048), x)


def test_saved_model_refuses_changed_weights(tiny_dir, tmp_path):
    weights = tmp_path / "w"
    shutil.copytree(tiny_dir, weights)
    model = EnformerHead(small_params(weights), "regression", seed=0)
    train = gc_fold(20, "regression", seed=10)
    model.fit(train)
    model.save(tmp_path / "m")
    write_tiny_enformer(weights, seed=3)  # different weights at the recorded path
    loaded = EnformerHead.load(tmp_path / "m")
    with pytest.raises(EpxError, match="changed since this model was trained"):
        loaded.predict(FoldData(X=train.X, y=None, rows=train.rows))


def test_predictor_class_is_the_factory_product(tiny_dir):
    assert isinstance(load_predictor({"weights": tiny_dir}), EnformerPredictor)
    with pytest.raises(EpxError, match="unknown option"):
        load_predictor({"weights": tiny_dir, "colour": "red"})
