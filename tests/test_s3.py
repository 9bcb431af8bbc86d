"""s3:// data through a real S3 API: moto's standalone server, started here on 127.0.0.1.

The data go in through the S3 API, and ``daskgmm fit``, ``score`` and ``predict`` read them
with the config's ``data.storage_options`` (endpoint and credentials); without s3fs
installed, an s3:// path is a data error (exit 3) that names the extra to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest
import yaml
import zarr

from .conftest import free_port, invoke, predicted_labels

pytest.importorskip("s3fs", reason="the test extra installs s3fs")  # listed in [test]

BUCKET = "gmm-data"



@pytest.fixture(scope="module")
def s3_server():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # until it answers (or dies): its own readiness, not a clock
            if server.poll() is not None:
                raise RuntimeError("moto's server exited at start")
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("moto's server did not answer")
        yield endpoint
    finally:
        server.terminate()
        server.wait()


@pytest.fixture(scope="module")
def s3_data(s3_server):
    import s3fs

    options = {"endpoint_url": s3_server, "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "eu-west-1"}}
    s3fs.S3FileSystem(**options).mkdir(BUCKET)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(1500, 3)), rng.normal(size=(1500, 3)) + 5.0])
    X = X[rng.permutation(len(X))]
    url = f"s3://{BUCKET}/data.zarr"
    group = zarr.open_group(url, mode="w", storage_options=options)
    group.create_array("X", data=X, chunks=(500, 3))
    return url, options, X


def _config(tmp_path, url, options) -> str:
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"path": url, "array": "X", "storage_options": options},
        "model": {"n_components": 2, "random_state": 0},
        "output": {"model": str(tmp_path / "m.npz"), "predictions": str(tmp_path / "p.zarr")}}))
    return str(path)


def test_fit_score_and_predict_read_s3_with_the_configs_storage_options(s3_data, tmp_path,
                                                                        capsys):
    from daskgmm import GaussianMixture, load_model

    url, options, X = s3_data
    config = _config(tmp_path, url, options)
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    model = load_model(tmp_path / "m.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = GaussianMixture(2, random_state=0, chunk_size=500).fit(X)
    np.testing.assert_allclose(model.means_, local.means_, rtol=1e-9, atol=1e-9)

    code, _, err = invoke(["score", config, "--log-format", "json"], capsys)
    assert code == 0, err
    assert f'"n_samples": {len(X)}' in err

    code, _, err = invoke(["predict", config], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(predicted_labels(tmp_path / "p.zarr"), local.predict(X))


def test_a_bucket_that_does_not_exist_is_a_data_error(s3_data, tmp_path, capsys):
    url, options, _ = s3_data
    config = _config(tmp_path, "s3://no-such-bucket/data.zarr", options)
    code, _, err = invoke(["fit", config], capsys)
    assert code == 3, err
    assert "Traceback" not in err


def test_without_s3fs_an_s3_path_is_exit_3_naming_the_extra(tmp_path):
    # A module named s3fs that cannot be imported, first on the path: as if not installed.
    shadow = tmp_path / "shadow" / "s3fs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 's3fs'\")\n")
    config = _config(tmp_path, f"s3://{BUCKET}/data.zarr", {"anon": True})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "daskgmm.jobs.cli", "fit", config],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 3, out.stderr
    assert "pip install 'daskgmm[s3]'" in out.stderr
    assert "Traceback" not in out.stderr


def _output_config(tmp_path, data_url, options, bucket_prefix, **cluster) -> str:
    path = tmp_path / "s3-out.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"path": data_url, "array": "X", "storage_options": options},
        "model": {"n_components": 2, "random_state": 0},
        "cluster": cluster or {"kind": "embedded"},
        "output": {"model": f"{bucket_prefix}/model.npz",
                   "predictions": f"{bucket_prefix}/predictions.zarr",
                   "probabilities": True}}))
    return str(path)


def test_the_model_and_predictions_go_out_through_s3_and_are_never_silently_replaced(
        s3_data, tmp_path, capsys):
    from daskgmm import GaussianMixture, load_model

    url, options, X = s3_data
    prefix = f"s3://{BUCKET}/outputs-{tmp_path.name}"
    config = _output_config(tmp_path, url, options, prefix)
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    model = load_model(f"{prefix}/model.npz", options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = GaussianMixture(2, random_state=0, chunk_size=500).fit(X)
    np.testing.assert_allclose(model.means_, local.means_, rtol=1e-9, atol=1e-9)

    code, _, err = invoke(["predict", config], capsys)
    assert code == 0, err
    group = zarr.open_group(f"{prefix}/predictions.zarr", mode="r", storage_options=options)
    np.testing.assert_array_equal(group["labels"][:], local.predict(X))
    np.testing.assert_allclose(group["probabilities"][:], local.predict_proba(X), atol=1e-12)

    # Again without --overwrite: refused (exit 5), the predictions and model as they were.
    code, _, err = invoke(["predict", config, "--no-probabilities"], capsys)
    assert code == 5, err
    assert "--overwrite" in err
    assert "probabilities" in zarr.open_group(f"{prefix}/predictions.zarr", mode="r",
                                              storage_options=options)
    code, _, err = invoke(["fit", config], capsys)
    assert code == 5, err

    code, _, err = invoke(["predict", config, "--no-probabilities", "--overwrite"], capsys)
    assert code == 0, err
    group = zarr.open_group(f"{prefix}/predictions.zarr", mode="r", storage_options=options)
    assert sorted(group.array_keys()) == ["labels"]
    import s3fs

    left = s3fs.S3FileSystem(**options).ls(f"{BUCKET}/outputs-{tmp_path.name}", detail=False)
    assert sorted(p.rsplit("/", 1)[1] for p in left) == ["model.npz", "predictions.zarr"]


def test_make_data_writes_to_s3_and_a_worker_process_cluster_predicts_into_s3(
        s3_data, tmp_path, capsys):
    from daskgmm.jobs.synthetic import make_mixture_zarr

    _, options, _ = s3_data
    data_url = f"s3://{BUCKET}/made-{tmp_path.name}.zarr"
    code, _, err = invoke(["make-data", data_url, "--n-samples", "3000", "--n-features", "2",
                           "--n-components", "2", "--chunk-rows", "700", "--seed", "4",
                           "--storage-options", json.dumps(options)], capsys)
    assert code == 0, err
    local = make_mixture_zarr(tmp_path / "local.zarr", 3000, 2, 2, chunk_rows=700, seed=4)
    made = zarr.open_group(data_url, mode="r", storage_options=options)
    np.testing.assert_array_equal(made["X"][:], zarr.open_group(str(local), mode="r")["X"][:])

    # Workers in other processes write the prediction chunks through the S3 API.
    prefix = f"s3://{BUCKET}/cluster-{tmp_path.name}"
    config = _output_config(tmp_path, data_url, options, prefix, kind="local", n_workers=1,
                            threads_per_worker=2)
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    code, _, err = invoke(["predict", config], capsys)
    assert code == 0, err
    from daskgmm import load_model

    model = load_model(f"{prefix}/model.npz", options)
    labels = zarr.open_group(f"{prefix}/predictions.zarr", mode="r",
                             storage_options=options)["labels"][:]
    np.testing.assert_array_equal(labels, model.predict(made["X"][:]))


def test_bad_storage_options_on_the_command_line_are_a_usage_error(tmp_path, capsys):
    code, _, err = invoke(["make-data", f"s3://{BUCKET}/x.zarr", "--storage-options", "[1]"],
                          capsys)
    assert code == 2
    assert "not a JSON object" in err


def test_without_s3fs_an_s3_output_is_refused_before_any_work_naming_the_extra(tmp_path):
    from daskgmm.jobs.synthetic import make_mixture_zarr

    shadow = tmp_path / "shadow" / "s3fs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 's3fs'\")\n")
    store = make_mixture_zarr(tmp_path / "data.zarr", 500, 2, 2, chunk_rows=250)
    config = tmp_path / "out.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(store), "array": "X"},
                                      "output": {"model": f"s3://{BUCKET}/m.npz"}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "daskgmm.jobs.cli", "fit", str(config),
                          "--log-format", "json"], capture_output=True, text=True, env=env)
    assert out.returncode == 5, out.stderr
    assert "pip install 'daskgmm[s3]'" in out.stderr
    assert '"event": "error"' in out.stderr and "Traceback" not in out.stderr
    assert '"event": "pass"' not in out.stderr  # refused before any work


def test_rewrite_copies_an_s3_store_into_a_checksummed_s3_store(s3_data, tmp_path, capsys):
    url, options, X = s3_data
    dest = f"s3://{BUCKET}/checked-{tmp_path.name}.zarr"
    code, _, err = invoke(["rewrite", url, dest, "--storage-options", json.dumps(options)], capsys)
    assert code == 0, err
    copy = zarr.open_group(dest, mode="r", storage_options=options)["X"]
    np.testing.assert_array_equal(copy[:], X)
    assert any("crc32c" in str(codec).lower() for codec in copy.metadata.codecs)
