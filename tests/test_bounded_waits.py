"""A fit never hangs: on a cluster that cannot run it, it fails with a named cause.

The fault is triggered by the fit's own progress (a callback after iteration 2),
not by a timer: the workers are retired, or their memory is filled past the
pause threshold, so that no worker can run the next pass. The fit must then end
with :class:`daskgmm.NoWorkersError` naming the pass and what the workers
lacked, once the configured no-workers bound has passed; the tests assert the
error, not the time. A guard thread turns a hang (the behaviour before) into a
failure instead of a stuck suite.
"""

from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np
import pytest

from daskgmm import GaussianMixture, NoWorkersError, WorkerLostError

from .conftest import mixture_data

GUARD_SECONDS = 300  # only reached if the fit hangs


def _fit_in_guarded_thread(fit):
    """Run ``fit()`` in a daemon thread; re-raise its error; fail if it is still waiting after
    GUARD_SECONDS (a daemon thread, so that a hung fit cannot keep the test process alive)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = fit()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(GUARD_SECONDS)
    if thread.is_alive():
        pytest.fail("the fit hung with no worker able to run it")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _fit(X, callback):
    model = GaussianMixture(3, tol=0.0, max_iter=8, random_state=0, persist=False)
    return lambda: model.fit(X, callbacks=[callback])


@pytest.fixture()
def data() -> da.Array:
    return da.from_array(mixture_data(), chunks=(200, -1))


def test_a_fit_whose_workers_are_all_retired_fails_naming_the_pass(data):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                      memory_limit="512MiB") as cluster, Client(cluster) as client:
        def retire_every_worker(info):
            if info.n_iter != 2:
                return
            # The scheduler refuses to retire a worker that still holds the only copy of a
            # key, such as the last pass's result until its release reaches the scheduler:
            # ask again until no worker is left (each call waits for the scheduler's answer).
            for _ in range(1000):
                workers = list(client.scheduler_info(n_workers=-1)["workers"])
                if not workers:
                    break
                client.retire_workers(workers=workers, close_workers=True)
            assert not client.scheduler_info(n_workers=-1)["workers"], "workers left"

        with dask.config.set({"daskgmm.no-workers-timeout": "1s"}):
            with pytest.raises(NoWorkersError) as error:
                _fit_in_guarded_thread(_fit(data, retire_every_worker))
    message = str(error.value)
    assert "The pass 'gmm-estep' waited 1 s with no worker able to run its tasks" in message
    assert "no worker is connected to the scheduler" in message
    assert "512.00 MiB memory limit each" in message  # what the fit had
    assert "daskgmm.no-workers-timeout" in message
    assert isinstance(error.value, WorkerLostError)  # one family: the workers failed the fit


def _ballast(nbytes: int) -> None:
    """Hold ``nbytes`` of touched memory in the worker process, as a leak or a huge task would."""
    import builtins

    import numpy as np

    builtins._daskgmm_test_ballast = np.ones(nbytes // 8)  # type: ignore[attr-defined]


def test_a_fit_on_workers_whose_memory_is_full_fails_naming_the_pass_and_the_memory(data):
    from distributed import Client, LocalCluster

    # Workers that pause at 60% of 400 MiB and are never restarted: once their memory is full
    # they never run another task, and a pass would wait for them without end.
    with dask.config.set({"distributed.worker.memory.pause": 0.6,
                          "distributed.worker.memory.terminate": False,
                          "distributed.worker.memory.target": False,
                          "distributed.worker.memory.spill": False}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                               memory_limit="400MiB")
    with cluster, Client(cluster) as client:
        def fill_the_workers_memory(info):
            if info.n_iter == 2:
                client.run(_ballast, 400 * 2**20)
                # The workers pause at their memory monitor's next tick: wait for that
                # state (not for a time), so the next pass surely finds them paused.
                for _ in range(6000):
                    workers = client.scheduler_info(n_workers=-1)["workers"].values()
                    if workers and all(w.get("status") == "paused" for w in workers):
                        break
                    threading.Event().wait(0.05)
                else:
                    pytest.fail("the workers never paused")

        with dask.config.set({"daskgmm.no-workers-timeout": "1s"}):
            with pytest.raises(NoWorkersError) as error:
                _fit_in_guarded_thread(_fit(data, fill_the_workers_memory))
    message = str(error.value)
    assert "The pass 'gmm-estep' waited 1 s with no worker able to run its tasks" in message
    assert "2 workers (paused) of 400.00 MiB memory limit each, none running" in message
    assert "pause threshold" in message and "more memory" in message


def test_the_no_workers_bound_is_a_documented_config_value():
    from daskgmm._passes import DEFAULT_NO_WORKERS_TIMEOUT, no_workers_timeout

    assert no_workers_timeout() == 600.0 and DEFAULT_NO_WORKERS_TIMEOUT == "10 minutes"
    with dask.config.set({"daskgmm.no-workers-timeout": "30s"}):
        assert no_workers_timeout() == 30.0
    with dask.config.set({"daskgmm.no-workers-timeout": None}):
        assert no_workers_timeout() is None
    with dask.config.set({"daskgmm.no-workers-timeout": "soon"}):
        with pytest.raises(ValueError, match="not a duration"):
            no_workers_timeout()


def test_a_fit_on_a_cluster_that_works_is_unchanged(data, dask_client):
    with dask.config.set(scheduler="threads"):
        local = GaussianMixture(3, random_state=0).fit(data)
    with dask.config.set({"daskgmm.no-workers-timeout": "1s"}):
        remote = GaussianMixture(3, random_state=0).fit(data)
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-12)
    assert remote.n_iter_ == local.n_iter_
