"""A checkpoint resumes only its own job: parameters and a fingerprint of the data.

The nightly-job scenarios run the real ``daskgmm`` command and ``scripts/cron_fit.sh``
in subprocesses; a fit is interrupted by SIGKILL triggered from its own progress
(after its N-th checkpoint write), never by a timer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import yaml

from daskgmm import (
    Checkpoint,
    CheckpointDataError,
    CheckpointParamsError,
    GaussianMixture,
    load_model,
    open_zarr_array,
)
from daskgmm._data import as_dataset
from daskgmm.jobs.synthetic import make_mixture_zarr
from daskgmm.persistence import read_model_file

KILL_AFTER = Path(__file__).with_name("_kill_after.py")
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
MODEL = {"n_components": 3, "random_state": 0, "tol": 0.0, "max_iter": 12,
         "init_params": "random_from_data"}


def _make(path: Path, seed: int) -> Path | str:
    """4,000 x 2 rows in chunks of 500: the same shape and chunking for every seed."""
    return make_mixture_zarr(path, 4000, 2, 3, chunk_rows=500, seed=seed, separation=3.0)


def _config(tmp_path: Path, **model) -> Path:
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(tmp_path / "data.zarr"), "array": "X"},
        "model": {**MODEL, **model},
        "output": {"model": str(tmp_path / "model.npz"), "predictions": str(tmp_path / "pred.zarr"),
                   "overwrite": True},
        "checkpoint": {"path": str(tmp_path / "ckpt.npz")},
    }))
    return config


def _daskgmm(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgmm.jobs.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def _fit_killed_after_checkpoint(config: Path, n: int) -> None:
    """``daskgmm fit CONFIG``, SIGKILLed by itself right after its n-th checkpoint write."""
    process = subprocess.run([sys.executable, str(KILL_AFTER), "daskgmm.checkpoints:Checkpoint.__call__",
                              str(n), "fit", str(config)], capture_output=True, timeout=600)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()


def _replace_data(tmp_path: Path, seed: int) -> None:
    """What a nightly job's upstream step does: rewrite the input in place."""
    shutil.rmtree(tmp_path / "data.zarr")
    _make(tmp_path / "data.zarr", seed)


def _cron(tmp_path: Path, config: Path, **env) -> subprocess.CompletedProcess:
    """scripts/cron_fit.sh under cron's minimal environment (``env -i PATH=/usr/bin:/bin``)."""
    return subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in env.items()),
                           "bash", str(SCRIPTS / "cron_fit.sh"), str(config), str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)


def _log_text(tmp_path: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((tmp_path / "logs").glob("daskgmm-*.log")))


@pytest.fixture()
def killed_job(tmp_path) -> Path:
    """A nightly job killed after 3 iterations: an unfinished checkpoint of data set 1."""
    _make(tmp_path / "data.zarr", seed=1)
    config = _config(tmp_path)
    _fit_killed_after_checkpoint(config, 3)
    assert Checkpoint.status(tmp_path / "ckpt.npz") == "unfinished"
    assert not (tmp_path / "model.npz").exists()
    return config


def test_resuming_after_the_input_was_replaced_is_refused_with_exit_3_naming_the_data(
        tmp_path, killed_job):
    before = (tmp_path / "ckpt.npz").read_bytes()
    _replace_data(tmp_path, seed=2)  # same shape, dtype, chunks and path; other values

    result = _daskgmm("fit", killed_job, "--resume")
    assert result.returncode == 3, result.stderr
    message = result.stderr
    assert str(tmp_path / "data.zarr" / "X") in message  # names the data
    assert "other contents" in message and "content digest" in message
    assert "without --resume" in message  # and how to start afresh
    # Refused before any result was used: no model, the checkpoint untouched.
    assert not (tmp_path / "model.npz").exists()
    assert (tmp_path / "ckpt.npz").read_bytes() == before

    # Starting afresh, as the message says, fits the new data.
    assert _daskgmm("fit", killed_job).returncode == 0
    fresh = GaussianMixture(**MODEL).fit(open_zarr_array(tmp_path / "data.zarr", "X"))
    model = load_model(tmp_path / "model.npz")
    np.testing.assert_array_equal(model.means_, fresh.means_)


