"""Initialisation: the statistics returned belong to the centres returned.

Issue 12, item 3: when the Lloyd passes of ``init_kmeans`` stop at their
limit, the initial means must be the centroids of the rows the last pass
assigned to each centre, not one Lloyd step further.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from daskgmm import GaussianMixture, _init
from daskgmm._data import as_dataset
from daskgmm._mstep import m_step

from .conftest import COVARIANCE_TYPES, mixture_data

N_COMPONENTS = 4
REG_COVAR = 1e-6


def _overlapping_data(seed: int = 0) -> np.ndarray:
    """Overlapping blobs far from the origin: Lloyd's algorithm needs many steps."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(N_COMPONENTS, 3))
    rows = [rng.normal(size=(400, 3)) + c for c in centres]
    return np.concatenate(rows) + 500.0


@pytest.fixture
def lloyd_centres(monkeypatch) -> list[np.ndarray]:
    """Records the centres each Lloyd pass assigns rows to (and counts those passes)."""
    seen: list[np.ndarray] = []
    run_pass = _init.run_pass

    def spy(data, chunk_fn, params, **kwargs):
        if kwargs["name"] == "gmm-init-kmeans-lloyd":
            seen.append(np.array(params.centres, copy=True))
        return run_pass(data, chunk_fn, params, **kwargs)

    monkeypatch.setattr(_init, "run_pass", spy)
    return seen


def _reference(X: np.ndarray, centres: np.ndarray, covariance_type: str):
    """Weights, means and covariances of the hard assignment to ``centres``, in plain numpy."""
    d2 = ((X[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    labels = d2.argmin(axis=1)
    assert np.unique(labels).size == centres.shape[0], "every centre should own rows"
    groups = [X[labels == k] for k in range(centres.shape[0])]
    weights = np.array([g.shape[0] for g in groups]) / X.shape[0]
    means = np.stack([g.mean(axis=0) for g in groups])
    dev = [g - m for g, m in zip(groups, means, strict=True)]
    if covariance_type == "full":
        cov = np.stack([d.T @ d / d.shape[0] for d in dev]) + REG_COVAR * np.eye(X.shape[1])
    elif covariance_type == "tied":
        cov = sum(d.T @ d for d in dev) / X.shape[0] + REG_COVAR * np.eye(X.shape[1])
    elif covariance_type == "diag":
        cov = np.stack([(d**2).mean(axis=0) for d in dev]) + REG_COVAR
    else:
        cov = np.array([(d**2).mean() for d in dev]) + REG_COVAR
    return weights, means, cov


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("max_passes", [1, 2])
def test_kmeans_at_pass_limit_gives_centroids_of_assigned_rows(
    monkeypatch, lloyd_centres, covariance_type, max_passes
):
    X = _overlapping_data()
    data = as_dataset(X, chunk_size=300)
    monkeypatch.setattr(_init, "KMEANS_MAX_LLOYD_PASSES", max_passes)

    init = _init.initial_stats(data, "kmeans", N_COMPONENTS, covariance_type,
                               np.random.RandomState(0), split_every=4)
    weights, means, cov = m_step(init.stats, init.centres, covariance_type, REG_COVAR,
                                 weight_normaliser=X.shape[0])

    # The limit is what stopped the passes (no extra pass over the data) ...
    assert len(lloyd_centres) == max_passes
    last = lloyd_centres[-1]
    ref_weights, ref_means, ref_cov = _reference(X, last, covariance_type)
    # ... before the centres converged, so the test can tell centroids from centres.
    assert np.abs(ref_means - last).max() > 1e-2
    np.testing.assert_allclose(means, ref_means, rtol=0, atol=1e-10)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-9, atol=1e-12)
    # The statistics are about the centres returned with them.
    np.testing.assert_array_equal(init.centres, last)


def test_max_lloyd_passes_keyword(lloyd_centres):
    X = _overlapping_data(seed=1)
    data = as_dataset(X, chunk_size=500)
    init = _init.init_kmeans(data, N_COMPONENTS, "full", np.random.RandomState(1), 4,
                             max_lloyd_passes=1)
    assert len(lloyd_centres) == 1
    _, means, _ = m_step(init.stats, init.centres, "full", REG_COVAR)
    _, ref_means, _ = _reference(X, lloyd_centres[0], "full")
    np.testing.assert_allclose(means, ref_means, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="max_lloyd_passes"):
        _init.init_kmeans(data, N_COMPONENTS, "full", np.random.RandomState(1), 4,
                          max_lloyd_passes=0)


def test_converged_kmeans_still_gives_centroids(lloyd_centres):
    """Well within the pass limit, the means are the centroids of the final labels."""
    X = mixture_data(n_per_component=300, n_components=N_COMPONENTS, seed=2)
    data = as_dataset(X, chunk_size=400)
    init = _init.initial_stats(data, "kmeans", N_COMPONENTS, "diag",
                               np.random.RandomState(2), split_every=4)
    assert len(lloyd_centres) < _init.KMEANS_MAX_LLOYD_PASSES
    _, means, _ = m_step(init.stats, init.centres, "diag", REG_COVAR)
    _, ref_means, _ = _reference(X, lloyd_centres[-1], "diag")
    np.testing.assert_allclose(means, ref_means, rtol=0, atol=1e-10)


def test_estimator_initial_means_are_centroids(monkeypatch, lloyd_centres):
    """Through the estimator: ``max_iter=0`` keeps the initial parameters as fitted."""
    X = _overlapping_data(seed=3)
    monkeypatch.setattr(_init, "KMEANS_MAX_LLOYD_PASSES", 1)
    gm = GaussianMixture(N_COMPONENTS, covariance_type="full", init_params="kmeans",
                         max_iter=0, reg_covar=REG_COVAR, random_state=0, chunk_size=250)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=0: "did not converge"
        gm.fit(X)
    assert len(lloyd_centres) == 1
    ref_weights, ref_means, ref_cov = _reference(X, lloyd_centres[0], "full")
    np.testing.assert_allclose(gm.means_, ref_means, rtol=0, atol=1e-10)
    np.testing.assert_allclose(gm.weights_, ref_weights, rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_, ref_cov, rtol=1e-9, atol=1e-12)
