"""The pure-numpy kernels against scikit-learn's own functions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.mixture import _gaussian_mixture as skgm

from daskgmm import DegenerateComponentError
from daskgmm._density import estimate_log_gaussian_prob
from daskgmm._mstep import m_step
from daskgmm._params import (
    GMMParams,
    compute_precision_cholesky,
    covariances_from_cholesky,
    precision_cholesky_from_precisions,
)
from daskgmm._stats import combine_stats, estep_stats, hard_moments, shifted_moments

from .conftest import COVARIANCE_TYPES


@pytest.fixture(scope="module", params=COVARIANCE_TYPES)
def fitted(request, X_offset):
    sk = SkGMM(3, covariance_type=request.param, random_state=0, max_iter=3, tol=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X_offset)
    return sk


def _params(sk) -> GMMParams:
    return GMMParams(sk.weights_, sk.means_, sk.precisions_cholesky_, sk.covariance_type)


def test_log_gaussian_prob_matches_sklearn(fitted, X_offset):
    ours = estimate_log_gaussian_prob(X_offset, _params(fitted))
    ref = skgm._estimate_log_gaussian_prob(
        X_offset, fitted.means_, fitted.precisions_cholesky_, fitted.covariance_type
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-8)


def test_m_step_from_shifted_stats_matches_sklearn(fitted, X_offset):
    ct = fitted.covariance_type
    stats = estep_stats(X_offset, _params(fitted))
    weights, means, covariances = m_step(stats, fitted.means_, ct, 1e-6)
    _, log_resp = fitted._e_step(X_offset)
    ref_w, ref_m, ref_c = skgm._estimate_gaussian_parameters(X_offset, np.exp(log_resp), 1e-6, ct)
    np.testing.assert_allclose(weights, ref_w / ref_w.sum(), rtol=1e-9)
    np.testing.assert_allclose(means, ref_m, rtol=1e-12)
    np.testing.assert_allclose(covariances, ref_c, rtol=1e-7)
    assert stats["loglik"] / stats["n"] == pytest.approx(fitted.score(X_offset), rel=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_shifted_moments_do_not_cancel_far_from_origin(covariance_type):
    # Unit-variance data at 1e8: E[x^2] - mu^2 would lose every digit in float64.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 2)) + 1e8
    resp = np.ones((2000, 1))
    centre = X[:1]  # any point near the data
    stats = shifted_moments(X, resp, centre, covariance_type)
    _, _, cov = m_step(stats, centre, covariance_type, 0.0)
    expected = np.cov(X - 1e8, rowvar=False, bias=True)
    expected = {"full": expected[None], "tied": expected, "diag": np.diag(expected)[None],
                "spherical": np.diag(expected).mean()[None]}[covariance_type]
    np.testing.assert_allclose(cov, expected, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_hard_moments_equal_shifted_moments_of_one_hot(covariance_type, X_offset):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=X_offset.shape[0])
    centres = X_offset[:3]
    hard = hard_moments(X_offset, labels, centres, covariance_type)
    soft = shifted_moments(X_offset, np.eye(3)[labels], centres, covariance_type)
    for key in ("n", "nk", "s1", "s2"):
        np.testing.assert_allclose(hard[key], soft[key], rtol=1e-10, atol=1e-8)


def test_combined_stats_equal_whole_array_stats(fitted, X_offset):
    params = _params(fitted)
    whole = estep_stats(X_offset, params)
    parts = [estep_stats(X_offset[i : i + 97], params) for i in range(0, X_offset.shape[0], 97)]
    combined = combine_stats(parts)
    for key in whole:
        np.testing.assert_allclose(combined[key], whole[key], rtol=1e-10, atol=1e-8)


def test_precision_cholesky_round_trip(fitted):
    covariance_type = fitted.covariance_type
    chol = compute_precision_cholesky(fitted.covariances_, covariance_type)
    np.testing.assert_allclose(chol, fitted.precisions_cholesky_, rtol=1e-10)
    np.testing.assert_allclose(
        precision_cholesky_from_precisions(fitted.precisions_, covariance_type), chol, rtol=1e-8
    )
    np.testing.assert_allclose(covariances_from_cholesky(chol, covariance_type),
                               fitted.covariances_, rtol=1e-8)


@pytest.mark.parametrize(
    ("covariance_type", "covariances", "named"),
    [
        ("full", np.stack([np.eye(2), np.array([[1.0, 1.0], [1.0, 1.0]]) - 1e-3]), "component 1"),
        ("tied", np.zeros((2, 2)), "tied covariance"),
        ("diag", np.array([[1.0, 1.0], [1.0, 0.0]]), "component 1"),
        ("spherical", np.array([1.0, 1.0, -1.0]), "component 2"),
    ],
)
def test_degenerate_component_is_named(covariance_type, covariances, named):
    with pytest.raises(DegenerateComponentError, match=named) as info:
        compute_precision_cholesky(covariances, covariance_type)
    assert "reg_covar" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_logsumexp_rows_matches_scipy_including_infinite_rows():
    from scipy.special import logsumexp

    from daskgmm._density import logsumexp_rows

    a = np.random.default_rng(0).normal(scale=300, size=(50, 4))
    a[3] = -np.inf
    a[4, 1] = -np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_allclose(logsumexp_rows(a), logsumexp(a, axis=1), rtol=1e-14)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_batched_diag_moments_stay_exact_for_separated_components_far_from_zero(covariance_type):
    # Two unit-variance components 20 apart, at 1e8: the matrix-product kernel
    # expands about the centre of the means, so only the separation (not the
    # offset) enters its rounding error.
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3000, 2)), rng.normal(size=(2000, 2))
    X = np.concatenate([a + 1e8, b + 1e8 + 20.0])
    resp = np.zeros((5000, 2))
    resp[:3000, 0] = 1.0
    resp[3000:, 1] = 1.0
    centres = np.array([X[:3000].mean(0), X[3000:].mean(0)]) + 0.25
    stats = shifted_moments(X, resp, centres, covariance_type)
    _, means, cov = m_step(stats, centres, covariance_type, 0.0)
    expected = np.array([a.var(axis=0), b.var(axis=0)])
    if covariance_type == "spherical":
        expected = expected.mean(axis=1)
    np.testing.assert_allclose(cov, expected, rtol=1e-9)
    np.testing.assert_allclose(means - 1e8, [a.mean(0), b.mean(0) + 20.0], atol=1e-7)


def _assert_stats_close(a, b, rtol=1e-10, atol=1e-8):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=key)


def test_fused_estep_agrees_with_exact_per_component_path(fitted, X_offset):
    from daskgmm._density import linear_form
    from daskgmm._stats import _estep_stats_exact

    params = _params(fitted)
    assert linear_form(params) is not None  # the fixture takes the fused path
    _assert_stats_close(estep_stats(X_offset, params), _estep_stats_exact(X_offset, params, None))


def test_fused_estep_spans_several_row_blocks(fitted, monkeypatch):
    from daskgmm import _density

    rng = np.random.default_rng(5)
    X = fitted.sample(3000)[0] + rng.normal(scale=0.1, size=(3000, 3))
    params = _params(fitted)
    whole = estep_stats(X, params)
    monkeypatch.setattr(_density, "_MAX_BLOCK_ROWS", 256)
    monkeypatch.setattr(_density, "_FEATURE_BLOCK_BYTES", 1)
    assert _density._block_rows(10) == 256  # 3000 rows: twelve blocks, the last partial
    _assert_stats_close(estep_stats(X, params), whole)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_apart_means_take_the_exact_path(covariance_type):
    from scipy.stats import multivariate_normal

    from daskgmm._density import linear_form

    # Two unit-variance clusters 1e4 standard deviations apart: expanding the
    # quadratic form about one point would lose about eps * 1e8 of each
    # log-density (scikit-learn's diag and spherical kernels, which expand
    # about the origin, do), so the exact per-component path must take over.
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(200, 2)) + 1e4])
    sk = SkGMM(2, covariance_type=covariance_type, means_init=[[0, 0], [1e4, 1e4]],
               max_iter=2, tol=0).fit(X)
    params = _params(sk)
    assert linear_form(params) is None
    full_covariances = np.broadcast_to(
        {"full": lambda c: c, "tied": lambda c: c, "diag": lambda c: c[:, :, None] * np.eye(2),
         "spherical": lambda c: c[:, None, None] * np.eye(2)}[covariance_type](sk.covariances_),
        (2, 2, 2))
    exact = np.column_stack([multivariate_normal(m, c).logpdf(X)
                             for m, c in zip(sk.means_, full_covariances, strict=True)])
    np.testing.assert_allclose(estimate_log_gaussian_prob(X, params), exact, rtol=1e-12)
    stats = estep_stats(X, params)
    expected = np.logaddexp(*(exact + np.log(sk.weights_)).T).sum()
    assert stats["loglik"] == pytest.approx(expected, rel=1e-12)


def test_integer_sample_weights_equal_repeated_rows(fitted, X_offset):
    params = _params(fitted)
    weights = np.random.default_rng(6).integers(0, 4, size=X_offset.shape[0])
    repeated = estep_stats(np.repeat(X_offset, weights, axis=0), params)
    weighted = estep_stats(X_offset, params, sample_weight=weights.astype(np.float64))
    _assert_stats_close(weighted, repeated)
    assert weighted["n"] == weights.sum()


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_one_collapsed_component_is_computed_exactly_and_the_rest_fused(covariance_type, X_offset):
    # (A tied covariance is shared: one component cannot collapse alone.)
    from daskgmm._density import _component_log_prob_exact, linear_form
    from daskgmm._params import compute_precision_cholesky
    from daskgmm._stats import _estep_stats_exact

    sk = SkGMM(3, covariance_type=covariance_type, random_state=0, max_iter=2).fit(X_offset)
    covariances = np.array(sk.covariances_, copy=True)
    covariances[1] = covariances[1] * 1e-9  # collapsed: its mean is far in its own units
    params = GMMParams(sk.weights_, sk.means_, compute_precision_cholesky(covariances, covariance_type),
                       covariance_type)
    form = linear_form(params)
    assert form is not None and list(form.exact) == [1]
    X = np.concatenate([X_offset, params.means[[1]] + 1e-6])
    weights = np.random.default_rng(0).uniform(size=X.shape[0])
    _assert_stats_close(estep_stats(X, params, weights), _estep_stats_exact(X, params, weights),
                        rtol=1e-9, atol=1e-9)
    unit = GMMParams(np.ones(3), params.means, params.precisions_cholesky, covariance_type)
    exact = np.column_stack([_component_log_prob_exact(X, unit, k) for k in range(3)])
    np.testing.assert_allclose(estimate_log_gaussian_prob(X, params), exact, rtol=1e-11)


def test_reused_block_buffers_give_each_chunk_its_own_statistics(fitted, X_offset):
    """The fused E-step reuses its block buffers between calls of a thread:
    a large chunk, a smaller one and the large one again must each get the
    statistics of a fresh computation (no stale rows or columns)."""
    from daskgmm._stats import _estep_stats_exact

    params = _params(fitted)
    small = X_offset[:37]
    expected_large = _estep_stats_exact(X_offset, params, None)
    expected_small = _estep_stats_exact(small, params, None)
    _assert_stats_close(estep_stats(X_offset, params), expected_large)
    _assert_stats_close(estep_stats(small, params), expected_small)
    _assert_stats_close(estep_stats(X_offset, params), expected_large)


def test_scratch_buffers_are_per_thread_and_per_slot():
    import threading

    from daskgmm._density import _scratch

    first = _scratch((4, 8), slot=0)
    assert np.shares_memory(first, _scratch((2, 8), slot=0))  # reused, not reallocated
    assert not np.shares_memory(first, _scratch((4, 8), slot=1))
    other_thread = []
    thread = threading.Thread(target=lambda: other_thread.append(_scratch((4, 8), slot=0)))
    thread.start()
    thread.join()
    assert not np.shares_memory(first, other_thread[0])
    assert _scratch((64, 64), slot=0).shape == (64, 64)  # grows when asked for more