def test_resuming_with_other_parameters_is_refused_with_exit_2_naming_them(tmp_path, killed_job):
    before = (tmp_path / "ckpt.npz").read_bytes()
    result = _daskgmm("fit", killed_job, "--resume", "--set", "model.tol=0.5",
                      "--set", "model.reg_covar=0.001")
    assert result.returncode == 2, result.stderr
    assert "tol: 0.0 in the checkpoint, 0.5 now" in result.stderr
    assert "reg_covar: 1e-06 in the checkpoint, 0.001 now" in result.stderr
    assert "without --resume" in result.stderr
    result = _daskgmm("fit", killed_job, "--resume", "--set", "model.n_components=4")
    assert result.returncode == 2, result.stderr
    assert "n_components: 3 in the checkpoint, 4 now" in result.stderr
    assert not (tmp_path / "model.npz").exists()
    assert (tmp_path / "ckpt.npz").read_bytes() == before

    # Options that do not change the result may differ; the same job resumes to the end.
    result = _daskgmm("fit", killed_job, "--resume", "--set", "model.verbose=1")
    assert result.returncode == 0, result.stderr
    assert load_model(tmp_path / "model.npz").n_iter_ == MODEL["max_iter"]


def test_cron_refuses_to_resume_a_killed_fit_whose_input_was_replaced(tmp_path, killed_job):
    _replace_data(tmp_path, seed=2)
    result = _cron(tmp_path, killed_job, DASKGMM_PYTHON=sys.executable)
    assert result.returncode == 3
    log = _log_text(tmp_path)
    assert "unfinished fit" in log and "resuming it" in log
    assert str(tmp_path / "data.zarr" / "X") in log and "other contents" in log
    assert "belongs to another job" in log and f"remove {tmp_path / 'ckpt.npz'} to start afresh" in log
    assert "FAILED" in log and "exit 3" in log
    assert "failed (exit 3)" in result.stderr  # the one line cron mails
    assert not (tmp_path / "model.npz").exists()


def test_a_finished_fit_marks_its_checkpoint_and_cron_fits_replaced_data_afresh(tmp_path):
    _make(tmp_path / "data.zarr", seed=1)
    config = _config(tmp_path)
    assert _daskgmm("fit", config).returncode == 0
    _, meta = read_model_file(tmp_path / "ckpt.npz")
    assert meta["checkpoint"]["finished"] and meta["checkpoint"]["n_iter"] == MODEL["max_iter"]
    assert Checkpoint.status(tmp_path / "ckpt.npz") == "finished"

    # The next night: new data of the same shape; the finished checkpoint is still there.
    _replace_data(tmp_path, seed=2)
    result = _cron(tmp_path, config, DASKGMM_PYTHON=sys.executable)
    assert result.returncode == 0, _log_text(tmp_path)
    log = _log_text(tmp_path)
    assert "holds a finished fit: not resuming it" in log and "--resume" not in log
    X = open_zarr_array(tmp_path / "data.zarr", "X")
    fresh = GaussianMixture(**MODEL).fit(X)
    model = load_model(tmp_path / "model.npz")
    np.testing.assert_array_equal(model.means_, fresh.means_)
    assert model.score(X) == pytest.approx(fresh.score(X), rel=1e-12)
    assert not (tmp_path / "ckpt.npz").exists()  # removed once the model file is in place


def test_resuming_a_finished_checkpoint_checks_the_data_too(tmp_path):
    _make(tmp_path / "data.zarr", seed=1)
    config = _config(tmp_path)
    assert _daskgmm("fit", config).returncode == 0
    model_before = (tmp_path / "model.npz").read_bytes()
    _replace_data(tmp_path, seed=2)
    result = _daskgmm("fit", config, "--resume")
    assert result.returncode == 3 and "other contents" in result.stderr
    assert (tmp_path / "model.npz").read_bytes() == model_before


