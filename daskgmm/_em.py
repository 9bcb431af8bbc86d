"""The EM driver: one pass per iteration, the M-step on the client.

Knows nothing about estimators, files or command lines: it takes a dataset
and initial parameters and returns the fitted parameters and the history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ._data import Dataset
from ._kernels import (
    GMMParams,
    Stats,
    compute_precision_cholesky,
    estep_stats,
    estimate_log_prob_resp,
    m_step,
)
from ._passes import check_finite_block, run_pass


@dataclass(frozen=True)
class IterationInfo:
    """What a callback learns after each EM iteration.

    Attributes
    ----------
    n_iter : int
        1-based iteration number.
    lower_bound : float
        Mean log-likelihood of the parameters before this iteration's M-step
        (scikit-learn's ``lower_bound_``), measured in this iteration's pass.
    change : float
        ``lower_bound`` minus the previous iteration's.
    seconds : float
        Wall time of the iteration.
    params : GMMParams
        Parameters after this iteration's M-step.
    covariances : ndarray
    converged : bool
        ``abs(change) < tol``: this is the last iteration.
    lower_bounds : list of float
        The history so far, this iteration's included.
    """

    n_iter: int
    lower_bound: float
    change: float
    seconds: float
    params: GMMParams
    covariances: np.ndarray
    converged: bool
    lower_bounds: list[float]


Callback = Callable[[IterationInfo], "bool | None"]
"""Called after each iteration; returning True stops the fit early."""


@dataclass
class EMResult:
    """Outcome of one EM run."""

    params: GMMParams
    covariances: np.ndarray
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


def estep_chunk(block: np.ndarray, params: GMMParams, start: int) -> Stats:
    """E-step of one chunk (the ``gmm-estep`` task)."""
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported below
        stats = estep_stats(block, params)
    if not np.isfinite(stats["loglik"]):
        check_finite_block(block, start)
    return stats


def loglik_chunk(block: np.ndarray, params: GMMParams, start: int) -> dict:
    """Sum of per-row log-likelihoods of one chunk (the ``gmm-score`` task)."""
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported below
        log_prob_norm, _ = estimate_log_prob_resp(block, params)
    total = log_prob_norm.sum()
    if not np.isfinite(total):
        check_finite_block(block, start)
    return {"loglik": np.float64(total), "n": np.float64(block.shape[0])}


def em_iteration(
    data: Dataset, params: GMMParams, reg_covar: float, split_every: int
) -> tuple[GMMParams, np.ndarray, float]:
    """One pass: E-step statistics, tree reduction, M-step.

    Returns the new parameters, their covariances and the mean
    log-likelihood of the *old* parameters (from the same pass).
    """
    stats = run_pass(data, estep_chunk, params, name="gmm-estep", split_every=split_every)
    weights, means, covariances = m_step(stats, params.means, params.covariance_type, reg_covar)
    prec_chol = compute_precision_cholesky(covariances, params.covariance_type)
    new = GMMParams(weights, means, prec_chol, params.covariance_type)
    return new, covariances, float(stats["loglik"] / stats["n"])


def run_em(
    data: Dataset,
    params: GMMParams,
    covariances: np.ndarray,
    *,
    tol: float,
    reg_covar: float,
    max_iter: int,
    split_every: int,
    lower_bound: float = -np.inf,
    callbacks: Sequence[Callback] = (),
    start_iter: int = 0,
    history: Sequence[float] = (),
) -> EMResult:
    """Iterate EM from ``params`` until the mean log-likelihood changes less than ``tol``.

    Parameters
    ----------
    data : Dataset
    params : GMMParams
        Initial parameters.
    covariances : ndarray
        Their covariances (returned unchanged if ``max_iter`` is 0).
    tol, reg_covar, max_iter : as in :class:`daskgmm.GaussianMixture`.
    split_every : int
        Fan-in of the tree reduction.
    lower_bound : float
        The previous lower bound (warm start), compared with the first iteration's.
    callbacks : sequence of callables
        Called with an :class:`IterationInfo` after each iteration.
    start_iter, history : int, sequence of float
        Iterations already done and their lower bounds, when resuming from a
        checkpoint; iteration numbers continue from ``start_iter``.

    Returns
    -------
    EMResult
    """
    result = EMResult(params, covariances, lower_bound, list(history), start_iter)
    for n_iter in range(start_iter + 1, max_iter + 1):
        started = time.perf_counter()
        previous = result.lower_bound
        params, covariances, lower_bound = em_iteration(data, params, reg_covar, split_every)
        change = lower_bound - previous
        result.params, result.covariances = params, covariances
        result.lower_bound, result.n_iter = lower_bound, n_iter
        result.lower_bounds.append(lower_bound)
        result.converged = abs(change) < tol
        info = IterationInfo(n_iter, lower_bound, change, time.perf_counter() - started,
                             params, covariances, result.converged, list(result.lower_bounds))
        stop = [bool(callback(info)) for callback in callbacks]
        if result.converged or any(stop):
            break
    return result
