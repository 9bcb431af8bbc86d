"""Stepwise online EM (Cappé & Moulines, 2009): the statistics algebra and the driver.

Online EM keeps a running average of the per-row sufficient statistics,

    s_t = (1 - gamma_t) s_{t-1} + gamma_t * stats(batch_t) / weight(batch_t),

and takes the M-step from ``s_t`` after every mini-batch. With step sizes
``gamma_t = (t + offset) ** -decay``, ``decay`` in (0.5, 1], the iterates
converge to a stationary point of the likelihood (Cappé & Moulines, J. R.
Stat. Soc. B 71(3), 2009). ``gamma_0`` is 1: the first batch's statistics
replace the (empty) running average.

Statistics are kept about the current means, as in batch EM (shifted
moments, no cancellation for data far from zero); before a new batch's
statistics are added, the running average is moved to the new centres
(:func:`shift_stats`), which is exact algebra.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from ._em import Callback, EMResult, IterationInfo, check_finite_stats, combine_many, estep_chunk
from ._mstep import m_step
from ._params import GMMParams, compute_precision_cholesky
from ._passes import run_pass
from ._stats import Stats, move_moments

if TYPE_CHECKING:  # dask.array (with pandas) stays out of the workers
    from ._data import Dataset


def step_size(step: int, decay: float, offset: float) -> float:
    """``gamma_t = (t + offset) ** -decay`` for t >= 1, and 1 for the first batch (t = 0)."""
    if step == 0:
        return 1.0
    return float((step + offset) ** -decay)


def shift_stats(stats: Stats, old: np.ndarray, new: np.ndarray, covariance_type: str) -> Stats:
    """The same statistics about the centres ``new`` instead of ``old`` (K, D).

    The moments are moved by :func:`daskgmm._stats.move_moments` (a tied
    ``s2``, which is about the centre of the centres, by the difference of
    those); ``n``, ``nk`` and ``loglik`` do not depend on the centres.
    """
    out = stats.copy()
    out["s1"], out["s2"] = move_moments(stats["nk"], stats["s1"], stats["s2"], old, new,
                                        covariance_type)
    return out


def normalised(stats: Stats) -> Stats:
    """Statistics per unit of weight (``n`` becomes 1)."""
    n = float(stats["n"])
    return cast(Stats, {key: np.asarray(value, dtype=np.float64) / n
                        for key, value in stats.items()})


def blend(running: Stats | None, batch: Stats, gamma: float) -> Stats:
    """``(1 - gamma) * running + gamma * batch`` key by key (``batch`` if there is no running)."""
    if running is None or gamma >= 1.0:
        return cast(Stats, {key: np.array(value, dtype=np.float64, copy=True)
                            for key, value in batch.items()})
    return cast(Stats, {key: (1.0 - gamma) * running[key] + gamma * batch[key]  # type: ignore[literal-required]
                        for key in batch})


@dataclass(frozen=True)
class OnlineState:
    """Where stepwise online EM stands between mini-batches.

    Attributes
    ----------
    running : Stats
        The running average of per-unit-weight statistics.
    centres : ndarray of shape (K, D)
        The centres ``running`` is about (the means before the last step).
    step : int
        Mini-batches seen.
    """

    running: Stats
    centres: np.ndarray
    step: int


def online_step(batch: Dataset, current: EMResult, state: OnlineState | None, *,
                reg_covar: float, learning_decay: float, learning_offset: float,
                split_every: int) -> tuple[EMResult, OnlineState | None]:
    """One step of online EM: the batch's E-step (one pass over it), blend, M-step.

    A batch in which no row observed anything (all missing) takes no step:
    ``current`` and ``state`` are returned as they are.

    Parameters
    ----------
    batch : Dataset
        The mini-batch.
    current : EMResult
        The parameters before the step and the history of lower bounds.
    state : OnlineState or None
        None for the first step.
    reg_covar, learning_decay, learning_offset, split_every
        As the estimator's parameters.

    Returns
    -------
    result : EMResult
        The parameters after the step; ``lower_bound`` is the batch's mean
        log-likelihood under the parameters before it, and ``n_iter`` the
        number of batches seen.
    state : OnlineState
    """
    params = current.params
    covariance_type = params.covariance_type
    step = 0 if state is None else state.step
    (stats,) = run_pass(batch, estep_chunk, (params,), name="gmm-online-estep",
                        split_every=split_every, combine=combine_many)
    if stats["n"] == 0:  # no row observed anything (missing entries): nothing to learn
        return current, state
    check_finite_stats(stats, covariance_type, iteration=step + 1, params=params)
    running = None
    if state is not None:
        running = shift_stats(state.running, state.centres, params.means, covariance_type)
    gamma = step_size(step, learning_decay, learning_offset)
    running = blend(running, normalised(stats), gamma)
    weights, means, covariances = m_step(running, params.means, covariance_type, reg_covar)
    prec_chol = compute_precision_cholesky(covariances, covariance_type)
    lower_bound = float(stats["loglik"] / stats["n"])
    history = list(current.lower_bounds)[:step] + [lower_bound]
    result = EMResult(GMMParams(weights, means, prec_chol, covariance_type, params.marginalize),
                      covariances,
                      lower_bound, history, step + 1, False)
    return result, OnlineState(running, params.means, step + 1)


def run_online_em(data: Dataset, start: EMResult, *, passes: int, batch_size: int | str,
                  random_state: np.random.RandomState, reg_covar: float, learning_decay: float,
                  learning_offset: float, split_every: int,
                  callbacks: Sequence[Callback] = ()) -> tuple[EMResult, OnlineState | None]:
    """``passes`` sweeps of online EM over ``data`` in mini-batches, in a random batch order.

    Parameters
    ----------
    data : Dataset
    start : EMResult
        The initial parameters.
    passes : int
    batch_size : int or 'auto'
        Rows per mini-batch ('auto': each row chunk of ``data``).
    random_state : numpy.random.RandomState
        Draws the order of the batches in each sweep.
    reg_covar, learning_decay, learning_offset, split_every
        As :func:`online_step`.
    callbacks : sequence of callables
        Called with an :class:`IterationInfo` after every step; one returning
        True stops the fit.

    Returns
    -------
    result : EMResult
    state : OnlineState or None
        None if no step was taken.
    """
    if not isinstance(batch_size, str):  # 'auto': the data's own row chunks
        data = data.rechunk_rows(batch_size)
    result, state = start, None
    for _ in range(passes):
        for index in random_state.permutation(data.n_chunks):
            started = time.perf_counter()
            previous = result.lower_bound
            result, state = online_step(
                data.chunk(index), result, state, reg_covar=reg_covar,
                learning_decay=learning_decay, learning_offset=learning_offset,
                split_every=split_every)
            info = IterationInfo(result.n_iter, result.lower_bound, result.lower_bound - previous,
                                 time.perf_counter() - started, result.params, result.covariances,
                                 False, list(result.lower_bounds))
            if any([bool(callback(info)) for callback in callbacks]):
                return result, state
    return result, state
