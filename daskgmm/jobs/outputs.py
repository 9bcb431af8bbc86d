"""The jobs' Zarr write policy: checksummed codecs, every chunk stored, stores put in place whole.

Every chunk daskgmm writes carries a CRC32C checksum
(:func:`checksummed_compressors`) and is stored even if it holds only the
fill value (:data:`WRITE_EVERY_CHUNK`), so that a reader can tell a lost or
damaged chunk from data. A store is written to a temporary folder beside its
destination and moved into place only when complete (:func:`atomic_directory`),
under the overwrite rule of :mod:`daskgmm._files`: without ``overwrite`` an
existing destination is refused before any work and again when the store is
put in place, and the temporaries of dead runs are cleaned up by the next run.
A store at an fsspec URL (``s3://``) is written under a staging prefix and
published whole, as :mod:`daskgmm._objectstore` describes (:func:`atomic_store`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._files import (
    absolute_path,
    check_writable,
    is_url,
    remove_path,
    rename_without_replacing,
    temporary_name,
)

if TYPE_CHECKING:  # dask and zarr are imported when used: the CLI's other commands need neither
    import dask.array as da
    from zarr.core.array_spec import ArrayConfigParams

# zarr skips chunks that are all fill value by default; a reader then cannot
# tell them from chunks that were lost. daskgmm stores every chunk.
WRITE_EVERY_CHUNK: ArrayConfigParams = {"write_empty_chunks": True}


def checksummed_compressors() -> tuple:
    """The codecs daskgmm writes with: Blosc LZ4 with byte shuffle, then a CRC32C
    checksum of each chunk.

    A fit reads its data once per EM iteration, so decoding speed matters
    more than the last few percent of size: on float64 mixture data, LZ4 with
    shuffle decodes a 16 MiB chunk in 14 ms against 38 ms for zstd level 1,
    at a similar ratio (1.06 vs 1.03).

    Returns
    -------
    tuple
        Zarr codecs, for ``compressors=``.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())


@contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it into place only if the block succeeds.

    The previous output at ``path`` is kept until the new one is complete: it
    is renamed aside, the new folder renamed into place, and only then
    deleted, so ``path`` never holds a partly written or partly deleted
    output; a kill between the two renames is repaired by the next run
    (:func:`daskgmm._files.remove_leftovers`). Without ``overwrite``, an output that
    appeared at ``path`` while the block ran is kept and
    :class:`~daskgmm.exceptions.OutputExistsError` is raised. A relative ``path`` is taken
    relative to the current directory, and the folder yielded is absolute.

    Parameters
    ----------
    path : str or os.PathLike
        The destination folder (a local path).
    overwrite : bool
        Replace an existing output at ``path``; otherwise refuse, before the
        block runs and again when the new folder is put in place.

    Yields
    ------
    Path
        The temporary folder to write (it does not exist yet), an absolute path.
    """
    if is_url(path):
        raise ValueError(f"{os.fspath(path)!r} is a URL; daskgmm writes stores to local paths only.")
    path = Path(absolute_path(path))
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        _put_directory_in_place(tmp, path, overwrite)
    finally:
        if os.path.lexists(tmp):
            remove_path(tmp)


@contextmanager
def atomic_store(path: str | os.PathLike, overwrite: bool,
                 storage_options: dict[str, Any] | None = None) -> Iterator[Any]:
    """Yield a Zarr store to write; put it in place of ``path`` only if the block succeeds.

    A local ``path`` is written as :func:`atomic_directory` does; an fsspec
    URL as :func:`daskgmm._objectstore.atomic_prefix` does.

    Parameters
    ----------
    path : str or os.PathLike
        The destination: a local path or an fsspec URL.
    overwrite : bool
        Replace an existing store at ``path``; otherwise refuse, before the
        block runs and again when the new store is put in place.
    storage_options : dict, optional
        fsspec options for a URL (endpoint, credentials).

    Yields
    ------
    str or zarr.storage.FsspecStore
        What ``zarr.open_group(..., mode="w")`` takes: an absolute local
        folder that does not exist yet, or an empty staging store.
    """
    if is_url(path):
        from .._objectstore import atomic_prefix

        with atomic_prefix(os.fspath(path), overwrite, storage_options) as store:
            yield store
    else:
        with atomic_directory(path, overwrite) as tmp:
            yield str(tmp)


def check_output(path: str | os.PathLike, overwrite: bool,
                 storage_options: dict[str, Any] | None = None) -> None:
    """Refuse early, before any work, an output that exists (without ``overwrite``) or cannot be written.

    Parameters
    ----------
    path : str or os.PathLike
        A local path or an fsspec URL.
    overwrite : bool
    storage_options : dict, optional
        fsspec options for a URL.

    Raises
    ------
    OutputExistsError
    OutputNotWritableError
    ImportError
        The URL's filesystem is not installed; the message names the extra.
    """
    if is_url(path):
        from .. import _objectstore

        _objectstore.check_writable(os.fspath(path), overwrite, storage_options)
    else:
        check_writable(path, overwrite)


def output_location(path: str | os.PathLike) -> Path | str:
    """What the writers return: a local path made absolute, a URL as it is."""
    return os.fspath(path) if is_url(path) else Path(absolute_path(path))


def _put_directory_in_place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the complete folder ``tmp`` to ``path``; without ``overwrite``, never replace one."""
    if overwrite:
        _replace_directory(tmp, path)
    else:
        rename_without_replacing(tmp, path)


