"""Files the library writes: absolute paths, owner-named temporaries, atomic writes.

Every file daskgmm writes is written under a temporary name beside its
destination and put in place only when complete (:func:`atomic_write_bytes`).
Without ``overwrite``, an existing destination is refused twice: before any
work (:func:`check_writable`, so that a job fails fast) and at the moment the
output is put in place (a hard link or a no-replace rename, which fail if the
name exists), so that an output which appeared meanwhile is never replaced: of
two runs racing for one destination, exactly one wins.

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

Folders (Zarr stores) are put in place by :func:`daskgmm.jobs.outputs.atomic_directory`
under the same rule, with the primitives here.
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
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .exceptions import OutputExistsError, OutputNotWritableError


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


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree at ``path``; nothing if there is none.

    Parameters
    ----------
    path : Path
    """
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
            remove_path(path.parent / entry)
            handled.append(path.parent / entry)
    for old in asides:
        if not os.path.lexists(path):
            try:
                rename_without_replacing(old, path)
                handled.append(old)
                continue
            except OSError:  # another run put something there meanwhile
                pass
        remove_path(old)
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
    if is_url(path):  # a Path would make it a local name such as "s3:/bucket/..."
        raise OutputNotWritableError(
            f"{os.fspath(path)!r} is a URL; this file is written to local paths only."
        )
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
        rename_without_replacing(tmp, path)


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


def rename_without_replacing(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` (a file or folder) to ``path`` unless ``path`` exists (then refuse).

    Atomic where the system can rename without replacing (Linux); elsewhere
    a rename, which cannot replace a non-empty folder, after a check.

    Parameters
    ----------
    tmp : Path
        The complete file or folder.
    path : Path
        Its destination.

    Raises
    ------
    OutputExistsError
        Something is at ``path``, or appeared there during the rename.
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
