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
