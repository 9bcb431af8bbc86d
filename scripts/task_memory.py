"""Peak memory one chunk task allocates, for each kind of chunk task (README, Performance).

A 1,000,000-row float32 chunk of 16 features and K=64 components; the peak is what numpy allocates during the task (tracemalloc), the chunk itself
not counted. Run: ``python scripts/task_memory.py``.
"""

from __future__ import annotations

import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np

from daskgmm import _init
from daskgmm._em import estep_chunk, loglik_chunk
from daskgmm._params import GMMParams, compute_precision_cholesky
from daskgmm._predict import labels_block, log_likelihood_block, proba_block

ROWS, FEATURES, COMPONENTS = 1_000_000, 16, 64


def peak_mib(task: Callable[[], object]) -> float:
    """MiB allocated at the peak of ``task()`` beyond what existed before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        task()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / 2**20


def main() -> None:
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    chunk = rng.normal(size=(ROWS, FEATURES)) + rng.integers(0, 8, size=(ROWS, 1))
    chunk = chunk.astype(np.float32)
    means = chunk[rng.choice(ROWS, COMPONENTS, replace=False)].astype(np.float64)
    covariances = np.tile(np.eye(FEATURES), (COMPONENTS, 1, 1))
    params = GMMParams(np.full(COMPONENTS, 1 / COMPONENTS), means,
                       compute_precision_cholesky(covariances, "full"), "full")
    candidates = chunk[rng.choice(ROWS, COMPONENTS, replace=False)].astype(np.float64)
    origin = chunk[:1000].mean(axis=0).astype(np.float64)
    moments = _init._moments_chunk(chunk, None, 0)
    tasks: list[tuple[str, Callable[[], object]]] = [
        ("k-means: moments", lambda: _init._moments_chunk(chunk, None, 0)),
        ("k-means: coreset (output included)", lambda: _init._coreset_chunk(
            chunk, _init._CoresetParams(moments, (_init.coreset_size(COMPONENTS),), (3,)), 0)),
        ("k-means: Lloyd pass", lambda: _init._lloyd_chunk(
            chunk, _init._LloydParams((candidates[:COMPONENTS],), ("full",), origin), 0)),
        ("random responsibilities", lambda: _init._random_resp_chunk(
            chunk, _init._RandomRespParams((5,), (COMPONENTS,), ("full",), origin), 0)),
        ("E-step (full)", lambda: estep_chunk(chunk, (params,), 0)),
        ("score", lambda: loglik_chunk(chunk, (params,), 0)),
        ("predict", lambda: labels_block(chunk, params, 0)),
        ("score_samples", lambda: log_likelihood_block(chunk, params, 0)),
        ("predict_proba (output included)", lambda: proba_block(chunk, params, 0)),
    ]
    print(f"chunk: {ROWS:,} x {FEATURES} float32 ({chunk.nbytes / 2**20:.0f} MiB), "
          f"K={COMPONENTS}")
    print("| task | peak MiB |\n|---|---|")
    for name, task in tasks:
        print(f"| {name} | {peak_mib(task):.0f} |")


if __name__ == "__main__":
    main()
