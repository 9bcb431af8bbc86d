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

import contextlib
import functools
import hashlib
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

import dask
import numpy as np
from dask._task_spec import DataNode, Task, TaskRef, convert_legacy_graph
from dask.base import tokenize
from dask.delayed import Delayed, delayed
from dask.highlevelgraph import HighLevelGraph
from dask.utils import ensure_dict
from threadpoolctl import ThreadpoolController

from ._block_checks import check_weight_block
from ._stats import combine_stats
from .exceptions import NoWorkersError, WorkerLostError

if TYPE_CHECKING:
    from ._data import Dataset

# A chunk kernel is called as fn(block, params, start) or, with sample weights,
# fn(block, params, start, weights); its result and the combine's are any additive value.
ChunkFn = Callable[..., Any]
CombineFn = Callable[[list[Any]], Any]


DEFAULT_NO_WORKERS_TIMEOUT = "10 minutes"
"""How long a pass waits with no worker able to run its tasks, unless the dask
config value ``daskgmm.no-workers-timeout`` says otherwise (``None`` or
``"none"`` there waits without end)."""

_POLL_SECONDS = 1.0


@functools.cache
def _threadpool_controller() -> ThreadpoolController:
    return ThreadpoolController()


class _SingleThreadedBlas:
    """One BLAS thread while any chunk task of this process runs.

    Why at all: the scheduler already runs one task per core, and BLAS
    threads on top of that oversubscribe the cores.

    Why counted: BLAS thread limits are process-wide, so a plain ``with
    limit(1)`` per task races: the first task to finish would restore the
    full thread count under a task still running. Counting the holders keeps
    the limit until the last one leaves.

    Why also around a whole pass (:func:`compute_pass`, from the client
    thread): on the local threaded scheduler the count otherwise drops to
    zero between two tasks of one pass, and changing OpenBLAS's thread count
    while another thread is inside a matrix product made products round
    differently (6 of 16 repeated fits differed in their last bits). Held per
    pass, 0 of 33 differed.

    Why also around a whole fit (the estimator's ``fit``, ``partial_fit`` and
    ``fit_many``): not for reproducibility (without it, 20 repeated full and
    12 tied fits of 160,000 x 48 rows in 16 chunks were each bitwise equal),
    but for speed. Between passes the client's own BLAS calls (M-step,
    Cholesky factors) would run on OpenBLAS's threads, which then spin for a
    while and take a core from the next pass's tasks: case a of the
    benchmark (full, 1,000,000 x 16, K=8, local scheduler, 2 cores) took
    0.255 s per iteration held per pass and 0.224 s held per fit (medians of 3,
    alternating runs).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._limiter: Any = None

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
                         weights: np.ndarray | None = None, digest: bool = False) -> Any:
    """Run a chunk kernel with one BLAS thread: the scheduler already runs one task per core.

    With sample weights, the kernel is called as ``fn(block, params, start, weights)``
    after the weights are checked. With ``digest``, the result is
    ``(result, [chunk_digest(block, weights)])``: the chunk's checksum is taken
    from the bytes the task has read anyway.
    """
    with single_threaded_blas:
        if weights is None:
            result = fn(block, params, start)
        else:
            check_weight_block(weights, start)
            result = fn(block, params, start, weights)
    if digest:
        return result, [chunk_digest(block, weights)]
    return result


def chunk_digest(block: np.ndarray, weights: np.ndarray | None = None) -> int:
    """CRC-32 of one chunk's bytes (and of its weights' bytes, if any).

    About 4 GB/s on one core, so the first pass of a fit pays a few
    milliseconds per 32 MiB chunk for it.
    """
    checksum = zlib.crc32(np.ascontiguousarray(block).data)
    if weights is not None:
        checksum = zlib.crc32(np.ascontiguousarray(weights).data, checksum)
    return checksum


def fold_digests(digests: list[int]) -> str:
    """One content digest of the data from the chunks' checksums, in chunk order.

    Parameters
    ----------
    digests : list of int
        :func:`chunk_digest` of each chunk, first chunk first.

    Returns
    -------
    str
        A BLAKE2b hex digest (32 characters) of the checksums and their number.
    """
    packed = np.asarray(digests, dtype="<u4").tobytes()
    return hashlib.blake2b(len(digests).to_bytes(8, "little") + packed, digest_size=16).hexdigest()


def _combine_with_digests(combine: CombineFn, parts: list[tuple[Any, list[int]]]) -> tuple[Any, list[int]]:
    """``combine`` the results of a digest pass and keep the chunks' checksums in order."""
    return combine([part[0] for part in parts]), [d for part in parts for d in part[1]]


