"""Connect a batch job to where it runs: the embedded default, a LocalCluster,
a running scheduler (TCP or TLS), or a dask-jobqueue cluster."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from .config import ClusterConfig


def security_from_config(config: ClusterConfig):
    """``distributed.Security`` for a TLS config, or None."""
    if config.tls is None:
        return None
    from distributed.security import Security

    return Security(
        tls_ca_file=config.tls.ca_file,
        tls_client_cert=config.tls.cert_file,
        tls_client_key=config.tls.key_file,
        require_encryption=True,
    )


@contextlib.contextmanager
def connect(config: ClusterConfig, log: TextIO | None = None) -> Iterator[object | None]:
    """Yield a ``distributed.Client`` (or None for the embedded default) for the job.

    Clusters started here are closed on exit; a running scheduler is only
    disconnected from.
    """
    if config.kind == "embedded":
        yield None
        return
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if config.kind == "local":
            cluster = stack.enter_context(local_cluster(
                n_workers=config.n_workers, threads_per_worker=config.threads_per_worker,
                memory_limit=config.memory_limit or "auto", dashboard_address=":0",
            ))
            client = stack.enter_context(Client(cluster))
        elif config.kind == "address":
            client = stack.enter_context(
                Client(config.address, security=security_from_config(config), timeout="30s"))
        else:
            cluster = stack.enter_context(_jobqueue_cluster(config))
            cluster.scale(jobs=config.jobqueue.jobs)
            client = stack.enter_context(Client(cluster))
        if client.dashboard_link:
            print(f"Dask dashboard: {client.dashboard_link}", file=log or sys.stderr, flush=True)
        yield client


# With this setting glibc's malloc backs large buffers with transparent huge pages. dask's
# nanny sets MALLOC_TRIM_THRESHOLD_ for its workers so that freed memory goes
# back to the OS; every multi-MiB buffer (a Zarr chunk read, decoded, copied)
# is then a fresh mmap that faults in 4 KiB at a time. Measured on the
# 2-core machine, reading one 16 MiB Blosc-LZ4 chunk took 31 ms of CPU under
# the nanny's setting, 11 ms with glibc's defaults and 14-21 ms with huge
# pages, which keep the trimming. Needs glibc >= 2.35; other C libraries
# ignore the variable.
WORKER_GLIBC_TUNABLES = "glibc.malloc.hugetlb=1"


def worker_environment() -> dict[str, str]:
    """dask's ``distributed.nanny.pre-spawn-environ`` with the allocator setting
    daskgmm's workers run with (an existing ``GLIBC_TUNABLES`` is kept)."""
    import dask
    import distributed  # noqa: F401  (loads distributed's config defaults)

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    if "GLIBC_TUNABLES" not in environ and "GLIBC_TUNABLES" not in os.environ:
        environ["GLIBC_TUNABLES"] = WORKER_GLIBC_TUNABLES
    return environ


def local_cluster(**kwargs):
    """A ``distributed.LocalCluster`` of worker processes started with
    :func:`worker_environment` (keyword arguments go to ``LocalCluster``)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment()}):
        return LocalCluster(processes=True, **kwargs)


def _jobqueue_cluster(config: ClusterConfig):
    try:
        import dask_jobqueue
    except ImportError:
        raise RuntimeError(
            "cluster.kind 'jobqueue' needs dask-jobqueue: pip install 'daskgmm[jobqueue]'"
        ) from None
    jq = config.jobqueue
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[jq.system]
    kwargs = {"cores": jq.cores, "memory": jq.memory}
    if jq.queue:
        kwargs["queue"] = jq.queue
    if jq.walltime:
        kwargs["walltime"] = jq.walltime
    return cls(**kwargs)
