"""The daskgmm command with model.estimator: BayesianGaussianMixture: fit, info, predict, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from daskgmm import BayesianGaussianMixture, load_model
from daskgmm.jobs import plots
from daskgmm.jobs.config import BAYESIAN_ONLY, GAUSSIAN_ONLY, ModelConfig, estimator_params

from .conftest import invoke

BAYESIAN_MODEL = {"estimator": "BayesianGaussianMixture", "n_components": 8, "random_state": 0,
                  "weight_concentration_prior": 0.001, "max_iter": 300, "init_params": "k-means++"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from daskgmm.jobs.synthetic import make_mixture_zarr

    path = tmp_path_factory.mktemp("bayesian") / "data.zarr"
    make_mixture_zarr(path, 6000, 2, 3, chunk_rows=1000, seed=3, separation=6.0, offset=50.0)
    return path


def _config(tmp_path: Path, store: Path, **model) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"path": str(store), "array": "X"}, "model": model,
        "output": {"model": str(tmp_path / "m.npz"), "predictions": str(tmp_path / "p.zarr"),
                   "probabilities": True, "log_likelihood": True}}))
    return path


def test_the_config_keys_of_each_estimator_are_its_parameters_only():
    from daskgmm import GaussianMixture

    gaussian = set(GaussianMixture._get_param_names())
    bayesian = set(BayesianGaussianMixture._get_param_names())
    assert set(GAUSSIAN_ONLY) == gaussian - bayesian
    assert set(BAYESIAN_ONLY) == bayesian - gaussian
    assert set(ModelConfig.model_fields) == gaussian | bayesian | {"estimator"}
    assert set(estimator_params(ModelConfig())) == gaussian
    assert set(estimator_params(ModelConfig(estimator="BayesianGaussianMixture"))) == bayesian


def test_fit_info_predict_and_report_handle_a_bayesian_model(tmp_path, store, capsys):
    config = _config(tmp_path, store, **BAYESIAN_MODEL)
    code, _, err = invoke(["fit", config, "--log-format", "json"], capsys)
    assert code == 0, err
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["estimator"] == "BayesianGaussianMixture"
    assert summary["components_holding_99pct"] == 3 and "bic" not in summary
    model = load_model(tmp_path / "m.npz")
    assert type(model) is BayesianGaussianMixture
    assert model.weight_concentration_prior == 0.001 and summary["lower_bound"] == model.lower_bound_
    assert np.sort(model.weights_)[-3:].sum() >= 0.99

    code, out, err = invoke(["info", tmp_path / "m.npz"], capsys)
    assert code == 0, err
    assert "daskgmm.BayesianGaussianMixture" in out and "lower bound=" in out
    assert "3 of 8 components hold 99% of the weight" in out
    code, out, _ = invoke(["info", tmp_path / "m.npz", "--json"], capsys)
    info = json.loads(out)
    assert info["priors"]["weight_concentration_prior_"] == 0.001
    assert info["arrays"]["weight_concentration"] == [2, 8]

    code, _, err = invoke(["predict", config], capsys)
    assert code == 0, err
    pred = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    X = zarr.open_group(str(store), mode="r")["X"][:]
    np.testing.assert_array_equal(pred["labels"][:], model.predict(X))
    np.testing.assert_allclose(pred["probabilities"][:], model.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(pred["log_likelihood"][:], model.score_samples(X), rtol=1e-12)
    assert len(np.unique(pred["labels"][:])) == 3

    code, out, err = invoke(["report", tmp_path / "m.npz", "--data", store, "--array", "X",
                             "--out-dir", tmp_path / "report"], capsys)
    assert code == 0, err
    for name in ("log_likelihood.png", "weights.png", "projection.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000, name


def test_the_weights_plot_shows_which_components_the_data_switched_off():
    model = BayesianGaussianMixture(n_components=5)
    model.weights_ = np.array([0.5, 1e-4, 0.3, 0.1999, 0.0])
    figure = plots.draw_weights(model)
    bars = figure.axes[0].patches
    colours = [bar.get_facecolor()[:3] for bar in bars]
    blue = colours[0]
    assert [c == blue for c in colours] == [True, False, True, True, False]
    assert figure.axes[0].get_title().startswith("3 of 5 components hold 99% of the weight")
    from daskgmm import GaussianMixture

    gaussian = GaussianMixture(5)
    gaussian.weights_ = model.weights_
    figure = plots.draw_weights(gaussian)  # nothing is switched off in EM: every bar blue
    assert {bar.get_facecolor()[:3] for bar in figure.axes[0].patches} == {blue}
    assert figure.axes[0].get_title() == "the weights of the 5 components"
    assert plots.components_holding([0.25] * 4, 0.99) == 4
    assert plots.components_holding([0.0, 1.0, 0.0], 0.99) == 1


def test_commands_that_need_a_likelihood_refuse_a_bayesian_model(tmp_path, store, capsys):
    config = _config(tmp_path, store, **{**BAYESIAN_MODEL, "max_iter": 5})
    assert invoke(["fit", config], capsys)[0] == 0
    code, out, err = invoke(["score", config], capsys)
    assert code == 2 and "BayesianGaussianMixture, which has no likelihood" in err
    code, out, err = invoke(["select", config, "--n-components", "1-2"], capsys)
    assert code == 2 and "model.estimator is BayesianGaussianMixture" in err


@pytest.mark.parametrize("model, key", [
    ({"estimator": "BayesianGaussianMixture", "means_init": [[0.0, 0.0]]}, "model.means_init"),
    ({"estimator": "BayesianGaussianMixture", "missing": "marginalize"}, "model.missing"),
    ({"weight_concentration_prior": 0.1}, "model.weight_concentration_prior"),
])
def test_a_key_of_the_other_estimator_is_a_config_error_naming_it(tmp_path, store, capsys, model,
                                                                   key):
    code, _, err = invoke(["fit", _config(tmp_path, store, **model)], capsys)
    assert code == 2 and key in err and "not of model.estimator" in err
    assert not (tmp_path / "m.npz").exists()


def test_the_bayesian_example_config_switches_off_what_the_data_do_not_need(tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[1] / "configs" / "bayesian.yaml"
    code, _, err = invoke(["make-data", "demo-data/bayesian.zarr", "--n-samples", "20000",
                           "--n-features", "3", "--n-components", "4", "--chunk-rows", "5000"],
                          capsys)
    assert code == 0, err
    code, _, err = invoke(["fit", config, "--log-format", "json"], capsys)
    assert code == 0, err
    assert json.loads(err.strip().splitlines()[-1])["components_holding_99pct"] == 4
    assert Path("demo-data/bayesian-checkpoint.npz").exists()
    code, _, err = invoke(["predict", config], capsys)
    assert code == 0, err
    labels = zarr.open_group("demo-data/bayesian-predictions.zarr", mode="r")["labels"][:]
    assert len(np.unique(labels)) == 4


def test_a_bad_prior_in_the_config_is_exit_2_before_any_work(tmp_path, store, capsys):
    config = _config(tmp_path, store, estimator="BayesianGaussianMixture", n_components=3,
                     covariance_prior=[[1.0, 0.0], [0.0, -1.0]])
    code, _, err = invoke(["fit", config], capsys)
    assert code == 2 and "positive-definite" in err and "Traceback" not in err
    assert not (tmp_path / "m.npz").exists()
