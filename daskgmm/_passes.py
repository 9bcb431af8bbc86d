"""One pass over the data: map a chunk kernel, tree-reduce the results.

This is the only module that builds the per-pass dask graph. Every pass has
the same shape:

* one key holds the pass's small parameters (each worker receives it once;
  it is part of the graph, so a lost worker's tasks can be recomputed);
* one ``<name>-chunk`` task per row chunk, run with single-threaded BLAS;
* ``<name>-combine`` tasks that add results ``split_every`` at a time, in
  chunk order, so that the floating-point sum does not depend on which task
  finishes first (runs are reproducible, also after a worker is lost).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import dask
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed, delayed
from threadpoolctl import ThreadpoolController

from ._data import Dataset, check_weight_block
from ._kernels import combine_stats

ChunkFn = Callable[[np.ndarray, Any, int], dict]
CombineFn = Callable[[list[dict]], dict]


class WorkerLostError(RuntimeError):
    """A pass's task kept killing the workers that ran it."""


@functools.cache
def _threadpool_controller() -> ThreadpoolController:
    return ThreadpoolController()


class _SingleThreadedBlas:
    """One BLAS thread while any chunk task of this process runs.

    BLAS thread limits are process-wide, so a plain ``with limit(1)`` per task
    races: the first task to finish would restore the full thread count under
    a task still running. Counting the holders keeps the limit until the last
    one leaves. Changing OpenBLAS's thread count between tasks also made
    matrix products round differently (6 of 16 repeated fits differed in
    their last bits), so passes and fits hold the limit from the client
    thread too (0 of 33 differed).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._limiter = None

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._limiter = _threadpool_controller().limit(limits=1, user_api="blas")
            self._active += 1

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


single_threaded_blas = _SingleThreadedBlas()


def _run_single_threaded(fn: ChunkFn, block: np.ndarray, params: Any, start: int,
                         weights: np.ndarray | None = None) -> dict:
    """Run a chunk kernel with one BLAS thread: the scheduler already runs one task per core.

    With sample weights, the kernel is called as ``fn(block, params, start, weights)``
    after the weights are checked.
    """
    with single_threaded_blas:
        if weights is None:
            return fn(block, params, start)
        check_weight_block(weights, start)
        return fn(block, params, start, weights)


def check_finite_block(block: np.ndarray, start: int) -> None:
    """Raise ``ValueError`` naming the rows if a chunk holds NaN or infinity.

    Returns quietly if every row is finite: a non-finite result computed from
    finite rows (overflow, a degenerate component) is not the input's fault,
    and the pass's caller reports it once the chunks are reduced
    (:func:`daskgmm._em.check_finite_stats`).
    """
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        stop = start + block.shape[0]
        kind = "NaN" if np.isnan(block[bad]).any() else "infinity"
        raise ValueError(
            f"Input X contains {kind}: {bad.size} row(s) in the chunk of rows "
            f"{start}-{stop - 1}, first at row {start + int(bad[0])}."
        )


def tree_reduce(parts: list[Delayed], combine: CombineFn, split_every: int, name: str) -> Delayed:
    """Combine ``parts`` in a tree of fan-in ``split_every``, keeping their order."""
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}.")
    level = 0
    while len(parts) > 1:
        parts = [
            delayed(combine, pure=True)(
                parts[i : i + split_every], dask_key_name=(f"{name}-combine", level, i // split_every)
            )
            for i in range(0, len(parts), split_every)
        ]
        level += 1
    return parts[0]


def pass_graph(
    data: Dataset,
    chunk_fn: ChunkFn,
    params: Any,
    *,
    name: str,
    split_every: int,
    combine: CombineFn = combine_stats,
) -> Delayed:
    """The lazy result of one pass: ``combine`` over ``chunk_fn(block, params, first_row)``
    (``chunk_fn(block, params, first_row, weights)`` if the data carry sample weights)."""
    weights_name = None if data.weights is None else data.weights.name
    token = tokenize(data.array.name, weights_name, chunk_fn, params, split_every)
    name = f"{name}-{token}"
    params_key = delayed(params, name=f"{name}-params", pure=True)
    blocks = data.array.to_delayed(optimize_graph=False).ravel()
    if data.weights is None:
        weight_blocks = [None] * len(blocks)
    else:
        weight_blocks = data.weights.to_delayed(optimize_graph=False).ravel()
    starts = data.row_offsets[:-1]
    parts = [
        delayed(_run_single_threaded, pure=True)(
            chunk_fn, block, params_key, int(start), weights, dask_key_name=(f"{name}-chunk", i)
        )
        for i, (block, weights, start) in enumerate(zip(blocks, weight_blocks, starts, strict=True))
    ]
    return tree_reduce(parts, combine, split_every, name)


def run_pass(
    data: Dataset,
    chunk_fn: ChunkFn,
    params: Any,
    *,
    name: str,
    split_every: int,
    combine: CombineFn = combine_stats,
) -> dict:
    """Compute one pass on the current scheduler (a distributed client if there is one)."""
    graph = pass_graph(data, chunk_fn, params, name=name, split_every=split_every, combine=combine)
    try:
        with single_threaded_blas:
            (result,) = dask.compute(graph)
    except Exception as exc:
        if type(exc).__name__ != "KilledWorker":
            raise
        raise WorkerLostError(
            f"A task of the pass {name!r} killed a worker each time it ran and was given up "
            f"after distributed's allowed-failures retries ({exc}). A chunk may need more "
            "memory than a worker has: use smaller chunks or give workers more memory."
        ) from exc
    return result
