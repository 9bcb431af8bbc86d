"""Variational Bayesian Gaussian mixtures: the posterior update and lower bound, pure numpy.

scikit-learn's ``BayesianGaussianMixture`` (Bishop, 2006, 10.2; Blei and Jordan, 2006, for the
Dirichlet process) needs from the data exactly EM's statistics: ``N_k``, the weighted means
``x_k`` and covariances ``S_k``. So a variational iteration is one pass of the E-step kernels,
tree-reduced, and this module's update on the client.

The E-step of the variational posterior is the E-step of a Gaussian mixture whose log
"weights" are ``E[log pi_k] - D/2 log nu_k + 1/2 (E[log |Lambda_k|]' - D / beta_k)``
(:func:`estep_params`): the same kernels compute its responsibilities, and its
``logsumexp`` is scikit-learn's ``log_prob_norm``. The lower bound needs ``sum r log r``,
which follows from the statistics and that sum without another pass (:func:`resp_entropy`):
``sum_nk r_nk log r_nk = sum_k sum_n r_nk log w~_k N(x_n | k) - sum_n log_prob_norm_n``,
and ``sum_n r_nk log N(x_n | k)`` is ``N_k (log|U_k| - D/2 log 2 pi) - 1/2 tr(P_k S2_k)``
with ``S2_k`` the second moment about the component's mean, which the statistics hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln

from ._density import _LOG_2PI
from ._mstep import _NK_EPS, m_step
from ._params import (
    GMMParams,
    _global_centre,
    compute_precision_cholesky,
    log_det_cholesky,
    precisions_from_cholesky,
)
from ._stats import Stats


@dataclass(frozen=True)
class Priors:
    """The priors, with scikit-learn's data-driven defaults filled in (its ``*_prior_``)."""

    weight_concentration_prior_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray | float


@dataclass(frozen=True)
class Posterior:
    """The variational posterior: scikit-learn's fitted attributes of the same names."""

    weight_concentration: np.ndarray | tuple[np.ndarray, np.ndarray]
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray | float
    covariances: np.ndarray
    precisions_cholesky: np.ndarray


def update(priors: Priors, nk: np.ndarray, xk: np.ndarray, sk: np.ndarray,
           covariance_type: str) -> Posterior:
    """The posterior from the data's ``N_k`` (with scikit-learn's 10 eps), means and covariances.

    ``sk`` holds ``reg_covar`` already, as scikit-learn's
    ``_estimate_gaussian_parameters`` returns it.
    """
    n_components, n_features = xk.shape
    if priors.weight_concentration_prior_type == "dirichlet_process":
        remaining = np.hstack((np.cumsum(nk[::-1])[-2::-1], 0))
        concentration: np.ndarray | tuple = (1.0 + nk, priors.weight_concentration + remaining)
    else:
        concentration = priors.weight_concentration + nk
    mean_precision = priors.mean_precision + nk
    means = (priors.mean_precision * priors.mean + nk[:, np.newaxis] * xk) / mean_precision[:, np.newaxis]
    diff = xk - priors.mean
    shrink = priors.mean_precision / mean_precision  # beta_0 / beta_k
    dof: np.ndarray | float
    if covariance_type == "full":
        dof = priors.degrees_of_freedom + nk
        covariances = (priors.covariance + nk[:, None, None] * sk
                       + (nk * shrink)[:, None, None] * np.einsum("ki,kj->kij", diff, diff))
        covariances = covariances / dof[:, None, None]
    elif covariance_type == "tied":
        dof = priors.degrees_of_freedom + nk.sum() / n_components
        covariances = (priors.covariance + sk * nk.sum() / n_components
                       + priors.mean_precision / n_components
                       * ((nk / mean_precision) * diff.T) @ diff) / dof
    elif covariance_type == "diag":
        dof = priors.degrees_of_freedom + nk
        covariances = (priors.covariance + nk[:, None] * (sk + shrink[:, None] * diff**2)) / dof[:, None]
    else:
        dof = priors.degrees_of_freedom + nk
        covariances = (priors.covariance + nk * (sk + shrink * np.mean(diff**2, axis=1))) / dof
    return Posterior(concentration, mean_precision, means, dof, covariances,
                     compute_precision_cholesky(covariances, covariance_type))