def test_cron_script_finds_its_python_under_crons_minimal_environment(tmp_path):
    config = _config(tmp_path)
    make = "--n-samples 3000 --n-features 2 --n-components 3 --chunk-rows 500"
    result = _cron(tmp_path, config, DASKGMM_PYTHON=sys.executable, MAKE_DATA_ARGS=make)
    assert result.returncode == 0, _log_text(tmp_path)
    assert load_model(tmp_path / "model.npz").n_components == 3
    assert f"python: {sys.executable}" in _log_text(tmp_path)

    # A DASKGMM_PYTHON without daskgmm: the failure is logged, and cron's mail names the log.
    shutil.rmtree(tmp_path / "logs")
    result = _cron(tmp_path, config, DASKGMM_PYTHON="/bin/false")
    assert result.returncode == 127
    assert "DASKGMM_PYTHON=/bin/false cannot import daskgmm" in _log_text(tmp_path)
    assert "FAILED" in _log_text(tmp_path) and "see " in result.stderr


def test_cron_script_without_a_python_that_has_daskgmm_logs_how_to_name_one(tmp_path):
    system = [p for p in ("/usr/bin/python3", "/usr/bin/python", "/bin/python3") if os.path.exists(p)]
    if any(subprocess.run([p, "-c", "import daskgmm.jobs.cli, daskgmm.estimator"], cwd="/",
                          capture_output=True).returncode == 0 for p in system):
        pytest.skip("the system's Python has daskgmm: cron would find it")
    result = _cron(tmp_path, _config(tmp_path))
    assert result.returncode == 127
    assert "set DASKGMM_PYTHON" in _log_text(tmp_path)


# --------------------------------------------------------------------------
# In the library
# --------------------------------------------------------------------------


class Interrupted(Exception):
    """Stands for a killed process."""


def _interrupted_fit(X, path: Path, after: int = 2, **params) -> None:
    def stop(info):
        if info.n_iter == after:
            raise Interrupted

    with pytest.raises(Interrupted):
        GaussianMixture(**{**MODEL, **params}).fit(X, callbacks=[Checkpoint(path), stop])


def _counting(X: da.Array, reads: list) -> da.Array:
    def count(block):
        if block.size:  # dask calls it on an empty array to learn the output's type
            reads.append(block.shape[0])
        return block

    return da.map_blocks(count, X, dtype=X.dtype)


def test_the_fingerprint_is_taken_in_the_passes_the_fit_makes_anyway(tmp_path):
    store = _make(tmp_path / "data.zarr", seed=1)
    reads: list = []
    X = _counting(as_dataset(open_zarr_array(store, "X")).array, reads)
    init = {"weights_init": np.full(3, 1 / 3), "means_init": open_zarr_array(store, "means")[:],
            "precisions_init": np.tile(np.eye(2), (3, 1, 1))}
    # In this process (the counter lives here), whatever client an earlier test left.
    with pytest.warns(UserWarning, match="did not converge"), dask.config.set(scheduler="threads"):
        GaussianMixture(3, tol=0.0, max_iter=3, **init).fit(X, callbacks=[Checkpoint(tmp_path / "c.npz")])
    assert len(reads) == 3 * 8  # three EM passes over eight chunks, nothing more
    _, meta = read_model_file(tmp_path / "c.npz")
    fingerprint = meta["checkpoint"]["data"]
    assert fingerprint["shape"] == [4000, 2] and fingerprint["dtype"] == "float64"
    assert fingerprint["row_chunks"] == [[500, 8]] and not fingerprint["weighted"]
    assert fingerprint["location"] == str(store / "X")
    assert len(fingerprint["digest"]) == 32


