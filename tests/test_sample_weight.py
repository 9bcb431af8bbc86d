"""Sample weights: integer weights are repeated rows, zero weights dropped rows; bad weights refused."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
import zarr

from daskgmm import GaussianMixture, fit_many

from .conftest import COVARIANCE_TYPES, mixture_data

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


@pytest.fixture(scope="module")
def X():
    return mixture_data(n_per_component=200, seed=11)


def _init(X, covariance_type):
    """Fixed initial parameters: the same start with and without weights."""
    sk = GaussianMixture(3, covariance_type=covariance_type, random_state=0, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
    return {"weights_init": sk.weights_, "means_init": sk.means_, "precisions_init": sk.precisions_}


def _fit(X, covariance_type, init, **fit_kwargs):
    model = GaussianMixture(3, covariance_type=covariance_type, max_iter=8, tol=0, chunk_size=97,
                            **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, **fit_kwargs)


def _assert_same(a, b, rtol=1e-9):
    for attr in FITTED:
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=rtol, atol=1e-10,
                                   err_msg=attr)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-11)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(X, covariance_type):
    counts = np.random.default_rng(1).integers(1, 4, size=X.shape[0])
    init = _init(X, covariance_type)
    weighted = _fit(X, covariance_type, init, sample_weight=counts)
    repeated = _fit(np.repeat(X, counts, axis=0), covariance_type, init)
    _assert_same(weighted, repeated)
    Xr = np.repeat(X, counts, axis=0)
    assert weighted.score(X, sample_weight=counts) == pytest.approx(repeated.score(Xr), rel=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_zero_weights_equal_dropped_rows(X, covariance_type):
    keep = np.random.default_rng(2).uniform(size=X.shape[0]) > 0.3
    X_bad = X.copy()
    X_bad[~keep] += 50.0  # outliers that would move every estimate, were they counted
    init = _init(X[keep], covariance_type)
    weighted = _fit(X_bad, covariance_type, init, sample_weight=keep.astype(float))
    dropped = _fit(X[keep], covariance_type, init)
    _assert_same(weighted, dropped)


def test_dask_and_zarr_weights_aligned_with_the_data(X, tmp_path, dask_client):
    counts = np.random.default_rng(3).integers(0, 3, size=X.shape[0]).astype(np.float64)
    init = _init(X, "full")
    reference = _fit(X, "full", init, sample_weight=counts)
    root = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    root.create_array("X", data=X, chunks=(150, X.shape[1]))
    root.create_array("w", data=counts, chunks=(150,))
    for data, weights in [
        (da.from_array(X, chunks=(150, -1)), da.from_array(counts, chunks=150)),
        (root["X"], root["w"]),
        (str(tmp_path / "d.zarr" / "X"), str(tmp_path / "d.zarr" / "w")),
    ]:
        model = _fit(data, "full", init, sample_weight=weights)
        _assert_same(model, reference, rtol=1e-8)
        assert model.score(data, sample_weight=weights) == pytest.approx(
            reference.score(X, sample_weight=counts), rel=1e-10)


def test_fit_many_with_weights_equals_each_fit_alone(X):
    w = np.random.default_rng(4).uniform(0, 2, size=X.shape[0])
    models = [GaussianMixture(k, random_state=0, max_iter=10, chunk_size=128) for k in (2, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_many(models, X, sample_weight=w)
        for model in models:
            alone = GaussianMixture(model.n_components, random_state=0, max_iter=10,
                                    chunk_size=128).fit(X, sample_weight=w)
            _assert_same(model, alone)


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        (lambda n: -np.ones(n), ValueError, "negative"),
        (lambda n: np.r_[np.ones(n - 1), np.nan], ValueError, r"NaN .*row 599"),
        (lambda n: np.r_[np.ones(n - 1), np.inf], ValueError, "infinite"),
        (lambda n: np.ones(n - 1), ValueError, r"shape \(600,\)"),
        (lambda n: np.ones((n, 1)), ValueError, r"shape \(600,\)"),
        (lambda n: np.zeros(n), ValueError, "zero for every row"),
        (lambda n: np.array(["a"] * n), TypeError, "numbers"),
    ],
)
def test_bad_numpy_weights_are_refused_by_name(X, weights, error, match):
    with pytest.raises(error, match=match):
        GaussianMixture(2, max_iter=2).fit(X, sample_weight=weights(X.shape[0]))


def test_misaligned_and_lazy_bad_weights_are_refused(X):
    Xd = da.from_array(X, chunks=(150, -1))
    with pytest.raises(ValueError, match="not aligned with X's row chunks"):
        GaussianMixture(2, max_iter=2).fit(Xd, sample_weight=da.ones(X.shape[0], chunks=100))
    lazy = da.from_array(np.r_[np.ones(400), -1.0, np.ones(199)], chunks=150)
    with pytest.raises(ValueError, match="negative .*row 400"):
        GaussianMixture(2, max_iter=2, means_init=X[:2], weights_init=[0.5, 0.5],
                        precisions_init=np.tile(np.eye(3), (2, 1, 1))).fit(Xd, sample_weight=lazy)
    model = GaussianMixture(2, max_iter=2, random_state=0).fit(X)
    before = model.means_.copy()
    with pytest.raises(ValueError, match="not aligned"):
        model.score(Xd, sample_weight=da.ones(X.shape[0], chunks=100))
    np.testing.assert_array_equal(model.means_, before)  # a refused call changes nothing


def test_zarr_weights_with_other_chunks_are_refused(X, tmp_path):
    root = zarr.open_group(str(tmp_path / "m.zarr"), mode="w")
    root.create_array("X", data=X, chunks=(150, X.shape[1]))
    root.create_array("w", data=np.ones(X.shape[0]), chunks=(100,))
    with pytest.raises(ValueError, match="must have X's row chunks"):
        GaussianMixture(2, max_iter=2).fit(root["X"], sample_weight=root["w"])
