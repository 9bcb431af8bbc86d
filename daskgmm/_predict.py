"""Per-block kernels for the lazy ``predict`` / ``predict_proba`` / ``score_samples`` maps.

Workers import this module to run them, so it needs only numpy and the
kernels (not scikit-learn, whose import costs each worker about 60 MiB).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._kernels import GMMParams, estimate_log_prob_resp
from ._passes import check_finite_block

BlockKernel = Callable[[np.ndarray, GMMParams], np.ndarray]


def log_likelihood_block(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """Per-row log-likelihood, shape (n_rows,)."""
    return estimate_log_prob_resp(X, params)[0]


def labels_block(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """Most probable component of each row, shape (n_rows,)."""
    return estimate_log_prob_resp(X, params)[1].argmax(axis=1)


def proba_block(X: np.ndarray, params: GMMParams) -> np.ndarray:
    """Responsibilities, shape (n_rows, n_components)."""
    return np.exp(estimate_log_prob_resp(X, params)[1])


def checked_block(block: np.ndarray, kernel: BlockKernel, params: GMMParams,
                  block_info=None) -> np.ndarray:
    """Run ``kernel`` on one block, refusing NaN or infinite rows by their row range."""
    if not np.isfinite(block).all():
        start = block_info[0]["array-location"][0][0] if block_info else 0
        check_finite_block(block, start)
    return kernel(block, params)
