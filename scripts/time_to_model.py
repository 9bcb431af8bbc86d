"""Time to a fitted model: the whole job, from the default initialisation to convergence.

Benchmark case f (issue 14). One data set, larger than the dask workers' total
memory limit, as Zarr (for daskgmm) and as Parquet on disk (for Spark), and
three ways to a fitted model, each in a fresh interpreter:

* **daskgmm** streams the Zarr data on a ``LocalCluster`` (``--workers``
  processes of one thread, each with ``--worker-memory-mib``), with every
  default of ``GaussianMixture`` (``init_params='kmeans'``, ``tol=1e-3``,
  ``max_iter=100``) except ``random_state``.
* **Spark MLlib** (``pyspark.ml.clustering.GaussianMixture``, every default:
  random initialisation from a sample, ``tol=0.01`` on the total
  log-likelihood, ``maxIter=100``, unless ``--spark-max-iter``) reads the
  Parquet files in ``local[2]`` with Spark's default driver memory (1g).
* **scikit-learn** (every default, ``n_init=1``) fits the largest sample of
  rows that fits in the same memory as daskgmm's workers together: the
  sample's rows are calibrated from the peak memory of a small fit.

Reported: passes over the data (daskgmm counts its passes; Spark's are its EM
iterations plus the two of its sampling initialisation; scikit-learn's are
over its sample), wall seconds from the start of the fit (data opening
included, cluster start-up not), and the mean log-likelihood per row of the
fitted model over **all** rows, computed the same way for the three (in this
process, chunk by chunk, by scikit-learn's formula).

    python scripts/time_to_model.py --rows 10500000 --out /tmp/case_f.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (exact peak memory of the workers: VmHWM)

D, K, CHUNK_ROWS = 16, 8, 32_768  # 4 MiB float64 chunks
SEED = 0


def make_data(directory: Path, rows: int) -> tuple[Path, Path]:
    """The Zarr data (case d's generator) and the same rows as Parquet files."""
    from daskgmm.jobs.synthetic import make_mixture_zarr

    zarr_path = directory / f"case-f-{rows}.zarr"
    if not zarr_path.exists():
        make_mixture_zarr(zarr_path, rows, D, K, chunk_rows=CHUNK_ROWS, seed=3)
    parquet_path = directory / f"case-f-{rows}.parquet"
    if not parquet_path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        from daskgmm import open_zarr_array

        X = open_zarr_array(zarr_path, "X")
        tmp = parquet_path.with_suffix(".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        rows_per_file = 32 * CHUNK_ROWS
        for f, start in enumerate(range(0, rows, rows_per_file)):
            with pq.ParquetWriter(tmp / f"part-{f:05d}.parquet",
                                  pa.schema([(f"x{j}", pa.float64()) for j in range(D)])) as writer:
                for s in range(start, min(start + rows_per_file, rows), CHUNK_ROWS):
                    block = np.asarray(X[s:s + CHUNK_ROWS])
                    writer.write_table(pa.table({f"x{j}": block[:, j] for j in range(D)}),
                                       row_group_size=CHUNK_ROWS)
        tmp.rename(parquet_path)
    return zarr_path, parquet_path


def mean_log_likelihood(zarr_path: Path, weights, means, covariances) -> float:
    """Mean log-likelihood per row of all rows, read chunk by chunk (scikit-learn's formula)."""
    from scipy.special import logsumexp
    from sklearn.mixture._gaussian_mixture import (
        _compute_precision_cholesky,
        _estimate_log_gaussian_prob,
    )

    from daskgmm import open_zarr_array

    X = open_zarr_array(zarr_path, "X")
    precisions_cholesky = _compute_precision_cholesky(np.asarray(covariances), "full")
    total = 0.0
    for start in range(0, X.shape[0], 8 * CHUNK_ROWS):
        block = np.asarray(X[start:start + 8 * CHUNK_ROWS])
        log_prob = _estimate_log_gaussian_prob(block, np.asarray(means), precisions_cholesky, "full")
        total += float(logsumexp(log_prob + np.log(weights), axis=1).sum())
    return total / X.shape[0]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------
# The three fits, each run in its own interpreter (``--run LIBRARY``)
# ---------------------------------------------------------------------------


def run_daskgmm(args) -> dict:
    from distributed import Client

    from daskgmm import GaussianMixture, open_zarr_array
    from daskgmm._passes import watch_passes
    from daskgmm.jobs.cluster import local_cluster

    passes: Counter[str] = Counter()

    def count(name: str) -> None:
        passes["init" if name.startswith("gmm-init") else "em"] += 1

    with local_cluster(n_workers=args.workers, threads_per_worker=1,
                       memory_limit=args.worker_memory_mib * 2**20,
                       dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(bench._start_peak_sampler)
        model = GaussianMixture(K, covariance_type="full", random_state=SEED, persist=False)
        started = time.perf_counter()
        with watch_passes(count):
            model.fit(open_zarr_array(args.zarr, "X"))
        seconds = time.perf_counter() - started
        peaks = client.run(bench._stop_peak_sampler)
    return {"library": "daskgmm", "rows_fitted": args.rows,
            "init_passes": passes["init"], "em_passes": passes["em"],
            "passes": passes["init"] + passes["em"], "iterations": int(model.n_iter_),
            "converged": bool(model.converged_), "seconds": seconds,
            "peak_rss_mib": max(peaks.values()) / 2**20,
            "weights": model.weights_.tolist(), "means": model.means_.tolist(),
            "covariances": model.covariances_.tolist()}


def run_spark(args) -> dict:
    from pyspark.ml.clustering import GaussianMixture
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master("local[2]").appName("daskgmm-time-to-model")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        started = time.perf_counter()
        frame = spark.read.parquet(str(args.parquet))
        features = VectorAssembler(inputCols=frame.columns, outputCol="features").transform(frame)
        estimator = GaussianMixture(k=K, seed=SEED)
        if args.spark_max_iter is not None:
            estimator = estimator.setMaxIter(args.spark_max_iter)
        model = estimator.fit(features)
        seconds = time.perf_counter() - started
        iterations = int(model.summary.numIter)
        gaussians = model.gaussians
        means = [g.mean.toArray().tolist() for g in gaussians]
        covariances = [g.cov.toArray().tolist() for g in gaussians]
        weights = list(model.weights)
    finally:
        spark.stop()
    return {"library": "spark", "rows_fitted": args.rows, "init_passes": 2,
            "em_passes": iterations, "passes": 2 + iterations, "iterations": iterations,
            "converged": iterations < (args.spark_max_iter or 100), "seconds": seconds,
            "max_iter": args.spark_max_iter or 100, "peak_rss_mib": None,
            "weights": weights, "means": means, "covariances": covariances}


def run_sklearn(args) -> dict:
    import tracemalloc

    from sklearn.mixture import GaussianMixture

    from daskgmm import open_zarr_array

    X = np.asarray(open_zarr_array(args.zarr, "X")[: args.sample_rows])  # rows are i.i.d.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixture(K, covariance_type="full", random_state=SEED)
        tracemalloc.start()  # numpy reports its buffers: the fit's own peak allocation
        started = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - started
        fit_memory = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {"library": "sklearn", "rows_fitted": len(X), "init_passes": None,
            "em_passes": int(model.n_iter_), "passes": None, "iterations": int(model.n_iter_),
            "converged": bool(model.converged_), "seconds": seconds,
            "peak_rss_mib": _peak_rss_mib(), "fit_memory_mib": fit_memory / 2**20,
            "sample_memory_mib": X.nbytes / 2**20,
            "weights": model.weights_.tolist(), "means": model.means_.tolist(),
            "covariances": model.covariances_.tolist()}


RUNNERS = {"daskgmm": run_daskgmm, "spark": run_spark, "sklearn": run_sklearn}


def _subprocess(library: str, args, **extra) -> dict:
    cmd = [sys.executable, __file__, "--run", library, "--rows", str(args.rows),
           "--data-dir", str(args.data_dir), "--workers", str(args.workers),
           "--worker-memory-mib", str(args.worker_memory_mib)]
    if args.spark_max_iter is not None:
        cmd += ["--spark-max-iter", str(args.spark_max_iter)]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{library} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sklearn_sample_rows(args, budget_mib: float) -> int:
    """The most rows whose sample and scikit-learn fit (its peak allocation, by tracemalloc)
    stay within ``budget_mib``, from a calibration fit on 200,000 rows."""
    calibration = 200_000
    row = _subprocess("sklearn", args, sample_rows=calibration)
    per_row = (row["fit_memory_mib"] + row["sample_memory_mib"]) * 2**20 / calibration
    return int(budget_mib * 2**20 / per_row)


def table(rows: list[dict], args, budget_mib: float) -> str:
    lines = [
        f"Case f: {args.rows:,} rows x {D} features, K={K}, full covariance, "
        f"{args.rows * D * 8 / 2**20:,.0f} MiB of float64 "
        f"({args.rows * D * 8 / 2**20 / budget_mib:.1f}x the dask workers' memory: "
        f"{args.workers} x {args.worker_memory_mib} MiB). Machine: {platform.processor() or 'x86_64'}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "| library | rows fitted | passes (init + EM) | EM iterations | converged | seconds "
        "| mean log-lik, all rows | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        passes = (f"{r['passes']} ({r['init_passes']} + {r['em_passes']})" if r["passes"]
                  else f"{r['em_passes']} EM over its sample, plus k-means")
        converged = "yes" if r["converged"] else f"no (max_iter {r.get('max_iter', 100)})"
        peak = "" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
        lines.append(f"| {r['library']} | {r['rows_fitted']:,} | {passes} | {r['iterations']} "
                     f"| {converged} | {r['seconds']:.1f} | {r['log_likelihood']:.6f} | {peak} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory-mib", type=int, default=160)
    parser.add_argument("--libraries", default="daskgmm,sklearn,spark")
    parser.add_argument("--spark-max-iter", type=int, default=None,
                        help="cap Spark's EM iterations (its default is 100)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/benchdata"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--run", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--sample-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    args.zarr, args.parquet = make_data(args.data_dir, args.rows)
    if args.run:
        print(json.dumps(RUNNERS[args.run](args)))
        return
    budget_mib = args.workers * args.worker_memory_mib
    rows = []
    for library in args.libraries.split(","):
        extra = {}
        if library == "sklearn":
            extra["sample_rows"] = min(args.rows, sklearn_sample_rows(args, budget_mib))
        row = _subprocess(library, args, **extra)
        row["log_likelihood"] = mean_log_likelihood(args.zarr, row["weights"], row["means"],
                                                    row["covariances"])
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items()
                          if k not in ("weights", "means", "covariances")}), flush=True)
    text = table(rows, args, budget_mib)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
