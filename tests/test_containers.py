"""Lazy containers stay lazy: dask DataFrames and dask-backed xarray are read chunk by chunk.

Nothing is gathered into the client: while daskgmm works on a container, the
container's ``__array__`` (what ``np.asarray`` calls) raises, and building a
lazy output runs no task at all.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback

from daskgmm import GaussianMixture

from .conftest import mixture_data

dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
xr = pytest.importorskip("xarray")

METHODS = ["predict", "predict_proba", "score_samples"]
COLUMNS = ["height", "weight", "age"]
ROWS = (300, 300, 300, 300)


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    return mixture_data(n_per_component=400, offset=0.0)  # 1,200 x 3


@pytest.fixture()
def no_gathering(monkeypatch):
    """Make ``np.asarray`` of a dask DataFrame, Series or xarray DataArray an error."""

    def gathered(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} was gathered into the client with np.asarray")

    for cls in (dd.DataFrame, dd.Series, xr.DataArray):
        monkeypatch.setattr(cls, "__array__", gathered)


class TaskCounter(Callback):
    """Counts the tasks dask's local schedulers run."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks = 0

    def _pretask(self, key, dsk, state) -> None:
        self.tasks += 1


def _containers(values: np.ndarray) -> dict:
    frame = pd.DataFrame(values, columns=COLUMNS)
    known = dd.from_pandas(frame, npartitions=4, sort=True)
    assert known.known_divisions and known.npartitions == 4
    unknown = known.clear_divisions()
    assert not unknown.known_divisions
    array = xr.DataArray(da.from_array(values, chunks=(ROWS, -1)), dims=("sample", "feature"),
                         coords={"feature": COLUMNS})
    return {"dataframe-known-divisions": known, "dataframe-unknown-divisions": unknown,
            "xarray-dask": array}


@pytest.fixture(scope="module")
def reference(values) -> GaussianMixture:
    """The fit of the same values as a dask array with the same row chunks."""
    return GaussianMixture(3, random_state=0).fit(da.from_array(values, chunks=(ROWS, -1)))


@pytest.mark.parametrize("kind", ["dataframe-known-divisions", "dataframe-unknown-divisions",
                                  "xarray-dask"])
def test_a_container_is_fitted_chunk_by_chunk_like_the_dask_array(values, reference, kind,
                                                                 no_gathering):
    X = _containers(values)[kind]
    model = GaussianMixture(3, random_state=0).fit(X)
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(model, attr), getattr(reference, attr), err_msg=attr)
    assert model.n_iter_ == reference.n_iter_ and model.lower_bound_ == reference.lower_bound_
    if kind.startswith("dataframe"):
        np.testing.assert_array_equal(model.feature_names_in_, COLUMNS)
    else:
        assert not hasattr(model, "feature_names_in_")
    assert model.score(X) == pytest.approx(reference.score(values), rel=1e-12)
    assert model.bic(X) == pytest.approx(reference.bic(values), rel=1e-12)


@pytest.mark.parametrize("kind", ["dataframe-known-divisions", "dataframe-unknown-divisions"])
def test_outputs_for_a_dask_dataframe_are_dask_series_and_frames_with_its_partitions(
        values, reference, kind, no_gathering):
    X = _containers(values)[kind]
    model = GaussianMixture(3, random_state=0).fit(X)
    with TaskCounter() as counter:
        outputs = {method: getattr(model, method)(X) for method in METHODS}
    assert counter.tasks == 0  # the graphs are built, nothing is computed
    assert isinstance(outputs["predict"], dd.Series) and outputs["predict"].dtype == np.int64
    assert isinstance(outputs["score_samples"], dd.Series)
    assert isinstance(outputs["predict_proba"], dd.DataFrame)
    assert list(outputs["predict_proba"].columns) == [0, 1, 2]
    for method, output in outputs.items():
        assert output.npartitions == X.npartitions, method
        assert output.divisions == X.divisions, method
    labels, proba, loglik = dask.compute(outputs["predict"], outputs["predict_proba"],
                                         outputs["score_samples"])
    pd.testing.assert_index_equal(labels.index, X.index.compute())
    np.testing.assert_array_equal(labels.to_numpy(), reference.predict(values))
    np.testing.assert_allclose(proba.to_numpy(), reference.predict_proba(values), rtol=1e-12)
    np.testing.assert_allclose(loglik.to_numpy(), reference.score_samples(values), rtol=1e-12)


