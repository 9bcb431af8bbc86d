"""The batch-job scripts in scripts/."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import yaml

from daskgmm import load_model

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(tmp_path / "data.zarr"), "array": "X"},
        "model": {"n_components": 2, "random_state": 0},
        "output": {"model": str(tmp_path / "model.npz"), "predictions": str(tmp_path / "pred.zarr")},
        "checkpoint": {"path": str(tmp_path / "ckpt.npz")},
    }))
    return config


def _run_cron(tmp_path, config):
    env = {**os.environ, "MAKE_DATA_ARGS": "--n-samples 3000 --n-features 2 --n-components 2 --chunk-rows 500"}
    return subprocess.run(["bash", str(SCRIPTS / "cron_fit.sh"), str(config), str(tmp_path / "logs")],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cron_script_makes_data_fits_predicts_and_logs(tmp_path):
    config = _config(tmp_path)
    result = _run_cron(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data.zarr" / "X").is_dir()
    assert load_model(tmp_path / "model.npz").n_components == 2
    assert (tmp_path / "pred.zarr" / "labels").is_dir()
    assert not (tmp_path / "ckpt.npz").exists()  # a finished run removes its checkpoint
    logs = list((tmp_path / "logs").glob("daskgmm-*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert '"event": "summary"' in text and "done" in text
    # A second run reuses the data and replaces the outputs.
    assert _run_cron(tmp_path, config).returncode == 0


def test_cron_script_never_overlaps_a_running_job(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "logs").mkdir()
    with open(tmp_path / "logs" / ".daskgmm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = _run_cron(tmp_path, config)
    assert result.returncode == 75
    assert "another run holds" in result.stderr
    assert not (tmp_path / "data.zarr").exists()


def test_slurm_example_is_valid_bash_using_the_dask_commands():
    text = (SCRIPTS / "slurm_fit.sbatch").read_text()
    assert subprocess.run(["bash", "-n", str(SCRIPTS / "slurm_fit.sbatch")]).returncode == 0
    assert "dask scheduler --scheduler-file" in text and "dask worker --scheduler-file" in text
    assert "daskgmm fit" in text and "cluster.kind=address" in text


def test_benchmark_script_runs_at_tiny_sizes(tmp_path):
    # Benchmarks are not timed tests; this only keeps scripts/bench.py from rotting.
    out = tmp_path / "RESULTS.md"
    result = subprocess.run(
        ["python", str(SCRIPTS / "bench.py"), "--scale", "0.0005", "--repeats", "1",
         "--libraries", "daskgmm,sklearn", "--cases", "a,d,e", "--covariance-types",
         "full,spherical", "--data-dir", str(tmp_path), "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "GEMM rate" in text and "## Out of core (case d) and scaling" in text
    assert "## Many models in one pass (case e)" in text and "together / one K=9" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    in_memory = [r for r in rows if r.split("|")[6].strip() in ("daskgmm", "sklearn")]
    # Case a with two of its types and two libraries (b and c take a's code path).
    assert len(in_memory) == 2 * 2
    streamed = [r for r in rows if "streamed from Zarr" in r]
    assert len(streamed) == 4 and sum("numpy in memory" in r for r in rows) == 1
    # Same data, same initial parameters: the same log-likelihood in every library.
    by_case = {}
    for r in in_memory:
        cells = [c.strip() for c in r.split("|")]
        by_case.setdefault((cells[1], cells[2]), set()).add(round(float(cells[10]), 4))
    assert all(len(values) == 1 for values in by_case.values()), by_case
    assert not list(tmp_path.glob("case-d-*"))  # the temporary data are gone


def test_missing_benchmark_runs_at_tiny_sizes(tmp_path):
    # Not a timed test: it keeps scripts/bench_missing.py from rotting.
    result = subprocess.run(
        ["python", str(SCRIPTS / "bench_missing.py"), "--rows", "3000", "--chunk-rows", "1000",
         "--iterations", "2", "--covariance-types", "full,diag", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| full") or
            line.startswith("| diag")]
    assert len(rows) == 6 and all(row.count("|") == 7 for row in rows)
    assert "scikit-learn on the same data: ValueError" in result.stdout


def test_bayesian_benchmark_runs_at_tiny_sizes():
    # Not a timed test: it keeps scripts/bench_bayesian.py from rotting.
    result = subprocess.run(
        ["python", str(SCRIPTS / "bench_bayesian.py"), "--rows", "2000", "--repeats", "1",
         "--iterations", "2", "--covariance-types", "diag"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| diag")]
    assert [row.split("|")[2].strip() for row in rows] == ["daskgmm", "sklearn"]


def test_the_switching_off_script_runs_at_tiny_sizes():
    # Not a timed test: it keeps scripts/bayesian_switching_off.py from rotting.
    result = subprocess.run(
        ["python", str(SCRIPTS / "bayesian_switching_off.py"), "--rows", "600", "--inits",
         "random_from_data", "--prior-types", "dirichlet_process", "--max-iter", "3",
         "--sample", "300", "--warm-iter", "2"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 600 |")]
    assert len(rows) == 1 and "random_from_data" in rows[0]
    assert "Sample then warm start:" in result.stdout
