"""Initialisation: three shared passes for k-means, and statistics that belong to their centres.

Issue 12, item 3: the initial means must be the centroids of the rows the
last pass assigned to each centre, not one Lloyd step further.
Issue 14, item 2: ``init_params="kmeans"`` reads the data at most three
times, shared by every candidate of ``n_init`` and ``fit_many``, and the
model it starts is as good.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from daskgmm import GaussianMixture, _init, fit_many
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
def init_passes(monkeypatch) -> list[tuple[str, object]]:
    """Records every full pass of the initialisation: its name and its parameters."""
    seen: list[tuple[str, object]] = []
    run_pass = _init.run_pass

    def spy(data, chunk_fn, params, **kwargs):
        seen.append((kwargs["name"], params))
        return run_pass(data, chunk_fn, params, **kwargs)

    monkeypatch.setattr(_init, "run_pass", spy)
    return seen


def _lloyd_centres(passes) -> list[np.ndarray]:
    """Each candidate's centres in the (single) Lloyd pass."""
    lloyd = [params for name, params in passes if name == "gmm-init-kmeans-lloyd"]
    assert len(lloyd) == 1
    return list(lloyd[0].centres)


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


def _kmeans(data, seed=0, covariance_type="full", n_components=N_COMPONENTS):
    request = _init.InitRequest.make("kmeans", n_components, covariance_type,
                                     np.random.RandomState(seed))
    return _init.initial_stats_many(data, [request], split_every=4)[0]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_kmeans_gives_centroids_of_the_rows_its_centres_assigned(init_passes, covariance_type):
    X = _overlapping_data()
    init = _kmeans(as_dataset(X, chunk_size=300), covariance_type=covariance_type)
    weights, means, cov = m_step(init.stats, init.centres, covariance_type, REG_COVAR,
                                 weight_normaliser=X.shape[0])
    [last] = _lloyd_centres(init_passes)
    ref_weights, ref_means, ref_cov = _reference(X, last, covariance_type)
    # The last pass is a Lloyd step: the centroids differ from the centres
    # (so the test can tell them apart), and the means are the centroids.
    assert np.abs(ref_means - last).max() > 1e-3
    np.testing.assert_allclose(means, ref_means, rtol=0, atol=1e-10)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-9, atol=1e-12)
    # The statistics are about the centres returned with them.
    np.testing.assert_array_equal(init.centres, last)


def test_kmeans_reads_the_data_three_times(init_passes):
    X = _overlapping_data(seed=1)
    _kmeans(as_dataset(X, chunk_size=200))
    assert [name for name, _ in init_passes] == [
        "gmm-init-kmeans-moments", "gmm-init-kmeans-coreset", "gmm-init-kmeans-lloyd"]


