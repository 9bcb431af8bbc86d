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
    combine_stats,
    estep_stats_many,
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
    model : int
        Which of the models fitted together this is (0 when fitting one).
    n_models : int
        How many models share the passes (``n_init`` or a selection grid).
    """

    n_iter: int
    lower_bound: float
    change: float
    seconds: float
    params: GMMParams
    covariances: np.ndarray
    converged: bool
    lower_bounds: list[float]
    model: int = 0
    n_models: int = 1


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


def estep_chunk(block: np.ndarray, models: tuple[GMMParams, ...], start: int,
                weights: np.ndarray | None = None) -> list[Stats]:
    """E-step of one chunk for every model of the pass (the ``gmm-estep`` task)."""
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported below
        stats = estep_stats_many(block, models, weights)
    if not all(np.isfinite(st["loglik"]) for st in stats):
        check_finite_block(block, start)
    return stats


def combine_many(parts: list[list[Stats]]) -> list[Stats]:
    """Add each model's statistics over chunks, in chunk order."""
    return [combine_stats([part[m] for part in parts]) for m in range(len(parts[0]))]


def loglik_chunk(block: np.ndarray, models: tuple[GMMParams, ...], start: int,
                 weights: np.ndarray | None = None) -> list[dict]:
    """Sums of (weighted) per-row log-likelihoods of one chunk, one per model (``gmm-score``)."""
    out = []
    for params in models:
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported below
            log_prob_norm, _ = estimate_log_prob_resp(block, params)
        total = log_prob_norm.sum() if weights is None else log_prob_norm @ weights
        if not np.isfinite(total):
            check_finite_block(block, start)
        n = block.shape[0] if weights is None else weights.sum()
        out.append({"loglik": np.float64(total), "n": np.float64(n)})
    return out


def total_loglik(data: Dataset, models: Sequence[GMMParams], split_every: int) -> list[dict]:
    """One pass: each model's summed (weighted) log-likelihood ``loglik`` and weight ``n``."""
    return run_pass(data, loglik_chunk, tuple(models), name="gmm-score", split_every=split_every,
                    combine=combine_many)


def _m_step(stats: Stats, params: GMMParams, reg_covar: float) -> tuple[GMMParams, np.ndarray]:
    weights, means, covariances = m_step(stats, params.means, params.covariance_type, reg_covar)
    prec_chol = compute_precision_cholesky(covariances, params.covariance_type)
    return GMMParams(weights, means, prec_chol, params.covariance_type), covariances


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
    start = EMResult(params, covariances, lower_bound, list(history), start_iter)
    return run_em_many(data, [start], tol=tol, reg_covar=reg_covar, max_iter=max_iter,
                       split_every=split_every, callbacks=callbacks)[0]


def _per_model(value, n_models: int, name: str) -> list:
    if np.ndim(value) == 0:
        return [value] * n_models
    if len(value) != n_models:
        raise ValueError(f"{name} has {len(value)} values for {n_models} models.")
    return list(value)


def run_em_many(
    data: Dataset,
    starts: Sequence[EMResult],
    *,
    tol: float | Sequence[float],
    reg_covar: float | Sequence[float],
    max_iter: int | Sequence[int],
    split_every: int,
    callbacks: Sequence[Callback] = (),
) -> list[EMResult]:
    """Iterate EM for several models at once, one pass over the data per iteration.

    Each pass reads every chunk once and computes the statistics of every
    model still running from it (:func:`daskgmm._kernels.estep_stats_many`).
    Each model keeps its own convergence test and leaves the passes when it
    converges or reaches ``max_iter``; each ends exactly as it would fitted
    alone.

    Parameters
    ----------
    data : Dataset
    starts : sequence of EMResult
        Each model's starting point: parameters, covariances, previous lower
        bound, history and iterations already done (0 unless resuming).
    tol, reg_covar, max_iter : float, float, int, or one per model
        As in :func:`run_em`.
    split_every : int
        Fan-in of the tree reduction.
    callbacks : sequence of callables
        Called after each iteration of each model, with ``info.model`` its
        index; one returning True stops every model.

    Returns
    -------
    list of EMResult
        In the order of ``starts``.
    """
    results = [EMResult(s.params, s.covariances, s.lower_bound, list(s.lower_bounds), s.n_iter,
                        s.converged) for s in starts]
    tol = _per_model(tol, len(results), "tol")
    reg_covar = _per_model(reg_covar, len(results), "reg_covar")
    max_iter = _per_model(max_iter, len(results), "max_iter")

    def running(i: int) -> bool:
        return not results[i].converged and results[i].n_iter < max_iter[i]

    active = [i for i in range(len(results)) if running(i)]
    while active:
        started = time.perf_counter()
        models = tuple(results[i].params for i in active)
        stats = run_pass(data, estep_chunk, models, name="gmm-estep", split_every=split_every,
                         combine=combine_many)
        seconds = time.perf_counter() - started
        stop = False
        for i, model_stats in zip(active, stats):
            result = results[i]
            params, covariances = _m_step(model_stats, result.params, reg_covar[i])
            lower_bound = float(model_stats["loglik"] / model_stats["n"])
            change = lower_bound - result.lower_bound
            result.params, result.covariances = params, covariances
            result.lower_bound, result.n_iter = lower_bound, result.n_iter + 1
            result.lower_bounds.append(lower_bound)
            result.converged = abs(change) < tol[i]
            info = IterationInfo(result.n_iter, lower_bound, change, seconds, params, covariances,
                                 result.converged, list(result.lower_bounds), i, len(results))
            stop |= any([bool(callback(info)) for callback in callbacks])
        if stop:
            break
        active = [i for i in active if running(i)]
    return results
