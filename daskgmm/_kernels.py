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
matrix; log-densities are triangular products of *centred* rows; first and
second moments are accumulated in float64 about centres known before the pass
(shifted statistics), so that no ``E[xx^T] - mu mu^T`` cancellation occurs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.linalg import solve_triangular

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# scikit-learn adds this to every N_k so that an empty component does not
# divide by zero; we do the same so that fits agree.
_NK_EPS = 10 * np.finfo(np.float64).eps
_LOG_2PI = np.log(2 * np.pi)


class DegenerateComponentError(ValueError):
    """A component's covariance is not positive definite.

    A subclass of ``ValueError`` (scikit-learn raises ``ValueError`` in the same
    situation) whose message names the component and the remedy.
    """


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
    return (
        f"Fitting the mixture model failed: {which} ({covariance_type} covariance) "
        "has an ill-defined empirical covariance that is not positive definite "
        "(for instance caused by singleton or collapsed samples). Increase "
        "reg_covar, decrease n_components, or scale the input data."
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
    """One centre for the tied covariance's shared statistics."""
    return means.mean(axis=0)


def _squared_mahalanobis(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """Squared Mahalanobis distance of each row to each component, (n, K)."""
    means, prec_chol, cov_type = params.means, params.precisions_cholesky, params.covariance_type
    out = np.empty((X.shape[0], means.shape[0]))
    if cov_type == "full":
        for k, (mu, u) in enumerate(zip(means, prec_chol)):
            z = (X - mu) @ u
            out[:, k] = np.einsum("ij,ij->i", z, z)
    elif cov_type == "tied":
        # One matrix product for all components: (x - mu_k) U = (x - c) U - (mu_k - c) U,
        # centred on c so that the subtraction is of numbers of the data's spread.
        centre = _global_centre(means)
        z = (X - centre) @ prec_chol
        shifts = (means - centre) @ prec_chol
        for k in range(means.shape[0]):
            zk = z - shifts[k]
            out[:, k] = np.einsum("ij,ij->i", zk, zk)
    else:
        # diag / spherical: one pair of matrix products for all components,
        # expanded about the centre c of the means (not about zero):
        # sum_d p_kd^2 (y_d - m_kd)^2 = y^2 . p_k^2 - 2 y . (m_k p_k^2) + m_k^2 . p_k^2
        # with y = x - c, m_k = mu_k - c. The terms are of the size of the
        # distance to c in standard deviations, so the rounding error stays
        # near eps * (that distance)^2, whatever the offset of the data.
        centre = _global_centre(means)
        y = X - centre
        m = means - centre
        p2 = _diagonal_precisions(prec_chol, cov_type, X.shape[1])
        out[:] = (y * y) @ p2.T
        out -= 2.0 * (y @ (m * p2).T)
        out += np.einsum("kd,kd->k", m * m, p2)
    return out


def _diagonal_precisions(prec_chol: np.ndarray, cov_type: str, n_features: int) -> np.ndarray:
    """Per-feature precisions (K, D) of diag or spherical components."""
    if cov_type == "diag":
        return prec_chol**2
    return np.repeat((prec_chol**2)[:, None], n_features, axis=1)


def estimate_log_gaussian_prob(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """Log-density of each row under each component.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    params : GMMParams

    Returns
    -------
    log_prob : ndarray of shape (n, K)
    """
    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    log_det = log_det_cholesky(params.precisions_cholesky, params.covariance_type, n_features)
    # -0.5 * log det(Sigma) becomes + log det(U).
    return -0.5 * (n_features * _LOG_2PI + _squared_mahalanobis(X, params)) + log_det


def estimate_weighted_log_prob(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """``log p(x | k) + log w_k`` for each row and component, (n, K)."""
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    return estimate_log_gaussian_prob(X, params) + log_weights


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """``log(sum(exp(a), axis=1))`` without overflow, (n, K) -> (n,).

    Plain numpy: about twice as fast as ``scipy.special.logsumexp`` here,
    where it is a large part of the E-step.
    """
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


def estep_stats(X: np.ndarray, params: GMMParams) -> Stats:
    """E-step of one chunk: sufficient statistics and log-likelihood.

    The centres of the shifted moments are the current means, which every
    chunk knows before the pass.
    """
    X = np.asarray(X, dtype=np.float64)  # once: float32 chunks are widened here, not per step
    log_prob_norm, log_resp = estimate_log_prob_resp(X, params)
    stats = shifted_moments(X, np.exp(log_resp), params.means, params.covariance_type)
    stats["loglik"] = np.float64(log_prob_norm.sum())
    return stats


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
