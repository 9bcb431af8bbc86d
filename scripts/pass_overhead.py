"""Per-pass overhead: seconds of one E-step pass over many tiny chunks, where overhead dominates.

Usage::

    python scripts/pass_overhead.py local 1000,10000          # dask's threaded scheduler
    python scripts/pass_overhead.py distributed 1000,10000    # a 2-worker LocalCluster
    python scripts/pass_overhead.py local 100000 --repeats 1

Each chunk holds 16 rows of 2 features (persisted), K=2; the pass is daskgmm's E-step pass
(``run_pass``), the graph build its ``pass_graph`` alone. Medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import dask.array as da
import numpy as np

from daskgmm._data import as_dataset
from daskgmm._em import combine_many, estep_chunk
from daskgmm._params import GMMParams, compute_precision_cholesky
from daskgmm._passes import pass_graph, run_pass

ROWS_PER_CHUNK = 16


def measure(n_chunks: int, repeats: int) -> tuple[float, float]:
    """Median seconds to build one pass's graph, and to run the whole pass."""
    X = da.random.default_rng(0).normal(size=(n_chunks * ROWS_PER_CHUNK, 2),
                                        chunks=(ROWS_PER_CHUNK, 2)).persist()
    # On a cluster, persist returns at once: wait, so that no pass pays for making the data.
    try:
        from distributed import default_client, wait

        client = default_client()
    except (ImportError, ValueError):  # no distributed, or no client: the data are in memory
        client = None
    if client is not None:
        wait(X)
    data = as_dataset(X)
    prec_chol = compute_precision_cholesky(np.tile(np.eye(2), (2, 1, 1)), "full")
    build, total = [], []
    for r in range(repeats):
        # New parameters each time, as each EM iteration has.
        params = GMMParams(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [1.0, 1.0]]) + r * 1e-3,
                           prec_chol, "full")
        started = time.perf_counter()
        pass_graph(data, estep_chunk, (params,), name="gmm-estep", split_every=8,
                   combine=combine_many)
        build.append(time.perf_counter() - started)
        started = time.perf_counter()
        run_pass(data, estep_chunk, (params,), name="gmm-estep", split_every=8,
                 combine=combine_many)
        total.append(time.perf_counter() - started)
    return float(np.median(build)), float(np.median(total))


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scheduler", choices=["local", "distributed"])
    parser.add_argument("chunks", help="comma-separated numbers of chunks")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.scheduler == "distributed":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
        Client(cluster)
    for n_chunks in (int(n) for n in args.chunks.split(",")):
        build, total = measure(n_chunks, args.repeats)
        print(f"{args.scheduler} chunks={n_chunks:>7,}  graph build {build:.3f} s  "
              f"pass {total:.3f} s  ({total / n_chunks * 1e3:.3f} ms/chunk)", flush=True)


if __name__ == "__main__":
    main()
