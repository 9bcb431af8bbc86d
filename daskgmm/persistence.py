"""Model files and checkpoints: one ``.npz`` file, no pickle, written atomically.

Format (version 1)
------------------
A numpy ``.npz`` archive (a zip of ``.npy`` arrays) read with
``allow_pickle=False``, so loading never runs code. It holds:

``__metadata__``
    uint8 array of UTF-8 JSON: ``format`` ("daskgmm-model"), ``format_version``,
    ``estimator`` ("daskgmm.GaussianMixture" or
    "daskgmm.BayesianGaussianMixture"), ``params`` (every constructor
    parameter of that estimator, see below), ``fitted`` (``converged_``,
    ``n_iter_``, ``lower_bound_``, ``n_features_in_``), ``versions`` (daskgmm
    and its dependencies) and, in checkpoints, ``checkpoint`` (iteration
    state). A Bayesian model's file also has ``priors``
    (``weight_concentration_prior_``, ``mean_precision_prior_``,
    ``degrees_of_freedom_prior_``).
``weights``, ``means``, ``covariances``, ``precisions_cholesky``, ``lower_bounds``
    float64 arrays, shaped as the fitted attributes.
``weight_concentration``, ``mean_precision``, ``degrees_of_freedom``, ``mean_prior``, ``covariance_prior``
    A Bayesian model's posterior and priors, float64, shaped as its fitted
    attributes of those names (with a trailing ``_``); the Dirichlet
    process's pair of ``weight_concentration_`` arrays is stored as one of
    shape (2, n_components). The fitted ``weights_`` must be the posterior's
    mean weights.

``params`` holds every parameter of the estimator's ``__init__`` by name:
numbers, strings, booleans and None as themselves; ``weights_init``,
``means_init``, ``precisions_init``, ``mean_prior`` and an array
``covariance_prior`` as nested lists of float64 (JSON
numbers round-trip float64 exactly); a ``numpy.random.RandomState``
``random_state`` as its full MT19937 state, in the form of
``RandomState.get_state(legacy=False)`` (the key as a list of 624 integers),
so that a reloaded model draws the same numbers the saved one would have, as
after a pickle round trip. A value that cannot be recorded so is refused when
saving. Files of earlier releases, which lack some parameters, load with the
defaults for those.

Model files and checkpoints are built by one function,
:func:`model_file_contents`, and checked by one declared schema,
:class:`ModelFile` (pydantic): the builder validates what it builds and every
reader (:func:`read_model_file`, so :func:`daskgmm.load_model`, ``daskgmm info`` and
resuming a checkpoint) validates what it reads, before use. A file that fails
raises :class:`ModelFileError` naming each wrong field. Files are written to a temporary name in the
destination folder, flushed, then put in place (:func:`daskgmm._files.atomic_write_bytes`),
so a crash never leaves a partial file and never damages the previous good one.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._files import is_url
from ._objectstore import get_object, write_file
from ._param_constraints import (
    BAYESIAN,
    GAUSSIAN,
    accepts_bool,
    parameter_names,
    scikit_learn_default,
    validate_parameters,
)
from ._variational import mixture_weights
from .exceptions import ModelFileError

FORMAT = "daskgmm-model"
FORMAT_VERSION = 1
_ARRAYS = ("weights", "means", "covariances", "precisions_cholesky", "lower_bounds")
#: A Bayesian model's arrays beyond :data:`_ARRAYS` (see :class:`VariationalFit`).
_VARIATIONAL_ARRAYS = ("weight_concentration", "mean_precision", "degrees_of_freedom",
                       "mean_prior", "covariance_prior")
_ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init", "mean_prior",
                 "covariance_prior")
_MT19937_WORDS = 624


def dependency_versions() -> dict[str, str]:
    """Versions of daskgmm and the libraries a fit depends on.

    Returns
    -------
    dict of str to str
        Distribution name (``daskgmm``, ``dask``, ``distributed``, ``numpy``,
        ``scipy``, ``zarr``, ``scikit-learn``) to its installed version, or
        ``"unknown"`` where it is not installed.
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("daskgmm", "dask", "distributed", "numpy", "scipy", "zarr", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def encode_params(params: dict[str, Any]) -> dict[str, Any]:
    """Every constructor parameter of ``model`` as JSON values (see the module docstring).

    Parameters
    ----------
    params : dict
        Constructor parameters by name, as ``get_params(deep=False)`` gives them.

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
            for name, value in params.items()}


def _encode_param(name: str, value: Any) -> Any:
    """One parameter's JSON value."""
    if name in _ARRAY_PARAMS and value is not None and not _is_number(value):
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


def _is_number(value: Any) -> bool:
    """A real number, not a bool (``covariance_prior`` is a number for spherical)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


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


def decode_params(params: Any, source: str = "the model file",
                  estimator: str = GAUSSIAN) -> dict[str, Any]:
    """The constructor parameters recorded by :func:`encode_params`, as Python values.

    Parameters
    ----------
    params : dict
        The ``params`` section of a model file's metadata.
    source : str
        What the parameters were read from, for error messages.
    estimator : str
        The model file's ``estimator``, whose parameters these are.

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
    try:
        return _decode_params(params, estimator)
    except ValueError as exc:
        raise ModelFileError(f"{source} has an invalid parameter table: {exc}") from None


def _decode_params(params: Any, estimator: str = GAUSSIAN) -> dict[str, Any]:
    """:func:`decode_params` raising ``ValueError`` messages that name the field
    (``params.<name>``), for the model file schema."""
    if not isinstance(params, dict):
        raise ValueError(f"params: not a table of parameters (got a {type(params).__name__}).")
    names = parameter_names(estimator)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"params: parameters this daskgmm does not know for {estimator}: "
                         f"{unknown}. Was it written by a newer daskgmm? Upgrade daskgmm to "
                         "load it.")
    decoded: dict[str, Any] = {}
    for name, value in params.items():
        if name in _ARRAY_PARAMS and value is not None and not _is_number(value):
            decoded[name] = _decode_array(name, value)
        elif name == "random_state" and isinstance(value, dict):
            decoded[name] = _decode_random_state(value)
        elif isinstance(value, bool) and not accepts_bool(name, estimator):
            # sklearn's integer and real intervals accept True (a bool is an int).
            raise ValueError(f"params.{name}: a boolean ({value}) where a number or a string "
                             "is expected.")
        elif isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"params.{name}: not a finite number (got {value}).")
        elif value is None or isinstance(value, (bool, int, float, str)):
            decoded[name] = value
        else:
            raise ValueError(f"params.{name}: invalid value {value!r}.")
    return decoded


