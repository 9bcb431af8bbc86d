"""Connect a batch job to where it runs: the embedded default, a LocalCluster,
a running scheduler (TCP or TLS), or a dask-jobqueue cluster."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from ..exceptions import ClusterConnectionError
from .config import ClusterConfig, JobqueueConfig

#: How long to wait for a running scheduler (``cluster.kind: address``) when
#: the dask config key ``daskgmm.connect-timeout`` is not set (e.g. by the
#: environment variable ``DASK_DASKGMM__CONNECT_TIMEOUT=60s``).
DEFAULT_CONNECT_TIMEOUT = "10s"


def connect_timeout() -> str:
    """The connect timeout: dask config ``daskgmm.connect-timeout``, default
    :data:`DEFAULT_CONNECT_TIMEOUT`.

    Returns
    -------
    str
        A duration dask understands, e.g. ``"10s"``.
    """
    import dask

    return str(dask.config.get("daskgmm.connect-timeout", DEFAULT_CONNECT_TIMEOUT))


def security_from_config(config: ClusterConfig):
    """``distributed.Security`` for a TLS config, or None.

    Parameters
    ----------
    config : ClusterConfig

    Returns
    -------
    distributed.Security or None

    Raises
    ------
    ClusterConnectionError
        A certificate file of ``cluster.tls`` is missing or unreadable (named).
    """
    if config.tls is None:
        return None
    from distributed.security import Security

    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(config.tls, key)
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            what = "no file" if not os.path.exists(path) else "an unreadable file"
            raise ClusterConnectionError(
                f"cluster.tls.{key}: {what} at {path!r}, needed to connect to "
                f"{config.address}."
            )

    return Security(
        tls_ca_file=config.tls.ca_file,
        tls_client_cert=config.tls.cert_file,
        tls_client_key=config.tls.key_file,
        require_encryption=True,
    )


def _chain(exc: BaseException) -> str:
    """The text of an exception and its causes, for recognising what went wrong."""
    texts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(texts)


def _connection_problem(config: ClusterConfig, address: str, exc: BaseException,
                        timeout: str) -> str:
    """Why connecting to ``address`` failed, in words that name what to check."""
    text = _chain(exc)
    head = f"Could not connect to the Dask scheduler at {address}: "
    tls = config.tls
    if tls is not None and any(s in text for s in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE",
                                                   "PEM lib", "NO_START_LINE")):
        return head + (f"the certificates of cluster.tls could not be loaded ({exc}): check "
                       f"ca_file {tls.ca_file!r}, cert_file {tls.cert_file!r} and key_file "
                       f"{tls.key_file!r} (PEM files, the key belonging to the certificate).")
    if tls is not None and ("CERTIFICATE_VERIFY_FAILED" in text
                            or "certificate does not match" in text):
        return head + ("the scheduler's certificate is not signed by cluster.tls.ca_file "
                       f"{tls.ca_file!r} (or names another host). Use the CA that signed the "
                       "scheduler's certificate.")
    if tls is not None and any(s in text for s in ("UNKNOWN_CA", "BAD_CERTIFICATE",
                                                   "CERTIFICATE_REQUIRED", "SSLEOFError",
                                                   "ConnectionResetError")):
        return head + ("the scheduler closed the TLS handshake: it does not accept the client "
                       f"certificate cluster.tls.cert_file {tls.cert_file!r} (not signed by a "
                       f"CA it trusts) ({exc}).")
    if "Timed out" in text or isinstance(exc, TimeoutError):
        return head + (f"no answer within {timeout} ({exc}). Is a scheduler running there, "
                       "and is the address right? The wait is the dask config key "
                       "daskgmm.connect-timeout (e.g. DASK_DASKGMM__CONNECT_TIMEOUT=60s).")
    if address.startswith("tcp://"):
        return head + (f"the connection was closed at once ({exc}). If the scheduler serves "
                       "TLS, use its tls:// address with cluster.tls certificates.")
    return head + str(exc)


def _scheduler_client(config: ClusterConfig, timeout: str):
    """A ``distributed.Client`` of the running scheduler at ``config.address``."""
    from distributed import Client

    address = config.address
    if address is None:  # refused when a config is validated; not when constructed
        raise ValueError("cluster.kind 'address' needs cluster.address")
    security = security_from_config(config)
    try:
        return Client(address, security=security, timeout=timeout)
    except (OSError, TimeoutError) as exc:  # ssl.SSLError and dask's CommClosedError included
        raise ClusterConnectionError(_connection_problem(config, address, exc, timeout)) from exc


@contextlib.contextmanager
def connect(config: ClusterConfig, log: TextIO | None = None,
            timeout: str | None = None,
            announce: Callable[[str, str | None], None] | None = None) -> Iterator[object | None]:
    """Yield a ``distributed.Client`` (or None for the embedded default) for the job.

    Clusters started here are closed on exit; a running scheduler is only
    disconnected from.

    Parameters
    ----------
    config : ClusterConfig
    log : file, optional
        Where to print the dashboard's address (default: stderr).
    timeout : str, optional
        How long to try to reach a running scheduler (default:
        :func:`connect_timeout`).
    announce : callable, optional
        Called as ``announce(link, problem)`` with the dashboard's address and
        why it does not serve (None if it does), instead of printing to ``log``.

    Yields
    ------
    distributed.Client or None

    Raises
    ------
    ClusterConnectionError
        A running scheduler cannot be reached within ``timeout``, or refuses
        the connection; the message names the address or certificate file.
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
                _scheduler_client(config, timeout or connect_timeout()))
        else:
            if config.jobqueue is None:  # refused when a config is validated; not when constructed
                raise ValueError("cluster.kind 'jobqueue' needs a cluster.jobqueue section")
            cluster = stack.enter_context(_jobqueue_cluster(config.jobqueue))
            cluster.scale(jobs=config.jobqueue.jobs)
            client = stack.enter_context(Client(cluster))
        link = client.dashboard_link
        if link:
            why_not = dashboard_problem(link)
            if announce is not None:
                announce(link, why_not)
            elif why_not is None:
                print(f"Dask dashboard: {link} (while this command runs)", file=log or sys.stderr,
                      flush=True)
            else:
                print(f"Dask dashboard: not available at {link}: {why_not}",
                      file=log or sys.stderr, flush=True)
        yield client


