"""Stepwise online EM (Cappé & Moulines, 2009): pure functions on sufficient statistics.

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

import numpy as np

from ._kernels import Stats, _global_centre


def step_size(step: int, decay: float, offset: float) -> float:
    """``gamma_t = (t + offset) ** -decay`` for t >= 1, and 1 for the first batch (t = 0)."""
    if step == 0:
        return 1.0
    return float((step + offset) ** -decay)


def shift_stats(stats: Stats, old: np.ndarray, new: np.ndarray, covariance_type: str) -> Stats:
    """The same statistics about the centres ``new`` instead of ``old`` (K, D).

    With d_k = old_k - new_k (per component) and s1, s2 about ``old``:
    ``s1' = s1 + N_k d``, ``s2' = s2 + d s1^T + s1 d^T + N_k d d^T``
    (diagonal parts only for diag and spherical). A tied ``s2`` is about the
    centre of the centres, so it moves by the difference of those.
    """
    nk, s1 = stats["nk"], stats["s1"]
    d = old - new
    out = dict(stats)
    out["s1"] = s1 + nk[:, np.newaxis] * d
    if covariance_type == "full":
        cross = np.einsum("ki,kj->kij", d, s1)
        out["s2"] = stats["s2"] + cross + cross.transpose(0, 2, 1) + np.einsum("k,ki,kj->kij", nk, d, d)
    elif covariance_type == "tied":
        # S1 = sum over components of the first moment about old's centre.
        centre_old, centre_new = _global_centre(old), _global_centre(new)
        total = s1.sum(axis=0) + nk @ (old - centre_old)
        e = centre_old - centre_new
        out["s2"] = stats["s2"] + np.outer(e, total) + np.outer(total, e) + nk.sum() * np.outer(e, e)
    else:
        out["s2"] = stats["s2"] + 2.0 * d * s1 + nk[:, np.newaxis] * d * d
    return out


def normalised(stats: Stats) -> Stats:
    """Statistics per unit of weight (``n`` becomes 1)."""
    n = float(stats["n"])
    return {key: np.asarray(value, dtype=np.float64) / n for key, value in stats.items()}


def blend(running: Stats | None, batch: Stats, gamma: float) -> Stats:
    """``(1 - gamma) * running + gamma * batch`` key by key (``batch`` if there is no running)."""
    if running is None or gamma >= 1.0:
        return {key: np.array(value, dtype=np.float64, copy=True) for key, value in batch.items()}
    return {key: (1.0 - gamma) * running[key] + gamma * batch[key] for key in batch}
