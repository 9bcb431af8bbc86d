"""GaussianMixture against scikit-learn: parity, conventions, inputs and outputs."""

from __future__ import annotations

import inspect
import warnings

import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.utils.estimator_checks import check_estimator

from daskgmm import GaussianMixture
from daskgmm.jobs.synthetic import make_mixture_zarr

from .conftest import COVARIANCE_TYPES, mixture_data


def _shared_init(X, covariance_type, n_components=3):
    """Deliberately rough initial parameters that both libraries start from."""
    rng = np.random.default_rng(42)
    means = X[rng.choice(X.shape[0], n_components, replace=False)]
    precision = 1.0 / X.var(axis=0).mean()
    n_features = X.shape[1]
    precisions = {
        "full": np.tile(np.eye(n_features) * precision, (n_components, 1, 1)),
        "tied": np.eye(n_features) * precision,
        "diag": np.full((n_components, n_features), precision),
        "spherical": np.full(n_components, precision),
    }[covariance_type]
    return {"weights_init": np.full(n_components, 1.0 / n_components),
            "means_init": means, "precisions_init": precisions}


FITTED_ATTRIBUTES = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("as_dask", [False, True], ids=["numpy", "dask-many-chunks"])
def test_parity_with_sklearn_from_identical_initial_parameters(covariance_type, as_dask, X_offset):
    init = _shared_init(X_offset, covariance_type)
    sk = SkGMM(3, covariance_type=covariance_type, **init).fit(X_offset)
    X = da.from_array(X_offset, chunks=(97, -1)) if as_dask else X_offset
    ours = GaussianMixture(3, covariance_type=covariance_type, split_every=3, **init).fit(X)
    assert ours.n_iter_ == sk.n_iter_ > 2
    assert ours.converged_ == sk.converged_
    for attr in FITTED_ATTRIBUTES:
        np.testing.assert_allclose(getattr(ours, attr), getattr(sk, attr), rtol=1e-6, err_msg=attr)
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-6)
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predictions_and_scores_match_sklearn(covariance_type, X_offset):
    init = _shared_init(X_offset, covariance_type)
    sk = SkGMM(3, covariance_type=covariance_type, **init).fit(X_offset)
    ours = GaussianMixture(3, covariance_type=covariance_type, **init).fit(X_offset)
    X_dask = da.from_array(X_offset, chunks=(128, -1))
    for X in (X_offset, X_dask):
        np.testing.assert_array_equal(np.asarray(ours.predict(X)), sk.predict(X_offset))
        np.testing.assert_allclose(np.asarray(ours.predict_proba(X)), sk.predict_proba(X_offset),
                                   rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(np.asarray(ours.score_samples(X)), sk.score_samples(X_offset),
                                   rtol=1e-6)
        assert ours.score(X) == pytest.approx(sk.score(X_offset), rel=1e-6)
        assert ours.bic(X) == pytest.approx(sk.bic(X_offset), rel=1e-6)
        assert ours.aic(X) == pytest.approx(sk.aic(X_offset), rel=1e-6)


def test_dask_input_gives_lazy_outputs_numpy_input_gives_numpy(X_offset):
    model = GaussianMixture(3, random_state=0).fit(X_offset)
    X_dask = da.from_array(X_offset, chunks=(300, -1))
    for method in (model.predict, model.predict_proba, model.score_samples):
        assert isinstance(method(X_dask), da.Array)
        assert isinstance(method(X_offset), np.ndarray)
    proba = model.predict_proba(X_dask)
    assert proba.shape == (X_offset.shape[0], 3)
    assert proba.chunks[0] == X_dask.chunks[0]
    np.testing.assert_allclose(proba.sum(axis=1).compute(), 1.0)


def test_zarr_input_by_array_and_by_path(tmp_path):
    path = make_mixture_zarr(tmp_path / "data.zarr", 3000, 3, 3, chunk_rows=700, seed=3, offset=50.0)
    group = zarr.open_group(str(path), mode="r")
    X_np = group["X"][:]
    init = _shared_init(X_np, "full")
    ref = GaussianMixture(3, **init).fit(X_np)
    by_array = GaussianMixture(3, **init).fit(group["X"])
    by_path = GaussianMixture(3, **init).fit(str(path / "X"))
    for model in (by_array, by_path):
        np.testing.assert_allclose(model.means_, ref.means_, rtol=1e-10)
        assert model.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-12)
    labels = by_array.predict(group["X"])
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), ref.predict(X_np))
    # Lazy outputs store straight to Zarr, chunk by chunk.
    by_array.predict_proba(group["X"]).to_zarr(str(tmp_path / "proba.zarr"))
    # Relative error of a probability = absolute error of its log, which the
    # expanded quadratic forms bound near eps * (distance in std devs)^2.
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "proba.zarr"), mode="r")[:],
                               ref.predict_proba(X_np), rtol=1e-10)


