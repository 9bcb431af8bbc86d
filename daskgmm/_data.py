"""The input boundary: numpy, dask, Zarr and containers become one row-chunked dataset.

Validation that needs no pass over the data happens here (type, shape,
dtype, sample weights; Zarr chunk completeness through :mod:`daskgmm._zarr`);
finiteness is checked inside the passes, where it costs nothing on good data.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ._block_checks import check_weight_block
from ._zarr import (
    ZarrRowReader,
    check_zarr_complete,
    dask_array_location,
    open_zarr_array,
    read_rows,
    refuse_relative_zarr_sources,
    with_absolute_store,
    zarr_location,
)
from .exceptions import SmallChunksWarning

DEFAULT_CHUNK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Dataset:
    """Validated input: a float dask array chunked by rows only.

    Attributes
    ----------
    array : dask.array.Array
        Shape (n_samples, n_features); one chunk spans all columns.
    in_memory : bool
        The data came as a numpy array (and results go back as numpy).
    weights : dask.array.Array or None
        Shape (n_samples,), float64, chunked as ``array``'s rows: the
        sample weights, or None for unit weights.
    location : str or None
        Where the data are read from: the resolved location of the Zarr
        store(s) the array reads (a local path made absolute, a URL as it
        is); None for in-memory data and other sources.
    """

    array: da.Array
    in_memory: bool
    weights: da.Array | None = None
    location: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What identifies these data without reading them, as JSON values.

        Returns
        -------
        dict
            ``shape``, ``dtype``, ``row_chunks`` (run lengths: ``[[rows,
            count], ...]``), ``location`` and ``weighted``. A fit adds the
            content digest its first pass computes (see
            :func:`daskgmm._passes.run_pass_with_digest`).
        """
        runs: list[list[int]] = []
        for rows in self.array.chunks[0]:
            if runs and runs[-1][0] == int(rows):
                runs[-1][1] += 1
            else:
                runs.append([int(rows), 1])
        return {"shape": [int(n) for n in self.array.shape], "dtype": str(self.array.dtype),
                "row_chunks": runs, "location": self.location,
                "weighted": self.weights is not None}

    def with_weights(self, sample_weight: Any) -> Dataset:
        """This data set with ``sample_weight`` aligned to its row chunks (None: unweighted)."""
        if sample_weight is None:
            return replace(self, weights=None)
        return replace(self, weights=as_sample_weight(sample_weight, self.array.chunks[0]))

    @property
    def n_chunks(self) -> int:
        return len(self.array.chunks[0])

    def chunk(self, index: int) -> Dataset:
        """The rows of one chunk (and their weights), as a data set of their own."""
        weights = None if self.weights is None else self.weights.blocks[index]
        return replace(self, array=self.array.blocks[index], weights=weights)

    def rechunk_rows(self, rows: int) -> Dataset:
        """The same rows in chunks of ``rows`` (lazily; the weights follow)."""
        weights = None if self.weights is None else self.weights.rechunk({0: rows})
        return replace(self, array=self.array.rechunk({0: rows}), weights=weights)

    def persist(self, persist_fn) -> Dataset:
        """The arrays kept in memory by ``persist_fn``, which maps a list of
        dask arrays to a sequence of persisted ones (``Client.persist``)."""
        if self.weights is None:
            (array,) = persist_fn([self.array])
            return replace(self, array=array)
        array, weights = persist_fn([self.array, self.weights])
        return replace(self, array=array, weights=weights)

    @property
    def n_samples(self) -> int:
        return int(self.array.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.array.shape[1])

    @property
    def row_offsets(self) -> np.ndarray:
        """First row of each chunk, and the total, shape (n_chunks + 1,)."""
        return np.concatenate([[0], np.cumsum(self.array.chunks[0])])


