"""Model files and checkpoints are checked against one schema before they are used.

Every damaged file below loaded without error before the schema (or exited 1 with a
traceback): a NaN weight made ``daskgmm score`` print ``log_likelihood=nan`` and exit 0,
``converged_: "false"`` was read as True, ``n_components: 7`` beside 3-component arrays
was accepted. Now ``load_model`` raises ``ModelFileError`` naming the field, and every
``daskgmm`` command exits 5.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from daskgmm import Checkpoint, GaussianMixture, ModelFileError, load_model, save_model
from daskgmm.jobs.synthetic import make_mixture_zarr
from daskgmm.persistence import (
    model_file_contents,
    read_model_file,
    validate_model_file,
    write_model_file,
)

from .conftest import invoke

N_COMPONENTS, N_FEATURES = 3, 3


def _raw(path: Path) -> tuple[dict, dict]:
    """A model file's arrays and metadata as stored, without any check."""
    with zipfile.ZipFile(path) as archive:
        arrays = {name[:-4]: np.load(archive.open(name)) for name in archive.namelist()}
    metadata = json.loads(arrays.pop("__metadata__").tobytes())
    return arrays, metadata


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path | str:
    folder = tmp_path_factory.mktemp("model-files")
    return make_mixture_zarr(folder / "data.zarr", 3000, N_FEATURES, N_COMPONENTS,
                             chunk_rows=1000, seed=3)


@pytest.fixture(scope="module")
def saved(store, tmp_path_factory) -> dict[str, Path | str]:
    """A good model file of each covariance type, fitted on ``store``."""
    import zarr

    X = zarr.open_array(store / "X", mode="r")[:]
    folder = tmp_path_factory.mktemp("saved")
    return {ct: save_model(GaussianMixture(N_COMPONENTS, covariance_type=ct, random_state=0)
                           .fit(X), folder / f"{ct}.npz")
            for ct in ("full", "tied", "diag", "spherical")}


def _set(section: str, key: str, value) -> Callable[[dict, dict], None]:
    def damage(arrays: dict, metadata: dict) -> None:
        metadata[section][key] = value
    return damage


def _scale(name: str, index, value) -> Callable[[dict, dict], None]:
    def damage(arrays: dict, metadata: dict) -> None:
        arrays[name][index] = value
    return damage


def _transpose_factors(arrays: dict, metadata: dict) -> None:
    arrays["precisions_cholesky"] = np.swapaxes(arrays["precisions_cholesky"], -1, -2).copy()


def _negative_diagonal(arrays: dict, metadata: dict) -> None:
    arrays["precisions_cholesky"][1] *= -1.0  # still triangular, U U^T unchanged


def _weights_off_range(arrays: dict, metadata: dict) -> None:
    arrays["weights"] = np.array([1.5, -0.25, -0.25])  # sums to 1


def _weights_off_sum(arrays: dict, metadata: dict) -> None:
    arrays["weights"] = arrays["weights"] * 0.9


def _covariances_scaled(arrays: dict, metadata: dict) -> None:
    arrays["covariances"] = arrays["covariances"] * 1.01


def _covariance_asymmetric(arrays: dict, metadata: dict) -> None:
    arrays["covariances"][0, 0, 1] += 0.05


def _means_column_dropped(arrays: dict, metadata: dict) -> None:
    arrays["means"] = arrays["means"][:, :2].copy()


def _params_a_string(arrays: dict, metadata: dict) -> None:
    metadata["params"] = "n_components=3"


