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

from .synthetic import checksummed_compressors


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


def write_predictions(
    model,
    X: da.Array,
    path: str | os.PathLike,
    *,
    probabilities: bool = False,
    log_likelihood: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``labels`` (and optionally ``probabilities``, ``log_likelihood``) to a Zarr group.

    One pass over ``X``: the arrays are computed together, chunk by chunk, with
    chunks aligned to ``X``'s rows. Written to a temporary store and moved into
    place when complete; every chunk carries a checksum.
    """
    outputs = {"labels": model.predict(X)}
    if probabilities:
        outputs["probabilities"] = model.predict_proba(X)
    if log_likelihood:
        outputs["log_likelihood"] = model.score_samples(X)
    outputs = {name: _regular_rows(array) for name, array in outputs.items()}
    with atomic_directory(path, overwrite) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        group.attrs.update({"producer": "daskgmm", "n_components": int(model.n_components)})
        targets = []
        for name, array in outputs.items():
            chunks = tuple(c[0] for c in array.chunks)
            targets.append(group.create_array(name, shape=array.shape, dtype=array.dtype,
                                              chunks=chunks, compressors=checksummed_compressors()))
        # One graph for all outputs, so each chunk of X is read once for all of them.
        dask.compute(da.store(list(outputs.values()), targets, lock=False, compute=False))
    return Path(path)
