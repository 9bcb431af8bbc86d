"""BayesianGaussianMixture: scikit-learn's variational estimator, one pass per iteration.

Parity is shown from identical initial responsibilities: both estimators start from the posterior
that scikit-learn's ``_initialize`` makes of the same responsibilities.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture as SklearnBGMM
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

from daskgmm import _variational as vb
from daskgmm._em import EMResult
from daskgmm.bayesian import BayesianGaussianMixture

from .conftest import COVARIANCE_TYPES

PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _mixture(n_per: int = 250, seed: int = 0, offset: float = 1000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 0.0, 5.0]])
    X = np.concatenate([rng.normal(size=(n_per, 3)) + c for c in centres]) + offset
    return X[rng.permutation(len(X))]


def _resp(n: int, k: int, seed: int = 1) -> np.ndarray:
    resp = np.random.RandomState(seed).uniform(size=(n, k))
    return resp / resp.sum(axis=1, keepdims=True)


class _SklearnFromResp(SklearnBGMM):
    """scikit-learn's estimator started from given responsibilities."""

    start_resp: np.ndarray

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, self.start_resp)


class _DaskgmmFromResp(BayesianGaussianMixture):
    """daskgmm's estimator started from the posterior of the same responsibilities."""

    start_resp: np.ndarray
    start_X: np.ndarray

    def _start(self, initial, covariances, data, update):
        nk, xk, sk = _estimate_gaussian_parameters(self.start_X, self.start_resp, self.reg_covar,
                                                   self.covariance_type)
        params, post = update.start(nk, xk, sk)
        return EMResult(params, post.covariances, -np.inf, posterior=post)


def _pair(X, covariance_type, prior_type, **kwargs):
    kw = {"n_components": 6, "covariance_type": covariance_type,
          "weight_concentration_prior_type": prior_type, "max_iter": 15, "tol": 1e-10, **kwargs}
    resp = _resp(len(X), 6)
    sk = _SklearnFromResp(**kw)
    sk.start_resp = resp
    ours = _DaskgmmFromResp(**kw, chunk_size=97)
    ours.start_resp, ours.start_X = resp, X
    return sk, ours


ATTRIBUTES = ["weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_",
              "degrees_of_freedom_", "lower_bound_", "mean_prior_", "covariance_prior_",
              "degrees_of_freedom_prior_", "weight_concentration_prior_"]


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parity_with_scikit_learn_from_identical_initial_responsibilities(covariance_type,
                                                                          prior_type):
    X = _mixture()
    sk, ours = _pair(X, covariance_type, prior_type)
    sk.fit(X)
    for data in (X, da.from_array(X, chunks=(97, 3))):  # numpy; a dask array of 8 chunks
        ours.fit(data)
        assert ours.n_iter_ == sk.n_iter_
        for name in ATTRIBUTES:
            np.testing.assert_allclose(getattr(ours, name), getattr(sk, name), rtol=1e-6,
                                       atol=1e-9, err_msg=name)
        for ours_part, sk_part in zip(np.atleast_2d(ours.weight_concentration_),
                                      np.atleast_2d(sk.weight_concentration_), strict=True):
            np.testing.assert_allclose(ours_part, sk_part, rtol=1e-6)
        np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=1e-6,
                                   atol=1e-9)
        np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_the_lower_bound_never_decreases(seed):
    X = _mixture(150, seed=seed, offset=0.0)
    model = BayesianGaussianMixture(n_components=8, covariance_type=COVARIANCE_TYPES[seed],
                                    weight_concentration_prior_type=PRIOR_TYPES[seed % 2],
                                    random_state=seed, max_iter=40, tol=0.0, chunk_size=100)
    model.fit(X)
    bounds = np.array(model.lower_bounds_)
    assert len(bounds) == 40
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:])), np.diff(bounds)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_the_data_switch_off_the_components_they_do_not_need(prior_type):
    X = _mixture(1000, seed=5, offset=0.0)
    model = BayesianGaussianMixture(n_components=10, weight_concentration_prior_type=prior_type,
                                    weight_concentration_prior=1e-3, random_state=0,
                                    max_iter=500, chunk_size=500).fit(da.from_array(X, 500))
    top3 = np.sort(model.weights_)[-3:].sum()
    print(prior_type, np.round(np.sort(model.weights_)[::-1], 4))
    assert top3 >= 0.99


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_data_driven_priors_take_one_pass_and_equal_scikit_learns(covariance_type):
    X = _mixture(300, seed=6)
    model = BayesianGaussianMixture(n_components=3, max_iter=1, random_state=0,
                                    covariance_type=covariance_type)
    model.fit(da.from_array(X, chunks=(77, 3)))  # diag and spherical: the diagonal pass only
    sk = SklearnBGMM(n_components=3, covariance_type=covariance_type)
    sk._check_parameters(X)
    np.testing.assert_allclose(model.mean_prior_, sk.mean_prior_, rtol=1e-12)
    np.testing.assert_allclose(model.covariance_prior_, sk.covariance_prior_, rtol=1e-9)


