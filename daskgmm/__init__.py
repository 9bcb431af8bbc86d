"""daskgmm: Gaussian mixture models fitted by EM on data larger than memory.

The public names are imported on first use (PEP 562): a dask worker that
unpickles a task function from ``daskgmm._em`` then imports the kernels and
numpy only, not the estimator and scikit-learn (about 60 MiB and 2 s per
worker process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "BayesianGaussianMixture": ".bayesian",
    "Checkpoint": ".checkpoints",
    "CheckpointDataError": ".exceptions",
    "CheckpointMismatchError": ".exceptions",
    "CheckpointParamsError": ".exceptions",
    "ClusterConnectionError": ".exceptions",
    "ConfigError": ".exceptions",
    "CorruptChunkError": ".exceptions",
    "DegenerateComponentError": ".exceptions",
    "GaussianMixture": ".estimator",
    "IterationInfo": "._em",
    "MissingChunksError": ".exceptions",
    "ModelFileError": ".exceptions",
    "NoWorkersError": ".exceptions",
    "NonFiniteError": ".exceptions",
    "OutputError": ".exceptions",
    "OutputExistsError": ".exceptions",
    "OutputNotWritableError": ".exceptions",
    "ProgressLog": ".callbacks",
    "SmallChunksWarning": ".exceptions",
    "WorkerLostError": ".exceptions",
    "fit_many": ".estimator",
    "load_model": ".model_files",
    "open_npy": "._npy",
    "open_parquet": "._parquet",
    "open_zarr_array": "._zarr",
    "save_model": ".model_files",
}

__all__ = [
    "BayesianGaussianMixture",
    "Checkpoint",
    "CheckpointDataError",
    "CheckpointMismatchError",
    "CheckpointParamsError",
    "ClusterConnectionError",
    "ConfigError",
    "CorruptChunkError",
    "DegenerateComponentError",
    "GaussianMixture",
    "IterationInfo",
    "MissingChunksError",
    "ModelFileError",
    "NoWorkersError",
    "NonFiniteError",
    "OutputError",
    "OutputExistsError",
    "OutputNotWritableError",
    "ProgressLog",
    "SmallChunksWarning",
    "WorkerLostError",
    "fit_many",
    "load_model",
    "open_npy",
    "open_parquet",
    "open_zarr_array",
    "save_model",
    "__version__",
]

if TYPE_CHECKING:
    from ._em import IterationInfo
    from ._npy import open_npy
    from ._parquet import open_parquet
    from ._zarr import open_zarr_array
    from .bayesian import BayesianGaussianMixture
    from .callbacks import ProgressLog
    from .checkpoints import Checkpoint
    from .estimator import GaussianMixture, fit_many
    from .exceptions import (
        CheckpointDataError,
        CheckpointMismatchError,
        CheckpointParamsError,
        ClusterConnectionError,
        ConfigError,
        CorruptChunkError,
        DegenerateComponentError,
        MissingChunksError,
        ModelFileError,
        NonFiniteError,
        NoWorkersError,
        OutputError,
        OutputExistsError,
        OutputNotWritableError,
        SmallChunksWarning,
        WorkerLostError,
    )
    from .model_files import load_model, save_model


def __getattr__(name: str) -> Any:
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'daskgmm' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
