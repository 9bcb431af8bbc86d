"""Model files and checkpoints: one ``.npz`` file, no pickle, written atomically.

Format (version 1)
------------------
A numpy ``.npz`` archive (a zip of ``.npy`` arrays) read with
``allow_pickle=False``, so loading never runs code. It holds:

``__metadata__``
    uint8 array of UTF-8 JSON: ``format`` ("daskgmm-model"), ``format_version``,
    ``estimator`` ("daskgmm.GaussianMixture"), ``params`` (every constructor
    parameter, see below), ``fitted`` (``converged_``, ``n_iter_``,
    ``lower_bound_``, ``n_features_in_``), ``versions`` (daskgmm and its
    dependencies) and, in checkpoints, ``checkpoint`` (iteration state).
``weights``, ``means``, ``covariances``, ``precisions_cholesky``, ``lower_bounds``
    float64 arrays, shaped as the fitted attributes.

``params`` holds every parameter of ``GaussianMixture.__init__`` by name:
numbers, strings, booleans and None as themselves; ``weights_init``,
``means_init`` and ``precisions_init`` as nested lists of float64 (JSON
numbers round-trip float64 exactly); a ``numpy.random.RandomState``
``random_state`` as its full MT19937 state, in the form of
``RandomState.get_state(legacy=False)`` (the key as a list of 624 integers),
so that a reloaded model draws the same numbers the saved one would have, as
after a pickle round trip. A value that cannot be recorded so is refused when
saving. Files of earlier releases, which lack some parameters, load with the
defaults for those.

Model files and checkpoints are built by one function,
:func:`model_file_contents`. Files are written to a temporary name in the
destination folder, flushed, then put in place (:func:`daskgmm.outputs.atomic_write_bytes`),
so a crash never leaves a partial file and never damages the previous good one.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .outputs import atomic_write_bytes

FORMAT = "daskgmm-model"
FORMAT_VERSION = 1
ESTIMATOR = "daskgmm.GaussianMixture"
_ARRAYS = ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds")
_ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init")
_MT19937_WORDS = 624


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


def _parameter_names() -> list[str]:
    """The constructor parameters of ``GaussianMixture``, the schema of ``params``."""
    from .estimator import GaussianMixture

    return GaussianMixture._get_param_names()


def encode_params(model) -> dict[str, Any]:
    """Every constructor parameter of ``model`` as JSON values (see the module docstring).

    Parameters
    ----------
    model : GaussianMixture

    Returns
    -------
    dict
        Parameter name to JSON value, for every parameter.

    Raises
    ------
    ValueError
        A parameter has a value a model file cannot record: a ``RandomState``
        over another bit generator than MT19937, a ``numpy.random.Generator``,
        an ``*_init`` that is not an array of numbers, any other object.
    """
    return {name: _encode_param(name, value)
            for name, value in model.get_params(deep=False).items()}


def _encode_param(name: str, value: Any) -> Any:
    """One parameter's JSON value."""
    if name in _ARRAY_PARAMS and value is not None:
        try:
            return np.asarray(value, dtype=np.float64).tolist()
        except (TypeError, ValueError):
            raise ValueError(f"{name} cannot be recorded in a model file: it is not an array "
                             f"of numbers ({type(value).__name__}).") from None
    if name == "random_state" and isinstance(value, np.random.RandomState):
        return _encode_random_state(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, (int, float, str)):
        return value
    raise ValueError(f"{name}={value!r} cannot be recorded in a model file, which holds "
                     "numbers, strings, booleans, None, arrays (the *_init parameters) and "
                     "numpy RandomState instances.")


def _encode_random_state(random_state: np.random.RandomState) -> dict[str, Any]:
    """The full state of a ``RandomState``: its MT19937 key, position and cached Gaussian."""
    state = random_state.get_state(legacy=False)
    if state["bit_generator"] != "MT19937":
        raise ValueError(
            f"random_state is a RandomState over {state['bit_generator']}; a model file records "
            "the state of an MT19937 RandomState (numpy.random.RandomState(seed)) only. Give "
            "an int seed or such a RandomState."
        )
    return {"bit_generator": "MT19937",
            "state": {"key": [int(word) for word in state["state"]["key"]],
                      "pos": int(state["state"]["pos"])},
            "has_gauss": int(state["has_gauss"]), "gauss": float(state["gauss"])}