def rows_per_chunk(n_features: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows of float64 that fill ``chunk_bytes``."""
    return max(1, chunk_bytes // (8 * max(n_features, 1)))


# In-memory input is cut into at least this many chunks (of at least
# _MIN_AUTO_ROWS rows) so that every core has work: a fixed number rather
# than one per core, so that the chunking, and with it the rounding of the
# reduced statistics, is the same on every machine.
_MIN_AUTO_CHUNKS = 8
_MIN_AUTO_ROWS = 4096


def auto_rows_per_chunk(n_samples: int, n_features: int) -> int:
    """Rows per chunk of in-memory input: at most 32 MiB, at least 8 chunks when N allows."""
    even_split = -(-n_samples // _MIN_AUTO_CHUNKS)
    return min(rows_per_chunk(n_features), max(even_split, _MIN_AUTO_ROWS))


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
            or np.issubdtype(dtype, np.bool_)):
        raise ValueError(
            f"{what} has dtype {dtype}; daskgmm needs real numbers (a float or integer dtype)."
        )


def _check_shape(shape: tuple[int, ...], what: str) -> None:
    if len(shape) != 2:
        raise ValueError(
            f"Expected a 2D array of shape (n_samples, n_features); {what} has "
            f"{len(shape)} dimension(s), shape {shape}. Reshape your data with "
            "X.reshape(-1, 1) if it has a single feature."
        )
    if shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={shape}) while a minimum of 1 is required.")
    if shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is required.")


def as_dataset(
    X: Any,
    chunk_size: int | str = "auto",
    name: str | None = None,
    allow_missing_chunks: bool = False,
) -> Dataset:
    """Normalise an input to a row-chunked float dask array.

    Parameters
    ----------
    X : array-like, dask.array.Array, zarr.Array, dask DataFrame, xarray.DataArray, str or os.PathLike
        The data. A string or path is opened as a Zarr array (or the array
        ``name`` of a Zarr group), or, ending in ``.npy``, as a memory-mapped
        ``.npy`` file (:func:`daskgmm.open_npy`). A dask DataFrame and a dask-backed xarray
        DataArray become dask arrays with their partitions or chunks as row
        chunks (:func:`container_array`), never gathered.
    chunk_size : int or 'auto'
        Rows per chunk for numpy input ('auto': about 32 MiB of float64, or
        less so that there are at least 8 chunks of at least 4096 rows).
    name : str, optional
        The array inside a Zarr group, for path input.
    allow_missing_chunks : bool
        Read never-written Zarr chunks as the fill value instead of refusing.

    Returns
    -------
    Dataset

    Raises
    ------
    TypeError
        A lazy container daskgmm cannot read chunk by chunk (see
        :func:`input_is_lazy`), or an object that is not an array.
    """
    if isinstance(X, (str, os.PathLike)):
        from ._npy import NPY_SUFFIX, open_npy

        if os.fspath(X).endswith(NPY_SUFFIX) and "://" not in os.fspath(X):
            X = open_npy(X)
        else:
            X = open_zarr_array(X, name)
    if isinstance(X, zarr.Array):
        X = with_absolute_store(X)  # the client's path, whatever the workers' directory
        _check_shape(X.shape, "the Zarr array")
        _check_dtype(X.dtype, "the Zarr array")
        check_zarr_complete(X, allow_missing_chunks)
        from dask.base import tokenize

        name = "zarr-" + tokenize(str(X.store_path), X.shape, X.chunks, str(X.dtype))
        blocks = zarr_blocks(X, X.chunks, name)
        return warn_if_chunks_are_small(Dataset(_rows_only(_as_float(blocks)), in_memory=False,
                                                location=zarr_location(X)))
    X = container_array(X)
    if isinstance(X, da.Array):
        _check_shape(X.shape, "the dask array")
        if any(np.isnan(c).any() for c in X.chunks):
            raise ValueError("The dask array has unknown chunk sizes; call X.compute_chunk_sizes() first.")
        _check_dtype(X.dtype, "the dask array")
        refuse_relative_zarr_sources(X)
        return warn_if_chunks_are_small(
            Dataset(_rows_only(_as_float(X)), in_memory=False, location=dask_array_location(X)))
    array = np.asarray(X)
    _check_shape(array.shape, "the array")
    _check_dtype(array.dtype, "the array")
    if chunk_size == "auto":
        rows = auto_rows_per_chunk(*array.shape)
    else:
        rows = int(chunk_size)
    return warn_if_chunks_are_small(
        Dataset(_as_float(da.from_array(array, chunks=(rows, -1))), in_memory=True))


MANY_CHUNKS = 1000
SMALL_CHUNK_BYTES = 2**20


def warn_if_chunks_are_small(data: Dataset) -> Dataset:
    """Warn (:class:`SmallChunksWarning`) when scheduling the chunks would cost more than reading them.

    Above :data:`MANY_CHUNKS` chunks of under :data:`SMALL_CHUNK_BYTES`
    on average, each pass spends more time scheduling than computing.
    """
    n_chunks = len(data.array.chunks[0])
    chunk_bytes = data.array.nbytes / max(n_chunks, 1)
    if n_chunks > MANY_CHUNKS and chunk_bytes < SMALL_CHUNK_BYTES:
        rows = max(1, (32 * 2**20) // (8 * max(data.n_features, 1)))
        warnings.warn(
            f"The data come in {n_chunks:,} row chunks of {chunk_bytes / 1024:,.0f} KiB on "
            "average: every pass spends about 1 ms scheduling each chunk, more than reading "
            "it. Store or rechunk the data in chunks of 16-64 MiB, e.g. "
            f"X.rechunk({{0: {rows:,}}}) for 32 MiB of float64 rows (rewrite a Zarr array "
            "with larger chunks), or pass numpy data with chunk_size='auto'.",
            SmallChunksWarning, stacklevel=_user_stacklevel(),
        )
    return data


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside daskgmm (and scikit-learn's fit wrappers)."""
    import sys

    inside = (os.path.dirname(os.path.abspath(__file__)), os.sep + "sklearn" + os.sep)
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and any(part in frame.f_code.co_filename for part in inside):
        frame, level = frame.f_back, level + 1
    return level


def _type_name(X: Any) -> str:
    return f"{type(X).__module__}.{type(X).__qualname__}"


def is_dask_dataframe(X: Any) -> bool:
    """A dask DataFrame or Series (without importing dask.dataframe)."""
    import dask

    return (dask.is_dask_collection(X) and type(X).__module__.startswith("dask.dataframe")
            and hasattr(X, "to_dask_array"))


def _is_xarray(X: Any) -> bool:
    return type(X).__module__.startswith("xarray.")


# On-disk containers whose ``__array__`` reads the whole data set.
_LAZY_ARRAY_MODULES = ("h5py", "netCDF4")


def input_is_lazy(X: Any) -> bool:
    """Whether ``X`` is read chunk by chunk (True) or is already in memory (False).

    Lazy: dask arrays, Zarr arrays and paths, dask DataFrames and Series,
    xarray DataArrays backed by dask. In memory: numpy arrays, lists,
    pandas objects, numpy-backed xarray DataArrays, and other objects with
    an array interface (``np.asarray`` is then only a view or a copy of
    memory).

    Raises
    ------
    TypeError
        A lazy container that cannot be read chunk by chunk (another dask
        collection, an xarray Dataset, an xarray DataArray whose values
        are neither in memory nor dask, an h5py or netCDF4 variable), or an
        object that is not an array at all: never gathered silently.
    """
    import dask

    if isinstance(X, (da.Array, zarr.Array, str, os.PathLike)) or hasattr(X, "__fspath__"):
        return True
    if is_dask_dataframe(X):
        return True
    if _is_xarray(X):
        if not hasattr(X, "variable"):  # a Dataset: several variables
            raise TypeError(
                f"X is an {_type_name(X)}; daskgmm takes one 2-D array: pass one variable "
                "(ds['name']) or ds.to_dataarray(), with the samples as the first dimension."
            )
        if X.chunks is not None:
            if isinstance(X.data, da.Array):
                return True
            held = "chunked by another library than dask"
        elif getattr(X, "_in_memory", True):
            return False
        else:
            held = "not in memory (read lazily from a file)"
        raise TypeError(
            f"X is an xarray DataArray whose values are {held}; daskgmm reads dask-backed "
            "DataArrays chunk by chunk and takes in-memory ones as they are. Chunk it with "
            "dask (X.chunk({X.dims[0]: rows})) or load it (X.load())."
        )
    if dask.is_dask_collection(X):
        raise TypeError(
            f"X is a {_type_name(X)}, a dask collection daskgmm cannot read chunk by chunk "
            "(it reads dask arrays, dask DataFrames and dask-backed xarray DataArrays); "
            "convert it to a dask array of shape (n_samples, n_features) first. It is never "
            "gathered into the client."
        )
    if type(X).__module__.split(".")[0] in _LAZY_ARRAY_MODULES:
        raise TypeError(
            f"X is a {_type_name(X)}, an on-disk array that np.asarray would read whole; wrap it "
            "as dask.array.from_array(X, chunks=(rows, -1)) to read it chunk by chunk."
        )
    if not _array_like(X):
        raise TypeError(
            f"X must be an array of shape (n_samples, n_features): a numpy, dask or Zarr array, "
            f"a pandas or dask DataFrame, an xarray DataArray, a nested list, or a path to a "
            f"Zarr array; got a {_type_name(X)}."
        )
    return False


def _array_like(X: Any) -> bool:
    if isinstance(X, (np.ndarray, list, tuple)):
        return True
    if any(hasattr(X, attr) for attr in ("__array__", "__array_interface__", "__array_namespace__",
                                         "__dataframe__")):
        return True
    try:
        from scipy.sparse import issparse
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False
    return issparse(X)  # refused by scikit-learn's own message


def container_array(X: Any) -> Any:
    """A dask DataFrame or dask-backed xarray DataArray as a dask array; anything else as it is.

    A dask DataFrame becomes ``X.to_dask_array(lengths=True)``: one small
    pass counts each partition's rows (nothing but the counts reaches the
    client); its name is derived from the DataFrame's, so it is the same
    for the same DataFrame. A DataArray gives its dask array (``X.data``),
    its first dimension the samples.

    Raises
    ------
    TypeError
        As :func:`input_is_lazy`.
    """
    if isinstance(X, (da.Array, zarr.Array, np.ndarray)):
        return X
    if not input_is_lazy(X):
        return X
    if is_dask_dataframe(X):
        return X.to_dask_array(lengths=True)
    if _is_xarray(X):
        return X.data
    return X


def as_sample_weight(sample_weight: Any, row_chunks: tuple[int, ...]) -> da.Array:
    """Validate sample weights and chunk them as the data's rows.

    A numpy array (or list) is checked at once and cut into the data's row
    chunks; a dask or Zarr array must already have the data's row chunks
    (each chunk task then reads its weights beside its rows) and is checked
    chunk by chunk as the passes read it (:func:`check_weight_block`). A dask
    Series and a dask-backed xarray DataArray are read as dask arrays (their
    partitions or chunks must be X's row chunks), never gathered.

    Raises
    ------
    ValueError
        Wrong shape, misaligned chunks, or (for numpy input) negative, NaN
        or infinite weights, or all weights zero.
    TypeError
        Weights that are not numbers, or another lazy object.
    """
    import dask

    n_samples = int(sum(row_chunks))
    if is_dask_dataframe(sample_weight):
        sample_weight = sample_weight.to_dask_array(lengths=True)
    elif _is_xarray(sample_weight) and isinstance(getattr(sample_weight, "data", None), da.Array):
        sample_weight = sample_weight.data
    elif dask.is_dask_collection(sample_weight) and not isinstance(sample_weight, da.Array):
        raise TypeError(
            f"sample_weight is a {_type_name(sample_weight)}, a dask collection daskgmm cannot "
            "read chunk by chunk; give a dask array or Series with X's row chunks. It is never "
            "gathered into the client."
        )
    if isinstance(sample_weight, (str, os.PathLike)):
        sample_weight = open_zarr_array(sample_weight)
    if isinstance(sample_weight, zarr.Array):
        sample_weight = with_absolute_store(sample_weight)
        _check_weight_shape(sample_weight.shape, n_samples)
        if sample_weight.chunks[0] != row_chunks[0] and len(row_chunks) > 1:
            raise ValueError(
                f"sample_weight is chunked by {sample_weight.chunks[0]} rows but X by "
                f"{row_chunks[0]}: Zarr weights must have X's row chunks, so that each "
                "chunk of rows is read with its own weights."
            )
        from dask.base import tokenize

        name = "zarr-weights-" + tokenize(str(sample_weight.store_path), sample_weight.shape)
        return _float_weights(zarr_blocks(sample_weight, (row_chunks,), name))
    if isinstance(sample_weight, da.Array):
        _check_weight_shape(sample_weight.shape, n_samples)
        if tuple(sample_weight.chunks[0]) != tuple(row_chunks):
            raise ValueError(
                f"sample_weight's chunks {_short(sample_weight.chunks[0])} are not aligned with X's "
                f"row chunks {_short(row_chunks)}: rechunk the weights to X's row chunks."
            )
        return _float_weights(sample_weight)
    weights = np.asarray(sample_weight)
    _check_weight_shape(weights.shape, n_samples)
    if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)
            or weights.dtype == bool):
        raise TypeError(f"sample_weight must hold numbers, got dtype {weights.dtype}.")
    weights = weights.astype(np.float64)
    check_weight_block(weights, 0)
    if not weights.any():
        raise ValueError("sample_weight is zero for every row: there is nothing to fit.")
    return da.from_array(weights, chunks=(row_chunks,))


