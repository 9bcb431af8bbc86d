"""The M-step: reduced sufficient statistics to parameters, per covariance type.

Pure numpy, no dask; it runs on the client once per iteration. The
statistics are moments about centres ``c_k`` known before the pass, so
``mu_k = c_k + s1_k / N_k`` and ``Sigma_k = s2_k / N_k - d_k d_k^T`` with
``d_k = s1_k / N_k``: no ``E[xx^T] - mu mu^T`` cancellation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._params import _global_centre
from ._stats import Stats

# scikit-learn adds this to every N_k so that an empty component does not
# divide by zero; we do the same so that fits agree.
_NK_EPS = 10 * np.finfo(np.float64).eps

CovarianceEstimator = Callable[[Stats, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(stats, nk, centres, offsets) -> covariances`` of one covariance type."""

# Each estimator takes the statistics, N_k (with eps), the centres and the
# offsets d_k = mu_k - c_k = s1_k / N_k. The offsets come straight from s1:
# recomputing them as ``means - centres`` would cancel for data far from zero.


def _covariances_full(stats: Stats, nk: np.ndarray, centres: np.ndarray,
                      offsets: np.ndarray) -> np.ndarray:
    return stats["s2"] / nk[:, None, None] - np.einsum("ki,kj->kij", offsets, offsets)


def _covariances_tied(stats: Stats, nk: np.ndarray, centres: np.ndarray,
                      offsets: np.ndarray) -> np.ndarray:
    # sum_k sum_n r_nk (x - mu_k)(x - mu_k)^T = S2(c) - sum_k N_k d_k d_k^T, d_k = mu_k - c.
    d = (centres - _global_centre(centres)) + offsets
    return (stats["s2"] - np.einsum("k,ki,kj->ij", stats["nk"], d, d)) / nk.sum()


def _covariances_diag(stats: Stats, nk: np.ndarray, centres: np.ndarray,
                      offsets: np.ndarray) -> np.ndarray:
    return stats["s2"] / nk[:, None] - offsets**2


def _covariances_spherical(stats: Stats, nk: np.ndarray, centres: np.ndarray,
                           offsets: np.ndarray) -> np.ndarray:
    return _covariances_diag(stats, nk, centres, offsets).mean(axis=1)


_COVARIANCE_ESTIMATORS: dict[str, CovarianceEstimator] = {
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
        Shape by ``covariance_type`` (see :mod:`daskgmm._params`).
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
