"""Parquet input, on real files written by pyarrow: one file and a multi-file data set."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from daskgmm import GaussianMixture, open_parquet

from .conftest import invoke, mixture_data, predicted_labels


def _write(path, X, row_group_size: int, extra: dict | None = None) -> None:
    columns = {f"f{j}": X[:, j] for j in range(X.shape[1])}
    columns.update(extra or {})
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder of three files (row groups of 100, the last file's of 70) and the same rows."""
    root = tmp_path_factory.mktemp("parquet")
    X = mixture_data(n_per_component=300, n_features=3, n_components=3)  # 900 rows, offset 1000
    X = X[np.random.default_rng(0).permutation(len(X))]
    folder = root / "data.parquet"
    folder.mkdir()
    labels = np.array(["a", "b", "c"] * 300)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, size=len(X))
    for i, (start, stop, groups) in enumerate(((0, 400, 100), (400, 750, 100), (750, 900, 70))):
        _write(folder / f"part-{i}.parquet", X[start:stop], groups,
               {"label": labels[start:stop], "w": weights[start:stop]})
    (folder / "_SUCCESS").write_text("")  # a marker file, as Spark writes: not data
    return folder, X, weights


def test_chunks_are_row_groups_from_the_footers_and_values_are_exact(data):
    folder, X, _ = data
    array = open_parquet(folder, ["f0", "f1", "f2"], chunk_rows=200)
    # Never across files: 400 rows in groups of 100 -> 200 + 200; 350 -> 200 + 150;
    # 150 in groups of 70, 70, 10 -> 150.
    assert array.chunks == ((200, 200, 200, 150, 150), (3,))
    assert open_parquet(folder, ["f0"], chunk_rows=1).chunks[0] == (100,) * 7 + (50, 70, 70, 10)
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array.compute(), X)
    reordered = open_parquet(folder, ["f2", "f0"]).compute()
    np.testing.assert_array_equal(reordered, X[:, [2, 0]])


def test_a_fit_on_parquet_equals_the_fit_on_the_same_rows_in_memory(data):
    folder, X, weights = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = {"n_components": 3, "random_state": 0, "init_params": "random_from_data"}
        from_parquet = GaussianMixture(**kwargs).fit(open_parquet(folder, ["f0", "f1", "f2"]))
        in_memory = GaussianMixture(**kwargs).fit(X)
    np.testing.assert_allclose(from_parquet.means_, in_memory.means_, rtol=1e-10)
    np.testing.assert_allclose(from_parquet.covariances_, in_memory.covariances_, rtol=1e-8)


def test_bad_columns_name_the_problem(data):
    folder, _, _ = data
    with pytest.raises(KeyError, match=r"no column 'f9'; its columns are \['f0', 'f1', 'f2'"):
        open_parquet(folder, ["f0", "f9"])
    with pytest.raises(TypeError, match=r"column 'label' is string, not numeric"):
        open_parquet(folder)  # every column, the labels included
    with pytest.raises(FileNotFoundError, match="No Parquet file"):
        open_parquet(folder / "nothing.parquet")


def test_the_command_fits_and_predicts_parquet_with_columns_and_weights(data, tmp_path, capsys):
    folder, X, weights = data
    config = tmp_path / "parquet.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(folder), "format": "parquet", "columns": ["f0", "f1", "f2"],
                 "sample_weight": "w"},
        "model": {"n_components": 3, "random_state": 0},
        "output": {"model": str(tmp_path / "m.npz"), "predictions": str(tmp_path / "p.zarr")}}))
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
    from daskgmm import load_model

    model = load_model(tmp_path / "m.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = GaussianMixture(3, random_state=0).fit(X, sample_weight=weights)
    np.testing.assert_allclose(np.sort(model.weights_), np.sort(expected.weights_), rtol=1e-6)
    code, _, err = invoke(["predict", config], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(predicted_labels(tmp_path / "p.zarr"), model.predict(X))


def test_the_command_names_bad_columns_and_unsupported_paths(data, tmp_path, capsys):
    folder, _, _ = data
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(folder), "columns": ["f0", "nope"]},
                                      "output": {"model": str(tmp_path / "m.npz")}}))
    code, _, err = invoke(["fit", config], capsys)  # format auto: the folder ends in .parquet
    assert code == 3 and "no column 'nope'" in err
    csv = tmp_path / "data.csv"
    csv.write_text("1,2\n3,4\n")
    config.write_text(yaml.safe_dump({"data": {"path": str(csv)},
                                      "output": {"model": str(tmp_path / "m.npz")}}))
    code, _, err = invoke(["fit", config], capsys)
    assert code == 3
    assert "is not a Zarr array or group" in err and "Parquet" in err


def test_nulls_temporary_files_and_the_weight_column_are_not_taken_for_data(tmp_path, capsys):
    X = mixture_data(n_per_component=100, n_features=2, n_components=2)
    folder = tmp_path / "d.parquet"
    (folder / "_temporary" / "0").mkdir(parents=True)
    _write(folder / "part-0.parquet", X, 50, {"w": np.ones(len(X))})
    _write(folder / "_temporary" / "0" / "part-0.parquet", X[:10] * 0, 10)  # a dead job's
    assert open_parquet(folder, ["f0", "f1"]).shape == (200, 2)
    # A pandas index stored with the data is not a feature.
    import pandas as pd

    frame = pd.DataFrame(X, columns=["a", "b"], index=pd.RangeIndex(200) + 7)
    frame.index.name = "row"
    frame.to_parquet(tmp_path / "indexed.parquet", index=True)
    assert open_parquet(tmp_path / "indexed.parquet").shape == (200, 2)
    # A null is named, not read as NaN.
    with_null = pa.table({"f0": pa.array([1.0, None, 3.0]), "f1": pa.array([1, 2, 3])})
    pq.write_table(with_null, tmp_path / "null.parquet")
    with pytest.raises(ValueError, match=r"column 'f0' has 1 null value"):
        open_parquet(tmp_path / "null.parquet").compute()
    # The weight column needs data.columns, lest it be a feature too.
    config = tmp_path / "w.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": str(folder), "sample_weight": "w"},
                                      "output": {"model": str(tmp_path / "m.npz")}}))
    code, _, err = invoke(["fit", config], capsys)
    assert code == 2 and "give data.columns too" in err
    config.write_text(yaml.safe_dump({
        "data": {"path": str(folder), "sample_weight": "w", "columns": ["f0", "f1"],
                 "chunk_rows": 64},  # the weights follow X's rechunking
        "model": {"n_components": 2, "random_state": 0},
        "output": {"model": str(tmp_path / "m.npz")}}))
    code, _, err = invoke(["fit", config], capsys)
    assert code == 0, err
