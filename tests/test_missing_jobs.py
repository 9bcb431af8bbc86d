"""Missing entries in batch jobs: model.missing, `daskgmm impute`, a checkpointed fit resumed,
and a fit on data with holes larger than the workers' memory."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml
import zarr

from daskgmm import Checkpoint, GaussianMixture, load_model, open_zarr_array
from daskgmm.jobs.outputs import WRITE_EVERY_CHUNK, checksummed_compressors

from .conftest import invoke, predicted_labels

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data_with_holes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [0.0, 6.0, 6.0]])
    X = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 3))
    X[rng.random(X.shape) < 0.2] = np.nan
    return X


@pytest.fixture(scope="module")
def holes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("holes")
    X = _data_with_holes(3000)
    group = zarr.open_group(str(folder / "data.zarr"), mode="w")
    group.create_array("X", data=X, chunks=(500, 3), compressors=checksummed_compressors(),
                       config=WRITE_EVERY_CHUNK)
    return folder, X


def _job(folder, **model) -> str:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"path": str(folder / "data.zarr"), "array": "X"},
        "model": {"n_components": 3, "random_state": 0, "missing": "marginalize", **model},
        "output": {"model": str(folder / "m.npz"), "predictions": str(folder / "p.zarr"),
                   "imputed": str(folder / "filled.zarr"), "overwrite": True}}))
    return str(path)


def test_fit_predict_and_impute_with_model_missing_marginalize(holes, capsys):
    folder, X = holes
    config = _job(folder)
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    model = load_model(folder / "m.npz")
    assert model.missing == "marginalize"
    alone = GaussianMixture(3, random_state=0, missing="marginalize", chunk_size=500).fit(X)
    np.testing.assert_allclose(model.means_, alone.means_, rtol=1e-9)

    code, _, err = invoke(["predict", config], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(predicted_labels(folder / "p.zarr"), model.predict(X))

    code, out, err = invoke(["impute", config], capsys)
    assert code == 0, err
    assert "Wrote imputed data for 3,000 rows" in out
    filled = zarr.open_group(str(folder / "filled.zarr"), mode="r")["X"]
    assert filled.chunks == (500, 3) and not np.isnan(filled[:]).any()
    np.testing.assert_allclose(filled[:], model.impute(X), rtol=1e-12)
    np.testing.assert_array_equal(filled[:][~np.isnan(X)], X[~np.isnan(X)])


def test_nan_without_model_missing_is_a_data_error_naming_the_key(holes, capsys):
    folder, _ = holes
    config = _job(folder, missing="error")
    code, _, err = invoke(["fit", config], capsys)
    assert code == 3, err
    assert "model.missing: marginalize" in err and "Traceback" not in err


def test_impute_needs_a_model_that_marginalizes(holes, tmp_path, capsys):
    from daskgmm import save_model

    folder, X = holes
    save_model(GaussianMixture(3, random_state=0).fit(np.nan_to_num(X)), tmp_path / "plain.npz")
    code, _, err = invoke(["impute", "--model", tmp_path / "plain.npz", "--data",
                           folder / "data.zarr", "--array", "X", "--out", tmp_path / "f.zarr"],
                          capsys)
    assert code == 2, err
    assert "model.missing: marginalize" in err
    assert not (tmp_path / "f.zarr").exists()


def test_a_checkpointed_fit_with_holes_resumes_to_the_uninterrupted_result(holes, tmp_path):
    folder, _ = holes
    X = open_zarr_array(folder / "data.zarr", "X")
    fit = dict(n_components=3, random_state=0, missing="marginalize", tol=0.0, max_iter=8)
    whole = GaussianMixture(**fit).fit(X)
    stop_after_3 = lambda info: info.n_iter >= 3  # noqa: E731 (stops the fit, as a kill would)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(**fit).fit(X, callbacks=[Checkpoint(tmp_path / "ckpt.npz"), stop_after_3])
    resumed = GaussianMixture(**fit).fit(X, resume_from=tmp_path / "ckpt.npz")
    assert resumed.n_iter_ == whole.n_iter_ == 8
    np.testing.assert_array_equal(resumed.means_, whole.means_)
    np.testing.assert_array_equal(resumed.covariances_, whole.covariances_)


def test_every_example_config_is_valid():
    from pathlib import Path

    from daskgmm.jobs.config import load_config

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        load_config(path)  # raises ConfigError naming the key


def test_the_missing_config_runs_end_to_end_on_data_made_with_holes(tmp_path, monkeypatch,
                                                                     capsys):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[1] / "configs" / "missing.yaml"
    code, _, err = invoke(["make-data", "demo-data/holes.zarr", "--n-samples", "4000",
                           "--n-components", "3", "--n-features", "3", "--chunk-rows", "1000",
                           "--missing-fraction", "0.2"], capsys)
    assert code == 0, err
    X = zarr.open_group("demo-data/holes.zarr", mode="r")["X"][:]
    assert 0.18 < np.isnan(X).mean() < 0.22
    for command in ("fit", "predict", "impute"):
        code, _, err = invoke([command, config, "--set", "model.n_components=3"], capsys)
        assert code == 0, (command, err)
    filled = zarr.open_group("demo-data/holes-imputed.zarr", mode="r")["X"][:]
    assert not np.isnan(filled).any()
