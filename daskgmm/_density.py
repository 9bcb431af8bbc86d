"""Log-densities of a Gaussian mixture, and log-sum-exp: pure numpy, no dask.

Two paths compute ``log w_k + log N(x | mu_k, Sigma_k)``: the fused path
expands each quadratic form about the centre ``c`` of the means
(:class:`LinearForm`), so that one matrix product of features of ``x - c``
gives every component's log-density of a block of rows (the same features,
weighted by the responsibilities, are the moments :mod:`daskgmm._stats`
accumulates); the exact path whitens each component about its own mean,
``||(x - mu_k) U_k||^2``, as scikit-learn does. The expansion's rounding
error grows with the distance of the means from ``c`` and with the condition
numbers of the precisions: past ``_EXPANSION_LIMIT``, or where its error
bound exceeds ``LOG_DENSITY_TOLERANCE`` in a block of rows, a component takes
the exact path.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from ._params import GMMParams, _global_centre, log_det_cholesky, precisions_from_cholesky

_EPS = np.finfo(np.float64).eps
_LOG_2PI = np.log(2 * np.pi)

# The fused E-step works on blocks of rows whose features (F x rows, float64)
# fit in a core's share of the cache: measured on the 2-core development
# machine, 2-4 MiB blocks are about twice as fast as whole chunks.
_FEATURE_BLOCK_BYTES = 4 * 2**20
_MIN_BLOCK_ROWS, _MAX_BLOCK_ROWS = 256, 8192

# The expanded quadratic form  y'Py - 2 m'Py + m'Pm  (y = x - c, m = mu - c)
# rounds with an absolute error near eps * m'Pm. Past this squared Mahalanobis
# distance of a mean from the expansion centre (1,000 standard deviations,
# an error near 1e-10), a component's log-densities and moments are computed
# exactly about its own mean instead (typically a component collapsed to
# reg_covar); if every component is that far, the whole E-step is.
_EXPANSION_LIMIT = 1e6

# Largest rounding error (nats) allowed in an expanded log-density, by the
# rigorous bound of LinearForm.error_bounds: a component whose bound exceeds
# it in a block of rows (ill-conditioned precisions, e.g. collinear features;
# rows far from the centre) is computed in that block by the whitened path
# ||(x - mu_k) U_k||^2, as scikit-learn does. The bound is a worst case (every
# rounding in one direction, every feature at its block maximum in one row):
# on well-conditioned data with D = 64 it reaches about 4e-7 while the actual
# error stays near 1e-11, hence a tolerance of 1e-6 nats, a relative change of
# 1e-6 in a responsibility at most.
LOG_DENSITY_TOLERANCE = 1e-6

_scratch_space = threading.local()


def _scratch(shape: tuple[int, ...], slot: int) -> np.ndarray:
    """An uninitialised float64 array of ``shape``, reused by later calls from
    the same thread (one buffer per ``slot``; its contents do not survive
    the next call with that slot).

    The fused E-step's block buffers take a few MiB per chunk. Allocating
    them afresh costs a page fault per 4 KiB under the
    ``MALLOC_TRIM_THRESHOLD_`` that dask's nanny sets for its workers (each
    large allocation is then a new ``mmap``): 3,400 faults and about 30% of
    the time of a 131,072-row chunk. Kept per thread, they cost nothing
    after a worker thread's first chunk, and memory stays bounded by
    threads, not rows.
    """
    buffers: dict[int, np.ndarray] | None = getattr(_scratch_space, "buffers", None)
    if buffers is None:
        buffers = _scratch_space.buffers = {}
    size = int(np.prod(shape))
    buffer = buffers.get(slot)
    if buffer is None or buffer.size < size:
        buffer = buffers[slot] = np.empty(size)
    return buffer[:size].reshape(shape)


def _block_rows(n_features_out: int) -> int:
    """Rows per block whose ``n_features_out`` features fill ``_FEATURE_BLOCK_BYTES``."""
    rows = _FEATURE_BLOCK_BYTES // (8 * n_features_out)
    return int(min(max(rows, _MIN_BLOCK_ROWS), _MAX_BLOCK_ROWS))


#: Each row block of a chunk task's temporaries (distances to candidates,
#: log-densities, responsibilities) takes about this much memory, so that a
#: task's memory is bounded by its chunk and this, not by rows x components.
ROW_BLOCK_BYTES = 8 * 2**20


def row_blocks(n_rows: int, floats_per_row: int) -> Iterator[slice]:
    """Consecutive row ranges whose temporaries take about :data:`ROW_BLOCK_BYTES` each.

    Parameters
    ----------
    n_rows : int
    floats_per_row : int
        The float64 values a block's temporaries hold per row (say ``K``
        log-densities and ``K`` responsibilities: ``2 K``).

    Yields
    ------
    slice
        Row ranges in order, covering every row once, each of at least
        ``_MIN_BLOCK_ROWS`` rows (but the last).
    """
    step = max(ROW_BLOCK_BYTES // (8 * max(floats_per_row, 1)), _MIN_BLOCK_ROWS)
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _log_weighted_density(sq_distance: np.ndarray, log_det: np.ndarray | float,
                          log_weight: np.ndarray | float, n_features: int) -> np.ndarray:
    """``log w + log N`` from a squared Mahalanobis distance: the formula of both paths."""
    return -0.5 * (n_features * _LOG_2PI + sq_distance) + log_det + log_weight


@dataclass(frozen=True)
class LinearForm:
    """Weighted log-densities as one matrix product of features of the rows.

    ``log w_k + log N(x | mu_k, Sigma_k) = coef[k] . phi(x - centre) + base[k]``,
    where the features ``phi`` depend on the covariance type:

    * ``full``: the products ``y_i y_j`` (i <= j, row-major upper triangle), then ``y``;
    * ``tied``: ``|U^T y|^2``, then ``y``;
    * ``diag`` and ``spherical``: ``y**2``, then ``y``.

    The same features, weighted by the responsibilities, are the chunk's
    first and second moments about ``centre``, so one block of features
    serves both halves of the E-step.
    """

    centre: np.ndarray
    coef: np.ndarray
    base: np.ndarray
    covariance_type: str
    exact: np.ndarray
    """Components too far from ``centre`` to expand: computed exactly instead."""
    abs_offsets: np.ndarray
    """``|mu_k - centre|``, (K, D): for :meth:`error_bounds`."""
    abs_factors: np.ndarray
    """``|U_k|`` elementwise, (K, D, D) or (K, D) for diagonal factors."""
    tied_factor: np.ndarray | None = None
    """The tied precision Cholesky factor ``U``, for the feature ``|U^T y|^2``."""

    @property
    def n_features_out(self) -> int:
        """The number of features F per row."""
        return int(self.coef.shape[1])

    def error_bounds(self, max_abs_y: np.ndarray) -> np.ndarray:
        """Bounds on the rounding error of each component's expanded log-density.

        For every row whose ``|x - centre|`` is at most ``max_abs_y`` feature by
        feature, ``|coef[k] . phi + base[k]|`` differs from the exact
        ``log w_k + log N(x | mu_k, Sigma_k)`` by less than the bound, whatever
        the condition number of the precision: the bound grows with it, and
        a component whose bound is too large goes to the whitened path.

        The expansion sums ``F`` terms whose magnitudes add up to at most
        ``v' |P_k| v`` with ``v = max_abs_y + |m_k|``, and ``|P_k| <= |U_k||U_k|'``
        elementwise also covers the rounding of ``P_k = U_k U_k'`` itself; any
        summation order of ``F`` terms errs by at most ``gamma_F`` times the sum
        of their magnitudes (Higham, *Accuracy and Stability of Numerical
        Algorithms*, 2nd ed., eq. 3.5). The log-density is half of the form.

        Parameters
        ----------
        max_abs_y : ndarray of shape (D,)

        Returns
        -------
        bounds : ndarray of shape (K,)
        """
        v = self.abs_offsets + max_abs_y
        if self.abs_factors.ndim == 3:
            w = np.einsum("kij,ki->kj", self.abs_factors, v)
        else:
            w = self.abs_factors * v
        n_terms = self.coef.shape[1] + 2 * v.shape[1] + 8
        gamma = n_terms * _EPS / (1 - n_terms * _EPS)
        return 0.5 * gamma * np.einsum("kj,kj->k", w, w)


def _triu_pairs(n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the upper triangle, in the order of the ``full`` features."""
    return np.triu_indices(n_features)


