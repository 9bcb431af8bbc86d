"""Initialisation strategies, each touching the data in a few passes.

Every strategy returns the statistics that scikit-learn's ``_initialize``
would compute from its initial responsibilities, so that the M-step turns
them into initial weights, means and covariances the same way:

* ``kmeans``: scalable k-means (k-means|| seeding [1]_, a weighted
  reclustering of the candidates, then Lloyd passes); responsibilities are
  the final hard labels.
* ``k-means++``: k-means++ [2]_ on a uniform sample of rows; one-hot
  responsibilities on the chosen rows, as in scikit-learn.
* ``random_from_data``: rows chosen uniformly, as in scikit-learn.
* ``random``: uniform random responsibilities normalised per row.

Random numbers drawn per row come from a counter-based hash of the row's
index, so the initialisation does not depend on how the data are chunked.

References
----------
.. [1] Bahmani, Moseley, Vattani, Kumar, Vassilvitskii. "Scalable
   K-Means++". VLDB 2012.
.. [2] Arthur and Vassilvitskii. "k-means++: the advantages of careful
   seeding". SODA 2007.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._data import Dataset
from ._density import row_blocks
from ._em import check_finite_stats, combine_quietly
from ._mstep import m_step
from ._params import (
    GMMParams,
    compute_precision_cholesky,
    covariances_from_cholesky,
    precision_cholesky_from_precisions,
)
from ._passes import check_finite_block, compute_pass, run_pass
from ._stats import Stats, empty_stats, hard_moments, shifted_moments

KMEANS_PARALLEL_ROUNDS = 5
KMEANS_MAX_LLOYD_PASSES = 20
KMEANS_TOL = 1e-4
SAMPLE_ROWS_MIN = 10_000
SAMPLE_ROWS_PER_COMPONENT = 100

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STREAM_MIX = np.uint64(0xD1B54A32D192ED03)


@dataclass(frozen=True)
class InitialStats:
    """Statistics of the initial responsibilities, about ``centres``."""

    stats: Stats
    centres: np.ndarray


def row_uniforms(seed: int, stream: int, first_row: int, n_rows: int, n_cols: int) -> np.ndarray:
    """Uniform numbers in [0, 1) keyed by (seed, stream, row, column).

    A splitmix64 hash of the counter: the value for a row is the same
    whichever chunk the row falls in.
    """
    rows = np.arange(first_row, first_row + n_rows, dtype=np.uint64)
    counter = rows[:, None] * np.uint64(n_cols) + np.arange(n_cols, dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2**64 by design
        key = np.array([seed, stream], dtype=np.uint64) * np.array([_GOLDEN, _STREAM_MIX])
        z = counter + key.sum() + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _new_seed(random_state: np.random.RandomState) -> int:
    return int(random_state.randint(0, 2**62, dtype=np.int64))


def take_rows(data: Dataset, indices: np.ndarray) -> np.ndarray:
    """The rows at ``indices`` (in that order), reading only the chunks that hold them."""
    order = np.argsort(indices, kind="stable")
    rows = np.asarray(compute_pass(data.array[np.asarray(indices)[order]], "gmm-init-rows"),
                      dtype=np.float64)  # bounded in time, as every pass
    out = np.empty_like(rows)
    out[order] = rows
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"Input X contains NaN or infinity: row {int(np.asarray(indices)[~finite][0])} "
            "(found while sampling rows for initialisation)."
        )
    return out


def sample_rows(data: Dataset, n_rows: int, random_state: np.random.RandomState) -> np.ndarray:
    """A uniform sample of rows without replacement (all rows if there are fewer)."""
    n = data.n_samples
    if n <= n_rows:
        return take_rows(data, np.arange(n))
    return take_rows(data, np.sort(random_state.choice(n, size=n_rows, replace=False)))


def sample_size(n_components: int) -> int:
    return max(SAMPLE_ROWS_MIN, SAMPLE_ROWS_PER_COMPONENT * n_components)


# --------------------------------------------------------------------------
# Strategies that pick rows
# --------------------------------------------------------------------------


def _one_hot_rows(rows: np.ndarray, covariance_type: str) -> InitialStats:
    """Statistics of one-hot responsibilities on the given rows, one per component."""
    labels = np.arange(rows.shape[0])
    return InitialStats(hard_moments(rows, labels, rows, covariance_type), rows)


def init_random_from_data(data, n_components, covariance_type, random_state) -> InitialStats:
    """Rows chosen uniformly without replacement, as scikit-learn does."""
    indices = random_state.choice(data.n_samples, size=n_components, replace=False)
    return _one_hot_rows(take_rows(data, indices), covariance_type)


def init_kmeans_plusplus(data, n_components, covariance_type, random_state) -> InitialStats:
    """k-means++ seeding on a uniform sample of rows (all rows if few)."""
    from sklearn.cluster import kmeans_plusplus  # here, not at the top: workers never need sklearn

    sample = sample_rows(data, sample_size(n_components), random_state)
    _, indices = kmeans_plusplus(sample, n_components, random_state=random_state)
    return _one_hot_rows(sample[indices], covariance_type)


# --------------------------------------------------------------------------
# random: uniform responsibilities
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _RandomRespParams:
    seed: int
    centres: np.ndarray
    covariance_type: str


def _random_resp_chunk(block: np.ndarray, p: _RandomRespParams, start: int) -> Stats:
    n_components = p.centres.shape[0]
    parts = []
    # Row blocks, so that the (rows, K) responsibilities exist one block at a time;
    # row_uniforms draws by row number, so the blocks draw what the whole chunk would.
    for rows in row_blocks(block.shape[0], 2 * n_components + block.shape[1]):
        resp = row_uniforms(p.seed, 0, start + rows.start, rows.stop - rows.start, n_components)
        resp /= resp.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported below
            parts.append(shifted_moments(block[rows], resp, p.centres, p.covariance_type))
    stats = (combine_quietly(parts) if parts
             else empty_stats(n_components, block.shape[1], p.covariance_type))
    if not np.isfinite(stats["s1"]).all():
        check_finite_block(block, start)
    return stats


def init_random(data, n_components, covariance_type, random_state, split_every) -> InitialStats:
    """Uniform random responsibilities, normalised per row: one pass."""
    # Centre the moments on the mean of the first rows: near the data is all it needs.
    head = take_rows(data, np.arange(min(data.n_samples, 1000)))
    centres = np.tile(head.mean(axis=0), (n_components, 1))
    params = _RandomRespParams(_new_seed(random_state), centres, covariance_type)
    stats = run_pass(data, _random_resp_chunk, params, name="gmm-init-random",
                     split_every=split_every, combine=combine_quietly)
    return InitialStats(stats, centres)


# --------------------------------------------------------------------------
# kmeans: k-means|| seeding, weighted reclustering, Lloyd passes
# --------------------------------------------------------------------------


def nearest_centre(block: np.ndarray, centres: np.ndarray, origin: np.ndarray):
    """Index of and squared distance to the nearest centre for each row.

    Distances are expanded as ``|y|^2 - 2 y.c + |c|^2`` about ``origin`` (a
    point near the data), so that the expansion does not cancel for data far
    from zero.
    """
    c = centres - origin
    c_norms = np.einsum("ij,ij->i", c, c)
    labels = np.empty(block.shape[0], dtype=np.intp)
    nearest = np.empty(block.shape[0])
    # Row blocks: the (rows, candidates) distance matrix never exists for a whole chunk
    # (1M rows and 640 candidates would be 5 GB a task).
    for rows in row_blocks(block.shape[0], 2 * centres.shape[0] + block.shape[1]):
        y = np.asarray(block[rows], dtype=np.float64) - origin
        d2 = np.einsum("ij,ij->i", y, y)[:, None] - 2.0 * (y @ c.T) + c_norms
        labels[rows] = np.argmin(d2, axis=1)
        nearest[rows] = d2[np.arange(d2.shape[0]), labels[rows]]
    return labels, np.maximum(nearest, 0.0)


@dataclass(frozen=True)
class _SeedingParams:
    centres: np.ndarray
    origin: np.ndarray
    seed: int
    round: int
    oversampling: float
    previous_cost: float


def _seeding_chunk(block: np.ndarray, p: _SeedingParams, start: int) -> dict:
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported below
        _, d2 = nearest_centre(block, p.centres, p.origin)
    cost = d2.sum()
    if not np.isfinite(cost):
        check_finite_block(block, start)
    if np.isfinite(p.previous_cost) and p.previous_cost > 0:
        u = row_uniforms(p.seed, p.round, start, block.shape[0], 1)[:, 0]
        chosen = np.asarray(block[u < p.oversampling * d2 / p.previous_cost], dtype=np.float64)
    else:
        chosen = np.empty((0, block.shape[1]))
    return {"cost": np.float64(cost), "points": chosen}


def _combine_seeding(parts: list[dict]) -> dict:
    return {
        "cost": np.float64(sum(part["cost"] for part in parts)),
        "points": np.concatenate([part["points"] for part in parts]),
    }


@dataclass(frozen=True)
class _NearestParams:
    centres: np.ndarray
    origin: np.ndarray


def _count_chunk(block: np.ndarray, p: _NearestParams, start: int) -> dict:
    labels, _ = nearest_centre(block, p.centres, p.origin)
    return {"counts": np.bincount(labels, minlength=p.centres.shape[0]).astype(np.float64)}


@dataclass(frozen=True)
class _LloydParams:
    centres: np.ndarray
    origin: np.ndarray
    covariance_type: str


@dataclass(frozen=True)
class LloydStats:
    """What a Lloyd pass yields: the statistics of the labels, and the inertia."""

    stats: Stats
    """Statistics of the one-hot responsibilities of the labels, about the centres."""
    inertia: np.float64
    """The sum of the rows' squared distances to their nearest centre."""


