"""BayesianGaussianMixture in model files, checkpoints and fit_many: what GaussianMixture has."""

from __future__ import annotations

import inspect
import json
import warnings

import dask.array as da
import numpy as np
import pytest

from daskgmm import (
    BayesianGaussianMixture,
    Checkpoint,
    CheckpointParamsError,
    GaussianMixture,
    ModelFileError,
    _em,
    fit_many,
    load_model,
    save_model,
)
from daskgmm import estimator as estimator_module
from daskgmm.persistence import read_model_file, write_model_file

from .conftest import COVARIANCE_TYPES
from .test_persistence import assert_same_params

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
D = 3
PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]
FITTED = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
          "mean_precision_", "degrees_of_freedom_", "lower_bound_", "lower_bounds_", "n_iter_",
          "converged_", "mean_prior_", "covariance_prior_", "degrees_of_freedom_prior_",
          "weight_concentration_prior_", "mean_precision_prior_", "n_features_in_"]


def _data(n_per: int = 150, seed: int = 0, offset: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [-6.0, 0.0, 6.0]])
    X = np.concatenate([rng.normal(size=(n_per, D)) + c for c in centres]) + offset
    return X[rng.permutation(len(X))]


def every_parameter_changed(covariance_type: str, prior_type: str) -> dict:
    """A value for every constructor parameter, none of them the default."""
    covariance_prior = {"full": np.eye(D) * 2.0 + 0.25, "tied": np.eye(D) * 1.5 + 0.1,
                        "diag": np.array([1.5, 2.0, 0.75]), "spherical": 1.25}[covariance_type]
    return {
        "n_components": 4, "covariance_type": covariance_type, "tol": 1e-4, "reg_covar": 1e-5,
        "max_iter": 40, "n_init": 2, "init_params": "random_from_data",
        "weight_concentration_prior_type": prior_type, "weight_concentration_prior": 0.05,
        "mean_precision_prior": 0.5, "mean_prior": np.array([100.5, 101.0, 99.25]),
        "degrees_of_freedom_prior": D + 0.5, "covariance_prior": covariance_prior,
        "random_state": np.random.RandomState(11), "warm_start": True, "verbose": 1,
        "verbose_interval": 3, "split_every": 4, "persist": False, "chunk_size": 111,
    }


def assert_same_fit(a, b, rtol: float = 0.0) -> None:
    for name in FITTED:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=0,
                                   err_msg=name)
    for part_a, part_b in zip(np.atleast_2d(a.weight_concentration_),
                              np.atleast_2d(b.weight_concentration_), strict=True):
        np.testing.assert_allclose(part_a, part_b, rtol=rtol, atol=0)


def test_the_test_model_changes_every_constructor_parameter():
    defaults = {name: p.default for name, p in
                inspect.signature(BayesianGaussianMixture).parameters.items()}
    changed = every_parameter_changed("tied", "dirichlet_distribution")
    assert changed.keys() == defaults.keys()
    assert [n for n in changed if not isinstance(changed[n], np.ndarray | np.random.RandomState)
            and changed[n] == defaults[n]] == []


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_model_with_every_parameter_changed_round_trips_through_a_model_file(
        tmp_path, covariance_type, prior_type):
    X = _data()
    params = every_parameter_changed(covariance_type, prior_type)
    model = BayesianGaussianMixture(**params).fit(X)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert type(loaded) is BayesianGaussianMixture
    # The RandomState as the fit left it, as after a pickle round trip.
    assert_same_params(loaded.get_params(deep=False), model.get_params(deep=False))
    assert_same_fit(loaded, model)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    assert type(loaded.weight_concentration_) is type(model.weight_concentration_)
    # The reloaded model continues as the saved one would (warm_start=True).
    np.testing.assert_array_equal(loaded.fit(X).weights_, model.fit(X).weights_)


