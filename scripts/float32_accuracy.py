"""Would float32 matrix products keep the log-likelihood within 1e-6 (relative) of float64?

Issue 14 asks for opt-in float32 computation only if it gets there. This
measures the per-row log-density of a full-covariance mixture computed with
the whitening product ``(x - mu) @ L`` (``L`` the precision Cholesky factor)
in float32, against the same formula in float64, on the same float32 data:

* ``f32``: data, means and factors in float32, the product in float32, the
  squared norms summed in float64;
* ``f32-centred64``: ``x - mu`` in float64, then rounded to float32 for the
  product (half the product's memory traffic, none of the centring's).

and the time of one single-threaded pass of each over the data, on the
benchmark's case a data and on hostile data (an offset of 1e4, feature scales
from 1e-3 to 1e6, collinear features)::

    python scripts/float32_accuracy.py
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (case a's data generator)


def log_density(X, weights, means, chols, dtype, centre64: bool) -> np.ndarray:
    """Per-row log p(x) with the whitening product computed in ``dtype``."""
    D = X.shape[1]
    log_det = np.array([np.log(np.diag(c)).sum() for c in chols])
    out = np.empty((X.shape[0], len(weights)))
    for k, (mu, c) in enumerate(zip(means, chols, strict=True)):
        if centre64:
            centred = (X.astype(np.float64) - mu).astype(dtype)
        else:
            centred = X.astype(dtype) - mu.astype(dtype)
        y = centred @ c.astype(dtype)
        out[:, k] = -0.5 * (D * np.log(2 * np.pi) + np.einsum("ij,ij->i", y, y, dtype=np.float64))
        out[:, k] += log_det[k] + np.log(weights[k])
    return logsumexp(out, axis=1)


def hostile(n: int, rng: np.random.Generator) -> np.ndarray:
    X = bench.make_data(n, 16, 8).astype(np.float64)
    X = X * np.logspace(-3, 6, 16) + 1e4
    X[:, 1] = X[:, 0] * 2.0 + rng.normal(scale=1e-6, size=n)  # collinear
    return X


def main() -> None:
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    data = {"case a (1M x 16, K=8)": bench.make_data(1_000_000, 16, 8),
            "hostile (offset 1e4, scales 1e-3..1e6, collinear)": hostile(200_000, rng)}
    print("| data | computation | relative error of the mean log-likelihood | max abs error "
          "per row (nats) | single-thread pass s | vs float64 |")
    print("|---|---|---|---|---|---|")
    for name, X in data.items():
        X32 = X.astype(np.float32)  # the data as a float32 data set holds them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = GaussianMixture(8, covariance_type="full", max_iter=20, random_state=0).fit(
                X32.astype(np.float64))
        args = (gm.weights_, gm.means_, gm.precisions_cholesky_)
        with threadpool_limits(1, user_api="blas"):
            results = {}
            for label, dtype, centre64 in (("float64", np.float64, False),
                                           ("f32", np.float32, False),
                                           ("f32-centred64", np.float32, True)):
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    values = log_density(X32, *args, dtype, centre64)
                    times.append(time.perf_counter() - started)
                results[label] = (values, statistics.median(times))
        reference, t64 = results["float64"]
        for label, (values, seconds) in results.items():
            relative = abs(values.mean() - reference.mean()) / abs(reference.mean())
            print(f"| {name} | {label} | {relative:.1e} | {np.abs(values - reference).max():.1e} "
                  f"| {seconds:.2f} | {seconds / t64:.2f}x |")


if __name__ == "__main__":
    main()
