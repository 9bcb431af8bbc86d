"""Property-based: EM's log-likelihood never decreases."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daskgmm import GaussianMixture


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_samples=st.integers(30, 400),
    n_features=st.integers(1, 4),
    n_components=st.integers(1, 4),
    covariance_type=st.sampled_from(["full", "tied", "diag", "spherical"]),
    init_params=st.sampled_from(["kmeans", "k-means++", "random", "random_from_data"]),
    offset=st.sampled_from([0.0, 1e3]),
    chunk_rows=st.integers(7, 200),
)
def test_log_likelihood_never_decreases(seed, n_samples, n_features, n_components,
                                        covariance_type, init_params, offset, chunk_rows):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_components, n_features))
    X = centres[rng.integers(0, n_components, n_samples)] + rng.normal(
        size=(n_samples, n_features)) * rng.uniform(0.2, 2.0, size=n_features) + offset
    model = GaussianMixture(n_components, covariance_type=covariance_type, init_params=init_params,
                            random_state=seed % 1000, max_iter=30, tol=0, reg_covar=1e-10)
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
