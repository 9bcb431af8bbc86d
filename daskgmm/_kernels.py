"""Pure-numpy kernels of Gaussian-mixture EM: no dask in this module.

Every function works on small in-memory arrays (one chunk, or the reduced
statistics) and is tested against scikit-learn on its own.

Shapes by covariance type (K components, D features):

=============  ===================  ======================  ==================
type           covariances          precisions_cholesky     second moment s2
=============  ===================  ======================  ==================
``full``       (K, D, D)            (K, D, D)               (K, D, D)
``tied``       (D, D)               (D, D)                  (D, D)
``diag``       (K, D)               (K, D)                  (K, D)
``spherical``  (K,)                 (K,)                    (K, D)
=============  ===================  ======================  ==================

Numerics: the model is parametrised by the Cholesky factor of each precision
matrix. The E-step expands each quadratic form about the centre ``c`` of the
means, so that one matrix product of features of ``x - c`` gives every
component's log-density and a second gives every first and second moment
(:class:`LinearForm`); the rounding error of the expansion grows with the
squared Mahalanobis distance of the means from ``c``, and past
``_EXPANSION_LIMIT`` an exact per-component path takes over. Moments are
accumulated in float64 and shifted to centres known before the pass (the
current means), so no ``E[xx^T] - mu mu^T`` cancellation occurs however far
the data sit from the origin.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.linalg import solve_triangular

from .exceptions import DegenerateComponentError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# scikit-learn adds this to every N_k so that an empty component does not
# divide by zero; we do the same so that fits agree.
_NK_EPS = 10 * np.finfo(np.float64).eps
_EPS = np.finfo(np.float64).eps
_LOG_2PI = np.log(2 * np.pi)


@dataclass(frozen=True)
class GMMParams:
    """The parameters of a Gaussian mixture, as the E-step needs them.

    Attributes
    ----------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    precisions_cholesky : ndarray
        Shape by covariance type, see the module docstring.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    """

    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]


# --------------------------------------------------------------------------
# Precision Cholesky factors and log-determinants
# --------------------------------------------------------------------------


def _degenerate_message(component: int | None, covariance_type: str) -> str:
    which = "the tied covariance" if component is None else f"component {component}"
    # scikit-learn's sentence, word for word (its tests match it), then daskgmm's detail.
    return (
        "Fitting the mixture model failed because some components have ill-defined "
        "empirical covariance (for instance caused by singleton or collapsed samples). "
        "Try to decrease the number of components, increase reg_covar, or scale the "
        f"input data. Here {which} ({covariance_type} covariance) is not positive "
        "definite: a larger reg_covar makes it so. Data values of magnitude beyond about 1e150 also cause this: their "
        "squares overflow float64 (whose largest value is about 1.8e308), so the "
        "covariances cannot be computed; scale such data (e.g. standardise the features)."
    )


def _precision_cholesky_of_matrix(cov: np.ndarray, component: int | None, cov_type: str):
    """Upper-triangular ``U`` with ``U U^T = inv(cov)``, via the Cholesky of ``cov``."""
    try:
        cov_chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise DegenerateComponentError(_degenerate_message(component, cov_type)) from None
    if not np.all(np.isfinite(cov_chol)):
        raise DegenerateComponentError(_degenerate_message(component, cov_type))
    n_features = cov.shape[0]
    # inv(L)^T is upper triangular; solve instead of inverting.
    return solve_triangular(cov_chol, np.eye(n_features), lower=True).T


def compute_precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Cholesky factors of the precision matrices.

    Parameters
    ----------
    covariances : ndarray
        Covariances, shape by ``covariance_type`` (see the module docstring).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    precisions_cholesky : ndarray
        Same shape as ``covariances``.

    Raises
    ------
    DegenerateComponentError
        If a covariance is not positive definite; the message names the
        component and suggests ``reg_covar``.
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return np.stack(
            [
                _precision_cholesky_of_matrix(cov, k, covariance_type)
                for k, cov in enumerate(covariances)
            ]
        )
    if covariance_type == "tied":
        return _precision_cholesky_of_matrix(covariances, None, covariance_type)
    bad = ~(covariances > 0) | ~np.isfinite(covariances)
    if bad.any():
        component = int(np.argwhere(bad)[0][0])
        raise DegenerateComponentError(_degenerate_message(component, covariance_type))
    return 1.0 / np.sqrt(covariances)


def _upper_cholesky(matrix: np.ndarray) -> np.ndarray:
    """Upper-triangular ``U`` with ``U U^T = matrix`` (note: not ``U^T U``)."""
    return np.linalg.cholesky(matrix[::-1, ::-1])[::-1, ::-1]


def precision_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """Cholesky factors of user-given precision matrices, in the convention of
    :func:`compute_precision_cholesky` (upper ``U`` with ``U U^T`` the precision)."""
    precisions = np.asarray(precisions, dtype=np.float64)
    if covariance_type == "full":
        return np.stack([_upper_cholesky(p) for p in precisions])
    if covariance_type == "tied":
        return _upper_cholesky(precisions)
    return np.sqrt(precisions)


def precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precision matrices ``U U^T`` from their Cholesky factors."""
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def covariances_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Covariances from precision Cholesky factors (for user-given precisions)."""
    if covariance_type == "full":
        inv_u = np.stack([np.linalg.inv(u) for u in prec_chol])
        return np.einsum("kji,kjl->kil", inv_u, inv_u)
    if covariance_type == "tied":
        inv_u = np.linalg.inv(prec_chol)
        return inv_u.T @ inv_u
    return 1.0 / prec_chol**2


def log_det_cholesky(prec_chol: np.ndarray, covariance_type: str, n_features: int):
    """Log-determinant of each precision Cholesky factor.

    Returns an ndarray of shape (K,), or a float for ``tied``.
    """
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return float(np.sum(np.log(np.diag(prec_chol))))
    if covariance_type == "diag":
        return np.sum(np.log(prec_chol), axis=1)
    return n_features * np.log(prec_chol)


# --------------------------------------------------------------------------
# E-step
# --------------------------------------------------------------------------


def _global_centre(means: np.ndarray) -> np.ndarray:
    """The centre of the means: the expansion point of the fused E-step."""
    return means.mean(axis=0)


# The fused E-step works on blocks of rows whose features (F x rows, float64)
# fit in a core's share of the cache: measured on the 2-core development
# machine, 2-4 MiB blocks are about twice as fast as whole chunks.
_FEATURE_BLOCK_BYTES = 4 * 2**20
_MIN_BLOCK_ROWS, _MAX_BLOCK_ROWS = 256, 8192

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
    buffers = getattr(_scratch_space, "buffers", None)
    if buffers is None:
        buffers = _scratch_space.buffers = {}
    size = int(np.prod(shape))
    buffer = buffers.get(slot)
    if buffer is None or buffer.size < size:
        buffer = buffers[slot] = np.empty(size)
    return buffer[:size].reshape(shape)

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
    tied_factor: np.ndarray | None = None
    exact: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    """Components too far from ``centre`` to expand: computed exactly instead."""
    abs_offsets: np.ndarray | None = None
    """``|mu_k - centre|``, (K, D): for :meth:`error_bounds`."""
    abs_factors: np.ndarray | None = None
    """``|U_k|`` elementwise, (K, D, D) or (K, D) for diagonal factors."""

    @property
    def n_features_out(self) -> int:
        return self.coef.shape[1]

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
    return np.triu_indices(n_features)


def linear_form(params: GMMParams, centre: np.ndarray | None = None) -> LinearForm | None:
    """The :class:`LinearForm` of ``params`` about ``centre`` (default: the
    centre of the means), or None where expanding would lose precision for
    every component (each mean farther than ``sqrt(_EXPANSION_LIMIT)``
    standard deviations); components that far are listed in ``exact``."""
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
    base = -0.5 * (n_features * _LOG_2PI + distances) + log_det + log_weights
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
        tied_factor=prec_chol if cov_type == "tied" else None,
        exact=np.flatnonzero(far),
        abs_offsets=np.abs(offsets),
        abs_factors=abs_factors,
    )


def _block_rows(n_features_out: int) -> int:
    rows = _FEATURE_BLOCK_BYTES // (8 * n_features_out)
    return int(min(max(rows, _MIN_BLOCK_ROWS), _MAX_BLOCK_ROWS))


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
        z = form.tied_factor.T @ y
        np.einsum("ij,ij->j", z, z, out=out[0])
    else:
        np.multiply(y, y, out=out[:n_features])


def _normalise_columns(log_prob: np.ndarray) -> np.ndarray:
    """In place, ``log_prob`` (K, rows) -> responsibilities; returns each
    row's ``log sum_k exp(log_prob)``."""
    col_max = log_prob.max(axis=0)
    shift = np.where(np.isfinite(col_max), col_max, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        log_prob -= shift
        np.exp(log_prob, out=log_prob)
        total = log_prob.sum(axis=0)
        log_prob /= total
        return np.log(total) + shift


def _component_log_prob_exact(X: np.ndarray, params: GMMParams, k: int) -> np.ndarray:
    """``log w_k + log N(x | mu_k, Sigma_k)`` of the rows, centred on mu_k (exact)."""
    n_features = X.shape[1]
    prec_chol, cov_type = params.precisions_cholesky, params.covariance_type
    y = np.asarray(X, dtype=np.float64) - params.means[k]
    if cov_type == "full":
        z, log_det = y @ prec_chol[k], np.log(np.diagonal(prec_chol[k])).sum()
    elif cov_type == "tied":
        z, log_det = y @ prec_chol, np.log(np.diagonal(prec_chol)).sum()
    elif cov_type == "diag":
        z, log_det = y * prec_chol[k], np.log(prec_chol[k]).sum()
    else:
        z, log_det = y * prec_chol[k], n_features * np.log(prec_chol[k])
    with np.errstate(divide="ignore"):
        log_weight = np.log(params.weights[k])
    return -0.5 * (n_features * _LOG_2PI + np.einsum("ij,ij->i", z, z)) + log_det + log_weight


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


@functools.cache
def _square_rows(n_features: int) -> np.ndarray:
    """Rows of the ``full`` features that hold ``y_i**2`` (see :func:`_fill_features`)."""
    return np.concatenate([[0], np.cumsum(np.arange(n_features, 1, -1))]).astype(np.intp)


def _whiten_where_inexact(block: np.ndarray, phi: np.ndarray, models: Sequence[GMMParams],
                          forms: Sequence[LinearForm], offsets: Sequence[int],
                          log_prob: np.ndarray) -> None:
    """Recompute, by the whitened path, every row of ``log_prob`` (stacked
    components x rows of ``block``) whose expansion error bound exceeds
    ``LOG_DENSITY_TOLERANCE`` for this block; ``phi`` are the block's features."""
    max_abs_y = _max_abs_y(phi, forms[0], block.shape[1])
    for m, form in enumerate(forms):
        # Not "> tolerance": a NaN bound (an overflowing row) must be whitened too.
        inexact = ~(form.error_bounds(max_abs_y) <= LOG_DENSITY_TOLERANCE)
        if not inexact.any():
            continue
        inexact[form.exact] = False  # already computed exactly
        for k in np.flatnonzero(inexact):
            log_prob[offsets[m] + k] = _component_log_prob_exact(block, models[m], k)


def _diagonal_precisions(prec_chol: np.ndarray, cov_type: str, n_features: int) -> np.ndarray:
    """Per-feature precisions (K, D) of diag or spherical components."""
    if cov_type == "diag":
        return prec_chol**2
    return np.repeat((prec_chol**2)[:, None], n_features, axis=1)


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
        phi = features[:, : block.shape[0]]
        _fill_features(block, form, phi)
        block_log_prob = np.matmul(form.coef, phi, out=log_prob[:, : block.shape[0]])
        block_log_prob += form.base[:, np.newaxis]
        _whiten_where_inexact(block, phi, [params], [form], [0], block_log_prob)
        out[start : start + block.shape[0]] = block_log_prob.T
    for k in form.exact:
        out[:, k] = _component_log_prob_exact(X, params, k)
    return out


def estimate_log_gaussian_prob(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """Log-density of each row under each component, (n, K)."""
    return estimate_weighted_log_prob(X, replace(params, weights=np.ones(params.n_components)))


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """``log(sum(exp(a), axis=1))`` without overflow, (n, K) -> (n,)."""
    row_max = a.max(axis=1)
    shift = np.where(np.isfinite(row_max), row_max, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - shift[:, np.newaxis]).sum(axis=1)) + shift


def estimate_log_prob_resp(X: np.ndarray, params: GMMParams) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood and log-responsibilities.

    Returns
    -------
    log_prob_norm : ndarray of shape (n,)
        ``log p(x)``.
    log_resp : ndarray of shape (n, K)
    """
    weighted = estimate_weighted_log_prob(X, params)
    log_prob_norm = logsumexp_rows(weighted)
    with np.errstate(under="ignore", invalid="ignore"):
        log_resp = weighted - log_prob_norm[:, np.newaxis]
    return log_prob_norm, log_resp


# --------------------------------------------------------------------------
# Sufficient statistics
# --------------------------------------------------------------------------

Stats = dict[str, np.ndarray]
"""Additive sufficient statistics of one chunk (or of many, once combined).

Keys: ``n`` (rows), ``nk`` (K,), ``s1`` (K, D) and ``s2`` (shape by type)
about the pass's centres, ``loglik`` (sum of per-row log-likelihoods).
"""


def empty_stats(n_components: int, n_features: int, covariance_type: str) -> Stats:
    """All-zero statistics, the identity of :func:`combine_stats`."""
    s2_shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components, n_features),
    }[covariance_type]
    return {
        "n": np.float64(0.0),
        "nk": np.zeros(n_components),
        "s1": np.zeros((n_components, n_features)),
        "s2": np.zeros(s2_shape),
        "loglik": np.float64(0.0),
    }


def shifted_moments(
    X: np.ndarray, resp: np.ndarray, centres: np.ndarray, covariance_type: str
) -> Stats:
    """Responsibility-weighted moments of ``X`` about per-component centres.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    resp : ndarray of shape (n, K)
        Responsibilities (each row sums to one for EM; any non-negative
        weights are accepted).
    centres : ndarray of shape (K, D)
        Shift of each component, the same for every chunk of a pass.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    Stats
        ``nk = sum_n r_nk``, ``s1_k = sum_n r_nk (x_n - c_k)`` and, by type,
        ``s2_k = sum_n r_nk (x_n - c_k)(x_n - c_k)^T`` (full), its diagonal
        (diag, spherical), or ``sum_n (sum_k r_nk) (x_n - c)(x_n - c)^T`` about
        the mean ``c`` of the centres (tied). ``loglik`` is zero.
    """
    X = np.asarray(X, dtype=np.float64)
    n_components, n_features = centres.shape
    stats = empty_stats(n_components, n_features, covariance_type)
    stats["n"] = np.float64(X.shape[0])
    stats["nk"] = resp.sum(axis=0)
    if covariance_type in ("diag", "spherical"):
        # Matrix products about the centre c of the centres, then shifted to
        # each c_k exactly: with y = x - c and m_k = c_k - c,
        # s1_k = R^T y - N_k m_k,  s2_k = R^T y^2 - 2 m_k R^T y + N_k m_k^2.
        centre = _global_centre(centres)
        y = X - centre
        m = centres - centre
        ry = resp.T @ y
        stats["s1"] = ry - stats["nk"][:, None] * m
        stats["s2"] = resp.T @ (y * y) - 2.0 * m * ry + stats["nk"][:, None] * m * m
        return stats
    for k in range(n_components):
        y = X - centres[k]
        ry = y * resp[:, k : k + 1]
        stats["s1"][k] = ry.sum(axis=0)
        if covariance_type == "full":
            stats["s2"][k] = ry.T @ y
    if covariance_type == "tied":
        y = X - _global_centre(centres)
        stats["s2"] = (y * resp.sum(axis=1, keepdims=True)).T @ y
    return stats


def hard_moments(
    X: np.ndarray, labels: np.ndarray, centres: np.ndarray, covariance_type: str
) -> Stats:
    """:func:`shifted_moments` for one-hot responsibilities given as labels.

    Costs one pass over the rows whatever K is (each row belongs to one
    component), which makes it the cheap kernel of k-means passes.
    """
    X = np.asarray(X, dtype=np.float64)
    n_components, n_features = centres.shape
    stats = empty_stats(n_components, n_features, covariance_type)
    stats["n"] = np.float64(X.shape[0])
    stats["nk"] = np.bincount(labels, minlength=n_components).astype(np.float64)
    for k in range(n_components):
        y = X[labels == k] - centres[k]
        stats["s1"][k] = y.sum(axis=0)
        if covariance_type == "full":
            stats["s2"][k] = y.T @ y
        elif covariance_type in ("diag", "spherical"):
            stats["s2"][k] = np.einsum("ij,ij->j", y, y)
    if covariance_type == "tied":
        y = X - _global_centre(centres)
        stats["s2"] = y.T @ y
    return stats


def combine_stats(parts: list[Stats]) -> Stats:
    """Add statistics elementwise, in the order given (for reproducibility)."""
    out = {key: np.array(value, dtype=np.float64, copy=True) for key, value in parts[0].items()}
    for part in parts[1:]:
        for key, value in part.items():
            out[key] += value
    return out


def estep_stats(
    X: np.ndarray, params: GMMParams, sample_weight: np.ndarray | None = None
) -> Stats:
    """E-step of one chunk: sufficient statistics and log-likelihood.

    Parameters
    ----------
    X : ndarray of shape (n, D)
        Any float dtype; the arithmetic is float64.
    params : GMMParams
    sample_weight : ndarray of shape (n,), optional
        Non-negative weight of each row (default one): every statistic and
        the log-likelihood are weighted sums.

    Returns
    -------
    Stats
        About the current means, which every chunk knows before the pass.
    """
    return estep_stats_many(X, [params], sample_weight)[0]


def estep_stats_many(
    X: np.ndarray, models: Sequence[GMMParams], sample_weight: np.ndarray | None = None
) -> list[Stats]:
    """E-steps of several models on one chunk: the chunk is read once for all.

    Each model is expanded about the centre of its own means and computed by
    the same arithmetic as :func:`estep_stats` of it alone, so models fitted
    together (``n_init``, :func:`daskgmm.fit_many`) end bitwise where each
    would alone. (Stacking the models about one common centre into shared
    matrix products was faster, but rounded each model differently from its
    own fit: 1 ulp, which the promise above does not allow.)

    Parameters
    ----------
    X : ndarray of shape (n, D)
    models : sequence of GMMParams
    sample_weight : ndarray of shape (n,), optional

    Returns
    -------
    list of Stats
        One per model, in order.
    """
    X = np.asarray(X)
    out = []
    for params in models:
        form = linear_form(params)
        if form is None:
            out.append(_estep_stats_exact(np.asarray(X, dtype=np.float64), params, sample_weight))
        else:
            out.append(_estep_stats_fused(X, [params], [form], sample_weight)[0])
    return out


def _estep_stats_exact(X: np.ndarray, params: GMMParams, sample_weight: np.ndarray | None) -> Stats:
    """The E-step by the whitened path alone (no expansion anywhere)."""
    weighted = weighted_log_prob_whitened(X, params)
    log_prob_norm = logsumexp_rows(weighted)
    with np.errstate(under="ignore", invalid="ignore"):
        resp = np.exp(weighted - log_prob_norm[:, np.newaxis])
    if sample_weight is not None:
        resp *= sample_weight[:, np.newaxis]
        log_prob_norm = log_prob_norm * sample_weight
    stats = shifted_moments(X, resp, params.means, params.covariance_type)
    stats["n"] = np.float64(X.shape[0] if sample_weight is None else sample_weight.sum())
    stats["loglik"] = np.float64(log_prob_norm.sum())
    return stats


def _estep_stats_fused(
    X: np.ndarray, models: Sequence[GMMParams], forms: Sequence[LinearForm],
    sample_weight: np.ndarray | None,
) -> list[Stats]:
    """The E-step in blocks of rows, as two matrix products per block.

    Rows are laid out as columns (features x rows) so that the feature
    products, the log-sum-exp over the components and both matrix products
    run on contiguous memory: per block, ``coef @ phi`` gives the weighted
    log-densities and ``resp @ phi^T`` all first and second moments. The
    forms share their centre and features; their coefficients are stacked,
    so several models cost one product each, and the log-sum-exp runs over
    each model's own rows of the stack.
    """
    n_rows, n_features = X.shape
    form = forms[0]
    coef = form.coef if len(forms) == 1 else np.vstack([f.coef for f in forms])
    base = np.concatenate([f.base for f in forms])
    bounds = np.cumsum([0] + [f.coef.shape[0] for f in forms])
    n_stacked, n_out = coef.shape
    tied = form.covariance_type == "tied"
    step = _block_rows(n_out)
    features = _scratch((n_out, min(step, max(n_rows, 1))), slot=0)
    log_prob = _scratch((n_stacked, features.shape[1]), slot=1)
    moments = np.zeros((n_stacked, n_out))
    nk = np.zeros(n_stacked)
    tied_s2 = np.zeros((n_features, n_features)) if tied else None
    loglik = np.zeros(len(forms))
    # (stacked row, model, component) of the components computed exactly, and
    # their moments about their own means.
    exact = [(bounds[m] + k, m, k) for m, f in enumerate(forms) for k in f.exact]
    exact_moments = {row: empty_stats(1, n_features, form.covariance_type) for row, _, _ in exact}
    for start in range(0, n_rows, step):
        block = X[start : start + step]
        phi = features[:, : block.shape[0]]
        _fill_features(block, form, phi)
        resp = np.matmul(coef, phi, out=log_prob[:, : block.shape[0]])
        resp += base[:, np.newaxis]
        for row, m, k in exact:
            resp[row] = _component_log_prob_exact(block, models[m], k)
        _whiten_where_inexact(block, phi, models, forms, bounds, resp)
        weights = None if sample_weight is None else sample_weight[start : start + step]
        for m in range(len(forms)):
            row_loglik = _normalise_columns(resp[bounds[m] : bounds[m + 1]])
            loglik[m] += row_loglik.sum() if weights is None else row_loglik @ weights
        if weights is not None:
            resp *= weights
        nk += resp.sum(axis=1)
        for row, m, k in exact:
            if not tied:
                part = shifted_moments(block, resp[row][:, np.newaxis], models[m].means[k : k + 1],
                                       form.covariance_type)
                for key in ("s1", "s2"):
                    exact_moments[row][key] += part[key]
        if tied:
            y = phi[-n_features:]
            moments[:, 1:] += resp @ y.T
            tied_s2 += (y * resp.sum(axis=0)) @ y.T
        else:
            moments += resp @ phi.T
    n = np.float64(n_rows if sample_weight is None else np.sum(sample_weight))
    out = []
    for m, (params, f) in enumerate(zip(models, forms, strict=True)):
        rows = slice(bounds[m], bounds[m + 1])
        stats = empty_stats(f.coef.shape[0], n_features, f.covariance_type)
        stats["n"] = n
        stats["nk"] = nk[rows]
        stats["loglik"] = np.float64(loglik[m])
        _moments_to_centres(stats, moments[rows], tied_s2, f, params.means)
        for k in f.exact:
            if not tied:
                stats["s1"][k] = exact_moments[bounds[m] + k]["s1"][0]
                stats["s2"][k] = exact_moments[bounds[m] + k]["s2"][0]
        out.append(stats)
    return out


def _moments_to_centres(
    stats: Stats, moments: np.ndarray, tied_s2: np.ndarray | None, form: LinearForm,
    centres: np.ndarray,
) -> None:
    """Shift moments about ``form.centre`` to each component's centre, in place.

    With y = x - c and m_k = c_k - c:  s1_k = sum r y - N_k m_k and
    s2_k = sum r y y' - m_k s1' - s1 m_k' + N_k m_k m_k' (s1 about c).
    """
    n_features = centres.shape[1]
    nk = stats["nk"]
    m = centres - form.centre
    s1 = moments[:, -n_features:]
    stats["s1"] = s1 - nk[:, np.newaxis] * m
    cov_type = form.covariance_type
    if cov_type == "full":
        rows, cols = _triu_pairs(n_features)
        s2 = np.empty((centres.shape[0], n_features, n_features))
        s2[:, rows, cols] = moments[:, : rows.size]
        s2[:, cols, rows] = moments[:, : rows.size]
        cross = np.einsum("ki,kj->kij", m, s1)
        s2 -= cross + cross.transpose(0, 2, 1)
        s2 += np.einsum("k,ki,kj->kij", nk, m, m)
        stats["s2"] = s2
    elif cov_type == "tied":
        # Already about the centre of the centres, which is form.centre.
        stats["s2"] = tied_s2
    else:
        stats["s2"] = moments[:, :n_features] - 2.0 * m * s1 + nk[:, np.newaxis] * m * m


# --------------------------------------------------------------------------
# M-step
# --------------------------------------------------------------------------


# Each estimator takes the statistics, N_k (with eps), the centres and the
# offsets d_k = mu_k - c_k = s1_k / N_k. The offsets come straight from s1:
# recomputing them as ``means - centres`` would cancel for data far from zero.


def _covariances_full(stats: Stats, nk: np.ndarray, centres: np.ndarray, offsets: np.ndarray):
    return stats["s2"] / nk[:, None, None] - np.einsum("ki,kj->kij", offsets, offsets)


def _covariances_tied(stats: Stats, nk: np.ndarray, centres: np.ndarray, offsets: np.ndarray):
    # sum_k sum_n r_nk (x - mu_k)(x - mu_k)^T = S2(c) - sum_k N_k d_k d_k^T, d_k = mu_k - c.
    d = (centres - _global_centre(centres)) + offsets
    return (stats["s2"] - np.einsum("k,ki,kj->ij", stats["nk"], d, d)) / nk.sum()


def _covariances_diag(stats: Stats, nk: np.ndarray, centres: np.ndarray, offsets: np.ndarray):
    return stats["s2"] / nk[:, None] - offsets**2


def _covariances_spherical(stats: Stats, nk: np.ndarray, centres: np.ndarray, offsets: np.ndarray):
    return _covariances_diag(stats, nk, centres, offsets).mean(axis=1)


_COVARIANCE_ESTIMATORS: dict[str, Callable[..., np.ndarray]] = {
    "full": _covariances_full,
    "tied": _covariances_tied,
    "diag": _covariances_diag,
    "spherical": _covariances_spherical,
}


def m_step(
    stats: Stats,
    centres: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    weight_normaliser: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New weights, means and covariances from reduced statistics.

    Parameters
    ----------
    stats : Stats
        Statistics of the whole data set, about ``centres``.
    centres : ndarray of shape (K, D)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reg_covar : float
        Added to the diagonal of every covariance.
    weight_normaliser : float, optional
        Divide ``N_k`` by this instead of by ``sum_k N_k``; scikit-learn's
        initialisation divides by the number of samples.

    Returns
    -------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    covariances : ndarray
        Shape by ``covariance_type``.
    """
    nk = stats["nk"] + _NK_EPS
    offsets = stats["s1"] / nk[:, None]
    means = centres + offsets
    covariances = _COVARIANCE_ESTIMATORS[covariance_type](stats, nk, centres, offsets)
    n_features = centres.shape[1]
    if covariance_type in ("full", "tied"):
        covariances = covariances + reg_covar * np.eye(n_features)
    else:
        covariances = covariances + reg_covar
    weights = nk / (nk.sum() if weight_normaliser is None else weight_normaliser)
    return weights, means, covariances