def _no_stats(block: np.ndarray, params: Any, start: int,
              weights: np.ndarray | None = None) -> dict:
    """A chunk kernel that computes nothing: for a pass that only takes the digest."""
    return {}


def _combine_nothing(parts: list[dict]) -> dict:
    return {}


def block_readers(array: Any) -> dict[Any, Task | DataNode]:
    """The graph nodes of the array's blocks, by block key, for the chunk tasks to inline.

    A block's task (say, a Zarr read) then runs inside the chunk task. A block
    held in the graph as data (numpy input, a locally persisted array) is
    inlined too: dask's local scheduler otherwise keeps it in a cache whose
    every task's setup copies it (``set(cache)`` in ``start_state_from_dask``),
    which made a pass over 100,000 chunks 3.5x slower per chunk than over
    10,000. Blocks held by a cluster (persisted futures) are not in the graph
    and stay references.
    """
    graph = ensure_dict(array.__dask_graph__())
    blocks = [row[0] for row in cast(list, array.__dask_keys__())]
    # all_keys: in a legacy task, a string is a reference only if it is a key of the graph.
    tasks = convert_legacy_graph({key: graph[key] for key in blocks if key in graph},
                                 all_keys=graph.keys())
    return {key: task for key, task in tasks.items() if isinstance(task, (Task, DataNode))}


def pass_graph(
    data: Dataset,
    chunk_fn: ChunkFn,
    params: Any,
    *,
    name: str,
    split_every: int,
    combine: CombineFn = combine_stats,
    digest: bool = False,
) -> Delayed:
    """The lazy result of one pass: ``combine`` over ``chunk_fn(block, params, first_row)``
    (``chunk_fn(block, params, first_row, weights)`` if the data carry sample weights).

    With ``digest``, the result is ``(combined, checksums)``: each chunk task
    also returns :func:`chunk_digest` of its block, and the tree reduction
    concatenates them in chunk order (see :func:`fold_digests`).
    """
    weights_name = None if data.weights is None else data.weights.name
    token = tokenize(data.array.name, weights_name, chunk_fn, params, split_every, digest)
    name = f"{name}-{token}"
    if digest:
        combine = functools.partial(_combine_with_digests, combine)
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}.")
    params_key = delayed(params, name=f"{name}-params", pure=True)
    # One low-level layer of plain tasks, not a Delayed object per chunk: building
    # delayed calls cost about 0.5 ms a chunk, half of a pass over tiny chunks.
    # One column chunk: the array's keys are [[(name, i, 0)], ...].
    block_keys: list[Any] = [row[0] for row in cast(list, data.array.__dask_keys__())]
    weight_keys: list[Any] = ([None] * len(block_keys) if data.weights is None
                              else list(data.weights.__dask_keys__()))
    starts = data.row_offsets[:-1]
    readers = block_readers(data.array)
    layer: dict[Any, Any] = {}
    keys: list[Any] = []
    for i, (block, weights, start) in enumerate(zip(block_keys, weight_keys, starts, strict=True)):
        chunk_key = (f"{name}-chunk", i)
        task = Task(chunk_key, _run_single_threaded, chunk_fn, TaskRef(block),
                    TaskRef(params_key.key), int(start),
                    None if weights is None else TaskRef(weights), digest)
        reader = readers.get(block)
        # The chunk's read (or its data) goes inside its statistics task: one task a
        # chunk, and the block never waits in a worker's memory between two tasks.
        layer[chunk_key] = task if reader is None else Task.fuse(reader, task, key=chunk_key)
        keys.append(chunk_key)
    level = 0
    while len(keys) > 1:  # the tree reduction, in chunk order
        parents = []
        for j in range(0, len(keys), split_every):
            combine_key = (f"{name}-combine", level, j // split_every)
            layer[combine_key] = (combine, keys[j : j + split_every])
            parents.append(combine_key)
        keys, level = parents, level + 1
    collections: list[Any] = [data.array, params_key]
    if data.weights is not None:
        collections.append(data.weights)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=collections)
    return Delayed(keys[0], graph, layer=name)


def run_pass(
    data: Dataset,
    chunk_fn: ChunkFn,
    params: Any,
    *,
    name: str,
    split_every: int,
    combine: CombineFn = combine_stats,
) -> Any:
    """Compute one pass on the current scheduler (a distributed client if there is one).

    Raises
    ------
    WorkerLostError
        A task killed its worker each time it ran.
    NoWorkersError
        No worker could run the pass's tasks for longer than the no-workers timeout.
    """
    graph = pass_graph(data, chunk_fn, params, name=name, split_every=split_every, combine=combine)
    return compute_pass(graph, name)


