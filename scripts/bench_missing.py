"""Benchmark: EM on data with missing entries against the same data complete (issue 16).

For each covariance type, the same Zarr data set (the same rows, streamed from disk on dask's
local scheduler) is fitted complete, with 10% and with 30% of its entries missing completely at
random, from the true parameters, for a few EM iterations. It prints seconds per iteration (the
median), the ratio to the complete data, and the mean log-likelihood; scikit-learn is shown
refusing the data with NaN, as every GMM library but daskgmm does.

    python scripts/bench_missing.py                      # 2,000,000 x 8, K=5
    python scripts/bench_missing.py --rows 20000 --iterations 2   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np


def _seconds_per_iteration(X, covariance_type: str, truth, iterations: int) -> tuple[float, float]:
    from daskgmm import GaussianMixture

    weights, means, covariances = truth
    precisions = {"full": np.linalg.inv(covariances),
                  "tied": np.linalg.inv(covariances.mean(axis=0)),
                  "diag": 1.0 / np.diagonal(covariances, axis1=1, axis2=2),
                  "spherical": 1.0 / np.diagonal(covariances, axis1=1, axis2=2).mean(axis=1)
                  }[covariance_type]
    seconds: list[float] = []
    model = GaussianMixture(len(weights), covariance_type=covariance_type, missing="marginalize",
                            weights_init=weights, means_init=means, precisions_init=precisions,
                            max_iter=iterations, tol=0.0, persist=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed number of iterations does not converge
        model.fit(X, callbacks=[lambda info: seconds.append(info.seconds)])
    return statistics.median(seconds), float(model.lower_bound_)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--components", type=int, default=5)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--fractions", default="0,0.1,0.3")
    parser.add_argument("--covariance-types", default="full,tied,diag,spherical")
    parser.add_argument("--data-dir", default=None, help="where to write the Zarr data (temporary)")
    parser.add_argument("--cluster", choices=["threads", "processes"], default="threads",
                        help="dask's local scheduler (threads), or a LocalCluster of one "
                             "single-threaded worker process per core")
    args = parser.parse_args(argv)

    import dask
    import zarr

    from daskgmm import open_zarr_array
    from daskgmm._passes import single_threaded_blas
    from daskgmm.jobs.synthetic import make_mixture_zarr

    fractions = [float(f) for f in args.fractions.split(",")]
    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="bench-missing-"))
    stores = {}
    for fraction in fractions:
        stores[fraction] = make_mixture_zarr(
            folder / f"missing-{fraction}.zarr", args.rows, args.features, args.components,
            chunk_rows=args.chunk_rows, seed=0, missing_fraction=fraction, overwrite=True)
    truth = tuple(np.asarray(zarr.open_array(str(stores[fractions[0]]), path=name, mode="r")[:])
                  for name in ("weights", "means", "covariances"))

    where = ("dask's local scheduler (threads)" if args.cluster == "threads" else
             "a LocalCluster of single-threaded worker processes, one per core")
    print(f"Machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{where}, data streamed from Zarr on local disk.")
    print(f"N={args.rows:,}, D={args.features}, K={args.components}, chunks of "
          f"{args.chunk_rows:,} rows, {args.iterations} EM iterations from the true parameters; "
          "median seconds per iteration.\n")
    print("| covariance | missing entries | complete rows | s / iteration | vs complete data "
          "| mean log-lik |")
    print("|---|---|---|---|---|---|")
    with contextlib.ExitStack() as stack:
        stack.enter_context(single_threaded_blas)
        if args.cluster == "threads":
            stack.enter_context(dask.config.set(scheduler="threads"))
        else:
            from distributed import Client, LocalCluster

            cluster = stack.enter_context(LocalCluster(
                n_workers=os.cpu_count() or 1, threads_per_worker=1, dashboard_address=None))
            stack.enter_context(Client(cluster))
        for covariance_type in args.covariance_types.split(","):
            base = None
            for fraction in fractions:
                X = open_zarr_array(stores[fraction], "X")
                complete_share = (1 - fraction) ** args.features
                seconds, loglik = _seconds_per_iteration(X, covariance_type, truth,
                                                         args.iterations)
                base = seconds if base is None else base
                print(f"| {covariance_type} | {fraction:.0%} | {complete_share:.0%} | "
                      f"{seconds:.3f} | {seconds / base:.2f}x | {loglik:.6f} |", flush=True)

    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    sample = np.asarray(open_zarr_array(stores[fractions[-1]], "X")[:1000])
    try:
        SklearnGaussianMixture(args.components).fit(sample)
        print("\nscikit-learn fitted data with NaN (unexpected).")
    except ValueError as exc:
        print(f"\nscikit-learn on the same data: ValueError: {str(exc).splitlines()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
