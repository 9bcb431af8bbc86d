"""Per-block kernels for the lazy ``predict`` / ``predict_proba`` / ``score_samples`` maps.

Workers import this module to run them, so it needs only numpy and the
kernels (not scikit-learn, whose import costs each worker about 60 MiB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import numpy as np

from ._block_checks import check_finite_block
from ._density import estimate_log_prob_resp, row_blocks
from ._missing import log_prob_resp_missing, rows_with_missing
from ._params import GMMParams
from .exceptions import NonFiniteError

BlockKernel = Callable[[np.ndarray, GMMParams, int], np.ndarray]


def _checked_log_prob_resp(X: np.ndarray, params: GMMParams, start: int,
                           need_resp: bool) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """:func:`estimate_log_prob_resp` block by block, refusing rows whose result is undefined.

    Yields ``(rows, log_prob_norm, log_resp)`` for consecutive row blocks of
    the chunk (:func:`daskgmm._density.row_blocks`), so that the (rows, K)
    arrays exist one block at a time. A NaN log-likelihood is never
    returned; a row whose density is zero under every component (``-inf``)
    has no responsibilities, so labels and probabilities refuse it too,
    while ``score_samples`` returns ``-inf`` for it, as scikit-learn does.
    """
    for rows in row_blocks(X.shape[0], 3 * params.n_components + X.shape[1]):
        log_prob_norm, log_resp = _log_prob_resp(X[rows], params)
        if _undefined(log_prob_norm, need_resp).any():
            _refuse_undefined_rows(X, params, start, need_resp)
        yield rows, log_prob_norm, log_resp


def _log_prob_resp(X: np.ndarray, params: GMMParams) -> tuple[np.ndarray, np.ndarray]:
    # Overflowing squares become infinite distances (a density of zero), and
    # an expansion that meets them is redone by the whitened path: no NaN
    # survives to the checks.
    if params.marginalize:
        incomplete = rows_with_missing(X)
        if incomplete.any():
            return _log_prob_resp_with_missing(X, params, incomplete)
    with np.errstate(over="ignore", invalid="ignore"):
        return estimate_log_prob_resp(X, params)


def _log_prob_resp_with_missing(X: np.ndarray, params: GMMParams,
                                incomplete: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complete rows by the usual kernels, rows with NaN by their marginal density."""
    log_prob_norm = np.empty(X.shape[0])
    log_resp = np.empty((X.shape[0], params.n_components))
    complete = ~incomplete
    with np.errstate(over="ignore", invalid="ignore"):
        if complete.any():
            log_prob_norm[complete], log_resp[complete] = estimate_log_prob_resp(X[complete], params)
        log_prob_norm[incomplete], log_resp[incomplete] = log_prob_resp_missing(X[incomplete],
                                                                                 params)
    return log_prob_norm, log_resp


def _undefined(log_prob_norm: np.ndarray, need_resp: bool) -> np.ndarray:
    bad = np.isnan(log_prob_norm)
    return bad | ~np.isfinite(log_prob_norm) if need_resp else bad


def _refuse_undefined_rows(X: np.ndarray, params: GMMParams, start: int,
                           need_resp: bool) -> NoReturn:
    """Raise :class:`NonFiniteError` naming the chunk, its undefined rows and the first one."""
    count, first, value = 0, None, None
    for rows in row_blocks(X.shape[0], 3 * params.n_components + X.shape[1]):
        log_prob_norm, _ = _log_prob_resp(X[rows], params)
        bad = np.flatnonzero(_undefined(log_prob_norm, need_resp))
        if bad.size and first is None:
            first, value = rows.start + int(bad[0]), log_prob_norm[bad[0]]
        count += bad.size
    raise NonFiniteError(
        f"The model gives {count} row(s) of finite input in the chunk of rows "
        f"{start}-{start + X.shape[0] - 1} (first: row {start + (first or 0)}) a "
        f"log-likelihood of {value}: the values overflow float64 "
        "under the model's precisions, or the model's parameters are degenerate. "
        "Scale the data, or refit the model.")