def run_pass_with_digest(
    data: Dataset,
    chunk_fn: ChunkFn,
    params: Any,
    *,
    name: str,
    split_every: int,
    combine: CombineFn = combine_stats,
) -> tuple[Any, str]:
    """:func:`run_pass`, and the content digest of the data folded from the chunks it read.

    Returns
    -------
    result
        As :func:`run_pass`.
    digest : str
        :func:`fold_digests` of every chunk's checksum (with its weights), in chunk order.
    """
    graph = pass_graph(data, chunk_fn, params, name=name, split_every=split_every,
                       combine=combine, digest=True)
    result, digests = compute_pass(graph, name)
    return result, fold_digests(digests)


def data_digest(data: Dataset, split_every: int) -> str:
    """The content digest of ``data`` by a pass that computes nothing else.

    For checks that have no pass of their own to ride on (a finished
    checkpoint resumed); fits take the digest in their first EM pass.
    """
    _, digest = run_pass_with_digest(data, _no_stats, None, name="gmm-digest",
                                     split_every=split_every, combine=_combine_nothing)
    return digest


def no_workers_timeout() -> float | None:
    """Seconds a pass waits with no worker able to run it (``daskgmm.no-workers-timeout``).

    Returns
    -------
    float or None
        None if the config value is ``None`` or ``"none"`` (no bound).

    Raises
    ------
    ValueError
        The config value is not a duration.
    """
    from dask.utils import parse_timedelta

    value = dask.config.get("daskgmm.no-workers-timeout", default=DEFAULT_NO_WORKERS_TIMEOUT)
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (TypeError, ValueError, KeyError):
        raise ValueError(f"The dask config value daskgmm.no-workers-timeout={value!r} is not a "
                         "duration (e.g. '10 minutes', '30s', 600) or None.") from None
    return float(seconds)


def _distributed_client():
    """The ``distributed.Client`` dask would compute on now, or None (dask's own choice)."""
    from dask.base import get_scheduler

    try:
        from distributed import Client
    except ImportError:
        return None
    client = getattr(get_scheduler(), "__self__", None)
    return client if isinstance(client, Client) else None


def _describe_workers(workers: dict) -> str:
    """``2 workers (running, paused) of 200 MiB memory limit each``, from scheduler info."""
    from dask.utils import format_bytes

    if not workers:
        return "no workers"
    states = sorted({str(w.get("status", "unknown")) for w in workers.values()})
    limits = sorted({int(w.get("memory_limit") or 0) for w in workers.values()})
    memory = ("no memory limit" if limits == [0] else
              " / ".join(format_bytes(m) if m else "no" for m in limits) + " memory limit"
              + (" each" if len(workers) > 1 else ""))
    count = f"{len(workers)} worker{'s' if len(workers) > 1 else ''}"
    return f"{count} ({', '.join(states)}) of {memory}"


