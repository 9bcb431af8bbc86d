"""The constructor parameters of daskgmm's estimators and their constraints.

One table per estimator, in scikit-learn's declarative form, read by two
users: the estimator validates its parameters against it
(``_validate_params``), and model files record and check exactly these
parameters (:mod:`daskgmm.persistence`), without importing the estimators.
Model files name their estimator as :data:`GAUSSIAN` or :data:`BAYESIAN`.
"""

from __future__ import annotations

import inspect
from numbers import Integral, Real
from typing import Any

from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)

PARAMETER_CONSTRAINTS: dict[str, list[Any]] = {
    **SklearnGaussianMixture._parameter_constraints,
    "split_every": [Interval(Integral, 2, None, closed="left")],
    "persist": [StrOptions({"auto"}), "boolean"],
    "chunk_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "algorithm": [StrOptions({"batch", "online"})],
    "online_passes": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
    "learning_offset": [Interval(Real, 0.0, None, closed="left")],
    "missing": [StrOptions({"error", "marginalize"})],
}
"""Every constructor parameter by name: scikit-learn's ``GaussianMixture`` ones and ours."""

BAYESIAN_PARAMETER_CONSTRAINTS: dict[str, list[Any]] = {
    **SklearnBayesianGaussianMixture._parameter_constraints,
    **{name: PARAMETER_CONSTRAINTS[name] for name in ("split_every", "persist", "chunk_size")},
}
"""Every constructor parameter of :class:`daskgmm.BayesianGaussianMixture`: scikit-learn's
``BayesianGaussianMixture`` ones and daskgmm's ``split_every``, ``persist``, ``chunk_size``."""

GAUSSIAN = "daskgmm.GaussianMixture"
BAYESIAN = "daskgmm.BayesianGaussianMixture"
#: The estimators a model file can hold, by the name it records, and their parameters.
CONSTRAINTS_BY_ESTIMATOR: dict[str, dict[str, list[Any]]] = {
    GAUSSIAN: PARAMETER_CONSTRAINTS, BAYESIAN: BAYESIAN_PARAMETER_CONSTRAINTS}


#: Parameters added after model format version 1, with the value a file without them meant.
ADDED_PARAMETER_DEFAULTS: dict[str, Any] = {"missing": "error"}


def parameter_names(estimator: str = GAUSSIAN) -> list[str]:
    """The constructor parameters of ``estimator`` (a model file's name), in declaration order."""
    return list(CONSTRAINTS_BY_ESTIMATOR[estimator])


def accepts_bool(name: str, estimator: str = GAUSSIAN) -> bool:
    """Whether the constraints of parameter ``name`` allow a boolean.

    scikit-learn's integer and real intervals accept ``True`` (a bool is an
    int), so a recorded boolean must be checked against the declaration.
    """
    return any(c in ("boolean", "verbose")
               for c in CONSTRAINTS_BY_ESTIMATOR[estimator].get(name, []) if isinstance(c, str))


def scikit_learn_default(name: str) -> Any:
    """The default of one of scikit-learn's ``GaussianMixture`` parameters (ours are the same)."""
    return inspect.signature(SklearnGaussianMixture).parameters[name].default


def validate_parameters(params: dict[str, Any], estimator: str = GAUSSIAN) -> None:
    """Check parameter values against the constraints of ``estimator`` (a model file's name),
    as the estimator's ``_validate_params`` does (absent parameters take their valid defaults).

    Raises
    ------
    ValueError
        scikit-learn's ``InvalidParameterError``, naming the parameter and what is allowed.
    """
    validate_parameter_constraints(CONSTRAINTS_BY_ESTIMATOR[estimator], params,
                                   caller_name=estimator.rpartition(".")[2])
