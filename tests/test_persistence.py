"""Model files and checkpoints record every constructor parameter, through one metadata builder."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from daskgmm import Checkpoint, GaussianMixture, ModelFileError, fit_many, load_model, save_model
from daskgmm.persistence import read_model_file, write_model_file

from .conftest import COVARIANCE_TYPES, mixture_data

N_FEATURES = 3


def every_parameter_changed(covariance_type: str) -> dict:
    """A value for every constructor parameter, none of them the default."""
    d = N_FEATURES
    precisions = {
        "full": np.stack([np.eye(d) * 2.0, np.eye(d) / 3.0]),
        "tied": np.eye(d) / 3.0 + 0.1,
        "diag": np.array([[2.0, 1 / 3, 0.7], [0.1, 5.0, 1 / 7]]),
        "spherical": np.array([1 / 3, 2.5]),
    }[covariance_type]
    return {
        "n_components": 2, "covariance_type": covariance_type, "tol": 1e-4, "reg_covar": 1e-5,
        "max_iter": 50, "n_init": 2, "init_params": "random_from_data",
        "weights_init": np.array([1 / 3, 2 / 3]),
        "means_init": np.array([[1000 + 1 / 3, 1000.1, 1000.0], [1006.0, 1006 + 1 / 7, 1006.2]]),
        "precisions_init": precisions, "random_state": np.random.RandomState(7),
        "warm_start": True, "verbose": 2, "verbose_interval": 3, "split_every": 4,
        "persist": True, "chunk_size": 250, "algorithm": "online", "online_passes": 3,
        "batch_size": 500, "learning_decay": 0.9, "learning_offset": 2.5,
        "missing": "marginalize",
    }


def same_value(a, b) -> bool:
    """Parameter equality: arrays by value, RandomStates by state, the rest by type and value."""
    if isinstance(a, np.random.RandomState) or isinstance(b, np.random.RandomState):
        if not (isinstance(a, np.random.RandomState) and isinstance(b, np.random.RandomState)):
            return False
        (name_a, key_a, *rest_a), (name_b, key_b, *rest_b) = a.get_state(), b.get_state()
        return name_a == name_b and np.array_equal(key_a, key_b) and rest_a == rest_b
    if isinstance(a, (list, np.ndarray)) or isinstance(b, (list, np.ndarray)):
        if a is None or b is None:
            return False
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def assert_same_params(loaded: dict, original: dict) -> None:
    assert loaded.keys() == original.keys()
    different = [name for name in original if not same_value(loaded[name], original[name])]
    assert not different, {name: (loaded[name], original[name]) for name in different}


def test_the_test_model_changes_every_constructor_parameter():
    defaults = GaussianMixture().get_params()
    changed = every_parameter_changed("tied")
    assert changed.keys() == defaults.keys()  # a new parameter must be added here
    assert [name for name in defaults if same_value(changed[name], defaults[name])] == []


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_every_constructor_parameter_round_trips_through_a_model_file(tmp_path, covariance_type):
    X = mixture_data(n_per_component=500, n_features=N_FEATURES, n_components=2)
    model = GaussianMixture(**every_parameter_changed(covariance_type)).fit(X)
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert_same_params(loaded.get_params(), model.get_params())
    assert loaded.random_state is not model.random_state
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name), err_msg=name)


def test_a_random_state_instance_is_recorded_with_its_exact_state(tmp_path):
    X = mixture_data(n_per_component=100, n_features=2, n_components=2)
    random_state = np.random.RandomState(3)
    random_state.standard_normal()  # leaves a cached Gaussian in the state
    model = GaussianMixture(2, random_state=random_state).fit(X)
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    # The reloaded generator continues the original's stream where it was at save time.
    np.testing.assert_array_equal(loaded.random_state.standard_normal(5),
                                  random_state.standard_normal(5))
    np.testing.assert_array_equal(loaded.random_state.randint(0, 2**31, 5),
                                  random_state.randint(0, 2**31, 5))


def test_a_random_state_that_cannot_be_recorded_is_refused_at_save_time(tmp_path):
    X = mixture_data(n_per_component=100, n_features=2, n_components=2)
    model = GaussianMixture(2, random_state=0).fit(X)
    model.random_state = np.random.RandomState(np.random.PCG64(0))
    with pytest.raises(ValueError, match="random_state.*MT19937"):
        save_model(model, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    model.random_state = np.random.default_rng(0)  # not a valid parameter value at all
    with pytest.raises(ValueError, match="random_state"):
        save_model(model, tmp_path / "m.npz")


def test_a_checkpoint_records_what_the_model_file_records(tmp_path):
    # A checkpoint holds one candidate (n_init=1); an int random_state is the one it started from.
    X = mixture_data(n_per_component=500, n_features=N_FEATURES, n_components=2)
    params = {**every_parameter_changed("full"), "n_init": 1, "random_state": 5}
    model = GaussianMixture(**params).fit(X, callbacks=[Checkpoint(tmp_path / "c.npz")])
    assert_same_params(load_model(tmp_path / "c.npz").get_params(), model.get_params())
    # One builder: a checkpoint at the last iteration is the model file plus its state.
    ckpt_arrays, ckpt_meta = read_model_file(tmp_path / "c.npz")
    file_arrays, file_meta = read_model_file(save_model(model, tmp_path / "m.npz"))
    assert ckpt_meta.keys() - {"checkpoint"} == file_meta.keys()
    assert ckpt_meta["params"] == file_meta["params"]
    assert ckpt_meta["fitted"] == file_meta["fitted"]
    assert ckpt_arrays.keys() == file_arrays.keys()
    for name, array in file_arrays.items():
        np.testing.assert_array_equal(ckpt_arrays[name], array, err_msg=name)


@pytest.mark.parametrize("n_init", [1, 2])
def test_fit_many_refuses_a_checkpoint_of_several_candidates_before_reading_any_data(
        tmp_path, n_init):
    chunks_read = []

    def read(block):
        if block.size:  # dask calls it on an empty array to learn the output's type
            chunks_read.append(block.shape)
        return block

    data = mixture_data(n_per_component=100, n_features=2, n_components=2)
    X = da.from_array(data, chunks=(50, -1)).map_blocks(read, dtype=data.dtype)
    models = [GaussianMixture(k, n_init=n_init, random_state=0) for k in (2, 3)][: 3 - n_init]
    with pytest.raises(ValueError, match="checkpoint"):
        fit_many(models, X, callbacks=[Checkpoint(tmp_path / "c.npz")])
    assert chunks_read == []
    assert not (tmp_path / "c.npz").exists()
    assert not any(hasattr(model, "converged_") for model in models)


class Interrupted(Exception):
    """Stands for a killed process."""


def test_fit_many_with_one_candidate_writes_a_checkpoint_that_resumes(tmp_path):
    X = mixture_data(n_per_component=200, n_features=2, n_components=3)
    params = {"n_components": 3, "covariance_type": "diag", "tol": 0.0, "max_iter": 8,
              "random_state": 0, "reg_covar": 1e-5}

    def stop_at_3(info):
        if info.n_iter == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit_many([GaussianMixture(**params)], X,
                 callbacks=[Checkpoint(tmp_path / "c.npz"), stop_at_3])
    assert read_model_file(tmp_path / "c.npz")[1]["checkpoint"]["n_iter"] == 3
    assert_same_params(load_model(tmp_path / "c.npz").get_params(),
                       GaussianMixture(**params).get_params())
    with pytest.warns(UserWarning, match="did not converge"):
        resumed = GaussianMixture(**params).fit(X, resume_from=tmp_path / "c.npz")
    with pytest.warns(UserWarning, match="did not converge"):
        (whole,) = fit_many([GaussianMixture(**params)], X)
    assert resumed.n_iter_ == whole.n_iter_ == 8
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name), err_msg=name)


def test_a_model_file_of_an_earlier_release_loads_with_defaults_for_what_it_lacks(tmp_path):
    X = mixture_data(n_per_component=100, n_features=2, n_components=2)
    model = GaussianMixture(2, random_state=0).fit(X)
    arrays, metadata = read_model_file(save_model(model, tmp_path / "m.npz"))
    old = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init",
           "init_params", "random_state", "warm_start", "verbose", "verbose_interval",
           "split_every", "persist", "chunk_size")
    metadata["params"] = {name: metadata["params"][name] for name in old}
    write_model_file(tmp_path / "old.npz", arrays, metadata)
    assert_same_params(load_model(tmp_path / "old.npz").get_params(), model.get_params())


@pytest.mark.parametrize(("name", "value", "message"), [
    ("algorithm", "bogus", "algorithm"),
    ("learning_decay", "0.9", "learning_decay"),
    ("means_init", [[1.0, 2.0], [3.0]], "means_init"),
    ("random_state", {"bit_generator": "MT19937", "key": [1, 2, 3], "pos": 0, "has_gauss": 0,
                      "cached_gaussian": 0.0}, "random_state"),
    ("no_such_parameter", 1, "no_such_parameter"),
])
def test_a_model_file_with_malformed_parameters_is_refused(tmp_path, name, value, message):
    X = mixture_data(n_per_component=100, n_features=2, n_components=2)
    arrays, metadata = read_model_file(
        save_model(GaussianMixture(2, random_state=0).fit(X), tmp_path / "m.npz"))
    metadata["params"][name] = value
    write_model_file(tmp_path / "bad.npz", arrays, metadata)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "bad.npz")


def test_an_output_that_appears_while_being_written_is_kept_without_overwrite(tmp_path):
    # "Do not overwrite" is decided when the output is put in place, not only at the start.
    from daskgmm._files import atomic_write_bytes
    from daskgmm.exceptions import OutputExistsError
    from daskgmm.jobs.outputs import atomic_directory

    path = tmp_path / "m.npz"

    def another_run_finishes_first(f):
        f.write(b"mine")
        path.write_bytes(b"theirs")

    with pytest.raises(OutputExistsError, match="exists"):
        atomic_write_bytes(path, another_run_finishes_first, overwrite=False)
    assert path.read_bytes() == b"theirs"
    store = tmp_path / "s.zarr"
    with pytest.raises(OutputExistsError, match="exists"):
        with atomic_directory(store, overwrite=False) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("mine")
            store.mkdir()
            (store / "b").write_text("theirs")
    assert [p.name for p in store.iterdir()] == ["b"]
    assert sorted(tmp_path.iterdir()) == [path, store]  # no temporary left behind


@pytest.mark.parametrize("estimator", ["GaussianMixture", "BayesianGaussianMixture"])
def test_a_fit_seeded_by_a_random_state_instance_resumes_from_its_checkpoint(tmp_path, estimator):
    """The checkpoint records the RandomState as the fit started (before the initialisation
    drew from it), which is what the resuming model holds."""
    import daskgmm

    X = mixture_data(n_per_component=150, n_features=2, n_components=3)
    cls = getattr(daskgmm, estimator)
    kw = {"n_components": 3, "tol": 0.0, "max_iter": 6, "init_params": "random"}
    stopped = cls(**kw, random_state=np.random.RandomState(5)).fit(
        X, callbacks=[Checkpoint(tmp_path / "c.npz"), lambda info: info.n_iter == 3])
    assert stopped.n_iter_ == 3
    with pytest.warns(UserWarning, match="did not converge"):
        resumed = cls(**kw, random_state=np.random.RandomState(5)).fit(
            X, resume_from=tmp_path / "c.npz")
    with pytest.warns(UserWarning, match="did not converge"):
        whole = cls(**kw, random_state=np.random.RandomState(5)).fit(X)
    assert resumed.n_iter_ == whole.n_iter_ == 6
    for name in ("weights_", "means_", "covariances_", "lower_bound_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name), err_msg=name)
