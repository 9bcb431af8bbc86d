"""Sufficient statistics of Gaussian-mixture EM: pure numpy, no dask.

A chunk's statistics (:class:`Stats`) add up: the whole data set's are the
sum of its chunks', in chunk order (:func:`combine_stats`). They accumulate
in float64 whatever the input dtype, and the moments are taken about
per-component centres that every chunk knows before the pass (the current
means): ``s1_k = sum_n r_nk (x_n - c_k)``, ``s2_k = sum_n r_nk (x_n - c_k)(x_n - c_k)^T``,
so no ``E[xx^T] - mu mu^T`` cancellation occurs however far the data sit
from the origin. :func:`move_moments` moves moments exactly from one set of
centres to another; the fused E-step uses it to bring its moments, taken
about one centre for all components, to each component's mean.

The E-step of one chunk (:func:`estep_stats`) takes the fused path of
:mod:`daskgmm._density` in blocks of rows, two matrix products per block,
or the exact (whitened) path where expanding would lose precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, TypeVar, cast

import numpy as np

from ._density import (
    LinearForm,
    _block_log_prob,
    _block_rows,
    _scratch,
    _triu_pairs,
    linear_form,
    log_prob_resp,
    logsumexp_rows,
    row_blocks,
    weighted_log_prob_whitened,
)
from ._params import GMMParams, _global_centre

Scalar = np.float64 | np.ndarray
"""A float64 scalar, or a 0-d float64 array once statistics are combined."""


class Stats(TypedDict):
    """Additive sufficient statistics of one chunk (or of many, once combined).

    Shapes by covariance type (K components, D features) are those of
    :mod:`daskgmm._params`.
    """

    n: Scalar
    """The number of rows (the sum of their weights, if weighted)."""
    nk: np.ndarray
    """(K,): each component's responsibilities summed over the rows."""
    s1: np.ndarray
    """(K, D): first moments about the pass's centres, ``sum_n r_nk (x_n - c_k)``."""
    s2: np.ndarray
    """Second moments about the centres: (K, D, D) for ``full``; their
    diagonals (K, D) for ``diag`` and ``spherical``; for ``tied`` one (D, D)
    matrix ``sum_n (sum_k r_nk) (x_n - c)(x_n - c)^T`` about the mean ``c``
    of the centres."""
    loglik: Scalar
    """The sum of the rows' (weighted) log-likelihoods."""


def empty_stats(n_components: int, n_features: int, covariance_type: str) -> Stats:
    """All-zero statistics, the identity of :func:`combine_stats`.

    Parameters
    ----------
    n_components, n_features : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    Stats
    """
    s2_shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components, n_features),
    }[covariance_type]
    return Stats(n=np.float64(0.0), nk=np.zeros(n_components),
                 s1=np.zeros((n_components, n_features)), s2=np.zeros(s2_shape),
                 loglik=np.float64(0.0))