def test_data_that_differ_without_reading_them_are_refused_before_any_chunk_is_read(tmp_path):
    store = _make(tmp_path / "data.zarr", seed=1)
    _interrupted_fit(open_zarr_array(store, "X"), tmp_path / "c.npz")
    before = (tmp_path / "c.npz").read_bytes()
    copy = shutil.copytree(store, tmp_path / "copy.zarr")
    X = as_dataset(open_zarr_array(store, "X")).array
    cases = {
        "location": (as_dataset(open_zarr_array(copy, "X")).array,
                     f"location: '{store / 'X'}' in the checkpoint, '{copy / 'X'}' now"),
        "chunks": (X.rechunk({0: 1000}),
                   "row chunking: 8 chunks of 500 rows in the checkpoint, 4 chunks of 1000 rows now"),
        "dtype": (X.astype(np.float32), "dtype: 'float64' in the checkpoint, 'float32' now"),
        "shape": (X[:3500], "shape: [4000, 2] in the checkpoint, [3500, 2] now"),
    }
    for what, (data, message) in cases.items():
        reads: list = []
        with pytest.raises(CheckpointDataError, match="belongs to another job") as error:
            GaussianMixture(**MODEL).fit(_counting(data, reads), resume_from=tmp_path / "c.npz",
                                         callbacks=[Checkpoint(tmp_path / "c.npz")])
        assert message in str(error.value), what
        assert "without resume_from" in str(error.value)
        assert reads == [], what
    with pytest.raises(CheckpointDataError, match="sample weights: none in the checkpoint, given now"):
        GaussianMixture(**MODEL).fit(X, sample_weight=np.ones(4000), resume_from=tmp_path / "c.npz")
    assert (tmp_path / "c.npz").read_bytes() == before


def test_other_contents_are_refused_before_any_callback_or_checkpoint_write(tmp_path):
    X1 = np.asarray(open_zarr_array(_make(tmp_path / "a.zarr", seed=1), "X")[:])
    X2 = np.asarray(open_zarr_array(_make(tmp_path / "b.zarr", seed=2), "X")[:])
    _interrupted_fit(X1, tmp_path / "c.npz", chunk_size=500)
    before = (tmp_path / "c.npz").read_bytes()
    called = []
    with pytest.raises(CheckpointDataError, match="other contents") as error:
        GaussianMixture(**MODEL, chunk_size=500).fit(
            X2, resume_from=tmp_path / "c.npz", callbacks=[Checkpoint(tmp_path / "c.npz"), called.append])
    assert error.value.differences.keys() == {"digest"}
    assert called == [] and (tmp_path / "c.npz").read_bytes() == before
    # In memory, with its own values, the same job resumes (and so do equal values elsewhere).
    with pytest.warns(UserWarning, match="did not converge"):
        resumed = GaussianMixture(**MODEL, chunk_size=500).fit(X1.copy(), resume_from=tmp_path / "c.npz")
    with pytest.warns(UserWarning, match="did not converge"):
        whole = GaussianMixture(**MODEL, chunk_size=500).fit(X1)
    np.testing.assert_array_equal(resumed.means_, whole.means_)


def test_other_parameters_are_refused_naming_each(tmp_path):
    X = np.asarray(open_zarr_array(_make(tmp_path / "a.zarr", seed=1), "X")[:])
    _interrupted_fit(X, tmp_path / "c.npz")
    with pytest.raises(CheckpointParamsError) as error:
        GaussianMixture(**{**MODEL, "covariance_type": "diag", "max_iter": 20}).fit(
            X, resume_from=tmp_path / "c.npz")
    assert error.value.differences == {"covariance_type": ("full", "diag"), "max_iter": (12, 20)}
    assert "covariance_type: 'full' in the checkpoint, 'diag' now" in str(error.value)
    with pytest.raises(CheckpointParamsError, match="means_init: None in the checkpoint, an array of 3 rows now"):
        GaussianMixture(**MODEL, means_init=X[:3]).fit(X, resume_from=tmp_path / "c.npz")
