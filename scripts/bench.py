"""Side-by-side benchmark: daskgmm against scikit-learn (and Spark MLlib, pycave if installed).

Every library fits the same data from the same initial parameters. Each
(library, case) runs in a fresh subprocess so that its peak memory is its own.

    python scripts/bench.py                      # cases a (all four covariance types) and b
    python scripts/bench.py --cases a --quick    # 1/10 of the rows, one repeat
    python scripts/bench.py --out benchmarks/RESULTS.md

Seconds per EM iteration = (time of 11 iterations - time of 1) / 10, the
median over ``--repeats``. scikit-learn runs with one BLAS thread, as in the
issue's reference table; daskgmm runs on dask's local scheduler with one
thread per core, each task single-threaded in BLAS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

CASES = {
    # name: (covariance types, N, D, K)
    "a": (("full", "tied", "diag", "spherical"), 1_000_000, 16, 8),
    "b": (("full",), 100_000, 32, 16),
    "c": (("diag",), 1_000_000, 64, 64),
}


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    return means[labels] + rng.normal(size=(n, d))


def initial_parameters(X: np.ndarray, k: int, covariance_type: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed + 1)
    means = X[rng.choice(X.shape[0], k, replace=False)]
    d = X.shape[1]
    precision = 1.0 / X[:10_000].var(axis=0).mean()
    precisions = {
        "full": np.tile(np.eye(d) * precision, (k, 1, 1)),
        "tied": np.eye(d) * precision,
        "diag": np.full((k, d), precision),
        "spherical": np.full(k, precision),
    }[covariance_type]
    return {"weights_init": np.full(k, 1.0 / k), "means_init": means, "precisions_init": precisions}


def _time_fit(fit, max_iter: int) -> float:
    started = time.perf_counter()
    fit(max_iter)
    return time.perf_counter() - started


def run_one(library: str, case: str, covariance_type: str, quick: bool, repeats: int) -> dict:
    """Fit in this process; return seconds per iteration, log-likelihood and peak RSS."""
    _, n, d, k = CASES[case]
    if quick:
        n //= 10
    X = make_data(n, d, k)
    init = initial_parameters(X, k, covariance_type)
    warnings.simplefilter("ignore")

    if library == "daskgmm":
        from daskgmm import GaussianMixture

        def fit(max_iter):
            model = GaussianMixture(k, covariance_type=covariance_type, max_iter=max_iter, tol=0,
                                    **init)
            return model.fit(X)
    elif library == "sklearn":
        from sklearn.mixture import GaussianMixture as SkGMM
        from threadpoolctl import threadpool_limits

        def fit(max_iter):
            with threadpool_limits(1, user_api="blas"):
                return SkGMM(k, covariance_type=covariance_type, max_iter=max_iter, tol=0,
                             **init).fit(X)
    else:
        raise ValueError(f"unknown library {library!r}")

    per_iteration = []
    for _ in range(repeats):
        t1 = _time_fit(fit, 1)
        t11 = _time_fit(fit, 11)
        per_iteration.append((t11 - t1) / 10)
    model = fit(11)
    return {
        "library": library, "case": case, "covariance_type": covariance_type, "n": n, "d": d, "k": k,
        "seconds_per_iteration": statistics.median(per_iteration),
        "all_seconds_per_iteration": per_iteration,
        "log_likelihood": float(model.score(X)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def gemm_gflops(threads: int = 2, n: int = 2048) -> float:
    """float64 matrix-product rate of this machine (GFLOP/s), median of 5."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).normal(size=(n, n))
    times = []
    with threadpool_limits(threads, user_api="blas"):
        a @ a
        for _ in range(5):
            started = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times) / 1e9


def _subprocess(library, case, covariance_type, quick, repeats) -> dict:
    cmd = [sys.executable, __file__, "--worker", library, case, covariance_type,
           "--repeats", str(repeats)] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(results: list[dict], gflops: float) -> str:
    import daskgmm
    import sklearn

    lines = [
        "| case | covariance | N | D | K | library | s / iteration | speed-up of daskgmm | peak RSS MiB | mean log-lik |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["case"], r["covariance_type"], r["library"]): r for r in results}
    for r in results:
        ours = by_key.get((r["case"], r["covariance_type"], "daskgmm"))
        speedup = "" if r["library"] == "daskgmm" or ours is None else \
            f"{r['seconds_per_iteration'] / ours['seconds_per_iteration']:.2f}x"
        lines.append(f"| {r['case']} | {r['covariance_type']} | {r['n']:,} | {r['d']} | {r['k']} | "
                     f"{r['library']} | {r['seconds_per_iteration']:.3f} | {speedup} | "
                     f"{r['peak_rss_mib']:.0f} | {r['log_likelihood']:.6f} |")
    header = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"daskgmm {daskgmm.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}; "
              f"measured float64 GEMM rate on 2 threads: {gflops:.1f} GFLOP/s.")
    return header + "\n\n" + "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="a,b", help="comma-separated cases (a, b, c)")
    parser.add_argument("--libraries", default="daskgmm,sklearn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1/10 of the rows")
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    parser.add_argument("--worker", nargs=3, metavar=("LIBRARY", "CASE", "COVARIANCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(*args.worker, args.quick, args.repeats)))
        return 0

    results = []
    for case in args.cases.split(","):
        for covariance_type in CASES[case][0]:
            for library in args.libraries.split(","):
                result = _subprocess(library, case, covariance_type, args.quick, args.repeats)
                print(f"{case} {covariance_type:9s} {library:8s} "
                      f"{result['seconds_per_iteration']:.3f} s/iter  "
                      f"peak {result['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
                results.append(result)
    table = render(results, gemm_gflops())
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(f"# Benchmark results\n\n`python scripts/bench.py {' '.join(sys.argv[1:])}`\n\n"
                                  + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