def _lloyd_chunk(block: np.ndarray, p: _LloydParams, start: int) -> LloydStats:
    with np.errstate(over="ignore", invalid="ignore"):  # reported by initial_stats
        labels, d2 = nearest_centre(block, p.centres, p.origin)
        stats = hard_moments(block, labels, p.centres, p.covariance_type)
    return LloydStats(stats, np.float64(d2.sum()))


def _combine_lloyd(parts: list[LloydStats]) -> LloydStats:
    """Add the parts in order, without floating-point warnings (as :func:`combine_quietly`)."""
    inertia = np.float64(parts[0].inertia)
    with np.errstate(over="ignore", invalid="ignore"):
        for part in parts[1:]:
            inertia += part.inertia
    return LloydStats(combine_quietly([part.stats for part in parts]), inertia)


def init_kmeans(data, n_components, covariance_type, random_state, split_every,
                max_lloyd_passes: int | None = None) -> InitialStats:
    """Scalable k-means; returns the statistics of its final hard labels.

    Passes: one for the first cost, ``KMEANS_PARALLEL_ROUNDS`` of
    oversampling, one to weight the candidates, then Lloyd passes until the
    centres move less than ``KMEANS_TOL`` times the data's scale (at most
    ``max_lloyd_passes``, by default ``KMEANS_MAX_LLOYD_PASSES``). The last
    Lloyd pass also yields the statistics of the labels, so no further pass
    is needed.

    The statistics are returned with the centres they were computed about
    (the centres that assigned the labels), never with centres moved after
    the pass: the means the M-step derives from them,
    ``centres + s1 / nk``, are then exactly the centroids of the rows each
    centre was assigned, whether the passes converged or hit their limit.

    Notes
    -----
    Each oversampling round draws rows with probability
    ``l * d^2(x, C) / phi`` where ``phi`` is the cost measured by the previous
    round's pass (the current cost would need a pass of its own); since the
    cost only falls, this draws slightly fewer candidates than the paper's
    ``l`` per round, which the reclustering step does not mind.
    """
    seed = _new_seed(random_state)
    first = take_rows(data, np.array([random_state.randint(data.n_samples)]))
    origin = first[0]
    centres = first
    oversampling = 2.0 * n_components
    cost = np.inf
    initial_cost = np.inf  # the cost measured by the first round's pass
    for round_ in range(KMEANS_PARALLEL_ROUNDS + 1):
        params = _SeedingParams(centres, origin, seed, round_, oversampling, cost)
        result = run_pass(
            data, _seeding_chunk, params, name="gmm-init-kmeans-seed",
            split_every=split_every, combine=_combine_seeding,
        )
        cost = float(result["cost"])
        if round_ == 0:
            initial_cost = cost
        centres = np.concatenate([centres, result["points"]])
        if cost == 0.0:
            break

    counts = run_pass(
        data, _count_chunk, _NearestParams(centres, origin),
        name="gmm-init-kmeans-weights", split_every=split_every,
    )["counts"]
    centres = _recluster(centres, counts, n_components, random_state)

    tol = KMEANS_TOL * initial_cost / (data.n_samples * data.n_features)
    if max_lloyd_passes is None:
        max_lloyd_passes = KMEANS_MAX_LLOYD_PASSES
    if max_lloyd_passes < 1:
        raise ValueError(f"max_lloyd_passes must be at least 1, got {max_lloyd_passes}.")
    for lloyd_pass in range(max_lloyd_passes):
        stats = run_pass(
            data, _lloyd_chunk, _LloydParams(centres, origin, covariance_type),
            name="gmm-init-kmeans-lloyd", split_every=split_every, combine=_combine_lloyd,
        ).stats
        if lloyd_pass == max_lloyd_passes - 1:
            break  # out of passes: keep the centres these statistics are about
        nonempty = stats["nk"] > 0
        shift = np.zeros_like(centres)
        shift[nonempty] = stats["s1"][nonempty] / stats["nk"][nonempty, None]
        with np.errstate(over="ignore", invalid="ignore"):  # reported by initial_stats
            small = np.sum(shift**2) <= tol
        if small or not np.isfinite(shift).all():
            break
        centres = centres + shift
    return InitialStats(stats, centres)


