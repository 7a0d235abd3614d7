"""Chromoformer on numpy stand-ins for the core's lazy views (promoter bins at several geometries,
distal regions): shapes, masks, attention, the LR schedule, learning from a pCRE, save/load."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from epx_torch import chromoformer as SPEC  # noqa: E402
from epx_torch.nets.chromoformer import Chromoformer, ChromoformerModel, _Inputs  # noqa: E402
from epx_torch.trainer import _tensor  # noqa: E402

from epx.errors import PluginError  # noqa: E402
from epx.metrics import pearson  # noqa: E402
from epx.models import FoldData  # noqa: E402

GEOMETRIES = {"1000x8": 8, "250x32": 32}
FRAMES = {"1000x8": 4, "250x32": 16}  # a 4 kb frame at each bin size
N_ASSAYS, N_REGIONS = 3, 4
SMALL = {"d_embed": 16, "embed_heads": 2, "embed_layers": 1, "embed_ff": 16, "pair_layers": 1, "pair_heads": 2,
         "pair_ff": 16, "reg_d_model": 16, "reg_heads": 2, "reg_layers": 1, "reg_ff": 16, "head_hidden": 16}


class Bins:
    """Stand-in for the core's lazy (rows, assays, n_bins) view."""

    def __init__(self, a: np.ndarray) -> None:
        self.a, self.shape = a, a.shape

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, idx):
        return self.a[np.asarray(idx)]

    def take(self, idx):
        return Bins(self.a[np.asarray(idx)])


class Regions:
    """Stand-in for the core's lazy view of the distal regions."""

    def __init__(self, arrays: dict[str, np.ndarray], frames: dict[str, int]) -> None:
        self.arrays, self.frames, self.n_regions = arrays, dict(frames), arrays["score"].shape[1]

    def __len__(self) -> int:
        return len(self.arrays["score"])

    def __getitem__(self, idx):
        return {k: v[np.asarray(idx)] for k, v in self.arrays.items()}

    def take(self, idx):
        return Regions(self[idx], self.frames)


def make_data(n: int, seed: int = 0, geometries=GEOMETRIES, all_present_slot0: bool = False) -> FoldData:
    rng = np.random.default_rng(seed)
    bins = {g: Bins(rng.normal(size=(n, N_ASSAYS, nb)).astype(np.float32)) for g, nb in geometries.items()}
    present = rng.random((n, N_REGIONS)) < 0.7
    if all_present_slot0:
        present[:, 0] = True
    width = rng.integers(200, 4001, size=(n, N_REGIONS))  # bp; some regions fill one coarse bin
    score = np.sort(rng.uniform(5, 30, (n, N_REGIONS)), axis=1)[:, ::-1]  # strongest contact first
    arrays = {"score": np.where(present, score, 0).astype(np.float32), "present": present}
    for g in geometries:
        size, frame = int(g.split("x")[0]), FRAMES[g]
        used = np.minimum(np.ceil(width / size).astype(int), frame)
        left = np.ceil((frame - used) / 2).astype(int)
        pos = np.arange(frame)
        mask = (pos >= left[..., None]) & (pos < (left + used)[..., None]) & present[..., None]
        arrays[f"{g}.mask"] = mask
        arrays[g] = (rng.normal(size=(n, N_REGIONS, N_ASSAYS, frame)) * mask[:, :, None, :]).astype(np.float32)
    first = next(iter(bins.values()))
    rows = pd.DataFrame({"gene_id": [f"g{i}" for i in range(n)], "cell_line": "C1"})
    return FoldData(X=first, y=None, rows=rows, feature_names=["a", "b", "c"][:N_ASSAYS], bins=bins,
                    regions=Regions(arrays, {g: FRAMES[g] for g in geometries}))


def batch_of(data: FoldData, idx=None) -> dict:
    idx = np.arange(len(data)) if idx is None else idx
    return _tensor(_Inputs(data.bins, data.regions, list(data.bins))[idx])


def trunk(geometries=GEOMETRIES, n_regions=N_REGIONS, **arch) -> Chromoformer:
    torch.manual_seed(0)
    frames = {g: FRAMES[g] for g in geometries} if n_regions else {}
    return Chromoformer(N_ASSAYS, geometries, frames, n_regions, **{**SMALL, **arch}).eval()


def test_shapes_attention_and_absent_regions():
    data = make_data(12)
    net, batch = trunk(), batch_of(data)
    with torch.no_grad():
        out, att = net(batch), net.attention(batch)["region"]
    assert out.shape == (12, SMALL["head_hidden"]) and net.embedding_dim == SMALL["head_hidden"]
    assert att.shape == (12, N_REGIONS) and bool(torch.isfinite(att).all())
    present = batch["regions:present"]
    assert float(att[~present].abs().max()) == 0 and float(att[present].min()) > 0
    assert bool((att.sum(-1) < 1 + 1e-6).all())
    # no region at all: every attention row has only the promoter; finite, and zero attention
    batch["regions:present"][:] = False
    with torch.no_grad():
        out = net(batch)
        assert bool(torch.isfinite(out).all()) and float(net.attention(batch)["region"].abs().max()) == 0


