"""Parameter algebra of a Gaussian mixture: pure numpy, no dask.

The model is parametrised, as in scikit-learn, by the Cholesky factor ``U``
of each precision matrix (upper triangular, ``U U^T`` the precision): a
log-density is then a triangular product and a log-determinant the sum of
the logs of ``U``'s diagonal; no ``inv`` or ``det`` is needed.

Shapes by covariance type (K components, D features):

=============  ===================  ======================  ==================
type           covariances          precisions_cholesky     second moment s2
=============  ===================  ======================  ==================
``full``       (K, D, D)            (K, D, D)               (K, D, D)
``tied``       (D, D)               (D, D)                  (D, D)
``diag``       (K, D)               (K, D)                  (K, D)
``spherical``  (K,)                 (K,)                    (K, D)
=============  ===================  ======================  ==================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from .exceptions import DegenerateComponentError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


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
    marginalize : bool
        Rows with NaN entries are taken as missing at random, through their
        marginal density (:mod:`daskgmm._missing`); False: NaN is an error.
    """

    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str
    marginalize: bool = False

    @property
    def n_components(self) -> int:
        """The number of components K."""
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        """The number of features D."""
        return int(self.means.shape[1])


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


def _precision_cholesky_of_matrix(cov: np.ndarray, component: int | None,
                                  cov_type: str) -> np.ndarray:
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
    """Cholesky factors of user-given precision matrices.

    Parameters
    ----------
    precisions : ndarray
        Precisions, shape by ``covariance_type`` (see the module docstring).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    precisions_cholesky : ndarray
        In the convention of :func:`compute_precision_cholesky`: upper ``U``
        with ``U U^T`` the precision.
    """
    precisions = np.asarray(precisions, dtype=np.float64)
    if covariance_type == "full":
        return np.stack([_upper_cholesky(p) for p in precisions])
    if covariance_type == "tied":
        return _upper_cholesky(precisions)
    return np.sqrt(precisions)


def precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precision matrices ``U U^T`` from their Cholesky factors.

    Parameters
    ----------
    prec_chol : ndarray
        Precision Cholesky factors, shape by ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    precisions : ndarray
        Same shape as ``prec_chol``.
    """
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def covariances_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Covariances from precision Cholesky factors (for user-given precisions).

    Parameters
    ----------
    prec_chol : ndarray
        Precision Cholesky factors, shape by ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    covariances : ndarray
        Same shape as ``prec_chol``.
    """
    if covariance_type == "full":
        inv_u = np.stack([np.linalg.inv(u) for u in prec_chol])
        return np.einsum("kji,kjl->kil", inv_u, inv_u)
    if covariance_type == "tied":
        inv_u = np.linalg.inv(prec_chol)
        return inv_u.T @ inv_u
    return 1.0 / prec_chol**2


def log_det_cholesky(prec_chol: np.ndarray, covariance_type: str,
                     n_features: int) -> np.ndarray | float:
    """Log-determinant of each precision Cholesky factor.

    Parameters
    ----------
    prec_chol : ndarray
        Precision Cholesky factors, shape by ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    n_features : int

    Returns
    -------
    log_det : ndarray of shape (K,), or float for ``tied``
    """
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return float(np.sum(np.log(np.diag(prec_chol))))
    if covariance_type == "diag":
        return np.sum(np.log(prec_chol), axis=1)
    return n_features * np.log(prec_chol)


def _global_centre(means: np.ndarray) -> np.ndarray:
    """The centre of the means: the expansion point of the fused E-step, and
    the point a tied second moment is taken about."""
    return means.mean(axis=0)


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """The number of free parameters of a mixture (scikit-learn's count).

    Parameters
    ----------
    n_components, n_features : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    int
        Covariance parameters, means, and the ``K - 1`` free weights.
    """
    k, d = n_components, n_features
    covariance_parameters = {
        "full": k * d * (d + 1) / 2.0,
        "diag": k * d,
        "tied": d * (d + 1) / 2.0,
        "spherical": k,
    }[covariance_type]
    return int(covariance_parameters + d * k + k - 1)


def information_criteria(total_loglik: float, n_samples: float, n_params: int,
                         assignment: float | None = None) -> dict[str, float]:
    """BIC, AIC and ICL from a summed log-likelihood: the one place of their formulas.

    Parameters
    ----------
    total_loglik : float
        The (weighted) log-likelihood summed over the data.
    n_samples : float
        The number of rows, or the total weight.
    n_params : int
        From :func:`n_parameters`.
    assignment : float, optional
        The (weighted) sum over the rows of ``log max_k p(k | x)``: the
        log-likelihood of the hard classification under the posterior.

    Returns
    -------
    dict
        ``bic = -2 log L + p log n`` and ``aic = -2 log L + 2 p``, and with
        ``assignment`` the integrated completed likelihood ``icl = bic - 2
        assignment`` (Biernacki, Celeux and Govaert, 2000, as mclust computes
        it: BIC penalised by the entropy of the hard classification); lower
        is better for each.
    """
    bic = float(-2 * total_loglik + n_params * np.log(n_samples))
    out = {"bic": bic, "aic": float(-2 * total_loglik + 2 * n_params)}
    if assignment is not None:
        out["icl"] = float(bic - 2 * assignment)
    return out
