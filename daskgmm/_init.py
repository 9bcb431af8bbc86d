"""Initialisation strategies, each touching the data in a few passes.

Every strategy returns the statistics that scikit-learn's ``_initialize``
would compute from its initial responsibilities, so that the M-step turns
them into initial weights, means and covariances the same way:

* ``kmeans``: scalable k-means in three passes (a lightweight coreset [1]_,
  weighted k-means on it on the client, then one Lloyd pass); responsibilities
  are the hard labels of that pass.
* ``k-means++``: k-means++ [2]_ on a uniform sample of rows; one-hot
  responsibilities on the chosen rows, as in scikit-learn.
* ``random_from_data``: rows chosen uniformly, as in scikit-learn.
* ``random``: uniform random responsibilities normalised per row.

Random numbers drawn per row come from a counter-based hash of the row's
index, so the initialisation does not depend on how the data are chunked.

References
----------
.. [1] Bachem, Lucic and Krause. "Scalable k-Means Clustering via
   Lightweight Coresets". KDD 2018.
.. [2] Arthur and Vassilvitskii. "k-means++: the advantages of careful
   seeding". SODA 2007.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._block_checks import check_finite_block
from ._density import row_blocks
from ._em import check_finite_stats, combine_many_quietly, combine_quietly, m_step_params
from ._missing import fill_block, observed_columns_chunk
from ._mstep import m_step
from ._params import (
    GMMParams,
    compute_precision_cholesky,
    covariances_from_cholesky,
    precision_cholesky_from_precisions,
)
from ._passes import compute_pass, run_pass
from ._stats import Stats, empty_stats, estep_stats, hard_moments, shifted_moments

if TYPE_CHECKING:  # dask.array (with pandas) stays out of the workers
    from ._data import Dataset

def filled_for_initialisation(data: Dataset, split_every: int) -> Dataset:
    """``data`` with each missing entry replaced by its column's mean, for the initialisation.

    One pass counts each feature's observed entries (the initialisation
    strategies need complete rows; EM itself marginalizes). A feature never
    observed, or data with no row observed at all, is refused.

    Raises
    ------
    ValueError
        Naming the features that are never observed.
    """
    from dataclasses import replace

    import dask.array as da
    from dask.base import tokenize

    columns = run_pass(data, observed_columns_chunk, None, name="gmm-missing-columns",
                       split_every=split_every)
    never = np.flatnonzero(columns["count"] == 0)
    if never.size:
        shown = ", ".join(str(int(j)) for j in never[:10])
        raise ValueError(
            f"{never.size} feature(s) are never observed (every entry NaN): column(s) {shown}"
            f"{' ...' if never.size > 10 else ''}. A mixture cannot be fitted to a feature without "
            "data: drop those columns.")
    means = columns["sum"] / columns["count"]
    filled = da.map_blocks(fill_block, data.array, means, dtype=data.array.dtype,
                           name=f"gmm-fill-{tokenize(data.array.name, means)}")
    return replace(data, array=filled)


CORESET_ROWS_MIN = 10_000
CORESET_ROWS_PER_COMPONENT = 50
# k-means restarts on the coreset, each judged by a short EM there (all on the client).
# Judging by EM rather than by k-means cost lifted the median final log-likelihood on every
# data set of scripts/init_quality.py (benchmarks/RESULTS.md, issue 14).
CORESET_RESTARTS = 3
CORESET_EM_ITERATIONS = 30
CORESET_EM_TOL = 1e-3
_CORESET_STREAM = 1
SAMPLE_ROWS_MIN = 10_000
SAMPLE_ROWS_PER_COMPONENT = 100
SAMPLE_BYTES = 32 * 2**20  # 10,000 rows up to D=419; 2,048 rows at D=2,048
SAMPLE_ROWS_FLOOR_PER_COMPONENT = 20

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


def sample_size(n_components: int, n_features: int) -> int:
    """Rows of the k-means++ sample: enough per component, and (with many features) no more
    than :data:`SAMPLE_BYTES` of float64, so that gathering it costs a worker what a chunk
    does; never under :data:`SAMPLE_ROWS_FLOOR_PER_COMPONENT` per component."""
    rows = max(SAMPLE_ROWS_MIN, SAMPLE_ROWS_PER_COMPONENT * n_components)
    return max(min(rows, SAMPLE_BYTES // (8 * n_features)),
               SAMPLE_ROWS_FLOOR_PER_COMPONENT * n_components)


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

    sample = sample_rows(data, sample_size(n_components, data.n_features), random_state)
    _, indices = kmeans_plusplus(sample, n_components, random_state=random_state)
    return _one_hot_rows(sample[indices], covariance_type)


# --------------------------------------------------------------------------
# random: uniform responsibilities
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _RandomRespParams:
    seeds: tuple[int, ...]
    n_components: tuple[int, ...]
    covariance_types: tuple[str, ...]
    centre: np.ndarray


def _random_resp_chunk(block: np.ndarray, p: _RandomRespParams, start: int) -> list[Stats]:
    """Each candidate's statistics of its uniform random responsibilities, about ``p.centre``."""
    out = []
    for seed, n_components, covariance_type in zip(p.seeds, p.n_components, p.covariance_types,
                                                   strict=True):
        centres = np.tile(p.centre, (n_components, 1))
        parts = []
        # Row blocks, so that the (rows, K) responsibilities exist one block at a time;
        # row_uniforms draws by row number, so the blocks draw what the whole chunk would.
        for rows in row_blocks(block.shape[0], 2 * n_components + block.shape[1]):
            resp = row_uniforms(seed, 0, start + rows.start, rows.stop - rows.start, n_components)
            resp /= resp.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows: reported below
                parts.append(shifted_moments(block[rows], resp, centres, covariance_type))
        stats = (combine_quietly(parts) if parts
                 else empty_stats(n_components, block.shape[1], covariance_type))
        if not np.isfinite(stats["s1"]).all():
            check_finite_block(block, start)
        out.append(stats)
    return out