def dashboard_problem(link: str, timeout: float = 5.0) -> str | None:
    """Why the dashboard at ``link`` does not serve its page, or None if it does.

    Parameters
    ----------
    link : str
        The dashboard's address (``Client.dashboard_link``).
    timeout : float
        Seconds to wait for an answer.

    Returns
    -------
    str or None
        None when the page serves; otherwise what is wrong: dask's "needs
        bokeh" page (with the extra to install), or no answer from here.
    """
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the scheduler's host
    try:
        with opener.open(link, timeout=timeout) as response:
            body = response.read(65536)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"no answer from here ({exc})"
    if b"needs bokeh" in body:
        return ("it needs bokeh>=3.1 where the scheduler runs: "
                "pip install 'daskgmm[dashboard]'")
    return None


def dashboard_serves(link: str, timeout: float = 5.0) -> bool:
    """Whether the dashboard at ``link`` answers with its page (see :func:`dashboard_problem`)."""
    return dashboard_problem(link, timeout) is None


# dask's nanny starts its workers with MALLOC_TRIM_THRESHOLD_=65536, so that freed
# memory goes back to the OS. Setting it also pins glibc's mmap threshold at 128 KiB:
# every chunk-sized buffer is then a fresh mmap faulted in 4 KiB at a time, and
# reading one Zarr chunk allocates three (the file's bytes, the decoded chunk, the
# copy zarr returns). On benchmark case d (16 MiB chunks, 2 workers) that cost each
# worker 0.45 s of system time per iteration, a fifth of the pass. With these values
# buffers of up to 32 MiB come from the heap and are reused chunk after chunk
# (0.06 s), one arena lets the reading and computing threads reuse the same freed
# buffers instead of each keeping its own, and free memory beyond 32 MiB at the top
# of the heap still goes back to the OS. Measured there: 1.93-2.11 s per iteration
# before, 1.43-1.57 after; each worker's resident memory after a pass 100 MiB before,
# 144-176 MiB after. glibc reads these variables; other C libraries ignore them.
WORKER_MALLOC_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(32 * 2**20),
    "MALLOC_ARENA_MAX": "1",
}


def _distributed_defaults() -> dict[str, str]:
    """distributed's shipped ``distributed.nanny.pre-spawn-environ`` (its own yaml file)."""
    import distributed
    import yaml

    path = os.path.join(os.path.dirname(distributed.__file__), "distributed.yaml")
    with open(path) as file:
        defaults = yaml.safe_load(file)["distributed"]["nanny"]["pre-spawn-environ"] or {}
    return {name: str(value) for name, value in defaults.items()}


def worker_environment() -> dict[str, str]:
    """dask's ``distributed.nanny.pre-spawn-environ`` with the allocator settings
    daskgmm's workers run with.

    For each variable of :data:`WORKER_MALLOC_ENVIRONMENT`, a value you chose
    wins: first this process's environment, then your dask config. A value
    equal to distributed's own default (``MALLOC_TRIM_THRESHOLD_=65536``) is
    not taken for a choice: every dask nanny writes its settings into its
    parent's environment, so after any other cluster in this process that
    value is there without anyone having chosen it.

    Returns
    -------
    dict of str to str
        Environment variables for the worker processes a nanny spawns.
    """
    import dask

    defaults = _distributed_defaults()
    configured = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    environ = {name: str(value) for name, value in configured.items() if value is not None}
    for name, value in WORKER_MALLOC_ENVIRONMENT.items():
        chosen = [source[name] for source in (os.environ, environ)
                  if name in source and str(source[name]) != defaults.get(name)]
        environ[name] = str(chosen[0]) if chosen else value
    return environ


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def local_cluster(**kwargs):
    """A ``distributed.LocalCluster`` of worker processes started with
    :func:`worker_environment` (keyword arguments go to ``LocalCluster``).

    The allocator variables are also set in this process's environment while
    the cluster starts (a nanny prefers an inherited value to its config) and
    restored afterwards, so that other processes this one starts later do not
    inherit them.
    """
    import dask
    from distributed import LocalCluster

    environ = worker_environment()
    malloc = {name: environ[name] for name in WORKER_MALLOC_ENVIRONMENT}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), _environment(malloc):
        return LocalCluster(processes=True, **kwargs)


def _jobqueue_cluster(jq: JobqueueConfig):
    try:
        import dask_jobqueue
    except ImportError:
        raise RuntimeError(
            "cluster.kind 'jobqueue' needs dask-jobqueue: pip install 'daskgmm[jobqueue]'"
        ) from None
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[jq.system]
    kwargs = {"cores": jq.cores, "memory": jq.memory}
    if jq.queue:
        kwargs["queue"] = jq.queue
    if jq.walltime:
        kwargs["walltime"] = jq.walltime
    return cls(**kwargs)