def test_fitted_model_recovers_the_true_mixture(tmp_path):
    path = make_mixture_zarr(tmp_path / "data.zarr", 20_000, 4, 3, chunk_rows=3000, seed=5)
    group = zarr.open_group(str(path), mode="r")
    model = GaussianMixture(3, random_state=0).fit(group["X"])
    order = [int(np.argmin(np.linalg.norm(model.means_ - m, axis=1))) for m in group["means"][:]]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(model.weights_[order], group["weights"][:], atol=0.02)
    np.testing.assert_allclose(model.means_[order], group["means"][:], atol=0.1)
    agreement = np.mean(model.predict(group["X"]).compute() == np.asarray(order)[group["labels"][:]])
    assert agreement > 0.97


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_input_stays_positive_definite_and_close_to_float64(covariance_type, X_offset):
    init = _shared_init(X_offset, covariance_type)
    fit64 = GaussianMixture(3, covariance_type=covariance_type, **init).fit(X_offset)
    fit32 = GaussianMixture(3, covariance_type=covariance_type, **init).fit(
        da.from_array(X_offset.astype(np.float32), chunks=(200, -1)))
    assert fit32.covariances_.dtype == np.float64
    if covariance_type in ("full", "tied"):
        covs = fit32.covariances_.reshape(-1, X_offset.shape[1], X_offset.shape[1])
        assert np.all(np.linalg.eigvalsh(covs) > 0)
    else:
        assert np.all(fit32.covariances_ > 0)
    # float32 rounds data at 1000 to ~6e-5: the fit moves by about that much.
    np.testing.assert_allclose(fit32.means_, fit64.means_, atol=1e-3)
    np.testing.assert_allclose(fit32.covariances_, fit64.covariances_, atol=1e-3)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_strategy_finds_the_clusters(init_params, X_offset):
    sk = SkGMM(3, random_state=0).fit(X_offset)
    # Every strategy but kmeans lands in a local optimum for some seeds, in
    # scikit-learn as here: restarts are part of using them.
    ours = GaussianMixture(3, init_params=init_params, random_state=0, max_iter=300,
                           n_init=4).fit(X_offset)
    assert ours.converged_
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, abs=1e-3)


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
def test_row_picking_inits_equal_sklearn_for_the_same_seed(init_params, X_offset):
    sk = SkGMM(3, init_params=init_params, random_state=7, max_iter=0).fit(X_offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = GaussianMixture(3, init_params=init_params, random_state=7, max_iter=0).fit(X_offset)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-12)
    np.testing.assert_allclose(ours.weights_, sk.weights_, rtol=1e-12)


@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_initialisation_does_not_depend_on_chunking(init_params, X_offset):
    fits = [
        GaussianMixture(3, init_params=init_params, random_state=1, max_iter=0)
        .fit(da.from_array(X_offset, chunks=(c, -1)))
        for c in (X_offset.shape[0], 100, 333)
    ]
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.means_, fits[0].means_, rtol=1e-9)