def _decode_array(name: str, value: Any) -> np.ndarray:
    """A recorded array parameter (``*_init``, ``mean_prior``, ``covariance_prior``): nested
    lists of finite numbers, not ragged."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if not isinstance(value, list) or array is None or array.ndim == 0:
        raise ValueError(f"params.{name}: not an array of numbers.")
    if not np.isfinite(array).all():
        raise ValueError(f"params.{name}: holds NaN or infinite values.")
    return array


def _decode_random_state(value: dict) -> np.random.RandomState:
    """A ``RandomState`` in the state recorded by :func:`_encode_random_state`."""
    problem = "params.random_state: "
    state = value.get("state")
    if value.get("bit_generator") != "MT19937" or not isinstance(state, dict):
        raise ValueError(problem + "not the state of an MT19937 RandomState.")
    key, pos = state.get("key"), state.get("pos")
    if (not isinstance(key, list) or len(key) != _MT19937_WORDS
            or not all(type(w) is int and 0 <= w < 2**32 for w in key)):
        raise ValueError(problem + f"the key is not {_MT19937_WORDS} unsigned 32-bit integers.")
    has_gauss: Any = value.get("has_gauss")
    gauss: Any = value.get("gauss")
    if (type(pos) is not int or not 0 <= pos <= _MT19937_WORDS or has_gauss not in (0, 1)
            or type(has_gauss) is not int or type(gauss) not in (int, float)
            or not np.isfinite(gauss)):
        raise ValueError(problem + "pos, has_gauss or gauss is out of range.")
    random_state = np.random.RandomState()
    random_state.set_state({"bit_generator": "MT19937",
                            "state": {"key": np.array(key, dtype=np.uint32), "pos": pos},
                            "has_gauss": has_gauss, "gauss": float(gauss)})
    return random_state


# ----------------------------------------------------------------------------
# The schema of a model file: what the writer builds and the reader accepts
# ----------------------------------------------------------------------------

#: Weights must sum to 1 within this: scikit-learn's tolerance for ``weights_init`` in
#: float32 (a model of ``max_iter=0`` keeps its ``weights_init``); fitted weights sum to 1
#: within a few ulps.
WEIGHTS_SUM_ATOL = 1e-6
#: Covariances must agree with the precision factors within this: ``|L^T U - I|``
#: (``L`` the Cholesky factor of the covariance, ``U`` the stored precision
#: factor) for full and tied, ``|cov * U**2 - 1|`` for diag and spherical.
#: A factor written by daskgmm is within about 1e-8 of it even for covariances
#: with a condition number of 1e15.
FACTOR_AGREEMENT_TOL = 1e-6

NonNegativeInt = Annotated[int, Field(ge=0)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Section(BaseModel):
    """A metadata section: JSON types exactly (``"false"`` is not a bool, ``1.0`` not an int)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class FittedSection(_Section):
    """The fitted scalars: ``converged_``, ``n_iter_``, ``lower_bound_``, ``n_features_in_``."""

    converged_: bool
    n_iter_: NonNegativeInt
    lower_bound_: float
    n_features_in_: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _lower_bound_is_a_number(self) -> FittedSection:
        # -inf is what a fit of max_iter=0 reports (as in scikit-learn); nothing else.
        if np.isnan(self.lower_bound_) or self.lower_bound_ == np.inf or (
                self.lower_bound_ == -np.inf and self.n_iter_ > 0):
            raise ValueError(f"fitted.lower_bound_: {self.lower_bound_} after {self.n_iter_} "
                             "iterations; a finite number is expected (-inf only before any).")
        return self


