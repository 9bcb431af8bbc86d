"""What a worker process pays to run daskgmm's tasks: the modules it imports
and the allocator setting of the clusters daskgmm starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WORKER_MODULES = ["daskgmm._em", "daskgmm._init", "daskgmm._passes", "daskgmm._predict",
                  "daskgmm._online", "daskgmm._zarr", "daskgmm._block_checks",
                  "daskgmm._parquet", "daskgmm._npy"]

# Imported by a worker only for the library's own tasks, they would cost it
# ~160 MiB of its memory limit: scikit-learn ~60, dask.array with pandas and
# pyarrow ~100.
HEAVY = ("sklearn", "dask.array", "pandas", "pyarrow")


def _heavy(modules) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith("dask.array"))


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_task_modules_import_neither_sklearn_nor_dask_array(module):
    # A worker that unpickles a task function imports its module (and the package).
    modules = _imported_after(f"import {module}")
    assert module in modules
    assert _heavy(modules) == []


def _heavy_in_worker() -> list[str]:
    return _heavy(sys.modules)


def test_a_worker_that_fits_zarr_data_imports_no_heavy_module(tmp_path):
    # The whole fit as a worker sees it: the Zarr reads (a ZarrRowReader and its
    # getter, unpickled), the initialisation passes and the EM passes.
    import numpy as np
    import zarr
    from distributed import Client

    from daskgmm import GaussianMixture
    from daskgmm.jobs.cluster import local_cluster

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3)) + 6])
    zarr.create_array(tmp_path / "x.zarr", data=X, chunks=(500, 3))
    with local_cluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        model = GaussianMixture(2, max_iter=5, random_state=0).fit(str(tmp_path / "x.zarr"))
        seen = client.run(_heavy_in_worker)
        ran = client.run(lambda: "daskgmm._em" in sys.modules)
    assert model.converged_ or model.n_iter_ == 5
    assert list(ran.values()) == [True]  # the tasks did run in the worker
    assert list(seen.values()) == [[]]


def test_public_names_still_import_from_the_package():
    import daskgmm

    for name in daskgmm.__all__:
        assert getattr(daskgmm, name) is not None
    from daskgmm import GaussianMixture, fit_many  # noqa: F401

    assert "GaussianMixture" in dir(daskgmm)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        daskgmm.not_a_name  # noqa: B018


def test_local_cluster_workers_get_the_allocator_settings(monkeypatch):
    from distributed import Client

    from daskgmm.jobs.cluster import WORKER_MALLOC_ENVIRONMENT, local_cluster, worker_environment

    for name in WORKER_MALLOC_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    environ = worker_environment()
    for name, value in WORKER_MALLOC_ENVIRONMENT.items():
        assert environ[name] == value  # dask's MALLOC_TRIM_THRESHOLD_=65536 replaced
    with local_cluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        seen = client.run(lambda: {name: os.environ.get(name) for name in WORKER_MALLOC_ENVIRONMENT})
    assert list(seen.values()) == [WORKER_MALLOC_ENVIRONMENT]


def test_a_users_allocator_variables_are_kept(monkeypatch):
    from distributed import Client

    from daskgmm.jobs.cluster import local_cluster, worker_environment

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert worker_environment()["MALLOC_ARENA_MAX"] == "4"
    with local_cluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        seen = client.run(lambda: os.environ.get("MALLOC_ARENA_MAX"))
    assert list(seen.values()) == ["4"]


def test_a_value_in_the_users_dask_config_is_kept(monkeypatch):
    import dask

    from daskgmm.jobs.cluster import WORKER_MALLOC_ENVIRONMENT, worker_environment

    for name in WORKER_MALLOC_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    configured = {"MALLOC_TRIM_THRESHOLD_": "1048576", "OMP_NUM_THREADS": "1"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": configured}):
        environ = worker_environment()
    assert environ["MALLOC_TRIM_THRESHOLD_"] == "1048576"
    assert environ["MALLOC_MMAP_THRESHOLD_"] == WORKER_MALLOC_ENVIRONMENT["MALLOC_MMAP_THRESHOLD_"]
    assert environ["OMP_NUM_THREADS"] == "1"


def test_another_cluster_before_does_not_change_the_settings_nor_do_they_leak(monkeypatch):
    # Every nanny writes its settings into this process's environment, and a
    # nanny prefers an inherited value to its config: after a plain
    # LocalCluster, MALLOC_TRIM_THRESHOLD_=65536 sits in os.environ.
    from distributed import Client, LocalCluster

    from daskgmm.jobs.cluster import WORKER_MALLOC_ENVIRONMENT, local_cluster

    for name in WORKER_MALLOC_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None):
        pass
    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536"
    with local_cluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        seen = client.run(lambda: {name: os.environ.get(name) for name in WORKER_MALLOC_ENVIRONMENT})
        assert os.environ.get("MALLOC_ARENA_MAX") is None  # restored once the cluster started
    assert list(seen.values()) == [WORKER_MALLOC_ENVIRONMENT]
    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536"
