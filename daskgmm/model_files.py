"""Saving fitted estimators to model files and loading them back (:mod:`daskgmm.persistence`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._param_constraints import BAYESIAN
from .bayesian import BayesianGaussianMixture
from .estimator import GaussianMixture
from .persistence import read_fitted_model, write_fitted_model


def save_model(model: GaussianMixture | BayesianGaussianMixture, path: str | os.PathLike, *,
               overwrite: bool = True, metadata: dict[str, Any] | None = None,
               storage_options: dict[str, Any] | None = None) -> Path | str:
    """Save a fitted :class:`GaussianMixture` or :class:`BayesianGaussianMixture` to
    ``path`` (a ``.npz`` file), atomically.

    Every constructor parameter is recorded (see :mod:`daskgmm.persistence`),
    so ``load_model(path).get_params()`` equals ``model.get_params()``. The
    file holds numbers and JSON only: loading it runs no code.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        A fitted model.
    path : str or os.PathLike
        A local path, or an fsspec URL (``s3://bucket/model.npz``, stored in one PUT).
    overwrite : bool, default=True
        Replace a file at ``path``; otherwise raise :class:`daskgmm.OutputExistsError`.
    metadata : dict, optional
        More metadata sections to record, such as ``selection`` (the table
        of ``daskgmm select``); each is checked against the model file schema.
    storage_options : dict, optional
        fsspec options for a URL ``path`` (endpoint, credentials).

    Returns
    -------
    Path or str
        The absolute path, or the URL.

    Raises
    ------
    ValueError
        A parameter cannot be recorded: a ``random_state`` that is a
        ``RandomState`` over another bit generator than MT19937, say.
    daskgmm.ModelFileError
        The contents fail the model file schema (fitted attributes set by
        hand, say); nothing is written.
    """
    return write_fitted_model(path, model._fitted_model(), overwrite=overwrite,
                              storage_options=storage_options, **(metadata or {}))


def load_model(path: str | os.PathLike,
               storage_options: dict[str, Any] | None = None,
               ) -> GaussianMixture | BayesianGaussianMixture:
    """Load a model saved by :func:`save_model`. Runs no code from the file (no pickle).

    The file is checked against the model file schema first.

    Parameters
    ----------
    path : str or os.PathLike
        A local path or an fsspec URL.
    storage_options : dict, optional
        fsspec options for a URL (endpoint, credentials).

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
        Fitted, with every constructor parameter as saved: the estimator the
        file names.

    Raises
    ------
    FileNotFoundError
    daskgmm.ModelFileError
        Not a valid daskgmm model file; the message names each field that is wrong.
    """
    fitted = read_fitted_model(path, storage_options)
    estimator = BayesianGaussianMixture if fitted.estimator == BAYESIAN else GaussianMixture
    return estimator._from_fitted_model(fitted)
