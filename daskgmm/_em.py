"""The EM driver: one pass per iteration, the M-step on the client.

Knows nothing about estimators, files or command lines: it takes a dataset
and initial parameters and returns the fitted parameters and the history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ._block_checks import check_finite_block
from ._missing import estep_stats_missing, rows_with_missing
from ._mstep import m_step
from ._params import GMMParams, compute_precision_cholesky
from ._passes import run_pass, run_pass_with_digest
from ._predict import log_likelihood_and_assignment_block
from ._stats import Stats, combine_stats, estep_stats_many
from .exceptions import NonFiniteError

if TYPE_CHECKING:  # dask.array (with pandas) stays out of the workers
    from ._data import Dataset


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
    finished : bool
        This model's EM ends with this iteration: it converged or reached
        ``max_iter``. A fit stopped by a callback is not finished.
    fingerprint : dict or None
        What the passes read (:meth:`daskgmm._data.Dataset.fingerprint`: shape,
        dtype, row chunks, location, weighted) and ``digest``, the content
        digest folded from the chunks during this run's first pass. None for
        online EM.
    posterior : object or None
        A variational fit's posterior after this iteration
        (:class:`daskgmm._variational.Posterior`; ``params`` is then the
        mixture whose E-step is the variational E-step, and ``lower_bound``
        the variational lower bound; its weights are relative, the largest 1). None for EM.
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
    finished: bool = False
    fingerprint: dict | None = None
    posterior: Any = None


Callback = Callable[[IterationInfo], "bool | None"]
"""Called after each iteration; returning True stops the fit early."""


@dataclass
class EMResult:
    """Outcome of one EM run (or a variational fit's, with its ``posterior``)."""

    params: GMMParams
    covariances: np.ndarray
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    posterior: Any = None


class Update(Protocol):
    """A model's update from its pass's statistics, other than EM's M-step.

    Called with the statistics of the pass (moments about ``params.means``)
    and the parameters that pass used; returns the next pass's parameters,
    the covariances to report, the lower bound to test for convergence, and
    the posterior (see :class:`IterationInfo`). Variational inference is one
    (:class:`daskgmm._variational.VariationalUpdate`).
    """

    def __call__(self, stats: Stats, params: GMMParams
                 ) -> tuple[GMMParams, np.ndarray, float, Any]: ...


def estep_chunk(block: np.ndarray, models: tuple[GMMParams, ...], start: int,
                weights: np.ndarray | None = None) -> list[Stats]:
    """E-step of one chunk for every model of the pass (the ``gmm-estep`` task).

    Models that marginalize missing entries take the rows with NaN through
    :func:`daskgmm._missing.estep_stats_missing` and the complete rows
    through the usual kernels, so that without NaN nothing changes.
    """
    if models and models[0].marginalize:
        incomplete = rows_with_missing(block)
        if incomplete.any():
            check_finite_block(block, start, allow_nan=True)
            return _estep_with_missing(block, models, weights, incomplete)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported below
        stats = estep_stats_many(block, models, weights)
    if not all(np.isfinite(st["loglik"]) for st in stats):
        check_finite_block(block, start, allow_nan=bool(models and models[0].marginalize))
    return stats


def _estep_with_missing(block: np.ndarray, models: tuple[GMMParams, ...],
                        weights: np.ndarray | None, incomplete: np.ndarray) -> list[Stats]:
    complete = ~incomplete
    with np.errstate(invalid="ignore", over="ignore"):
        whole = estep_stats_many(block[complete], models,
                                 None if weights is None else weights[complete])
    partial = [estep_stats_missing(block[incomplete], params,
                                   None if weights is None else weights[incomplete])
               for params in models]
    return [combine_stats([a, b]) for a, b in zip(whole, partial, strict=True)]


def combine_quietly(parts: list[Stats]) -> Stats:
    """:func:`combine_stats` without floating-point warnings.

    Sums that overflow (or add infinities of both signs) are not warned about
    here: the driver reports them with the iteration and the components
    (:func:`check_finite_stats`).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return combine_stats(parts)


def combine_many(parts: list[list[Stats]]) -> list[Stats]:
    """Add each model's statistics over chunks, in chunk order."""
    return [combine_stats([part[m] for part in parts]) for m in range(len(parts[0]))]


def combine_many_quietly(parts: list[list[Stats]]) -> list[Stats]:
    """:func:`combine_many` without floating-point warnings, for passes whose
    result goes through :func:`check_finite_stats`."""
    return [combine_quietly([part[m] for part in parts]) for m in range(len(parts[0]))]


def loglik_sums(block: np.ndarray, params: GMMParams, start: int,
                weights: np.ndarray | None = None) -> dict[str, np.float64]:
    """One model's sums over the rows of ``block``: ``loglik``, ``n`` and ``assignment``.

    ``assignment`` is the sum of ``log max_k p(k | x)``, the classification
    term of ICL. Sums are weighted by ``weights``; with missing entries
    marginalized, a row with nothing observed carries no information and
    weighs nothing.
    """
    if not np.isfinite(block).all():
        check_finite_block(block, start, allow_nan=params.marginalize)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN rows are refused by name
        log_prob_norm, assigned = log_likelihood_and_assignment_block(block, params, start)
    if params.marginalize:
        observed = (~np.isnan(block).all(axis=1)).astype(np.float64)
        weights = observed if weights is None else weights * observed
    if weights is None:
        return {"loglik": np.float64(log_prob_norm.sum()), "n": np.float64(block.shape[0]),
                "assignment": np.float64(assigned.sum())}
    return {"loglik": np.float64(log_prob_norm @ weights), "n": np.float64(weights.sum()),
            "assignment": np.float64(assigned @ weights)}


def loglik_chunk(block: np.ndarray, models: tuple[GMMParams, ...], start: int,
                 weights: np.ndarray | None = None) -> list[dict]:
    """:func:`loglik_sums` of one chunk for every model of the pass (``gmm-score``)."""
    return [loglik_sums(block, params, start, weights) for params in models]


def total_loglik(data: Dataset, models: Sequence[GMMParams], split_every: int) -> list[dict]:
    """One pass: each model's summed (weighted) log-likelihood ``loglik``, weight ``n`` and
    classification term ``assignment`` (see :func:`loglik_sums`)."""
    return run_pass(data, loglik_chunk, tuple(models), name="gmm-score", split_every=split_every,
                    combine=combine_many)


_MAX_LISTED = 10


def _component_list(components: np.ndarray) -> str:
    """``component 3`` / ``components 0, 2`` (the first few of many, and how many in all)."""
    shown = ", ".join(str(int(k)) for k in components[:_MAX_LISTED])
    if components.size > _MAX_LISTED:
        shown += f", ... ({components.size} in all)"
    return f"component{'s' if components.size > 1 else ''} {shown}"


def nonfinite_components(stats: Stats, covariance_type: str,
                         params: GMMParams | None = None) -> dict[str, np.ndarray]:
    """Which components have non-finite statistics (or parameters), by name.

    Returns
    -------
    dict
        ``{"nk": mask, "s1": mask, "s2": mask[, "parameters": mask]}``, each a
        boolean mask over the components. A non-finite tied ``s2`` (or tied
        precision) is shared, so it marks every component.
    """
    nk = np.asarray(stats["nk"], dtype=np.float64)
    n_components = nk.shape[0]

    def per_component(values: np.ndarray, shared: bool) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if shared:
            return np.full(n_components, not np.isfinite(values).all())
        return ~np.isfinite(values.reshape(n_components, -1)).all(axis=1)

    tied = covariance_type == "tied"
    masks = {
        "nk": ~np.isfinite(nk),
        "s1": per_component(stats["s1"], shared=False),
        "s2": per_component(stats["s2"], shared=tied),
    }
    if params is not None:
        masks["parameters"] = (
            ~np.isfinite(params.weights)
            | per_component(params.means, shared=False)
            | per_component(params.precisions_cholesky, shared=tied)
        )
    return masks


def check_finite_stats(
    stats: Stats,
    covariance_type: str,
    *,
    iteration: int | None = None,
    params: GMMParams | None = None,
    model: int | None = None,
    n_models: int = 1,
    stage: str | None = None,
) -> None:
    """Refuse a pass's reduced statistics if its log-likelihood or moments are not finite.

    Each chunk task has already refused non-finite *input* by its rows
    (:func:`daskgmm._block_checks.check_finite_block`), so anything non-finite here
    was computed from finite data: values whose squares overflow float64, or
    a degenerate component.

    Parameters
    ----------
    stats : Stats
        The whole data set's statistics from one pass (``loglik`` may be absent,
        as after an initialisation pass).
    covariance_type : str
    iteration : int, optional
        1-based EM iteration of the pass, named in the message.
    params : GMMParams, optional
        The parameters the pass used; components with non-finite parameters
        are named too.
    model, n_models : int
        Which of the models sharing the pass this is, named when there are several.
    stage : str, optional
        What produced the statistics, when not an EM iteration (e.g. the
        initialisation).

    Raises
    ------
    NonFiniteError
        Naming the iteration (or stage), the components and the likely cause.
    """
    loglik = float(stats.get("loglik", 0.0))
    masks = nonfinite_components(stats, covariance_type, params)
    bad = np.logical_or.reduce(list(masks.values()))
    if np.isfinite(loglik) and not bad.any():
        return
    if stage is None:
        stage = f"EM iteration {iteration}" if iteration is not None else "an EM iteration"
    if n_models > 1 and model is not None:
        stage += f" of model {model} (counting from 0) of the {n_models} fitted together"
    what = "a non-finite log-likelihood" if not np.isfinite(loglik) else "non-finite statistics"
    parts = []
    if not np.isfinite(loglik):
        parts.append(f"the log-likelihood summed over the rows is {loglik}")
    if bad.any():
        components = np.flatnonzero(bad)
        names = [name for name, mask in masks.items() if mask.any()]
        parts.append(f"{_component_list(components)} {'has' if components.size == 1 else 'have'} "
                     f"non-finite {', '.join(names)}")
    else:
        # Every per-component sum is finite: the total over the rows overflowed,
        # so rows lie extremely far (in Mahalanobis distance) from every component.
        components = np.arange(masks["nk"].size)
        parts.append(f"the statistics of every component are finite, so it is the sum of the "
                     f"rows' log-likelihoods that overflowed: rows lie extremely far (in "
                     f"Mahalanobis distance) from every component ({_component_list(components)})")
    raise NonFiniteError(
        f"{stage} produced {what} from finite data: {'; '.join(parts)}. "
        "The likely cause is data values (or distances between rows and means) whose squares "
        "overflow float64 (magnitudes beyond about 1e154), or a degenerate component with an "
        "extreme precision (a collapsed covariance or an extreme precisions_init). Scale the "
        "data (e.g. standardise the features) or increase reg_covar.",
        iteration=iteration, components=components.tolist(), model=model,
    )


def m_step_params(stats: Stats, params: GMMParams, reg_covar: float) -> tuple[GMMParams, np.ndarray]:
    """The M-step from statistics about ``params``' means: new parameters and covariances."""
    weights, means, covariances = m_step(stats, params.means, params.covariance_type, reg_covar)
    prec_chol = compute_precision_cholesky(covariances, params.covariance_type)
    return GMMParams(weights, means, prec_chol, params.covariance_type,
                     params.marginalize), covariances


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
    check_digest: Callable[[str], None] | None = None,
    update: Update | None = None,
    posterior: Any = None,
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
    check_digest : callable, optional
        Called with the data's content digest once the first pass has read
        every chunk, before its statistics are used (see :func:`run_em_many`).
    update, posterior : Update, object, optional
        Another update than EM's M-step, and its state (see :func:`run_em_many`).

    Returns
    -------
    EMResult
    """
    start = EMResult(params, covariances, lower_bound, list(history), start_iter,
                     posterior=posterior)
    return run_em_many(data, [start], tol=tol, reg_covar=reg_covar, max_iter=max_iter,
                       split_every=split_every, callbacks=callbacks,
                       check_digest=check_digest, updates=[update])[0]


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
    check_digest: Callable[[str], None] | None = None,
    updates: Sequence[Update | None] | None = None,
) -> list[EMResult]:
    """Iterate EM for several models at once, one pass over the data per iteration.

    Each pass reads every chunk once and computes the statistics of every
    model still running from it (:func:`daskgmm._stats.estep_stats_many`).
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
    check_digest : callable, optional
        The first pass also takes a checksum of every chunk it reads and folds
        them, in chunk order, into the data's content digest (no extra pass);
        ``check_digest(digest)`` is called with it before that pass's
        statistics are used, so an exception it raises stops the run before
        any M-step or callback. The digest is passed to the callbacks in
        ``info.fingerprint``.
    updates : sequence of (Update or None), optional
        Per model, its update from the pass's statistics; None (the default
        for every model) is EM's M-step, with the mean log-likelihood as the
        lower bound. A variational model's start holds its posterior.

    Returns
    -------
    list of EMResult
        In the order of ``starts``.
    """
    results = [EMResult(s.params, s.covariances, s.lower_bound, list(s.lower_bounds), s.n_iter,
                        s.converged, s.posterior) for s in starts]
    rules: list[Update | None] = [None] * len(results) if updates is None else list(updates)
    if len(rules) != len(results):
        raise ValueError(f"updates has {len(rules)} values for {len(results)} models.")
    tol = _per_model(tol, len(results), "tol")
    reg_covar = _per_model(reg_covar, len(results), "reg_covar")
    max_iter = _per_model(max_iter, len(results), "max_iter")

    def running(i: int) -> bool:
        return not results[i].converged and results[i].n_iter < max_iter[i]

    active = [i for i in range(len(results)) if running(i)]
    fingerprint: dict | None = None
    while active:
        started = time.perf_counter()
        models = tuple(results[i].params for i in active)
        if fingerprint is None:  # the first pass: also the data's content digest
            stats, digest = run_pass_with_digest(data, estep_chunk, models, name="gmm-estep",
                                                 split_every=split_every,
                                                 combine=combine_many_quietly)
            if check_digest is not None:
                check_digest(digest)
            fingerprint = {**data.fingerprint(), "digest": digest}
        else:
            stats = run_pass(data, estep_chunk, models, name="gmm-estep", split_every=split_every,
                             combine=combine_many_quietly)
        seconds = time.perf_counter() - started
        stop = False
        for i, model_stats in zip(active, stats, strict=True):
            result = results[i]
            check_finite_stats(model_stats, result.params.covariance_type,
                               iteration=result.n_iter + 1, params=result.params,
                               model=i, n_models=len(results))
            rule = rules[i]
            if rule is None:
                params, covariances = m_step_params(model_stats, result.params, reg_covar[i])
                lower_bound = float(model_stats["loglik"] / model_stats["n"])
            else:
                params, covariances, lower_bound, result.posterior = rule(model_stats,
                                                                          result.params)
            change = lower_bound - result.lower_bound
            result.params, result.covariances = params, covariances
            result.lower_bound, result.n_iter = lower_bound, result.n_iter + 1
            result.lower_bounds.append(lower_bound)
            result.converged = abs(change) < tol[i]
            info = IterationInfo(result.n_iter, lower_bound, change, seconds, params, covariances,
                                 result.converged, list(result.lower_bounds), i, len(results),
                                 finished=not running(i), fingerprint=fingerprint,
                                 posterior=result.posterior)
            stop |= any([bool(callback(info)) for callback in callbacks])
        if stop:
            break
        active = [i for i in active if running(i)]
    return results
