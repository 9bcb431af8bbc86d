"""Gaussian mixtures on rows with missing entries (NaN), missing at random: pure numpy.

Exact EM for incomplete data (Ghahramani & Jordan, 1994). A row whose
features ``o`` are observed and ``m`` missing contributes, under component
``k`` (mean ``mu``, covariance ``S``):

* its marginal density ``N(x_o | mu_o, S_oo)``, which gives the row's
  log-likelihood and responsibilities;
* to the sufficient statistics, its expected completion: the missing entries
  are replaced by their conditional mean ``mu_m + S_mo S_oo^-1 (x_o - mu_o)``,
  and the second moments gain the conditional covariance
  ``S_mm - S_mo S_oo^-1 S_om`` in the missing block.

With ``L`` the Cholesky factor of ``S_oo``, ``z = L^-1 (x_o - mu_o)`` and
``W = L^-1 S_om``, the conditional offset of the missing entries is
``z^T W`` and the conditional covariance ``S_mm - W^T W``: one triangular
factorisation per missingness pattern and component serves the density,
the completion and the covariance term. Rows are grouped by pattern within
a block, so a pattern costs one set of matrix products for all its rows.
``diag`` and ``spherical`` covariances make the missing entries independent
of the observed ones given the component: their conditional mean is
``mu_m`` and variance ``S_mm``, computed with masks, without patterns.

The statistics are the same :class:`daskgmm._stats.Stats`, moments about
the current means, so the M-step is unchanged. A row with nothing observed
has a marginal density of 1 under every model: it carries no information,
and is left out of the statistics (it is not counted in ``n``); its
log-likelihood is 0, its responsibilities the mixture weights.

Like every module whose functions run as tasks, this one imports numpy only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ._density import _LOG_2PI, logsumexp_rows
from ._params import GMMParams, _global_centre, covariances_from_cholesky
from ._stats import Stats, combine_stats, empty_stats
from .exceptions import NonFiniteError

#: Floats in one (rows, K, D) array of the missing-data kernels: 16 MiB. Larger blocks
#: share each pattern's factorisations among more rows.
_BLOCK_FLOATS = 2**21


def _rows_per_block(params: GMMParams) -> int:
    return max(256, _BLOCK_FLOATS // (params.n_components * params.n_features))


def observed_columns_chunk(block: np.ndarray, params: None, start: int) -> dict[str, np.ndarray]:
    """Each feature's count of observed entries and their sum in one chunk (a pass's task).

    Infinity is refused by row, as everywhere; NaN counts as missing.
    """
    from ._block_checks import check_finite_block

    check_finite_block(block, start, allow_nan=True)
    observed = ~np.isnan(block)
    return {"count": observed.sum(axis=0).astype(np.float64),
            "sum": np.where(observed, block, 0.0).sum(axis=0, dtype=np.float64)}


def fill_block(block: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``block`` with each NaN replaced by its column's entry of ``values``."""
    return np.where(np.isnan(block), values.astype(block.dtype), block)


def rows_with_missing(X: np.ndarray) -> np.ndarray:
    """A boolean mask of the rows of ``X`` with at least one NaN."""
    return np.isnan(X).any(axis=1)