def test_every_candidate_of_n_init_and_fit_many_shares_the_three_passes(init_passes):
    X = mixture_data(n_per_component=300, n_components=4, seed=3)
    models = [GaussianMixture(k, covariance_type=ct, random_state=k, n_init=n_init,
                              max_iter=5, chunk_size=250)
              for k, ct, n_init in [(2, "full", 2), (4, "diag", 3), (3, "tied", 1)]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=5 may not converge
        fit_many(models, X)
    names = [name for name, _ in init_passes]
    assert names == ["gmm-init-kmeans-moments", "gmm-init-kmeans-coreset",
                     "gmm-init-kmeans-lloyd"]
    assert len(init_passes[-1][1].centres) == 2 + 3 + 1  # type: ignore[attr-defined]


def test_random_candidates_share_one_pass(init_passes):
    X = mixture_data(n_per_component=200, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(3, init_params="random", n_init=4, max_iter=2, random_state=0,
                        chunk_size=150).fit(X)
    assert [name for name, _ in init_passes] == ["gmm-init-random"]


def test_a_candidate_starts_the_same_whatever_is_fitted_beside_it():
    """Sharing passes must not couple candidates: each draws from its own seed and size."""
    X = mixture_data(n_per_component=300, n_components=4, seed=6)
    data = as_dataset(X, chunk_size=400)
    # K=250 asks for a bigger coreset than K=4 (50 K > 10,000 rows).
    assert _init.coreset_size(250) > _init.coreset_size(N_COMPONENTS)
    alone = _kmeans(data, seed=5)
    requests = [_init.InitRequest.make("kmeans", 250, "diag", np.random.RandomState(9)),
                _init.InitRequest.make("kmeans", N_COMPONENTS, "full", np.random.RandomState(5))]
    beside = _init.initial_stats_many(data, requests, split_every=4)[1]
    np.testing.assert_array_equal(beside.centres, alone.centres)
    for key in alone.stats:
        np.testing.assert_array_equal(beside.stats[key], alone.stats[key])


def test_moments_equal_numpy_on_data_far_from_zero_in_float32():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(5_000, 3)) * [1e-3, 1.0, 1e3] + 1e6).astype(np.float32)
    data = as_dataset(da.from_array(X, chunks=(333, 3)), chunk_size=None)
    moments = _init.run_pass(data, _init._moments_chunk, None, name="test-moments",
                             split_every=3, combine=_init.combine_moments)
    X64 = X.astype(np.float64)
    mean = X64.mean(axis=0)
    assert moments.n == X.shape[0]
    np.testing.assert_allclose(moments.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(moments.cost, ((X64 - mean) ** 2).sum(), rtol=1e-10)


def test_coreset_draws_each_row_with_its_probability_and_weights_it_by_the_inverse():
    """Against a row-by-row reference of the lightweight coreset of Bachem et al."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(30_000, 2)), rng.normal(size=(300, 2)) + 40.0]) + 1e4
    data = as_dataset(X, chunk_size=4_000)
    moments = _init.run_pass(data, _init._moments_chunk, None, name="test-moments",
                             split_every=4, combine=_init.combine_moments)
    size, seed = 2_000, 12345
    [coreset] = _init.run_pass(data, _init._coreset_chunk,
                               _init._CoresetParams(moments, (size,), (seed,)),
                               name="test-coreset", split_every=4,
                               combine=_init._combine_coresets)
    n = X.shape[0]
    mean = X.mean(axis=0)
    cost = ((X - mean) ** 2).sum()
    chosen, weights = [], []
    for i, row in enumerate(X):
        q = 0.5 / n + 0.5 * ((row - mean) ** 2).sum() / cost
        prob = min(1.0, size * q)
        if _init.row_uniforms(seed, _init._CORESET_STREAM, i, 1, 1)[0, 0] < prob:
            chosen.append(row)
            weights.append(1 / prob)
    np.testing.assert_array_equal(coreset.points, np.array(chosen))
    np.testing.assert_allclose(coreset.weights, weights, rtol=1e-9)
    # Unbiased: the weights estimate the number of rows, and the far cluster
    # (1% of the rows) is well represented.
    assert abs(coreset.weights.sum() / n - 1) < 0.05
    far = coreset.points[:, 0] > 1e4 + 20
    assert far.sum() > 50
    assert abs(coreset.weights[far].sum() / 300 - 1) < 0.1


def test_small_data_are_their_own_coreset():
    X = _overlapping_data(seed=2)
    moments = _init.CentredMoments(float(X.shape[0]), X.mean(axis=0), 1.0)
    prob = _init.inclusion_probabilities(np.ones(X.shape[0]), moments, X.shape[0])
    np.testing.assert_array_equal(prob, 1.0)


def test_kmeans_start_is_as_good_as_converged_kmeans_on_all_rows():
    """The three passes find centres whose k-means cost is within 1% of scikit-learn's
    KMeans run to convergence on all rows with 10 restarts."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(7)
    centres = rng.normal(scale=2.0, size=(6, 4))
    X = np.concatenate([rng.normal(size=(8_000, 4)) + c for c in centres]) + 300.0
    init = _kmeans(as_dataset(X, chunk_size=5_000), seed=3, n_components=6)
    _, means, _ = m_step(init.stats, init.centres, "full", REG_COVAR)
    cost = ((X[:, None, :] - means[None]) ** 2).sum(axis=2).min(axis=1).sum()
    best = KMeans(6, n_init=10, random_state=0).fit(X).inertia_
    assert X.shape[0] > _init.coreset_size(6)  # a real coreset, not all rows
    assert cost < 1.01 * best, (cost, best)


def test_the_restart_kept_is_the_one_em_likes_best_on_the_coreset():
    """Of the k-means restarts on the coreset, the one whose hard labels lead EM to the
    highest weighted log-likelihood there, checked against a weighted EM written here."""
    rng = np.random.default_rng(8)
    centres = rng.normal(scale=1.5, size=(5, 2))
    points = np.concatenate([rng.normal(size=(400, 2)) * [1.0, 0.3] + c for c in centres])
    coreset = _init.Coreset(points, rng.uniform(0.5, 2.0, size=points.shape[0]))
    request = _init.InitRequest.make("kmeans", 5, "full", np.random.RandomState(4))
    random_state = np.random.RandomState(request.seed % 2**32)
    restarts = [_init.weighted_kmeans(coreset.points, coreset.weights, 5, random_state)
                for _ in range(_init.CORESET_RESTARTS)]
    logliks = [_weighted_em_loglik(coreset, c) for c in restarts]
    assert len({round(ll, 6) for ll in logliks}) > 1, "the restarts should differ"
    for c, ll in zip(restarts, logliks, strict=True):
        assert _init.coreset_loglik(coreset, c, "full", REG_COVAR) == pytest.approx(ll, rel=1e-9)
    np.testing.assert_array_equal(_init.coreset_centres(coreset, request),
                                  restarts[int(np.argmax(logliks))])


def _weighted_em_loglik(coreset, centres) -> float:
    """Weighted EM (full covariances) from the hard labels of ``centres``, in plain numpy."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    x, w = coreset.points, coreset.weights
    labels = ((x[:, None] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    resp = np.eye(centres.shape[0])[labels]
    loglik = -np.inf
    for _ in range(_init.CORESET_EM_ITERATIONS + 1):
        rw = resp * w[:, None]
        nk = rw.sum(axis=0) + 10 * np.finfo(float).eps
        means = rw.T @ x / nk[:, None]
        covs = [((x - m).T * rw[:, k]) @ (x - m) / nk[k] + REG_COVAR * np.eye(x.shape[1])
                for k, m in enumerate(means)]
        log_prob = np.stack([np.log(nk[k] / w.sum()) + multivariate_normal(means[k], covs[k]).logpdf(x)
                             for k in range(len(means))], axis=1)
        previous, loglik = loglik, float((w * logsumexp(log_prob, axis=1)).sum() / w.sum())
        if abs(loglik - previous) < _init.CORESET_EM_TOL:
            return loglik
        resp = np.exp(log_prob - logsumexp(log_prob, axis=1, keepdims=True))
    return loglik


def test_estimator_initial_means_are_centroids(init_passes):
    """Through the estimator: ``max_iter=0`` keeps the initial parameters as fitted."""
    X = _overlapping_data(seed=3)
    gm = GaussianMixture(N_COMPONENTS, covariance_type="full", init_params="kmeans",
                         max_iter=0, reg_covar=REG_COVAR, random_state=0, chunk_size=250)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=0: "did not converge"
        gm.fit(X)
    [last] = _lloyd_centres(init_passes)
    ref_weights, ref_means, ref_cov = _reference(X, last, "full")
    np.testing.assert_allclose(gm.means_, ref_means, rtol=0, atol=1e-10)
    np.testing.assert_allclose(gm.weights_, ref_weights, rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_, ref_cov, rtol=1e-9, atol=1e-12)
