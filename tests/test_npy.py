"""``.npy`` input: memory-mapped where the tasks run, never shipped inside the graph."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import yaml

from daskgmm import GaussianMixture, open_npy

from .conftest import invoke, mixture_data


@pytest.fixture()
def npy(tmp_path):
    X = mixture_data(n_per_component=400, n_features=3, n_components=3)
    X = X[np.random.default_rng(0).permutation(len(X))]
    path = tmp_path / "X.npy"
    np.save(path, X)
    return path, X


def test_chunks_values_and_a_small_graph(npy, monkeypatch, tmp_path):
    path, X = npy
    monkeypatch.chdir(tmp_path)
    array = open_npy("X.npy", chunk_rows=250)  # relative: made absolute for the workers
    assert array.chunks == ((250, 250, 250, 250, 200), (3,))
    np.testing.assert_array_equal(array.compute(), X)
    # The graph holds the path, not the data (a numpy.memmap would pickle all of it).
    assert len(pickle.dumps(dict(array.__dask_graph__()))) < 20_000 < X.nbytes


def test_a_fit_on_a_npy_path_equals_the_fit_in_memory(npy):
    path, X = npy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = {"n_components": 3, "random_state": 0, "chunk_size": 300}
        from_file = GaussianMixture(**kwargs).fit(str(path))
        in_memory = GaussianMixture(**kwargs).fit(X)
    np.testing.assert_allclose(from_file.means_, in_memory.means_, rtol=1e-10)


def test_files_that_are_not_2d_numbers_are_refused(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="is not a .npy file of numbers"):
        open_npy(tmp_path / "objects.npy")
    np.save(tmp_path / "flat.npy", np.zeros(10))
    with pytest.raises(ValueError, match="must be 2-D"):
        open_npy(tmp_path / "flat.npy")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="is not numeric"):
        open_npy(tmp_path / "text.npy")


def test_the_command_fits_a_npy_file(npy, tmp_path, capsys):
    path, X = npy
    config = tmp_path / "npy.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(path)},
                                      "model": {"n_components": 3, "random_state": 0},
                                      "output": {"model": str(tmp_path / "m.npz")}}))
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    from daskgmm import load_model

    assert load_model(tmp_path / "m.npz").means_.shape == (3, 3)
