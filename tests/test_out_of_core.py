"""Out-of-core for real: fit, score and predict on data 4x larger than the workers' memory."""

from __future__ import annotations

import os
import warnings

import dask.array as da
import numpy as np
import pytest
import zarr

from daskgmm import GaussianMixture, open_zarr_array
from daskgmm.jobs.outputs import write_predictions
from daskgmm.jobs.synthetic import make_mixture_zarr

# A worker process holds about 150 MiB before any task (Python, numpy, dask,
# zarr, the comms); a fit adds about 50 MiB whatever N is. 384 MiB keeps dask's
# pause threshold (80%) clear of that peak by about 100 MiB: at 320 MiB the
# margin was 40 MiB and a worker was paused in 2 of 2 CI runs.
WORKER_MEMORY = 384 * 2**20
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
    """float32 data of 4.1x the cluster's total memory limit."""
    n_rows = int(4.1 * N_WORKERS * WORKER_MEMORY / (4 * N_FEATURES))
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


def _measure(client, work):
    """Run ``work()``; return its result and each worker's peak RSS growth and peak.

    Fails if a worker was restarted or paused meanwhile.
    """
    pids = client.run(os.getpid)
    before = client.run(_start_peak_sampler)
    result = work()
    peaks = client.run(_stop_peak_sampler)
    assert client.run(os.getpid) == pids, "a worker was restarted"
    logs = "\n".join(line for lines in client.get_worker_logs().values() for _, line in lines)
    paused = [line for line in logs.splitlines() if "Pausing worker" in line]
    assert not paused, f"a worker was paused: {paused[0]}"
    return result, {w: peaks[w] - before[w] for w in peaks}, peaks


def _fit(X, means_init):
    # All three initial parameters given: no k-means passes, two EM passes.
    model = GaussianMixture(3, covariance_type="diag", means_init=means_init, max_iter=2, tol=0,
                            weights_init=np.full(3, 1 / 3), precisions_init=np.ones((3, N_FEATURES)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=2 does not converge, by design
        return model.fit(X)


def test_fit_score_predict_on_data_4x_larger_than_worker_memory(big_zarr, small_memory_cluster, tmp_path):
    client = small_memory_cluster
    X = open_zarr_array(big_zarr, "X")
    assert X.nbytes > 4 * N_WORKERS * WORKER_MEMORY
    means_init = open_zarr_array(big_zarr, "means")[:]
    chunk_bytes = CHUNK_ROWS * N_FEATURES * 8
    report = {}

    model, growth, peaks = _measure(client, lambda: _fit(X, means_init))
    assert model.n_iter_ == 2 and np.all(np.isfinite(model.means_))
    report["fit"] = peaks
    _, score_growth, report["score"] = _measure(client, lambda: model.score(X))
    _, predict_growth, report["predict"] = _measure(
        client, lambda: write_predictions(model, X, tmp_path / "p.zarr"))
    labels = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["labels"]
    assert labels.nchunks_initialized == labels.nchunks
    np.testing.assert_array_equal(labels[:CHUNK_ROWS], model.predict(X[:CHUNK_ROWS]))

    print("peak RSS per worker, MiB:", {step: sorted(round(v / 2**20) for v in p.values())
                                        for step, p in report.items()})
    for step, step_peaks in report.items():
        for worker, peak in step_peaks.items():
            assert peak < 0.8 * WORKER_MEMORY, (step, worker, peak / 2**20)
    for growths in (growth, score_growth, predict_growth):
        assert max(growths.values()) < 12 * chunk_bytes

    # The memory a fit adds follows the chunk size, not N: a fit on 1/16 of
    # the rows grows the workers by about as much.
    part = da.from_zarr(X)[: X.shape[0] // 16]
    _, growth_part, _ = _measure(client, lambda: _fit(part, means_init))
    assert max(growth.values()) < max(growth_part.values()) + 4 * chunk_bytes


def test_the_default_kmeans_initialisation_runs_in_workers_too_small_for_its_distances(
        big_zarr, small_memory_cluster):
    """k-means|| gathers about 2K candidates a round; with K=32 a 100,000-row chunk's
    distances to them all take 5 x 64 x 100,000 x 8 bytes = 256 MB at once, with the
    matrix product beside them more than a worker's 384 MiB. In row blocks the tasks
    stay within the chunk-bounded memory of the E-step."""
    client = small_memory_cluster
    n_components = 32
    X = da.from_zarr(open_zarr_array(big_zarr, "X"))[: 10 * CHUNK_ROWS]
    assert 2 * n_components * 5 * CHUNK_ROWS * 8 > 0.6 * WORKER_MEMORY
    model = GaussianMixture(n_components, covariance_type="diag", max_iter=1, tol=0,
                            random_state=0, persist=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=1 does not converge, by design
        fitted, growth, peaks = _measure(client, lambda: model.fit(X))
    assert np.all(np.isfinite(fitted.means_)) and fitted.n_iter_ == 1
    print("peak RSS per worker, MiB:", sorted(round(v / 2**20) for v in peaks.values()))
    assert max(peaks.values()) < 0.8 * WORKER_MEMORY
    assert max(growth.values()) < 12 * CHUNK_ROWS * N_FEATURES * 8
