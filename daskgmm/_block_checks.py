"""Checks of one block of input, run inside the chunk tasks as the passes read it.

They name the offending rows by their position in the whole data set
(``start`` is the block's first row). Like every module whose functions run
as tasks, this one imports numpy only.
"""

from __future__ import annotations

import numpy as np


def check_finite_block(block: np.ndarray, start: int, allow_nan: bool = False) -> None:
    """Raise ``ValueError`` naming the rows if a chunk holds NaN or infinity.

    With ``allow_nan`` (missing entries are marginalized), only infinity is
    refused. Returns quietly if every row is finite: a non-finite result computed from
    finite rows (overflow, a degenerate component) is not the input's fault,
    and the pass's caller reports it once the chunks are reduced
    (:func:`daskgmm._em.check_finite_stats`).
    """
    finite = (~np.isinf(block) if allow_nan else np.isfinite(block)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        stop = start + block.shape[0]
        kind = "infinity" if allow_nan or not np.isnan(block[bad]).any() else "NaN"
        advice = ("" if kind == "infinity" else
                  " To fit with missing entries (as NaN), use missing='marginalize'.")
        raise ValueError(
            f"Input X contains {kind}: {bad.size} row(s) in the chunk of rows "
            f"{start}-{stop - 1}, first at row {start + int(bad[0])}.{advice}"
        )


def check_weight_block(weights: np.ndarray, start: int) -> None:
    """Raise ``ValueError`` naming the row if a chunk's weights are negative, NaN or infinite."""
    bad = ~(np.isfinite(weights) & (weights >= 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = weights[first]
        kind = "NaN" if np.isnan(value) else "infinite" if np.isinf(value) else "negative"
        raise ValueError(
            f"sample_weight must be finite and non-negative: {int(bad.sum())} {kind} or invalid "
            f"weight(s), first at row {start + first} (value {value})."
        )