def open_sample_weight(path: str | os.PathLike, name: str, row_chunks: tuple[int, ...],
                       **storage_options: Any) -> da.Array:
    """The weights array ``name`` of the Zarr group at ``path``, read in the data's row chunks.

    For config files, whose data may be rechunked (``data.chunk_rows``): the
    weights follow the data's chunks whatever their own Zarr chunks are. A
    local ``path`` is the client's (made absolute, as in :func:`open_zarr_array`).

    Parameters
    ----------
    path : str or os.PathLike
        The Zarr group (a local path or an fsspec URL).
    name : str
        The weights array in the group.
    row_chunks : tuple of int
        The data's row chunks.
    **storage_options
        fsspec options for a URL.

    Returns
    -------
    dask.array.Array
        Shape (n_samples,), float64.
    """
    array = open_zarr_array(path, name, **storage_options)
    _check_weight_shape(array.shape, int(sum(row_chunks)))
    from dask.base import tokenize

    dask_name = "zarr-weights-" + tokenize(str(array.store_path), array.shape, row_chunks)
    weights = zarr_blocks(array, (tuple(row_chunks),), dask_name)
    return _float_weights(weights)


def _short(chunks: tuple[int, ...]) -> str:
    chunks = tuple(int(c) for c in chunks)
    return str(chunks) if len(chunks) <= 4 else f"({chunks[0]}, {chunks[1]}, ..., {chunks[-1]})"


def _check_weight_shape(shape: tuple[int, ...], n_samples: int) -> None:
    if len(shape) != 1 or shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per row of X; "
            f"got shape {tuple(shape)}."
        )


def _float_weights(weights: da.Array) -> da.Array:
    if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)):
        raise TypeError(f"sample_weight must hold numbers, got dtype {weights.dtype}.")
    return weights.astype(np.float64)


def zarr_blocks(array: zarr.Array, chunks: Any, name: str) -> da.Array:
    """A dask array of a Zarr array's blocks, each read by :func:`~daskgmm._zarr.read_rows`
    through a :class:`~daskgmm._zarr.ZarrRowReader` (errors name the rows)."""
    return da.from_array(ZarrRowReader(array), chunks=chunks, name=name, getitem=read_rows)


def _as_float(array: da.Array) -> da.Array:
    if np.issubdtype(array.dtype, np.floating):
        return array
    return array.astype(np.float64)


def _rows_only(array: da.Array) -> da.Array:
    """All columns in one chunk: the kernels need whole rows."""
    if len(array.chunks[1]) == 1:
        return array
    return array.rechunk({0: array.chunks[0], 1: -1})