def expected_log_weights(post: Posterior, prior_type: str) -> np.ndarray:
    """``E[log pi_k]`` under the posterior of the weights."""
    if prior_type == "dirichlet_process":
        a, b = post.weight_concentration
        digamma_sum = digamma(a + b)
        return digamma(a) - digamma_sum + np.hstack((0, np.cumsum(digamma(b) - digamma_sum)[:-1]))
    concentration = np.asarray(post.weight_concentration)
    return digamma(concentration) - digamma(concentration.sum())


def mixture_weights(concentration: np.ndarray | tuple[np.ndarray, np.ndarray],
                    prior_type: str) -> np.ndarray:
    """scikit-learn's ``weights_``: the mean weights under the posterior ``concentration``
    (its ``weight_concentration_``: a pair of arrays for the Dirichlet process)."""
    if prior_type == "dirichlet_process":
        a, b = concentration
        total = a + b
        weights = a / total * np.hstack((1, np.cumprod(b / total)[:-1]))
        return weights / weights.sum()
    concentration = np.asarray(concentration)
    return concentration / concentration.sum()


def _expected_log_det_terms(post: Posterior, n_features: int) -> np.ndarray:
    """``1/2 (log_lambda_k - D / beta_k) - D/2 log nu_k``, per component."""
    dof = np.asarray(post.degrees_of_freedom, dtype=np.float64)
    log_lambda = n_features * math.log(2.0) + np.sum(
        digamma(0.5 * (dof - np.arange(n_features)[:, np.newaxis])), axis=0)
    return 0.5 * (log_lambda - n_features / post.mean_precision) - 0.5 * n_features * np.log(dof)


def estep_log_weights(post: Posterior, prior_type: str) -> np.ndarray:
    """The log "weights" of the mixture whose E-step is the variational E-step: scikit-learn's
    ``_estimate_log_weights`` plus its per-component terms of ``_estimate_log_prob``."""
    n_features = post.means.shape[1]
    return expected_log_weights(post, prior_type) + _expected_log_det_terms(post, n_features)


def estep_params(post: Posterior, covariance_type: str, prior_type: str) -> GMMParams:
    """A Gaussian mixture whose E-step is the variational E-step.

    Its weights are ``exp`` of :func:`estep_log_weights` less their maximum
    (the largest is 1): with many features those logs reach -D/2 log(nu), far
    below what ``exp`` can represent (-745 at D=300), and responsibilities do
    not change with a common shift. The log-likelihoods of this mixture are
    scikit-learn's ``score_samples`` less that maximum (see
    :func:`estep_log_weights`); ``sum r log r`` (:func:`resp_entropy`) does not
    depend on the shift.
    """
    log_weights = estep_log_weights(post, prior_type)
    return GMMParams(np.exp(log_weights - log_weights.max()), post.means,
                     post.precisions_cholesky, covariance_type)


def resp_entropy(stats: Stats, params: GMMParams) -> float:
    """``sum_n sum_k r_nk log r_nk`` of the pass that gave ``stats`` under ``params``.

    ``stats`` are moments about ``params.means`` (the pass's centres), with
    ``loglik`` the sum of the rows' ``logsumexp`` of the weighted log-densities.
    """
    cov_type = params.covariance_type
    n_features = params.n_features
    nk = stats["nk"]
    prec_chol = params.precisions_cholesky
    log_det = log_det_cholesky(prec_chol, cov_type, n_features)
    if cov_type == "full":
        quad = np.einsum("kij,kjl,kil->k", stats["s2"], prec_chol, prec_chol)  # tr(U^T S2 U)
        quad_total = float(quad.sum())
    elif cov_type == "tied":
        m = params.means - _global_centre(params.means)
        s1 = stats["s1"]
        about_own_means = (stats["s2"] - m.T @ s1 - s1.T @ m - np.einsum("k,ki,kj->ij", nk, m, m))
        quad_total = float(np.sum(prec_chol * (about_own_means @ prec_chol)))
    else:
        precisions = prec_chol**2 if cov_type == "diag" else (prec_chol**2)[:, np.newaxis]
        quad_total = float(np.sum(precisions * stats["s2"]))
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    per_row = log_weights + np.asarray(log_det) - 0.5 * n_features * _LOG_2PI
    # A switched-off component's weight underflows to 0 (log -inf) with no rows: no term.
    linear = float(np.sum(np.where(nk > 0, nk * np.where(np.isfinite(per_row), per_row, 0.0), 0.0)))
    return float(linear - 0.5 * quad_total - stats["loglik"])


