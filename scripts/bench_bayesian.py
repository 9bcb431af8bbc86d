"""Benchmark: BayesianGaussianMixture against scikit-learn's, on case a of scripts/bench.py.

Both fit the same in-memory data (1,000,000 x 16 by default, K=8) from the same kind of start,
for a fixed number of iterations; seconds per iteration are the difference between a fit of
``--iterations`` iterations and a fit of one, divided by the iterations between (so that the
initialisation, which differs between the libraries, is not counted), the median of
``--repeats`` runs. daskgmm runs on dask's local scheduler (threads).

    python scripts/bench_bayesian.py
    python scripts/bench_bayesian.py --rows 20000 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np


def _data(rows: int, features: int, components: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(components, features))
    labels = rng.integers(0, components, rows)
    return means[labels] + rng.normal(size=(rows, features))


def _fit_seconds(make, X, iterations: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed number of iterations does not converge
        started = time.perf_counter()
        make(iterations).fit(X)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--covariance-types", default="full,diag")
    args = parser.parse_args(argv)

    import dask
    from sklearn.mixture import BayesianGaussianMixture as SklearnBGMM

    from daskgmm import BayesianGaussianMixture

    X = _data(args.rows, args.features, args.components)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}. N={args.rows:,}, D={args.features}, "
          f"K={args.components}, in memory; seconds per iteration (median of {args.repeats}).\n")
    print("| covariance | library | s / iteration | daskgmm's speed-up |")
    print("|---|---|---|---|")
    common = dict(n_components=args.components, init_params="random_from_data", random_state=0,
                  tol=0.0)
    with dask.config.set(scheduler="threads"):
        for covariance_type in args.covariance_types.split(","):
            per_iteration = {}
            for library, cls in (("daskgmm", BayesianGaussianMixture), ("sklearn", SklearnBGMM)):
                def make(n, cls=cls, covariance_type=covariance_type):
                    return cls(covariance_type=covariance_type, max_iter=n, **common)
                runs = [(_fit_seconds(make, X, args.iterations) - _fit_seconds(make, X, 1))
                        / (args.iterations - 1) for _ in range(args.repeats)]
                per_iteration[library] = statistics.median(runs)
            for library, seconds in per_iteration.items():
                ratio = ("" if library == "daskgmm"
                         else f"{seconds / per_iteration['daskgmm']:.1f}x")
                print(f"| {covariance_type} | {library} | {seconds:.3f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
