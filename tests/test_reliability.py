"""Reliability and security: data that are not what they seem, failures, safe loading."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

from daskgmm import GaussianMixture, ModelFileError, load_model, open_zarr_array, save_model
from daskgmm._data import as_dataset
from daskgmm.exceptions import CorruptChunkError, MissingChunksError
from daskgmm.jobs.synthetic import make_mixture_zarr

from .conftest import free_port, mixture_data

KILL_AFTER = Path(__file__).with_name("_kill_after.py")


@pytest.fixture()
def store(tmp_path) -> Path | str:
    return make_mixture_zarr(tmp_path / "data.zarr", 2000, 2, 2, chunk_rows=200, seed=1)


def test_missing_chunks_are_refused_naming_how_many_and_where(tmp_path):
    arr = zarr.create_array(str(tmp_path / "holes.zarr"), shape=(100, 2), chunks=(10, 2), dtype="f8")
    arr[:30] = 1.0
    arr[50:] = 2.0
    with pytest.raises(MissingChunksError, match=r"2 of 10 chunks missing.*chunk \(3, 0\) \(rows 30-39\), "
                       r"chunk \(4, 0\) \(rows 40-49\).*allow_missing_chunks=True"):
        GaussianMixture(2).fit(arr)
    # The explicit opt-in reads them as the fill value.
    opted_in = as_dataset(arr, allow_missing_chunks=True).array
    assert GaussianMixture(2, random_state=0).fit(opted_in).converged_


def test_daskgmm_writers_store_every_chunk_with_a_checksum(store):
    X = zarr.open_array(str(store / "X"), mode="r")
    assert X.nchunks_initialized == X.nchunks
    assert any(type(c).__name__ == "Crc32cCodec" for c in X.metadata.codecs[1:] + X.compressors)


def test_a_corrupted_chunk_raises_an_error_naming_the_chunk(store):
    chunk = sorted(glob.glob(str(store / "X" / "c" / "*" / "*")))[3]
    data = bytearray(Path(chunk).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(chunk).write_bytes(bytes(data))
    with pytest.raises(CorruptChunkError, match=r"rows 600-799 .*checksum"):
        GaussianMixture(2, random_state=0).fit(open_zarr_array(store, "X"))


def test_a_crafted_pickle_model_file_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.npz"
    np.savez(evil, __metadata__=np.frombuffer(json.dumps({
        "format": "daskgmm-model", "format_version": 1, "estimator": "daskgmm.GaussianMixture",
    }).encode(), dtype=np.uint8), weights=np.array([Exploit()], dtype=object),
        means=np.zeros((1, 1)), covariances=np.ones((1, 1, 1)),
        precisions_cholesky=np.ones((1, 1, 1)), lower_bounds=np.zeros(1))
    with pytest.raises(ModelFileError):
        load_model(evil)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "not-a-zip", "newer-version", "other-estimator"])
def test_bad_model_files_get_a_clear_error(tmp_path, damage):
    model = GaussianMixture(2, random_state=0).fit(mixture_data(n_components=2))
    path = save_model(model, tmp_path / "m.npz")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
        match = "is not a daskgmm model file .*: File is not a zip file"
    elif damage == "not-a-zip":
        path.write_text("hello")
        match = "is not a daskgmm model file .*: it is neither an .npz nor an .npy file"
    else:
        with zipfile.ZipFile(path) as z:
            arrays = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
        meta = json.loads(arrays["__metadata__"].tobytes())
        if damage == "newer-version":
            meta["format_version"] = 99
            match = "format version 99; this daskgmm reads versions up to 1"
        else:
            meta["estimator"] = "sklearn.cluster.KMeans"
            match = "not a daskgmm.GaussianMixture or daskgmm.BayesianGaussianMixture model"
        arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


def _kill_own_process(block):
    os.kill(os.getpid(), signal.SIGKILL)
    return block


def test_a_task_that_keeps_killing_its_workers_fails_the_fit_clearly(X_offset):
    import dask
    from distributed import Client, LocalCluster

    from daskgmm._passes import WorkerLostError

    X = da.from_array(X_offset, chunks=(300, -1))
    poisoned = da.concatenate([X[:900], X[900:].map_blocks(_kill_own_process, dtype=X.dtype, meta=np.empty((0, 0)))])
    init = {"weights_init": np.full(3, 1 / 3), "means_init": X_offset[[0, 400, 800]],
            "precisions_init": np.tile(np.eye(3), (3, 1, 1))}
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                          memory_limit="1GiB") as cluster, Client(cluster):
            with pytest.raises(WorkerLostError, match="killed a worker each time.*allowed-failures"):
                GaussianMixture(3, **init).fit(poisoned)


# --------------------------------------------------------------------------
# Worker loss
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loss_store(tmp_path_factory) -> Path | str:
    path = tmp_path_factory.mktemp("loss") / "data.zarr"
    return make_mixture_zarr(path, 300_000, 8, 4, chunk_rows=10_000, seed=7, separation=1.5)


def _loss_fit(store: Path, X=None, *, callbacks=(), persist="auto"):
    """12 EM iterations from fixed initial parameters on ``X`` (default: the store's array)."""
    import warnings

    means = open_zarr_array(store, "means")[:]
    init = {"weights_init": np.full(4, 0.25), "means_init": means + 0.5,
            "precisions_init": np.tile(np.eye(8), (4, 1, 1))}
    X = open_zarr_array(store, "X") if X is None else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixture(4, tol=0, max_iter=12, split_every=4, persist=persist, **init)
        return model.fit(X, callbacks=callbacks)


def _fit_killing_a_worker_mid_pass(client, store, tmp_path, after_iteration):
    """Fit with data streamed from Zarr every pass; in the pass after iteration
    ``after_iteration`` (triggered by the fit's own callback), a worker dies while
    it reads a chunk in the middle of the pass."""
    marker, claim = tmp_path / "kill-now", tmp_path / "killed-pid"

    # Nested, so that cloudpickle sends it by value: workers started by the
    # dask command cannot import this test module.
    def kill_own_worker_once(block, marker, claim, first_chunk, block_info=None):
        """Pass ``block`` through; but once ``marker`` exists, the first task to read a
        chunk at or past ``first_chunk`` claims the kill (an exclusive create) and
        SIGKILLs its own worker. Recomputations find the claim and leave it alone."""
        import os
        import signal

        if os.path.exists(marker) and block_info[0]["chunk-location"][0] >= first_chunk:
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return block
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        return block

    X = as_dataset(open_zarr_array(store, "X"), "auto").array
    assert X.numblocks[0] == 30
    X = X.map_blocks(kill_own_worker_once, str(marker), str(claim), 15, dtype=X.dtype)

    def arm(info):
        if info.n_iter == after_iteration:
            marker.touch()

    pids = set(client.run(os.getpid).values())
    model = _loss_fit(store, X, callbacks=[arm], persist=False)
    assert claim.exists(), "no worker was killed"
    assert int(claim.read_text()) in pids
    return model


@pytest.fixture(scope="module")
def undisturbed(loss_store):
    import dask

    with dask.config.set(scheduler="threads"):
        return _loss_fit(loss_store)


@pytest.fixture(scope="module")
def two_workers():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      memory_limit="1GiB") as cluster, Client(cluster) as client:
        yield client


