"""Out-of-core for real: data several times larger than the workers' memory."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from daskgmm import GaussianMixture, open_zarr_array
from daskgmm.synthetic import make_mixture_zarr

WORKER_MEMORY = 320 * 2**20
N_WORKERS = 2
CHUNK_ROWS = 100_000
N_FEATURES = 8


def _start_peak_sampler(dask_worker, interval=0.005):
    """Record the worker process's peak RSS from now on, sampled in a thread."""
    import threading

    import psutil

    process = psutil.Process()
    state = {"peak": process.memory_info().rss, "stop": False}

    def sample():
        while not state["stop"]:
            state["peak"] = max(state["peak"], process.memory_info().rss)
            threading.Event().wait(interval)

    threading.Thread(target=sample, daemon=True).start()
    dask_worker._gmm_peak = state
    return state["peak"]


def _stop_peak_sampler(dask_worker):
    dask_worker._gmm_peak["stop"] = True
    return dask_worker._gmm_peak["peak"]


@pytest.fixture(scope="module")
def big_zarr(tmp_path_factory):
    """float32 data of 3.1x the cluster's total memory limit."""
    n_rows = int(3.1 * N_WORKERS * WORKER_MEMORY / (4 * N_FEATURES))
    path = tmp_path_factory.mktemp("ooc") / "big.zarr"
    make_mixture_zarr(path, n_rows, N_FEATURES, 3, dtype="float32", chunk_rows=CHUNK_ROWS, seed=11)
    return path


@pytest.fixture(scope="module")
def small_memory_cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                      memory_limit=WORKER_MEMORY, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client


def _fit_and_measure(client, X, means_init):
    pids = client.run(lambda: __import__("os").getpid())
    before = client.run(_start_peak_sampler)
    # All three initial parameters given: no k-means passes, two EM passes.
    model = GaussianMixture(3, covariance_type="diag", means_init=means_init, max_iter=2, tol=0,
                            weights_init=np.full(3, 1 / 3), precisions_init=np.ones((3, N_FEATURES)))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=2 does not converge, by design
        model.fit(X)
    peaks = client.run(_stop_peak_sampler)
    assert client.run(lambda: __import__("os").getpid()) == pids, "a worker was restarted"
    return model, {w: peaks[w] - before[w] for w in peaks}, peaks


def test_fit_on_data_larger_than_worker_memory(big_zarr, small_memory_cluster):
    client = small_memory_cluster
    X = open_zarr_array(big_zarr, "X")
    total_limit = N_WORKERS * WORKER_MEMORY
    assert X.nbytes > 3 * total_limit

    means_init = open_zarr_array(big_zarr, "means")[:]
    model, growth, peaks = _fit_and_measure(client, X, means_init)
    assert model.n_iter_ == 2 and np.all(np.isfinite(model.means_))

    # No worker came near the pause threshold (80% of its limit)...
    for worker, peak in peaks.items():
        assert peak < 0.8 * WORKER_MEMORY, (worker, peak / 2**20)
    # ...and the memory a fit adds follows the chunk size, not N: a fit on a
    # quarter of the rows grows the workers by about as much.
    quarter = da.from_zarr(X)[: X.shape[0] // 4]
    _, growth_quarter, _ = _fit_and_measure(client, quarter, means_init)
    chunk_bytes = CHUNK_ROWS * N_FEATURES * 8
    print({w: (g / 2**20, growth_quarter[w] / 2**20) for w, g in growth.items()})
    assert max(growth.values()) < 12 * chunk_bytes
    assert max(growth.values()) < max(growth_quarter.values()) + 4 * chunk_bytes