def test_a_default_model_with_data_driven_priors_round_trips(tmp_path):
    X = _data(seed=1)
    model = BayesianGaussianMixture(n_components=5, random_state=0).fit(da.from_array(X, 100))
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert_same_fit(loaded, model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(loaded.to_sklearn().predict_proba(X), model.predict_proba(X),
                                   rtol=1e-9, atol=1e-12)


def _edited(tmp_path, edit) -> str:
    """A saved Bayesian model's file, rewritten after ``edit(arrays, metadata)``."""
    X = _data(seed=2)
    model = BayesianGaussianMixture(n_components=3, random_state=0, max_iter=20).fit(X)
    save_model(model, tmp_path / "m.npz")
    arrays, metadata = read_model_file(tmp_path / "m.npz")
    edit(arrays, metadata)
    write_model_file(tmp_path / "edited.npz", arrays, metadata)
    with pytest.raises(ModelFileError) as error:
        load_model(tmp_path / "edited.npz")
    return str(error.value)


@pytest.mark.parametrize("edit, message", [
    (lambda a, m: a.__setitem__("weight_concentration", a["weight_concentration"][:, ::-1].copy()),
     "weights: differ from the posterior's mean weights"),
    (lambda a, m: a.__setitem__("degrees_of_freedom", a["degrees_of_freedom"] * 0 + 1.5),
     "degrees_of_freedom: holds values <= n_features - 1 = 2"),
    (lambda a, m: a.pop("mean_precision"), "mean_precision: missing"),
    (lambda a, m: a.__setitem__("mean_prior", np.zeros(4)), "mean_prior: shape (4,)"),
    (lambda a, m: a.__setitem__("covariance_prior", -np.eye(D)),
     "covariance_prior: not positive definite"),
    (lambda a, m: m.pop("priors"), "priors: missing"),
    (lambda a, m: m["priors"].__setitem__("mean_precision_prior_", -1.0),
     "priors.mean_precision_prior_"),
    (lambda a, m: m["priors"].__setitem__("weight_concentration_prior_", 0.5),
     "priors.weight_concentration_prior_: 0.5, but params.weight_concentration_prior (None) "
     "gives 0.3333"),
    (lambda a, m: (m["params"].__setitem__("degrees_of_freedom_prior", 1.5),
                   m["priors"].__setitem__("degrees_of_freedom_prior_", 1.5)),
     "priors.degrees_of_freedom_prior_: 1.5, not above n_features - 1 = 2"),
    (lambda a, m: m["params"].__setitem__("mean_prior", [0.0, 0.0, 0.0]),
     "mean_prior: differs from params.mean_prior"),
    (lambda a, m: m["params"].__setitem__("weights_init", [0.5, 0.5]),
     "parameters this daskgmm does not know for daskgmm.BayesianGaussianMixture"),
    (lambda a, m: m["params"].__setitem__("mean_precision_prior", True), "a boolean"),
    (lambda a, m: m.__setitem__("estimator", "daskgmm.GaussianMixture"),
     "params: parameters this daskgmm does not know for daskgmm.GaussianMixture"),
])
def test_a_hand_edited_bayesian_model_file_is_refused_naming_the_field(tmp_path, edit, message):
    assert message in _edited(tmp_path, edit)


def test_a_gaussian_model_file_with_a_bayesian_array_is_refused(tmp_path):
    X = _data(seed=3)
    save_model(GaussianMixture(2, random_state=0).fit(X), tmp_path / "g.npz")
    arrays, metadata = read_model_file(tmp_path / "g.npz")
    arrays["mean_precision"] = np.ones(2)
    write_model_file(tmp_path / "edited.npz", arrays, metadata)
    with pytest.raises(ModelFileError, match="mean_precision: an array of a Bayesian model"):
        load_model(tmp_path / "edited.npz")
    assert json.loads(json.dumps(metadata))["estimator"] == "daskgmm.GaussianMixture"


@pytest.mark.parametrize("covariance_type, prior_type",
                         [("full", "dirichlet_process"), ("tied", "dirichlet_distribution"),
                          ("diag", "dirichlet_distribution"), ("spherical", "dirichlet_process")])
def test_a_checkpointed_fit_stopped_and_resumed_equals_the_uninterrupted_fit(
        tmp_path, covariance_type, prior_type):
    X = da.from_array(_data(seed=4), chunks=90)
    kw = dict(n_components=6, covariance_type=covariance_type, random_state=0, tol=0.0,
              max_iter=12, weight_concentration_prior_type=prior_type)
    uninterrupted = BayesianGaussianMixture(**kw).fit(X)
    path = tmp_path / "c.npz"
    stopped = BayesianGaussianMixture(**kw).fit(
        X, callbacks=[Checkpoint(path), lambda info: info.n_iter == 5])
    assert stopped.n_iter_ == 5 and Checkpoint.status(path) == "unfinished"
    assert read_model_file(path)[1]["estimator"] == "daskgmm.BayesianGaussianMixture"
    resumed = BayesianGaussianMixture(**kw).fit(X, resume_from=path, callbacks=[Checkpoint(path)])
    assert resumed.n_iter_ == 12 and Checkpoint.status(path) == "finished"
    assert_same_fit(resumed, uninterrupted)
    assert_same_fit(load_model(path), uninterrupted)  # the checkpoint is the model too


def test_a_checkpoint_of_another_estimator_or_other_priors_is_refused(tmp_path):
    X = _data(seed=5)
    GaussianMixture(3, random_state=0, max_iter=3).fit(X, callbacks=[Checkpoint(tmp_path / "g.npz")])
    with pytest.raises(CheckpointParamsError, match="fit of a daskgmm.GaussianMixture"):
        BayesianGaussianMixture(n_components=3, random_state=0).fit(
            X, resume_from=tmp_path / "g.npz")
    BayesianGaussianMixture(n_components=3, random_state=0, max_iter=3).fit(
        X, callbacks=[Checkpoint(tmp_path / "b.npz")])
    with pytest.raises(CheckpointParamsError, match="fit of a daskgmm.BayesianGaussianMixture"):
        GaussianMixture(3, random_state=0, max_iter=3).fit(X, resume_from=tmp_path / "b.npz")
    with pytest.raises(CheckpointParamsError, match="mean_precision_prior: None in the "
                                                    "checkpoint, 0.5 now"):
        BayesianGaussianMixture(n_components=3, random_state=0, max_iter=3,
                                mean_precision_prior=0.5).fit(X, resume_from=tmp_path / "b.npz")


def test_bayesian_and_em_candidates_share_the_passes_of_fit_many(monkeypatch):
    X = _data(n_per=200, seed=6)
    models = [GaussianMixture(3, random_state=0, tol=1e-4, chunk_size=150),
              BayesianGaussianMixture(n_components=6, random_state=1, tol=1e-4, max_iter=80,
                                      chunk_size=150),
              BayesianGaussianMixture(n_components=4, covariance_type="diag", random_state=2,
                                      weight_concentration_prior_type="dirichlet_distribution",
                                      n_init=2, max_iter=30, chunk_size=150),
              GaussianMixture(2, covariance_type="tied", random_state=3, chunk_size=150)]
    alone = [type(m)(**m.get_params()).fit(X) for m in models]
    passes, moments = [], []
    original_pass, original_digest = _em.run_pass, _em.run_pass_with_digest
    monkeypatch.setattr(_em, "run_pass", lambda data, fn, ms, **kw: (
        passes.append(len(ms)), original_pass(data, fn, ms, **kw))[1])
    monkeypatch.setattr(_em, "run_pass_with_digest", lambda data, fn, ms, **kw: (
        passes.append(len(ms)), original_digest(data, fn, ms, **kw))[1])
    original_moments = estimator_module.run_pass
    monkeypatch.setattr(estimator_module, "run_pass", lambda data, fn, p, **kw: (
        moments.append(kw["name"]), original_moments(data, fn, p, **kw))[1])
    together = fit_many(models, X)
    assert moments == ["gmm-data-moments"]  # both Bayesian models' priors from one pass
    assert passes[0] == 5  # five candidates in the first pass
    # One pass per iteration of the longest-running candidate, serving those still running.
    assert max(m.n_iter_ for m in alone) <= len(passes) < sum(m.n_iter_ for m in alone)
    assert passes == sorted(passes, reverse=True)
    for fitted, reference in zip(together, alone, strict=True):
        assert type(fitted) is type(reference)
        for name in ("weights_", "means_", "covariances_", "lower_bound_", "n_iter_"):
            np.testing.assert_allclose(getattr(fitted, name), getattr(reference, name),
                                       rtol=1e-9, err_msg=name)
    switched_off = np.sort(together[1].weights_)[::-1]
    assert switched_off[:3].sum() > 0.99, switched_off