def test_the_k_means_plus_plus_sample_is_bounded_in_bytes_not_only_in_rows():
    from daskgmm._init import sample_size

    assert sample_size(10, 8) == 10_000 and sample_size(500, 8) == 50_000
    with pytest.raises(TypeError):
        sample_size(10)  # the features must be given: a default would hide a forgotten width
    assert sample_size(10, 2048) == 2048  # 32 MiB of float64 rows
    assert sample_size(1000, 100_000) == 20_000  # never under 20 rows per component


def test_the_constructor_contains_scikit_learns_signature_and_to_sklearn_predicts_the_same():
    import inspect

    ours = inspect.signature(BayesianGaussianMixture).parameters
    for name, parameter in inspect.signature(SklearnBGMM).parameters.items():
        assert name in ours and ours[name].default == parameter.default, name
    X = _mixture(200, seed=7, offset=0.0)
    model = BayesianGaussianMixture(n_components=4, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(model.to_sklearn().predict_proba(X), model.predict_proba(X),
                                   rtol=1e-9, atol=1e-12)


def test_sklearn_check_estimator_passes():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(BayesianGaussianMixture(), on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 40
    model = BayesianGaussianMixture()
    assert not hasattr(model, "partial_fit") and not hasattr(model, "bic")  # as scikit-learn's


def test_verbose_prints_iterations_as_scikit_learn_does(capsys):
    X = _mixture(100, seed=8, offset=0.0)
    BayesianGaussianMixture(n_components=3, random_state=0, max_iter=4, tol=0.0, verbose=2,
                            verbose_interval=2).fit(X)
    out = capsys.readouterr().out
    assert "Iteration 2" in out and "Iteration 4" in out and "Iteration 3" not in out


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_sample_weights_equal_repeated_rows_priors_included(covariance_type):
    X = _mixture(60, seed=9)
    weights = np.random.default_rng(9).integers(0, 4, size=len(X))  # zero drops a row
    repeated = np.repeat(X, weights, axis=0)
    resp = _resp(len(repeated), 5)
    kw = dict(n_components=5, covariance_type=covariance_type, max_iter=10, tol=0.0)
    fits = []
    for data, sample_weight in ((repeated, None), (da.from_array(X, chunks=50), weights)):
        model = _DaskgmmFromResp(**kw)
        model.start_X, model.start_resp = repeated, resp  # the same start for both
        fits.append(model.fit(data, sample_weight=sample_weight))
    on_repeated, weighted = fits
    np.testing.assert_allclose(weighted.mean_prior_, repeated.mean(axis=0), rtol=1e-12)
    for name in ATTRIBUTES + ["weight_concentration_prior_", "mean_precision_"]:
        np.testing.assert_allclose(getattr(weighted, name), getattr(on_repeated, name),
                                   rtol=1e-8, err_msg=name)


def test_weights_of_one_rows_worth_in_all_are_refused_for_the_data_driven_covariance():
    X = _mixture(20, seed=10, offset=0.0)
    weights = np.full(len(X), 1.0 / len(X))  # normalised: the data weigh one row in all
    with pytest.raises(ValueError, match="weigh 1 in all: a covariance needs at least two rows"):
        BayesianGaussianMixture(n_components=2, random_state=0).fit(X, sample_weight=weights)
    given = BayesianGaussianMixture(n_components=2, random_state=0, covariance_prior=np.eye(3))
    assert np.all(np.isfinite(given.fit(X, sample_weight=weights).means_))


def test_warm_start_continues_as_scikit_learns_does():
    X = _mixture(seed=11)
    sk, ours = _pair(X, "full", "dirichlet_process", warm_start=True)
    for model in (sk, ours):
        model.set_params(max_iter=4)
        model.fit(X)
        model.set_params(max_iter=6)
        model.fit(X)  # continues from the first fit's posterior, its lower bound kept
    assert ours.n_iter_ == sk.n_iter_ == 6
    for name in ATTRIBUTES:
        np.testing.assert_allclose(getattr(ours, name), getattr(sk, name), rtol=1e-6, atol=1e-9,
                                   err_msg=name)


@pytest.mark.parametrize("params, message", [
    ({"covariance_prior": 2.0}, "at least 1 dimension"),  # a number for full covariances
    ({"covariance_prior": np.eye(2)}, "'full covariance_prior' should have the shape of (3, 3)"),
    ({"covariance_prior": -np.eye(3)}, "should be symmetric, positive-definite"),
    ({"covariance_type": "spherical", "covariance_prior": [1.0, 2.0]},
     "'spherical covariance_prior' should be a positive number"),
    ({"mean_prior": [0.0, 0.0]}, "'means' should have the shape of (3,)"),
    ({"degrees_of_freedom_prior": 1.5}, "should be greater than 2"),
])
def test_a_bad_prior_is_refused_before_any_pass_with_scikit_learns_message(monkeypatch, params,
                                                                           message):
    from daskgmm import _passes

    def no_pass(*args, **kwargs):
        raise AssertionError("a pass ran before the priors were checked")

    monkeypatch.setattr(_passes, "pass_graph", no_pass)
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        BayesianGaussianMixture(n_components=2, **params).fit(da.from_array(_mixture(20), 30))


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_parity_with_many_features_where_the_estep_weights_would_underflow(covariance_type):
    """Started as random_from_data starts (one row per component), at D=1000 the variational
    E-step's log "weights" are about -0.85 D: exp() of every one is 0 in float64 (below
    -745), so they are kept relative to their maximum. Before, the first iteration raised
    NonFiniteError where scikit-learn fits."""
    rng = np.random.default_rng(12)
    centres = rng.normal(scale=3.0, size=(3, 1000))
    X = np.concatenate([rng.normal(size=(300, 1000)) + c for c in centres]) + 50.0
    sk, ours = _pair(X, covariance_type, "dirichlet_process", max_iter=8)
    one_row_each = np.zeros((len(X), 6))
    one_row_each[rng.choice(len(X), size=6, replace=False), np.arange(6)] = 1.0
    sk.start_resp = ours.start_resp = one_row_each
    sk.fit(X)
    ours.fit(da.from_array(X, chunks=(250, 1000)))
    start = vb.update(ours._fitted_priors(), *_estimate_gaussian_parameters(
        X, one_row_each, ours.reg_covar, covariance_type), covariance_type)
    assert vb.estep_log_weights(start, "dirichlet_process").max() < -745
    for name in ("weights_", "means_", "covariances_", "lower_bound_", "degrees_of_freedom_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(sk, name), rtol=1e-6, atol=1e-9,
                                   err_msg=name)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-9)
    assert ours.score(X) == pytest.approx(sk.score(X), rel=1e-9)


def test_diagonal_models_take_only_the_diagonal_scatter(monkeypatch):
    from daskgmm import estimator

    asked = []
    original = estimator.run_pass
    monkeypatch.setattr(estimator, "run_pass", lambda data, fn, full, **kw: (
        asked.append(full), original(data, fn, full, **kw))[1])
    X = _mixture(40, seed=13)
    for covariance_type, full in (("diag", False), ("spherical", False), ("full", True)):
        BayesianGaussianMixture(n_components=2, covariance_type=covariance_type, max_iter=1,
                                random_state=0).fit(da.from_array(X, chunks=30))
        assert asked[-1] is full, covariance_type