# (covariance type of the file, damage, the field the message must name)
DAMAGES = {
    "nan weight": ("full", _scale("weights", 0, np.nan), "weights"),
    "infinite mean": ("full", _scale("means", (1, 2), np.inf), "means"),
    "nan covariance": ("diag", _scale("covariances", (0, 0), np.nan), "covariances"),
    "all-zero factors": ("full", _scale("precisions_cholesky", slice(None), 0.0),
                         "precisions_cholesky"),
    "zero factor (diag)": ("diag", _scale("precisions_cholesky", (2, 1), 0.0),
                           "precisions_cholesky"),
    "weights outside [0, 1]": ("full", _weights_off_range, "weights: outside"),
    "weights not summing to 1": ("full", _weights_off_sum, "weights: sum"),
    "n_components 7": ("full", _set("params", "n_components", 7), "n_components=7"),
    "n_features_in_ 4": ("full", _set("fitted", "n_features_in_", 4), "n_features_in_=4"),
    "covariance_type diag beside full arrays": ("full", _set("params", "covariance_type", "diag"),
                                                "covariance_type='diag'"),
    "means of the wrong shape": ("full", _means_column_dropped, "means: shape"),
    "lower triangular factors": ("full", _transpose_factors, "not upper triangular"),
    "negative diagonal": ("full", _negative_diagonal, "diagonal entry <= 0"),
    "covariances not the factors' inverse": ("full", _covariances_scaled,
                                             "covariances: component 0 disagrees"),
    "covariances not the factor's inverse (tied)": ("tied", _covariances_scaled,
                                                    "covariances: the tied"),
    "covariances not the factors' inverse (spherical)": ("spherical", _covariances_scaled,
                                                         "covariances: component 0"),
    "asymmetric covariance": ("full", _covariance_asymmetric, "not symmetric"),
    "params a string": ("full", _params_a_string, "params"),
    "n_iter_ 'many'": ("full", _set("fitted", "n_iter_", "many"), "fitted.n_iter_"),
    "converged_ 'false'": ("full", _set("fitted", "converged_", "false"), "fitted.converged_"),
    "lower_bound_ NaN": ("full", _set("fitted", "lower_bound_", float("nan")),
                         "fitted.lower_bound_"),
    "n_components true": ("full", _set("params", "n_components", True), "params.n_components"),
    "reg_covar 'small'": ("full", _set("params", "reg_covar", "small"), "reg_covar"),
}


@pytest.fixture(params=list(DAMAGES), ids=list(DAMAGES))
def damaged(request, saved, tmp_path) -> tuple[Path, str]:
    covariance_type, damage, field = DAMAGES[request.param]
    arrays, metadata = _raw(saved[covariance_type])
    damage(arrays, metadata)
    path = tmp_path / "damaged.npz"
    write_model_file(path, arrays, metadata)  # the raw writer: no check
    return path, field


def test_a_damaged_model_file_is_refused_naming_the_field(damaged):
    path, field = damaged
    with pytest.raises(ModelFileError, match="is not a valid daskgmm model file") as info:
        load_model(path)
    assert field in str(info.value)
    with pytest.raises(ModelFileError, match="is not a valid daskgmm model file"):
        read_model_file(path)


