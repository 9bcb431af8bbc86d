"""Per-block kernels for the lazy ``predict`` / ``predict_proba`` / ``score_samples`` maps.

Workers import this module to run them, so it needs only numpy and the
kernels (not scikit-learn, whose import costs each worker about 60 MiB).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._density import estimate_log_prob_resp
from ._params import GMMParams
from ._passes import check_finite_block
from .exceptions import NonFiniteError

BlockKernel = Callable[[np.ndarray, GMMParams, int], np.ndarray]


def _checked_log_prob_resp(X: np.ndarray, params: GMMParams, start: int,
                           need_resp: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`estimate_log_prob_resp`, refusing rows whose result is undefined.

    A NaN log-likelihood is never returned; a row whose density is zero under
    every component (``-inf``) has no responsibilities, so labels and
    probabilities refuse it too, while ``score_samples`` returns ``-inf`` for
    it, as scikit-learn does.
    """
    # Overflowing squares become infinite distances (a density of zero), and
    # an expansion that meets them is redone by the whitened path: no NaN
    # survives to the checks below.
    with np.errstate(over="ignore", invalid="ignore"):
        log_prob_norm, log_resp = estimate_log_prob_resp(X, params)
    bad = np.isnan(log_prob_norm)
    if need_resp:
        bad |= ~np.isfinite(log_prob_norm)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise NonFiniteError(
            f"The model gives {rows.size} row(s) of finite input in the chunk of rows "
            f"{start}-{start + X.shape[0] - 1} (first: row {start + int(rows[0])}) a "
            f"log-likelihood of {log_prob_norm[rows[0]]}: the values overflow float64 "
            "under the model's precisions, or the model's parameters are degenerate. "
            "Scale the data, or refit the model.")
    return log_prob_norm, log_resp


def log_likelihood_block(X: np.ndarray, params: GMMParams, start: int = 0) -> np.ndarray:
    """Per-row log-likelihood, shape (n_rows,)."""
    return _checked_log_prob_resp(X, params, start, need_resp=False)[0]


def labels_block(X: np.ndarray, params: GMMParams, start: int = 0) -> np.ndarray:
    """Most probable component of each row, shape (n_rows,)."""
    return _checked_log_prob_resp(X, params, start, need_resp=True)[1].argmax(axis=1)


def proba_block(X: np.ndarray, params: GMMParams, start: int = 0) -> np.ndarray:
    """Responsibilities, shape (n_rows, n_components)."""
    return np.exp(_checked_log_prob_resp(X, params, start, need_resp=True)[1])


def checked_block(block: np.ndarray, kernel: BlockKernel, params: GMMParams,
                  block_info: Any = None) -> np.ndarray:
    """Run ``kernel`` on one block, refusing NaN or infinite rows by their row range."""
    start = block_info[0]["array-location"][0][0] if block_info else 0
    if not np.isfinite(block).all():
        check_finite_block(block, start)
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
    return pd.Series(out, index=partition.index, name=kind)