def decode_params(params: Any, source: str = "the model file") -> dict[str, Any]:
    """The constructor parameters recorded by :func:`encode_params`, as Python values.

    Parameters
    ----------
    params : dict
        The ``params`` section of a model file's metadata.
    source : str
        What the parameters were read from, for error messages.

    Returns
    -------
    dict
        Parameter name to value; parameters the file lacks (files of earlier
        releases) are left out, so that they take their defaults.

    Raises
    ------
    ModelFileError
        A parameter this daskgmm does not know, or a value of the wrong kind.
    """
    if not isinstance(params, dict):
        raise ModelFileError(f"{source} has no parameter table (params is {type(params).__name__}).")
    unknown = sorted(set(params) - set(_parameter_names()))
    if unknown:
        raise ModelFileError(f"{source} has parameters this daskgmm does not know: {unknown}. "
                             "Was it written by a newer daskgmm? Upgrade daskgmm to load it.")
    decoded: dict[str, Any] = {}
    for name, value in params.items():
        if name in _ARRAY_PARAMS and value is not None:
            decoded[name] = _decode_array(name, value, source)
        elif name == "random_state" and isinstance(value, dict):
            decoded[name] = _decode_random_state(value, source)
        elif value is None or isinstance(value, (bool, int, float, str)):
            decoded[name] = value
        else:
            raise ModelFileError(f"{source} has an invalid {name}: {value!r}.")
    return decoded


def _decode_array(name: str, value: Any, source: str) -> np.ndarray:
    """A recorded ``*_init`` array: nested lists of numbers, not ragged."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if not isinstance(value, list) or array is None or array.ndim == 0:
        raise ModelFileError(f"{source} has an invalid {name}: not an array of numbers.")
    return array


def _decode_random_state(value: dict, source: str) -> np.random.RandomState:
    """A ``RandomState`` in the state recorded by :func:`_encode_random_state`."""
    problem = f"{source} has an invalid random_state: "
    state = value.get("state")
    if value.get("bit_generator") != "MT19937" or not isinstance(state, dict):
        raise ModelFileError(problem + "not the state of an MT19937 RandomState.")
    key, pos = state.get("key"), state.get("pos")
    if (not isinstance(key, list) or len(key) != _MT19937_WORDS
            or not all(type(w) is int and 0 <= w < 2**32 for w in key)):
        raise ModelFileError(problem + f"the key is not {_MT19937_WORDS} unsigned 32-bit integers.")
    has_gauss: Any = value.get("has_gauss")
    gauss: Any = value.get("gauss")
    if (type(pos) is not int or not 0 <= pos <= _MT19937_WORDS or has_gauss not in (0, 1)
            or type(has_gauss) is not int or type(gauss) not in (int, float)):
        raise ModelFileError(problem + "pos, has_gauss or gauss is out of range.")
    random_state = np.random.RandomState()
    random_state.set_state({"bit_generator": "MT19937",
                            "state": {"key": np.array(key, dtype=np.uint32), "pos": pos},
                            "has_gauss": has_gauss, "gauss": float(gauss)})
    return random_state


def model_file_contents(
    params: dict[str, Any],
    *,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    precisions_cholesky: np.ndarray,
    lower_bounds: Any,
    converged: bool,
    n_iter: int,
    lower_bound: float,
    n_features: int,
    **sections: Any,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata of a model file or a checkpoint: the one builder of both.

    Parameters
    ----------
    params : dict
        The constructor parameters, from :func:`encode_params`.
    weights, means, covariances, precisions_cholesky : ndarray
        The mixture's parameters, shaped as the fitted attributes.
    lower_bounds : sequence of float
        The mean log-likelihood after each iteration.
    converged, n_iter, lower_bound, n_features
        The fitted ``converged_``, ``n_iter_``, ``lower_bound_`` and ``n_features_in_``.
    **sections
        More metadata sections: ``checkpoint`` (iteration state), ``selection``.

    Returns
    -------
    arrays : dict of ndarray
    metadata : dict
    """
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": ESTIMATOR,
        "params": params,
        "fitted": {
            "converged_": bool(converged),
            "n_iter_": int(n_iter),
            "lower_bound_": float(lower_bound),
            "n_features_in_": int(n_features),
        },
        "versions": dependency_versions(),
        **sections,
    }
    arrays = {
        "weights": weights,
        "means": means,
        "covariances": covariances,
        "precisions_cholesky": precisions_cholesky,
        "lower_bounds": np.asarray(lower_bounds, dtype=np.float64),
    }
    return arrays, metadata


