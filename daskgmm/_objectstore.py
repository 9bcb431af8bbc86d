"""Outputs at fsspec URLs (object stores such as ``s3://``): put in place whole, never a mix.

An object store has no rename, so the local rule of :mod:`daskgmm._files`
(write beside the destination, rename into place) becomes:

- **One file** (a model file) is one PUT, which an object store applies
  whole: the object is the old one or the new one (:func:`put_object`).
  Without ``overwrite`` it is a conditional PUT (``If-None-Match``), so an
  object that appeared meanwhile is refused, never replaced.
- **A Zarr store** is written under a staging prefix beside its destination,
  ``.<name>.tmp-<host>-<pid>-<random>`` (:func:`atomic_prefix`). Only when it
  is complete is it published, under a claim: ``.<name>.publishing``,
  created exclusively, so that of two runs publishing to one destination one
  waits for nothing and the other is refused. Publishing deletes the previous
  store's metadata documents (``zarr.json``) first, so that no reader can
  open a mix of old and new chunks; then copies the new chunks, deletes the
  previous store's other objects, copies the arrays' metadata and the root's
  last. A reader opening the destination sees the previous store, no store
  (during the copy), or the new one. The claim and the staging prefix are
  deleted afterwards.

The previous store is touched only once the new one is complete. If
publishing fails part way (the connection drops), the destination has no
root metadata (it cannot be opened, so it cannot be misread) and the new
store stays complete at its staging prefix; the error names it. A run
killed part way leaves its claim and staging prefix: the next run to write
that destination from the same host finishes the dead run's publishing if
the staged store was complete, and deletes the leftovers otherwise
(:func:`remove_leftovers`). Leftovers of other hosts are left alone, since
this host cannot tell whether their processes live; a claim of another host
refuses the destination with a message naming the claim to delete.

Exclusive creation needs a store that honours conditional writes (AWS S3
since 2024, MinIO, moto, fsspec's memory and local file systems).
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ._files import _TEMPORARY, _host, _process_is_alive, atomic_write_bytes, is_url
from .exceptions import OutputError, OutputExistsError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem
    from zarr.storage import FsspecStore

#: The extra of daskgmm that installs the fsspec filesystem of a URL scheme.
URL_EXTRAS = {"s3": "s3", "s3a": "s3"}

_METADATA = "zarr.json"


def missing_filesystem_message(url: str, exc: ImportError, doing: str = "Reading") -> str:
    """Say which extra installs the filesystem of ``url``'s scheme.

    Parameters
    ----------
    url : str
    exc : ImportError
        fsspec's error.
    doing : str
        ``"Reading"`` or ``"Writing"``, to begin the message.

    Returns
    -------
    str
    """
    scheme = url.split("://", 1)[0]
    extra = URL_EXTRAS.get(scheme)
    install = (f"pip install 'daskgmm[{extra}]'" if extra
               else f"install the fsspec implementation for {scheme}:// URLs")
    return f"{doing} {url!r} needs a package that is not installed ({exc}): {install}."


def filesystem(url: str, storage_options: dict[str, Any] | None = None,
               doing: str = "Writing") -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of ``url`` and the path inside it.

    Parameters
    ----------
    url : str
        An fsspec URL.
    storage_options : dict, optional
        The filesystem's options (endpoint, credentials).
    doing : str
        ``"Reading"`` or ``"Writing"``, for the message of a missing package.

    Returns
    -------
    fs : fsspec.AbstractFileSystem
    path : str
        ``url`` without its scheme, with no trailing slash.

    Raises
    ------
    ImportError
        The URL's filesystem is not installed; the message names the extra.
    """
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        raise ImportError(missing_filesystem_message(url, exc, doing)) from exc
    return fs, path.rstrip("/")


def _exists(url: str) -> OutputExistsError:
    return OutputExistsError(
        f"{url!r} exists; pass --overwrite (or output.overwrite: true) to replace it."
    )


def put_object(url: str, data: bytes, *, overwrite: bool,
               storage_options: dict[str, Any] | None = None) -> None:
    """Store ``data`` as the object at ``url`` in one PUT; without ``overwrite``, never replace one.

    Parameters
    ----------
    url : str
    data : bytes
    overwrite : bool
        Replace an object at ``url``; otherwise refuse it, even one that
        appeared while ``data`` was being made.
    storage_options : dict, optional

    Raises
    ------
    OutputExistsError
        An object is at ``url`` and ``overwrite`` is false.
    """
    fs, path = filesystem(url, storage_options)
    if not overwrite and fs.exists(path):
        raise _exists(url)  # fail before the upload, and on stores that ignore If-None-Match
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    try:
        fs.pipe_file(path, data, mode="overwrite" if overwrite else "create")
    except FileExistsError:
        raise _exists(url) from None


