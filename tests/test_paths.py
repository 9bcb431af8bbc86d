"""Relative paths mean the client's files, whatever the workers' working directory.

Dask tasks run in the worker's working directory. A path that reaches a task
relative would read (or write) another directory's files there, and the job
would still exit 0: every local path is made absolute on the client first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from daskgmm.jobs.synthetic import make_mixture_zarr
from daskgmm.persistence import read_model_file

from .conftest import free_port


def _files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size: what a job may not have touched."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _data_set(path: Path, seed: int, offset: float) -> None:
    """A mixture with per-row weights ``w``, in the same shape for every seed."""
    make_mixture_zarr(path, 3000, 2, 2, chunk_rows=500, seed=seed, offset=offset)
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, size=3000)
    group = zarr.open_group(str(path), mode="r+")
    group.create_array("w", data=weights, chunks=(500,))



def _daskgmm(cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgmm.jobs.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def test_fit_and_predict_with_relative_paths_on_a_scheduler_and_worker_started_elsewhere(tmp_path):
    client_dir, worker_dir = tmp_path.resolve() / "client", tmp_path.resolve() / "worker"
    client_dir.mkdir()
    worker_dir.mkdir()
    _data_set(client_dir / "data.zarr", seed=1, offset=0.0)
    _data_set(worker_dir / "data.zarr", seed=2, offset=50.0)  # the decoy, at the same relative path
    before = _files(worker_dir)

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    job = {"data": {"path": "data.zarr", "array": "X", "sample_weight": "w"},
           "model": {"n_components": 2, "random_state": 0},
           "output": {"probabilities": True, "log_likelihood": True}}
    for name, cluster in (("remote", {"kind": "address", "address": address}),
                          ("embedded", {"kind": "embedded"})):
        (client_dir / f"{name}.yaml").write_text(yaml.safe_dump({
            **job, "cluster": cluster,
            "output": {**job["output"], "model": f"{name}/model.npz",
                       "predictions": f"{name}/pred.zarr"},
            "checkpoint": {"path": f"{name}/ckpt.npz"}}))

    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], cwd=worker_dir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen(["dask", "worker", address, "--nthreads", "1",
                                       "--no-dashboard", "--memory-limit", "1GiB"],
                                      cwd=worker_dir, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=60)
            assert set(client.run(os.getcwd).values()) == {str(worker_dir)}
            fit = _daskgmm(client_dir, "fit", "remote.yaml")
            assert fit.returncode == 0, fit.stderr
            predict = _daskgmm(client_dir, "predict", "remote.yaml")
            assert predict.returncode == 0, predict.stderr
            assert "workers=1" in fit.stderr  # the fit did run on the cluster
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(60)

    for command in ("fit", "predict"):
        result = _daskgmm(client_dir, command, "embedded.yaml")
        assert result.returncode == 0, result.stderr

    remote, _ = read_model_file(client_dir / "remote" / "model.npz")
    embedded, _ = read_model_file(client_dir / "embedded" / "model.npz")
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(remote[name], embedded[name], rtol=1e-12, err_msg=name)
    # The client's data, not the decoy: the means are near the client's true means.
    truth = zarr.open_group(str(client_dir / "data.zarr"), mode="r")["means"][:]
    assert np.abs(np.sort(remote["means"], axis=0) - np.sort(truth, axis=0)).max() < 1.0

    remote_pred = zarr.open_group(str(client_dir / "remote" / "pred.zarr"), mode="r")
    embedded_pred = zarr.open_group(str(client_dir / "embedded" / "pred.zarr"), mode="r")
    for name in ("labels", "probabilities", "log_likelihood"):
        array = remote_pred[name]
        assert array.nchunks_initialized == array.nchunks, name  # every chunk in the client's store
        np.testing.assert_allclose(array[:], embedded_pred[name][:], rtol=1e-12, err_msg=name)
    assert _files(worker_dir) == before  # nothing written into the worker's directory


def test_library_paths_are_the_clients_on_workers_in_another_directory(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from daskgmm import GaussianMixture, open_zarr_array
    from daskgmm._data import as_dataset
    from daskgmm.jobs.outputs import write_predictions

    client_dir, worker_dir = tmp_path.resolve() / "client", tmp_path.resolve() / "worker"
    client_dir.mkdir()
    worker_dir.mkdir()
    _data_set(client_dir / "data.zarr", seed=1, offset=0.0)
    _data_set(worker_dir / "data.zarr", seed=2, offset=50.0)
    before = _files(worker_dir)
    reference = GaussianMixture(2, random_state=0).fit(
        open_zarr_array(client_dir / "data.zarr", "X"),
        sample_weight=open_zarr_array(client_dir / "data.zarr", "w"))

    monkeypatch.chdir(worker_dir)  # the workers start here ...
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="1GiB") as cluster, Client(cluster) as client:
        assert list(client.run(os.getcwd).values()) == [str(worker_dir)]
        monkeypatch.chdir(client_dir)  # ... and the client works here
        # A path, and a zarr.Array a user opened with a relative path.
        for X, w in ((open_zarr_array("data.zarr", "X"), "data.zarr/w"),
                     (zarr.open_group("data.zarr", mode="r")["X"],
                      zarr.open_group("data.zarr", mode="r")["w"])):
            model = GaussianMixture(2, random_state=0).fit(X, sample_weight=w)
            np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-12)
        written = write_predictions(model, as_dataset("data.zarr/X").array, "pred.zarr",
                                    probabilities=True)
        assert written == client_dir / "pred.zarr"
        assert make_mixture_zarr("made.zarr", 100, 2, 2, chunk_rows=50) == client_dir / "made.zarr"
    labels = zarr.open_group(str(client_dir / "pred.zarr"), mode="r")["labels"]
    assert labels.nchunks_initialized == labels.nchunks == 6
    X = zarr.open_group(str(client_dir / "data.zarr"), mode="r")["X"][:]
    np.testing.assert_array_equal(labels[:], reference.predict(X))
    assert _files(worker_dir) == before


@pytest.mark.parametrize(("given", "expected"), [
    ("data.zarr", "{cwd}/data.zarr"),
    ("./a/../b.npz", "{cwd}/b.npz"),
    ("/abs/x.zarr", "/abs/x.zarr"),
    ("s3://bucket/data.zarr", "s3://bucket/data.zarr"),
    ("gcs://b/relative/but/a/url", "gcs://b/relative/but/a/url"),
])
def test_config_paths_are_made_absolute_on_the_client_and_urls_kept(tmp_path, monkeypatch,
                                                                   given, expected):
    from daskgmm.jobs.config import parse_config

    monkeypatch.chdir(tmp_path)
    expected = expected.format(cwd=tmp_path)
    url = "://" in given  # a checkpoint is a local file (a URL is refused: tests/test_objectstore.py)
    cfg = parse_config({"data": {"path": given}, "output": {"model": given, "predictions": given},
                        "checkpoint": {"path": "c.npz" if url else given},
                        "cluster": {"kind": "address", "address": "tls://h:1",
                                    "tls": {"ca_file": given, "cert_file": given, "key_file": given}}})
    assert {cfg.data.path, cfg.output.model, cfg.output.predictions,
            cfg.cluster.tls.ca_file, cfg.cluster.tls.cert_file, cfg.cluster.tls.key_file} == {expected}
    assert cfg.checkpoint.path == (str(tmp_path / "c.npz") if url else expected)


def test_a_dask_array_reading_a_relative_zarr_path_is_refused(tmp_path, monkeypatch):
    """Its tasks would open the path in each worker's directory: refused, not guessed."""
    import dask.array as da
    import zarr

    from daskgmm import GaussianMixture

    monkeypatch.chdir(tmp_path)
    z = zarr.open_array("d.zarr", mode="w", shape=(400, 2), chunks=(100, 2), dtype="f8")
    z[:] = np.random.default_rng(0).normal(size=(400, 2))
    with pytest.raises(ValueError, match="relative path 'd.zarr'.*own working directory"):
        GaussianMixture(2).fit(da.from_zarr(zarr.open_array("d.zarr", mode="r")))
    # By an absolute path (or a path string, which dask resolves here) it is fitted.
    GaussianMixture(2, max_iter=2).fit(da.from_zarr(str(tmp_path / "d.zarr")))