def log_likelihood_block(X: np.ndarray, params: GMMParams, start: int = 0) -> np.ndarray:
    """Per-row log-likelihood, shape (n_rows,)."""
    out = np.empty(X.shape[0])
    for rows, log_prob_norm, _ in _checked_log_prob_resp(X, params, start, need_resp=False):
        out[rows] = log_prob_norm
    return out


def log_likelihood_and_assignment_block(X: np.ndarray, params: GMMParams, start: int = 0,
                                        ) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood and log-probability of the most probable component, (n_rows,) each.

    The second is ``log max_k p(k | x)``, the row's term of the classification
    likelihood that ICL adds to BIC; 0 for a row whose density is zero (its
    log-likelihood, ``-inf``, already decides every criterion).
    """
    log_lik = np.empty(X.shape[0])
    assigned = np.empty(X.shape[0])
    for rows, log_prob_norm, log_resp in _checked_log_prob_resp(X, params, start, need_resp=False):
        log_lik[rows] = log_prob_norm
        with np.errstate(invalid="ignore"):
            best = log_resp.max(axis=1)
        assigned[rows] = np.where(np.isfinite(log_prob_norm), best, 0.0)
    return log_lik, assigned


def labels_block(X: np.ndarray, params: GMMParams, start: int = 0) -> np.ndarray:
    """Most probable component of each row, shape (n_rows,)."""
    out = np.empty(X.shape[0], dtype=np.int64)
    for rows, _, log_resp in _checked_log_prob_resp(X, params, start, need_resp=True):
        out[rows] = log_resp.argmax(axis=1)
    return out


def proba_block(X: np.ndarray, params: GMMParams, start: int = 0) -> np.ndarray:
    """Responsibilities, shape (n_rows, n_components)."""
    out = np.empty((X.shape[0], params.n_components))
    for rows, _, log_resp in _checked_log_prob_resp(X, params, start, need_resp=True):
        np.exp(log_resp, out=out[rows])
    return out


def checked_block(block: np.ndarray, kernel: BlockKernel, params: GMMParams,
                  block_info: Any = None) -> np.ndarray:
    """Run ``kernel`` on one block, refusing NaN or infinite rows by their row range."""
    start = block_info[0]["array-location"][0][0] if block_info else 0
    if not np.isfinite(block).all():
        check_finite_block(block, start, allow_nan=params.marginalize)
    return kernel(block, params, start)


def frame_partition(partition: Any, kernel: BlockKernel, params: GMMParams, kind: str,
                    partition_info: Any = None) -> Any:
    """Run ``kernel`` on one pandas partition of a dask DataFrame (or Series).

    Returns a pandas Series named ``kind`` (``labels``, ``score-samples``), or
    for ``proba`` a DataFrame with one column per component, on the
    partition's index. Errors (NaN or infinite rows, rows whose result is
    undefined) name the partition; their row numbers count from its first row.
    """
    import pandas as pd

    values = partition.to_numpy()
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)
            or np.issubdtype(values.dtype, np.bool_)):
        raise ValueError(f"A partition of X has dtype {values.dtype}; daskgmm needs real numbers "
                         "(float, integer or boolean columns).")
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    try:
        out = checked_block(values, kernel, params)
    except ValueError as exc:  # NonFiniteError too
        number = partition_info.get("number") if isinstance(partition_info, dict) else None
        message = (f"In partition {number if number is not None else '?'} of the dask DataFrame "
                   f"(rows counted from the partition's first row): {exc}")
        try:
            error = type(exc)(message)
        except TypeError:
            error = ValueError(message)
        raise error from exc
    if kind == "proba":
        return pd.DataFrame(out, index=partition.index, columns=range(out.shape[1]))
    if kind == "impute":  # the input's shape: its columns, or a Series' name
        if hasattr(partition, "columns"):
            return pd.DataFrame(out, index=partition.index, columns=partition.columns)
        return pd.Series(out[:, 0], index=partition.index, name=partition.name)
    return pd.Series(out, index=partition.index, name=kind)