def write_file(path: str | os.PathLike, write: Callable[[BinaryIO], object], *,
               overwrite: bool, storage_options: dict[str, Any] | None = None) -> Path | str:
    """Write a file whole: at a local path by :func:`daskgmm._files.atomic_write_bytes`, at an
    fsspec URL in one PUT (:func:`put_object`).

    Parameters
    ----------
    path : str or os.PathLike
    write : callable
        Writes the contents to the binary file it is given.
    overwrite : bool
        Replace a file at ``path``; otherwise refuse it, even one that appeared meanwhile.
    storage_options : dict, optional
        fsspec options for a URL.

    Returns
    -------
    Path or str
        The absolute path, or the URL.
    """
    if not is_url(path):
        return atomic_write_bytes(path, write, overwrite=overwrite)
    buffer = io.BytesIO()
    write(buffer)
    put_object(os.fspath(path), buffer.getvalue(), overwrite=overwrite,
               storage_options=storage_options)
    return os.fspath(path)


def get_object(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """The bytes of the object at ``url``.

    Raises
    ------
    FileNotFoundError
        No object is at ``url``.
    """
    fs, path = filesystem(url, storage_options, doing="Reading")
    return fs.cat_file(path)


def check_writable(url: str, overwrite: bool,
                   storage_options: dict[str, Any] | None = None) -> None:
    """Refuse early, before any work, a store at ``url`` that exists (without ``overwrite``).

    Leftovers of dead runs of this host are handled first
    (:func:`remove_leftovers`).

    Raises
    ------
    OutputExistsError
    """
    fs, path = filesystem(url, storage_options)
    fs.invalidate_cache()
    remove_leftovers(fs, path)
    if not overwrite and _holds_objects(fs, path):
        raise _exists(url)


def _holds_objects(fs: AbstractFileSystem, path: str) -> bool:
    if fs.isfile(path):
        return True
    try:
        return bool(fs.find(path, maxdepth=None, withdirs=False))
    except FileNotFoundError:
        return False


def _sibling(path: str, suffix: str) -> str:
    parent, name = posixpath.split(path)
    return posixpath.join(parent, f".{name}.{suffix}")


def _claim_path(path: str) -> str:
    return _sibling(path, "publishing")


@contextmanager
def atomic_prefix(url: str, overwrite: bool,
                  storage_options: dict[str, Any] | None = None) -> Iterator[FsspecStore]:
    """Yield a Zarr store at a staging prefix beside ``url``; publish it there if the block succeeds.

    See the module's docstring for the protocol.

    Parameters
    ----------
    url : str
        The destination store, an fsspec URL.
    overwrite : bool
        Replace a store at ``url``; otherwise refuse, before the block runs
        and again, under the claim, when the new store is published.
    storage_options : dict, optional
        The filesystem's options (endpoint, credentials).

    Yields
    ------
    zarr.storage.FsspecStore
        The empty, writable staging store.

    Raises
    ------
    OutputExistsError
        A store is at ``url`` and ``overwrite`` is false, or another run is
        publishing to ``url``.
    """
    from zarr.storage import FsspecStore

    fs, path = filesystem(url, storage_options)
    check_writable(url, overwrite, storage_options)
    staging = _sibling(path, f"tmp-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    scheme = url.split("://", 1)[0]
    try:
        yield FsspecStore.from_url(f"{scheme}://{staging}", storage_options=storage_options or {},
                                   read_only=False)
    except BaseException:
        _remove_quietly(fs, staging)
        raise
    _publish(fs, staging, path, overwrite, url)
    _remove_prefix(fs, staging)


def _read_claim(fs: AbstractFileSystem, path: str) -> dict | None:
    try:
        claim = json.loads(fs.cat_file(_claim_path(path)))
    except FileNotFoundError:
        return None
    except ValueError:  # not ours: someone else's object under our name
        return {}
    return claim if isinstance(claim, dict) else {}


def _claim(fs: AbstractFileSystem, path: str, staging: str, url: str) -> None:
    body = json.dumps({"host": _host(), "pid": os.getpid(), "staging": staging}).encode()
    try:
        fs.pipe_file(_claim_path(path), body, mode="create")
    except FileExistsError:
        claim = _read_claim(fs, path) or {}
        raise OutputExistsError(
            f"Another run (host {claim.get('host')!r}, process {claim.get('pid')}) is publishing "
            f"to {url!r}. If that run is dead, delete {_claim_path(path)!r} and run again."
        ) from None


def _publish(fs: AbstractFileSystem, staging: str, path: str, overwrite: bool, url: str) -> None:
    """Put the complete store at ``staging`` in place of ``path``, under an exclusive claim.

    Refused (the staged store deleted) if another run holds the claim, or,
    without ``overwrite``, if a store is at ``path``. If the copy fails part
    way, the claim and the staged store are kept, for the error's reader and
    for :func:`remove_leftovers` of the next run.
    """
    fs.invalidate_cache()
    try:
        _claim(fs, path, staging, url)
        if not overwrite and _holds_objects(fs, path):
            fs.rm_file(_claim_path(path))
            raise _exists(url)
    except BaseException:
        _remove_quietly(fs, staging)
        raise
    try:
        _copy_store(fs, staging, path)
    except Exception as exc:
        raise OutputError(
            f"Publishing the new store to {url!r} failed part way ({exc}); the destination "
            f"cannot be opened now, and the new store is complete at {staging!r}."
        ) from exc
    fs.rm_file(_claim_path(path))


def _copy_store(fs: AbstractFileSystem, staging: str, path: str) -> None:
    """Replace the store at ``path`` by the one at ``staging``: metadata gone first, root's back last."""
    new = sorted(posixpath.relpath(p, staging) for p in fs.find(staging, withdirs=False))
    old = []
    if fs.exists(path):
        old = sorted(posixpath.relpath(p, path) for p in fs.find(path, withdirs=False))
    is_metadata = lambda key: posixpath.basename(key) == _METADATA  # noqa: E731
    old_metadata = [posixpath.join(path, key) for key in old if is_metadata(key)]
    # The root's metadata first: from here on nobody can open the old store.
    for doc in sorted(old_metadata, key=lambda p: p.count("/")):
        fs.rm_file(doc)
    chunks = [key for key in new if not is_metadata(key)]
    if chunks:
        fs.copy([posixpath.join(staging, k) for k in chunks], [posixpath.join(path, k) for k in chunks])
    stale = sorted(set(old) - set(new) - {key for key in old if is_metadata(key)})
    if stale:
        fs.rm([posixpath.join(path, key) for key in stale])
    # The deepest metadata first, the root's last: the store opens only when it is whole.
    for key in sorted((k for k in new if is_metadata(k)), key=lambda k: -k.count("/")):
        fs.copy(posixpath.join(staging, key), posixpath.join(path, key))


def _remove_prefix(fs: AbstractFileSystem, prefix: str) -> None:
    try:
        fs.rm(prefix, recursive=True)
    except FileNotFoundError:
        pass


def _remove_quietly(fs: AbstractFileSystem, prefix: str) -> None:
    """Delete a staging prefix after a failure, which must stay the error reported."""
    try:
        _remove_prefix(fs, prefix)
    except Exception:  # noqa: BLE001 (the store may be what failed)
        pass


def remove_leftovers(fs: AbstractFileSystem, path: str) -> list[str]:
    """Remove what dead runs of this host left beside ``path``; finish an interrupted publish.

    A claim of a dead process of this host whose staged store is complete
    (it has its root metadata) is finished: the staged store is published.
    Other claims and staging prefixes of dead processes of this host are
    deleted. Those of live processes and of other hosts are left alone.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
    path : str
        The destination, without its scheme.

    Returns
    -------
    list of str
        The paths removed (or published).
    """
    parent, name = posixpath.split(path)
    handled = []
    claim = _read_claim(fs, path)
    if claim and claim.get("host") == _host() and not _process_is_alive(int(claim.get("pid", 0))):
        staging = claim.get("staging")
        ours = f".{name}.tmp-"  # a claim names its own staging prefix; never delete anything else
        if (isinstance(staging, str) and posixpath.dirname(staging) == parent
                and posixpath.basename(staging).startswith(ours)):
            if fs.isfile(posixpath.join(staging, _METADATA)):  # complete: publish it
                _copy_store(fs, staging, path)
            _remove_prefix(fs, staging)
            handled.append(staging)
        fs.rm_file(_claim_path(path))
        handled.append(_claim_path(path))
    prefix = f".{name}."
    try:
        entries = fs.ls(parent, detail=False) if parent else []
    except FileNotFoundError:
        entries = []
    for entry in entries:
        base = posixpath.basename(entry.rstrip("/"))
        match = _TEMPORARY.fullmatch(base[len(prefix):]) if base.startswith(prefix) else None
        if match is None or match["host"] != _host() or _process_is_alive(int(match["pid"])):
            continue
        _remove_prefix(fs, entry)
        handled.append(entry)
    return handled
