"""Shared fixtures: data offset far from the origin, and a distributed cluster."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predicted_labels(store: str | Path) -> np.ndarray:
    """The ``labels`` a ``predict`` wrote to the Zarr group ``store``."""
    import zarr

    return np.asarray(zarr.open_array(str(store), path="labels", mode="r")[:])


COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def invoke(args, capsys) -> tuple[int, str, str]:
    """Run the ``daskgmm`` command in this process: exit code, stdout, stderr."""
    from daskgmm.jobs.cli import run

    argv = sys.argv
    sys.argv = ["daskgmm", *map(str, args)]
    try:
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out, out.err


def mixture_data(n_per_component: int = 400, n_features: int = 3, n_components: int = 3,
                 offset: float = 1000.0, seed: int = 0) -> np.ndarray:
    """Well-separated anisotropic blobs, offset far from the origin."""
    rng = np.random.default_rng(seed)
    blocks = []
    for k in range(n_components):
        a = rng.normal(size=(n_features, n_features)) * 0.5 + np.eye(n_features)
        blocks.append(rng.normal(size=(n_per_component, n_features)) @ a + 6.0 * k)
    return np.concatenate(blocks) + offset


@pytest.fixture(scope="session")
def X_offset() -> np.ndarray:
    return mixture_data()


@pytest.fixture(scope="session")
def _two_worker_cluster():
    """A LocalCluster of two single-threaded worker processes, started once."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit="1GiB") as cluster:
        yield cluster


@pytest.fixture()
def dask_client(_two_worker_cluster):
    """A client of the shared two-worker cluster, for this test only: once it closes,
    later tests run on dask's local scheduler again (a session-wide default client
    would silently move their tasks, and anything they count, into the workers)."""
    from distributed import Client

    with Client(_two_worker_cluster) as client:
        yield client