@pytest.mark.parametrize("after_iteration", [1, 6, 11])
def test_killing_a_worker_mid_pass_does_not_change_the_result(
    loss_store, undisturbed, two_workers, tmp_path, after_iteration
):
    model = _fit_killing_a_worker_mid_pass(two_workers, loss_store, tmp_path, after_iteration)
    _assert_same_fit(model, undisturbed)


def test_losing_a_worker_with_persisted_chunks_does_not_change_the_result(
    loss_store, undisturbed, two_workers
):
    client = two_workers
    pids = list(client.run(os.getpid).values())

    def kill_after_third(info):
        if info.n_iter == 3:  # the data are in the workers' memory by now
            os.kill(pids[0], signal.SIGKILL)

    model = _loss_fit(loss_store, callbacks=[kill_after_third], persist=True)
    assert pids[0] not in client.run(os.getpid).values()
    _assert_same_fit(model, undisturbed)


def _assert_same_fit(model, reference):
    assert model.n_iter_ == reference.n_iter_
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(model, attr), getattr(reference, attr), rtol=1e-12)
    np.testing.assert_allclose(model.lower_bounds_, reference.lower_bounds_, rtol=1e-12)


def test_killing_a_worker_started_by_the_dask_command(loss_store, undisturbed, tmp_path):
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen(["dask", "worker", address, "--nthreads", "1", "--nanny",
                                           "--no-dashboard", "--memory-limit", "1GiB"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
            model = _fit_killing_a_worker_mid_pass(client, loss_store, tmp_path, 4)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    _assert_same_fit(model, undisturbed)


# --------------------------------------------------------------------------
# Atomic outputs
# --------------------------------------------------------------------------


def test_a_killed_predict_never_damages_the_previous_prediction_store(tmp_path):
    import yaml

    store = make_mixture_zarr(tmp_path / "data.zarr", 300_000, 8, 5, chunk_rows=10_000, seed=3)
    X = open_zarr_array(store, "X")
    model = GaussianMixture(5, random_state=0, max_iter=3, init_params="random_from_data").fit(
        da.from_zarr(X)[:20_000])
    save_model(model, tmp_path / "m.npz")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(store), "array": "X"},
        "output": {"model": str(tmp_path / "m.npz"), "predictions": str(tmp_path / "pred.zarr"),
                   "probabilities": True, "log_likelihood": True, "overwrite": True}}))
    cmd = [sys.executable, "-m", "daskgmm.jobs.cli", "predict", str(config)]
    subprocess.run(cmd, check=True, capture_output=True)
    good = zarr.open_group(str(tmp_path / "pred.zarr"), mode="r")
    good_labels = good["labels"][:]
    good_proba_head = good["probabilities"][:1000]

    # Killed by itself once 5 of the 90 chunks of the new store are written.
    killed = [sys.executable, str(KILL_AFTER), "zarr:Array.__setitem__", "5",
              "predict", str(config)]
    process = subprocess.run(killed, capture_output=True)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    assert glob.glob(str(tmp_path / ".pred.zarr.tmp-*" / "*" / "c" / "*")), "no partial store"

    after = zarr.open_group(str(tmp_path / "pred.zarr"), mode="r")
    np.testing.assert_array_equal(after["labels"][:], good_labels)
    np.testing.assert_array_equal(after["probabilities"][:1000], good_proba_head)
    assert after["labels"].nchunks_initialized == after["labels"].nchunks