def init_random_many(data: Dataset, requests: list[InitRequest],
                     split_every: int) -> list[InitialStats]:
    """Uniform random responsibilities, normalised per row: one pass for every candidate."""
    # Centre the moments on the mean of the first rows: near the data is all it needs.
    head = take_rows(data, np.arange(min(data.n_samples, 1000)))
    centre = head.mean(axis=0)
    params = _RandomRespParams(_seeds(requests),
                               tuple(r.n_components for r in requests),
                               tuple(r.covariance_type for r in requests), centre)
    stats = run_pass(data, _random_resp_chunk, params, name="gmm-init-random",
                     split_every=split_every, combine=combine_many_quietly)
    return [InitialStats(s, np.tile(centre, (r.n_components, 1)))
            for s, r in zip(stats, requests, strict=True)]


# --------------------------------------------------------------------------
# kmeans: a lightweight coreset, k-means on the client, one Lloyd pass
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
    # Row blocks: the (rows, centres) distance matrix never exists for a whole chunk.
    for rows in row_blocks(block.shape[0], 2 * centres.shape[0] + block.shape[1]):
        y = np.asarray(block[rows], dtype=np.float64) - origin
        d2 = np.einsum("ij,ij->i", y, y)[:, None] - 2.0 * (y @ c.T) + c_norms
        labels[rows] = np.argmin(d2, axis=1)
        nearest[rows] = d2[np.arange(d2.shape[0]), labels[rows]]
    return labels, np.maximum(nearest, 0.0)


@dataclass(frozen=True)
class CentredMoments:
    """Row count, mean, and the sum of squared distances to the mean (the k=1 cost)."""

    n: float
    mean: np.ndarray
    cost: float


def _moments_chunk(block: np.ndarray, params: None, start: int) -> CentredMoments:
    # About the chunk's own mean, so that nothing cancels for data far from zero.
    total = np.zeros(block.shape[1])
    blocks = list(row_blocks(block.shape[0], block.shape[1]))
    for rows in blocks:
        total += np.asarray(block[rows], dtype=np.float64).sum(axis=0)
    n = block.shape[0]
    mean = total / max(n, 1)
    cost = 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported below
        for rows in blocks:
            y = np.asarray(block[rows], dtype=np.float64) - mean
            cost += float(np.einsum("ij,ij->", y, y))
    if not (np.isfinite(mean).all() and np.isfinite(cost)):
        check_finite_block(block, start)
    return CentredMoments(float(n), mean, cost)


def combine_moments(parts: list[CentredMoments]) -> CentredMoments:
    """Chan, Golub and LeVeque's pairwise update, in order: no cancellation."""
    n, mean, cost = parts[0].n, parts[0].mean, parts[0].cost
    # Overflow (data near 1e154 and beyond) leaves an infinite cost: the coreset is then
    # drawn uniformly, and the Lloyd pass's statistics report the overflow by component.
    with np.errstate(over="ignore", invalid="ignore"):
        for part in parts[1:]:
            if part.n == 0:
                continue
            total = n + part.n
            delta = part.mean - mean
            cost = cost + part.cost + float(delta @ delta) * n * part.n / total
            mean = mean + delta * (part.n / total)
            n = total
    return CentredMoments(n, mean, cost)