def _diagonal_precisions(prec_chol: np.ndarray, cov_type: str, n_features: int) -> np.ndarray:
    """Per-feature precisions (K, D) of diag or spherical components."""
    if cov_type == "diag":
        return prec_chol**2
    return np.repeat((prec_chol**2)[:, None], n_features, axis=1)


def linear_form(params: GMMParams, centre: np.ndarray | None = None) -> LinearForm | None:
    """The :class:`LinearForm` of ``params`` about ``centre``.

    Parameters
    ----------
    params : GMMParams
    centre : ndarray of shape (D,), optional
        The expansion point; by default the centre of the means.

    Returns
    -------
    LinearForm or None
        None where expanding would lose precision for every component (each
        mean farther than ``sqrt(_EXPANSION_LIMIT)`` standard deviations);
        components that far are listed in its ``exact``.
    """
    means, prec_chol, cov_type = params.means, params.precisions_cholesky, params.covariance_type
    n_features = means.shape[1]
    centre = _global_centre(means) if centre is None else np.asarray(centre, dtype=np.float64)
    offsets = means - centre
    if cov_type == "full":
        precisions = precisions_from_cholesky(prec_chol, cov_type)
        rows, cols = _triu_pairs(n_features)
        # y'Py = sum_i P_ii y_i^2 + 2 sum_{i<j} P_ij y_i y_j
        quadratic = precisions[:, rows, cols] * np.where(rows == cols, 1.0, 2.0)
        linear = np.einsum("kij,kj->ki", precisions, offsets)
    elif cov_type == "tied":
        precision = prec_chol @ prec_chol.T
        linear = offsets @ precision
        quadratic = np.ones((means.shape[0], 1))
    else:
        precisions = _diagonal_precisions(prec_chol, cov_type, n_features)
        linear = offsets * precisions
        quadratic = precisions
    distances = np.einsum("kd,kd->k", offsets, linear)  # m_k' P_k m_k
    far = ~(distances <= _EXPANSION_LIMIT)
    if far.all():
        return None
    log_det = log_det_cholesky(prec_chol, cov_type, n_features)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    base = _log_weighted_density(distances, log_det, log_weights, n_features)
    coef = np.hstack([-0.5 * quadratic, linear])
    n_components = means.shape[0]
    if cov_type == "full":
        abs_factors = np.abs(prec_chol)
    elif cov_type == "tied":
        abs_factors = np.broadcast_to(np.abs(prec_chol), (n_components, n_features, n_features))
    else:
        abs_factors = np.sqrt(_diagonal_precisions(prec_chol, cov_type, n_features))
    return LinearForm(
        centre=centre,
        coef=coef,
        base=np.broadcast_to(base, means.shape[:1]).copy(),
        covariance_type=cov_type,
        exact=np.flatnonzero(far),
        abs_offsets=np.abs(offsets),
        abs_factors=abs_factors,
        tied_factor=prec_chol if cov_type == "tied" else None,
    )