def test_n_init_keeps_the_best_lower_bound(X_offset):
    # The first of n_init restarts draws the same initialisation as a single
    # fit with the same random_state, so the best of three is at least as good.
    kwargs = {"init_params": "random", "random_state": 1, "max_iter": 5, "tol": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = GaussianMixture(3, **kwargs).fit(X_offset)
        multi = GaussianMixture(3, n_init=3, **kwargs).fit(X_offset)
        others = [GaussianMixture(3, **{**kwargs, "random_state": s}).fit(X_offset)
                  for s in (2, 3)]
    assert multi.lower_bound_ >= single.lower_bound_
    assert multi.lower_bound_ == multi.lower_bounds_[-1]
    # Restarts are not all equal here, so keeping the best is observable.
    assert len({round(m.lower_bound_, 6) for m in [single, *others]}) > 1


def test_warm_start_continues_from_the_previous_fit(X_offset):
    init = _shared_init(X_offset, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        two_then_more = GaussianMixture(3, warm_start=True, max_iter=2, **init).fit(X_offset)
        two_then_more.set_params(max_iter=100).fit(X_offset)
    straight = GaussianMixture(3, max_iter=100, **init).fit(X_offset)
    np.testing.assert_allclose(two_then_more.means_, straight.means_, rtol=1e-6)


def test_fit_predict_equals_fit_then_predict(X_offset):
    a = GaussianMixture(3, random_state=0).fit_predict(X_offset)
    b = GaussianMixture(3, random_state=0).fit(X_offset).predict(X_offset)
    np.testing.assert_array_equal(a, b)


def test_sample_and_to_sklearn(X_offset):
    model = GaussianMixture(3, random_state=0).fit(X_offset)
    sk = model.to_sklearn()
    assert isinstance(sk, SkGMM)
    np.testing.assert_allclose(sk.predict_proba(X_offset), model.predict_proba(X_offset),
                               rtol=1e-9, atol=1e-12)
    X, y = model.sample(500)
    assert X.shape == (500, 3) and y.shape == (500,)
    assert abs(X.mean() - X_offset.mean()) < 1.0


def test_constructor_signature_contains_sklearns():
    ours = inspect.signature(GaussianMixture).parameters
    for name, param in inspect.signature(SkGMM).parameters.items():
        assert name in ours, name
        assert ours[name].default == param.default or (
            ours[name].default is None and param.default is None), name
        assert ours[name].kind == param.kind, name


def test_sklearn_check_estimator_passes():
    results = check_estimator(GaussianMixture(), on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 35


def test_get_set_params_round_trip():
    model = GaussianMixture(4, covariance_type="diag", split_every=4, persist=False, chunk_size=100)
    assert model.get_params()["split_every"] == 4
    model.set_params(n_components=2)
    assert model.n_components == 2


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("init_params", ["kmeans", "random", "random_from_data"])
@pytest.mark.parametrize("as_dask", [False, True], ids=["numpy", "dask"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_is_refused_with_a_clear_error(bad, as_dask, init_params):
    X = mixture_data()
    X[1000, 1] = bad
    word = "NaN" if np.isnan(bad) else "infinity"
    model = GaussianMixture(3, init_params=init_params, random_state=0)
    if as_dask:
        with pytest.raises(ValueError, match=f"contains {word}.*rows 900-1199"):
            model.fit(da.from_array(X, chunks=(300, -1)))
    else:
        with pytest.raises(ValueError, match="NaN|infinity"):
            model.fit(X)


def test_nan_in_dask_input_at_predict_names_the_rows(X_offset):
    model = GaussianMixture(3, random_state=0).fit(X_offset)
    X = X_offset.copy()
    X[250, 0] = np.nan
    with pytest.raises(ValueError, match="NaN.*rows 200-299"):
        model.predict(da.from_array(X, chunks=(100, -1))).compute()


@pytest.mark.parametrize("shape", [(10,), (5, 4, 3)])
@pytest.mark.parametrize("as_dask", [False, True], ids=["numpy", "dask"])
def test_wrong_dimensions_are_refused(shape, as_dask):
    X = np.ones(shape)
    with pytest.raises(ValueError, match="2D|dim"):
        GaussianMixture().fit(da.from_array(X) if as_dask else X)


@pytest.mark.parametrize("as_dask", [False, True], ids=["numpy", "dask"])
def test_too_few_rows_are_refused(as_dask):
    wrap = da.from_array if as_dask else np.asarray
    with pytest.raises(ValueError, match="0 sample"):
        GaussianMixture().fit(wrap(np.ones((0, 3))))
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(5).fit(wrap(np.arange(12.0).reshape(4, 3)))


@pytest.mark.parametrize("as_dask", [False, True], ids=["numpy", "dask"])
def test_non_numeric_dtype_is_refused(as_dask):
    X = np.array([["a", "b"], ["c", "d"], ["e", "f"]])
    with pytest.raises(ValueError, match="dtype|convert"):
        GaussianMixture().fit(da.from_array(X) if as_dask else X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_components": 0}, "n_components"),
        ({"covariance_type": "banana"}, "covariance_type"),
        ({"tol": -1.0}, "tol"),
        ({"reg_covar": -1e-3}, "reg_covar"),
        ({"init_params": "kmeans||"}, "init_params"),
        ({"split_every": 1}, "split_every"),
        ({"persist": "sometimes"}, "persist"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"weights_init": [0.5, 0.6]}, "weights"),
        ({"means_init": np.zeros((3, 2))}, "means"),
        ({"precisions_init": -np.ones((2, 3))}, "precision"),
    ],
)
def test_invalid_parameters_are_refused(params, match, X_offset):
    kwargs = {"n_components": 2, "covariance_type": "diag", **params}
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs).fit(X_offset)


def test_predict_before_fit_raises_not_fitted():
    X = da.ones((10, 2), chunks=5)
    for method in ("predict", "predict_proba", "score_samples", "score", "sample"):
        with pytest.raises(NotFittedError):
            getattr(GaussianMixture(), method)(*(() if method == "sample" else (X,)))


@pytest.mark.parametrize("as_dask", [False, True], ids=["numpy", "dask"])
def test_predict_with_the_wrong_number_of_features(as_dask, X_offset):
    model = GaussianMixture(2, random_state=0).fit(X_offset)
    X = np.ones((10, 5))
    with pytest.raises(ValueError, match="X has 5 features, but GaussianMixture is expecting 3"):
        model.predict(da.from_array(X) if as_dask else X)


def test_degenerate_component_names_component_and_reg_covar():
    # Component 1 starts on three identical rows far from the rest: with no
    # regularisation its covariance collapses to zero in the first M-step.
    X = np.concatenate([np.random.default_rng(0).normal(size=(50, 2)), np.full((3, 2), 100.0)])
    with pytest.raises(ValueError, match=r"component 1 .*reg_covar"):
        GaussianMixture(2, reg_covar=0.0, means_init=[[0.0, 0.0], [100.0, 100.0]],
                        weights_init=[0.5, 0.5], precisions_init=np.tile(np.eye(2), (2, 1, 1))).fit(X)


def test_missing_zarr_chunks_are_refused(tmp_path):
    arr = zarr.create_array(str(tmp_path / "holes.zarr"), shape=(100, 2), chunks=(10, 2),
                            dtype="f8")
    arr[:50] = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="5 of 10 chunks missing.*allow_missing_chunks"):
        GaussianMixture(2).fit(arr)


def test_wrong_zarr_path_or_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="No Zarr"):
        GaussianMixture(2).fit(str(tmp_path / "nowhere.zarr"))
    make_mixture_zarr(tmp_path / "g.zarr", 100, 2, 2, chunk_rows=50)
    with pytest.raises(KeyError, match="holds 5 arrays"):
        GaussianMixture(2).fit(str(tmp_path / "g.zarr"))