class CheckpointSection(_Section):
    """A checkpoint's iteration state and what it belongs to (see
    :class:`daskgmm.Checkpoint`). Keys this daskgmm does not know are kept, unused."""

    model_config = ConfigDict(strict=True, extra="allow")

    n_iter: NonNegativeInt
    lower_bound: float
    converged: bool
    written: FiniteFloat
    finished: bool | None = None  # absent in checkpoints of earlier releases
    data: dict[str, Any] | None = None  # the data's fingerprint


class SelectionRow(_Section):
    """One candidate of ``daskgmm select``'s table (other columns are kept, unused)."""

    model_config = ConfigDict(strict=True, extra="allow")

    n_components: Annotated[int, Field(ge=1)]
    covariance_type: Literal["full", "tied", "diag", "spherical"]
    log_likelihood: float
    bic: float
    aic: float
    icl: float | None = None  # absent in tables of earlier releases
    n_iter: NonNegativeInt
    converged: bool


class SelectionSection(_Section):
    """How ``daskgmm select`` chose the model, and its table."""

    criterion: Literal["bic", "aic", "icl"]
    table: Annotated[list[SelectionRow], Field(min_length=1)]


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class PriorsSection(_Section):
    """A Bayesian model's scalar priors, as its fitted ``*_prior_`` attributes."""

    weight_concentration_prior_: PositiveFloat
    mean_precision_prior_: PositiveFloat
    degrees_of_freedom_prior_: PositiveFloat


class ModelMetadata(_Section):
    """The ``__metadata__`` JSON of a model file or checkpoint.

    Sections this daskgmm does not know are kept and not used (``extra``);
    an incompatible change raises ``format_version``. ``params`` is checked
    against the estimator's own parameter constraints, with JSON types
    exactly (no boolean for a number, no NaN); ``priors`` is there exactly
    for a Bayesian model.
    """

    model_config = ConfigDict(strict=True, extra="allow")

    format: Literal["daskgmm-model"]
    format_version: Annotated[int, Field(ge=1, le=FORMAT_VERSION)]
    estimator: Literal["daskgmm.GaussianMixture", "daskgmm.BayesianGaussianMixture"]
    params: dict[str, Any]
    fitted: FittedSection
    priors: PriorsSection | None = None
    versions: dict[str, str] = Field(default_factory=dict)  # informational
    checkpoint: CheckpointSection | None = None
    selection: SelectionSection | None = None
    _decoded: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _valid_params(self) -> ModelMetadata:
        decoded = _decode_params(self.params, self.estimator)
        try:
            validate_parameters(decoded, self.estimator)
        except ValueError as exc:  # sklearn's InvalidParameterError names the parameter
            raise ValueError(f"params: {exc}") from None
        self._decoded = decoded
        if (self.priors is None) == (self.estimator == BAYESIAN):
            raise ValueError(f"priors: {'missing' if self.priors is None else 'present'} in a "
                             f"{self.estimator} model; a Bayesian model has this section, and "
                             "only it.")
        state = self.checkpoint
        if state is not None:
            fitted = self.fitted
            for key, value, expected in (("n_iter", state.n_iter, fitted.n_iter_),
                                         ("converged", state.converged, fitted.converged_),
                                         ("lower_bound", state.lower_bound, fitted.lower_bound_)):
                if value != expected:
                    raise ValueError(f"checkpoint.{key}: {value!r} disagrees with the fitted "
                                     f"section's {expected!r}.")
        return self

    @property
    def decoded_params(self) -> dict[str, Any]:
        """The constructor parameters as Python values (see :func:`decode_params`).

        Returns
        -------
        dict
            Parameter name to value, as validated: ``*_init`` arrays as float64
            ndarrays, a ``random_state`` recorded as its MT19937 state as a
            ``numpy.random.RandomState``; parameters the file lacks are left out.
            A new dict each call (a shallow copy).
        """
        return dict(self._decoded)


def _real_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array of finite numbers, or ``ValueError`` naming ``name``."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name}: holds {array.dtype} values, not real numbers.")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: {int(bad.sum())} value(s) are NaN or infinite, the first "
                         f"at index {first} ({array[first]}).")
    return array