def _fill_features(block: np.ndarray, form: LinearForm, out: np.ndarray) -> None:
    """Write ``phi(block - centre)`` into ``out`` (F, rows): features by row,
    so that every write below is contiguous."""
    n_features = block.shape[1]
    y = out[-n_features:]
    np.subtract(block.T, form.centre[:, np.newaxis], out=y)  # widens float32 here
    if form.covariance_type == "full":
        start = 0
        for i in range(n_features):
            np.multiply(y[i], y[i:], out=out[start : start + n_features - i])
            start += n_features - i
    elif form.covariance_type == "tied":
        assert form.tied_factor is not None  # set by linear_form for tied
        z = form.tied_factor.T @ y
        np.einsum("ij,ij->j", z, z, out=out[0])
    else:
        np.multiply(y, y, out=out[:n_features])


def _component_log_prob_exact(X: np.ndarray, params: GMMParams,
                              k: int | np.integer) -> np.ndarray:
    """``log w_k + log N(x | mu_k, Sigma_k)`` of the rows, centred on mu_k (exact)."""
    n_features = X.shape[1]
    prec_chol, cov_type = params.precisions_cholesky, params.covariance_type
    y = np.asarray(X, dtype=np.float64) - params.means[k]
    if cov_type == "full":
        z = y @ prec_chol[k]
    elif cov_type == "tied":
        z = y @ prec_chol
    else:
        z = y * prec_chol[k]
    log_det = log_det_cholesky(prec_chol, cov_type, n_features)
    with np.errstate(divide="ignore"):
        log_weight = np.log(params.weights[k])
    return _log_weighted_density(np.einsum("ij,ij->i", z, z),
                                 log_det if isinstance(log_det, float) else log_det[k],
                                 log_weight, n_features)