class _WorkerWatch:
    """What the cluster's workers were like while a pass ran: for error messages.

    Also remembers, per scheduler, the last workers any pass of this process
    saw, so that a pass that starts with none can say what there was.
    """

    last_seen: dict[str, dict] = {}

    def __init__(self, client) -> None:
        self.client = client
        self.scheduler = str(getattr(getattr(client, "scheduler", None), "address", ""))
        self.at_start = self.workers()

    def workers(self) -> dict:
        try:
            workers = dict(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except Exception:  # the message is a courtesy; never hide the real error
            return {}
        if workers:
            _WorkerWatch.last_seen[self.scheduler] = workers
        return workers

    def before(self) -> str:
        """The workers when the pass started, or the last ones an earlier pass saw."""
        if self.at_start:
            return f"when the pass started: {_describe_workers(self.at_start)}"
        earlier = _WorkerWatch.last_seen.get(self.scheduler)
        if earlier:
            return (f"none when the pass started; an earlier pass of this process saw "
                    f"{_describe_workers(earlier)}")
        return "none when the pass started"


def _wait(client, future, name: str, watch: _WorkerWatch) -> Any:
    """The future's result, or :class:`NoWorkersError` once no worker could run it for too long."""
    timeout = no_workers_timeout()
    if timeout is None:
        return future.result()
    poll = max(min(_POLL_SECONDS, timeout / 4), 0.01)
    without_workers_since: float | None = None
    while True:
        try:
            return future.result(timeout=poll)
        except TimeoutError:
            if future.done():  # the task itself raised a TimeoutError
                return future.result()
        workers = watch.workers()
        if any(w.get("status") == "running" for w in workers.values()):
            without_workers_since = None
            continue
        now = time.monotonic()
        if without_workers_since is None:
            without_workers_since = now
        elif now - without_workers_since >= timeout:
            client.cancel(future)
            raise NoWorkersError(_no_workers_message(name, timeout, watch, workers))


def _no_workers_message(name: str, timeout: float, watch: _WorkerWatch, workers: dict) -> str:
    if not workers:
        what = ("no worker is connected to the scheduler: the workers were lost or retired and "
                "none joined. Workers killed for using more memory than their limit are "
                "restarted by their nanny until it gives up; give them more memory or use "
                "smaller chunks, and check that the cluster can start workers (a job queue, "
                "an adaptive cluster)")
    else:
        what = (f"the scheduler has {_describe_workers(workers)}, none running: a paused worker's "
                "memory is past distributed's pause threshold (distributed.worker.memory.pause), "
                "so it lacks the memory to run tasks; give the workers more memory or use "
                "smaller chunks")
    return (f"The pass {name!r} waited {timeout:g} s with no worker able to run its tasks: {what} "
            f"(workers: {watch.before()}). The bound is the dask config value "
            f"daskgmm.no-workers-timeout.")


_pass_watchers: ContextVar[tuple[Callable[[str], None], ...]] = ContextVar(
    "daskgmm_pass_watchers", default=())
_submission_watchers: ContextVar[tuple[Callable[[Any, str], None], ...]] = ContextVar(
    "daskgmm_submission_watchers", default=())


@contextlib.contextmanager
def watch_passes(callback: Callable[[str], None]) -> Iterator[None]:
    """Call ``callback(name)`` after each pass over the data that completes in this block.

    ``name`` says which pass: ``gmm-init-...`` for the initialisation's,
    ``gmm-estep`` for EM's, and so on. For progress displays (``daskgmm``'s
    progress bars); the callback runs in the thread that runs the fit.
    """
    token = _pass_watchers.set((*_pass_watchers.get(), callback))
    try:
        yield
    finally:
        _pass_watchers.reset(token)


@contextlib.contextmanager
def watch_submissions(callback: Callable[[Any, str], None]) -> Iterator[None]:
    """Call ``callback(future, name)`` when a pass is sent to a distributed cluster in this block.

    ``future`` is the pass's result on the cluster, ``name`` says which pass
    (as for :func:`watch_passes`). For progress displays that follow the
    cluster's tasks (``daskgmm predict``'s bar); passes on dask's local
    scheduler are not reported here.
    """
    token = _submission_watchers.set((*_submission_watchers.get(), callback))
    try:
        yield
    finally:
        _submission_watchers.reset(token)


def _passed(name: str) -> None:
    for callback in _pass_watchers.get():
        callback(name)


def compute_pass(graph: Any, name: str) -> Any:
    """Compute a pass's graph on the current scheduler, in bounded time on a distributed client.

    On a distributed client the wait ends with :class:`NoWorkersError` once
    no worker has been able to run the tasks (none connected, or all paused)
    for :func:`no_workers_timeout` seconds; a task that kills its workers
    ends it with :class:`WorkerLostError`. Both name the pass and the
    workers' state.

    Parameters
    ----------
    graph : dask collection
    name : str
        The pass, for messages (``gmm-estep``, ``gmm-init-kmeans``...).
    """
    if isinstance(graph, (list, tuple)):
        # Several collections (``da.store`` of several arrays returns a tuple of
        # store maps whose chunks are empty): one result to wait for.
        graph = delayed(list, pure=True)(list(graph))
    client = _distributed_client()
    watch = None
    try:
        with single_threaded_blas:
            if client is None:
                (result,) = dask.compute(graph)
                _passed(name)
                return result
            watch = _WorkerWatch(client)
            future = client.compute(graph)
            for callback in _submission_watchers.get():
                callback(future, name)
            try:
                result = _wait(client, future, name, watch)
                _passed(name)
                return result
            finally:
                # Now, not when the garbage collector gets to it: until the release
                # reaches the scheduler, a worker holds the result and cannot be retired.
                future.release()
    except NoWorkersError:
        raise
    except Exception as exc:
        kind = type(exc).__name__
        if kind in ("NoWorkerError", "NoValidWorkerError"):  # distributed's own timeout
            raise NoWorkersError(
                f"The pass {name!r} found no worker able to run its tasks within the scheduler's "
                f"distributed.scheduler.no-workers-timeout ({exc}; workers: "
                f"{watch.before() if watch else 'unknown'}). "
                "Workers were lost or retired and none joined, or their memory is full: give "
                "them more memory or use smaller chunks."
            ) from exc
        if kind != "KilledWorker":
            raise
        workers = f" (workers: {watch.before()})" if watch else ""
        raise WorkerLostError(
            f"A task of the pass {name!r} killed a worker each time it ran and was given up "
            f"after distributed's allowed-failures retries ({exc}){workers}. A chunk may need "
            "more memory than a worker has: use smaller chunks or give workers more memory."
        ) from exc
