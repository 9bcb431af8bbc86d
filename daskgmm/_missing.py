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

from ._density import logsumexp_rows
from ._params import GMMParams, _global_centre
from ._stats import Stats, combine_stats, empty_stats

_LOG_2PI = np.log(2 * np.pi)

#: Floats in one (rows, K, D) array of the missing-data kernels: 16 MiB. Larger blocks
#: share each pattern's factorisations among more rows.
_BLOCK_FLOATS = 2**21


def _block_rows(params: GMMParams) -> int:
    return max(256, _BLOCK_FLOATS // (params.n_components * params.n_features))


def covariances_of(params: GMMParams) -> np.ndarray:
    """The covariances of ``params``, from its precision Cholesky factors.

    With ``U`` the factor (``U U^T`` the precision), the covariance is
    ``U^-T U^-1``.

    Parameters
    ----------
    params : GMMParams

    Returns
    -------
    ndarray
        (K, D, D) for ``full``, (D, D) for ``tied``, (K, D) variances for
        ``diag``, (K,) for ``spherical``.
    """
    factors = params.precisions_cholesky
    if params.covariance_type in ("diag", "spherical"):
        return 1.0 / factors**2
    eye = np.eye(factors.shape[-1])
    inverse = np.linalg.solve(factors, eye)  # U^-1, stacked for full
    return np.swapaxes(inverse, -1, -2) @ inverse


def observed_columns_chunk(block: np.ndarray, params: None, start: int) -> dict[str, np.ndarray]:
    """Each feature's count of observed entries and their sum in one chunk (a pass's task).

    Infinity is refused by row, as everywhere; NaN counts as missing.
    """
    from ._block_checks import check_finite_block

    check_finite_block(block, start, allow_nan=True)
    observed = ~np.isnan(block)
    return {"count": observed.sum(axis=0).astype(np.float64),
            "sum": np.where(observed, block, 0.0).sum(axis=0, dtype=np.float64),
            "rows": np.float64(observed.any(axis=1).sum())}


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
class _Completion:
    """One component's view of a block's rows: log-density and expected completion.

    ``offsets`` are ``E[x | x_o, k] - mu_k`` (observed entries: ``x_o - mu_o``),
    ``cond_cov`` the conditional covariance added to the second moments, per
    row group: a list of ``(rows, missing_mask, matrix)`` (full, tied) or a
    (rows, D) array of conditional variances (diag, spherical).
    """

    log_prob: np.ndarray  # (n, K), without the log weights
    offsets: np.ndarray  # (n, K, D)
    cond_cov: list | np.ndarray


def _complete_general(X: np.ndarray, params: GMMParams, covariances: np.ndarray,
                      need_offsets: bool) -> _Completion:
    """Full and tied covariances: per pattern, one batch of factorisations for all components."""
    n, n_features = X.shape
    k_count = params.n_components
    stacked = covariances[np.newaxis] if params.covariance_type == "tied" else covariances
    log_prob = np.zeros((n, k_count))
    offsets = np.zeros((n, k_count, n_features)) if need_offsets else np.zeros((0, k_count, 0))
    cond_cov: list = []
    for rows, observed in _patterns(np.isnan(X)):
        o = np.flatnonzero(observed)
        m = np.flatnonzero(~observed)
        if o.size == 0:
            continue  # nothing observed: density 1 (log 0), completed by the means
        chol = np.linalg.cholesky(stacked[:, o][:, :, o])  # (K or 1, |o|, |o|)
        # The inverse factors are |o| x |o|: one product then whitens all the rows.
        inverse = np.linalg.inv(chol)
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        diff = X[np.ix_(rows, o)][np.newaxis] - params.means[:, np.newaxis, o]  # (K, rows, |o|)
        z = diff @ np.swapaxes(inverse, 1, 2)
        log_prob[rows] = -0.5 * (o.size * _LOG_2PI + log_det[:, np.newaxis]
                                 + np.einsum("krj,krj->kr", z, z)).T
        if m.size:
            w = inverse @ stacked[:, o][:, :, m]  # L^-1 S_om, (K or 1, |o|, |m|)
            cond = stacked[:, m][:, :, m] - np.swapaxes(w, 1, 2) @ w
            cond_cov.append((rows, m, cond))
        if need_offsets:
            for k in range(k_count):
                component = offsets[:, k]  # a view: (n, D)
                component[np.ix_(rows, o)] = diff[k]
                if m.size:
                    component[np.ix_(rows, m)] = z[k] @ w[0 if len(w) == 1 else k]
    return _Completion(log_prob, offsets, cond_cov)


def _complete_diagonal(X: np.ndarray, params: GMMParams, variances: np.ndarray,
                       need_offsets: bool) -> _Completion:
    """Diag and spherical covariances: the missing entries are independent of the observed."""
    n_features = X.shape[1]
    var = variances if params.covariance_type == "diag" else np.repeat(
        variances[:, np.newaxis], n_features, axis=1)  # (K, D)
    observed = ~np.isnan(X)
    filled = np.where(observed, X, 0.0)
    diff = (filled[:, np.newaxis, :] - params.means[np.newaxis]) * observed[:, np.newaxis, :]
    log_prob = -0.5 * (observed @ (_LOG_2PI + np.log(var)).T
                       + np.einsum("nkd,nkd->nk", diff, diff / var[np.newaxis]))
    cond_var = (~observed).astype(np.float64)  # times var_k, per component, in the statistics
    return _Completion(log_prob, diff if need_offsets else np.zeros((0,)), cond_var)


def _completion(X: np.ndarray, params: GMMParams, need_offsets: bool) -> _Completion:
    covariances = covariances_of(params)
    if params.covariance_type in ("diag", "spherical"):
        return _complete_diagonal(X, params, covariances, need_offsets)
    return _complete_general(X, params, covariances, need_offsets)


def _weighted_log_prob(X: np.ndarray, params: GMMParams, need_offsets: bool,
                       ) -> tuple[np.ndarray, _Completion]:
    completion = _completion(X, params, need_offsets)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    return completion.log_prob + log_weights, completion


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
    log_prob_norm = np.empty(X.shape[0])
    log_resp = np.empty((X.shape[0], params.n_components))
    step = _block_rows(params)
    for start in range(0, X.shape[0], step):
        rows = slice(start, start + step)
        weighted, _ = _weighted_log_prob(X[rows], params, need_offsets=False)
        log_prob_norm[rows] = logsumexp_rows(weighted)
        with np.errstate(invalid="ignore"):
            log_resp[rows] = weighted - log_prob_norm[rows, np.newaxis]
    # Nothing observed: a density of exactly 1, not the rounding of log(sum of the weights).
    log_prob_norm[np.isnan(X).all(axis=1)] = 0.0
    return log_prob_norm, log_resp


def impute_block(X: np.ndarray, params: GMMParams, start: int = 0) -> np.ndarray:
    """``X`` with each missing entry replaced by its conditional mean under the mixture.

    ``E[x_m | x_o] = sum_k p(k | x_o) E[x_m | x_o, k]``; observed entries are
    kept as they are. A row with nothing observed gets the mixture's mean.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    params : GMMParams
    start : int, default=0
        The block's first row in the data (unused: every row has a result).

    Returns
    -------
    ndarray of shape (n, D), float64
    """
    X = np.asarray(X, dtype=np.float64)
    out = X.copy()
    incomplete = np.flatnonzero(rows_with_missing(X))
    step = _block_rows(params)
    for start in range(0, incomplete.size, step):
        rows = incomplete[start : start + step]
        block = X[rows]
        weighted, completion = _weighted_log_prob(block, params, need_offsets=True)
        resp = np.exp(weighted - logsumexp_rows(weighted)[:, np.newaxis])
        expected = np.einsum("nk,nkd->nd", resp, completion.offsets + params.means[np.newaxis])
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
    parts = [empty_stats(params.n_components, X.shape[1], params.covariance_type)]
    step = _block_rows(params)
    for start in range(0, X.shape[0], step):
        rows = slice(start, start + step)
        weights = None if sample_weight is None else sample_weight[rows]
        parts.append(_block_stats(X[rows], params, weights))
    stats = combine_stats(parts)
    stats["n"] = np.float64(X.shape[0] if sample_weight is None else sample_weight.sum())
    return stats


def _block_stats(X: np.ndarray, params: GMMParams, weights: np.ndarray | None) -> Stats:
    cov_type = params.covariance_type
    weighted, completion = _weighted_log_prob(X, params, need_offsets=True)
    row_loglik = logsumexp_rows(weighted)
    with np.errstate(under="ignore"):
        resp = np.exp(weighted - row_loglik[:, np.newaxis])
    if weights is not None:
        resp *= weights[:, np.newaxis]
        row_loglik = row_loglik * weights
    stats = empty_stats(params.n_components, X.shape[1], cov_type)
    stats["loglik"] = np.float64(row_loglik.sum())
    stats["nk"] = resp.sum(axis=0)
    y = completion.offsets  # (n, K, D) about each component's mean
    stats["s1"] = np.einsum("nk,nkd->kd", resp, y)
    if cov_type in ("diag", "spherical"):
        variances = covariances_of(params)
        var = variances if cov_type == "diag" else variances[:, np.newaxis]
        cond = np.asarray(completion.cond_cov)  # (n, D): 1 where missing
        stats["s2"] = np.einsum("nk,nkd->kd", resp, y * y) + (resp.T @ cond) * var
        return stats
    if cov_type == "full":
        for k in range(params.n_components):
            stats["s2"][k] = (y[:, k] * resp[:, k : k + 1]).T @ y[:, k]
        for rows, m, cond in completion.cond_cov:
            stats["s2"][:, m[:, np.newaxis], m] += resp[rows].sum(axis=0)[:, None, None] * cond
        return stats
    # tied: one matrix about the centre of the means, all components
    centre_offsets = params.means - _global_centre(params.means)
    for k in range(params.n_components):
        z = y[:, k] + centre_offsets[k]
        stats["s2"] += (z * resp[:, k : k + 1]).T @ z
    for rows, m, cond in completion.cond_cov:
        stats["s2"][m[:, np.newaxis], m] += resp[rows].sum() * cond[0]
    return stats
