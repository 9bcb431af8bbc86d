"""``BayesianGaussianMixture``: scikit-learn's variational estimator, fitted out of core on dask.

One pass over the data per iteration, through the same E-step kernels and tree reduction as
:class:`daskgmm.GaussianMixture` (see :mod:`daskgmm._variational` for why the variational
E-step is a mixture's E-step); the posterior update and the lower bound run on the client.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SklearnBayesianGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _variational as vb
from ._data import Dataset
from ._em import IterationInfo, combine_many, estep_chunk
from ._init import UserInit, initial_parameters_many
from ._mstep import _NK_EPS, m_step
from ._param_constraints import PARAMETER_CONSTRAINTS
from ._params import GMMParams, precisions_from_cholesky
from ._passes import run_pass, single_threaded_blas
from .estimator import GaussianMixture, _init_request, _persisted

_CONSTRAINTS: dict[str, list[Any]] = {
    **SklearnBayesianGaussianMixture._parameter_constraints,
    **{name: PARAMETER_CONSTRAINTS[name] for name in ("split_every", "persist", "chunk_size")},
}


def _data_moments_chunk(block: np.ndarray, params: None, start: int) -> dict[str, Any]:
    """A chunk's row count, mean and scatter about its own mean (merged exactly by Chan's rule)."""
    X = np.asarray(block, dtype=np.float64)
    mean = X.mean(axis=0) if X.shape[0] else np.zeros(X.shape[1])
    centred = X - mean
    return {"n": float(X.shape[0]), "mean": mean, "scatter": centred.T @ centred}


def _merge_moments(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = parts[0]
    for part in parts[1:]:
        n = out["n"] + part["n"]
        if part["n"] == 0:
            continue
        delta = part["mean"] - out["mean"]
        out = {"n": n, "mean": out["mean"] + delta * (part["n"] / n),
               "scatter": out["scatter"] + part["scatter"]
               + np.outer(delta, delta) * (out["n"] * part["n"] / n)}
    return out


class BayesianGaussianMixture(GaussianMixture):
    """Variational Bayesian estimation of a Gaussian mixture, out of core.

    A drop-in for :class:`sklearn.mixture.BayesianGaussianMixture`: the same
    parameters, defaults and fitted attributes, with daskgmm's ``split_every``,
    ``persist`` and ``chunk_size``. A generous ``n_components`` lets the data
    switch off the components they do not need (their ``weights_`` go to
    about zero). The data-driven prior defaults (``mean_prior``: the data's
    mean; ``covariance_prior``: their covariance) take one pass, out of core.

    Parameters
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params, \
weight_concentration_prior_type, weight_concentration_prior, mean_precision_prior, \
mean_prior, degrees_of_freedom_prior, covariance_prior, random_state, warm_start, verbose, \
verbose_interval
        As scikit-learn's.
    split_every, persist, chunk_size
        As :class:`daskgmm.GaussianMixture`'s.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_, converged_, n_iter_, \
lower_bound_, lower_bounds_, weight_concentration_prior_, weight_concentration_, \
mean_precision_prior_, mean_precision_, mean_prior_, degrees_of_freedom_prior_, \
degrees_of_freedom_, covariance_prior_, n_features_in_
        As scikit-learn's.
    """

    _parameter_constraints: dict = _CONSTRAINTS
    missing = "error"  # NaN is refused (missing entries are not marginalized here yet)

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        split_every=8,
        persist="auto",
        chunk_size="auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.split_every = split_every
        self.persist = persist
        self.chunk_size = chunk_size

    # GaussianMixture's initial-parameter keys, which this estimator does not have.
    weights_init = means_init = precisions_init = None
    algorithm = "batch"

    def _check_initial_parameters(self, n_features: int) -> None:
        return None

    def fit(self, X, y=None, *, sample_weight=None, callbacks=(), resume_from=None):
        """Estimate the variational posterior, one pass over the data per iteration.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array or path of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like, dask.array.Array or zarr.Array of shape (n_samples,), optional
            Non-negative weight of each row, as in :meth:`daskgmm.GaussianMixture.fit`.
        callbacks : sequence of callables, optional
            Each is called with an :class:`daskgmm.IterationInfo` after every iteration.
        resume_from : None
            Not supported for this estimator yet.

        Returns
        -------
        self : BayesianGaussianMixture
        """
        if resume_from is not None:
            raise ValueError("BayesianGaussianMixture cannot resume from a checkpoint yet.")
        self._validate_params()
        with single_threaded_blas:
            data = self._fit_dataset(X).with_weights(sample_weight)
            data = _persisted(data, self.persist)
            priors = self._priors(data)
            callbacks = list(callbacks)
            if self.verbose:
                callbacks.append(self._verbose_callback())
            self._best_fit(data, priors, callbacks)
        return self

    def _priors(self, data: Dataset) -> vb.Priors:
        """The priors, scikit-learn's defaults from one pass over the data when not given."""
        n_features = data.n_features
        if self.degrees_of_freedom_prior is not None and \
                self.degrees_of_freedom_prior <= n_features - 1.0:
            raise ValueError(
                "The parameter 'degrees_of_freedom_prior' should be greater than "
                f"{n_features - 1}, but got {self.degrees_of_freedom_prior:.3f}.")
        moments: dict[str, Any] = {}
        if self.mean_prior is None or self.covariance_prior is None:
            moments = run_pass(data.with_weights(None), _data_moments_chunk, None,
                               name="gmm-vb-priors", split_every=self.split_every,
                               combine=_merge_moments)
        mean = (moments["mean"] if self.mean_prior is None
                else np.asarray(self.mean_prior, dtype=np.float64))
        if mean.shape != (n_features,):
            raise ValueError(f"The parameter 'means' should have the shape of ({n_features},), "
                             f"but got {mean.shape}")
        if self.covariance_prior is None:
            cov = moments["scatter"] / (moments["n"] - 1)
            covariance: np.ndarray | float = {
                "full": cov, "tied": cov, "diag": np.diag(cov).copy(),
                "spherical": float(np.diag(cov).mean())}[self.covariance_type]
        else:
            covariance = (np.asarray(self.covariance_prior, dtype=np.float64)
                          if self.covariance_type != "spherical" else float(self.covariance_prior))
        self.weight_concentration_prior_ = (1.0 / self.n_components
                                            if self.weight_concentration_prior is None
                                            else self.weight_concentration_prior)
        self.mean_precision_prior_ = (1.0 if self.mean_precision_prior is None
                                      else self.mean_precision_prior)
        self.mean_prior_ = mean
        self.degrees_of_freedom_prior_ = (float(n_features) if self.degrees_of_freedom_prior is None
                                          else self.degrees_of_freedom_prior)
        self.covariance_prior_ = covariance
        return vb.Priors(self.weight_concentration_prior_type, self.weight_concentration_prior_,
                         self.mean_precision_prior_, mean, self.degrees_of_freedom_prior_,
                         covariance)

    def _best_fit(self, data: Dataset, priors: vb.Priors, callbacks: list) -> None:
        best: tuple[float, vb.Posterior, list[float], bool] | None = None
        if self.warm_start and hasattr(self, "converged_"):
            starts = [self._posterior()]
        else:
            starts = self._initial_posteriors(data, priors)
        for post in starts:
            result = self._variational_em(data, priors, post, callbacks)
            if best is None or result[0] > best[0]:
                best = result
        assert best is not None
        lower, post, bounds, converged = best
        if not converged and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          ConvergenceWarning, stacklevel=3)
        self._set_posterior(post, lower, bounds, converged, data.n_features)

    def _initial_posteriors(self, data: Dataset, priors: vb.Priors) -> list[vb.Posterior]:
        """One posterior per initialisation (``n_init``), in the initialisation's shared passes.

        As scikit-learn's ``_initialize``: the posterior of the initial
        responsibilities' ``N_k`` (the weights times n), means and covariances
        (``reg_covar`` included), from :func:`daskgmm._init.initial_parameters_many`.
        """
        random_state = check_random_state(self.random_state)
        params = {**self.get_params(deep=False), "weights_init": None, "means_init": None,
                  "precisions_init": None}
        requests = [_init_request(params, random_state) for _ in range(self.n_init)]
        initial = initial_parameters_many(
            data.with_weights(None), requests, [UserInit(None, None, None)] * self.n_init,
            [self.reg_covar] * self.n_init, self.split_every)
        return [vb.update(priors, start.weights * data.n_samples, start.means, covariances,
                          self.covariance_type)
                for start, covariances in initial]

    def _variational_em(self, data: Dataset, priors: vb.Priors, post: vb.Posterior,
                        callbacks: list) -> tuple[float, vb.Posterior, list[float], bool]:
        prior_type = self.weight_concentration_prior_type
        lower, bounds, converged = -np.inf, [], False
        params = vb.estep_params(post, self.covariance_type, prior_type)
        for n_iter in range(1, self.max_iter + 1):
            started = time.perf_counter()
            previous = lower
            (stats,) = run_pass(data, estep_chunk, (params,), name="gmm-vb-estep",
                                split_every=self.split_every, combine=combine_many)
            _, xk, sk = m_step(stats, params.means, self.covariance_type, self.reg_covar)
            post = vb.update(priors, stats["nk"] + _NK_EPS, xk, sk, self.covariance_type)
            lower = vb.lower_bound(post, vb.resp_entropy(stats, params), self.covariance_type,
                                   prior_type, self.n_components)
            bounds.append(lower)
            converged = abs(lower - previous) < self.tol
            params = vb.estep_params(post, self.covariance_type, prior_type)  # the next E-step's
            info = IterationInfo(n_iter, lower, lower - previous, time.perf_counter() - started,
                                 params, post.covariances, converged, list(bounds))
            stop = any([bool(callback(info)) for callback in callbacks])
            if converged or stop:
                break
        return lower, post, bounds, converged

    def _set_posterior(self, post: vb.Posterior, lower: float, bounds: list[float],
                       converged: bool, n_features: int) -> None:
        prior_type = self.weight_concentration_prior_type
        self.weight_concentration_ = post.weight_concentration
        self.mean_precision_ = post.mean_precision
        self.means_ = post.means
        self.degrees_of_freedom_ = post.degrees_of_freedom
        self.covariances_ = post.covariances
        self.precisions_cholesky_ = post.precisions_cholesky
        self.precisions_ = precisions_from_cholesky(post.precisions_cholesky, self.covariance_type)
        self.weights_ = vb.mixture_weights(post, prior_type)
        self.converged_ = converged
        self.n_iter_ = len(bounds)
        self.lower_bound_ = lower
        self.lower_bounds_ = list(bounds)
        self.n_features_in_ = n_features

    def _posterior(self) -> vb.Posterior:
        check_is_fitted(self)
        return vb.Posterior(self.weight_concentration_, self.mean_precision_, self.means_,
                            self.degrees_of_freedom_, self.covariances_, self.precisions_cholesky_)

    def _fitted_params(self) -> GMMParams:
        """The mixture whose weighted log-densities are scikit-learn's ``_estimate_weighted_log_prob``."""
        return vb.estep_params(self._posterior(), self.covariance_type,
                               self.weight_concentration_prior_type)

    def _params_token(self) -> str:
        from dask.base import tokenize

        params = self._fitted_params()
        return tokenize("bayesian", params.weights, params.means, params.precisions_cholesky,
                        self.covariance_type)

    def _not_here(name: str):  # type: ignore[misc]  # noqa: N805 (a helper of the class body)
        def unavailable(self):
            raise AttributeError(
                f"BayesianGaussianMixture has no {name}: "
                + ("scikit-learn's has none either." if name == "partial_fit" else
                   "its score is a variational bound's, not a likelihood to penalise."))
        return property(unavailable)

    # GaussianMixture's methods that have no meaning here: hidden, so hasattr() is False.
    partial_fit = _not_here("partial_fit")
    bic = _not_here("bic")
    aic = _not_here("aic")
    icl = _not_here("icl")
    information_criteria = _not_here("information_criteria")
    del _not_here

    def _fitted_model(self):
        raise TypeError("A BayesianGaussianMixture cannot be saved to a daskgmm model file yet "
                        "(the format holds GaussianMixture models); keep it with to_sklearn() "
                        "and joblib, or refit.")

    def to_sklearn(self):
        """The equivalent fitted :class:`sklearn.mixture.BayesianGaussianMixture`."""
        check_is_fitted(self)
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if k not in ("split_every", "persist", "chunk_size")}
        model = SklearnBayesianGaussianMixture(**params)
        for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
                     "converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_",
                     "weight_concentration_prior_", "weight_concentration_",
                     "mean_precision_prior_", "mean_precision_", "mean_prior_",
                     "degrees_of_freedom_prior_", "degrees_of_freedom_", "covariance_prior_"):
            setattr(model, name, getattr(self, name))
        return model
