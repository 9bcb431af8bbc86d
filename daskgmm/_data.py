"""The input boundary: numpy, dask and Zarr data become one row-chunked dask array.

Validation that needs no pass over the data happens here (type, shape,
dtype, Zarr chunk completeness); finiteness is checked inside the passes,
where it costs nothing on good data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import numpy as np
import zarr

DEFAULT_CHUNK_BYTES = 32 * 2**20


class MissingChunksError(ValueError):
    """A Zarr array has chunks that were never written."""


class CorruptChunkError(ValueError):
    """A Zarr chunk could not be read or decoded (a checksum mismatch, say)."""


def missing_chunk_indices(array: zarr.Array, limit: int = 10) -> list[tuple[int, ...]]:
    """Grid indices of up to ``limit`` chunks that were never written."""
    import itertools

    from zarr.core.sync import sync

    grid = [range(-(-n // c)) for n, c in zip(array.shape, array.chunks)]
    missing = []
    for index in itertools.product(*grid):
        key = array.metadata.encode_chunk_key(index)
        if not sync((array.store_path / key).exists()):
            missing.append(index)
            if len(missing) >= limit:
                break
    return missing


class ZarrRowReader:
    """Array-like view of a 2-D Zarr array for ``dask.array.from_array``.

    Reads go through zarr as usual; an error while reading or decoding a
    chunk (a checksum mismatch, a truncated file) is re-raised as
    :class:`CorruptChunkError` naming the array and the rows.
    """

    def __init__(self, array: zarr.Array):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __getitem__(self, selection):
        try:
            return self.array[selection]
        except Exception as exc:
            rows = selection[0] if isinstance(selection, tuple) else selection
            where = f"rows {rows.start}-{rows.stop - 1}" if isinstance(rows, slice) else f"rows {rows}"
            raise CorruptChunkError(
                f"Could not read {where} of the Zarr array {self.array.store_path}: "
                f"{type(exc).__name__}: {exc}. The chunk is corrupt or unreadable."
            ) from exc


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
    """

    array: da.Array
    in_memory: bool
    weights: da.Array | None = None

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


def open_zarr_array(path: str | os.PathLike, name: str | None = None, **storage_options: Any):
    """Open a Zarr array by path or URL, optionally an array ``name`` inside a group.

    Raises
    ------
    FileNotFoundError
        Nothing is stored at ``path``.
    KeyError
        ``name`` is not an array in the group, or a group holds several
        arrays and no ``name`` was given.
    """
    kwargs = {"storage_options": storage_options} if storage_options else {}
    try:
        node = zarr.open(store=str(path), mode="r", **kwargs)
    except FileNotFoundError:
        raise FileNotFoundError(f"No Zarr array or group at {str(path)!r}.") from None
    if isinstance(node, zarr.Array):
        if name is not None:
            raise KeyError(f"{str(path)!r} is a Zarr array, not a group; it has no member {name!r}.")
        return node
    arrays = sorted(key for key, _ in node.arrays())
    if name is None:
        if len(arrays) == 1:
            return node[arrays[0]]
        raise KeyError(
            f"The Zarr group {str(path)!r} holds {len(arrays)} arrays {arrays}; "
            "name the one to use."
        )
    if name not in arrays:
        raise KeyError(f"No array {name!r} in the Zarr group {str(path)!r}; it holds {arrays}.")
    return node[name]