def test_a_failed_model_write_keeps_the_previous_file(tmp_path):
    from daskgmm._files import atomic_write_bytes

    path = tmp_path / "m.npz"
    model = GaussianMixture(2, random_state=0).fit(mixture_data(n_components=2))
    save_model(model, path)
    before = path.read_bytes()

    def half_then_fail(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, half_then_fail)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


@pytest.mark.parametrize(("dask_rows", "shard_rows"), [(700, 500), (300, 1000), (1000, 250), (123, 200)])
def test_sharded_predictions_keep_every_row_when_chunks_and_shards_do_not_line_up(
        tmp_path, X_offset, dask_rows, shard_rows):
    from daskgmm.jobs.outputs import write_predictions

    X = np.concatenate([X_offset] * 3)  # 3,600 rows
    model = GaussianMixture(3, random_state=0).fit(X_offset)
    write_predictions(model, da.from_array(X, chunks=(dask_rows, -1)), tmp_path / "p.zarr",
                      probabilities=True, log_likelihood=True, shard_rows=shard_rows)
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    assert group["labels"].shards == (shard_rows,)
    np.testing.assert_array_equal(group["labels"][:], model.predict(X))
    np.testing.assert_allclose(group["probabilities"][:], model.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(group["log_likelihood"][:], model.score_samples(X), rtol=1e-12)


def test_prediction_stores_keep_chunks_that_are_all_fill_value(tmp_path, X_offset):
    # A one-component model labels every row 0, zarr's fill value: zarr would
    # skip every chunk by default, and the store would read as missing chunks.
    from daskgmm.jobs.outputs import write_predictions

    model = GaussianMixture(1).fit(X_offset)
    write_predictions(model, da.from_array(X_offset, chunks=(100, -1)), tmp_path / "p.zarr")
    labels = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["labels"]
    assert labels.nchunks_initialized == labels.nchunks == 12
    assert not labels[:].any()


def test_a_wrong_array_name_names_the_arrays_there(store):
    with pytest.raises(KeyError, match=r"No array 'Y' in the Zarr group .* it holds \['X', 'covariances'"):
        GaussianMixture(2).fit(open_zarr_array(store, "Y"))
