"""Parquet input: the numeric columns of one or more Parquet files as a row-chunked dask array.

The chunks are the files' row groups (several small ones together), so their
lengths come from the files' footers, without reading any data. Each chunk is
one task that reads its row groups with pyarrow; like every module whose
functions run as tasks, this one imports neither dask.array nor pandas at
module level (pyarrow is imported by the task).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import absolute_path, is_url

if TYPE_CHECKING:
    import dask.array as da


@dataclass(frozen=True)
class RowGroups:
    """Consecutive row groups of one file: one chunk of the array."""

    file: str
    groups: tuple[int, ...]
    rows: int


def _filesystem(path: str, storage_options: dict[str, Any]):
    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **storage_options)
    return fs, root


def parquet_files(path: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The Parquet files at ``path`` (a file, or a folder of ``*.parquet`` files), sorted."""
    fs, root = _filesystem(path, storage_options or {})
    if not fs.exists(root):
        raise FileNotFoundError(f"No Parquet file or folder at {path!r}.")
    if fs.isdir(root):
        def hidden(file: str) -> bool:  # _SUCCESS, _temporary/..., .crc: not data
            below = file[len(root.rstrip("/")):].strip("/").split("/")
            return any(part.startswith(("_", ".")) for part in below)

        files = sorted(f for f in fs.find(root)
                       if f.endswith((".parquet", ".parq", ".pq")) and not hidden(f))
        if not files:
            raise FileNotFoundError(f"The folder {path!r} holds no *.parquet files.")
        return files
    return [root]


def read_row_groups(part: RowGroups, columns: tuple[str, ...], storage_options: dict[str, Any],
                    protocol: str | None, nulls_as_nan: bool = False) -> np.ndarray:
    """One chunk: ``part``'s row groups, ``columns`` in order, as a C-ordered float64 array.

    A null is refused, naming the file and column, unless ``nulls_as_nan``
    (for a model that marginalizes missing entries), which reads it as NaN.
    """
    import fsspec
    import pyarrow.parquet as pq

    fs = fsspec.filesystem(protocol or "file", **storage_options)
    with fs.open(part.file, "rb") as handle:
        table = pq.ParquetFile(handle).read_row_groups(list(part.groups), columns=list(columns))
    block = np.empty((table.num_rows, len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        column = table.column(name)
        if column.null_count and not nulls_as_nan:
            raise ValueError(
                f"{part.file}: column {name!r} has {column.null_count} null value(s) in row "
                f"groups {list(part.groups)}. To fit them as missing entries, use "
                "missing='marginalize' (and open_parquet(..., nulls_as_nan=True)).")
        if column.null_count:
            column = column.cast("float64").fill_null(float("nan"))
        block[:, j] = column.to_numpy(zero_copy_only=False)
    if block.shape[0] != part.rows:
        raise ValueError(f"{part.file}: row groups {part.groups} hold {block.shape[0]} rows, "
                         f"{part.rows} by the file's footer: the file changed while being read.")
    return block


def open_parquet(path: str | os.PathLike, columns: list[str] | None = None, *,
                 chunk_rows: int = 262_144, nulls_as_nan: bool = False,
                 **storage_options: Any) -> da.Array:
    """The numeric ``columns`` of Parquet data as a dask array chunked by rows.

    Parameters
    ----------
    path : str or os.PathLike
        A Parquet file, or a folder of them (read in name order); a local
        path (made absolute here, for the workers) or an fsspec URL.
    columns : list of str, optional
        The features, in this order. None: every column but a pandas index
        stored with the data; they must then all be numeric.
    chunk_rows : int, default=262,144
        Consecutive row groups of one file are put in one chunk until it
        would exceed this many rows; a larger row group is a chunk of its own.
    nulls_as_nan : bool, default=False
        Read nulls as NaN, the missing entries of ``missing='marginalize'``;
        otherwise a chunk with a null fails, naming the file and column.
    **storage_options
        fsspec options for a URL.

    Returns
    -------
    dask.array.Array
        float64, shape (rows, len(columns)), one chunk per group of row groups,
        lengths known from the files' footers (no data read).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``, or a folder without Parquet files.
    KeyError
        A column not in the files (the message lists theirs).
    TypeError
        A column that is not numeric or boolean (named, with its type).

    Notes
    -----
    A null in a feature column fails the chunk's task with a ``ValueError``
    naming the file, column and row groups.
    ValueError
        Files whose columns differ, or no rows.
    """
    import dask.array as da
    import pyarrow.parquet as pq
    import pyarrow.types as pat
    from dask._task_spec import Task
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    path = absolute_path(path)
    fs, _ = _filesystem(path, storage_options)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    files = parquet_files(path, storage_options)
    parts: list[RowGroups] = []
    chosen: tuple[str, ...] | None = None
    for file in files:
        with fs.open(file, "rb") as handle:
            meta = pq.ParquetFile(handle)
            schema = meta.schema_arrow
            row_groups = [meta.metadata.row_group(i).num_rows for i in range(meta.num_row_groups)]
        index = set((schema.pandas_metadata or {}).get("index_columns", []) if schema.metadata
                    and b"pandas" in schema.metadata else [])
        names = (tuple(columns) if columns is not None
                 else tuple(n for n in schema.names if n not in index))  # not the pandas index
        missing = [c for c in names if c not in schema.names]
        if missing:
            raise KeyError(f"{file}: no column {missing[0]!r}; its columns are {schema.names}.")
        for name in names:
            kind = schema.field(name).type
            if not (pat.is_integer(kind) or pat.is_floating(kind) or pat.is_boolean(kind)):
                raise TypeError(f"{file}: column {name!r} is {kind}, not numeric: choose the "
                                "feature columns with data.columns (or columns=).")
        if chosen is None:
            chosen = names
        elif names != chosen:
            raise ValueError(f"{file} has the columns {list(names)}, the first file "
                             f"{list(chosen)}: give data.columns (or columns=).")
        start, rows = 0, 0
        for i, n in enumerate(row_groups):
            if rows and rows + n > chunk_rows:
                parts.append(RowGroups(file, tuple(range(start, i)), rows))
                start, rows = i, 0
            rows += n
        if rows:
            parts.append(RowGroups(file, tuple(range(start, len(row_groups))), rows))
    if not parts or chosen is None:
        raise ValueError(f"The Parquet data at {path!r} have no rows.")
    name = "parquet-" + tokenize(path, files, chosen, [(p.file, p.groups) for p in parts],
                                 [fs.modified(f) if not is_url(path) else None for f in files],
                                 nulls_as_nan)
    layer: dict[Any, Any] = {(name, i, 0): Task((name, i, 0), read_row_groups, part, chosen, storage_options,
                                protocol, nulls_as_nan)
             for i, part in enumerate(parts)}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
    chunks = (tuple(p.rows for p in parts), (len(chosen),))
    return da.Array(graph, name, chunks, dtype=np.float64)