def check_zarr_complete(array: zarr.Array, allow_missing_chunks: bool = False) -> None:
    """Refuse a Zarr array with chunks that were never written.

    Zarr reads a missing chunk as its fill value without any error, which
    would be clustered as real rows.
    """
    if allow_missing_chunks:
        return
    missing = array.nchunks - array.nchunks_initialized
    if missing > 0:
        where = []
        for index in missing_chunk_indices(array):
            start = index[0] * array.chunks[0]
            stop = min(start + array.chunks[0], array.shape[0])
            where.append(f"chunk {index} (rows {start}-{stop - 1})")
        more = ", ..." if missing > len(where) else ""
        raise MissingChunksError(
            f"The Zarr array {array.store_path} has {missing} of {array.nchunks} chunks "
            f"missing (never written): {', '.join(where)}{more}. Zarr would read them as "
            f"the fill value {array.fill_value!r}. Pass allow_missing_chunks=True if the "
            "writer skipped chunks that were all fill value on purpose."
        )


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
    X : ndarray, dask.array.Array, zarr.Array, str or os.PathLike
        The data. A string or path is opened as a Zarr array (or the array
        ``name`` of a Zarr group).
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
    """
    if isinstance(X, (str, os.PathLike)):
        X = open_zarr_array(X, name)
    if isinstance(X, zarr.Array):
        _check_shape(X.shape, "the Zarr array")
        _check_dtype(X.dtype, "the Zarr array")
        check_zarr_complete(X, allow_missing_chunks)
        from dask.base import tokenize

        name = "zarr-" + tokenize(str(X.store_path), X.shape, X.chunks, str(X.dtype))
        array = da.from_array(ZarrRowReader(X), chunks=X.chunks, name=name, asarray=True,
                              fancy=False, lock=False)
        return Dataset(_rows_only(_as_float(array)), in_memory=False)
    if isinstance(X, da.Array):
        _check_shape(X.shape, "the dask array")
        if any(np.isnan(c).any() for c in X.chunks):
            raise ValueError("The dask array has unknown chunk sizes; call X.compute_chunk_sizes() first.")
        _check_dtype(X.dtype, "the dask array")
        return Dataset(_rows_only(_as_float(X)), in_memory=False)
    array = np.asarray(X)
    _check_shape(array.shape, "the array")
    _check_dtype(array.dtype, "the array")
    if chunk_size == "auto":
        rows = auto_rows_per_chunk(*array.shape)
    else:
        rows = int(chunk_size)
    return Dataset(_as_float(da.from_array(array, chunks=(rows, -1))), in_memory=True)


def as_sample_weight(sample_weight: Any, row_chunks: tuple[int, ...]) -> da.Array:
    """Validate sample weights and chunk them as the data's rows.

    A numpy array (or list) is checked at once and cut into the data's row
    chunks; a dask or Zarr array must already have the data's row chunks
    (each chunk task then reads its weights beside its rows) and is checked
    chunk by chunk as the passes read it (:func:`check_weight_block`).

    Raises
    ------
    ValueError
        Wrong shape, misaligned chunks, or (for numpy input) negative, NaN
        or infinite weights, or all weights zero.
    TypeError
        Weights that are not numbers.
    """
    n_samples = int(sum(row_chunks))
    if isinstance(sample_weight, (str, os.PathLike)):
        sample_weight = open_zarr_array(sample_weight)
    if isinstance(sample_weight, zarr.Array):
        _check_weight_shape(sample_weight.shape, n_samples)
        if sample_weight.chunks[0] != row_chunks[0] and len(row_chunks) > 1:
            raise ValueError(
                f"sample_weight is chunked by {sample_weight.chunks[0]} rows but X by "
                f"{row_chunks[0]}: Zarr weights must have X's row chunks, so that each "
                "chunk of rows is read with its own weights."
            )
        from dask.base import tokenize

        name = "zarr-weights-" + tokenize(str(sample_weight.store_path), sample_weight.shape)
        weights = da.from_array(ZarrRowReader(sample_weight), chunks=(row_chunks,), name=name,
                                asarray=True, fancy=False, lock=False)
        return _float_weights(weights)
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
    weights follow the data's chunks whatever their own Zarr chunks are.
    """
    array = open_zarr_array(path, name, **storage_options)
    _check_weight_shape(array.shape, int(sum(row_chunks)))
    from dask.base import tokenize

    dask_name = "zarr-weights-" + tokenize(str(array.store_path), array.shape, row_chunks)
    weights = da.from_array(ZarrRowReader(array), chunks=(tuple(row_chunks),), name=dask_name,
                            asarray=True, fancy=False, lock=False)
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


def check_weight_block(weights: np.ndarray, start: int) -> None:
    """Raise ``ValueError`` naming the row if a chunk's weights are negative, NaN or infinite."""
    bad = ~(np.isfinite(weights) & (weights >= 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = weights[first]
        kind = "NaN" if np.isnan(value) else "infinite" if np.isinf(value) else "negative"
        raise ValueError(
            f"sample_weight must be finite and non-negative: {int(bad.sum())} {kind} or invalid "
            f"weight(s), first at row {start + first} (value {value})."
        )


def _as_float(array: da.Array) -> da.Array:
    if np.issubdtype(array.dtype, np.floating):
        return array
    return array.astype(np.float64)


def _rows_only(array: da.Array) -> da.Array:
    """All columns in one chunk: the kernels need whole rows."""
    if len(array.chunks[1]) == 1:
        return array
    return array.rechunk({0: array.chunks[0], 1: -1})
