"""Side-by-side benchmark of daskgmm against scikit-learn, Spark MLlib and pycave.

Every library fits the same data from the same initial parameters, in one
run; each (library, case) runs in a fresh subprocess so that its peak memory
is its own.

    python scripts/bench.py                                  # every case, every peer
    python scripts/bench.py --out benchmarks/RESULTS.md      # ... and record the tables
    python scripts/bench.py --cases a --libraries daskgmm,sklearn
    python scripts/bench.py --scale 0.001 --repeats 1        # tiny sizes (what CI runs)

Cases (N, D, K as in the performance issue):

* a: each covariance type, N=1,000,000, D=16, K=8, in memory;
* b: full, N=100,000, D=32, K=16, in memory (pycave's published case), with
  the fraction of the machine's GEMM rate that the pass reaches;
* c: diag, N=1,000,000, D=64, K=64, in memory;
* d: full, D=16, K=8, streamed from a Zarr store on a LocalCluster of two
  single-threaded worker processes whose total memory limit is a quarter of
  the data; against the same fit with the data in memory, and the scaling
  with N (three sizes, each 4x the last) and with the number of workers.

Seconds per EM iteration = (time of 11 iterations - time of 1) / 10, the
median over ``--repeats``. scikit-learn runs with one BLAS thread, as in the
issue's reference table; daskgmm runs on dask's local scheduler (one thread
per core) or the LocalCluster, each task single-threaded in BLAS; Spark in
``local[2]``; pycave on the CPU.
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
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Case:
    covariance_types: tuple[str, ...]
    n: int
    d: int
    k: int
    libraries: tuple[str, ...]  # the peers that apply


IN_MEMORY_CASES = {
    "a": Case(("full", "tied", "diag", "spherical"), 1_000_000, 16, 8,
              ("daskgmm", "sklearn", "spark", "pycave")),
    "b": Case(("full",), 100_000, 32, 16, ("daskgmm", "sklearn", "spark", "pycave")),
    "c": Case(("diag",), 1_000_000, 64, 64, ("daskgmm", "sklearn", "pycave")),
}
SPARK_COVARIANCES = ("full",)

# Case d: the data are OUT_OF_CORE_FACTOR times the workers' total memory limit.
WORKER_MEMORY = 320 * 2**20
OUT_OF_CORE_FACTOR = 4.2
OUT_OF_CORE_D, OUT_OF_CORE_K = 16, 8
OUT_OF_CORE_CHUNK_ROWS = 131_072  # 16 MiB of float64 rows


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    return means[labels] + rng.normal(size=(n, d))


def initial_parameters(sample: np.ndarray, k: int, covariance_type: str, seed: int = 0) -> dict:
    """Uniform weights, k rows of ``sample`` as means, isotropic precisions."""
    rng = np.random.default_rng(seed + 1)
    means = sample[rng.choice(sample.shape[0], k, replace=False)].astype(np.float64)
    d = sample.shape[1]
    precision = 1.0 / sample[:10_000].var(axis=0).mean()
    precisions = {
        "full": np.tile(np.eye(d) * precision, (k, 1, 1)),
        "tied": np.eye(d) * precision,
        "diag": np.full((k, d), precision),
        "spherical": np.full(k, precision),
    }[covariance_type]
    return {"weights_init": np.full(k, 1.0 / k), "means_init": means, "precisions_init": precisions}


# ---------------------------------------------------------------------------
# Fitters: fit(max_iter) runs exactly max_iter EM iterations from the same
# initial parameters and returns the mean log-likelihood of the data under
# the fitted model (the scoring time is the same for 1 and 11 iterations, so
# it cancels out of the time per iteration).
# ---------------------------------------------------------------------------


class DaskgmmFitter:
    def __init__(self, X, k: int, covariance_type: str, init: dict, chunk_size="auto",
                 persist="auto"):
        self.X, self.k, self.covariance_type, self.init = X, k, covariance_type, init
        self.chunk_size, self.persist = chunk_size, persist

    def fit(self, max_iter: int) -> float:
        from daskgmm import GaussianMixture

        model = GaussianMixture(self.k, covariance_type=self.covariance_type, max_iter=max_iter,
                                tol=0, chunk_size=self.chunk_size, persist=self.persist,
                                **self.init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tol=0 never converges, by design
            model.fit(self.X)
        return float(model.score(self.X))

    def close(self) -> None:
        pass


class SklearnFitter:
    def __init__(self, X, k: int, covariance_type: str, init: dict):
        self.X, self.k, self.covariance_type, self.init = X, k, covariance_type, init

    def fit(self, max_iter: int) -> float:
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = GaussianMixture(self.k, covariance_type=self.covariance_type,
                                    max_iter=max_iter, tol=0, **self.init).fit(self.X)
            return float(model.score(self.X))

    def close(self) -> None:
        pass


def make_fitter(library: str, X, k: int, covariance_type: str, init: dict):
    if library == "daskgmm":
        return DaskgmmFitter(X, k, covariance_type, init)
    if library == "sklearn":
        return SklearnFitter(X, k, covariance_type, init)
    sys.path.insert(0, str(HERE))
    import bench_peers

    reason = bench_peers.unavailable_reason(library)
    if reason:
        raise PeerUnavailable(reason)
    factory = {"spark": bench_peers.spark_fitter, "pycave": bench_peers.pycave_fitter}[library]
    return factory(X, k, covariance_type, init)


class PeerUnavailable(RuntimeError):
    """A peer library cannot run on this machine; the message says why."""


def peer_unavailable_reason(library: str) -> str | None:
    if library in ("daskgmm", "sklearn"):
        return None
    try:
        sys.path.insert(0, str(HERE))
        import bench_peers
    except ImportError as exc:
        return f"scripts/bench_peers.py cannot be imported: {exc}"
    return bench_peers.unavailable_reason(library)


def seconds_per_iteration(fit: Callable[[int], float], repeats: int) -> tuple[float, list[float], float]:
    """Median of (t(11 iterations) - t(1 iteration)) / 10, every sample, and the log-likelihood."""
    samples = []
    log_likelihood = fit(1)  # warm up: imports, caches, a cluster's first graph
    for _ in range(repeats):
        started = time.perf_counter()
        fit(1)
        t1 = time.perf_counter() - started
        started = time.perf_counter()
        log_likelihood = fit(11)
        t11 = time.perf_counter() - started
        samples.append((t11 - t1) / 10)
    return statistics.median(samples), samples, log_likelihood


def peak_rss_mib(fitter=None) -> float:
    """Peak RSS of this process (and of a peer's own processes, if it reports them)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peer = getattr(fitter, "peak_rss_mib", None)
    return max(own, peer()) if callable(peer) else own


def run_in_memory(library: str, case: str, covariance_type: str, scale: float, repeats: int) -> dict:
    spec = IN_MEMORY_CASES[case]
    n = max(int(spec.n * scale), 50 * spec.k)
    X = make_data(n, spec.d, spec.k)
    init = initial_parameters(X, spec.k, covariance_type)
    fitter = make_fitter(library, X, spec.k, covariance_type, init)
    try:
        median, samples, log_likelihood = seconds_per_iteration(fitter.fit, repeats)
    finally:
        fitter.close()
    return {"library": library, "case": case, "covariance_type": covariance_type,
            "n": n, "d": spec.d, "k": spec.k, "seconds_per_iteration": median,
            "all_seconds_per_iteration": samples, "log_likelihood": log_likelihood,
            "peak_rss_mib": peak_rss_mib(fitter)}


# ---------------------------------------------------------------------------
# Case d: out of core on a LocalCluster
# ---------------------------------------------------------------------------


def _vm_hwm_bytes() -> int:
    """This process's peak resident memory (``VmHWM``) since the last reset."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _start_peak_sampler(dask_worker=None) -> int:
    """Reset this worker process's peak RSS (Linux: ``/proc/self/clear_refs``).

    The kernel's own high-water mark is exact and costs the worker nothing,
    where a sampling thread would miss short peaks and take CPU from the fit.
    """
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _vm_hwm_bytes()


def _stop_peak_sampler(dask_worker=None) -> int:
    return _vm_hwm_bytes()


def out_of_core_rows(scale: float) -> int:
    total_memory = 2 * WORKER_MEMORY
    n = int(OUT_OF_CORE_FACTOR * total_memory / (8 * OUT_OF_CORE_D) * scale)
    return max(n, 50 * OUT_OF_CORE_K)


def make_out_of_core_data(directory: Path, n: int) -> Path:
    from daskgmm.jobs.synthetic import make_mixture_zarr

    path = directory / f"case-d-{n}.zarr"
    if not path.exists():
        make_mixture_zarr(path, n, OUT_OF_CORE_D, OUT_OF_CORE_K, chunk_rows=OUT_OF_CORE_CHUNK_ROWS,
                          seed=3)
    return path


def run_out_of_core(path: str, mode: str, n_workers: int, repeats: int) -> dict:
    """Fit case d's data in ``mode`` 'stream' (LocalCluster) or 'memory' (numpy, local threads)."""
    from daskgmm import open_zarr_array

    X = open_zarr_array(path, "X")
    chunk = np.asarray(X[:OUT_OF_CORE_CHUNK_ROWS])
    init = initial_parameters(chunk, OUT_OF_CORE_K, "full")
    row = {"case": "d", "mode": mode, "n_workers": n_workers, "n": X.shape[0],
           "data_mib": X.nbytes / 2**20}
    if mode == "memory":
        fitter = DaskgmmFitter(X[:], OUT_OF_CORE_K, "full", init, chunk_size=OUT_OF_CORE_CHUNK_ROWS)
        median, samples, log_likelihood = seconds_per_iteration(fitter.fit, repeats)
        row.update(peak_rss_mib=peak_rss_mib(), workers_memory_limit_mib=None)
    else:
        from distributed import Client

        from daskgmm.jobs.cluster import local_cluster

        with local_cluster(n_workers=n_workers, threads_per_worker=1,
                           memory_limit=WORKER_MEMORY, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            # persist=False: the smallest size fits in the workers' memory, where
            # persist='auto' would keep it; every row of this table streams.
            fitter = DaskgmmFitter(X, OUT_OF_CORE_K, "full", init, persist=False)
            client.run(_start_peak_sampler)
            median, samples, log_likelihood = seconds_per_iteration(fitter.fit, repeats)
            peaks = client.run(_stop_peak_sampler)
        row.update(peak_rss_mib=max(peaks.values()) / 2**20,
                   workers_memory_limit_mib=n_workers * WORKER_MEMORY / 2**20)
    row.update(seconds_per_iteration=median, all_seconds_per_iteration=samples,
               log_likelihood=log_likelihood)
    return row


# ---------------------------------------------------------------------------
# GEMM rate, subprocess plumbing, tables
# ---------------------------------------------------------------------------


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


def _subprocess(args: list[Any]) -> dict:
    """Run one (library, case) in a fresh interpreter; ``args`` go through JSON, types kept."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(args)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {lines[-1] if lines else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


SWEEP_COMPONENTS = tuple(range(2, 10))
SWEEP_ITERATIONS = 10


def run_sweep(path: str) -> dict:
    """Case e: n_components 2-9 (full), streamed from Zarr on the LocalCluster: one K=9 fit,
    the eight fits one after another, and the eight fitted together (daskgmm.fit_many)."""
    from distributed import Client

    from daskgmm import GaussianMixture, fit_many, open_zarr_array
    from daskgmm.jobs.cluster import local_cluster

    X = open_zarr_array(path, "X")
    chunk = np.asarray(X[:OUT_OF_CORE_CHUNK_ROWS])

    def model(k):
        return GaussianMixture(k, max_iter=SWEEP_ITERATIONS, tol=0, persist=False,
                               **initial_parameters(chunk, k, "full"))

    def timed(work) -> float:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            work()
        return time.perf_counter() - started

    with local_cluster(n_workers=2, threads_per_worker=1,
                       memory_limit=WORKER_MEMORY, dashboard_address=None) as cluster, \
            Client(cluster):
        timed(lambda: model(2).fit(X))  # warm up the cluster
        largest = timed(lambda: model(max(SWEEP_COMPONENTS)).fit(X))
        together = timed(lambda: fit_many([model(k) for k in SWEEP_COMPONENTS], X))
        one_by_one = sum(timed(lambda k=k: model(k).fit(X)) for k in SWEEP_COMPONENTS)
    return {"n": X.shape[0], "data_mib": X.nbytes / 2**20, "largest": largest,
            "together": together, "one_by_one": one_by_one}


def render_sweep(row: dict) -> str:
    return "\n".join([
        "| N | data MiB | one K=9 fit, s | 8 fits one by one, s | 8 fits together (fit_many), s | "
        "together / one K=9 | one by one / one K=9 |",
        "|---|---|---|---|---|---|---|",
        f"| {row['n']:,} | {row['data_mib']:.0f} | {row['largest']:.1f} | {row['one_by_one']:.1f} | "
        f"{row['together']:.1f} | **{row['together'] / row['largest']:.2f}x** | "
        f"{row['one_by_one'] / row['largest']:.2f}x |",
    ])


def _worker(args: list) -> dict:
    kind, *rest = args
    if kind == "in-memory":
        return run_in_memory(*rest)
    if kind == "out-of-core":
        return run_out_of_core(*rest)
    if kind == "sweep":
        return run_sweep(*rest)
    raise ValueError(f"unknown worker kind {kind!r}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _speedup(row: dict, ours: dict | None) -> str:
    if row["library"] == "daskgmm" or ours is None or "seconds_per_iteration" not in row:
        return ""
    return f"{row['seconds_per_iteration'] / ours['seconds_per_iteration']:.1f}x"


def render_in_memory(results: list[dict]) -> str:
    lines = ["| case | covariance | N | D | K | library | s / iteration | daskgmm's speed-up | "
             "peak RSS MiB | mean log-lik |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    by_key = {(r["case"], r["covariance_type"], r["library"]): r for r in results}
    for r in results:
        ours = by_key.get((r["case"], r["covariance_type"], "daskgmm"))
        if "skipped" in r:
            lines.append(f"| {r['case']} | {r['covariance_type']} | {r['n']:,} | {r['d']} | {r['k']} | "
                         f"{r['library']} | not run: {r['skipped']} | | | |")
            continue
        lines.append(f"| {r['case']} | {r['covariance_type']} | {r['n']:,} | {r['d']} | {r['k']} | "
                     f"{r['library']} | {r['seconds_per_iteration']:.3f} | {_speedup(r, ours)} | "
                     f"{r['peak_rss_mib']:.0f} | {r['log_likelihood']:.6f} |")
    return "\n".join(lines)


def gemm_fraction_line(results: list[dict], gflops: float) -> str:
    row = next((r for r in results if r["case"] == "b" and r["library"] == "daskgmm"
                and "seconds_per_iteration" in r), None)
    if row is None:
        return ""
    flops = 4 * row["n"] * row["k"] * row["d"] ** 2
    achieved = flops / row["seconds_per_iteration"] / 1e9
    return (f"Case b: the full-covariance pass's nominal 4·N·K·D² = {flops / 1e9:.2f} GFLOP in "
            f"{row['seconds_per_iteration']:.3f} s is {achieved:.1f} GFLOP/s, "
            f"**{achieved / gflops:.0%} of the measured GEMM rate** ({gflops:.1f} GFLOP/s on 2 threads). "
            "daskgmm's fused kernel does about half that arithmetic (two products with the D(D+1)/2 "
            "quadratic features per component instead of four D×D products), so its own share of "
            "the GEMM rate is about half this figure.")


def render_out_of_core(rows: list[dict]) -> str:
    lines = ["| mode | workers | N | data MiB | workers' memory limit MiB | s / iteration | "
             "vs in memory | peak RSS MiB (per worker when streamed) | mean log-lik |",
             "|---|---|---|---|---|---|---|---|---|"]
    memory = {r["n"]: r for r in rows if r["mode"] == "memory"}
    for r in rows:
        ref = memory.get(r["n"])
        ratio = "" if r["mode"] == "memory" or ref is None else \
            f"{r['seconds_per_iteration'] / ref['seconds_per_iteration']:.2f}x"
        limit = "" if r["workers_memory_limit_mib"] is None else f"{r['workers_memory_limit_mib']:.0f}"
        mode = "streamed from Zarr, LocalCluster" if r["mode"] == "stream" else "numpy in memory, threads"
        workers = r["n_workers"] if r["mode"] == "stream" else "–"
        lines.append(f"| {mode} | {workers} | {r['n']:,} | {r['data_mib']:.0f} | {limit} | "
                     f"{r['seconds_per_iteration']:.3f} | {ratio} | {r['peak_rss_mib']:.0f} | "
                     f"{r['log_likelihood']:.6f} |")
    return "\n".join(lines)


def run_case_d(directory: Path, scale: float, repeats: int) -> str:
    """Case d and the scaling runs; returns its Markdown section."""
    n = out_of_core_rows(scale)
    sizes = [n // 16, n // 4, n]
    runs = [(size, "stream", 2) for size in sizes] + [(sizes[1], "stream", 1), (n, "memory", 0)]
    rows = []
    for size, mode, workers in runs:
        path = make_out_of_core_data(directory, size)
        row = _subprocess(["out-of-core", str(path), mode, workers, min(repeats, 2)])
        _log(f"d {mode:6s} workers={workers} N={size:,} {row['seconds_per_iteration']:.3f} s/iter "
             f"peak {row['peak_rss_mib']:.0f} MiB")
        rows.append(row)
    return ("## Out of core (case d) and scaling\n\n"
            f"Full covariance, D={OUT_OF_CORE_D}, K={OUT_OF_CORE_K}, float64, Zarr chunks of "
            f"{OUT_OF_CORE_CHUNK_ROWS:,} rows; each worker process has one thread and a memory limit "
            f"of {WORKER_MEMORY / 2**20:.0f} MiB; the largest data set is "
            f"{rows[2]['data_mib'] / rows[2]['workers_memory_limit_mib']:.1f}x the workers' total "
            "memory limit. The first three rows are the scaling with N, the fourth with the "
            "number of workers.\n\n" + render_out_of_core(rows))


def machine_line(gflops: float) -> str:
    import dask
    import sklearn

    import daskgmm

    versions = [f"daskgmm {daskgmm.__version__}", f"dask {dask.__version__}",
                f"scikit-learn {sklearn.__version__}", f"numpy {np.__version__}"]
    for name in ("pyspark", "pycave", "torch"):
        try:
            module = __import__(name)
            versions.append(f"{name} {module.__version__}")
        except Exception:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"{', '.join(versions)}; float64 GEMM rate on 2 threads: {gflops:.1f} GFLOP/s.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="a,b,c,d,e", help="comma-separated cases: a, b, c, d, e")
    parser.add_argument("--libraries", default="daskgmm,sklearn,spark,pycave",
                        help="peers for cases a-c (each runs only where it applies)")
    parser.add_argument("--covariance-types", default="full,tied,diag,spherical",
                        help="case a's covariance types (cases b and c have one each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every N by this (0.001 for a smoke test)")
    parser.add_argument("--data-dir", help="where case d's Zarr data go (default: a temporary folder)")
    parser.add_argument("--out", help="also write the tables (Markdown) to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0

    cases = args.cases.split(",")
    libraries = args.libraries.split(",")
    sections = []
    in_memory = []
    for case in (c for c in cases if c in IN_MEMORY_CASES):
        spec = IN_MEMORY_CASES[case]
        wanted = args.covariance_types.split(",")
        for covariance_type in (t for t in spec.covariance_types if case != "a" or t in wanted):
            for library in (lib for lib in libraries if lib in spec.libraries):
                if library == "spark" and covariance_type not in SPARK_COVARIANCES:
                    continue
                base = {"library": library, "case": case, "covariance_type": covariance_type,
                        "n": max(int(spec.n * args.scale), 50 * spec.k), "d": spec.d, "k": spec.k}
                reason = peer_unavailable_reason(library)
                if reason is None:
                    try:
                        result = _subprocess(["in-memory", library, case, covariance_type,
                                              args.scale, args.repeats])
                    except RuntimeError as exc:
                        result = {**base, "skipped": str(exc)}
                else:
                    result = {**base, "skipped": reason}
                _log(f"{case} {covariance_type:9s} {library:8s} " + (
                    f"skipped: {result['skipped']}" if "skipped" in result else
                    f"{result['seconds_per_iteration']:.3f} s/iter  peak {result['peak_rss_mib']:.0f} MiB"))
                in_memory.append(result)
    gflops = gemm_gflops()
    if in_memory:
        sections.append("## In memory: daskgmm against its peers\n\n" + render_in_memory(in_memory)
                        + "\n\n" + gemm_fraction_line(in_memory, gflops))

    if "d" in cases or "e" in cases:
        with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
            if "e" in cases:
                path = make_out_of_core_data(Path(tmp), out_of_core_rows(args.scale) // 4)
                sweep = _subprocess(["sweep", str(path)])
                _log(f"e sweep {sweep}")
                sections.append(
                    f"## Many models in one pass (case e)\n\nn_components {SWEEP_COMPONENTS[0]} to "
                    f"{SWEEP_COMPONENTS[-1]}, full covariance, {SWEEP_ITERATIONS} EM iterations each "
                    "from given initial parameters, D=16, streamed from Zarr (persist=False) on the "
                    "same LocalCluster as case d.\n\n" + render_sweep(sweep))
            if "d" in cases:
                sections.append(run_case_d(Path(tmp), args.scale, args.repeats))

    text = "\n\n".join([machine_line(gflops)] + sections) + "\n"
    print(text)
    if args.out:
        command = "python scripts/bench.py " + " ".join(sys.argv[1:])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp_out = Path(args.out).with_suffix(".tmp")
        tmp_out.write_text(f"# Benchmark results\n\nProduced by `{command}`.\n\n{text}")
        os.replace(tmp_out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
