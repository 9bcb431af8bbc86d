"""Many models in one pass: each equals the same model fitted alone."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from daskgmm import GaussianMixture, _em, fit_many
from daskgmm._params import GMMParams
from daskgmm._stats import estep_stats, estep_stats_many

from .conftest import mixture_data

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def _alone(model: GaussianMixture, X) -> GaussianMixture:
    from sklearn.base import clone

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clone(model).fit(X)


def _assert_same_fit(together, alone):
    assert together.n_iter_ == alone.n_iter_
    assert together.converged_ == alone.converged_
    # Bitwise: models fitted together end exactly where they would alone.
    for attr in FITTED:
        np.testing.assert_array_equal(getattr(together, attr), getattr(alone, attr), err_msg=attr)
    np.testing.assert_array_equal(together.lower_bounds_, alone.lower_bounds_)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_the_first_of_n_init_candidates_ends_bitwise_where_it_would_alone(covariance_type):
    """scikit-learn's test_init: n_init=10 never ends below n_init=1 for one seed."""
    X = mixture_data(n_per_component=200, seed=4)
    common = dict(covariance_type=covariance_type, random_state=7, max_iter=1, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = GaussianMixture(3, n_init=1, **common).fit(X)
        ten = GaussianMixture(3, n_init=10, **common).fit(X)
        first = fit_many([GaussianMixture(3, n_init=1, **common),
                          GaussianMixture(2, n_init=1, **common)], X)[0]
    assert ten.lower_bound_ >= one.lower_bound_
    assert first.lower_bound_ == one.lower_bound_
    np.testing.assert_array_equal(first.means_, one.means_)


def test_estep_stats_many_equals_each_model_alone(X_offset):
    rng = np.random.default_rng(0)
    models = []
    for k, ct in [(2, "full"), (3, "full"), (4, "diag"), (3, "spherical"), (2, "tied"), (3, "tied")]:
        sk = GaussianMixture(k, covariance_type=ct, random_state=k, max_iter=2, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk.fit(X_offset)
        models.append(GMMParams(sk.weights_, sk.means_, sk.precisions_cholesky_, ct))
    # A full model whose means lie 1e5 standard deviations from the others:
    # it cannot share their expansion centre and must be computed alone.
    far = models[0]
    models.append(GMMParams(far.weights, far.means + 1e5, far.precisions_cholesky, "full"))
    weights = rng.uniform(size=X_offset.shape[0])
    for sample_weight in (None, weights):
        together = estep_stats_many(X_offset, models, sample_weight)
        for params, stats in zip(models, together, strict=True):
            alone = estep_stats(X_offset, params, sample_weight)
            for key in alone:
                np.testing.assert_allclose(stats[key], alone[key], rtol=1e-10, atol=1e-8, err_msg=key)


def test_a_sweep_fitted_together_equals_each_model_fitted_alone(monkeypatch):
    X = mixture_data(n_per_component=300, n_components=4, seed=3)
    models = [GaussianMixture(k, covariance_type=ct, random_state=k, init_params=init, tol=1e-4,
                              max_iter=60, chunk_size=250)
              for k, ct, init in [(2, "full", "kmeans"), (3, "full", "random_from_data"),
                                  (4, "full", "kmeans"), (4, "diag", "k-means++"),
                                  (3, "spherical", "random"), (4, "tied", "kmeans")]]
    alone = [_alone(m, X) for m in models]
    passes = []
    original = _em.run_pass
    monkeypatch.setattr(_em, "run_pass", lambda data, fn, models_, **kw: (
        passes.append(len(models_)), original(data, fn, models_, **kw))[1])
    # The first pass also takes the data's content digest (for checkpoints).
    original_with_digest = _em.run_pass_with_digest
    monkeypatch.setattr(_em, "run_pass_with_digest", lambda data, fn, models_, **kw: (
        passes.append(len(models_)), original_with_digest(data, fn, models_, **kw))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = fit_many(models, X)
    assert together == models
    for fitted, reference in zip(together, alone, strict=True):
        _assert_same_fit(fitted, reference)
    # One pass per iteration of the longest fit, each serving the models still running.
    n_iters = sorted(m.n_iter_ for m in alone)
    assert len(passes) == n_iters[-1]
    assert passes[0] == len(models) and passes[-1] == n_iters.count(n_iters[-1])
    assert len(set(n_iters)) > 1  # the models really stop at different passes


def test_fit_many_streams_dask_input_on_a_cluster(dask_client):
    X = mixture_data(n_per_component=200, seed=5)
    Xd = da.from_array(X, chunks=(150, -1))
    models = [GaussianMixture(k, covariance_type="full", random_state=0, max_iter=20)
              for k in (2, 3)]
    fit_many(models, Xd)
    for model in models:
        _assert_same_fit(model, _alone(model, Xd))  # same chunks, so the same sums


def test_n_init_candidates_share_passes_and_the_best_is_kept(monkeypatch):
    X = mixture_data(n_per_component=200, seed=7)
    passes = []
    original = _em.run_pass
    monkeypatch.setattr(_em, "run_pass", lambda data, fn, models_, **kw: (
        passes.append(len(models_)), original(data, fn, models_, **kw))[1])
    original_with_digest = _em.run_pass_with_digest  # the first pass, which takes the digest
    monkeypatch.setattr(_em, "run_pass_with_digest", lambda data, fn, models_, **kw: (
        passes.append(len(models_)), original_with_digest(data, fn, models_, **kw))[1])
    model = GaussianMixture(3, init_params="random", random_state=0, n_init=4, max_iter=50).fit(X)
    assert passes[0] == 4 and len(passes) <= 50
    # The four candidates are the fits from four successive initialisations.
    rs = np.random.RandomState(0)
    bounds = []
    for _ in range(4):
        one = GaussianMixture(3, init_params="random", random_state=rs, max_iter=50)
        with monkeypatch.context() as m:
            m.setattr(_em, "run_pass", original)
            one.fit(X)
        bounds.append(one.lower_bound_)
    assert model.lower_bound_ == pytest.approx(max(bounds), rel=1e-12)


def test_fit_many_refuses_what_is_not_a_model():
    with pytest.raises(TypeError, match="GaussianMixture"):
        fit_many([], np.zeros((10, 2)))
    with pytest.raises(TypeError, match="GaussianMixture"):
        fit_many([object()], np.zeros((10, 2)))
