"""Issue 14, item 3: data in so many tiny chunks that scheduling dominates get a warning."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from daskgmm import GaussianMixture, SmallChunksWarning
from daskgmm._data import MANY_CHUNKS, SMALL_CHUNK_BYTES, as_dataset


def test_many_tiny_dask_chunks_are_warned_about_with_the_numbers_and_the_remedy():
    X = da.zeros((4 * (MANY_CHUNKS + 1), 2), chunks=(4, 2))
    with pytest.warns(SmallChunksWarning, match=r"1,001 row chunks of 0 KiB") as record:
        as_dataset(X)
    assert "X.rechunk({0: 2,097,152})" in str(record[0].message)


def test_numpy_data_cut_into_tiny_chunks_are_warned_about_once_per_fit():
    X = np.random.default_rng(0).normal(size=(2 * (MANY_CHUNKS + 1), 2))
    model = GaussianMixture(1, chunk_size=2, max_iter=1, init_params="random_from_data")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model.fit(X)
    small = [w for w in record if issubclass(w.category, SmallChunksWarning)]
    assert len(small) == 1
    assert small[0].filename == __file__  # it points at the user's call


@pytest.mark.parametrize("n_chunks, rows", [
    (MANY_CHUNKS, 4),  # not many chunks
    (MANY_CHUNKS + 1, SMALL_CHUNK_BYTES // 16),  # chunks not small (2 float64 features)
])
def test_few_or_large_chunks_are_not_warned_about(n_chunks, rows):
    X = da.zeros((n_chunks * rows, 2), chunks=(rows, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallChunksWarning)
        as_dataset(X)