def _recluster(candidates, weights, n_components, random_state) -> np.ndarray:
    """Weighted k-means of the candidates down to ``n_components`` centres."""
    keep = weights > 0
    candidates, weights = candidates[keep], weights[keep]
    if candidates.shape[0] <= n_components:
        # Fewer candidates than components happens only for data with few
        # distinct rows; repeat candidates (the components then start equal).
        reps = np.resize(np.arange(candidates.shape[0]), n_components)
        return candidates[reps].copy()
    from sklearn.cluster import KMeans  # here, not at the top: workers never need sklearn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct clusters" on degenerate data
        km = KMeans(n_clusters=n_components, n_init=1, random_state=random_state)
        km.fit(candidates, sample_weight=weights)
    return km.cluster_centers_


INIT_STRATEGIES = ("kmeans", "k-means++", "random", "random_from_data")


def initial_stats(
    data: Dataset,
    init_params: str,
    n_components: int,
    covariance_type: str,
    random_state: np.random.RandomState,
    split_every: int,
) -> InitialStats:
    """Run the named initialisation strategy.

    Raises
    ------
    NonFiniteError
        If the statistics it returns are not finite (the data are: each pass
        refuses non-finite rows), naming the components and the likely cause.
    """
    if init_params == "kmeans":
        init = init_kmeans(data, n_components, covariance_type, random_state, split_every)
    elif init_params == "random":
        init = init_random(data, n_components, covariance_type, random_state, split_every)
    elif init_params == "random_from_data":
        init = init_random_from_data(data, n_components, covariance_type, random_state)
    elif init_params == "k-means++":
        init = init_kmeans_plusplus(data, n_components, covariance_type, random_state)
    else:
        raise ValueError(
            f"init_params {init_params!r} not found; valid options are {list(INIT_STRATEGIES)}."
        )
    check_finite_stats(init.stats, covariance_type,
                       stage=f"The initialisation (init_params={init_params!r})")
    return init