def test_absent_regions_and_padding_do_not_change_the_output():
    data = make_data(16, seed=1)
    net, batch = trunk(), batch_of(data)
    with torch.no_grad():
        before = net(batch)
        for g in GEOMETRIES:
            absent = ~batch["regions:present"]
            noise = torch.randn_like(batch[f"regions:{g}"]) * 5
            padding = ~batch[f"regions:{g}.mask"][:, :, None, :]  # padding bins and whole absent regions
            batch[f"regions:{g}"] = torch.where(padding, noise, batch[f"regions:{g}"])
        batch["regions:score"] = torch.where(absent, torch.full_like(batch["regions:score"], 50.0), batch["regions:score"])
        after = net(batch)
    assert bool(padding.any()) and bool(absent.any())
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    # ...while the signal of a present region does
    batch["regions:1000x8"] = batch["regions:1000x8"] + 3 * batch["regions:1000x8.mask"][:, :, None, :]
    with torch.no_grad():
        assert not torch.equal(net(batch), before)


def test_one_geometry_and_promoter_only():
    one = {"250x32": 32}
    data = make_data(6, geometries=one)
    with torch.no_grad():
        assert trunk(one)(batch_of(data)).shape == (6, SMALL["head_hidden"])
        promoter_only = trunk(one, n_regions=0)
        assert not hasattr(promoter_only, "pair") and promoter_only.attention(batch_of(data)) == {}
        assert promoter_only({"bins:250x32": torch.randn(6, N_ASSAYS, 32)}).shape == (6, SMALL["head_hidden"])
        assert trunk(use_regions=False).n_regions == 0


def test_check_rejects_heads_not_dividing_widths():
    with pytest.raises(ValueError, match="reg_heads"):
        Chromoformer.check(**{**SMALL, "reg_heads": 3})
    with pytest.raises(PluginError, match="embed_heads .3. must divide d_embed .16."):
        ChromoformerModel({**SPEC.params, **SMALL, "embed_heads": 3}, "regression")


def fit_params(**over) -> dict:
    return {**SPEC.params, **SMALL, "verbose": False, "threads": 1, **over}


def labelled(n: int, seed: int) -> FoldData:
    """y = the mean signal of region slot 0 (first assay, coarse geometry), the strongest contact
    (regions are a set to the model: the contact score is what tells slot 0 apart): only a model
    that reads the regions can predict it."""
    data = make_data(n, seed=seed, all_present_slot0=True)
    signal, mask = data.regions.arrays["1000x8"][:, 0, 0], data.regions.arrays["1000x8.mask"][:, 0]
    data.y = (signal * mask).sum(-1) / np.maximum(mask.sum(-1), 1)
    return data


def test_lr_decays_each_epoch_with_adamw():
    model = ChromoformerModel(fit_params(max_epochs=2, lr=1e-3), "regression")
    model.fit(labelled(64, seed=3))
    assert model.history["epochs"] == 2 and model.params["optimizer"] == "adamw"
    assert math.isclose(model.history["last_lr"], 1e-3 * 0.87 ** 2, rel_tol=1e-9)


@pytest.fixture(scope="module")
def trained():
    train, test = labelled(640, seed=4), labelled(200, seed=5)
    model = ChromoformerModel(fit_params(lr=3e-3, max_epochs=15, batch_size=32), "regression", seed=0)
    model.fit(train)
    return model, train, test


def test_learns_a_label_carried_by_a_pcre_which_the_promoter_only_ablation_cannot(trained):
    model, train, test = trained
    assert pearson(test.y, model.predict(test)) > 0.6
    ablation = ChromoformerModel(fit_params(lr=3e-3, max_epochs=15, batch_size=32, use_regions=False), "regression")
    ablation.fit(train)
    assert ablation.shapes["n_regions"] == 0
    assert abs(pearson(test.y, ablation.predict(test))) < 0.3
    # the attention goes to slot 0 more than to the other regions
    att = model.attention(test)["region"]
    assert att.shape == (200, N_REGIONS) and att[:, 0].mean() > att[:, 1:].mean()


def test_save_load_round_trip_and_input_checks(trained, tmp_path):
    model, _, test = trained
    model.save(tmp_path)
    loaded = ChromoformerModel.load(tmp_path)
    assert loaded.shapes == model.shapes and loaded.shapes["frames"] == FRAMES
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))
    with pytest.raises(PluginError, match="distal regions"):
        loaded.predict(FoldData(X=test.X, y=None, rows=test.rows, feature_names=test.feature_names, bins=test.bins))
    with pytest.raises(PluginError, match="saliency"):
        loaded.saliency(test)


def test_fold_data_subset_splits_every_input():
    data = labelled(10, seed=6)
    part = data.subset(np.array([7, 2]))
    assert len(part) == 2 and list(part.rows["gene_id"]) == ["g7", "g2"] and part.rows.index.tolist() == [0, 1]
    np.testing.assert_array_equal(part.bins["250x32"][[0, 1]], data.bins["250x32"][[7, 2]])
    np.testing.assert_array_equal(part.regions[[1]]["score"], data.regions[[2]]["score"])
    np.testing.assert_array_equal(part.y, data.y[[7, 2]])


def test_conforms_on_plain_binned_data(tmp_path):
    """epx's conformance checks on data with only X (no bins dict, no regions): the promoter-only
    model reads X as its one geometry."""
    import dataclasses

    from epx.models.testing import check_model

    params = {**SPEC.params, **SMALL, "max_epochs": 12, "batch_size": 32, "lr": 3e-3, "lr_decay": 0.0, "verbose": False}
    check_model(dataclasses.replace(SPEC, params=params), tmp_path, n=240, min_spearman=0.3)
