"""The command's messages name the command's own options, never a Python keyword or an
unsafe numpy option, and a corrupt chunk is named by its stored key."""

from __future__ import annotations

import pickle

import numpy as np
import yaml
import zarr

from .conftest import free_port, invoke


def _config(tmp_path, data: dict) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"data": data, "model": {"n_components": 2, "random_state": 0},
                                    "output": {"model": str(tmp_path / "m.npz")}}))
    return str(path)


def test_a_group_of_several_arrays_asks_for_data_array_or_the_array_option(tmp_path, capsys):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("a", data=np.zeros((10, 2)))
    group.create_array("b", data=np.zeros((10, 2)))
    code, _, err = invoke(["fit", _config(tmp_path, {"path": str(tmp_path / "g.zarr")})], capsys)
    assert code == 3
    assert "set data.array in the config (--set data.array=NAME" in err
    assert "name the one to use" not in err


def test_missing_chunks_name_the_config_key_not_the_python_keyword(tmp_path, capsys):
    store = zarr.create_array(str(tmp_path / "x.zarr"), shape=(40, 2), chunks=(10, 2),
                              dtype="float64", fill_value=0.0)
    store[:20] = np.random.default_rng(0).normal(size=(20, 2))  # chunks 2 and 3 never written
    code, _, err = invoke(["fit", _config(tmp_path, {"path": str(tmp_path / "x.zarr")})], capsys)
    assert code == 3 and "missing" in err
    assert "data.allow_missing_chunks" in err
    assert "allow_missing_chunks=True" not in err


def test_a_pickle_is_not_a_model_file_and_no_allow_pickle_hint_is_relayed(tmp_path, capsys):
    bogus = tmp_path / "model.npy"
    np.save(bogus, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = invoke(["info", bogus], capsys)
    assert code != 0 and code != 1  # an expected error, not a crash
    assert "is not a daskgmm model file" in err and "neither an .npz nor an .npy file" in err
    assert "allow_pickle" not in err
    plain = tmp_path / "plain.npz"
    plain.write_bytes(pickle.dumps({"a": 1}))
    code, _, err = invoke(["info", plain], capsys)
    assert "is not a daskgmm model file" in err and "allow_pickle" not in err


def test_a_corrupt_chunk_is_named_by_its_key_with_what_to_do(tmp_path, capsys):
    from daskgmm.jobs.synthetic import make_mixture_zarr

    path = make_mixture_zarr(tmp_path / "d.zarr", 400, 2, 2, chunk_rows=100, seed=0)
    chunk = path / "X" / "c" / "2" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte: the CRC32C no longer matches
    chunk.write_bytes(bytes(raw))
    code, _, err = invoke(["fit", _config(tmp_path, {"path": str(path), "array": "X"})], capsys)
    assert code == 3
    assert "rows 200-299" in err and "(chunk c/2/0)" in err
    assert "daskgmm check --verify" in err


def test_every_estimator_parameter_is_a_model_config_key_with_its_default():
    import inspect

    from daskgmm import BayesianGaussianMixture, GaussianMixture
    from daskgmm.jobs.config import ModelConfig, estimator_params

    for estimator in (GaussianMixture, BayesianGaussianMixture):
        parameters = inspect.signature(estimator).parameters
        defaults = estimator_params(ModelConfig(estimator=estimator.__name__))
        assert defaults == {name: p.default for name, p in parameters.items()}
    assert ModelConfig().estimator == "GaussianMixture"


def test_online_em_from_a_config(tmp_path, capsys):
    from daskgmm import load_model
    from daskgmm.jobs.synthetic import make_mixture_zarr

    path = make_mixture_zarr(tmp_path / "d.zarr", 2000, 2, 2, chunk_rows=250, seed=0)
    config = tmp_path / "online.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(path), "array": "X"},
        "model": {"n_components": 2, "random_state": 0, "algorithm": "online",
                  "online_passes": 3, "batch_size": 500, "learning_decay": 0.7,
                  "learning_offset": 2.0},
        "output": {"model": str(tmp_path / "m.npz")}}))
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    params = load_model(tmp_path / "m.npz").get_params()
    assert (params["algorithm"], params["online_passes"], params["batch_size"],
            params["learning_decay"], params["learning_offset"]) == ("online", 3, 500, 0.7, 2.0)
    config.write_text(config.read_text().replace("learning_decay: 0.7", "learning_decay: 0.4"))
    code, _, err = invoke(["fit", config, "--overwrite"], capsys)
    assert code == 2 and "learning_decay" in err


def test_shell_completion_as_the_readme_documents_it():
    import os
    import shutil
    import subprocess

    daskgmm = shutil.which("daskgmm")
    assert daskgmm, "the daskgmm console script is not on PATH"
    source = subprocess.run([daskgmm], env={**os.environ, "_DASKGMM_COMPLETE": "bash_source"},
                            capture_output=True, text=True, check=True).stdout
    assert "_daskgmm_completion()" in source and "complete " in source
    completed = subprocess.run(
        [daskgmm], env={**os.environ, "_DASKGMM_COMPLETE": "bash_complete",
                        "COMP_WORDS": "daskgmm pre", "COMP_CWORD": "1"},
        capture_output=True, text=True, check=True).stdout
    assert "plain,predict" in completed.split()


def test_the_printed_dashboard_address_serves_the_dashboard():
    import io
    import re
    import urllib.request

    from daskgmm.jobs.cluster import connect
    from daskgmm.jobs.config import ClusterConfig

    log = io.StringIO()
    with connect(ClusterConfig(kind="local", n_workers=1, memory_limit="1GiB"), log=log):
        (link,) = re.findall(r"Dask dashboard: (http\S+)", log.getvalue())
        with urllib.request.urlopen(link, timeout=30) as response:
            page = response.read()
    assert response.status == 200
    assert b"needs bokeh" not in page and b"bokeh" in page.lower()


def test_a_dashboard_that_only_says_it_needs_bokeh_is_not_announced():
    import http.server
    import threading

    from daskgmm.jobs.cluster import dashboard_serves

    class NeedsBokeh(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"Dask needs bokeh>=3.1.0 for the dashboard."
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NeedsBokeh)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert not dashboard_serves(f"http://127.0.0.1:{server.server_port}/status")
    finally:
        server.shutdown()
    assert not dashboard_serves(f"http://127.0.0.1:{free_port()}/status", timeout=2)
