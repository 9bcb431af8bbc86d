"""``.npy`` input: a 2-D array file read memory-mapped, chunk by chunk, where the tasks run.

The reader holds only the file's path, shape and dtype: pickled into a task it
is a few hundred bytes (a ``numpy.memmap`` would be pickled with all its data),
and each chunk task maps the file and copies out its rows.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import absolute_path

if TYPE_CHECKING:
    import dask.array as da

NPY_SUFFIX = ".npy"


class NpyRowReader:
    """Array-like view of a ``.npy`` file for ``dask.array.from_array``.

    Parameters
    ----------
    path : str or os.PathLike
        A local ``.npy`` file (made absolute here: tasks run in the workers'
        directories).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = absolute_path(path)
        mapped = np.load(self.path, mmap_mode="r", allow_pickle=False)
        self.shape = mapped.shape
        self.dtype = mapped.dtype
        self.ndim = mapped.ndim

    def __getitem__(self, selection: Any) -> np.ndarray:
        mapped = np.load(self.path, mmap_mode="r", allow_pickle=False)
        if mapped.shape != self.shape or mapped.dtype != self.dtype:
            raise ValueError(f"{self.path}: the file now holds {mapped.shape} {mapped.dtype}, "
                             f"not the {self.shape} {self.dtype} it held when opened.")
        return np.array(mapped[selection])  # a copy: the map closes with this task


def open_npy(path: str | os.PathLike, chunk_rows: int | None = None) -> da.Array:
    """A 2-D ``.npy`` file as a dask array chunked by rows, read memory-mapped by the tasks.

    Parameters
    ----------
    path : str or os.PathLike
        The file (local; a relative path is the client's).
    chunk_rows : int, optional
        Rows per chunk; default about 32 MiB of rows.

    Returns
    -------
    dask.array.Array

    Raises
    ------
    ValueError
        Not a ``.npy`` file numpy reads without pickles (an object array,
        say), or not 2-D.
    TypeError
        A dtype that is not numeric or boolean.
    """
    import dask.array as da
    from dask.base import tokenize

    from ._zarr import read_rows

    try:
        reader = NpyRowReader(path)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a .npy file of numbers: {exc}") from None
    if reader.ndim != 2:
        raise ValueError(f"{reader.path}: a .npy input must be 2-D (samples, features), "
                         f"not of shape {reader.shape}.")
    if not (np.issubdtype(reader.dtype, np.number) or reader.dtype == np.bool_):
        raise TypeError(f"{reader.path}: dtype {reader.dtype} is not numeric.")
    if chunk_rows is None:
        row_bytes = max(reader.shape[1] * reader.dtype.itemsize, 1)
        chunk_rows = max(32 * 2**20 // row_bytes, 1)
    name = "npy-" + tokenize(reader.path, os.path.getmtime(reader.path), reader.shape,
                             str(reader.dtype))
    return da.from_array(reader, chunks=(chunk_rows, reader.shape[1]), name=name,
                         getitem=read_rows)
