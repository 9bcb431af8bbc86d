"""The one-pass engine: chunking and fan-in do not change the statistics; the graph's shape."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGMM

from daskgmm import _em
from daskgmm._data import as_dataset
from daskgmm._params import GMMParams
from daskgmm._passes import pass_graph, run_pass
from daskgmm._stats import estep_stats

from .conftest import COVARIANCE_TYPES


def estep_chunk(block, params, start):
    """The E-step task of a pass with one model."""
    return _em.estep_chunk(block, (params,), start)[0]


@pytest.fixture(scope="module", params=COVARIANCE_TYPES)
def params(request, X_offset) -> GMMParams:
    sk = SkGMM(3, covariance_type=request.param, random_state=0, max_iter=2).fit(X_offset)
    return GMMParams(sk.weights_, sk.means_, sk.precisions_cholesky_, request.param)


@pytest.mark.parametrize("rows", [1200, 7, 100, 333, 1199])
@pytest.mark.parametrize("split_every", [2, 3, 8, 1000])
def test_any_chunking_and_fan_in_give_the_whole_array_statistics(params, X_offset, rows, split_every):
    whole = estep_stats(X_offset, params)
    data = as_dataset(da.from_array(X_offset, chunks=(rows, -1)))
    reduced = run_pass(data, estep_chunk, params, name="gmm-estep", split_every=split_every)
    for key, value in whole.items():
        np.testing.assert_allclose(reduced[key], value, rtol=1e-10, atol=1e-7, err_msg=key)


def test_one_row_chunks_give_the_whole_array_statistics(params, X_offset):
    data = as_dataset(da.from_array(X_offset[:300], chunks=(1, -1)))
    reduced = run_pass(data, estep_chunk, params, name="gmm-estep", split_every=5)
    whole = estep_stats(X_offset[:300], params)
    for key, value in whole.items():
        np.testing.assert_allclose(reduced[key], value, rtol=1e-10, atol=1e-7, err_msg=key)


def test_irregular_chunks_give_the_whole_array_statistics(params, X_offset):
    chunks = ((5, 300, 1, 94, 400, 400),)
    data = as_dataset(da.from_array(X_offset, chunks=(chunks[0], -1)))
    reduced = run_pass(data, estep_chunk, params, name="gmm-estep", split_every=4)
    whole = estep_stats(X_offset, params)
    np.testing.assert_allclose(reduced["s2"], whole["s2"], rtol=1e-10, atol=1e-7)


@pytest.mark.parametrize(("n_chunks", "split_every"), [(1, 8), (8, 8), (9, 8), (64, 8), (100, 3)])
def test_tree_depth_is_logarithmic(n_chunks, split_every, X_offset, params):
    data = as_dataset(da.from_array(X_offset[:n_chunks * 10], chunks=(10, -1)))
    graph = dict(pass_graph(data, estep_chunk, params, name="gmm-estep",
                            split_every=split_every).__dask_graph__())
    combine_levels = {key[1] for key in graph if isinstance(key, tuple) and "combine" in key[0]}
    expected = math.ceil(math.log(n_chunks, split_every) - 1e-12) if n_chunks > 1 else 0
    assert len(combine_levels) == expected
    chunk_tasks = [key for key in graph if isinstance(key, tuple) and key[0].startswith("gmm-estep")
                   and key[0].endswith("-chunk")]
    assert len(chunk_tasks) == n_chunks


def test_parameters_are_one_key_that_every_chunk_task_depends_on(params, X_offset):
    data = as_dataset(da.from_array(X_offset, chunks=(100, -1)))
    graph = pass_graph(data, estep_chunk, params, name="gmm-estep", split_every=4)
    hlg = graph.__dask_graph__()
    layers = dict(hlg)
    param_keys = [k for k in layers if isinstance(k, str) and k.endswith("-params")]
    assert len(param_keys) == 1
    deps = hlg.get_all_dependencies()
    chunk_keys = [k for k in layers if isinstance(k, tuple) and str(k[0]).endswith("-chunk")]
    assert len(chunk_keys) == 12
    assert all(param_keys[0] in deps[k] for k in chunk_keys)


def test_the_same_pass_is_bitwise_reproducible(params, X_offset):
    data = as_dataset(da.from_array(X_offset, chunks=(50, -1)))
    first = run_pass(data, estep_chunk, params, name="gmm-estep", split_every=3)
    for _ in range(3):
        again = run_pass(data, estep_chunk, params, name="gmm-estep", split_every=3)
        for key in first:
            np.testing.assert_array_equal(again[key], first[key])


@pytest.mark.parametrize("n_chunks", [10, 1000])
def test_a_pass_graph_is_one_layer_whatever_the_number_of_chunks(n_chunks):
    """One low-level layer of plain tasks (plus the parameters' and the data's own), not a
    Delayed object per chunk: building those cost about half of a pass over tiny chunks."""
    from daskgmm._em import combine_many, estep_chunk
    from daskgmm._params import compute_precision_cholesky

    X = da.zeros((n_chunks * 4, 2), chunks=(4, 2))
    data = as_dataset(X)
    params = GMMParams(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [1.0, 1.0]]),
                       compute_precision_cholesky(np.tile(np.eye(2), (2, 1, 1)), "full"), "full")
    graph = pass_graph(data, estep_chunk, (params,), name="gmm-estep", split_every=8,
                       combine=combine_many).__dask_graph__()
    assert len(graph.layers) == len(X.__dask_graph__().layers) + 2
    chunk_tasks = [k for k in graph if isinstance(k, tuple) and k[0].endswith("-chunk")]
    assert len(chunk_tasks) == n_chunks


def test_a_zarr_chunk_is_read_inside_its_statistics_task(params, X_offset, tmp_path):
    """One task per chunk: the read is fused into the chunk's task, so the block never
    waits in a worker's memory between two tasks, and the scheduler has half the tasks."""
    import dask
    import zarr

    from daskgmm._em import estep_chunk

    store = zarr.open_array(str(tmp_path / "X.zarr"), mode="w", shape=X_offset.shape,
                            chunks=(100, X_offset.shape[1]), dtype="f8")
    store[:] = X_offset
    data = as_dataset(str(tmp_path / "X.zarr"))
    n_chunks = len(data.array.chunks[0])
    lazy = pass_graph(data, estep_chunk, (params,), name="gmm-estep", split_every=4,
                      combine=_em.combine_many)
    graph = dict(lazy.__dask_optimize__(lazy.__dask_graph__(), lazy.__dask_keys__()))
    block_keys = {row[0] for row in data.array.__dask_keys__()}
    assert not block_keys & graph.keys()  # no separate read task is left
    chunk_tasks = [k for k in graph if isinstance(k, tuple) and k[0].endswith("-chunk")]
    assert len(chunk_tasks) == n_chunks
    # ... and the fused tasks compute, bitwise, what the same chunks held in memory give.
    (fused,) = dask.compute(lazy)
    in_memory = run_pass(as_dataset(da.from_array(X_offset, chunks=(100, -1))), _em.estep_chunk,
                         (params,), name="gmm-estep", split_every=4, combine=_em.combine_many)
    for key in in_memory[0]:
        np.testing.assert_array_equal(fused[0][key], in_memory[0][key], err_msg=key)


def test_blocks_held_in_the_graph_are_inlined_so_the_local_scheduler_stays_linear(params, X_offset):
    """A block held as data in the graph (numpy input) goes into its chunk task: dask's local
    scheduler copies its cache of such blocks for every task it sets up, which made 100,000
    chunks 3.5x slower per chunk than 10,000 (benchmarks/RESULTS.md)."""
    from daskgmm._em import estep_chunk

    data = as_dataset(X_offset, chunk_size=100)
    lazy = pass_graph(data, estep_chunk, (params,), name="gmm-estep", split_every=4,
                      combine=_em.combine_many)
    graph = dict(lazy.__dask_optimize__(lazy.__dask_graph__(), lazy.__dask_keys__()))
    block_keys = {row[0] for row in data.array.__dask_keys__()}
    assert block_keys and not block_keys & graph.keys()
