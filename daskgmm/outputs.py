"""Outputs put in place atomically under one overwrite rule; predictions written to Zarr.

Every file and folder daskgmm writes is written under a temporary name beside
its destination and put in place only when complete (:func:`atomic_write_bytes`,
:func:`atomic_directory`). Without ``overwrite``, an existing destination is
refused twice: before any work (:func:`check_writable`, so that a job fails
fast) and at the moment the output is put in place (a hard link or a
no-replace rename, which fail if the name exists), so that an output which
appeared meanwhile is never replaced: of two runs racing for one destination,
exactly one wins.

Every local path is made absolute on the client (:func:`absolute_path`)
before anything is written: tasks run in the workers' working directories,
which are not the client's. fsspec URLs are kept as they are.

Temporary names say whose they are: ``.<name>.tmp-<host>-<pid>-<random>`` for
an output being written, ``.<name>.old-<host>-<pid>-<random>`` for a previous
output moved aside while its replacement is moved in. Before writing to a
destination (and in :func:`check_writable`), daskgmm removes the temporaries of
that destination left by dead processes of this host (:func:`remove_leftovers`),
and repairs a replacement that a kill interrupted: a dead run's aside copy is
moved back if nothing is at the destination (the new output never got there),
and deleted otherwise (the new output is in place).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .exceptions import OutputExistsError, OutputNotWritableError

if TYPE_CHECKING:  # dask and zarr are imported when used: model files and plots need neither
    import dask.array as da

# zarr skips chunks that are all fill value by default; a reader then cannot
# tell them from chunks that were lost. daskgmm stores every chunk.
WRITE_EVERY_CHUNK = {"write_empty_chunks": True}


def checksummed_compressors() -> tuple:
    """The codecs daskgmm writes with: Blosc LZ4 with byte shuffle, then a CRC32C
    checksum of each chunk.

    A fit reads its data once per EM iteration, so decoding speed matters
    more than the last few percent of size: on float64 mixture data, LZ4 with
    shuffle decodes a 16 MiB chunk in 14 ms against 38 ms for zstd level 1,
    at a similar ratio (1.06 vs 1.03).
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())


