"""Zarr stores at the input boundary: opening, completeness, codecs, checksums, locations.

Everything daskgmm needs to know about a Zarr array besides its values:
which chunks were never written, which codecs (and whether a checksum)
protect the stored chunks, reading each stored chunk once to verify it, and
where the store is, as an absolute location that workers started in other
directories resolve alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zarr

from ._files import absolute_path
from ._objectstore import missing_filesystem_message
from .exceptions import CorruptChunkError, MissingChunksError

if TYPE_CHECKING:  # dask.array (with pandas) stays out of the workers, which unpickle ZarrRowReader
    import dask.array as da


def missing_chunk_indices(array: zarr.Array, limit: int = 10) -> list[tuple[int, ...]]:
    """Grid indices of up to ``limit`` chunks that were never written.

    Parameters
    ----------
    array : zarr.Array
    limit : int, default=10
        Stop after finding this many.

    Returns
    -------
    list of tuple of int
        The chunk-grid indices (one int per dimension, in units of
        ``array.chunks``) whose chunk key is absent from the store, in
        row-major grid order; at most ``limit``, empty if none is missing.
    """
    import itertools

    from zarr.core.sync import sync

    grid = [range(-(-n // c)) for n, c in zip(array.shape, array.chunks, strict=True)]
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
        self.array = with_absolute_store(array)  # the tasks run in the workers' directories
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
                f"Could not read {where} of the Zarr array {self.array.store_path}"
                f"{self._chunks_of(rows)}: {type(exc).__name__}: {exc}. The chunk is corrupt or "
                "unreadable: restore it (or the whole array) from its source or a backup. "
                f"`daskgmm check --verify {self.array.store_path}` lists every chunk that "
                "fails to decode."
            ) from exc

    def _chunks_of(self, rows: Any) -> str:
        """`` (chunk <key>)``: the stored chunk(s) a row slice falls in, or ``""``."""
        if not isinstance(rows, slice) or rows.start is None or rows.stop is None:
            return ""
        try:
            size = (self.array.shards or self.array.chunks)[0]  # what a stored key names
            first, last = rows.start // size, (rows.stop - 1) // size
            keys = [self.array.metadata.encode_chunk_key((i,) + (0,) * (self.ndim - 1))
                    for i in range(first, min(last, first + 2) + 1)]
        except Exception:  # a chunk grid or key encoding we do not know: say nothing
            return ""
        more = ", ..." if last > first + 2 else ""
        return f" (chunk {', '.join(keys)}{more})"


def read_rows(reader: ZarrRowReader, selection: Any) -> Any:
    """Read one block: the getter of daskgmm's Zarr-backed dask arrays
    (``dask.array.from_array(..., getitem=read_rows)``).

    dask's own getter lives in ``dask.array.core``; with this one, a worker
    that reads and reduces chunks imports zarr and numpy but not dask.array
    and the pandas it brings (about 100 MiB of each worker's memory).
    """
    return reader[selection]


def with_absolute_store(array: zarr.Array) -> zarr.Array:
    """The same Zarr array, in a local store whose root is an absolute path.

    A ``LocalStore`` keeps its root as given; pickled into a task, a relative
    root would be read in the worker's working directory, which is not the
    client's. Arrays in other stores (fsspec URLs, memory) are returned as
    they are.

    Parameters
    ----------
    array : zarr.Array

    Returns
    -------
    zarr.Array
    """
    from pathlib import Path

    from zarr.core.array import AsyncArray
    from zarr.storage import LocalStore, StorePath

    store = array.store_path.store
    if not isinstance(store, LocalStore) or Path(store.root).is_absolute():
        return array
    absolute = LocalStore(absolute_path(store.root), read_only=store.read_only)
    return zarr.Array(AsyncArray(metadata=array.metadata,
                                 store_path=StorePath(absolute, array.store_path.path),
                                 config=array._async_array.config))


def open_zarr_array(path: str | os.PathLike, name: str | None = None, **storage_options: Any):
    """Open a Zarr array by path or URL, optionally an array ``name`` inside a group.

    A local ``path`` is made absolute against the current directory first
    (the client's: dask tasks run in the workers' directories); an fsspec
    URL (anything with ``://``) is used as it is.

    Parameters
    ----------
    path : str or os.PathLike
        A local path or an fsspec URL.
    name : str, optional
        The array inside a Zarr group.
    **storage_options
        fsspec options for a URL.

    Returns
    -------
    zarr.Array

    Raises
    ------
    FileNotFoundError
        Nothing is stored at ``path``.
    KeyError
        ``name`` is not an array in the group, or a group holds several
        arrays and no ``name`` was given.
    ImportError
        The URL's filesystem is not installed (``s3://`` needs the ``s3``
        extra, ``pip install 'daskgmm[s3]'``); the message says what to install.
    """
    path = absolute_path(path)
    kwargs: dict[str, Any] = {"storage_options": storage_options} if storage_options else {}
    try:
        node = zarr.open(store=path, mode="r", **kwargs)
    except FileNotFoundError:
        raise FileNotFoundError(f"No Zarr array or group at {str(path)!r}.") from None
    except ImportError as exc:  # fsspec's: the URL's filesystem package is missing
        raise ImportError(missing_filesystem_message(str(path), exc)) from exc
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


def open_zarr_arrays(path: str | os.PathLike, name: str | None = None,
                     **storage_options: Any) -> list[zarr.Array]:
    """The array ``name`` of a Zarr group, or every array at ``path`` (the array, or the group's).

    Parameters
    ----------
    path : str or os.PathLike
        A Zarr array or group: a local path (made absolute) or an fsspec URL.
    name : str, optional
        One array of the group.
    **storage_options
        fsspec options for a URL.

    Returns
    -------
    list of zarr.Array
        In the order of their paths; a group's nested groups included.
    """
    if name is not None:
        return [open_zarr_array(path, name, **storage_options)]
    kwargs: dict[str, Any] = {"storage_options": storage_options} if storage_options else {}
    try:
        node = zarr.open(store=absolute_path(path), mode="r", **kwargs)
    except FileNotFoundError:
        raise FileNotFoundError(f"No Zarr array or group at {str(path)!r}.") from None
    if isinstance(node, zarr.Array):
        return [node]
    return [array for _, array in sorted(node.members(max_depth=None), key=lambda item: item[0])
            if isinstance(array, zarr.Array)]


def check_zarr_complete(array: zarr.Array, allow_missing_chunks: bool = False) -> None:
    """Refuse a Zarr array with chunks that were never written.

    Zarr reads a missing chunk as its fill value without any error, which
    would be clustered as real rows.

    Parameters
    ----------
    array : zarr.Array
    allow_missing_chunks : bool, default=False
        Accept the array without checking (missing chunks read as the fill value).
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


# Codecs that make a corrupted chunk fail to decode: checksums, and compressed
# formats that carry one (gzip: CRC-32, zlib: Adler-32, bzip2: CRC-32 per block).
_CHECKSUM_CODECS = frozenset({"crc32c", "crc32", "adler32", "fletcher32", "jenkins_lookup3",
                              "gzip", "zlib", "bz2"})


def _codec_name_and_config(codec: Any) -> tuple[str, dict]:
    if hasattr(codec, "to_dict"):  # a Zarr v3 codec
        spec = codec.to_dict()
        return str(spec.get("name", type(codec).__name__)), dict(spec.get("configuration") or {})
    if hasattr(codec, "get_config"):  # a numcodecs codec (Zarr v2)
        config = dict(codec.get_config())
        return str(config.pop("id", type(codec).__name__)), config
    return type(codec).__name__, {}


def _chunk_codecs(array: zarr.Array) -> list[tuple[str, dict]]:
    """(name, configuration) of the codecs that encode one chunk, sharding unwrapped."""
    metadata: Any = array.metadata  # ArrayV2Metadata or ArrayV3Metadata
    if getattr(metadata, "zarr_format", 3) == 2:
        codecs = [*(metadata.filters or ()), *([metadata.compressor] if metadata.compressor else [])]
        return [_codec_name_and_config(c) for c in codecs]
    described: list[tuple[str, dict]] = []
    codec: Any
    for codec in metadata.codecs:
        name, config = _codec_name_and_config(codec)
        if name == "sharding_indexed":  # the inner chunks' own codecs
            described.extend(_codec_name_and_config(c) for c in codec.codecs)
        else:
            described.append((name, config))
    return described


def _is_checksum(name: str, config: dict) -> bool:
    name = name.lower().removeprefix("numcodecs.")
    return name in _CHECKSUM_CODECS or (name == "zstd" and bool(config.get("checksum")))


def codec_description(array: zarr.Array) -> list[str]:
    """The codecs of a Zarr array's chunks, in order, e.g. ``['bytes', 'blosc(lz4)', 'crc32c']``.

    Parameters
    ----------
    array : zarr.Array

    Returns
    -------
    list of str
    """
    described = []
    for name, config in _chunk_codecs(array):
        detail = config.get("cname") or ("checksum" if config.get("checksum") else "")
        described.append(f"{name}({detail})" if detail else name)
    return described


def has_checksum(array: zarr.Array) -> bool:
    """Whether a Zarr array's chunks carry a checksum, so that a corrupted chunk fails to read.

    Without one (zarr's default codecs, Blosc, LZ4, zstd without
    ``checksum=True``), a flipped byte decodes to wrong numbers with no
    error: no reader can detect it.

    Parameters
    ----------
    array : zarr.Array

    Returns
    -------
    bool
    """
    return any(_is_checksum(name, config) for name, config in _chunk_codecs(array))


def _stored_chunk_shape(array: zarr.Array) -> tuple[int, ...]:
    """The shape of what is stored under one key: a shard, or a chunk."""
    return tuple(getattr(array, "shards", None) or array.chunks)


def _region(array: zarr.Array, index: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, shape, array.shape, strict=True))


def _describe_region(region: tuple[slice, ...]) -> str:
    if not region:
        return "the only value"
    return f"rows {region[0].start}-{region[0].stop - 1}"


def stored_chunk_indices(array: zarr.Array) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Grid indices of the stored chunks (shards, for a sharded array): present, and missing.

    One listing of the store: a missing chunk is one whose key is absent,
    which zarr would read as the fill value without an error.

    Parameters
    ----------
    array : zarr.Array

    Returns
    -------
    present, missing : list of tuple of int
    """
    import itertools

    from zarr.core.sync import sync

    shape = _stored_chunk_shape(array)
    store, prefix = array.store_path.store, array.store_path.path

    async def keys() -> set[str]:
        return {key async for key in store.list_prefix(f"{prefix}/" if prefix else "")}

    stored = sync(keys())
    present: list[tuple[int, ...]] = []
    missing: list[tuple[int, ...]] = []
    for index in itertools.product(*(range(-(-n // c)) for n, c in zip(array.shape, shape, strict=True))):
        key = array.metadata.encode_chunk_key(index)
        (present if (f"{prefix}/{key}" if prefix else key) in stored else missing).append(index)
    return present, missing


@dataclass(frozen=True)
class ChunkFailure:
    """A chunk that could not be read or decoded.

    Attributes
    ----------
    index : tuple of int
        The chunk's grid index (of the inner chunk, for a sharded array).
    where : str
        Its rows.
    error : str
        What went wrong.
    """

    index: tuple[int, ...]
    where: str
    error: str


def verify_chunks(array: zarr.Array, indices: list[tuple[int, ...]] | None = None) -> list[ChunkFailure]:
    """Read every stored chunk of a Zarr array once, one at a time; name those that fail.

    A chunk fails if it cannot be read or decoded (a checksum mismatch, a
    truncated or undecodable file). Only one chunk (or shard) is in memory
    at a time. In a sharded array, a shard that fails is read again inner
    chunk by inner chunk, to name the inner chunks that fail.

    Parameters
    ----------
    array : zarr.Array
    indices : list of tuple of int, optional
        Grid indices of the stored chunks (shards) to read; default: all that
        are present (:func:`stored_chunk_indices`).

    Returns
    -------
    list of ChunkFailure
    """
    import itertools

    if indices is None:
        indices = stored_chunk_indices(array)[0]
    stored_shape = _stored_chunk_shape(array)
    inner = tuple(array.chunks)
    failures = []

    def read(region):
        try:
            array[region]
        except Exception as exc:  # any failure to read or decode is the chunk's
            return f"{type(exc).__name__}: {exc}"
        return None

    for index in indices:
        region = _region(array, index, stored_shape)
        error = read(region)
        if error is None:
            continue
        if stored_shape == inner:
            failures.append(ChunkFailure(index, _describe_region(region), error))
            continue
        per_shard = [s // c for s, c in zip(stored_shape, inner, strict=True)]
        for offset in itertools.product(*(range(k) for k in per_shard)):
            inner_index = tuple(i * k + o for i, k, o in zip(index, per_shard, offset, strict=True))
            inner_region = _region(array, inner_index, inner)
            if any(r.start >= r.stop for r in inner_region):
                continue
            inner_error = read(inner_region)
            if inner_error is not None:
                failures.append(ChunkFailure(inner_index, _describe_region(inner_region), inner_error))
    return failures


def describe_zarr_array(array: zarr.Array) -> dict[str, Any]:
    """What can be said of a Zarr array without reading its chunks.

    Parameters
    ----------
    array : zarr.Array

    Returns
    -------
    dict
        ``path``, ``shape``, ``dtype``, ``chunks``, ``shards`` (or None),
        ``zarr_format``, ``n_chunks`` and ``n_missing`` (stored chunks: shards
        for a sharded array), ``missing`` (up to 10 as ``{"index", "where"}``),
        ``codecs`` and ``checksum``.
    """
    present, missing = stored_chunk_indices(array)
    shape = _stored_chunk_shape(array)
    return {
        "path": str(array.store_path),
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "chunks": list(array.chunks),
        "shards": list(array.shards) if array.shards is not None else None,
        "zarr_format": int(array.metadata.zarr_format),
        "n_chunks": len(present) + len(missing),
        "n_missing": len(missing),
        "missing": [{"index": list(i), "where": _describe_region(_region(array, i, shape))}
                    for i in missing[:10]],
        "codecs": codec_description(array),
        "checksum": has_checksum(array),
    }


def zarr_location(array: zarr.Array) -> str:
    """The resolved location of a Zarr array: an absolute local path, or the store's URL.

    Parameters
    ----------
    array : zarr.Array

    Returns
    -------
    str
    """
    from zarr.storage import LocalStore

    store = array.store_path.store
    if isinstance(store, LocalStore):
        return os.path.join(os.path.abspath(store.root), array.store_path.path).rstrip("/")
    return str(array.store_path)


def _zarr_sources(array: da.Array) -> list[zarr.Array]:
    """The Zarr arrays in a dask array's ``original-*`` source layers (see
    :func:`dask_array_location`)."""
    sources = []
    for layer_name, layer in array.dask.layers.items():
        if not str(layer_name).startswith("original-"):
            continue
        mapping = getattr(layer, "mapping", None)
        if not isinstance(mapping, dict) or len(mapping) != 1:
            continue
        (source,) = mapping.values()
        source = getattr(source, "array", source)  # ZarrRowReader
        if isinstance(source, zarr.Array):
            sources.append(source)
    return sources


def refuse_relative_zarr_sources(array: da.Array) -> None:
    """Refuse a dask array that reads a Zarr store by a relative path.

    Its tasks resolve the path in each worker's working directory, which is
    not the client's on a cluster: the fit would silently read whatever data
    sit at that path there. daskgmm's own readers make paths absolute; a graph
    the user built (``da.from_zarr("data.zarr")``) cannot be rewritten safely.

    Parameters
    ----------
    array : dask.array.Array
        Its graph's Zarr sources (see :func:`dask_array_location`) are checked;
        those in a ``LocalStore`` must have an absolute root.
    """
    from zarr.storage import LocalStore

    for source in _zarr_sources(array):
        store = source.store_path.store
        if isinstance(store, LocalStore) and not os.path.isabs(str(store.root)):
            raise ValueError(
                f"The dask array reads the Zarr store at the relative path {str(store.root)!r}: "
                "dask workers resolve it in their own working directory, which need not be "
                "this process's. Open it by an absolute path (da.from_zarr(os.path.abspath"
                "(path))) or pass the path or zarr.Array to daskgmm, which resolves it here.")


def dask_array_location(array: da.Array) -> str | None:
    """The Zarr arrays a dask array reads, from its graph's source layers, or None.

    ``dask.array.from_array`` (and so ``from_zarr`` and daskgmm's own Zarr
    reader) keeps the source object in a one-key layer named
    ``original-<name>``; those layers survive rechunking and dtype
    conversion. Several sources are joined by ``" + "`` in the order found.

    Parameters
    ----------
    array : dask.array.Array

    Returns
    -------
    str or None
        The :func:`zarr_location` of each distinct Zarr array the graph reads,
        joined by ``" + "``; None if it reads none (an in-memory array, say).
    """
    found: list[str] = []
    for source in _zarr_sources(array):
        location = zarr_location(source)
        if location not in found:
            found.append(location)
    return " + ".join(found) if found else None


