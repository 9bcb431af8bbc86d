"""Synthetic Gaussian-mixture data written to Zarr chunk by chunk.

The data set can be larger than memory: each chunk of rows is drawn from
its own random stream (keyed by the seed and the chunk's index) and written
before the next is drawn. The true parameters and labels are stored beside
the data, and every chunk carries a checksum.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .outputs import WRITE_EVERY_CHUNK, atomic_store, checksummed_compressors, output_location


@dataclass(frozen=True)
class MixtureSpec:
    """The true parameters of a synthetic mixture."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


def random_mixture(
    n_features: int, n_components: int, separation: float, seed: int
) -> MixtureSpec:
    """Random weights, means ``separation`` standard deviations apart on average, and full covariances.

    Parameters
    ----------
    n_features : int
        Dimension of the data.
    n_components : int
        Number of mixture components.
    separation : float
        Standard deviation of the normal distribution the means are drawn
        from (centred on the origin); the covariances are of order one.
    seed : int
        Seeds the draw, from a stream (``[seed, 2**31]``) apart from the
        chunks' own streams.

    Returns
    -------
    MixtureSpec
        ``weights`` (n_components,) drawn from a symmetric Dirichlet(5),
        ``means`` (n_components, n_features), and ``covariances``
        (n_components, n_features, n_features), each ``A @ A.T / n_features +
        0.5 * I`` for a standard normal ``A``, so positive definite.
    """
    rng = np.random.default_rng([seed, 2**31])
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.normal(scale=separation, size=(n_components, n_features))
    a = rng.normal(size=(n_components, n_features, n_features))
    covariances = np.einsum("kij,klj->kil", a, a) / n_features + 0.5 * np.eye(n_features)
    return MixtureSpec(weights, means, covariances)


def draw_rows(spec: MixtureSpec, n_rows: int, rng: np.random.Generator):
    """Rows of the mixture and their component labels.

    Parameters
    ----------
    spec : MixtureSpec
        The mixture to draw from.
    n_rows : int
        Number of rows to draw.
    rng : numpy.random.Generator
        The random stream to draw from (consumed).

    Returns
    -------
    rows : ndarray of shape (n_rows, n_features)
        float64 rows, each drawn from the normal distribution of its component.
    labels : ndarray of shape (n_rows,)
        The index of each row's component, drawn with probabilities ``spec.weights``.
    """
    labels = rng.choice(spec.weights.size, size=n_rows, p=spec.weights)
    chol = np.linalg.cholesky(spec.covariances)
    z = rng.standard_normal(size=(n_rows, spec.means.shape[1]))
    rows = spec.means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
    return rows, labels


def make_mixture_zarr(
    path: str | os.PathLike,
    n_samples: int,
    n_features: int,
    n_components: int,
    *,
    separation: float = 4.0,
    offset: float = 0.0,
    dtype: str = "float64",
    chunk_rows: int = 100_000,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int], Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    missing_fraction: float = 0.0,
) -> Path | str:
    """Write a synthetic Gaussian mixture to a Zarr group, chunk by chunk.

    The group holds ``X`` (n_samples, n_features), ``labels`` (n_samples,),
    and the true ``weights``, ``means`` and ``covariances``. It is written to
    a temporary folder beside ``path`` and moved into place when complete
    (:func:`daskgmm.jobs.outputs.atomic_directory`), so an interrupted run never
    leaves a partial data set at ``path``, and a data set it replaces is
    deleted only once the new one is in place.

    Parameters
    ----------
    path : str or os.PathLike
        The new Zarr group: a local folder (a relative path is taken relative
        to the current directory) or an fsspec URL (``s3://``), written
        under a staging prefix and published whole
        (:func:`daskgmm.jobs.outputs.atomic_store`).
    n_samples, n_features, n_components : int
    separation : float
        Scale of the random means relative to unit-scale covariances.
    offset : float
        Added to every value (data far from the origin test the numerics).
    dtype : str
        dtype of ``X``.
    chunk_rows : int
        Rows per chunk (all columns in one chunk).
    seed : int
    overwrite : bool
        Replace an existing data set at ``path``; otherwise refuse with
        :class:`daskgmm.exceptions.OutputExistsError` (a ``FileExistsError``).
    progress : callable, optional
        Called with the number of rows of each chunk once it is written.
    storage_options : dict, optional
        fsspec options for a URL ``path`` (endpoint, credentials).
    missing_fraction : float, default=0.0
        Set this fraction of the entries of ``X`` to NaN, completely at
        random (drawn per chunk from ``seed``); the true labels are kept.

    Returns
    -------
    Path or str
        The absolute path of the store, or its URL.
    """
    if min(n_samples, n_features, n_components, chunk_rows) < 1:
        raise ValueError("n_samples, n_features, n_components and chunk_rows must be positive.")
    if not 0.0 <= missing_fraction < 1.0:
        raise ValueError(f"missing_fraction must be in [0, 1), got {missing_fraction}.")
    spec = random_mixture(n_features, n_components, separation, seed)
    with atomic_store(path, overwrite, storage_options) as store:
        group = zarr.open_group(store, mode="w")
        group.attrs.update({"n_components": n_components, "seed": seed,
                            "separation": separation, "offset": offset,
                            "missing_fraction": missing_fraction})
        for name, value in (("weights", spec.weights), ("means", spec.means + offset),
                            ("covariances", spec.covariances)):
            group.create_array(name, data=value, compressors=checksummed_compressors(),
                               config=WRITE_EVERY_CHUNK)
        X = group.create_array("X", shape=(n_samples, n_features), dtype=dtype,
                               chunks=(chunk_rows, n_features), compressors=checksummed_compressors(),
                               config=WRITE_EVERY_CHUNK)
        labels = group.create_array("labels", shape=(n_samples,), dtype="int32",
                                    chunks=(chunk_rows,), compressors=checksummed_compressors(),
                                    config=WRITE_EVERY_CHUNK)
        for i, start in enumerate(range(0, n_samples, chunk_rows)):
            stop = min(start + chunk_rows, n_samples)
            rows, lab = draw_rows(spec, stop - start, np.random.default_rng([seed, i]))
            rows = rows + offset
            if missing_fraction:
                holes = np.random.default_rng([seed, i, 1]).random(rows.shape) < missing_fraction
                rows[holes] = np.nan
            X[start:stop] = rows.astype(dtype)
            labels[start:stop] = lab
            if progress is not None:
                progress(stop - start)
    return output_location(path)
