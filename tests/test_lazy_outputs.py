"""Lazy outputs are graphs users combine: two of them in one graph never share keys."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from daskgmm import GaussianMixture

from .conftest import mixture_data

METHODS = ["predict", "predict_proba", "score_samples"]


@pytest.fixture(scope="module")
def inputs():
    X1 = mixture_data(seed=1)
    X2 = mixture_data(seed=2)[::-1] * 1.5
    return X1, X2


@pytest.fixture(scope="module")
def models(inputs):
    X1, X2 = inputs
    gA = GaussianMixture(3, random_state=0, max_iter=5).fit(X1)
    gB = GaussianMixture(3, covariance_type="diag", random_state=1, max_iter=5).fit(X2)
    return gA, gB


@pytest.mark.parametrize("method", METHODS)
def test_two_models_on_one_input_in_one_compute(models, inputs, method):
    gA, gB = models
    X1, _ = inputs
    dX = da.from_array(X1, chunks=(300, -1))
    a, b = dask.compute(getattr(gA, method)(dX), getattr(gB, method)(dX))
    np.testing.assert_array_equal(a, getattr(gA, method)(X1))
    np.testing.assert_array_equal(b, getattr(gB, method)(X1))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_one_model_on_two_inputs_in_one_compute(models, inputs, method):
    gA, _ = models
    X1, X2 = inputs
    d1, d2 = (da.from_array(X, chunks=(300, -1)) for X in (X1, X2))
    r1, r2 = dask.compute(getattr(gA, method)(d1), getattr(gA, method)(d2))
    np.testing.assert_array_equal(r1, getattr(gA, method)(X1))
    np.testing.assert_array_equal(r2, getattr(gA, method)(X2))


@pytest.mark.parametrize("method", METHODS)
def test_stacked_outputs_keep_each_input(models, inputs, method):
    gA, gB = models
    X1, X2 = inputs
    d1, d2 = (da.from_array(X, chunks=(300, -1)) for X in (X1, X2))
    stacked = da.stack([getattr(gA, method)(d1), getattr(gA, method)(d2),
                        getattr(gB, method)(d1)]).compute()
    np.testing.assert_array_equal(stacked[0], getattr(gA, method)(X1))
    np.testing.assert_array_equal(stacked[1], getattr(gA, method)(X2))
    np.testing.assert_array_equal(stacked[2], getattr(gB, method)(X1))


def test_outputs_of_two_models_written_to_one_zarr_store(models, inputs, tmp_path):
    gA, gB = models
    X1, X2 = inputs
    d1, d2 = (da.from_array(X, chunks=(300, -1)) for X in (X1, X2))
    outputs = {"a_proba": gA.predict_proba(d1), "b_proba": gB.predict_proba(d1),
               "a_ll_2": gA.score_samples(d2), "a_ll_1": gA.score_samples(d1)}
    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="w")
    targets = [group.create_array(name, shape=a.shape, dtype=a.dtype, chunks=a.chunksize)
               for name, a in outputs.items()]
    da.store(list(outputs.values()), targets, lock=False)
    np.testing.assert_array_equal(group["a_proba"][:], gA.predict_proba(X1))
    np.testing.assert_array_equal(group["b_proba"][:], gB.predict_proba(X1))
    np.testing.assert_array_equal(group["a_ll_2"][:], gA.score_samples(X2))
    np.testing.assert_array_equal(group["a_ll_1"][:], gA.score_samples(X1))


def test_a_refitted_model_gives_new_keys(inputs):
    X1, X2 = inputs
    dX = da.from_array(X1, chunks=(300, -1))
    g = GaussianMixture(3, random_state=0, max_iter=5).fit(X1)
    before = g.score_samples(dX)
    g.fit(X2)
    after = g.score_samples(dX)
    assert before.name != after.name
    b, a = dask.compute(before, after)
    assert not np.array_equal(a, b)