def weighted_log_prob_whitened(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """``log w_k + log N(x | mu_k, Sigma_k)`` (n, K) by the whitened form
    ``||(x - mu_k) U_k||^2`` of each component, as scikit-learn computes it.

    The reference path: its rounding error does not grow with the
    covariances' condition numbers beyond what whitening itself costs.
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((X.shape[0], params.n_components))
    for k in range(params.n_components):
        out[:, k] = _component_log_prob_exact(X, params, k)
    return out


@functools.cache
def _square_rows(n_features: int) -> np.ndarray:
    """Rows of the ``full`` features that hold ``y_i**2`` (see :func:`_fill_features`)."""
    return np.concatenate([[0], np.cumsum(np.arange(n_features, 1, -1))]).astype(np.intp)


def _max_abs_y(phi: np.ndarray, form: LinearForm, n_features: int) -> np.ndarray:
    """``max |y|`` over the rows of a block, feature by feature, from its features
    ``phi`` (F, rows): the largest square where the features hold the squares
    (one read of D rows), else the largest and smallest ``y``."""
    if form.covariance_type == "tied":
        y = phi[-n_features:]
        return np.maximum(y.max(axis=1), -y.min(axis=1))
    if form.covariance_type == "full":
        squares = phi[_square_rows(n_features)]
    else:
        squares = phi[:n_features]
    return np.sqrt(squares.max(axis=1))


def _block_log_prob(block: np.ndarray, params: GMMParams, form: LinearForm, phi: np.ndarray,
                    out: np.ndarray, *, exact_components: bool) -> np.ndarray:
    """Weighted log-densities (K, rows) of one block of rows, written into ``out``.

    ``phi`` (F, rows) receives the block's features. Each component is
    expanded, except where its error bound for this block exceeds
    ``LOG_DENSITY_TOLERANCE`` (whitened instead) and, with
    ``exact_components``, the components of ``form.exact``; without it their
    rows are left for the caller.
    """
    _fill_features(block, form, phi)
    log_prob = np.matmul(form.coef, phi, out=out)
    log_prob += form.base[:, np.newaxis]
    if exact_components:
        for k in form.exact:
            log_prob[k] = _component_log_prob_exact(block, params, k)
    max_abs_y = _max_abs_y(phi, form, block.shape[1])
    # Not "> tolerance": a NaN bound (an overflowing row) must be whitened too.
    inexact = ~(form.error_bounds(max_abs_y) <= LOG_DENSITY_TOLERANCE)
    if inexact.any():
        inexact[form.exact] = False  # computed exactly in any case
        for k in np.flatnonzero(inexact):
            log_prob[k] = _component_log_prob_exact(block, params, k)
    return log_prob


def estimate_weighted_log_prob(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """``log p(x | k) + log w_k`` for each row and component.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    params : GMMParams

    Returns
    -------
    weighted_log_prob : ndarray of shape (n, K)
    """
    X = np.asarray(X)
    form = linear_form(params)
    if form is None:
        return weighted_log_prob_whitened(X, params)
    out = np.empty((X.shape[0], params.n_components))
    step = _block_rows(form.n_features_out)
    features = np.empty((form.n_features_out, min(step, X.shape[0])))
    log_prob = np.empty((params.n_components, features.shape[1]))
    for start in range(0, X.shape[0], step):
        block = X[start : start + step]
        rows = block.shape[0]
        out[start : start + rows] = _block_log_prob(block, params, form, features[:, :rows],
                                                    log_prob[:, :rows], exact_components=False).T
    for k in form.exact:
        out[:, k] = _component_log_prob_exact(X, params, k)
    return out


def estimate_log_gaussian_prob(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """Log-density of each row (n, D) under each component (its weight ignored), (n, K)."""
    return estimate_weighted_log_prob(X, replace(params, weights=np.ones(params.n_components)))


def logsumexp_rows(a: np.ndarray, *, to_resp: bool = False) -> np.ndarray:
    """``log(sum(exp(a), axis=1))`` without overflow, (n, K) -> (n,).

    Parameters
    ----------
    a : ndarray of shape (n, K)
        Weighted log-densities of each row and component.
    to_resp : bool, default=False
        Overwrite ``a`` with the responsibilities ``exp(a) / sum(exp(a))``
        (each row divided by its sum of shifted exponentials, which are
        computed in place anyway: no further pass over ``a``).

    Returns
    -------
    log_prob_norm : ndarray of shape (n,)
    """
    row_max = a.max(axis=1, keepdims=True)
    shift = np.where(np.isfinite(row_max), row_max, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        if to_resp:
            a -= shift
            exp = np.exp(a, out=a)
        else:
            exp = np.exp(a - shift)
        total = exp.sum(axis=1, keepdims=True)
        if to_resp:
            exp /= total
        return (np.log(total) + shift)[:, 0]


def log_prob_resp(weighted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood and log-responsibilities from weighted log-densities.

    Parameters
    ----------
    weighted : ndarray of shape (n, K)

    Returns
    -------
    log_prob_norm : ndarray of shape (n,)
    log_resp : ndarray of shape (n, K)
    """
    log_prob_norm = logsumexp_rows(weighted)
    with np.errstate(under="ignore", invalid="ignore"):
        log_resp = weighted - log_prob_norm[:, np.newaxis]
    return log_prob_norm, log_resp


def estimate_log_prob_resp(X: np.ndarray, params: GMMParams) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood and log-responsibilities.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    params : GMMParams

    Returns
    -------
    log_prob_norm : ndarray of shape (n,)
        ``log p(x)``.
    log_resp : ndarray of shape (n, K)
    """
    return log_prob_resp(estimate_weighted_log_prob(X, params))
