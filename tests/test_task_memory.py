"""A chunk task's memory is bounded by its chunk, not by rows x components (or candidates).

Every chunk kernel works in row blocks (:func:`daskgmm._density.row_blocks`), so the
(rows, K) log-densities and responsibilities, and the (rows, candidates) distances of the
k-means seeding, exist one block at a time. Measured with tracemalloc (numpy reports its
array allocations to it): the peak a kernel allocates beyond its input must stay under a
bound made of its chunk and its own outputs, on chunks whose rows x K matrices alone would
be ten to fifty times that bound.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from daskgmm import _density, _init, _stats
from daskgmm._density import ROW_BLOCK_BYTES
from daskgmm._em import estep_chunk, loglik_chunk
from daskgmm._params import GMMParams, compute_precision_cholesky
from daskgmm._predict import labels_block, log_likelihood_block, proba_block

ROWS, FEATURES, COMPONENTS, CANDIDATES = 200_000, 4, 64, 640


def _peak_bytes(kernel: Callable[[], object]) -> tuple[int, object]:
    """Peak bytes allocated while ``kernel()`` runs (what already exists not counted)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = kernel()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before, result


@pytest.fixture(scope="module")
def chunk() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(ROWS, FEATURES)) + rng.integers(0, 8, size=(ROWS, 1))


@pytest.fixture(scope="module")
def params(chunk) -> GMMParams:
    rng = np.random.default_rng(1)
    means = chunk[rng.choice(ROWS, COMPONENTS, replace=False)]
    covariances = np.tile(np.eye(FEATURES), (COMPONENTS, 1, 1))
    return GMMParams(np.full(COMPONENTS, 1 / COMPONENTS), means,
                     compute_precision_cholesky(covariances, "full"), "full")


def _bound(chunk: np.ndarray, output_bytes: int = 0) -> int:
    """Two copies of the chunk (a float64 copy, centred rows), the outputs, and a few row blocks."""
    return 2 * chunk.nbytes + output_bytes + 4 * ROW_BLOCK_BYTES


def test_the_bound_is_far_below_what_whole_chunk_matrices_would_take(chunk):
    assert ROWS * CANDIDATES * 8 > 10 * _bound(chunk)
    assert ROWS * COMPONENTS * 8 > 2 * _bound(chunk)


def test_kmeans_initialisation_tasks_are_bounded(chunk):
    rng = np.random.default_rng(2)
    origin = chunk[:1000].mean(axis=0)
    peak, moments = _peak_bytes(lambda: _init._moments_chunk(chunk, None, 0))
    assert moments.n == ROWS
    assert peak < _bound(chunk), peak
    # Ten candidates' coresets of 10,000 rows each, drawn from this chunk alone.
    coreset = _init._CoresetParams(moments, (10_000,) * 10, tuple(range(10)))
    kept = 10 * 10_000 * (FEATURES + 1) * 8
    peak, result = _peak_bytes(lambda: _init._coreset_chunk(chunk, coreset, 0))
    assert len(result) == 10 and result[0].points.shape[1] == FEATURES  # it did its work
    assert peak < _bound(chunk, 2 * kept), peak
    candidates = chunk[rng.choice(ROWS, CANDIDATES, replace=False)]
    # Ten candidates of 64 centres each, as fit_many of ten models would.
    lloyd = _init._LloydParams((candidates[:COMPONENTS],) * 10, ("full",) * 10, origin)
    peak, result = _peak_bytes(lambda: _init._lloyd_chunk(chunk, lloyd, 0))
    assert all(stats["nk"].sum() == ROWS for stats in result)
    assert peak < _bound(chunk, 10 * COMPONENTS * FEATURES**2 * 8), peak


def test_nearest_centre_in_blocks_equals_a_row_by_row_reference(chunk):
    rng = np.random.default_rng(4)
    rows = chunk[:3000]
    candidates = chunk[rng.choice(ROWS, 50, replace=False)] + 0.01
    labels, d2 = _init.nearest_centre(rows, candidates, rows.mean(axis=0))
    for i in range(0, 3000, 97):
        distances = ((candidates - rows[i]) ** 2).sum(axis=1)
        assert labels[i] == np.argmin(distances)
        np.testing.assert_allclose(d2[i], distances.min(), rtol=1e-9, atol=1e-9)


def test_random_initialisation_task_is_bounded_and_blocks_draw_what_the_chunk_would(chunk):
    centre = chunk[:1000].mean(axis=0)
    centres = np.tile(centre, (COMPONENTS, 1))
    p = _init._RandomRespParams((5,), (COMPONENTS,), ("diag",), centre)
    peak, [stats] = _peak_bytes(lambda: _init._random_resp_chunk(chunk, p, 0))
    assert peak < _bound(chunk), peak
    # Reference: the whole chunk's responsibilities at once, from the same per-row draws.
    resp = _init.row_uniforms(5, 0, 0, ROWS, COMPONENTS)
    resp /= resp.sum(axis=1, keepdims=True)
    reference = _stats.shifted_moments(chunk, resp, centres, "diag")
    for key in ("n", "nk", "s1", "s2"):
        np.testing.assert_allclose(stats[key], reference[key], rtol=1e-10)


@pytest.mark.parametrize("path", ["fused", "whitened"])
def test_the_estep_task_is_bounded(chunk, params, path, monkeypatch):
    if path == "whitened":  # the path taken when the expansion cannot be trusted at all
        monkeypatch.setattr(_stats, "linear_form", lambda params, centre=None: None)
    peak, (stats,) = _peak_bytes(lambda: estep_chunk(chunk, (params,), 0))
    assert stats["n"] == ROWS and np.isfinite(stats["loglik"])
    assert peak < _bound(chunk), peak
    if path == "whitened":  # and blocks add up to the whole chunk's statistics
        log_prob = _density.weighted_log_prob_whitened(chunk[:5000], params)
        norm = np.logaddexp.reduce(log_prob, axis=1)
        (part,) = estep_chunk(chunk[:5000], (params,), 0)
        np.testing.assert_allclose(part["loglik"], norm.sum(), rtol=1e-12)
        np.testing.assert_allclose(part["nk"], np.exp(log_prob - norm[:, None]).sum(axis=0),
                                   rtol=1e-10)


@pytest.mark.parametrize("kernel", [log_likelihood_block, labels_block, proba_block],
                         ids=["score_samples", "predict", "predict_proba"])
def test_prediction_tasks_are_bounded_by_their_output(chunk, params, kernel):
    peak, out = _peak_bytes(lambda: kernel(chunk, params, 0))
    assert out.shape[0] == ROWS
    assert peak < _bound(chunk, out.nbytes), (peak, out.nbytes)


def test_prediction_blocks_equal_the_whole_chunk_computation(chunk, params):
    rows = chunk[:20_000]
    weighted = _density.estimate_weighted_log_prob(rows, params)
    norm = np.logaddexp.reduce(weighted, axis=1)
    np.testing.assert_allclose(log_likelihood_block(rows, params), norm, rtol=1e-12)
    np.testing.assert_array_equal(labels_block(rows, params), weighted.argmax(axis=1))
    np.testing.assert_allclose(proba_block(rows, params), np.exp(weighted - norm[:, None]),
                               rtol=1e-10, atol=1e-300)


def test_the_score_task_is_bounded(chunk, params):
    peak, (result,) = _peak_bytes(lambda: loglik_chunk(chunk, (params,), 0))
    assert result["n"] == ROWS
    assert peak < _bound(chunk), peak
