"""Model files and checkpoints: one ``.npz`` file, no pickle, written atomically.

Format (version 1)
------------------
A numpy ``.npz`` archive (a zip of ``.npy`` arrays) read with
``allow_pickle=False``, so loading never runs code. It holds:

``__metadata__``
    uint8 array of UTF-8 JSON: ``format`` ("daskgmm-model"), ``format_version``,
    ``estimator`` ("daskgmm.GaussianMixture"), ``params`` (hyper-parameters),
    ``fitted`` (``converged_``, ``n_iter_``, ``lower_bound_``,
    ``n_features_in_``), ``versions`` (daskgmm and its dependencies) and,
    in checkpoints, ``checkpoint`` (iteration state).
``weights``, ``means``, ``covariances``, ``precisions_cholesky``, ``lower_bounds``
    float64 arrays, shaped as the fitted attributes.

Files are written to a temporary name in the destination folder, flushed,
then renamed over the destination, so a crash never leaves a partial file
and never damages the previous good one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "daskgmm-model"
FORMAT_VERSION = 1
ESTIMATOR = "daskgmm.GaussianMixture"
_ARRAYS = ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds")
_JSON_PARAMS = (
    "n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init", "init_params",
    "random_state", "warm_start", "verbose", "verbose_interval", "split_every", "persist",
    "chunk_size",
)


class ModelFileError(ValueError):
    """A model file is not a daskgmm model, is corrupt, or is of a newer format."""


def dependency_versions() -> dict[str, str]:
    """Versions of daskgmm and the libraries a fit depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("daskgmm", "dask", "distributed", "numpy", "scipy", "zarr", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def atomic_write_bytes(path: str | os.PathLike, write) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is as readable as any
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_param(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    raise TypeError  # a RandomState instance, say: not stored


def model_arrays_and_metadata(model, extra: dict | None = None) -> tuple[dict, dict]:
    """The arrays and metadata that describe a fitted ``GaussianMixture``."""
    params = {}
    for name in _JSON_PARAMS:
        try:
            params[name] = _json_param(getattr(model, name))
        except TypeError:
            params[name] = None
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": ESTIMATOR,
        "params": params,
        "fitted": {
            "converged_": bool(model.converged_),
            "n_iter_": int(model.n_iter_),
            "lower_bound_": float(model.lower_bound_),
            "n_features_in_": int(model.n_features_in_),
        },
        "versions": dependency_versions(),
        **(extra or {}),
    }
    arrays = {
        "weights": model.weights_,
        "means": model.means_,
        "covariances": model.covariances_,
        "precisions_cholesky": model.precisions_cholesky_,
        "lower_bounds": np.asarray(model.lower_bounds_, dtype=np.float64),
    }
    return arrays, metadata


def write_model_file(path: str | os.PathLike, arrays: dict, metadata: dict) -> Path:
    """Write arrays and JSON metadata as one ``.npz``, atomically."""
    blob = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
    payload = {"__metadata__": blob, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}}
    return atomic_write_bytes(path, lambda f: np.savez(f, **payload))


def read_model_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read and check a model file; never unpickles.

    Raises
    ------
    FileNotFoundError
    ModelFileError
        Not a daskgmm model file, corrupt, or a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {str(path)!r}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"{str(path)!r} is not a readable daskgmm model file: {exc}") from None
    if "__metadata__" not in contents:
        raise ModelFileError(f"{str(path)!r} is not a daskgmm model file (no metadata).")
    try:
        metadata = json.loads(contents.pop("__metadata__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{str(path)!r} has corrupt metadata: {exc}") from None
    if metadata.get("format") != FORMAT or metadata.get("estimator") != ESTIMATOR:
        raise ModelFileError(
            f"{str(path)!r} holds {metadata.get('estimator')!r} in format "
            f"{metadata.get('format')!r}, not a {ESTIMATOR} model."
        )
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} is model format version {version}; this daskgmm reads versions up to "
            f"{FORMAT_VERSION}. Upgrade daskgmm to load it."
        )
    missing = [name for name in _ARRAYS if name not in contents]
    if missing:
        raise ModelFileError(f"{str(path)!r} lacks the arrays {missing}.")
    return contents, metadata


def save_model(model, path: str | os.PathLike) -> Path:
    """Save a fitted :class:`daskgmm.GaussianMixture` to ``path`` (a ``.npz`` file), atomically.

    Parameters
    ----------
    model : GaussianMixture
        A fitted model.
    path : str or os.PathLike

    Returns
    -------
    Path
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    arrays, metadata = model_arrays_and_metadata(model)
    return write_model_file(path, arrays, metadata)


def model_from_contents(arrays: dict, metadata: dict):
    """A fitted ``GaussianMixture`` from the arrays and metadata of a model file."""
    from ._kernels import precisions_from_cholesky
    from .estimator import GaussianMixture

    params = {k: v for k, v in metadata["params"].items() if k in GaussianMixture().get_params()}
    model = GaussianMixture(**params)
    fitted = metadata["fitted"]
    model.weights_ = arrays["weights"]
    model.means_ = arrays["means"]
    model.covariances_ = arrays["covariances"]
    model.precisions_cholesky_ = arrays["precisions_cholesky"]
    model.precisions_ = precisions_from_cholesky(model.precisions_cholesky_, model.covariance_type)
    model.converged_ = bool(fitted["converged_"])
    model.n_iter_ = int(fitted["n_iter_"])
    model.lower_bound_ = float(fitted["lower_bound_"])
    model.lower_bounds_ = [float(v) for v in arrays["lower_bounds"]]
    model.n_features_in_ = int(fitted["n_features_in_"])
    return model


def load_model(path: str | os.PathLike):
    """Load a model saved by :func:`save_model`. Runs no code from the file (no pickle).

    Returns
    -------
    GaussianMixture
    """
    arrays, metadata = read_model_file(path)
    return model_from_contents(arrays, metadata)


def model_summary(path: str | os.PathLike) -> dict:
    """What a model file holds, as a JSON-able dict (for ``daskgmm info``)."""
    arrays, metadata = read_model_file(path)
    summary = {k: metadata[k] for k in ("format", "format_version", "estimator", "params",
                                        "fitted", "versions")}
    summary["arrays"] = {name: list(a.shape) for name, a in arrays.items()}
    summary["weights"] = [round(float(w), 6) for w in arrays["weights"]]
    for key in ("checkpoint", "selection"):
        if key in metadata:
            summary[key] = metadata[key]
    return summary