def initial_parameters(
    data: Dataset,
    init_params: str,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    random_state: np.random.RandomState,
    split_every: int,
    *,
    weights_init: Any = None,
    means_init: Any = None,
    precisions_init: Any = None,
) -> tuple[GMMParams, np.ndarray]:
    """A model's initial parameters: the user's where given, the named strategy's otherwise.

    As scikit-learn's ``_initialize``: the strategy's statistics go through
    the M-step with the weights divided by the number of samples; then
    ``weights_init``, ``means_init`` and ``precisions_init`` replace what
    they give. The strategy runs only if one of them is missing.

    Parameters
    ----------
    data : Dataset
        Unweighted (the initialisation does not use sample weights).
    init_params, n_components, covariance_type, reg_covar, random_state, split_every
        As the estimator's parameters.
    weights_init, means_init, precisions_init : array-like, optional
        Already checked against the shapes and constraints.

    Returns
    -------
    params : GMMParams
    covariances : ndarray
    """
    if weights_init is None or means_init is None or precisions_init is None:
        init = initial_stats(data, init_params, n_components, covariance_type, random_state,
                             split_every)
        weights, means, covariances = m_step(init.stats, init.centres, covariance_type, reg_covar,
                                             weight_normaliser=data.n_samples)
    if weights_init is not None:
        weights = np.asarray(weights_init, dtype=np.float64)
    if means_init is not None:
        means = np.asarray(means_init, dtype=np.float64)
    if precisions_init is None:
        prec_chol = compute_precision_cholesky(covariances, covariance_type)
    else:
        prec_chol = precision_cholesky_from_precisions(precisions_init, covariance_type)
        covariances = covariances_from_cholesky(prec_chol, covariance_type)
    return GMMParams(weights, means, prec_chol, covariance_type), covariances
