"""The constructor parameters of :class:`daskgmm.GaussianMixture` and their constraints.

One table, in scikit-learn's declarative form, read by two users: the
estimator validates its parameters against it (``_validate_params``), and
model files record and check exactly these parameters
(:mod:`daskgmm.persistence`), without importing the estimator.
"""

from __future__ import annotations

import inspect
from numbers import Integral, Real
from typing import Any

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


#: Parameters added after model format version 1, with the value a file without them meant.
ADDED_PARAMETER_DEFAULTS: dict[str, Any] = {"missing": "error"}


def parameter_names() -> list[str]:
    """The constructor parameters, in declaration order."""
    return list(PARAMETER_CONSTRAINTS)


def accepts_bool(name: str) -> bool:
    """Whether the constraints of parameter ``name`` allow a boolean.

    scikit-learn's integer and real intervals accept ``True`` (a bool is an
    int), so a recorded boolean must be checked against the declaration.
    """
    return any(c in ("boolean", "verbose") for c in PARAMETER_CONSTRAINTS.get(name, [])
               if isinstance(c, str))


def scikit_learn_default(name: str) -> Any:
    """The default of one of scikit-learn's ``GaussianMixture`` parameters (ours are the same)."""
    return inspect.signature(SklearnGaussianMixture).parameters[name].default


def validate_parameters(params: dict[str, Any]) -> None:
    """Check parameter values against :data:`PARAMETER_CONSTRAINTS`, as the estimator's
    ``_validate_params`` does (absent parameters take their valid defaults).

    Raises
    ------
    ValueError
        scikit-learn's ``InvalidParameterError``, naming the parameter and what is allowed.
    """
    validate_parameter_constraints(PARAMETER_CONSTRAINTS, params, caller_name="GaussianMixture")