def _move_aside(path: Path) -> Path | None:
    """Rename the output at ``path`` to an ``old`` name of this process; None if there is none."""
    old = temporary_name(path, "old")
    try:
        os.rename(path, old)
    except FileNotFoundError:
        return None
    return old


def _move_in(tmp: Path, path: Path) -> None:
    """Rename the complete folder ``tmp`` to ``path`` (which a replacement has just moved aside)."""
    os.rename(tmp, path)  # replaces nothing but an empty folder another run just made


def _replace_directory(tmp: Path, path: Path) -> None:
    """Put the folder ``tmp`` in place of ``path``; delete the old output only afterwards.

    A kill between the two renames leaves ``path`` empty, the old output
    aside and ``tmp`` complete; a kill after them leaves the old output
    aside. Both are repaired by the next run (:func:`daskgmm._files.remove_leftovers`).
    """
    old = _move_aside(path)
    try:
        _move_in(tmp, path)
    except BaseException:
        if old is not None:
            try:
                rename_without_replacing(old, path)  # put the previous output back
            except OSError:  # another run's output is in place: the old one is stale
                remove_path(old)
        raise
    if old is not None:
        remove_path(old)


def _regular_rows(array: da.Array) -> da.Array:
    """Zarr chunks are regular: make every row chunk but the last the same size."""
    rows = array.chunks[0]
    if len(set(rows[:-1])) <= 1 and rows[-1] <= rows[0]:
        return array
    return array.rechunk({0: rows[0]})