def coreset_size(n_components: int) -> int:
    """Expected rows of the coreset drawn for ``n_components`` centres."""
    return max(CORESET_ROWS_MIN, CORESET_ROWS_PER_COMPONENT * n_components)


def inclusion_probabilities(d2: np.ndarray, moments: CentredMoments, size: int) -> np.ndarray:
    """Each row's probability of joining a lightweight coreset of expected ``size`` rows.

    Half uniform, half proportional to the squared distance to the mean
    (Bachem, Lucic and Krause, 2018), capped at 1; every row is taken when
    there are no more rows than ``size``.
    """
    n = moments.n
    if n <= size:
        return np.ones_like(d2)
    if not (0 < moments.cost < np.inf and np.isfinite(d2).all()):
        return np.full_like(d2, min(1.0, size / n))  # no spread to measure: uniform
    return np.minimum(1.0, size * (0.5 / n + 0.5 * d2 / moments.cost))


@dataclass(frozen=True)
class Coreset:
    """Rows drawn with importance weights (the inverse of their inclusion probability)."""

    points: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class _CoresetParams:
    moments: CentredMoments
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]


def _coreset_chunk(block: np.ndarray, p: _CoresetParams, start: int) -> list[Coreset]:
    """Each seed's coreset rows of this chunk; the draw is per row, so chunking does not matter."""
    points: list[list[np.ndarray]] = [[] for _ in p.seeds]
    weights: list[list[np.ndarray]] = [[] for _ in p.seeds]
    for rows in row_blocks(block.shape[0], 2 * block.shape[1] + 2 * len(p.seeds)):
        x = np.asarray(block[rows], dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: drawn uniformly
            y = x - p.moments.mean
            d2 = np.einsum("ij,ij->i", y, y)
        for i, (seed, size) in enumerate(zip(p.seeds, p.sizes, strict=True)):
            prob = inclusion_probabilities(d2, p.moments, size)
            u = row_uniforms(seed, _CORESET_STREAM, start + rows.start, x.shape[0], 1)[:, 0]
            keep = u < prob
            points[i].append(x[keep])
            weights[i].append(1.0 / prob[keep])
    return [Coreset(np.concatenate(pts) if pts else np.empty((0, block.shape[1])),
                    np.concatenate(w) if w else np.empty(0))
            for pts, w in zip(points, weights, strict=True)]


def _combine_coresets(parts: list[list[Coreset]]) -> list[Coreset]:
    return [Coreset(np.concatenate([part[i].points for part in parts]),
                    np.concatenate([part[i].weights for part in parts]))
            for i in range(len(parts[0]))]


@dataclass(frozen=True)
class _LloydParams:
    centres: tuple[np.ndarray, ...]
    covariance_types: tuple[str, ...]
    origin: np.ndarray


def _lloyd_chunk(block: np.ndarray, p: _LloydParams, start: int) -> list[Stats]:
    """Each candidate's statistics of the hard labels its centres give, about those centres."""
    out = []
    x = np.asarray(block, dtype=np.float64)  # once, not once per candidate
    with np.errstate(over="ignore", invalid="ignore"):  # reported by check_finite_stats
        for centres, covariance_type in zip(p.centres, p.covariance_types, strict=True):
            labels, _ = nearest_centre(x, centres, p.origin)
            out.append(hard_moments(x, labels, centres, covariance_type))
    return out


def weighted_kmeans(points: np.ndarray, weights: np.ndarray, n_components: int,
                    random_state: np.random.RandomState) -> np.ndarray:
    """k-means of weighted points (a k-means++ start, Lloyd's algorithm), on the client."""
    distinct = np.unique(points[weights > 0], axis=0)
    if distinct.shape[0] <= n_components:
        # Fewer distinct rows than components: repeat rows (those components start equal).
        reps = np.resize(np.arange(distinct.shape[0]), n_components)
        return distinct[reps].copy()
    from sklearn.cluster import KMeans  # here, not at the top: workers never need sklearn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct clusters" on degenerate data
        km = KMeans(n_clusters=n_components, n_init=1, random_state=random_state)
        km.fit(points, sample_weight=weights)
    return km.cluster_centers_


def coreset_loglik(coreset: Coreset, centres: np.ndarray, covariance_type: str,
                   reg_covar: float) -> float:
    """Mean log-likelihood on the weighted coreset that EM reaches from ``centres``' hard labels.

    At most ``CORESET_EM_ITERATIONS`` iterations in memory on the client;
    ``-inf`` if EM fails there (a degenerate coreset).
    """
    points, weights = coreset.points, coreset.weights
    total = weights.sum()
    mean_loglik = -np.inf
    try:
        with np.errstate(all="ignore"):  # overflow is reported by the Lloyd pass's statistics
            labels, _ = nearest_centre(points, centres, points.mean(axis=0))
            start = m_step(hard_moments(points, labels, centres, covariance_type, weights),
                           centres, covariance_type, reg_covar, weight_normaliser=total)
            params = GMMParams(start[0], start[1],
                               compute_precision_cholesky(start[2], covariance_type),
                               covariance_type)
            for _ in range(CORESET_EM_ITERATIONS):
                stats = estep_stats(points, params, weights)
                previous, mean_loglik = mean_loglik, float(stats["loglik"]) / total
                if not np.isfinite(mean_loglik) or abs(mean_loglik - previous) < CORESET_EM_TOL:
                    break
                params, _ = m_step_params(stats, params, reg_covar)
    except (ValueError, np.linalg.LinAlgError):  # a collapsed component on the coreset
        return -np.inf
    return mean_loglik if np.isfinite(mean_loglik) else -np.inf


def coreset_centres(coreset: Coreset, request: InitRequest) -> np.ndarray:
    """The best of ``CORESET_RESTARTS`` k-means runs on the coreset, judged as EM would.

    k-means minimises its own cost; the restart kept is the one whose hard
    labels lead EM, on the coreset, to the highest weighted log-likelihood,
    the objective the fit itself maximises.
    """
    assert request.seed is not None
    random_state = np.random.RandomState(request.seed % 2**32)
    best, best_loglik = None, -np.inf
    for _ in range(CORESET_RESTARTS):
        centres = weighted_kmeans(coreset.points, coreset.weights, request.n_components,
                                  random_state)
        loglik = coreset_loglik(coreset, centres, request.covariance_type, request.reg_covar)
        if best is None or loglik > best_loglik:
            best, best_loglik = centres, loglik
    assert best is not None
    return best


def init_kmeans_many(data: Dataset, requests: list[InitRequest],
                     split_every: int) -> list[InitialStats]:
    """Scalable k-means for several candidates in three shared passes.

    1. The data's mean and the sum of squared distances to it.
    2. A lightweight coreset per candidate (its own seed): rows drawn with
       probability half uniform, half proportional to their squared distance
       to the mean, weighted by the inverse of that probability [1]_.
    3. Each candidate's k-means centres, found on its coreset on the client
       (the best of a few restarts, judged by the log-likelihood a short EM
       reaches from them on the coreset), assign every row; the pass yields
       the statistics of those labels.

    The statistics are returned with the centres that assigned the labels,
    so the means the M-step derives from them, ``centres + s1 / nk``, are
    exactly the centroids of each centre's rows: the third pass is a Lloyd
    step.

    """
    moments = run_pass(data, _moments_chunk, None, name="gmm-init-kmeans-moments",
                       split_every=split_every, combine=combine_moments)
    sizes = tuple(coreset_size(r.n_components) for r in requests)
    coresets = run_pass(
        data, _coreset_chunk, _CoresetParams(moments, sizes, _seeds(requests)),
        name="gmm-init-kmeans-coreset", split_every=split_every, combine=_combine_coresets,
    )
    centres = tuple(coreset_centres(coreset, r) for r, coreset in zip(requests, coresets,
                                                                      strict=True))
    stats = run_pass(
        data, _lloyd_chunk,
        _LloydParams(centres, tuple(r.covariance_type for r in requests), moments.mean),
        name="gmm-init-kmeans-lloyd", split_every=split_every, combine=combine_many_quietly,
    )
    return [InitialStats(s, c) for s, c in zip(stats, centres, strict=True)]


INIT_STRATEGIES = ("kmeans", "k-means++", "random", "random_from_data")
INIT_PASSES = {"kmeans": 3, "random": 1, "k-means++": 0, "random_from_data": 0}
"""Full passes over the data each strategy takes, shared by every candidate that uses it.

The row-picking strategies read only the chunks that hold their rows (for
``k-means++``, a uniform sample of ``max(10,000, 100 K)`` rows).
"""


@dataclass(frozen=True)
class InitRequest:
    """One candidate's initialisation.

    ``random_state`` is the model's own generator; the strategies that run
    in shared passes draw one seed from it when the request is made, so that
    a candidate's start does not depend on the candidates beside it.
    """

    init_params: str
    n_components: int
    covariance_type: str
    random_state: np.random.RandomState
    reg_covar: float = 1e-6
    seed: int | None = None

    @classmethod
    def make(cls, init_params: str, n_components: int, covariance_type: str,
             random_state: np.random.RandomState, *, reg_covar: float = 1e-6,
             needed: bool = True) -> InitRequest:
        """A request; ``needed=False`` (the user gave every initial parameter) draws nothing."""
        if init_params not in INIT_STRATEGIES:
            raise ValueError(
                f"init_params {init_params!r} not found; valid options are {list(INIT_STRATEGIES)}."
            )
        shared = needed and init_params in ("kmeans", "random")
        return cls(init_params, n_components, covariance_type, random_state, reg_covar,
                   _new_seed(random_state) if shared else None)


def _seeds(requests: list[InitRequest]) -> tuple[int, ...]:
    seeds = tuple(r.seed for r in requests)
    if any(seed is None for seed in seeds):
        raise ValueError("a strategy run in shared passes needs each request's seed")
    return seeds  # type: ignore[return-value]


def initial_stats_many(data: Dataset, requests: list[InitRequest],
                       split_every: int) -> list[InitialStats]:
    """Run every candidate's strategy; candidates of a strategy share its passes.

    Raises
    ------
    NonFiniteError
        If the statistics a strategy returns are not finite (the data are:
        each pass refuses non-finite rows), naming the components and the
        likely cause.
    """
    results: list[InitialStats | None] = [None] * len(requests)
    for strategy, run_many in (("kmeans", init_kmeans_many), ("random", init_random_many)):
        indices = [i for i, r in enumerate(requests) if r.init_params == strategy]
        if indices:
            for i, init in zip(indices, run_many(data, [requests[i] for i in indices],
                                                 split_every), strict=True):
                results[i] = init
    for i, r in enumerate(requests):
        if r.init_params == "random_from_data":
            results[i] = init_random_from_data(data, r.n_components, r.covariance_type,
                                               r.random_state)
        elif r.init_params == "k-means++":
            results[i] = init_kmeans_plusplus(data, r.n_components, r.covariance_type,
                                              r.random_state)
    out = [init for init in results if init is not None]
    for r, init in zip(requests, out, strict=True):
        check_finite_stats(init.stats, r.covariance_type,
                           stage=f"The initialisation (init_params={r.init_params!r})")
    return out


@dataclass(frozen=True)
class UserInit:
    """The initial parameters a user gave (already checked), any of them None."""

    weights_init: Any = None
    means_init: Any = None
    precisions_init: Any = None

    @property
    def complete(self) -> bool:
        return not any(v is None for v in (self.weights_init, self.means_init,
                                            self.precisions_init))


def initial_parameters_many(
    data: Dataset,
    requests: list[InitRequest],
    user_inits: list[UserInit],
    reg_covar: list[float],
    split_every: int,
) -> list[tuple[GMMParams, np.ndarray]]:
    """Every candidate's initial parameters: the user's where given, the strategy's otherwise.

    As scikit-learn's ``_initialize``: the strategy's statistics go through
    the M-step with the weights divided by the number of samples; then
    ``weights_init``, ``means_init`` and ``precisions_init`` replace what
    they give. A strategy runs only for the candidates missing one of them.

    Parameters
    ----------
    data : Dataset
        Unweighted (the initialisation does not use sample weights).
    requests : list of InitRequest
    user_inits : list of UserInit
    reg_covar : list of float
        Per candidate.
    split_every : int

    Returns
    -------
    list of (GMMParams, covariances)
    """
    needed = [i for i, user in enumerate(user_inits) if not user.complete]
    inits = dict(zip(needed, initial_stats_many(data, [requests[i] for i in needed],
                                                split_every), strict=True))
    out = []
    for i, (request, user) in enumerate(zip(requests, user_inits, strict=True)):
        covariance_type = request.covariance_type
        if i in inits:
            weights, means, covariances = m_step(inits[i].stats, inits[i].centres,
                                                 covariance_type, reg_covar[i],
                                                 weight_normaliser=data.n_samples)
        if user.weights_init is not None:
            weights = np.asarray(user.weights_init, dtype=np.float64)
        if user.means_init is not None:
            means = np.asarray(user.means_init, dtype=np.float64)
        if user.precisions_init is None:
            prec_chol = compute_precision_cholesky(covariances, covariance_type)
        else:
            prec_chol = precision_cholesky_from_precisions(user.precisions_init, covariance_type)
            covariances = covariances_from_cholesky(prec_chol, covariance_type)
        out.append((GMMParams(weights, means, prec_chol, covariance_type), covariances))
    return out