def test_sample_weights_as_a_dask_series_are_read_chunk_by_chunk(values, no_gathering):
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=values.shape[0])
    X = dd.from_pandas(pd.DataFrame(values, columns=COLUMNS), npartitions=4)
    w = dd.from_pandas(pd.Series(weights), npartitions=4)
    model = GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    reference = GaussianMixture(3, random_state=0).fit(
        da.from_array(values, chunks=(ROWS, -1)), sample_weight=da.from_array(weights, chunks=ROWS))
    np.testing.assert_array_equal(model.means_, reference.means_)
    assert model.score(X, sample_weight=w) == pytest.approx(
        reference.score(values, sample_weight=weights), rel=1e-12)
    with pytest.raises(TypeError, match="sample_weight is a .*dask collection"):
        model.fit(X, sample_weight=dask.delayed(weights))


def test_outputs_for_a_dask_backed_xarray_are_dask_arrays_with_its_row_chunks(
        values, reference, no_gathering):
    X = _containers(values)["xarray-dask"]
    model = GaussianMixture(3, random_state=0).fit(X)
    with TaskCounter() as counter:
        outputs = {method: getattr(model, method)(X) for method in METHODS}
    assert counter.tasks == 0
    for method, output in outputs.items():
        assert isinstance(output, da.Array), method
        assert output.chunks[0] == ROWS, method
    np.testing.assert_array_equal(outputs["predict"].compute(), reference.predict(values))
    np.testing.assert_allclose(outputs["predict_proba"].compute(), reference.predict_proba(values),
                               rtol=1e-12)


def test_output_names_depend_on_the_input(values, reference):
    X1 = dd.from_pandas(pd.DataFrame(values, columns=COLUMNS), npartitions=4)
    X2 = dd.from_pandas(pd.DataFrame(values[::-1] * 1.5, columns=COLUMNS), npartitions=4)
    model = GaussianMixture(3, random_state=0).fit(X1)
    for method in METHODS:
        a, b = getattr(model, method)(X1), getattr(model, method)(X2)
        assert a._name != b._name, method
        assert a._name == getattr(model, method)(X1)._name, method  # deterministic
        ra, rb = dask.compute(a, b)
        for result, data in ((ra, values), (rb, values[::-1] * 1.5)):
            expected = getattr(model, method)(pd.DataFrame(data, columns=COLUMNS))
            np.testing.assert_allclose(result.to_numpy(), expected, rtol=1e-12)


def test_dataframe_columns_are_checked_as_scikit_learn_checks_pandas_columns(values):
    X = dd.from_pandas(pd.DataFrame(values, columns=COLUMNS), npartitions=4)
    model = GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(X.rename(columns={"age": "years"}))
    eager = GaussianMixture(3, random_state=0).fit(pd.DataFrame(values, columns=COLUMNS))
    np.testing.assert_array_equal(eager.feature_names_in_, COLUMNS)
    with pytest.raises(ValueError, match="feature names should match"):
        eager.predict(X.rename(columns={"age": "years"}))


def test_pandas_and_numpy_backed_xarray_stay_eager(values, reference):
    frame = pd.DataFrame(values, columns=COLUMNS)
    in_memory = xr.DataArray(values, dims=("sample", "feature"))
    model = GaussianMixture(3, random_state=0).fit(in_memory)
    assert isinstance(model.predict(in_memory), np.ndarray)
    assert isinstance(model.predict_proba(in_memory), np.ndarray)
    eager = GaussianMixture(3, random_state=0).fit(frame)
    assert isinstance(eager.predict(frame), np.ndarray)
    np.testing.assert_array_equal(eager.feature_names_in_, COLUMNS)


def test_other_lazy_objects_get_a_type_error_and_are_never_gathered(values, tmp_path, no_gathering):
    import dask.bag as db
    import zarr

    store = zarr.open_group(str(tmp_path / "x.zarr"), mode="w")
    store.create_array("v", shape=values.shape, chunks=(300, 3), dtype="f8",
                       dimension_names=["sample", "feature"])[:] = values
    from_file = xr.open_zarr(str(tmp_path / "x.zarr"), chunks=None, consolidated=False)
    cases = {
        "a dask bag": (db.from_sequence(values.tolist(), npartitions=2), "dask collection"),
        "a dask delayed": (dask.delayed(values), "dask collection"),
        "an xarray Dataset": (xr.Dataset({"v": xr.DataArray(da.from_array(values, chunks=300))}),
                              "one 2-D array"),
        "a lazily read xarray": (from_file["v"], "not in memory"),
        "an object": (object(), "must be an array"),
    }
    model = GaussianMixture(3, random_state=0).fit(values)
    for _what, (X, message) in cases.items():
        with pytest.raises(TypeError, match=message):
            GaussianMixture(3).fit(X)
        for method in METHODS:
            with pytest.raises(TypeError, match=message):
                getattr(model, method)(X)
    # Loading or chunking the lazily read DataArray, as the message says, works.
    np.testing.assert_array_equal(model.predict(from_file["v"].chunk({"sample": 300})).compute(),
                                  model.predict(values))