def _daskgmm(args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgmm.jobs.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def test_score_exits_5_on_every_damaged_model_file(damaged, store, capsys):
    path, field = damaged
    code, out, err = invoke(["score", "--model", path, "--data", store,
                                          "--array", "X"], capsys)
    assert code == 5, err
    assert field in err and "Traceback" not in err
    assert "log_likelihood" not in out + err


@pytest.mark.parametrize("damage", ["nan weight", "lower triangular factors", "n_iter_ 'many'"])
def test_every_command_exits_5_on_a_damaged_model_file(damage, saved, store, tmp_path):
    covariance_type, change, field = DAMAGES[damage]
    arrays, metadata = _raw(saved[covariance_type])
    change(arrays, metadata)
    path = write_model_file(tmp_path / "damaged.npz", arrays, metadata)
    for args in (["score", "--model", path, "--data", store, "--array", "X"],
                 ["predict", "--model", path, "--data", store, "--array", "X",
                  "--out", tmp_path / "pred.zarr"],
                 ["info", path], ["report", path, "--out-dir", tmp_path / "report"]):
        process = _daskgmm(args, tmp_path)
        assert process.returncode == 5, (args[0], process.stderr)
        assert field in process.stderr and "Traceback" not in process.stderr
        assert "nan" not in process.stdout.lower()
    assert not (tmp_path / "pred.zarr").exists()


def test_good_model_files_of_every_covariance_type_pass_and_round_trip(saved):
    for covariance_type, path in saved.items():
        model = load_model(path)
        arrays, metadata = _raw(path)
        assert model.covariance_type == covariance_type
        np.testing.assert_array_equal(model.precisions_cholesky_, arrays["precisions_cholesky"])
        assert model.converged_ is metadata["fitted"]["converged_"]
        assert type(model.n_iter_) is int


def test_a_fit_that_never_iterated_keeps_its_minus_infinite_lower_bound(store, tmp_path):
    import zarr

    X = zarr.open_array(store / "X", mode="r")[:]
    model = GaussianMixture(N_COMPONENTS, max_iter=0, random_state=0).fit(X)
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert loaded.lower_bound_ == -np.inf and loaded.n_iter_ == 0


def test_the_writer_uses_the_schema_and_writes_nothing_invalid(saved, tmp_path):
    model = load_model(saved["full"])
    model.weights_ = np.array([0.5, 0.5, np.nan])
    with pytest.raises(ModelFileError, match="the model to be written .*weights"):
        save_model(model, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()
    arrays, metadata = _raw(saved["diag"])
    with pytest.raises(ModelFileError, match="precisions_cholesky"):
        model_file_contents(metadata["params"], weights=arrays["weights"], means=arrays["means"],
                            covariances=arrays["covariances"],
                            precisions_cholesky=-arrays["precisions_cholesky"],
                            lower_bounds=arrays["lower_bounds"], converged=True, n_iter=3,
                            lower_bound=float(arrays["lower_bounds"][-1]), n_features=N_FEATURES)


def test_the_schema_checks_checkpoint_sections(saved):
    arrays, metadata = _raw(saved["full"])
    n_iter = metadata["fitted"]["n_iter_"]
    metadata["checkpoint"] = {"n_iter": n_iter, "lower_bound": metadata["fitted"]["lower_bound_"],
                              "converged": "false", "written": 0.0}
    with pytest.raises(ModelFileError, match="checkpoint.converged"):
        validate_model_file(arrays, metadata)
    metadata["checkpoint"].update(converged=metadata["fitted"]["converged_"], n_iter=n_iter + 1)
    with pytest.raises(ModelFileError, match="checkpoint.n_iter"):
        validate_model_file(arrays, metadata)


def test_a_damaged_checkpoint_is_refused_before_resuming(store, tmp_path):
    import zarr

    X = zarr.open_array(store / "X", mode="r")[:]
    checkpoint = tmp_path / "ckpt.npz"
    model = GaussianMixture(N_COMPONENTS, random_state=0, max_iter=2, tol=0)
    with pytest.warns(Warning):
        model.fit(X, callbacks=[Checkpoint(checkpoint)])
    arrays, metadata = _raw(checkpoint)
    assert metadata["checkpoint"]["n_iter"] == 2
    arrays["precisions_cholesky"][0] = 0.0
    write_model_file(checkpoint, arrays, metadata)
    with pytest.raises(ModelFileError, match="precisions_cholesky"):
        GaussianMixture(N_COMPONENTS, random_state=0, max_iter=2, tol=0).fit(
            X, resume_from=checkpoint)

    config = tmp_path / "job.yaml"
    config.write_text(json.dumps({
        "data": {"path": str(store), "array": "X"},
        "model": {"n_components": N_COMPONENTS, "random_state": 0, "max_iter": 2, "tol": 0},
        "output": {"model": str(tmp_path / "model.npz")},
        "checkpoint": {"path": str(checkpoint)}}))
    process = _daskgmm(["fit", config, "--resume"], tmp_path)
    assert process.returncode == 5, process.stderr
    assert "precisions_cholesky" in process.stderr and "Traceback" not in process.stderr
    assert not (tmp_path / "model.npz").exists()


def test_score_never_prints_a_non_finite_log_likelihood(saved, store, tmp_path):
    # A valid file (finite, consistent) whose precision is so large that the rows' squared
    # Mahalanobis distances overflow: score says so and exits 3 rather than print -inf.
    arrays, metadata = _raw(saved["spherical"])
    arrays["covariances"] = np.full(N_COMPONENTS, 1e-300)
    arrays["precisions_cholesky"] = 1.0 / np.sqrt(arrays["covariances"])
    arrays["means"] = arrays["means"] + 1e6  # every row (1e6 * 1e150)**2 away: overflows
    path = write_model_file(tmp_path / "sharp.npz", arrays, metadata)
    load_model(path)  # passes the schema
    process = _daskgmm(["score", "--model", path, "--data", store, "--array", "X"], tmp_path)
    assert process.returncode == 3, process.stderr
    assert "overflow" in process.stderr
    assert "log_likelihood=" not in process.stdout + process.stderr
