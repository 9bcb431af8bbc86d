"""Stepwise online EM: exact statistics shifts, the schedule, and accuracy against batch EM."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from daskgmm import GaussianMixture
from daskgmm._mstep import m_step
from daskgmm._online import blend, normalised, shift_stats, step_size
from daskgmm._params import GMMParams
from daskgmm._stats import estep_stats

from .conftest import COVARIANCE_TYPES, mixture_data


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    X = mixture_data(n_per_component=5000, n_features=4, n_components=4, seed=1)
    return X[rng.permutation(X.shape[0])]


def _quiet_fit(model, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, **kwargs)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_shifted_statistics_equal_statistics_about_the_new_centres(X, covariance_type):
    model = _quiet_fit(GaussianMixture(4, covariance_type=covariance_type, random_state=0,
                                       max_iter=2), X)
    params = GMMParams(model.weights_, model.means_, model.precisions_cholesky_, covariance_type)
    stats = estep_stats(X, params)
    new_centres = model.means_ + np.random.default_rng(1).normal(size=model.means_.shape)
    shifted = shift_stats(stats, model.means_, new_centres, covariance_type)
    # The M-step from either set of statistics is the same model.
    for a, b in zip(m_step(shifted, new_centres, covariance_type, 1e-6),
                    m_step(stats, model.means_, covariance_type, 1e-6), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_step_size_schedule():
    assert step_size(0, 0.6, 1.0) == 1.0
    assert step_size(1, 0.6, 1.0) == pytest.approx(2 ** -0.6)
    assert step_size(9, 1.0, 0.0) == pytest.approx(1 / 9)
    running = {"n": np.float64(1), "nk": np.array([1.0, 0.0])}
    batch = {"n": np.float64(1), "nk": np.array([0.0, 1.0])}
    np.testing.assert_allclose(blend(running, batch, 0.25)["nk"], [0.75, 0.25])
    np.testing.assert_allclose(blend(None, batch, 0.25)["nk"], [0.0, 1.0])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_two_online_passes_reach_batch_em_within_one_percent(X, covariance_type):
    kwargs = {"covariance_type": covariance_type, "random_state": 0}
    batch = _quiet_fit(GaussianMixture(4, tol=1e-6, max_iter=500, **kwargs), X)
    online = _quiet_fit(GaussianMixture(4, algorithm="online", online_passes=2, batch_size=500,
                                        **kwargs), X)
    assert online.n_iter_ == 2 * X.shape[0] // 500  # one M-step per mini-batch
    gap = (batch.score(X) - online.score(X)) / abs(batch.score(X))
    assert gap < 0.01, (batch.score(X), online.score(X))


def test_first_partial_fit_on_all_rows_is_one_em_iteration(X):
    init = {"weights_init": np.full(4, 0.25), "means_init": X[:4],
            "precisions_init": np.tile(np.eye(4), (4, 1, 1))}
    online = GaussianMixture(4, **init).partial_fit(X)
    batch = _quiet_fit(GaussianMixture(4, max_iter=1, **init), X)
    np.testing.assert_allclose(online.means_, batch.means_, rtol=1e-12)
    np.testing.assert_allclose(online.covariances_, batch.covariances_, rtol=1e-10)
    assert online.n_iter_ == 1 and online.lower_bound_ == pytest.approx(batch.lower_bound_)


def test_partial_fit_blends_batches_with_the_documented_step_sizes(X):
    init = {"weights_init": np.full(4, 0.25), "means_init": X[:4],
            "precisions_init": np.tile(np.eye(4), (4, 1, 1))}
    a, b = X[:6000], X[6000:9000]
    model = GaussianMixture(4, learning_decay=0.8, learning_offset=2.0, **init)
    model.partial_fit(a)
    first = GMMParams(model.weights_, model.means_, model.precisions_cholesky_, "full")
    s_a = normalised(estep_stats(a, GMMParams(np.full(4, 0.25), X[:4],
                                              np.tile(np.eye(4), (4, 1, 1)), "full")))
    model.partial_fit(da.from_array(b, chunks=(1000, -1)))  # a dask batch of three chunks
    s_b = normalised(estep_stats(b, first))
    gamma = (1 + 2.0) ** -0.8
    expected = blend(shift_stats(s_a, X[:4], first.means, "full"), s_b, gamma)
    _, means, covariances = m_step(expected, first.means, "full", model.reg_covar)
    np.testing.assert_allclose(model.means_, means, rtol=1e-10)
    np.testing.assert_allclose(model.covariances_, covariances, rtol=1e-9)
    assert model.n_iter_ == 2 and len(model.lower_bounds_) == 2


def test_partial_fit_continues_a_fitted_model_and_fit_starts_over(X):
    model = _quiet_fit(GaussianMixture(4, random_state=0, max_iter=50), X)
    before = model.means_.copy()
    model.partial_fit(X[:2000])
    assert model.n_iter_ == 1  # counted from the batch fit's end, as the first online step
    assert np.abs(model.means_ - before).max() < 0.5  # started from the fitted means
    _quiet_fit(model, X)
    assert not hasattr(model, "_online")


def test_online_fit_rejects_bad_schedule_parameters(X):
    with pytest.raises(ValueError, match="learning_decay"):
        GaussianMixture(2, algorithm="online", learning_decay=0.4).fit(X)
    with pytest.raises(ValueError, match="algorithm"):
        GaussianMixture(2, algorithm="stochastic").fit(X)