def _patterns(missing: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rows, observed)`` for each missingness pattern of a block: row indices, feature mask."""
    n_features = missing.shape[1]
    if n_features <= 62:  # each pattern as the bits of one integer: a fast unique
        codes = missing @ (np.int64(1) << np.arange(n_features, dtype=np.int64))
        _, first, which = np.unique(codes, return_index=True, return_inverse=True)
        patterns = missing[first]
    else:
        patterns, which = np.unique(missing, axis=0, return_inverse=True)
    which = which.ravel()
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(len(patterns) + 1))
    for p, pattern in enumerate(patterns):
        yield order[bounds[p] : bounds[p + 1]], ~pattern


@dataclass
class _Pattern:
    """The rows of one missingness pattern, under every component (full and tied covariances).

    ``log_density`` is ``log N(x_o | mu_o, S_oo)`` (K, rows); ``completed``,
    when asked for, ``E[x | x_o, k] - mu_k`` (K, rows, D), whose observed
    entries are ``x_o - mu_o``; ``cond`` the conditional covariance of the
    ``missing`` features, ``S_mm - S_mo S_oo^-1 S_om`` (K, or 1 if tied).
    """

    rows: np.ndarray
    missing: np.ndarray
    log_density: np.ndarray
    completed: np.ndarray | None
    cond: np.ndarray | None


def _general_patterns(X: np.ndarray, params: GMMParams, covariances: np.ndarray,
                      complete: bool) -> Iterator[_Pattern]:
    """Each pattern's terms, from one batch of factorisations for all components."""
    n_components, n_features = params.means.shape
    stacked = covariances[np.newaxis] if params.covariance_type == "tied" else covariances
    for rows, observed in _patterns(np.isnan(X)):
        o = np.flatnonzero(observed)
        m = np.flatnonzero(~observed)
        if o.size == 0:  # nothing observed: density 1, completed by the means
            yield _Pattern(rows, m, np.zeros((n_components, rows.size)),
                           np.zeros((n_components, rows.size, n_features)) if complete else None,
                           stacked if complete else None)
            continue
        chol = np.linalg.cholesky(stacked[:, o][:, :, o])  # (K or 1, |o|, |o|)
        # The inverse of a triangular factor is accurate, and it is only |o| x |o|: one
        # matrix product then whitens all the rows (a solve per pattern was 35% slower).
        inverse = np.linalg.inv(chol)
        diff = X[np.ix_(rows, o)][np.newaxis] - params.means[:, np.newaxis, o]  # (K, r, |o|)
        z = inverse @ np.swapaxes(diff, 1, 2)  # L^-1 (x_o - mu_o), (K, |o|, r)
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        log_density = -0.5 * (o.size * _LOG_2PI + log_det[:, np.newaxis]
                              + np.einsum("kjr,kjr->kr", z, z))
        completed = cond = None
        if complete:
            completed = np.empty((n_components, rows.size, n_features))
            completed[:, :, o] = diff
            if m.size:
                w = inverse @ stacked[:, o][:, :, m]  # L^-1 S_om, (K or 1, |o|, |m|)
                completed[:, :, m] = np.swapaxes(z, 1, 2) @ w
                cond = stacked[:, m][:, :, m] - np.swapaxes(w, 1, 2) @ w
        yield _Pattern(rows, m, log_density, completed, cond)