def move_moments(
    nk: np.ndarray, s1: np.ndarray, s2: np.ndarray, old_centres: np.ndarray,
    new_centres: np.ndarray, covariance_type: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The same moments about ``new_centres`` instead of ``old_centres``.

    Exact algebra, no pass over the data. With ``m_k = new_k - old_k`` and
    ``s1``, ``s2`` about the old centres:

    * ``s1_k' = s1_k - N_k m_k``;
    * ``s2_k' = s2_k - (m_k s1_k^T + s1_k m_k^T) + N_k m_k m_k^T`` (full), the
      diagonal of that, ``s2_k - 2 m_k s1_k + N_k m_k^2``, for diag and spherical;
    * a tied ``s2`` is about the centre of the centres, so it moves by the
      difference ``m`` of those, with the total first moment about the old
      centre of the centres, ``S1 = sum_k (s1_k + N_k (old_k - centre(old)))``,
      in place of ``s1``: ``s2' = s2 - m S1^T - S1 m^T + (sum_k N_k) m m^T``.

    Parameters
    ----------
    nk : ndarray of shape (K,)
    s1 : ndarray of shape (K, D)
        About ``old_centres``.
    s2 : ndarray
        About ``old_centres``, shape by ``covariance_type`` (see :class:`Stats`).
    old_centres : ndarray of shape (K, D), or (D,)
        The centres the moments are about; one point (D,) is the centre of
        every component, and then also the point a tied ``s2`` is about.
    new_centres : ndarray of shape (K, D)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    s1, s2 : ndarray
        About ``new_centres``, shapes as given.
    """
    m = new_centres - old_centres
    moved_s1 = s1 - nk[:, np.newaxis] * m
    if covariance_type == "full":
        cross = np.einsum("ki,kj->kij", m, s1)
        moved_s2 = s2 - (cross + cross.transpose(0, 2, 1)) + np.einsum("k,ki,kj->kij", nk, m, m)
    elif covariance_type == "tied":
        old_centre = old_centres if old_centres.ndim == 1 else _global_centre(old_centres)
        m_centre = _global_centre(new_centres) - old_centre
        if not m_centre.any():
            # Not moved: s2 stays as it is, also where S1 is not finite (0 * inf).
            return moved_s1, s2
        total = s1.sum(axis=0) + nk @ (old_centres - old_centre)
        moved_s2 = (s2 - np.outer(m_centre, total) - np.outer(total, m_centre)
                    + nk.sum() * np.outer(m_centre, m_centre))
    else:
        moved_s2 = s2 - 2.0 * m * s1 + nk[:, np.newaxis] * m * m
    return moved_s1, moved_s2


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
        # Two matrix products about the centre of the centres, moved to each c_k.
        centre = _global_centre(centres)
        y = X - centre
        stats["s1"], stats["s2"] = move_moments(stats["nk"], resp.T @ y, resp.T @ (y * y),
                                                centre, centres, covariance_type)
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
    X: np.ndarray, labels: np.ndarray, centres: np.ndarray, covariance_type: str,
    weights: np.ndarray | None = None,
) -> Stats:
    """:func:`shifted_moments` for one-hot responsibilities given as labels.

    Costs one pass over the rows whatever K is (each row belongs to one
    component), which makes it the cheap kernel of k-means passes.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    labels : ndarray of shape (n,)
        The component of each row.
    centres : ndarray of shape (K, D)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weights : ndarray of shape (n,), optional
        Each row's weight (default one).

    Returns
    -------
    Stats
    """
    X = np.asarray(X, dtype=np.float64)
    n_components, n_features = centres.shape
    stats = empty_stats(n_components, n_features, covariance_type)
    if weights is None:
        stats["n"] = np.float64(X.shape[0])
        stats["nk"] = np.bincount(labels, minlength=n_components).astype(np.float64)
    else:
        stats["n"] = np.float64(weights.sum())
        stats["nk"] = np.bincount(labels, weights, minlength=n_components)
    for k in range(n_components):
        in_k = labels == k
        y = X[in_k] - centres[k]
        wy = y if weights is None else y * weights[in_k, None]
        stats["s1"][k] = wy.sum(axis=0)
        if covariance_type == "full":
            stats["s2"][k] = wy.T @ y
        elif covariance_type in ("diag", "spherical"):
            stats["s2"][k] = np.einsum("ij,ij->j", wy, y)
    if covariance_type == "tied":
        y = X - _global_centre(centres)
        stats["s2"] = (y if weights is None else y * weights[:, None]).T @ y
    return stats


_Additive = TypeVar("_Additive", bound=Mapping[str, Any])


def combine_stats(parts: Sequence[_Additive]) -> _Additive:
    """Add statistics elementwise, in the order given (for reproducibility).

    Parameters
    ----------
    parts : sequence of Stats, or of any dicts of arrays with the same keys
        (the default reduction of :func:`daskgmm._passes.run_pass`).

    Returns
    -------
    The sum, of the type of the parts; float64 arrays.
    """
    out = {key: np.array(value, dtype=np.float64, copy=True) for key, value in parts[0].items()}
    for part in parts[1:]:
        for key, value in part.items():
            out[key] += value
    return cast(_Additive, out)


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
            out.append(_estep_stats_fused(X, params, form, sample_weight))
    return out


def _estep_stats_exact(X: np.ndarray, params: GMMParams, sample_weight: np.ndarray | None) -> Stats:
    """The E-step by the whitened path alone (no expansion anywhere), in row blocks.

    The (rows, K) log-densities and responsibilities exist one block at a
    time, so the task's memory does not grow with rows x K.
    """
    parts = []
    for rows in row_blocks(X.shape[0], 3 * params.n_components + X.shape[1]):
        block = X[rows]
        log_prob_norm, log_resp = log_prob_resp(weighted_log_prob_whitened(block, params))
        with np.errstate(under="ignore", invalid="ignore"):
            resp = np.exp(log_resp, out=log_resp)
        if sample_weight is not None:
            weights = sample_weight[rows]
            resp *= weights[:, np.newaxis]
            log_prob_norm = log_prob_norm * weights
        stats = shifted_moments(block, resp, params.means, params.covariance_type)
        stats["loglik"] = np.float64(log_prob_norm.sum())
        parts.append(stats)
    if not parts:
        parts.append(empty_stats(params.n_components, X.shape[1], params.covariance_type))
    stats = combine_stats(parts)
    stats["n"] = np.float64(X.shape[0] if sample_weight is None else sample_weight.sum())
    return stats


def _estep_stats_fused(X: np.ndarray, params: GMMParams, form: LinearForm,
                       sample_weight: np.ndarray | None) -> Stats:
    """The E-step in blocks of rows, as two matrix products per block.

    Rows are laid out as columns (features x rows) so that the feature
    products, the log-sum-exp over the components and both matrix products
    run on contiguous memory: per block, ``coef @ phi`` gives the weighted
    log-densities and ``resp @ phi^T`` all first and second moments about
    ``form.centre``, which are moved to the means at the end. Components in
    ``form.exact`` have their log-densities and moments computed about their
    own means instead.
    """
    n_rows, n_features = X.shape
    cov_type = form.covariance_type
    tied = cov_type == "tied"
    n_components, n_out = form.coef.shape
    step = _block_rows(n_out)
    features = _scratch((n_out, min(step, max(n_rows, 1))), slot=0)
    log_prob = _scratch((n_components, features.shape[1]), slot=1)
    moments = np.zeros((n_components, n_out))
    nk = np.zeros(n_components)
    tied_s2 = np.zeros((n_features, n_features))  # tied: about form.centre, all components
    loglik = 0.0
    # A tied s2 is shared, so the exact components' own moments are needed only untied.
    exact_moments = {} if tied else {k: empty_stats(1, n_features, cov_type) for k in form.exact}
    for start in range(0, n_rows, step):
        block = X[start : start + step]
        phi = features[:, : block.shape[0]]
        resp = _block_log_prob(block, params, form, phi, log_prob[:, : block.shape[0]],
                               exact_components=True)
        weights = None if sample_weight is None else sample_weight[start : start + step]
        row_loglik = logsumexp_rows(resp.T, to_resp=True)
        loglik += row_loglik.sum() if weights is None else row_loglik @ weights
        if weights is not None:
            resp *= weights
        nk += resp.sum(axis=1)
        for k, own in exact_moments.items():
            part = shifted_moments(block, resp[k][:, np.newaxis], params.means[k : k + 1], cov_type)
            own["s1"] += part["s1"]
            own["s2"] += part["s2"]
        if tied:
            y = phi[-n_features:]
            moments[:, 1:] += resp @ y.T
            tied_s2 += (y * resp.sum(axis=0)) @ y.T
        else:
            moments += resp @ phi.T
    s1 = moments[:, -n_features:]
    s2: np.ndarray
    if cov_type == "full":
        rows, cols = _triu_pairs(n_features)
        s2 = np.empty((n_components, n_features, n_features))
        s2[:, rows, cols] = moments[:, : rows.size]
        s2[:, cols, rows] = moments[:, : rows.size]
    elif tied:
        s2 = tied_s2
    else:
        s2 = moments[:, :n_features]
    s1, s2 = move_moments(nk, s1, s2, form.centre, params.means, cov_type)
    for k, own in exact_moments.items():
        s1[k] = own["s1"][0]
        s2[k] = own["s2"][0]
    n = np.float64(n_rows if sample_weight is None else np.sum(sample_weight))
    return Stats(n=n, nk=nk, s1=s1, s2=s2, loglik=np.float64(loglik))


def data_moments_chunk(block: np.ndarray, full: bool, start: int,
                       weights: np.ndarray | None = None) -> dict[str, Any]:
    """A chunk's total weight, mean, and scatter about its own mean (merged exactly by
    :func:`merge_data_moments`, Chan's rule, with no cancellation far from the origin).

    The scatter is the (D, D) matrix if ``full``, else only its diagonal (D,):
    with many features the matrix would be most of a task's memory (32 MiB at
    D=2048) where a diagonal model needs none of it. Without ``weights`` every
    row weighs 1; with them, a row of weight ``w`` counts as ``w`` copies of it.
    """
    X = np.asarray(block, dtype=np.float64)
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    n = float(w.sum())
    mean = (w @ X) / n if n > 0 else np.zeros(X.shape[1])
    centred = X - mean
    weighted = centred * w[:, np.newaxis]
    scatter = weighted.T @ centred if full else np.einsum("ij,ij->j", weighted, centred)
    return {"n": n, "mean": mean, "scatter": scatter}


def merge_data_moments(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The moments of several chunks' rows from theirs (:func:`data_moments_chunk`)."""
    out = parts[0]
    for part in parts[1:]:
        n = out["n"] + part["n"]
        if part["n"] == 0:
            continue
        delta = part["mean"] - out["mean"]
        between = np.outer(delta, delta) if out["scatter"].ndim == 2 else delta**2
        out = {"n": n, "mean": out["mean"] + delta * (part["n"] / n),
               "scatter": out["scatter"] + part["scatter"] + between * (out["n"] * part["n"] / n)}
    return out


def data_covariance(moments: dict[str, Any]) -> np.ndarray:
    """The data's covariance from :func:`merge_data_moments`' result, as ``numpy.cov`` of the
    rows, each repeated as many times as its weight (Bessel's correction by the total weight):
    the matrix, or its diagonal if the moments hold only the diagonal scatter.

    Raises
    ------
    ValueError
        The total weight is under 2: less than two rows' worth of data (normalised
        weights, say) has no covariance to speak of.
    """
    if not moments["n"] >= 2:
        raise ValueError(
            f"The data weigh {moments['n']:g} in all: a covariance needs at least two rows' "
            "worth (sample weights count as repeated rows). Give covariance_prior, or weights "
            "that count rows.")
    return moments["scatter"] / (moments["n"] - 1)
