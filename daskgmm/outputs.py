"""Predictions written to Zarr out-of-core, chunk-aligned, checksummed and atomically."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import dask.array as da
import zarr

from .synthetic import WRITE_EVERY_CHUNK, checksummed_compressors


class OutputExistsError(FileExistsError):
    """The destination exists and overwriting was not asked for."""


def check_writable(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse early, before any work, to replace an output without ``overwrite``."""
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(
            f"{str(path)!r} exists; pass --overwrite (or output.overwrite: true) to replace it."
        )


@contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it into place only if the block succeeds.

    The previous output at ``path`` is kept until the new one is complete.
    """
    path = Path(path)
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
    """
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
        dask.compute(da.store(list(outputs.values()), targets, lock=False, compute=False))
    return Path(path)