def _largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of ``n`` not above ``limit``: inner chunks must tile a shard."""
    for d in range(min(n, max(limit, 1)), 0, -1):
        if n % d == 0:
            return d
    return 1


def write_predictions(
    model,
    X: da.Array,
    path: str | os.PathLike,
    *,
    probabilities: bool = False,
    log_likelihood: bool = False,
    overwrite: bool = False,
    shard_rows: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Path | str:
    """Write ``labels`` (and optionally ``probabilities``, ``log_likelihood``) to a Zarr group.

    One pass over ``X``: the arrays are computed together, chunk by chunk, with
    chunks aligned to ``X``'s rows. Written to a temporary store and moved into
    place when complete; every chunk carries a checksum.

    With ``shard_rows``, the arrays are sharded: ``shard_rows`` rows per shard
    file, holding inner chunks of about ``X``'s chunk size. The dask arrays
    are then rechunked to whole shards first: two tasks writing parts of one
    shard would overwrite each other's rows without any error (dask/dask#12583).

    A relative ``path`` is the client's: it is made absolute before the graph
    is built, so that workers in other working directories write the chunks
    into this store.

    Parameters
    ----------
    model : GaussianMixture
        A fitted model.
    X : dask.array.Array of shape (n_samples, n_features)
        The data, chunked by rows.
    path : str or os.PathLike
        The Zarr group to write: a local path or an fsspec URL (``s3://``).
    probabilities : bool, default=False
        Also write ``probabilities``, of shape (n_samples, n_components).
    log_likelihood : bool, default=False
        Also write ``log_likelihood``, each row's log-likelihood under the model.
    overwrite : bool, default=False
        Replace an existing store at ``path``.
    shard_rows : int, optional
        Rows per shard file; unsharded arrays if None.
    storage_options : dict, optional
        fsspec options for a URL ``path`` (endpoint, credentials).

    Returns
    -------
    Path or str
        The absolute path of the store, or its URL.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    outputs = {"labels": model.predict(X)}
    if probabilities:
        outputs["probabilities"] = model.predict_proba(X)
    if log_likelihood:
        outputs["log_likelihood"] = model.score_samples(X)
    return _write_arrays(outputs, X, path, {"n_components": int(model.n_components)},
                         overwrite=overwrite, shard_rows=shard_rows,
                         storage_options=storage_options, pass_name="gmm-predict-store")


def write_imputed(
    model,
    X: da.Array,
    path: str | os.PathLike,
    *,
    name: str = "X",
    overwrite: bool = False,
    shard_rows: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Path | str:
    """Write ``model.impute(X)`` (X with missing entries filled) as the array ``name`` of a Zarr group.

    One pass over ``X``, chunk-aligned with its rows, float64, written and
    put in place as :func:`write_predictions` does.

    Parameters
    ----------
    model : GaussianMixture
        A model fitted with ``missing='marginalize'``.
    X : dask.array.Array of shape (n_samples, n_features)
    path : str or os.PathLike
        The Zarr group to write: a local path or an fsspec URL.
    name : str, default='X'
        The array's name in the group.
    overwrite : bool, default=False
    shard_rows : int, optional
    storage_options : dict, optional

    Returns
    -------
    Path or str
        The absolute path of the store, or its URL.
    """
    return _write_arrays({name: model.impute(X)}, X, path, {},
                         overwrite=overwrite, shard_rows=shard_rows,
                         storage_options=storage_options, pass_name="gmm-impute-store")


def _write_arrays(outputs: dict[str, da.Array], X: da.Array, path: str | os.PathLike,
                  attributes: dict[str, Any], *, overwrite: bool, shard_rows: int | None,
                  storage_options: dict[str, Any] | None, pass_name: str) -> Path | str:
    """Store row-aligned lazy arrays in one new Zarr group, in one pass, put in place whole."""
    import dask.array as da
    import zarr

    from .._passes import compute_pass

    if shard_rows is None:
        outputs = {name: _regular_rows(array) for name, array in outputs.items()}
        inner_rows = None
    else:
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be at least 1, got {shard_rows}.")
        inner_rows = _largest_divisor_at_most(shard_rows, X.chunks[0][0])
        outputs = {name: array.rechunk({0: shard_rows}) for name, array in outputs.items()}
    with atomic_store(path, overwrite, storage_options) as store:
        group = zarr.open_group(store, mode="w")
        group.attrs.update({"producer": "daskgmm", **attributes})
        targets = []
        for name, array in outputs.items():
            chunks = tuple(c[0] for c in array.chunks)
            shards = None
            if inner_rows is not None:
                shards, chunks = chunks, (inner_rows, *chunks[1:])
            targets.append(group.create_array(name, shape=array.shape, dtype=array.dtype,
                                              chunks=chunks, shards=shards,
                                              compressors=checksummed_compressors(),
                                              config=WRITE_EVERY_CHUNK))
        # One graph for all outputs, so each chunk of X is read once for all of them.
        # dask annotates targets as numpy array-likes; it needs only __setitem__, as zarr.Array has.
        stores = da.store(list(outputs.values()), targets, lock=False,  # type: ignore[arg-type]
                          compute=False)
        compute_pass(stores, pass_name)
    return output_location(path)


def rewrite_with_checksums(
    source: str | os.PathLike,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    overwrite: bool = False,
    allow_missing_chunks: bool = False,
    **storage_options,
) -> Path | str:
    """Copy a Zarr array or group into a new store whose every chunk carries a CRC32C checksum.

    Chunk by chunk (one task per stored chunk, never the whole array): every
    array keeps its shape, dtype, chunks, shards, fill value, dimension names
    and attributes, and groups keep theirs; the chunks are encoded with
    :func:`checksummed_compressors` and every chunk is stored. The new store
    is written beside ``path`` and put in place as :func:`atomic_store`
    does, so ``path`` may be ``source`` itself (with ``overwrite``).

    A checksum added now guards against corruption from now on: a chunk that
    was corrupted before, in a store without checksums, is copied as it
    decodes. A chunk that fails to read fails the rewrite.

    Parameters
    ----------
    source : str or os.PathLike
        The Zarr array or group: a local path or an fsspec URL.
    path : str or os.PathLike
        The new store: a local path or an fsspec URL.
    name : str, optional
        Copy only this array of the group ``source`` (into a group at ``path``).
    overwrite : bool, default=False
        Replace an existing store at ``path``.
    allow_missing_chunks : bool, default=False
        Copy never-written chunks as the fill value (they are then stored)
        instead of refusing the source.
    **storage_options
        fsspec options for a ``source`` or ``path`` URL.

    Returns
    -------
    Path or str
        The absolute path of the new store, or its URL.

    Raises
    ------
    MissingChunksError
        A source array has chunks that were never written.
    CorruptChunkError
        A source chunk could not be read or decoded.
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    import dask.array as da
    import zarr

    from .._passes import compute_pass
    from .._zarr import ZarrRowReader, stored_chunk_indices
    from ..exceptions import MissingChunksError

    kwargs: dict[str, Any] = {"storage_options": storage_options} if storage_options else {}
    try:
        node = zarr.open(store=absolute_path(source), mode="r", **kwargs)
    except FileNotFoundError:
        raise FileNotFoundError(f"No Zarr array or group at {os.fspath(source)!r}.") from None
    if name is not None:
        if not isinstance(node, zarr.Group) or not isinstance(node.get(name), zarr.Array):
            raise KeyError(f"No array {name!r} in the Zarr group {os.fspath(source)!r}.")
        members = [(name, node[name])]
    elif isinstance(node, zarr.Array):
        members = [("", node)]
    else:
        members = sorted(node.members(max_depth=None), key=lambda item: item[0])
    if not allow_missing_chunks:
        for _, array in members:
            if isinstance(array, zarr.Array) and (missing := stored_chunk_indices(array)[1]):
                raise MissingChunksError(
                    f"The Zarr array {array.store_path} has {len(missing)} missing chunk(s) "
                    f"(never written), first {missing[0]}: a copy would store the fill value "
                    "as data. Pass --allow-missing-chunks (allow_missing_chunks=True) to do so."
                )
    with atomic_store(path, overwrite, storage_options) as store:
        root = None if isinstance(node, zarr.Array) else zarr.open_group(store, mode="w")
        if root is not None:
            root.attrs.update(node.attrs.asdict())
        sources, targets = [], []
        for member, array in members:
            if isinstance(array, zarr.Group):
                assert root is not None  # only a group has groups as members
                root.create_group(member, attributes=array.attrs.asdict())
                continue
            shards = getattr(array, "shards", None)
            spec = dict(shape=array.shape, dtype=array.dtype, chunks=array.chunks, shards=shards,
                        fill_value=array.fill_value, attributes=array.attrs.asdict(),
                        dimension_names=getattr(array.metadata, "dimension_names", None),
                        compressors=checksummed_compressors(), config=WRITE_EVERY_CHUNK)
            target = (zarr.create_array(store, **spec) if root is None
                      else root.create_array(member, **spec))
            if array.ndim == 0:
                target[...] = ZarrRowReader(array)[...]
                continue
            # One task per stored chunk (a whole shard, if sharded: tasks writing parts
            # of one shard would overwrite each other's rows).
            sources.append(da.from_array(ZarrRowReader(array), chunks=shards or array.chunks,
                                         asarray=True, fancy=False, lock=False))
            targets.append(target)
        if sources:
            # dask annotates targets as numpy array-likes; it needs only __setitem__.
            stores = da.store(sources, targets, lock=False, compute=False)  # type: ignore[arg-type]
            compute_pass(stores, "gmm-rewrite")
    return output_location(path)
