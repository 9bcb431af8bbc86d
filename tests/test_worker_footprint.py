"""What a worker process pays to run daskgmm's tasks: the modules it imports
and the allocator setting of the clusters daskgmm starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WORKER_MODULES = ["daskgmm._em", "daskgmm._init", "daskgmm._passes", "daskgmm._predict",
                  "daskgmm._online"]


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_task_modules_do_not_import_sklearn(module):
    # A worker that unpickles a task function imports its module (and the
    # package); scikit-learn would cost it ~60 MiB of its memory limit.
    modules = _imported_after(f"import {module}")
    assert module in modules
    assert not any(m == "sklearn" or m.startswith("sklearn.") for m in modules)


def test_public_names_still_import_from_the_package():
    import daskgmm

    for name in daskgmm.__all__:
        assert getattr(daskgmm, name) is not None
    from daskgmm import GaussianMixture, fit_many  # noqa: F401

    assert "GaussianMixture" in dir(daskgmm)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        daskgmm.not_a_name  # noqa: B018


def test_local_cluster_workers_get_the_allocator_setting(monkeypatch):
    from distributed import Client

    from daskgmm.jobs.cluster import WORKER_GLIBC_TUNABLES, local_cluster, worker_environment

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    environ = worker_environment()
    assert environ["GLIBC_TUNABLES"] == WORKER_GLIBC_TUNABLES
    assert "MALLOC_TRIM_THRESHOLD_" in environ  # dask's own settings are kept
    with local_cluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        seen = client.run(lambda: (os.environ.get("GLIBC_TUNABLES"),
                                   os.environ.get("MALLOC_TRIM_THRESHOLD_")))
    assert list(seen.values()) == [(WORKER_GLIBC_TUNABLES, "65536")]


def test_a_users_glibc_tunables_are_kept(monkeypatch):
    from daskgmm.jobs.cluster import worker_environment

    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert "GLIBC_TUNABLES" not in worker_environment()  # inherited from the user's environment