def _exists(path: Path) -> OutputExistsError:
    return OutputExistsError(
        f"{str(path)!r} exists; pass --overwrite (or output.overwrite: true) to replace it."
    )


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an fsspec URL (``scheme://...``) rather than a local path.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    return "://" in os.fspath(path)


def absolute_path(path: str | os.PathLike) -> str:
    """A local path made absolute against this process's working directory; a URL unchanged.

    Dask tasks run in the workers' working directories, which are not the
    client's: every local path is made absolute on the client, before a graph
    that reads or writes it is built. ``~`` is expanded.

    Parameters
    ----------
    path : str or os.PathLike
        A local path, or an fsspec URL (anything with ``://``), kept as it is.

    Returns
    -------
    str
    """
    text = os.fspath(path)
    if is_url(text):
        return text
    return os.path.abspath(os.path.expanduser(text))


# Temporary names beside a destination <name>: ".<name>.<kind>-<host>-<pid>-<8 hex digits>".
_TEMPORARY = re.compile(r"(?P<kind>tmp|old|probe)-(?P<host>.+)-(?P<pid>[0-9]+)-[0-9a-f]{8}")


def _host() -> str:
    return socket.gethostname() or "localhost"


def temporary_name(path: str | os.PathLike, kind: str = "tmp") -> Path:
    """A new name beside ``path`` that says whose it is: ``.<name>.<kind>-<host>-<pid>-<random>``.

    Parameters
    ----------
    path : str or os.PathLike
        The destination.
    kind : {'tmp', 'old', 'probe'}
        ``tmp``: an output being written; ``old``: a previous output moved
        aside while its replacement is moved in; ``probe``: a writability test.

    Returns
    -------
    Path
    """
    path = Path(absolute_path(path))
    return path.with_name(f".{path.name}.{kind}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _process_is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, and belongs to someone else
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove what dead runs of this host left beside ``path``; repair an interrupted replacement.

    The rule: a temporary (``tmp``, ``probe``) of a process of this host that
    no longer exists is deleted. A previous output that such a process had
    moved aside (``old``) is moved back to ``path`` if nothing is there (the
    run was killed between moving the old output aside and moving its new one
    in, so the new one is discarded), and deleted otherwise (the new output is
    in place). Names of live processes, of other hosts, and names that do not
    say their owner are left alone.

    Parameters
    ----------
    path : str or os.PathLike
        A local destination.

    Returns
    -------
    list of Path
        The names removed or moved back.
    """
    path = Path(absolute_path(path))
    prefix = f".{path.name}."
    try:
        entries = sorted(os.listdir(path.parent))
    except OSError:
        return []
    host, handled, asides = _host(), [], []
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry[len(prefix):]) if entry.startswith(prefix) else None
        if match is None or match["host"] != host or _process_is_alive(int(match["pid"])):
            continue
        if match["kind"] == "old":
            asides.append(path.parent / entry)
        else:
            _remove(path.parent / entry)
            handled.append(path.parent / entry)
    for old in asides:
        if not os.path.lexists(path):
            try:
                _rename_without_replacing(old, path)
                handled.append(old)
                continue
            except OSError:  # another run put something there meanwhile
                pass
        _remove(old)
        handled.append(old)
    return handled


def _check_folder_writable(path: Path) -> None:
    """Refuse, before any work, a destination whose folder cannot hold it."""
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent  # the folders that do not exist yet are made when writing
    if not folder.is_dir():
        raise OutputNotWritableError(
            f"Cannot write {str(path)!r}: {str(folder)!r} is not a folder."
        )
    probe = temporary_name(folder / path.name, "probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise OutputNotWritableError(
            f"Cannot write {str(path)!r}: cannot create files in {str(folder)!r} "
            f"({exc.strerror or exc})."
        ) from None


def check_writable(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse early, before any work, an output that could not be put in place.

    Leftovers of dead runs beside ``path`` are handled first
    (:func:`remove_leftovers`: an interrupted replacement is repaired, so an
    output restored by it counts as existing). Then an existing output is
    refused without ``overwrite``, and a destination whose folder is not a
    folder, or is one in which files cannot be created, is refused. URLs are
    not checked.

    Parameters
    ----------
    path : str or os.PathLike
        The output's destination.
    overwrite : bool
        Whether replacing an existing output was asked for.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    OutputNotWritableError
        The output could not be created there.
    """
    if is_url(path):
        return
    path = Path(absolute_path(path))
    remove_leftovers(path)
    if not overwrite and os.path.lexists(path):
        raise _exists(path)
    _check_folder_writable(path)


def atomic_write_bytes(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], *, overwrite: bool = True
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then put it in place.

    The file is flushed to disk before it is put in place, so a crash never
    leaves a partial file at ``path`` and never damages the previous one. A
    relative ``path`` is taken relative to the current directory.

    Parameters
    ----------
    path : str or os.PathLike
        The destination file.
    write : callable
        Writes the contents to the binary file it is given.
    overwrite : bool, default=True
        Replace a file at ``path``. If false, a file at ``path``, even one
        that appeared while this one was written, is kept and
        :class:`OutputExistsError` is raised.

    Returns
    -------
    Path
        The absolute destination.
    """
    path = Path(absolute_path(path))
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _put_file_in_place(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _put_file_in_place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Give the complete file ``tmp`` the name ``path``; without ``overwrite``, never replace one."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists, whatever appeared there meanwhile
    except FileExistsError:
        raise _exists(path) from None
    except OSError:  # a file system without hard links
        _rename_without_replacing(tmp, path)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Callable | None:
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library without it
        return None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    return renameat2


def _renameat2_noreplace(src: Path, dst: Path) -> bool:
    """Rename with Linux's ``renameat2(RENAME_NOREPLACE)``; False where the system lacks it."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # not supported by this kernel or file system
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


def _rename_without_replacing(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` (a file or folder) to ``path`` unless ``path`` exists (then refuse).

    Atomic where the system can rename without replacing (Linux); elsewhere
    a rename, which cannot replace a non-empty folder, after a check.
    """
    try:
        if _renameat2_noreplace(tmp, path):
            return
    except FileExistsError:
        raise _exists(path) from None
    if os.path.lexists(path):
        raise _exists(path)
    try:
        os.rename(tmp, path)  # cannot replace a non-empty folder
    except OSError:
        if os.path.lexists(path):
            raise _exists(path) from None
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it into place only if the block succeeds.

    The previous output at ``path`` is kept until the new one is complete: it
    is renamed aside, the new folder renamed into place, and only then
    deleted, so ``path`` never holds a partly written or partly deleted
    output; a kill between the two renames is repaired by the next run
    (:func:`remove_leftovers`). Without ``overwrite``, an output that
    appeared at ``path`` while the block ran is kept and
    :class:`OutputExistsError` is raised. A relative ``path`` is taken
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
            _remove(tmp)


def _put_directory_in_place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the complete folder ``tmp`` to ``path``; without ``overwrite``, never replace one."""
    if overwrite:
        _replace_directory(tmp, path)
    else:
        _rename_without_replacing(tmp, path)


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
    aside. Both are repaired by the next run (:func:`remove_leftovers`).
    """
    old = _move_aside(path)
    try:
        _move_in(tmp, path)
    except BaseException:
        if old is not None:
            try:
                _rename_without_replacing(old, path)  # put the previous output back
            except OSError:  # another run's output is in place: the old one is stale
                _remove(old)
        raise
    if old is not None:
        _remove(old)


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
) -> Path:
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
    into this store. Returns the absolute path of the store.
    """
    import dask.array as da
    import zarr

    from ._passes import compute_pass

    outputs = {"labels": model.predict(X)}
    if probabilities:
        outputs["probabilities"] = model.predict_proba(X)
    if log_likelihood:
        outputs["log_likelihood"] = model.score_samples(X)
    if shard_rows is None:
        outputs = {name: _regular_rows(array) for name, array in outputs.items()}
        inner_rows = None
    else:
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be at least 1, got {shard_rows}.")
        inner_rows = _largest_divisor_at_most(shard_rows, X.chunks[0][0])
        outputs = {name: array.rechunk({0: shard_rows}) for name, array in outputs.items()}
    with atomic_directory(path, overwrite) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        group.attrs.update({"producer": "daskgmm", "n_components": int(model.n_components)})
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
        compute_pass(da.store(list(outputs.values()), targets, lock=False, compute=False),
                     "gmm-predict-store")
    return Path(absolute_path(path))


def rewrite_with_checksums(
    source: str | os.PathLike,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    overwrite: bool = False,
    allow_missing_chunks: bool = False,
    **storage_options,
) -> Path:
    """Copy a Zarr array or group into a new store whose every chunk carries a CRC32C checksum.

    Chunk by chunk (one task per stored chunk, never the whole array): every
    array keeps its shape, dtype, chunks, shards, fill value, dimension names
    and attributes, and groups keep theirs; the chunks are encoded with
    :func:`checksummed_compressors` and every chunk is stored. The new store
    is written beside ``path`` and put in place as :func:`atomic_directory`
    does, so ``path`` may be ``source`` itself (with ``overwrite``).

    A checksum added now guards against corruption from now on: a chunk that
    was corrupted before, in a store without checksums, is copied as it
    decodes. A chunk that fails to read fails the rewrite.

    Parameters
    ----------
    source : str or os.PathLike
        The Zarr array or group: a local path or an fsspec URL.
    path : str or os.PathLike
        The new store (a local path).
    name : str, optional
        Copy only this array of the group ``source`` (into a group at ``path``).
    overwrite : bool, default=False
        Replace an existing store at ``path``.
    allow_missing_chunks : bool, default=False
        Copy never-written chunks as the fill value (they are then stored)
        instead of refusing the source.
    **storage_options
        fsspec options for a ``source`` URL.

    Returns
    -------
    Path
        The absolute path of the new store.

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

    from ._data import MissingChunksError, ZarrRowReader, stored_chunk_indices
    from ._passes import compute_pass

    kwargs = {"storage_options": storage_options} if storage_options else {}
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
    with atomic_directory(path, overwrite) as tmp:
        root = None if isinstance(node, zarr.Array) else zarr.open_group(str(tmp), mode="w")
        if root is not None:
            root.attrs.update(node.attrs.asdict())
        sources, targets = [], []
        for member, array in members:
            if isinstance(array, zarr.Group):
                root.create_group(member, attributes=array.attrs.asdict())
                continue
            shards = getattr(array, "shards", None)
            spec = dict(shape=array.shape, dtype=array.dtype, chunks=array.chunks, shards=shards,
                        fill_value=array.fill_value, attributes=array.attrs.asdict(),
                        dimension_names=getattr(array.metadata, "dimension_names", None),
                        compressors=checksummed_compressors(), config=WRITE_EVERY_CHUNK)
            target = (zarr.create_array(str(tmp), **spec) if root is None
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
            compute_pass(da.store(sources, targets, lock=False, compute=False), "gmm-rewrite")
    return Path(absolute_path(path))