def model_arrays_and_metadata(model, extra: dict | None = None) -> tuple[dict, dict]:
    """The arrays and metadata that describe a fitted ``GaussianMixture``.

    Parameters
    ----------
    model : GaussianMixture
        A fitted model.
    extra : dict, optional
        More metadata sections (``selection``).

    Returns
    -------
    arrays : dict of ndarray
    metadata : dict

    Raises
    ------
    ValueError
        A parameter cannot be recorded (see :func:`encode_params`).
    """
    return model_file_contents(
        encode_params(model), weights=model.weights_, means=model.means_,
        covariances=model.covariances_, precisions_cholesky=model.precisions_cholesky_,
        lower_bounds=model.lower_bounds_, converged=model.converged_, n_iter=model.n_iter_,
        lower_bound=model.lower_bound_, n_features=model.n_features_in_, **(extra or {}),
    )


def write_model_file(path: str | os.PathLike, arrays: dict, metadata: dict, *,
                     overwrite: bool = True) -> Path:
    """Write arrays and JSON metadata as one ``.npz``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    arrays : dict of array-like
        Stored as float64.
    metadata : dict
        JSON-able.
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise
        :class:`daskgmm.outputs.OutputExistsError`, even for a file that
        appeared while this one was written.

    Returns
    -------
    Path
    """
    blob = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
    payload = {"__metadata__": blob, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}}
    return atomic_write_bytes(path, lambda f: np.savez(f, **payload), overwrite=overwrite)


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


def save_model(model, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Save a fitted :class:`daskgmm.GaussianMixture` to ``path`` (a ``.npz`` file), atomically.

    Every constructor parameter is recorded (see the module docstring), so
    ``load_model(path).get_params()`` equals ``model.get_params()``.

    Parameters
    ----------
    model : GaussianMixture
        A fitted model.
    path : str or os.PathLike
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise
        :class:`daskgmm.outputs.OutputExistsError`.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        A parameter cannot be recorded: a ``random_state`` that is a
        ``RandomState`` over another bit generator than MT19937, say.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    arrays, metadata = model_arrays_and_metadata(model)
    return write_model_file(path, arrays, metadata, overwrite=overwrite)


def model_from_contents(arrays: dict, metadata: dict, source: str = "the model file"):
    """A fitted ``GaussianMixture`` from the arrays and metadata of a model file.

    Parameters
    ----------
    arrays, metadata : dict
        As returned by :func:`read_model_file`.
    source : str
        What they were read from, for error messages.

    Returns
    -------
    GaussianMixture

    Raises
    ------
    ModelFileError
        The parameters are not valid ``GaussianMixture`` parameters.
    """
    from ._kernels import precisions_from_cholesky
    from .estimator import GaussianMixture

    model = GaussianMixture(**decode_params(metadata.get("params"), source))
    try:
        model._validate_params()
    except ValueError as exc:
        raise ModelFileError(f"{source} has invalid parameters: {exc}") from None
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
    return model_from_contents(arrays, metadata, repr(str(path)))


def model_summary(path: str | os.PathLike) -> dict:
    """What a model file holds, as a JSON-able dict (for ``daskgmm info``)."""
    arrays, metadata = read_model_file(path)
    summary = {k: metadata[k] for k in ("format", "format_version", "estimator", "params",
                                        "fitted", "versions")}
    if isinstance(summary["params"].get("random_state"), dict):  # not 624 words of state
        summary["params"] = {**summary["params"], "random_state": "RandomState (MT19937 state)"}
    summary["arrays"] = {name: list(a.shape) for name, a in arrays.items()}
    summary["weights"] = [round(float(w), 6) for w in arrays["weights"]]
    for key in ("checkpoint", "selection"):
        if key in metadata:
            summary[key] = metadata[key]
    return summary
