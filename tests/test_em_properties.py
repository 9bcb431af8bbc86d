"""Property-based: EM's log-likelihood never decreases."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daskgmm import GaussianMixture


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_samples=st.integers(30, 400),
    n_features=st.integers(1, 4),
    n_components=st.integers(1, 4),
    covariance_type=st.sampled_from(["full", "tied", "diag", "spherical"]),
    init_params=st.sampled_from(["kmeans", "k-means++", "random", "random_from_data"]),
    offset=st.sampled_from([0.0, 1e3, -1e4, 1e6]),
    chunk_rows=st.integers(7, 200),
    collinear=st.sampled_from(["none", "duplicate", "combination"]),
    scales=st.lists(st.sampled_from([1e-3, 1.0, 1e3]), min_size=5, max_size=5),
)
def test_log_likelihood_never_decreases(seed, n_samples, n_features, n_components,
                                        covariance_type, init_params, offset, chunk_rows,
                                        collinear, scales):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_components, n_features))
    X = centres[rng.integers(0, n_components, n_samples)] + rng.normal(
        size=(n_samples, n_features)) * rng.uniform(0.2, 2.0, size=n_features)
    # Ill-conditioned on purpose: a near-duplicate of a feature, or a near-exact
    # linear combination of features (relative noise 1e-4, so that the data, not
    # reg_covar's rounding, decide the smallest variance), and per-feature
    # scales from 1e-3 to 1e6.
    if collinear == "duplicate":
        X = np.hstack([X, X[:, :1] + 1e-4 * rng.normal(size=(n_samples, 1))])
    elif collinear == "combination":
        X = np.hstack([X, X.sum(axis=1, keepdims=True) + 1e-4 * rng.normal(size=(n_samples, 1))])
    # Per-feature scales where the features are independent; one common scale
    # for collinear data (a 1e9 spread of scales on top of collinearity has no
    # positive definite covariance in float64 whatever computes it).
    scales = np.asarray(scales[: X.shape[1]]) if collinear == "none" else np.full(X.shape[1], scales[0])
    X = X * scales + offset
    model = GaussianMixture(n_components, covariance_type=covariance_type, init_params=init_params,
                            random_state=seed % 1000, max_iter=30, tol=0,
                            reg_covar=1e-10 * scales.min() ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 never converges, by design
        model.fit(da.from_array(X, chunks=(chunk_rows, -1)))
    # Monotonicity is a theorem for exact EM. reg_covar > 0 makes the M-step
    # inexact (it can lower the likelihood by about (reg_covar / variance)^2,
    # in scikit-learn too), so it is made negligible here.
    bounds = np.asarray(model.lower_bounds_)
    assert bounds.size == 30
    # EM's monotonicity holds exactly in exact arithmetic; allow rounding only.
    slack = 1e-9 * np.maximum(1.0, np.abs(bounds[:-1]))
    assert np.all(np.diff(bounds) >= -slack), np.diff(bounds).min()
