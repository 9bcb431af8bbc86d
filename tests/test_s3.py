"""s3:// data through a real S3 API: moto's standalone server, started here on 127.0.0.1.

The data go in through the S3 API, and ``daskgmm fit``, ``score`` and ``predict`` read them
with the config's ``data.storage_options`` (endpoint and credentials); without s3fs
installed, an s3:// path is a data error (exit 3) that names the extra to install.
"""

from __future__ import annotations

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