def _log_wishart_norm(dof: np.ndarray | float, log_det_precisions_chol: np.ndarray | float,
                      n_features: int) -> np.ndarray:
    dof = np.asarray(dof, dtype=np.float64)
    return -(dof * log_det_precisions_chol + dof * n_features * 0.5 * math.log(2.0)
             + np.sum(gammaln(0.5 * (dof - np.arange(n_features)[:, np.newaxis])), axis=0))


def lower_bound(post: Posterior, entropy_term: float, covariance_type: str,
                prior_type: str, n_components: int) -> float:
    """scikit-learn's ``_compute_lower_bound`` (constant terms dropped, as it drops them).

    ``entropy_term`` is ``sum r log r`` of the E-step before the update that gave ``post``.
    """
    n_features = post.means.shape[1]
    log_det = (np.asarray(log_det_cholesky(post.precisions_cholesky, covariance_type, n_features))
               - 0.5 * n_features * np.log(post.degrees_of_freedom))
    if covariance_type == "tied":
        log_wishart = n_components * float(np.sum(_log_wishart_norm(post.degrees_of_freedom,
                                                                    log_det, n_features)))
    else:
        log_wishart = float(np.sum(_log_wishart_norm(post.degrees_of_freedom, log_det, n_features)))
    if prior_type == "dirichlet_process":
        a, b = post.weight_concentration
        log_norm_weight = -float(np.sum(betaln(a, b)))
    else:
        concentration = np.asarray(post.weight_concentration)
        log_norm_weight = float(gammaln(concentration.sum()) - np.sum(gammaln(concentration)))
    return (-entropy_term - log_wishart - log_norm_weight
            - 0.5 * n_features * float(np.sum(np.log(post.mean_precision))))


def precisions_of(post: Posterior, covariance_type: str) -> np.ndarray:
    """scikit-learn's ``precisions_``."""
    return precisions_from_cholesky(post.precisions_cholesky, covariance_type)


@dataclass(frozen=True)
class VariationalUpdate:
    """One variational iteration's update on the client: the posterior from a pass's statistics.

    What :func:`daskgmm._em.run_em_many` calls in place of EM's M-step for a
    Bayesian model, so variational and EM models share the passes.

    Attributes
    ----------
    priors : Priors
    covariance_type : str
    n_components : int
    reg_covar : float
    """

    priors: Priors
    covariance_type: str
    n_components: int
    reg_covar: float

    def start(self, nk: np.ndarray, xk: np.ndarray, sk: np.ndarray) -> tuple[GMMParams, Posterior]:
        """The first E-step's parameters and the posterior of initial ``N_k``, means and
        covariances (``reg_covar`` included), as scikit-learn's ``_initialize``."""
        post = update(self.priors, nk, xk, sk, self.covariance_type)
        return self.estep(post), post

    def estep(self, post: Posterior) -> GMMParams:
        """The parameters of the E-step under ``post``."""
        return estep_params(post, self.covariance_type,
                            self.priors.weight_concentration_prior_type)

    def __call__(self, stats: Stats, params: GMMParams
                 ) -> tuple[GMMParams, np.ndarray, float, Posterior]:
        """The next E-step's parameters, the covariances, the lower bound and the posterior."""
        _, xk, sk = m_step(stats, params.means, self.covariance_type, self.reg_covar)
        post = update(self.priors, stats["nk"] + _NK_EPS, xk, sk, self.covariance_type)
        bound = lower_bound(post, resp_entropy(stats, params), self.covariance_type,
                            self.priors.weight_concentration_prior_type, self.n_components)
        return self.estep(post), post.covariances, bound, post