def _diagonal_terms(X: np.ndarray, params: GMMParams, variances: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diag and spherical covariances, without patterns: the missing entries are independent
    of the observed ones given the component.

    Returns ``log N(x_o | mu_o, S_oo)`` (n, K), the offsets ``E[x | x_o, k] - mu_k``
    (n, K, D; zero where missing) and the (K, D) variances.
    """
    n_features = X.shape[1]
    var = variances if params.covariance_type == "diag" else np.repeat(
        variances[:, np.newaxis], n_features, axis=1)
    observed = ~np.isnan(X)
    offsets = (np.where(observed, X, 0.0)[:, np.newaxis, :] - params.means[np.newaxis])
    offsets *= observed[:, np.newaxis, :]
    log_density = -0.5 * (observed @ (_LOG_2PI + np.log(var)).T
                          + np.einsum("nkd,kd->nk", offsets * offsets, 1.0 / var))
    return log_density, offsets, var


def _log_weights(params: GMMParams) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(params.weights)


def log_prob_resp_missing(X: np.ndarray, params: GMMParams) -> tuple[np.ndarray, np.ndarray]:
    """Each row's marginal log-likelihood and log-responsibilities, for rows with NaN.

    Parameters
    ----------
    X : ndarray of shape (n, D)
        Rows with missing entries as NaN (complete rows are accepted too).
    params : GMMParams

    Returns
    -------
    log_prob_norm : ndarray of shape (n,)
        ``log p(x_o)``; 0 for a row with nothing observed.
    log_resp : ndarray of shape (n, K)
    """
    X = np.asarray(X, dtype=np.float64)
    covariances = covariances_from_cholesky(params.precisions_cholesky, params.covariance_type)
    weighted = np.empty((X.shape[0], params.n_components))
    step = _rows_per_block(params)
    for first in range(0, X.shape[0], step):
        block = X[first : first + step]
        if params.covariance_type in ("diag", "spherical"):
            weighted[first : first + step] = _diagonal_terms(block, params, covariances)[0]
        else:
            for pattern in _general_patterns(block, params, covariances, complete=False):
                weighted[first + pattern.rows] = pattern.log_density.T
    weighted += _log_weights(params)
    log_prob_norm = logsumexp_rows(weighted)
    with np.errstate(invalid="ignore"):
        log_resp = weighted - log_prob_norm[:, np.newaxis]
    # Nothing observed: a density of exactly 1, not the rounding of log(sum of the weights).
    log_prob_norm[np.isnan(X).all(axis=1)] = 0.0
    return log_prob_norm, log_resp


def _responsibilities(weighted: np.ndarray, start: int, rows: np.ndarray) -> np.ndarray:
    """Rows' responsibilities from weighted log-densities (rows, K); refuses an undefined row."""
    log_prob_norm = logsumexp_rows(weighted)
    if not np.isfinite(log_prob_norm).all():
        bad = int(rows[np.flatnonzero(~np.isfinite(log_prob_norm))[0]])
        raise NonFiniteError(
            f"The model gives row {start + bad} a log-likelihood of "
            f"{log_prob_norm[~np.isfinite(log_prob_norm)][0]} over its observed features: the "
            "values overflow float64 under the model's precisions. Scale the data, or refit.")
    with np.errstate(under="ignore"):
        return np.exp(weighted - log_prob_norm[:, np.newaxis])


def impute_block(X: np.ndarray, params: GMMParams, start: int = 0) -> np.ndarray:
    """``X`` with each missing entry replaced by its conditional mean under the mixture.

    ``E[x_m | x_o] = sum_k p(k | x_o) E[x_m | x_o, k]``; observed entries are
    kept as they are. A row with nothing observed gets the mixture's mean.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    params : GMMParams
    start : int, default=0
        The block's first row in the data, for messages.

    Returns
    -------
    ndarray of shape (n, D), float64

    Raises
    ------
    NonFiniteError
        A row's log-likelihood overflows: its conditional means are undefined.
    """
    X = np.asarray(X, dtype=np.float64)
    out = X.copy()
    covariances = covariances_from_cholesky(params.precisions_cholesky, params.covariance_type)
    log_weights = _log_weights(params)
    incomplete = np.flatnonzero(rows_with_missing(X))
    step = _rows_per_block(params)
    for first in range(0, incomplete.size, step):
        rows = incomplete[first : first + step]
        block = X[rows]
        if params.covariance_type in ("diag", "spherical"):
            log_density, offsets, _ = _diagonal_terms(block, params, covariances)
            resp = _responsibilities(log_density + log_weights, start, rows)
            expected = np.einsum("nk,nkd->nd", resp, offsets + params.means[np.newaxis])
        else:
            expected = np.empty_like(block)
            for pattern in _general_patterns(block, params, covariances, complete=True):
                assert pattern.completed is not None
                resp = _responsibilities(pattern.log_density.T + log_weights, start,
                                         rows[pattern.rows])
                expected[pattern.rows] = np.einsum(
                    "rk,krd->rd", resp, pattern.completed + params.means[:, np.newaxis])
        out[rows] = np.where(np.isnan(block), expected, block)
    return out


def estep_stats_missing(X: np.ndarray, params: GMMParams,
                        sample_weight: np.ndarray | None = None) -> Stats:
    """E-step statistics of rows with missing entries, about the current means.

    Parameters
    ----------
    X : ndarray of shape (n, D)
        Rows with NaN entries; rows with nothing observed are left out.
    params : GMMParams
    sample_weight : ndarray of shape (n,), optional

    Returns
    -------
    Stats
        As :func:`daskgmm._stats.estep_stats` returns for complete rows: the
        moments of the rows' expected completions, with the conditional
        covariances in the second moments.
    """
    X = np.asarray(X, dtype=np.float64)
    keep = ~np.isnan(X).all(axis=1)
    if not keep.all():
        X = X[keep]
        sample_weight = None if sample_weight is None else sample_weight[keep]
    covariances = covariances_from_cholesky(params.precisions_cholesky, params.covariance_type)
    block_stats = _diagonal_stats if params.covariance_type in ("diag", "spherical") \
        else _general_stats
    parts = [empty_stats(params.n_components, X.shape[1], params.covariance_type)]
    step = _rows_per_block(params)
    for first in range(0, X.shape[0], step):
        weights = None if sample_weight is None else sample_weight[first : first + step]
        parts.append(block_stats(X[first : first + step], params, covariances, weights))
    stats = combine_stats(parts)
    stats["n"] = np.float64(X.shape[0] if sample_weight is None else sample_weight.sum())
    return stats


def _diagonal_stats(X: np.ndarray, params: GMMParams, variances: np.ndarray,
                    weights: np.ndarray | None) -> Stats:
    log_density, offsets, var = _diagonal_terms(X, params, variances)
    weighted = log_density + _log_weights(params)
    row_loglik = logsumexp_rows(weighted)
    with np.errstate(under="ignore"):
        resp = np.exp(weighted - row_loglik[:, np.newaxis])
    if weights is not None:
        resp *= weights[:, np.newaxis]
        row_loglik = row_loglik * weights
    stats = empty_stats(params.n_components, X.shape[1], params.covariance_type)
    stats["loglik"] = np.float64(row_loglik.sum())
    stats["nk"] = resp.sum(axis=0)
    stats["s1"] = np.einsum("nk,nkd->kd", resp, offsets)
    # A missing entry adds its conditional variance, the component's variance.
    stats["s2"] = (np.einsum("nk,nkd->kd", resp, offsets * offsets)
                   + (resp.T @ np.isnan(X)) * var)
    return stats


def _general_stats(X: np.ndarray, params: GMMParams, covariances: np.ndarray,
                   weights: np.ndarray | None) -> Stats:
    """Full and tied statistics, pattern by pattern: each pattern's rows are completed,
    weighted and accumulated at once, so no (rows, K, D) array outlives its pattern."""
    tied = params.covariance_type == "tied"
    log_weights = _log_weights(params)[:, np.newaxis]
    centre_offsets = (params.means - _global_centre(params.means))[:, np.newaxis]
    stats = empty_stats(params.n_components, X.shape[1], params.covariance_type)
    loglik = 0.0
    for pattern in _general_patterns(X, params, covariances, complete=True):
        rows, m, completed = pattern.rows, pattern.missing, pattern.completed
        assert completed is not None
        weighted = pattern.log_density + log_weights  # (K, r)
        row_loglik = logsumexp_rows(weighted.T)
        with np.errstate(under="ignore"):
            resp = np.exp(weighted - row_loglik)
        if weights is not None:
            resp *= weights[rows]
            row_loglik = row_loglik * weights[rows]
        loglik += row_loglik.sum()
        stats["nk"] += resp.sum(axis=1)
        stats["s1"] += (resp[:, np.newaxis, :] @ completed)[:, 0]
        if tied:
            about_centre = completed + centre_offsets
            stats["s2"] += (np.swapaxes(about_centre * resp[:, :, np.newaxis], 1, 2)
                            @ about_centre).sum(axis=0)
            if pattern.cond is not None:
                stats["s2"][m[:, np.newaxis], m] += resp.sum() * pattern.cond[0]
        else:
            stats["s2"] += np.swapaxes(completed * resp[:, :, np.newaxis], 1, 2) @ completed
            if pattern.cond is not None:
                stats["s2"][:, m[:, np.newaxis], m] += resp.sum(axis=1)[:, None, None] * pattern.cond
    stats["loglik"] = np.float64(loglik)
    return stats
