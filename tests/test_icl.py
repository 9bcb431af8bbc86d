"""ICL (integrated completed likelihood, as mclust computes it): one pass, equal to a direct
computation from predict_proba, and a criterion of `daskgmm select`."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import yaml

from daskgmm import GaussianMixture

from .conftest import COVARIANCE_TYPES, invoke


def _overlapping(n: int = 1200, seed: int = 0, gap: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [gap, 0.0], [8.0, 8.0]])  # two overlap, one apart
    return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 2))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_icl_equals_bic_minus_twice_the_hard_classification_log_likelihood(covariance_type):
    X = _overlapping()
    weights = np.random.default_rng(1).uniform(0.5, 2.0, len(X))
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    direct = model.bic(X) - 2 * np.log(model.predict_proba(X).max(axis=1)).sum()
    assert model.icl(X) == pytest.approx(direct, rel=1e-12)
    assert model.icl(X) > model.bic(X)  # overlapping components pay for their entropy
    lazy = da.from_array(X, chunks=250)
    assert model.icl(lazy) == pytest.approx(direct, rel=1e-12)
    criteria = model.information_criteria(lazy, sample_weight=da.from_array(weights, chunks=250))
    proba = model.predict_proba(X)
    from daskgmm._params import n_parameters

    p = n_parameters(model.n_components, 2, covariance_type)
    weighted_bic = -2 * (model.score_samples(X) @ weights) + p * np.log(weights.sum())
    assert criteria["icl"] == pytest.approx(
        weighted_bic - 2 * np.log(proba.max(axis=1)) @ weights, rel=1e-12)


def test_icl_prefers_separated_clusters_where_bic_splits_an_overlap():
    X = _overlapping(3000, seed=2, gap=2.5)
    models = [GaussianMixture(k, random_state=0, n_init=2).fit(X) for k in (2, 3)]
    icl = [m.icl(X) for m in models]
    bic = [m.bic(X) for m in models]
    print("BIC", bic, "ICL", icl)
    assert np.argmin(bic) == 1  # the density has three components...
    assert np.argmin(icl) == 0  # ...two of which overlap too much to be told apart


def test_select_by_icl(tmp_path, capsys):
    import zarr

    from daskgmm import load_model

    zarr.open_group(str(tmp_path / "d.zarr"), mode="w").create_array(
        "X", data=_overlapping(), chunks=(300, 2))
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(tmp_path / "d.zarr"), "array": "X"},
        "model": {"random_state": 0},
        "output": {"model": str(tmp_path / "best.npz")}}))
    code, out, err = invoke(["select", config, "--n-components", "1-4", "--covariance-types",
                             "full", "--criterion", "icl", "--table",
                             tmp_path / "table.json"], capsys)
    assert code == 0, err
    assert "ICL" in out and "Best by ICL" in out
    import json

    rows = json.loads((tmp_path / "table.json").read_text())
    best = min(rows, key=lambda r: r["icl"])
    model = load_model(tmp_path / "best.npz")
    assert model.n_components == best["n_components"]
    X = _overlapping()
    assert best["icl"] == pytest.approx(model.icl(X), rel=1e-9)