class ModelFile(BaseModel):
    """A whole model file or checkpoint, metadata and arrays, checked together.

    The one schema of the format: :func:`model_file_contents` (the writer of
    model files and checkpoints) validates what it builds with it, and
    :func:`read_model_file` (every reader: :func:`load_model`, ``daskgmm
    info``, resuming from a checkpoint) validates what it reads. Besides the
    metadata's types (:class:`ModelMetadata`), the arrays must be finite;
    ``weights`` in [0, 1] summing to 1 within :data:`WEIGHTS_SUM_ATOL`; every
    shape as ``n_components``, ``n_features_in_`` and ``covariance_type``
    require; ``precisions_cholesky`` upper triangular (scikit-learn's
    convention: ``U`` with ``U @ U.T`` the precision) with a positive
    diagonal; and ``covariances`` symmetric and the inverse of the precisions
    within :data:`FACTOR_AGREEMENT_TOL`. A Bayesian model's file must also hold
    its posterior and prior arrays (and only it may), shaped and in range, with
    priors that its parameters give and ``weights`` that are its posterior's
    mean weights.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    metadata: ModelMetadata
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    lower_bounds: np.ndarray
    # A Bayesian model's (see VariationalFit); None in a GaussianMixture's file.
    weight_concentration: np.ndarray | None = None
    mean_precision: np.ndarray | None = None
    degrees_of_freedom: np.ndarray | None = None
    mean_prior: np.ndarray | None = None
    covariance_prior: np.ndarray | None = None

    @field_validator(*_ARRAYS, *_VARIATIONAL_ARRAYS, mode="before")
    @classmethod
    def _finite_float64(cls, value: Any, info: ValidationInfo) -> np.ndarray | None:
        if value is None and info.field_name in _VARIATIONAL_ARRAYS:
            return None
        return _real_array(str(info.field_name), value)

    @model_validator(mode="after")
    def _consistent(self) -> ModelFile:
        params = self.metadata.decoded_params
        k = params.get("n_components", scikit_learn_default("n_components"))
        ct = params.get("covariance_type", scikit_learn_default("covariance_type"))
        d = self.metadata.fitted.n_features_in_
        cov_shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[ct]
        for name, shape in (("weights", (k,)), ("means", (k, d)), ("covariances", cov_shape),
                            ("precisions_cholesky", cov_shape)):
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"{name}: shape {getattr(self, name).shape} disagrees with params.n_components"
                    f"={k}, params.covariance_type={ct!r} and fitted.n_features_in_={d}, which "
                    f"need {shape}.")
        if self.lower_bounds.ndim != 1:
            raise ValueError(f"lower_bounds: shape {self.lower_bounds.shape}; one value per "
                             "iteration is expected.")
        _check_weights(self.weights)
        _check_factors(self.precisions_cholesky, ct)
        _check_covariances(self.covariances, self.precisions_cholesky, ct)
        if self.metadata.estimator == BAYESIAN:
            self._check_variational(params, k, d, ct)
        else:
            present = [name for name in _VARIATIONAL_ARRAYS if getattr(self, name) is not None]
            if present:
                raise ValueError(f"{present[0]}: an array of a Bayesian model, in a "
                                 f"{self.metadata.estimator} model file.")
        return self

    def _check_variational(self, params: dict[str, Any], k: int, d: int, ct: str) -> None:
        """A Bayesian model's posterior and priors: present, shaped, in range, and agreeing
        with the fitted weights (which predictions do not read: a disagreement is an edit)."""
        process = params.get("weight_concentration_prior_type",
                             "dirichlet_process") == "dirichlet_process"
        shapes = {"weight_concentration": (2, k) if process else (k,),
                  "mean_precision": (k,),
                  "degrees_of_freedom": () if ct == "tied" else (k,),
                  "mean_prior": (d,),
                  "covariance_prior": {"full": (d, d), "tied": (d, d), "diag": (d,),
                                       "spherical": ()}[ct]}
        arrays: dict[str, np.ndarray] = {}
        for name, shape in shapes.items():
            array = getattr(self, name)
            if array is None:
                raise ValueError(f"{name}: missing; a Bayesian model file holds it.")
            if array.shape != shape:
                raise ValueError(f"{name}: shape {array.shape}; params and fitted.n_features_in_ "
                                 f"need {shape}.")
            arrays[name] = array
        for name in ("weight_concentration", "mean_precision"):
            if (arrays[name] <= 0).any():
                raise ValueError(f"{name}: holds values <= 0; it is positive.")
        if (arrays["degrees_of_freedom"] <= d - 1).any():
            raise ValueError(f"degrees_of_freedom: holds values <= n_features - 1 = {d - 1}.")
        prior = arrays["covariance_prior"]
        if ct in ("full", "tied"):
            if not np.allclose(prior, prior.T):  # scikit-learn's test of a given prior
                raise ValueError("covariance_prior: not symmetric.")
            try:
                np.linalg.cholesky(prior)
            except np.linalg.LinAlgError:
                raise ValueError("covariance_prior: not positive definite.") from None
        elif (prior <= 0).any():
            raise ValueError("covariance_prior: holds values <= 0; it is positive.")
        self._check_priors_agree_with_params(params, arrays, k, d)
        concentration = arrays["weight_concentration"]
        expected = mixture_weights(tuple(concentration) if process else concentration,
                                   "dirichlet_process" if process else "dirichlet_distribution")
        error = float(np.abs(expected - self.weights).max())
        if not error <= WEIGHTS_SUM_ATOL:
            raise ValueError(f"weights: differ from the posterior's mean weights (from "
                             f"weight_concentration) by {error:.3g}, more than "
                             f"{WEIGHTS_SUM_ATOL:g}.")

    def _check_priors_agree_with_params(self, params: dict[str, Any],
                                        arrays: dict[str, np.ndarray], k: int, d: int) -> None:
        """The priors are those the parameters give (scikit-learn's defaults where None):
        a resumed fit iterates under the file's priors, and resuming compares parameters."""
        priors = self.metadata.priors
        assert priors is not None
        scalars = (("weight_concentration_prior", priors.weight_concentration_prior_, 1.0 / k),
                   ("mean_precision_prior", priors.mean_precision_prior_, 1.0),
                   ("degrees_of_freedom_prior", priors.degrees_of_freedom_prior_, float(d)))
        for name, recorded, default in scalars:
            given = params.get(name)
            expected = default if given is None else float(given)
            if not np.isclose(recorded, expected, rtol=1e-12, atol=0):
                raise ValueError(f"priors.{name}_: {recorded!r}, but params.{name} "
                                 f"({given!r}) gives {expected!r}.")
        if not priors.degrees_of_freedom_prior_ > d - 1:
            raise ValueError(f"priors.degrees_of_freedom_prior_: "
                             f"{priors.degrees_of_freedom_prior_!r}, not above n_features - 1 "
                             f"= {d - 1}.")
        for name in ("mean_prior", "covariance_prior"):
            given = params.get(name)
            if given is not None and not np.allclose(arrays[name], given, rtol=1e-12, atol=0):
                raise ValueError(f"{name}: differs from params.{name}, which gives it.")

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays, as float64.

        Returns
        -------
        dict of ndarray
            ``weights``, ``means``, ``covariances``, ``precisions_cholesky`` and
            ``lower_bounds`` by name, as validated (float64, finite), and a
            Bayesian model's posterior and prior arrays.
        """
        return {name: getattr(self, name) for name in (*_ARRAYS, *_VARIATIONAL_ARRAYS)
                if getattr(self, name) is not None}


def _check_weights(weights: np.ndarray) -> None:
    if weights.min() < 0 or weights.max() > 1:
        raise ValueError(f"weights: outside [0, 1] (min {weights.min():.6g}, max "
                         f"{weights.max():.6g}).")
    total = float(weights.sum())
    if abs(total - 1.0) > WEIGHTS_SUM_ATOL:
        raise ValueError(f"weights: sum to {total!r}, not 1 (within {WEIGHTS_SUM_ATOL:g}).")


def _component(ct: str, k: int) -> str:
    return "the tied factor" if ct == "tied" else f"component {k}"


def _check_factors(prec_chol: np.ndarray, ct: str) -> None:
    """Upper triangular (scikit-learn's convention) with a positive diagonal."""
    if ct in ("diag", "spherical"):
        if (prec_chol <= 0).any():
            k = int(np.argwhere(prec_chol <= 0)[0][0])
            raise ValueError(f"precisions_cholesky: component {k} has a factor <= 0; the "
                             "square roots of precisions are positive.")
        return
    factors = prec_chol.reshape(-1, *prec_chol.shape[-2:])
    for k, u in enumerate(factors):
        below = np.argwhere(np.tril(u, -1) != 0)
        if below.size:
            i, j = (int(v) for v in below[0])
            raise ValueError(
                f"precisions_cholesky: {_component(ct, k)} is not upper triangular (entry [{i}, "
                f"{j}] is {float(u[i, j])!r}): daskgmm stores, as scikit-learn does, the upper "
                "triangular U with U @ U.T the precision.")
        diagonal = np.diagonal(u)
        if (diagonal <= 0).any():
            i = int(np.argmin(diagonal))
            raise ValueError(f"precisions_cholesky: {_component(ct, k)} has a diagonal entry "
                             f"<= 0 ([{i}, {i}] is {float(diagonal[i])!r}); a Cholesky factor's "
                             "diagonal is positive.")


def _check_covariances(covariances: np.ndarray, prec_chol: np.ndarray, ct: str) -> None:
    """The covariances are the inverses of the precisions the factors give."""
    tol = FACTOR_AGREEMENT_TOL
    if ct in ("diag", "spherical"):
        error = np.abs(covariances * prec_chol**2 - 1.0)
        if not (error <= tol).all():
            k = int(np.argwhere(~(error <= tol))[0][0])
            raise ValueError(f"covariances: component {k} disagrees with precisions_cholesky "
                             f"(covariance * factor**2 is off 1 by {error.max():.3g}, more "
                             f"than {tol:g}).")
        return
    matrices = covariances.reshape(-1, *covariances.shape[-2:])
    factors = prec_chol.reshape(matrices.shape)
    identity = np.eye(matrices.shape[-1])
    for k, (cov, u) in enumerate(zip(matrices, factors, strict=True)):
        scale = np.sqrt(np.abs(np.diagonal(cov)))
        asymmetry = np.abs(cov - cov.T) / np.maximum(np.outer(scale, scale), np.finfo(float).tiny)
        if not (asymmetry <= tol).all():
            raise ValueError(f"covariances: {_component(ct, k)} is not symmetric (relative "
                             f"difference {asymmetry.max():.3g}).")
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(f"covariances: {_component(ct, k)} is not positive definite, so it "
                             "is not the covariance of its precisions_cholesky factor.") from None
        error = float(np.abs(chol.T @ u - identity).max())
        if not error <= tol:
            raise ValueError(f"covariances: {_component(ct, k)} disagrees with "
                             f"precisions_cholesky (the product of their Cholesky factors is off "
                             f"the identity by {error:.3g}, more than {tol:g}).")


def _problems(error: ValidationError) -> str:
    """The errors of a schema validation, each naming its field."""
    problems = []
    for item in error.errors(include_url=False):
        loc = [str(part) for part in item["loc"]]
        if loc[:1] == ["metadata"]:
            loc = loc[1:]
        if item["type"] == "value_error":  # ours: the message names its field
            problems.append(str(item["ctx"]["error"]))
            continue
        got = item.get("input")
        shown = "" if isinstance(got, (dict, list, np.ndarray)) else f" (got {got!r})"
        problems.append(f"{'.'.join(loc) or 'metadata'}: {item['msg']}{shown}")
    return "; ".join(problems)


def validate_model_file(arrays: dict[str, Any], metadata: Any,
                        source: str = "the model file") -> ModelFile:
    """Check a model file's arrays and metadata against the schema (:class:`ModelFile`).

    Parameters
    ----------
    arrays : dict of array-like
        ``weights``, ``means``, ``covariances``, ``precisions_cholesky`` and
        ``lower_bounds``, and a Bayesian model's ``weight_concentration``,
        ``mean_precision``, ``degrees_of_freedom``, ``mean_prior`` and
        ``covariance_prior`` (others are ignored).
    metadata : dict
        The ``__metadata__`` JSON.
    source : str
        What they were read from, for error messages.

    Returns
    -------
    ModelFile
        The validated contents, arrays as float64.

    Raises
    ------
    ModelFileError
        Naming every field that is wrong and how.
    """
    missing = [name for name in _ARRAYS if name not in arrays]
    if missing:
        raise ModelFileError(f"{source} lacks the arrays {missing}.")
    try:
        return ModelFile.model_validate(
            {"metadata": metadata, **{name: arrays[name] for name in _ARRAYS},
             **{name: arrays[name] for name in _VARIATIONAL_ARRAYS if name in arrays}})
    except ValidationError as error:
        raise ModelFileError(f"{source} is not a valid daskgmm model file: "
                             f"{_problems(error)}") from None


@dataclass(frozen=True)
class VariationalFit:
    """A Bayesian mixture's posterior and priors: what its model file holds beyond a mixture.

    Attributes
    ----------
    weight_concentration : ndarray of shape (n_components,) or (2, n_components)
        ``weight_concentration_``; the Dirichlet process's pair stacked.
    mean_precision : ndarray of shape (n_components,)
    degrees_of_freedom : ndarray of shape (n_components,), or () for ``tied``
    weight_concentration_prior, mean_precision_prior, degrees_of_freedom_prior : float
    mean_prior : ndarray of shape (n_features,)
    covariance_prior : ndarray
        Shaped by ``covariance_type`` as scikit-learn's ``covariance_prior_``
        (a 0-d array for ``spherical``).
    """

    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    degrees_of_freedom: np.ndarray
    weight_concentration_prior: float
    mean_precision_prior: float
    mean_prior: np.ndarray
    degrees_of_freedom_prior: float
    covariance_prior: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays a model file stores, by name."""
        return {name: np.asarray(getattr(self, name), dtype=np.float64)
                for name in _VARIATIONAL_ARRAYS}

    def priors_section(self) -> dict[str, float]:
        """The metadata's ``priors`` section."""
        return {"weight_concentration_prior_": float(self.weight_concentration_prior),
                "mean_precision_prior_": float(self.mean_precision_prior),
                "degrees_of_freedom_prior_": float(self.degrees_of_freedom_prior)}


@dataclass(frozen=True)
class FittedModel:
    """A fitted mixture as a model file holds it: plain data, no estimator.

    The estimator builds itself from one (:func:`daskgmm.load_model`) and
    describes itself as one (:func:`daskgmm.save_model`), so this module
    never imports the estimator.

    Attributes
    ----------
    params : dict
        Every constructor parameter by name, as Python values.
    weights, means, covariances, precisions_cholesky : ndarray
        Shaped as the estimator's fitted attributes.
    lower_bounds : list of float
        The mean log-likelihood after each iteration.
    converged, n_iter, lower_bound, n_features
        The fitted ``converged_``, ``n_iter_``, ``lower_bound_`` and ``n_features_in_``.
    estimator : str
        Which estimator: ``"daskgmm.GaussianMixture"`` or ``"daskgmm.BayesianGaussianMixture"``.
    variational : VariationalFit or None
        A Bayesian model's posterior and priors.
    """

    params: dict[str, Any]
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    lower_bounds: list[float]
    converged: bool
    n_iter: int
    lower_bound: float
    n_features: int
    estimator: str = GAUSSIAN
    variational: VariationalFit | None = None


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
    estimator: str = GAUSSIAN,
    variational: VariationalFit | None = None,
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
    estimator : str
        The estimator's name in the file (:data:`daskgmm._param_constraints.GAUSSIAN`
        or ``BAYESIAN``), whose parameters ``params`` are.
    variational : VariationalFit, optional
        A Bayesian model's posterior and priors (required for one).
    **sections
        More metadata sections: ``checkpoint`` (iteration state), ``selection``.

    Returns
    -------
    arrays : dict of ndarray
    metadata : dict

    Raises
    ------
    ModelFileError
        The contents do not pass the schema that readers apply
        (:class:`ModelFile`): a non-finite value, weights off the simplex, an
        inconsistent shape, say. Nothing is written then.
    """
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": estimator,
        "params": params,
        "fitted": {
            "converged_": bool(converged),
            "n_iter_": int(n_iter),
            "lower_bound_": float(lower_bound),
            "n_features_in_": int(n_features),
        },
        "versions": dependency_versions(),
        **({} if variational is None else {"priors": variational.priors_section()}),
        **sections,
    }
    arrays = {
        "weights": weights,
        "means": means,
        "covariances": covariances,
        "precisions_cholesky": precisions_cholesky,
        "lower_bounds": np.asarray(lower_bounds, dtype=np.float64),
        **({} if variational is None else variational.arrays()),
    }
    # What a reader will see: the metadata after its JSON round trip.
    validate_model_file(arrays, json.loads(json.dumps(metadata)), "the model to be written")
    return arrays, metadata


def fitted_model_contents(fitted: FittedModel, **sections: Any) -> tuple[dict, dict]:
    """The arrays and metadata of a model file that holds ``fitted``.

    Parameters
    ----------
    fitted : FittedModel
    **sections
        More metadata sections (``selection``).

    Returns
    -------
    arrays : dict of ndarray
    metadata : dict

    Raises
    ------
    ValueError
        A parameter cannot be recorded (see :func:`encode_params`).
    ModelFileError
        The contents fail the schema (see :func:`model_file_contents`).
    """
    return model_file_contents(
        encode_params(fitted.params), weights=fitted.weights, means=fitted.means,
        covariances=fitted.covariances, precisions_cholesky=fitted.precisions_cholesky,
        lower_bounds=fitted.lower_bounds, converged=fitted.converged, n_iter=fitted.n_iter,
        lower_bound=fitted.lower_bound, n_features=fitted.n_features,
        estimator=fitted.estimator, variational=fitted.variational, **sections,
    )


def write_model_file(path: str | os.PathLike, arrays: dict, metadata: dict, *,
                     overwrite: bool = True,
                     storage_options: dict[str, Any] | None = None) -> Path | str:
    """Write arrays and JSON metadata as one ``.npz``, atomically.

    A local file is written beside ``path`` and renamed into place; at an
    fsspec URL (``s3://``) it is one PUT (:func:`daskgmm._objectstore.put_object`).

    Parameters
    ----------
    path : str or os.PathLike
        A local path or an fsspec URL.
    arrays : dict of array-like
        Stored as float64.
    metadata : dict
        JSON-able.
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise
        :class:`daskgmm.OutputExistsError`, even for a file that
        appeared while this one was written.
    storage_options : dict, optional
        fsspec options for a URL ``path`` (endpoint, credentials).

    Returns
    -------
    Path or str
        The absolute path, or the URL.
    """
    blob = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
    payload: dict[str, Any] = {"__metadata__": blob,
                               **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}}
    return write_file(path, lambda f: np.savez(f, **payload), overwrite=overwrite,
                      storage_options=storage_options)


def read_model_file(path: str | os.PathLike,
                    storage_options: dict[str, Any] | None = None) -> tuple[dict, dict]:
    """Read a model file (or checkpoint) and check it against the schema; never unpickles.

    Parameters
    ----------
    path : str or os.PathLike
        A local path or an fsspec URL.
    storage_options : dict, optional
        fsspec options for a URL (endpoint, credentials).

    Returns
    -------
    arrays : dict of ndarray
        The schema's arrays as float64 (see :class:`ModelFile`), and any
        others the file holds as they are.
    metadata : dict
        The ``__metadata__`` JSON.

    Raises
    ------
    FileNotFoundError
    ModelFileError
        Not a daskgmm model file, corrupt, a newer format version, or
        contents that fail the schema (the message names each field).
    """
    contents, metadata, _ = _read_validated(path, storage_options)
    return contents, metadata


def _model_file_source(path: str | os.PathLike,
                       storage_options: dict[str, Any] | None) -> tuple[str, Path | io.BytesIO]:
    """The model file's name for messages, and what ``np.load`` reads: a local file or the object's bytes."""
    if is_url(path):
        try:
            return os.fspath(path), io.BytesIO(get_object(os.fspath(path), storage_options))
        except FileNotFoundError:
            raise FileNotFoundError(f"No model file at {os.fspath(path)!r}.") from None
    local = Path(path)
    if not local.is_file():
        raise FileNotFoundError(f"No model file at {str(local)!r}.")
    return str(local), local


def _read_validated(path: str | os.PathLike,
                    storage_options: dict[str, Any] | None = None) -> tuple[dict, dict, ModelFile]:
    name, source = _model_file_source(path, storage_options)
    path = name
    try:
        with np.load(source, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        # numpy's own message for a pickle suggests allow_pickle=True, which would run
        # the file's code: say what the file is instead.
        reason = ("it is neither an .npz nor an .npy file (numpy could read it only as a "
                  "pickle, which a model file never is)" if "pickle" in str(exc) else str(exc))
        raise ModelFileError(
            f"{str(path)!r} is not a daskgmm model file (an .npz archive written by "
            f"daskgmm.save_model or `daskgmm fit`): {reason}.") from None
    if "__metadata__" not in contents:
        raise ModelFileError(f"{str(path)!r} is not a daskgmm model file (no metadata).")
    try:
        metadata = json.loads(contents.pop("__metadata__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{str(path)!r} has corrupt metadata: {exc}") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{str(path)!r} has corrupt metadata: a JSON "
                             f"{type(metadata).__name__}, not an object.")
    if metadata.get("format") != FORMAT or metadata.get("estimator") not in (GAUSSIAN, BAYESIAN):
        raise ModelFileError(
            f"{str(path)!r} holds {metadata.get('estimator')!r} in format "
            f"{metadata.get('format')!r}, not a {GAUSSIAN} or {BAYESIAN} model."
        )
    version = metadata.get("format_version")
    if type(version) is not int or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} is model format version {version}; this daskgmm reads versions up to "
            f"{FORMAT_VERSION}. Upgrade daskgmm to load it."
        )
    validated = validate_model_file(contents, metadata, repr(str(path)))
    contents.update(validated.arrays())
    return contents, metadata, validated


def write_fitted_model(path: str | os.PathLike, fitted: FittedModel, *, overwrite: bool = True,
                       storage_options: dict[str, Any] | None = None,
                       **sections: Any) -> Path | str:
    """Write a model file that holds ``fitted``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    fitted : FittedModel
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise
        :class:`daskgmm.OutputExistsError`.
    storage_options : dict, optional
        fsspec options for a URL ``path``.
    **sections
        More metadata sections (``selection``).

    Returns
    -------
    Path or str
    """
    arrays, metadata = fitted_model_contents(fitted, **sections)
    return write_model_file(path, arrays, metadata, overwrite=overwrite,
                            storage_options=storage_options)


def read_fitted_model(path: str | os.PathLike,
                      storage_options: dict[str, Any] | None = None) -> FittedModel:
    """The fitted mixture a model file (or checkpoint) holds, checked against the schema.

    Runs no code from the file (no pickle).

    Parameters
    ----------
    path : str or os.PathLike
        A local path or an fsspec URL.
    storage_options : dict, optional
        fsspec options for a URL.

    Returns
    -------
    FittedModel

    Raises
    ------
    FileNotFoundError
    ModelFileError
        Not a valid daskgmm model file; the message names each field that is wrong.
    """
    return read_fitted_model_and_metadata(path, storage_options)[0]


def read_fitted_model_and_metadata(path: str | os.PathLike,
                                   storage_options: dict[str, Any] | None = None,
                                   ) -> tuple[FittedModel, dict]:
    """:func:`read_fitted_model` and the file's whole metadata, from one read of the file.

    Parameters
    ----------
    path : str or os.PathLike
        The model file or checkpoint.
    storage_options : dict, optional
        fsspec options for a URL.

    Returns
    -------
    fitted : FittedModel
    metadata : dict
        With its ``checkpoint`` and ``selection`` sections, if any.
    """
    _, metadata, contents = _read_validated(path, storage_options)
    fitted = contents.metadata.fitted
    return FittedModel(
        params=contents.metadata.decoded_params,
        weights=contents.weights, means=contents.means, covariances=contents.covariances,
        precisions_cholesky=contents.precisions_cholesky,
        lower_bounds=[float(v) for v in contents.lower_bounds],
        converged=fitted.converged_, n_iter=fitted.n_iter_, lower_bound=fitted.lower_bound_,
        n_features=fitted.n_features_in_, estimator=contents.metadata.estimator,
        variational=_variational_fit(contents),
    ), metadata


def _variational_fit(contents: ModelFile) -> VariationalFit | None:
    """A validated Bayesian model file's posterior and priors; None for a GaussianMixture's."""
    priors = contents.metadata.priors
    if priors is None:
        return None
    arrays = {name: getattr(contents, name) for name in _VARIATIONAL_ARRAYS}
    return VariationalFit(**arrays,
                          weight_concentration_prior=priors.weight_concentration_prior_,
                          mean_precision_prior=priors.mean_precision_prior_,
                          degrees_of_freedom_prior=priors.degrees_of_freedom_prior_)


def model_summary(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> dict:
    """What a model file holds, as a JSON-able dict (for ``daskgmm info``).

    Parameters
    ----------
    path : str or os.PathLike
        The model file or checkpoint, read with :func:`read_model_file`.
    storage_options : dict, optional
        fsspec options for a URL.

    Returns
    -------
    dict
        The metadata's ``format``, ``format_version``, ``estimator``, ``params``
        (a recorded ``random_state`` state shown as ``"RandomState (MT19937
        state)"``), ``fitted`` and ``versions`` (empty if absent); ``arrays``,
        each array's name to its shape as a list; ``weights``, the mixture
        weights rounded to 6 decimals; and the ``priors`` (a Bayesian model's),
        ``checkpoint`` and ``selection`` sections, if the file has them.
    """
    arrays, metadata = read_model_file(path, storage_options)
    summary = {k: metadata[k] for k in ("format", "format_version", "estimator", "params",
                                        "fitted")}
    summary["versions"] = metadata.get("versions", {})
    if isinstance(summary["params"].get("random_state"), dict):  # not 624 words of state
        summary["params"] = {**summary["params"], "random_state": "RandomState (MT19937 state)"}
    summary["arrays"] = {name: list(a.shape) for name, a in arrays.items()}
    summary["weights"] = [round(float(w), 6) for w in arrays["weights"]]
    for key in ("priors", "checkpoint", "selection"):
        if key in metadata:
            summary[key] = metadata[key]
    return summary
